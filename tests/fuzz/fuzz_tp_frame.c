/*
 * libFuzzer target for tp_frame_scan: the input is a stream; scan and consume it the
 * way the stream reader does, checking that every answer stays inside the buffer and
 * that each step makes progress. The first byte picks the size limit so both small
 * and large limits are explored.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tp_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max, off = 0;
    char *buf;

    if (size == 0)
        return 0;
    max = (data[0] & 0x80) ? 65536 : (size_t)(data[0] & 0x7f) * 8 + 1;
    data++;
    size--;
    /* an exact-size heap copy so ASan sees any read past the end */
    buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    while (off < size) {
        size_t skip = 0, mlen = 0, len = size - off;
        enum tp_frame_result r = tp_frame_scan(buf + off, len, max, &skip, &mlen);

        if (r == TP_FRAME_NEED_MORE || r == TP_FRAME_ERROR || r == TP_FRAME_TOO_BIG) {
            if (r == TP_FRAME_NEED_MORE && len >= max && len >= 4)
                abort();   /* NEED_MORE with a full window: the cap would not hold */
            break;
        }
        if (r == TP_FRAME_PING && skip != 4)
            abort();
        if (r == TP_FRAME_PONG && skip != 2)
            abort();
        if (r == TP_FRAME_MESSAGE && (mlen == 0 || mlen > max))
            abort();
        if (skip + mlen == 0 || skip + mlen > len)
            abort();
        off += skip + mlen;
    }
    free(buf);
    return 0;
}
