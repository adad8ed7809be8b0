/*
 * libFuzzer target: the directory's decoders for everything etcd can send.
 * The first byte picks the decoder; the rest is the input:
 *   0 user value, 1 server value, 2 route value, 3 unary gateway answer,
 *   4 watch stream (split into lines by dir_linebuf, each line parsed), 5 base64 decode,
 *   6 the cache applying the input as a PUT of a user/server/route key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "directory/dir_cache.h"
#include "directory/dir_json.h"
#include "util/log.h"

static int
on_line(void *arg, char *line, size_t len)
{
    struct dir_watch_msg m;

    if (dir_watch_msg_parse(line, len, &m) == 0 && m.kind == DIR_WATCH_EVENTS) {
        for (size_t i = 0; i < m.n_events; i++)
            if (m.events[i].kv.key == NULL || m.events[i].kv.value == NULL)
                abort();
    }
    dir_watch_msg_clear(&m);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    char err[160];
    const char *in;
    size_t n;

    if (!init) {
        log_set_level(LOG_ERR);
        init = 1;
    }
    if (size < 1)
        return 0;
    in = (const char *)data + 1;
    n = size - 1;
    switch (data[0] % 7) {
    case 0:
        dir_user_free(dir_user_decode("alice@example.com", in, n, err, sizeof err));
        break;
    case 1:
        dir_server_free(dir_server_decode("home1", in, n, err, sizeof err));
        break;
    case 2:
        dir_route_free(dir_route_decode("pstn", in, n, err, sizeof err));
        break;
    case 3: {
        struct dir_resp r;
        dir_resp_parse(in, n, &r);
        dir_resp_clear(&r);
        break;
    }
    case 4: {
        struct dir_linebuf lb;
        size_t cut = n ? data[0] % (n + 1) : 0;   /* two chunks, split somewhere */
        dir_linebuf_init(&lb, 4096);
        dir_linebuf_feed(&lb, in, cut, on_line, NULL);
        dir_linebuf_feed(&lb, in + cut, n - cut, on_line, NULL);
        dir_linebuf_free(&lb);
        break;
    }
    case 5: {
        char *out;
        size_t len;
        if (dir_b64_decode(in, n, &out, &len) == 0) {
            /* round trip: what we decoded re-encodes and decodes to the same bytes
             * (not necessarily to <in>: unused padding bits are ignored) */
            char *again = dir_b64_encode(out, len), *back = NULL;
            size_t blen = 0;
            if (again == NULL || strlen(again) != n ||
                dir_b64_decode(again, strlen(again), &back, &blen) != 0 || blen != len ||
                memcmp(back, out, len) != 0)
                abort();
            free(again);
            free(back);
            free(out);
        }
        break;
    }
    case 6: {
        static const char *const keys[] = {"/parley/users/Bob@Example.com", "/parley/servers/s",
                                           "/parley/routes/r", "/parley/schema"};
        struct dir_cache *c = dir_cache_new();
        if (c == NULL)
            return 0;
        for (size_t i = 0; i < 4; i++)
            dir_cache_put(c, keys[i], in, n, 1, NULL);
        dir_cache_delete(c, keys[0], NULL);
        dir_cache_free(c);
        break;
    }
    }
    return 0;
}
