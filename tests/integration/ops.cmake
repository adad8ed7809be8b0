# Operations: configuration, admin endpoint, metrics, reload, shutdown (labels: integration, ops),
# plus the install tree and the generated configuration reference (label: ops).
if(TARGET parley-homeserver)
  foreach(case precedence bad_config healthz_store metrics reload sigterm)
    add_test(NAME ops_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/ops/run.sh ${case})
    set_tests_properties(ops_${case} PROPERTIES
      LABELS "integration;ops"
      TIMEOUT 90
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
  endforeach()
endif()
# The same store-failure test through its fallback (no mount(2)): RLIMIT_FSIZE lowered with prlimit.
if(TARGET parley-homeserver)
  add_test(NAME ops_healthz_store_rlimit
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/ops/run.sh healthz_store)
  set_tests_properties(ops_healthz_store_rlimit PROPERTIES
    LABELS "integration;ops"
    TIMEOUT 90
    ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;OPS_STORE_FAIL=rlimit")
endif()
