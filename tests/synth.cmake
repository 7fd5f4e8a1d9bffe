# The SYNTH-1 checkpoint (../shared/golden/README.md) as a ctest fixture: synth1.generate writes
# it to ${CMAKE_BINARY_DIR}/synth1 (6.67 GB, about a minute, disk-bound); tests that need it
# declare FIXTURES_REQUIRED synth1 and read the directory from DSOCR_SYNTH1_DIR. synth1.file
# checks all 2710 tensors of the written file against the golden checksums.
# (The gtest-discovered copy unit.SynthFile.AllChecksums has no DSOCR_SYNTH1_DIR and skips.)
if(NOT TARGET dsocr-synth OR NOT TARGET unit_synth_test)
  return()
endif()

add_test(NAME synth1.generate
         COMMAND $<TARGET_FILE:dsocr-synth> --seed 1 --out ${CMAKE_BINARY_DIR}/synth1 --force
                 --quiet)
set_tests_properties(synth1.generate PROPERTIES FIXTURES_SETUP synth1 LABELS unit TIMEOUT 900)

add_test(NAME synth1.file COMMAND $<TARGET_FILE:unit_synth_test> --gtest_filter=SynthFile.*)
set_tests_properties(synth1.file PROPERTIES
  FIXTURES_REQUIRED synth1 LABELS unit TIMEOUT 900
  ENVIRONMENT DSOCR_SYNTH1_DIR=${CMAKE_BINARY_DIR}/synth1
  # A filter that matched nothing, or a skip, must not pass as success.
  FAIL_REGULAR_EXPRESSION "SKIPPED|0 tests from 0 test suites ran")
