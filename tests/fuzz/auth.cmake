# shared/auth: digest credentials parser (+ verify and challenge on what it accepts).
parley_fuzz_target(fuzz_auth_parse fuzz_auth_parse.c LIBS parley_auth)
