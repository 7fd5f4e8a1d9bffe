# libFuzzer target for the safetensors / config.json parsers (tests/fuzz/).
#
# The main build uses g++, which has no libFuzzer, so the fuzzer is compiled straight from the
# loader sources with clang++ (-fsanitize=fuzzer,address,undefined) by a custom command. When no
# clang++ with libFuzzer is found, the target and its test are skipped with a status line.
#   build:  cmake --build build --target fuzz_safetensors
#   run:    build/tests/safetensors_fuzzer -dict=tests/fuzz/safetensors.dict \
#             build/tests/fuzz-work build/tests/fuzz-corpus          (ctest: fuzz.safetensors_smoke)
find_program(DSOCR_CLANGXX NAMES clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15
                                 clang++-14)
if(NOT DSOCR_CLANGXX)
  message(STATUS "fuzz: clang++ not found; fuzz_safetensors and fuzz.safetensors_smoke skipped")
  return()
endif()
if(NOT DEFINED DSOCR_CLANG_HAS_LIBFUZZER)
  set(_probe ${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/fuzz_probe)
  file(WRITE ${_probe}.cpp
       "#include <cstddef>\n#include <cstdint>\n"
       "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(COMMAND ${DSOCR_CLANGXX} -fsanitize=fuzzer,address,undefined ${_probe}.cpp
                          -o ${_probe}
                  RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
  if(_rc EQUAL 0)
    set(DSOCR_CLANG_HAS_LIBFUZZER ON CACHE INTERNAL "clang++ links -fsanitize=fuzzer")
  else()
    set(DSOCR_CLANG_HAS_LIBFUZZER OFF CACHE INTERNAL "clang++ links -fsanitize=fuzzer")
  endif()
endif()
if(NOT DSOCR_CLANG_HAS_LIBFUZZER)
  message(STATUS "fuzz: ${DSOCR_CLANGXX} cannot link -fsanitize=fuzzer; fuzz targets skipped")
  return()
endif()

set(_fuzz_srcs ${CMAKE_SOURCE_DIR}/tests/fuzz/safetensors_fuzz.cpp
               ${CMAKE_SOURCE_DIR}/loader/safetensors.cpp ${CMAKE_SOURCE_DIR}/loader/config.cpp)
set(_fuzz_deps ${_fuzz_srcs} ${CMAKE_SOURCE_DIR}/loader/safetensors.h
               ${CMAKE_SOURCE_DIR}/loader/config.h ${CMAKE_SOURCE_DIR}/loader/status.h)
set(_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/safetensors_fuzzer)
set(_json_inc $<TARGET_PROPERTY:nlohmann_json::nlohmann_json,INTERFACE_INCLUDE_DIRECTORIES>)
add_custom_command(
  OUTPUT ${_fuzz_bin}
  COMMAND ${DSOCR_CLANGXX} -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined
          -fno-sanitize-recover=undefined -fno-omit-frame-pointer -I${CMAKE_SOURCE_DIR}
          "$<$<BOOL:${_json_inc}>:-I$<JOIN:${_json_inc},;-I>>" ${_fuzz_srcs} -o ${_fuzz_bin}
  DEPENDS ${_fuzz_deps}
  COMMAND_EXPAND_LISTS VERBATIM
  COMMENT "Building libFuzzer target fuzz_safetensors with ${DSOCR_CLANGXX}")

# Seed corpus: written by a tiny generator (g++, links the loader), so nothing binary is committed.
add_executable(fuzz_make_corpus ${CMAKE_SOURCE_DIR}/tests/fuzz/make_corpus.cpp)
target_link_libraries(fuzz_make_corpus PRIVATE dsocr_loader)
set(_corpus ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus)
add_custom_command(
  OUTPUT ${_corpus}/config_official.json
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_corpus}
  COMMAND fuzz_make_corpus ${_corpus}
  DEPENDS fuzz_make_corpus
  COMMENT "Writing the fuzz seed corpus")
add_custom_target(fuzz_safetensors ALL DEPENDS ${_fuzz_bin} ${_corpus}/config_official.json)

# 20-second smoke run: new inputs go to fuzz-work (the seeds stay as generated), crashes to
# fuzz-artifacts/. A crash, leak, sanitizer report or broken invariant fails the test.
file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz-work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-artifacts)
add_test(NAME fuzz.safetensors_smoke
         COMMAND ${_fuzz_bin} -max_total_time=20 -seed=1 -max_len=4096
                 -dict=${CMAKE_SOURCE_DIR}/tests/fuzz/safetensors.dict
                 -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/fuzz-artifacts/
                 ${CMAKE_CURRENT_BINARY_DIR}/fuzz-work ${_corpus})
set_tests_properties(fuzz.safetensors_smoke PROPERTIES LABELS unit TIMEOUT 120)
