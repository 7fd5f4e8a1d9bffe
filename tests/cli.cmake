# unit_cli_test (tests/unit/cli_test.cpp) runs the built dsocr-run and dsocr-bench: build them
# first.
if(TARGET unit_cli_test AND TARGET dsocr-run AND TARGET dsocr-bench)
  add_dependencies(unit_cli_test dsocr-run dsocr-bench)
endif()
