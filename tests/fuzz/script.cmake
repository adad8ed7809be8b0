# Script language: compile anything, run what compiles against a mock host.
parley_fuzz_target(fuzz_scr_compile fuzz_scr_compile.c LIBS parley_script)
