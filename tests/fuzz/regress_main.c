/* Standalone replay driver for libFuzzer targets (used when PARLEY_FUZZ=OFF).
 *
 * Each argument is a file that once crashed a fuzz target (tests/fuzz/regress/).
 * It is fed once to LLVMFuzzerTestOneInput; a crash, a sanitizer report or an
 * abort fails the ctest entry. Exit status 0 when every file was replayed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay(const char *path)
{
	FILE *f = NULL;
	uint8_t *buf = NULL;
	long len;
	int rc = -1;

	f = fopen(path, "rb");
	if (!f) {
		perror(path);
		goto out;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		perror(path);
		goto out;
	}
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "%s: read failed\n", path);
		goto out;
	}
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	rc = 0;
out:
	free(buf);
	if (f)
		fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	int failed = 0;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (replay(argv[i]) != 0)
			failed++;
		else
			printf("replayed %s\n", argv[i]);
	}
	return failed ? 1 : 0;
}
