# End-to-end: the whole pool on loopback (deploy/local/pool: etcd, two home servers, a
# front-end, an edge), sipp as inside and outside users (tests/e2e/run.sh).
if(TARGET parley-frontend AND TARGET parley-edge AND TARGET parley-homeserver)
  foreach(case redirect outside homes failover move)
    add_test(NAME e2e_${case} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/run.sh ${case})
    set_tests_properties(e2e_${case} PROPERTIES
      LABELS "e2e;needs-etcd"
      TIMEOUT 180
      ENVIRONMENT "PARLEY_BUILD=${CMAKE_BINARY_DIR};HS_BIN=$<TARGET_FILE:parley-homeserver>;FE_BIN=$<TARGET_FILE:parley-frontend>;EDGE_BIN=$<TARGET_FILE:parley-edge>;CTL_BIN=$<TARGET_FILE:parleyctl>")
  endforeach()
  # The same pool with each server in its own network namespace (POOL_NETNS=1): real,
  # distinct addresses; needs root and ip netns (else skipped, exit 77).
  add_test(NAME e2e_netns COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/netns.sh)
  set_tests_properties(e2e_netns PROPERTIES
    LABELS "e2e;needs-etcd;netns"
    TIMEOUT 180
    RUN_SERIAL TRUE
    SKIP_RETURN_CODE 77
    ENVIRONMENT "PARLEY_BUILD=${CMAKE_BINARY_DIR};HS_BIN=$<TARGET_FILE:parley-homeserver>;FE_BIN=$<TARGET_FILE:parley-frontend>;EDGE_BIN=$<TARGET_FILE:parley-edge>;CTL_BIN=$<TARGET_FILE:parleyctl>")
endif()
# deploy/docker-compose.yml and the Dockerfile, checked without Docker (docker-compose config).
add_test(NAME deploy_compose COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/compose_check.sh)
set_tests_properties(deploy_compose PROPERTIES LABELS "deploy" TIMEOUT 60 SKIP_RETURN_CODE 77)
