# unit.install_example: install the build into a fresh prefix, build tests/install/ against it
# with find_package(dsocr), and OCR the sample page with the example on the CPU.
# -D: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR, C_COMPILER; env DSOCR_SYNTH1_DIR.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
foreach(f include/dsocr.h include/dsocr.hpp lib/libdsocr.so lib/cmake/dsocr/dsocrConfig.cmake
          lib/cmake/dsocr/dsocrConfigVersion.cmake bin/dsocr-run)
  if(NOT EXISTS ${WORK_DIR}/prefix/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()
run("configuring the example" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install -B ${WORK_DIR}/build
    -G ${GENERATOR} -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run("building the example" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run("the example" ${WORK_DIR}/build/example $ENV{DSOCR_SYNTH1_DIR}
    ${SOURCE_DIR}/tests/data/sample_page.png cpu tiny 8)
if(NOT out MATCHES "dsocr [0-9.]+: 800x1000 page, 73 image tokens, [1-8] tokens")
  message(FATAL_ERROR "unexpected output of the example:\n${out}")
endif()
message(STATUS "example output:\n${out}")
file(REMOVE_RECURSE ${WORK_DIR})
