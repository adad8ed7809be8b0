# util: configuration table, metrics registry, admin HTTP endpoint.
parley_unit_test(test_cfg test_cfg.c LIBS parley_util)
