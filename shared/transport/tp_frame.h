/*
 * tp_frame: message boundaries on a stream (RFC 3261 §18.3): headers end at the
 * first CRLFCRLF, the body is Content-Length bytes (compact form "l" too; a
 * missing Content-Length on a stream is an error). Leading CRLFs between messages
 * are keep-alives (RFC 5626 §4.4.1): a "\r\n\r\n" ping is answered with "\r\n".
 * Pure functions over a byte buffer, so they are unit-tested and fuzzed alone.
 */
#ifndef PARLEY_TRANSPORT_TP_FRAME_H
#define PARLEY_TRANSPORT_TP_FRAME_H

#include <stddef.h>

enum tp_frame_result {
    TP_FRAME_NEED_MORE = 0,   /* no complete message yet */
    TP_FRAME_MESSAGE,         /* a message of *msg_len bytes starts at buf + *skip */
    TP_FRAME_PING,            /* *skip bytes of "\r\n\r\n" keep-alive: answer "\r\n", consume */
    TP_FRAME_PONG,            /* *skip bytes of a lone "\r\n": consume */
    TP_FRAME_ERROR,           /* unframeable (bad or missing Content-Length, or too big) */
    TP_FRAME_TOO_BIG,         /* headers or declared size exceed <max> */
};

enum tp_frame_result tp_frame_scan(const char *buf, size_t len, size_t max, size_t *skip,
                                   size_t *msg_len);

#endif
