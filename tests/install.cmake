# The library as a user gets it (tests/install/): unit.install_example installs this build into a
# temporary prefix and builds and runs tests/install/example.c against it with find_package(dsocr)
# (it needs every installed target built: the full build); unit.readme_example checks that the
# README shows that example verbatim.
if(NOT TARGET dsocr)
  return()
endif()
add_test(NAME unit.install_example
         COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
                 -DWORK_DIR=${CMAKE_BINARY_DIR}/install_test -DGENERATOR=${CMAKE_GENERATOR}
                 -DC_COMPILER=${CMAKE_C_COMPILER} -P ${CMAKE_CURRENT_SOURCE_DIR}/install/run.cmake)
set_tests_properties(unit.install_example PROPERTIES LABELS unit TIMEOUT 600
  FIXTURES_REQUIRED synth1 ENVIRONMENT DSOCR_SYNTH1_DIR=${CMAKE_BINARY_DIR}/synth1)
add_test(NAME unit.readme_example
         COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/install/check_readme.cmake)
set_tests_properties(unit.readme_example PROPERTIES LABELS unit)

# unit_c_api_test (tests/unit/c_api_test.cpp) tests the C API through libdsocr.so itself.
if(TARGET unit_c_api_test)
  target_link_libraries(unit_c_api_test PRIVATE dsocr)
endif()
