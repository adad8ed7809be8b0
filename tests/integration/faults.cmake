# Fault tests (tests/integration/faults/run.sh): kill -9 under load, a silent next hop, idle
# connections, disk full, flood protection, etcd restarts (labels integration;faults, plus
# needs-etcd), and one flow under valgrind memcheck (labels integration;valgrind).
if(TARGET parley-homeserver)
  foreach(case kill9 silent_tcp idle_conns disk_full flood_rate)
    add_test(NAME faults_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/faults/run.sh ${case})
    set_tests_properties(faults_${case} PROPERTIES
      LABELS "integration;faults"
      TIMEOUT 180
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
  endforeach()
  foreach(case flood_ban etcd_restart)
    add_test(NAME faults_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/faults/run.sh ${case})
    set_tests_properties(faults_${case} PROPERTIES
      LABELS "integration;faults;needs-etcd"
      TIMEOUT 180
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;CTL_BIN=$<TARGET_FILE:parleyctl>")
  endforeach()
  find_program(PARLEY_VALGRIND valgrind)
  if(PARLEY_VALGRIND AND NOT PARLEY_ASAN)
    add_test(NAME faults_valgrind
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/faults/run.sh valgrind)
    set_tests_properties(faults_valgrind PROPERTIES
      LABELS "integration;valgrind"
      TIMEOUT 180
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
  endif()
endif()
