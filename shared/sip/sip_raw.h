/*
 * sip_raw: forwarding without re-serialization ("parse once, serialize once").
 *
 * A parsed message keeps a copy of its bytes and an index of its header lines. A
 * proxy forwards a request by writing a new start line, its own Via, Record-Route,
 * Route, Max-Forwards and the Via list, then copying every other header line and the
 * body as received; a response goes back with its top Via cut out of the bytes.
 * libosip2's serializer (sprintf per field, a malloc per header) is then used only
 * for messages whose other headers were edited, or whose framing is unusual
 * (bare-LF line ends, folded lines): sip_msg_raw_usable() says which.
 *
 * Edits through the sip_msg_* mutators keep the index honest: Via, Route,
 * Max-Forwards and Request-URI edits are regenerated from osip when forwarding;
 * any other edit marks the message so that the osip serializer is used. Code that
 * changes msg->osip directly must call sip_msg_touch().
 */
#ifndef PARLEY_SIP_RAW_H
#define PARLEY_SIP_RAW_H

#include <stdbool.h>
#include <stddef.h>

#include "sip/sip_msg.h"

/* Which parts of the message were edited since parsing (bit set). */
enum {
    SIP_DIRTY_RURI = 1u << 0,
    SIP_DIRTY_VIA = 1u << 1,
    SIP_DIRTY_ROUTE = 1u << 2,
    SIP_DIRTY_MAXFWD = 1u << 3,
    SIP_DIRTY_OTHER = 1u << 4,   /* anything else: the raw copy is stale */
};

enum sip_raw_kind {
    SIP_RAW_OTHER = 0,
    SIP_RAW_VIA,
    SIP_RAW_ROUTE,
    SIP_RAW_MAXFWD,
    SIP_RAW_FROM,
    SIP_RAW_TO,
    SIP_RAW_CALLID,
    SIP_RAW_CSEQ,
};

struct sip_raw_line {
    unsigned start;           /* offset of the header name */
    unsigned end;             /* offset after its line end */
    unsigned char kind;
};

struct sip_raw {
    char *buf;                /* the message bytes as received (headers + body) */
    size_t len;
    unsigned start_end;       /* offset after the start line */
    unsigned body;            /* offset of the body (after the blank line) */
    unsigned nlines;
    bool clean;               /* CRLF line ends, no folding: usable for forwarding */
    struct sip_raw_line lines[];
};

/* Indexes <buf,len> (the bytes osip parsed) into msg->raw. 0 or -1 (out of memory). */
int sip_raw_index(struct sip_msg *msg, const char *buf, size_t len);
void sip_raw_free(struct sip_raw *raw);

/* Marks the message as edited outside the sip_msg_* mutators. */
void sip_msg_touch(struct sip_msg *msg);
/* Can the forwarding builders use the raw bytes? */
bool sip_msg_raw_usable(const struct sip_msg *msg);

/* What a proxy changes in a request it forwards (RFC 3261 §16.6). */
struct sip_fwd {
    const char *ruri;         /* new Request-URI; NULL keeps the message's */
    const char *via;          /* our Via value, "SIP/2.0/UDP host:port;branch=..." */
    const char *record_route; /* our Record-Route URI, or NULL */
    const char *route_set;    /* comma-separated URIs to put on top of the Route set, or NULL */
    int max_forwards;         /* the new Max-Forwards value */
    const char *via_below;    /* replaces the received Via list (topology hiding), or NULL */
};

/*
 * The bytes of <msg> forwarded with <f> applied, into a malloc'd <*out> (free()).
 * Works from the raw copy when usable, else clones and serializes with osip.
 * Returns 0 or -1.
 */
int sip_msg_forward_bytes(const struct sip_msg *msg, const struct sip_fwd *f, char **out, size_t *outlen);

/*
 * A response to request <req> built from its bytes (RFC 3261 §8.2.6.2: Via list, From,
 * To (+ <to_tag> when it has none and code > 100), Call-ID, CSeq), with <extra> header
 * lines ("Name: value\r\n...", or NULL) and no body. Falls back to osip when the raw
 * copy is not usable. Returns 0 or -1.
 */
int sip_reply_bytes(const struct sip_msg *req, int code, const char *reason, const char *to_tag,
                    const char *extra, char **out, size_t *outlen);

/* The bytes of response <resp> without its top Via (a proxy forwarding it upstream). 0 or -1. */
int sip_msg_response_forward_bytes(struct sip_msg *resp, char **out, size_t *outlen);

#endif
