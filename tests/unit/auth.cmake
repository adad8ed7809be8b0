# shared/auth: digest parser, vectors, nonces, nc replay, challenge, verify.
parley_unit_test(test_auth test_auth.c LIBS parley_auth)
