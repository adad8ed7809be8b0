# shared/directory: value/answer decoding, base64, watch line splitting, cache, disk copy.
parley_unit_test(test_dir test_dir.c LIBS parley_directory)
