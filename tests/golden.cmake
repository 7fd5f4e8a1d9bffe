# The long golden cases (too slow for CI's 2 cores): `ctest --preset release -L long`.
if(TARGET golden_pipeline_cpu_test)
  add_test(NAME golden.long.pipeline_cpu
           COMMAND golden_pipeline_cpu_test --gtest_filter=PipelineCpuLong.*)
  set_tests_properties(golden.long.pipeline_cpu PROPERTIES LABELS "long" TIMEOUT 7200
    FIXTURES_REQUIRED synth1
    ENVIRONMENT "DSOCR_GOLDEN_LONG=1;DSOCR_SYNTH1_DIR=${CMAKE_BINARY_DIR}/synth1")
endif()
