/*
 * dir_json: decoding of directory values (users, servers, routes) and of the etcd v3
 * JSON gateway's answers (range/put/txn/lease bodies and watch stream lines), plus the
 * base64 codec and the line splitter the watch stream needs.
 *
 * Everything here is pure (no I/O, no loop), so it is unit-tested and fuzzed directly.
 * Values come from etcd, i.e. from outside: every decoder validates and returns NULL/-1
 * with a reason instead of trusting the input. The schema is docs/internals/directory.md.
 */
#ifndef PARLEY_DIRECTORY_DIR_JSON_H
#define PARLEY_DIRECTORY_DIR_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Key prefixes of the schema. */
#define DIR_PREFIX "/parley/"
#define DIR_PREFIX_USERS "/parley/users/"
#define DIR_PREFIX_SERVERS "/parley/servers/"
#define DIR_PREFIX_ROUTES "/parley/routes/"
#define DIR_KEY_SCHEMA "/parley/schema"
/* The pool-wide order of the home servers' application chain (design §4): a JSON list of
 * application names, written by `parleyctl app order`. */
#define DIR_KEY_APPS_ORDER "/parley/apps/order"

/* Largest value or key accepted from etcd (a user record is ~300 bytes). */
#define DIR_MAX_VALUE (64 * 1024)

enum dir_role {
    DIR_ROLE_HOMESERVER = 0,
    DIR_ROLE_FRONTEND,
    DIR_ROLE_EDGE,
};

/* "homeserver", "frontend", "edge". */
const char *dir_role_name(enum dir_role role);
int dir_role_parse(const char *s, enum dir_role *out);

/*
 * A user (`/parley/users/<user@domain>`). All strings are owned by the struct and
 * non-NULL except ha1_sha256, which is NULL when the directory has no SHA-256 hash
 * (the client is then only offered MD5 digest). The hashes are lowercase hex:
 * ha1_md5 = MD5(user:realm:password) (32 chars), ha1_sha256 = SHA-256(...) (64 chars).
 */
struct dir_user {
    char *aor;          /* "user@domain", lowercase: the hash key */
    char *user;         /* part before '@' */
    char *domain;       /* part after '@' */
    bool enabled;       /* enabled for SIP; a disabled user is known but refused */
    char *home;         /* name of its home server (a /parley/servers/<name>) */
    char *display;      /* display name, "" when absent */
    char *ha1_md5;
    char *ha1_sha256;   /* NULL when absent */
    char *realm;        /* digest realm the hashes were computed with */
    int64_t mod_revision; /* etcd revision of the value */
    char *raw;          /* the JSON value as stored, for diffs and the disk cache */
};

/* An internal server (`/parley/servers/<name>`), announced under a lease. */
struct dir_server {
    char *name;
    enum dir_role role;
    char *address;      /* SIP URI where it listens for other servers ("sip:h:p;transport=tls") */
    char *cert_subject; /* CN/subjectAltName its TLS certificate presents, "" when absent */
    char *admin;        /* admin HTTP base URL, "" when absent */
    int64_t mod_revision;
    char *raw;
};

/* What a static route matches (design.md §2 "protocol stack", static routing table). */
enum dir_match {
    DIR_MATCH_TEL = 0,  /* "tel": every tel: URI and every sip: URI with user=phone */
    DIR_MATCH_DOMAIN,   /* "domain:<name>": Request-URI host equals <name> (case-insensitive) */
    DIR_MATCH_PREFIX,   /* "prefix:<digits>": phone number whose user part starts with <digits> */
};

/* A pool-wide static route (`/parley/routes/<name>`). */
struct dir_route {
    char *name;
    char *match;        /* the pattern as written */
    enum dir_match kind;
    char *match_arg;    /* domain (lowercase) or digits; "" for DIR_MATCH_TEL */
    char *next_hop;     /* SIP URI of the next hop */
    bool treat_as_server; /* LCS "TreatAllConnectionsAsServer" for this hop */
    char **allow_from;  /* source addresses allowed when treat_as_server; may be empty */
    size_t n_allow_from;
    int64_t mod_revision;
    char *raw;
};

/*
 * Decoders. <key_part> is the part of the etcd key after the prefix (the AoR, the server
 * or route name); <json>/<len> the value. They return a new object (free with the
 * matching _free, which accepts NULL) or NULL with a one-line reason in <err>/<errlen>
 * when the value is not valid JSON, is not an object, or lacks or mistypes a required
 * field. Unknown fields are ignored (forward compatibility).
 */
struct dir_user *dir_user_decode(const char *key_part, const char *json, size_t len,
                                 char *err, size_t errlen);
struct dir_server *dir_server_decode(const char *key_part, const char *json, size_t len,
                                     char *err, size_t errlen);
struct dir_route *dir_route_decode(const char *key_part, const char *json, size_t len,
                                   char *err, size_t errlen);
void dir_user_free(struct dir_user *u);
void dir_server_free(struct dir_server *s);
void dir_route_free(struct dir_route *r);

/* Parses a route match pattern; -1 on anything but "tel", "domain:<name>", "prefix:<digits>". */
int dir_match_parse(const char *pattern, enum dir_match *kind, const char **arg);

/*
 * base64 (standard alphabet, padded), the encoding of etcd's key/value/range_end.
 * dir_b64_encode returns a malloc'd NUL-terminated string, NULL on allocation failure.
 * dir_b64_decode writes a malloc'd buffer (NUL-terminated, so text values can be used
 * as C strings) to <out> and its length to <out_len>; -1 on invalid input.
 */
char *dir_b64_encode(const void *data, size_t len);
int dir_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len);

/*
 * Line splitter for the watch stream: libcurl hands chunks that do not follow message
 * boundaries, the gateway ends each message with '\n'. Lines longer than <max> are
 * dropped whole (counted in <overflows>) so a hostile stream cannot grow the buffer.
 */
struct dir_linebuf {
    char *p;
    size_t n;           /* bytes buffered */
    size_t cap;
    size_t max;         /* longest accepted line */
    bool skipping;      /* discarding an oversize line up to its '\n' */
    unsigned long overflows;
};

/* Called for each complete line (without the '\n', NUL-terminated in place). Return 0 to
 * continue, -1 to stop: the rest of the chunk is discarded. */
typedef int dir_line_fn(void *arg, char *line, size_t len);

void dir_linebuf_init(struct dir_linebuf *lb, size_t max);
/* Feeds a chunk. Returns 0, or -1 when <fn> asked to stop or memory ran out. */
int dir_linebuf_feed(struct dir_linebuf *lb, const char *data, size_t len, dir_line_fn *fn,
                     void *arg);
void dir_linebuf_reset(struct dir_linebuf *lb);
void dir_linebuf_free(struct dir_linebuf *lb);

/* A key-value as the gateway returns it, key and value base64-decoded (NUL-terminated). */
struct dir_kv {
    char *key;
    size_t key_len;
    char *value;        /* "" (not NULL) for an empty or absent value */
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};
void dir_kv_clear(struct dir_kv *kv);

/*
 * A unary gateway answer. Zero/default fields are omitted by the gateway, so absent
 * means 0/false here. A `{"result":{...}}` wrapper (lease keepalive) is unwrapped.
 * On an etcd error body (`{"error":..,"code":N}`) code/error are set.
 */
struct dir_resp {
    long http_status;   /* 0 when no HTTP answer arrived (set by dir_etcd) */
    int64_t revision;   /* header.revision */
    struct dir_kv *kvs; /* range: kvs; txn: the first response_range's kvs */
    size_t n_kvs;
    int64_t count;
    int64_t deleted;
    bool succeeded;     /* txn */
    bool more;          /* range: more keys beyond this page ("more": true) */
    int64_t lease_id;   /* lease grant / keepalive "ID" */
    int64_t ttl;        /* lease "TTL"; 0 in a keepalive answer = the lease is gone */
    int code;           /* gRPC code of an error answer, 0 otherwise */
    char *error;        /* error message, NULL otherwise */
};

/* Parses <body>; -1 if it is not a JSON object or a field is malformed. <out> is cleared
 * first and must be released with dir_resp_clear() in every case. */
int dir_resp_parse(const char *body, size_t len, struct dir_resp *out);
void dir_resp_clear(struct dir_resp *r);

enum dir_watch_kind {
    DIR_WATCH_CREATED = 0, /* the watch is established (also after a reconnect) */
    DIR_WATCH_EVENTS,      /* events[] holds PUT/DELETE events in revision order */
    DIR_WATCH_PROGRESS,    /* header only */
    DIR_WATCH_CANCELED,    /* etcd canceled the watch; compact_revision > 0 if compacted */
    DIR_WATCH_ERROR,       /* the gateway sent an error object */
    DIR_WATCH_DOWN,        /* (dir_etcd only) the stream dropped; it reconnects by itself */
};

struct dir_event {
    bool is_delete;
    struct dir_kv kv;   /* a DELETE carries only key and mod_revision */
};

struct dir_watch_msg {
    enum dir_watch_kind kind;
    int64_t revision;          /* header.revision */
    int64_t compact_revision;  /* CANCELED because the start revision was compacted */
    struct dir_event *events;
    size_t n_events;
    char *reason;              /* cancel reason / error message, NULL otherwise */
};

/* Parses one watch stream line. -1 if it is not a watch message; <out> must be released
 * with dir_watch_msg_clear() in every case. */
int dir_watch_msg_parse(const char *line, size_t len, struct dir_watch_msg *out);
void dir_watch_msg_clear(struct dir_watch_msg *m);

/* Lowercases <s> in place (ASCII) and returns it. */
char *dir_lower(char *s);

#endif
