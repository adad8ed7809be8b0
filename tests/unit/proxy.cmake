# proxy: connection trust (px_trust: listener specs, allow lists, static routes, throttle, settings).
parley_unit_test(test_px_trust test_px_trust.c LIBS parley_proxy parley_directory)
