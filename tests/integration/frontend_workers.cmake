# parley-frontend --workers 2: SO_REUSEPORT spread, worker restart, SIGTERM (frontend_workers/run.sh).
if(TARGET parley-frontend)
  add_test(NAME frontend_workers COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/frontend_workers/run.sh)
  set_tests_properties(frontend_workers PROPERTIES
    LABELS "integration;needs-etcd"
    TIMEOUT 180
    ENVIRONMENT "FE_BIN=$<TARGET_FILE:parley-frontend>")
endif()
