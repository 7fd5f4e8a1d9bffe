# unit.readme_example: README.md shows tests/install/example.c and tests/install/CMakeLists.txt
# verbatim (its ```c and ```cmake blocks); this test keeps them from drifting apart.
# -D: SOURCE_DIR.
file(READ ${SOURCE_DIR}/README.md readme)
foreach(pair "c:example.c" "cmake:CMakeLists.txt")
  string(REPLACE ":" ";" pair ${pair})
  list(GET pair 0 lang)
  list(GET pair 1 file)
  file(READ ${SOURCE_DIR}/tests/install/${file} want)
  string(FIND "${readme}" "\n```${lang}\n${want}```\n" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md has no ```${lang} block equal to tests/install/${file}; "
                        "copy the file into the README's \"Use as a library\" section")
  endif()
endforeach()
