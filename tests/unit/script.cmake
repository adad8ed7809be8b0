# Script language: lexer, parser/compiler, VM, built-ins (shared/script).
parley_unit_test(test_script test_script.c LIBS parley_script)
