/* libFuzzer: the agent protocol decoder (shared/agent/agent_proto.c) on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    /* A stream of frames, as the server's read loop sees it. */
    while (off < size) {
        long n = agent_frame_check(data + off, size - off);
        struct agent_msg m;
        if (n <= 0)
            break;
        if (agent_decode(data + off, (size_t)n, &m, NULL) == 0) {
            struct agent_buf b = {0};
            struct agent_msg again;
            if (agent_encode(&b, &m) == 0 && agent_decode(b.p, b.len, &again, NULL) != 0)
                abort();   /* what decodes must re-encode to something that decodes */
            agent_buf_free(&b);
        }
        off += (size_t)n;
    }
    return 0;
}
