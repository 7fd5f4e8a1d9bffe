# unit_cli_test (tests/unit/cli_test.cpp) runs the built dsocr-run: build the tool first.
if(TARGET unit_cli_test AND TARGET dsocr-run)
  add_dependencies(unit_cli_test dsocr-run)
endif()
