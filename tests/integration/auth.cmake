# parleyctl against a real etcd (tests/lib/etcd.sh): users, routes, servers,
# registrations, a 100,000-user import, etcd down.
add_test(NAME parleyctl_etcd
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/parleyctl/test_parleyctl.sh $<TARGET_FILE:parleyctl> 100000)
set_tests_properties(parleyctl_etcd PROPERTIES LABELS "integration;needs-etcd" TIMEOUT 600)
