# The SYNTH-1 checkpoint (../shared/golden/README.md) as a ctest fixture: synth1.generate writes
# it to ${CMAKE_BINARY_DIR}/synth1 (6.67 GB, about a minute, disk-bound); tests that need it
# read the directory from DSOCR_SYNTH1_DIR; tests/CMakeLists.txt gives every test whose source
# mentions DSOCR_SYNTH1_DIR the fixture and the variable (unit.SynthFile.AllChecksums checks all
# 2710 tensors of the written file against the golden checksums).
if(NOT TARGET dsocr-synth OR NOT TARGET unit_synth_test)
  return()
endif()

add_test(NAME synth1.generate
         COMMAND $<TARGET_FILE:dsocr-synth> --seed 1 --out ${CMAKE_BINARY_DIR}/synth1 --force
                 --quiet)
set_tests_properties(synth1.generate PROPERTIES FIXTURES_SETUP synth1 LABELS unit TIMEOUT 900)
