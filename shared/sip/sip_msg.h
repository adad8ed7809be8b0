/*
 * sip_msg: the SIP message layer — a thin wrapper over libosip2's parser.
 *
 * What libosip2 does not do and we do here (dependencies.md §2):
 *  - limits before parsing: message size and header count (parse time is quadratic
 *    in the number of headers);
 *  - checks of the mandatory headers (Via, From, To, Call-ID, CSeq), CSeq/method
 *    agreement, SIP version, Content-Length against the body, Max-Forwards syntax;
 *  - a 400 for requests osip cannot parse at all, built from the raw text
 *    (sip_reply_raw), so a sender with a usable Via learns what was wrong.
 *
 * Ownership: sip_msg_parse() and sip_reply_new() return a message owned by the
 * caller, released with sip_msg_free(). Strings returned by accessors are borrowed
 * from the message and live as long as it does (until it is modified).
 *
 * Upper layers use these accessors; the osip_message_t stays reachable as msg->osip
 * for the rare field without an accessor (README, design: departures).
 */
#ifndef PARLEY_SIP_MSG_H
#define PARLEY_SIP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>

enum sip_method {
    SIP_UNKNOWN = 0,
    SIP_INVITE,
    SIP_ACK,
    SIP_BYE,
    SIP_CANCEL,
    SIP_REGISTER,
    SIP_OPTIONS,
    SIP_MESSAGE,
    SIP_INFO,
    SIP_SUBSCRIBE,
    SIP_NOTIFY,
    SIP_PUBLISH,
    SIP_SERVICE,
    SIP_PRACK,
    SIP_UPDATE,
    SIP_REFER,
};

struct sip_limits {
    size_t max_msg_size;      /* default 65536 */
    unsigned max_headers;     /* default 256 header lines */
    bool partial_responses;   /* responses: osip sees only Via, From, To, Call-ID, CSeq and
                                 Contact (what a proxy reads); sip_msg_ensure_full() parses the rest */
};

/* Why a message was refused. status 0 = drop silently (no usable Via). */
struct sip_error {
    int status;               /* 400, 413, 416, 420, 505 ... or 0 */
    char reason[128];         /* reason phrase naming the defect */
};

struct sip_msg {
    osip_message_t *osip;
    bool request;
    enum sip_method method;   /* request method; for responses, the CSeq method */
    int status;               /* responses only */
    uint32_t cseq;
    const char *branch;       /* top Via branch param (borrowed), NULL if none */
    struct sip_raw *raw;      /* the bytes as received, indexed (sip_raw.h); NULL if none */
    unsigned dirty;           /* SIP_DIRTY_* bits: what was edited since parsing */
    bool partial;             /* parsed with sip_limits.partial_responses */
};

/* Once per process, before any parse (installs the osip trace hook into our log). */
void sip_init(void);
void sip_limits_default(struct sip_limits *lim);

/*
 * Parses and validates <buf,len>. Returns the message, or NULL with <err> filled:
 * err->status is the response a request deserves (0 = drop). When a request parses
 * but fails a semantic check, NULL is returned too, and sip_reply_raw() can still
 * build the answer from the raw bytes.
 */
struct sip_msg *sip_msg_parse(const char *buf, size_t len, const struct sip_limits *lim,
                              struct sip_error *err);
void sip_msg_free(struct sip_msg *msg);
/* Parses every header of a message parsed partially (see sip_limits). 0 or -1. */
int sip_msg_ensure_full(struct sip_msg *msg);
#define SIP_MSG_FREE(m) do { sip_msg_free(m); (m) = NULL; } while (0)

/*
 * Serializes <msg> (after any edit; forces osip to rebuild). <*out> is malloc'd; free
 * it with free(). Returns 0 or -1.
 */
int sip_msg_serialize(struct sip_msg *msg, char **out, size_t *outlen);

enum sip_method sip_method_from_str(const char *s);
const char *sip_method_name(enum sip_method m);
/* The method string as received (for unknown methods too). */
const char *sip_msg_method_str(const struct sip_msg *msg);

/* Headers without a typed osip field (Max-Forwards, Expires, Require, ...). */
const char *sip_msg_header(const struct sip_msg *msg, const char *name, int index);
int sip_msg_header_count(const struct sip_msg *msg, const char *name);
/* Appends "name: value" (copies both). 0 or -1. */
int sip_msg_add_header(struct sip_msg *msg, const char *name, const char *value);
/* Removes every header of that name (untyped headers only). */
void sip_msg_remove_header(struct sip_msg *msg, const char *name);
/* Replaces the value of the first header <name>, or adds it. */
int sip_msg_set_header(struct sip_msg *msg, const char *name, const char *value);

/* Call-ID as one string "number@host" written into <out>. */
const char *sip_msg_call_id(const struct sip_msg *msg, char *out, size_t outlen);
const char *sip_msg_from_tag(const struct sip_msg *msg);
const char *sip_msg_to_tag(const struct sip_msg *msg);
int sip_msg_set_to_tag(struct sip_msg *msg, const char *tag);

/*
 * Max-Forwards: returns the value (0..255), 70 when absent (RFC 3261 §16.6 step 3
 * adds it), -1 when malformed.
 */
int sip_msg_max_forwards(const struct sip_msg *msg);
/* Sets Max-Forwards to <value>. */
int sip_msg_set_max_forwards(struct sip_msg *msg, int value);

/* Body (borrowed) and content type ("text/plain"), NULL when none. */
const char *sip_msg_body(const struct sip_msg *msg, size_t *len);
const char *sip_msg_content_type(const struct sip_msg *msg, char *out, size_t outlen);
/* Replaces the body and Content-Type. */
int sip_msg_set_body(struct sip_msg *msg, const char *type, const char *body, size_t len);

/* Via */
int sip_msg_via_count(const struct sip_msg *msg);
/* Inserts a Via at the top: "SIP/2.0/UDP host:port;branch=z9hG4bK...;rport". */
int sip_msg_push_via(struct sip_msg *msg, const char *value);
/* Removes the top Via (proxy, on a response). */
int sip_msg_pop_via(struct sip_msg *msg);
/* Replaces the whole Via list by the one value <value> (topology hiding). 0 or -1. */
int sip_msg_replace_vias(struct sip_msg *msg, const char *value);
/* Replaces the Via at <index> by the <n> Via values <values>, in order. 0 or -1. */
int sip_msg_splice_via(struct sip_msg *msg, int index, const char *const *values, int n);
/*
 * RFC 3261 §18.2.1 / RFC 3581 §4: on a received request, set received= when the
 * sent-by host differs from <src_ip> or rport is present, and fill rport's value.
 */
void sip_msg_fix_via(struct sip_msg *msg, const char *src_ip, uint16_t src_port);
/* Top Via parts: transport ("UDP"), sent-by host/port, received, rport (0 if none/empty). */
struct sip_via_info {
    const char *transport;
    const char *host;
    uint16_t port;            /* 0 = absent */
    const char *received;
    uint16_t rport;           /* 0 = absent or no value */
    bool has_rport;
    const char *branch;
};
int sip_msg_via_info(const struct sip_msg *msg, int index, struct sip_via_info *out);

/* Route / Record-Route */
int sip_msg_route_count(const struct sip_msg *msg);
osip_uri_t *sip_msg_route_uri(const struct sip_msg *msg, int index);
int sip_msg_pop_route(struct sip_msg *msg);
void sip_msg_remove_routes(struct sip_msg *msg);
void sip_msg_remove_record_routes(struct sip_msg *msg);
/* Prepends "<uri>" as Route / Record-Route (value without angle brackets). */
int sip_msg_push_route(struct sip_msg *msg, const char *uri);
int sip_msg_push_record_route(struct sip_msg *msg, const char *uri);

/* Request-URI (requests) */
osip_uri_t *sip_msg_ruri(const struct sip_msg *msg);
/* Replaces the Request-URI with a parse of <uri>. 0 or -1. */
int sip_msg_set_ruri(struct sip_msg *msg, const char *uri);

/* Contact */
int sip_msg_contact_count(const struct sip_msg *msg);
osip_contact_t *sip_msg_contact(const struct sip_msg *msg, int index);
bool sip_msg_contact_is_star(const struct sip_msg *msg);

/* URIs */
const char *sip_uri_param(const osip_uri_t *uri, const char *name);
bool sip_uri_has_param(const osip_uri_t *uri, const char *name);
int sip_uri_remove_param(osip_uri_t *uri, const char *name);
int sip_uri_set_param(osip_uri_t *uri, const char *name, const char *value);
/* Port of the URI, or <def> when absent. */
uint16_t sip_uri_port(const osip_uri_t *uri, uint16_t def);
/* "user@host" lowercased into <out>; NULL if the URI has no user. */
const char *sip_uri_aor(const osip_uri_t *uri, char *out, size_t outlen);
/* Serialized URI, malloc'd (free with free()). */
char *sip_uri_str(const osip_uri_t *uri);
/* tel: URI, or sip: with user=phone */
bool sip_uri_is_phone(const osip_uri_t *uri);
/* Generic-param of a name-addr header value (e.g. Contact "expires", "q", "+sip.instance"). */
const char *sip_contact_param(const osip_contact_t *ct, const char *name);

/* Responses */
/*
 * A response to <req> with <code> and <reason> (NULL = the standard phrase): Via,
 * From, To, Call-ID, CSeq copied (RFC 3261 §8.2.6.2); <to_tag> added to To when
 * the request's To has none and code > 100.
 */
struct sip_msg *sip_reply_new(const struct sip_msg *req, int code, const char *reason,
                              const char *to_tag);
/*
 * A response built from raw bytes that osip could not parse: copies the Via, From,
 * To, Call-ID and CSeq lines verbatim. Returns a malloc'd buffer or NULL when the
 * request has no Via (then it is dropped).
 */
char *sip_reply_raw(const char *buf, size_t len, int code, const char *reason, size_t *outlen);

/* A stable To-tag derived from the request (so retransmitted answers carry the same tag). */
void sip_make_tag(const struct sip_msg *req, char *out, size_t outlen);
/* A new RFC 3261 branch "z9hG4bK..." (random + counter) into <out> (>= 40 bytes). */
void sip_make_branch(char *out, size_t outlen);

/*
 * Hot-path string helpers (no printf machinery: snprintf costs ~1,000 instructions a
 * call, and a proxied request made a dozen of them).
 * sip_strjoin: the NULL-terminated list of strings concatenated into out (outlen > 0),
 * truncated to fit and always NUL-terminated; returns the length written.
 * sip_hex64: v as 16 lowercase hex digits and a NUL ("%016llx").
 * sip_utoa: v in decimal into out (>= 11 bytes); returns out.
 */
size_t sip_strjoin(char *out, size_t outlen, ...);
void sip_hex64(char out[17], uint64_t v);
char *sip_utoa(char *out, unsigned v);

#endif
