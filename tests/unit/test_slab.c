/*
 * Unit tests for util/slab: objects of every class are distinct, aligned and
 * writable; freed objects are reused; an emptied slab is unmapped when its class
 * has another; large objects go to malloc; the counters follow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/slab.h"

static void
test_slab_sizes_alignment_and_contents(void **state)
{
    enum { N = 200 };
    static const size_t sizes[] = {1, 15, 16, 17, 100, 256, 257, 320, 321, 500, 512};
    void *objs[sizeof sizes / sizeof sizes[0]][N];

    (void)state;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int i = 0; i < N; i++) {
            objs[k][i] = slab_alloc(sizes[k]);
            assert_non_null(objs[k][i]);
            assert_int_equal((uintptr_t)objs[k][i] % 16, 0);
            memset(objs[k][i], (int)(k * 31 + (size_t)i) & 0xff, sizes[k]);
        }
    }
    /* Nothing overlapped: every object still holds its own pattern. */
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int i = 0; i < N; i++)
            for (size_t b = 0; b < sizes[k]; b++)
                assert_int_equal(((unsigned char *)objs[k][i])[b], (k * 31 + (size_t)i) & 0xff);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int i = 0; i < N; i++)
            slab_free(objs[k][i], sizes[k]);
}

static void
test_slab_reuse_and_unmap(void **state)
{
    enum { N = 5000 };   /* 5000 x 96 B: several 64 KiB slabs */
    void **objs = calloc(N, sizeof *objs);
    struct slab_stats s0, s1, s2;
    void *again;

    (void)state;
    if (slab_passthrough()) {
        free(objs);
        skip();   /* sanitizer build: malloc underneath, nothing to count */
    }
    assert_non_null(objs);
    slab_stats_get(&s0);
    for (int i = 0; i < N; i++)
        assert_non_null(objs[i] = slab_calloc(96));
    slab_stats_get(&s1);
    assert_int_equal(s1.live - s0.live, N);
    assert_int_equal(s1.used - s0.used, (size_t)N * 96);
    assert_true(s1.slabs - s0.slabs >= 7);
    assert_true(s1.mapped >= s1.used);
    /* A freed object is the next one handed out (same class). */
    slab_free(objs[10], 96);
    again = slab_alloc(90);
    assert_ptr_equal(again, objs[10]);
    objs[10] = again;
    for (int i = 0; i < N; i++)
        slab_free(objs[i], 96);
    slab_stats_get(&s2);
    assert_int_equal(s2.live, s0.live);
    assert_int_equal(s2.used, s0.used);
    /* At most one empty slab per class is kept. */
    assert_true(s2.slabs <= s0.slabs + 1);
    free(objs);
}

static void
test_slab_strings_and_large(void **state)
{
    char big[2000];
    char *s, *l;
    struct slab_stats s0, s1;

    (void)state;
    assert_null(slab_strdup(NULL));
    slab_free_str(NULL);
    slab_free(NULL, 10);
    s = slab_strdup("sip:alice@example.com");
    assert_string_equal(s, "sip:alice@example.com");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    slab_stats_get(&s0);
    l = slab_strdup(big);   /* over SLAB_MAX_OBJ: malloc */
    slab_stats_get(&s1);
    assert_string_equal(l, big);
    if (!slab_passthrough())
        assert_int_equal(s1.live, s0.live);
    slab_free_str(l);
    slab_free_str(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slab_sizes_alignment_and_contents),
        cmocka_unit_test(test_slab_reuse_and_unmap),
        cmocka_unit_test(test_slab_strings_and_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
