# Directory value and etcd gateway decoders (users/servers/routes, answers, watch lines).
parley_fuzz_target(fuzz_dir_json fuzz_dir_json.c LIBS parley_directory)
