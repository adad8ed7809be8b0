# RFC 4475 / RFC 5118 torture messages against a live parley-homeserver
# (tests/torture/run.sh starts it on free loopback ports and stops it by PID).
# The manifest/driver self-test needs no server and always runs.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME torture_selftest
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/torture/torture.py --self-test)
  set_tests_properties(torture_selftest PROPERTIES LABELS "unit;torture" TIMEOUT 60)
  if(TARGET parley-homeserver)
    add_test(NAME torture_homeserver
             COMMAND ${CMAKE_SOURCE_DIR}/tests/torture/run.sh $<TARGET_FILE:parley-homeserver>)
    # 61 messages x 3 modes x (wait + probe) plus pipelining: bounded well below this.
    set_tests_properties(torture_homeserver PROPERTIES LABELS "integration;torture" TIMEOUT 900)
  endif()
endif()
