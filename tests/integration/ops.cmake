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
# Packaging: `cmake --install` into a temporary prefix, then the tree and the units are checked.
# Generator expressions, not if(TARGET): tools/ and role folders may be added after tests/.
add_test(NAME ops_install
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/ops/install.sh ${CMAKE_BINARY_DIR}
          $<TARGET_EXISTS:parley-frontend> $<TARGET_EXISTS:parley-edge> $<TARGET_EXISTS:parleyctl>)
set_tests_properties(ops_install PROPERTIES LABELS "ops" TIMEOUT 120)
# docs/configuration.md must be what the binaries' --help-markdown say (scripts/gen-config-docs.sh).
add_test(NAME ops_config_docs
  COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/gen-config-docs.sh --check
          $<TARGET_FILE:parley-homeserver>
          $<$<TARGET_EXISTS:parley-frontend>:$<TARGET_FILE:parley-frontend>>
          $<$<TARGET_EXISTS:parley-edge>:$<TARGET_FILE:parley-edge>>)
set_tests_properties(ops_config_docs PROPERTIES LABELS "ops" TIMEOUT 30)
