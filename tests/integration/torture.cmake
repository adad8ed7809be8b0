# RFC 4475 / RFC 5118 torture messages against live parley-homeserver, parley-frontend and
# parley-edge (tests/torture/run.sh starts them on free loopback ports and stops them by PID).
# The manifest/driver self-test needs no server and always runs.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME torture_selftest
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/torture/torture.py --self-test)
  set_tests_properties(torture_selftest PROPERTIES LABELS "unit;torture" TIMEOUT 60)
  if(TARGET parley-homeserver)
    add_test(NAME torture_homeserver
             COMMAND ${CMAKE_SOURCE_DIR}/tests/torture/run.sh $<TARGET_FILE:parley-homeserver>)
    # 61 messages x 3 modes x (wait + probe) plus pipelining, one server per mode: ~90 s.
    set_tests_properties(torture_homeserver PROPERTIES LABELS "integration;torture" TIMEOUT 900)
    # Resource limits: 10,000 headers (UDP, TCP), 10 MB body, 5,000 idle connections (RSS
    # per connection bounded, another user served meanwhile), connections beyond
    # --max-connections refused, garbage streams; the server must stay up and bounded
    # (tests/torture/limits.py).
    add_test(NAME torture_limits
             COMMAND ${CMAKE_SOURCE_DIR}/tests/torture/run.sh --limits $<TARGET_FILE:parley-homeserver>)
    set_tests_properties(torture_limits PROPERTIES LABELS "integration;torture" TIMEOUT 300)
  endif()
  # The same messages, modes and probes against the front-end (etcd as its directory) and
  # the edge (UDP/TCP outside listeners, forwarding over MTLS to a front-end); what each
  # must answer where it differs is in tests/torture/expect-<kind>.tsv.
  if(TARGET parley-frontend)
    add_test(NAME torture_frontend
             COMMAND ${CMAKE_SOURCE_DIR}/tests/torture/run.sh $<TARGET_FILE:parley-frontend>)
    set_tests_properties(torture_frontend PROPERTIES LABELS "integration;torture;needs-etcd" TIMEOUT 900)
  endif()
  if(TARGET parley-edge AND TARGET parley-frontend)
    add_test(NAME torture_edge
             COMMAND ${CMAKE_SOURCE_DIR}/tests/torture/run.sh $<TARGET_FILE:parley-edge>)
    set_tests_properties(torture_edge PROPERTIES LABELS "integration;torture;needs-etcd" TIMEOUT 900
                         ENVIRONMENT "FE_BIN=$<TARGET_FILE:parley-frontend>")
  endif()
endif()
