/*
 * auth_nonce: server nonces for digest authentication, and nonce-count replay
 * protection (RFC 2617 §3.2.1 nonce, §3.2.2 nc; RFC 7616 §3.3, §5.5).
 *
 * A nonce is base64url (RFC 4648 §5, no padding) of
 *     timestamp (8 bytes, big-endian seconds) || random (16 bytes) ||
 *     HMAC-SHA256(secret, timestamp || random || server_id) (32 bytes)
 * so the server that issued it can check, without keeping state, that it issued
 * it and when. A nonce from another server (other secret or server_id) is BAD.
 */
#ifndef PARLEY_AUTH_NONCE_H
#define PARLEY_AUTH_NONCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_SECRET_MAX 64          /* bytes of HMAC key */
#define AUTH_SERVER_ID_MAX 128      /* bytes of server id, NUL excluded */
#define AUTH_NONCE_LEN 75           /* characters of a nonce we issue (56 bytes, base64url) */
#define AUTH_NONCE_SIZE (AUTH_NONCE_LEN + 1)

/*
 * The key nonces are signed with, bound to one server. Plain data: may be copied,
 * but it holds key material, so wipe it (auth_secret_wipe) when done.
 */
#define AUTH_HMAC_STATE 128          /* bytes of a keyed SHA-256 state (auth_nonce.c) */
struct auth_secret {
    unsigned char key[AUTH_SECRET_MAX];
    size_t key_len;                           /* 16..AUTH_SECRET_MAX */
    char server_id[AUTH_SERVER_ID_MAX + 1];   /* e.g. the server's name in the directory */
    /* HMAC-SHA256 with this key, its inner and outer states after the padded key block
     * (RFC 2104), set by auth_secret_init: each MAC then hashes only the message */
    unsigned char hmac_inner[AUTH_HMAC_STATE], hmac_outer[AUTH_HMAC_STATE];
};

/* Sets <s> from a given key (16..64 bytes) and <server_id>. Returns 0 or -1. */
int auth_secret_init(struct auth_secret *s, const void *key, size_t key_len,
                     const char *server_id);
/* Sets <s> to a fresh random 32-byte key (OpenSSL RAND_bytes). Returns 0 or -1. */
int auth_secret_generate(struct auth_secret *s, const char *server_id);
void auth_secret_wipe(struct auth_secret *s);

/*
 * Writes a new nonce stamped <now_s> (wall-clock seconds) into <out> (at least
 * AUTH_NONCE_SIZE bytes), NUL-terminated. Returns 0, or -1 if <out_size> is too
 * small or the random generator failed.
 */
int auth_nonce_make(const struct auth_secret *s, uint64_t now_s, char *out, size_t out_size);

enum auth_nonce_status {
    AUTH_NONCE_OK = 0,  /* ours and younger than the lifetime */
    AUTH_NONCE_STALE,   /* ours but expired (or stamped in the future): send stale=true */
    AUTH_NONCE_BAD,     /* not ours, tampered, or not a nonce at all */
};

/*
 * Checks <nonce> (NUL-terminated) against <s> at time <now_s>. The MAC is compared
 * in constant time. When <issued_s> is not NULL and the result is OK or STALE,
 * it receives the nonce's timestamp.
 */
enum auth_nonce_status auth_nonce_check(const struct auth_secret *s, const char *nonce,
                                        uint64_t now_s, uint64_t lifetime_s,
                                        uint64_t *issued_s);

/*
 * Nonce-count table: remembers, per nonce, the highest nc accepted, so a
 * request replayed with an nc already seen is refused (RFC 7616 §5.5). Bounded:
 * at most <capacity> nonces; the least recently used is evicted when full. To
 * keep eviction safe, the table raises a floor: a nonce it does not know that
 * was issued at or before the newest evicted one is reported UNKNOWN (the caller
 * answers stale=true so the client takes a fresh nonce). Entries whose nonce is
 * older than <lifetime_s> are evicted without raising the floor, since
 * auth_nonce_check already refuses them. Not thread-safe: one per event loop.
 */
struct auth_nc_table;

enum auth_nc_status {
    AUTH_NC_OK = 0,     /* nc is higher than any seen for this nonce; recorded */
    AUTH_NC_REPLAY,     /* nc was not higher: replay (or reordering) */
    AUTH_NC_UNKNOWN,    /* the table may have forgotten this nonce: re-challenge, stale=true */
};

/* Returns a table for <capacity> (>= 1) nonces, or NULL on allocation failure. */
struct auth_nc_table *auth_nc_table_new(size_t capacity, uint64_t lifetime_s);
void auth_nc_table_free(struct auth_nc_table *t);
/* Number of nonces currently remembered. */
size_t auth_nc_table_count(const struct auth_nc_table *t);

/*
 * Checks and records <nc> for <nonce> (NUL-terminated, at most AUTH_NONCE_LEN
 * characters or it is refused as UNKNOWN), issued at <issued_s>, at <now_s>.
 */
enum auth_nc_status auth_nc_table_check(struct auth_nc_table *t, const char *nonce,
                                        uint64_t issued_s, uint32_t nc, uint64_t now_s);

#endif
