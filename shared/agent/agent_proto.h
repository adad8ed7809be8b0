/*
 * agent_proto: the wire codec of the agent protocol (design §4, docs/agent-protocol.md)
 * shared by the home server (agent_server.c) and the client library (agents/).
 *
 * A frame is an 8-byte header and a payload:
 *
 *     0      1      2        3      4 .. 7
 *     'P'    'A'    version  type   payload length (uint32, big endian)
 *
 * The payload is a sequence of fields, each a 1-byte tag, a 4-byte big-endian length
 * and the value. Integers are 8-byte big endian. Strings carry their terminating NUL
 * (length includes it, no NUL inside), so a decoded message points into the frame
 * without copying. Unknown tags are skipped (forward compatible); a field that is too
 * short, a string without its NUL, a frame over AGENT_MAX_FRAME or a wrong magic or
 * version are errors: the peer is disconnected.
 *
 * No dependencies beyond libc: this file is compiled into libparley-agent too.
 */
#ifndef PARLEY_AGENT_AGENT_PROTO_H
#define PARLEY_AGENT_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION 1
#define AGENT_HDR_LEN 8
#define AGENT_MAX_FRAME (1024u * 1024u + 64u * 1024u)   /* payload bytes: a 1 MiB SIP message and fields */
#define AGENT_MAX_ITEMS 32                             /* URIs / header edits in one frame */
#define AGENT_MAX_STR 65536                            /* bytes of one string field, except sip */

enum agent_type {
    AGENT_HELLO = 1,          /* agent -> server: version, secret */
    AGENT_WELCOME = 2,        /* server -> agent: version (HELLO accepted) */
    AGENT_REGISTER = 3,       /* agent -> server: app */
    AGENT_REGISTERED = 4,     /* server -> agent: app, queue (its queue size) */
    AGENT_ERROR = 5,          /* server -> agent: status, reason; the server then closes */
    AGENT_REQUEST = 10,       /* server -> agent: id, app, sip */
    AGENT_RESPONSE = 11,      /* server -> agent: id, status, sip (OnResponse) */
    AGENT_EVENT = 12,         /* server -> agent: id (0 = server wide), event, reason */
    AGENT_PROXY = 20,         /* agent -> server: id, [uri], add*, remove*, flags */
    AGENT_PROXY_RESPONSE = 21,/* agent -> server: id, add*, remove* */
    AGENT_RESPOND = 22,       /* agent -> server: id, status, reason, add* */
    AGENT_TRYING = 23,        /* agent -> server: id (send 100 Trying, restart the 32 s clock) */
    AGENT_FORK = 24,          /* agent -> server: id, uri+, add*, remove*, flags */
};

enum agent_tag {
    AGENT_T_VERSION = 1,      /* u64 */
    AGENT_T_SECRET = 2,       /* str */
    AGENT_T_APP = 3,          /* str */
    AGENT_T_ID = 4,           /* u64 */
    AGENT_T_SIP = 5,          /* str: the SIP message bytes */
    AGENT_T_STATUS = 6,       /* u64: a SIP status code */
    AGENT_T_REASON = 7,       /* str */
    AGENT_T_URI = 8,          /* str, repeatable (FORK) */
    AGENT_T_ADD = 9,          /* str "Name: value", repeatable */
    AGENT_T_REMOVE = 10,      /* str header name, repeatable */
    AGENT_T_FLAGS = 11,       /* u64: AGENT_F_* */
    AGENT_T_EVENT = 12,       /* u64: enum agent_event */
    AGENT_T_QUEUE = 13,       /* u64 */
};

#define AGENT_F_RESPONSES 1u  /* PROXY/FORK: send me the responses (RESPONSE frames) */

enum agent_event {
    AGENT_EV_TIMEOUT = 1,     /* the transaction timed out (the caller got 408) */
    AGENT_EV_DROPPED = 2,     /* the request is gone (answered or cancelled without the agent) */
    AGENT_EV_SHUTDOWN = 3,    /* the server is shutting down (id 0) */
};

/* A decoded frame. Strings point into the decoded buffer (borrowed); NULL when absent. */
struct agent_msg {
    enum agent_type type;
    uint8_t version;              /* frame header version */
    uint64_t proto_version;       /* HELLO/WELCOME field */
    uint64_t id;
    uint64_t status;
    uint64_t flags;
    uint64_t event;
    uint64_t queue;
    const char *secret;
    const char *app;
    const char *reason;
    const char *sip;
    size_t sip_len;               /* without the NUL */
    unsigned nuri, nadd, nremove;
    const char *uri[AGENT_MAX_ITEMS];
    const char *add[AGENT_MAX_ITEMS];
    const char *remove[AGENT_MAX_ITEMS];
};

/* A growable output buffer (the caller frees <p>). */
struct agent_buf {
    char *p;
    size_t len, cap;
    bool failed;                  /* an append failed (no memory or over AGENT_MAX_FRAME) */
    size_t start;                 /* offset of the frame being built */
};

/*
 * Looks at <len> bytes of <buf>. Returns the size of the whole first frame when it is
 * complete, 0 when more bytes are needed, -1 when the header is invalid (bad magic,
 * version, or a length over AGENT_MAX_FRAME): the stream cannot be resynchronised.
 */
long agent_frame_check(const void *buf, size_t len);
/*
 * Decodes one complete frame (<len> = agent_frame_check's result) into <m>, whose
 * strings then point into <buf>. Returns 0, or -1 with a short reason in <*why>.
 */
int agent_decode(const void *buf, size_t len, struct agent_msg *m, const char **why);
/*
 * Appends the frame for <m> to <b> (only the fields the type uses, and strings that
 * are not NULL). Returns 0, or -1 (out of memory, frame too large, string too long,
 * too many items); then <b> is unchanged.
 */
int agent_encode(struct agent_buf *b, const struct agent_msg *m);
void agent_buf_free(struct agent_buf *b);
/* Name of a frame type, for logs ("REQUEST"); "?" when unknown. */
const char *agent_type_name(int type);

#endif
