# util: configuration table, metrics registry, admin HTTP endpoint.
parley_unit_test(test_cfg test_cfg.c LIBS parley_util)
parley_unit_test(test_metrics test_metrics.c LIBS parley_util)
parley_unit_test(test_admin_http test_admin_http.c LIBS parley_util)
parley_unit_test(test_slab test_slab.c LIBS parley_util)
