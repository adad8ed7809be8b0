/*
 * auth_nonce: stateless server nonces and the nonce-count table.
 * See auth_nonce.h for the layout and the contracts.
 */
#define OPENSSL_SUPPRESS_DEPRECATED   /* SHA256_*: see nonce_mac */
#include "auth/auth_nonce.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

_Static_assert(sizeof(SHA256_CTX) <= AUTH_HMAC_STATE, "AUTH_HMAC_STATE too small for SHA256_CTX");

#define TS_LEN 8
#define RAND_LEN 16
#define MAC_LEN 32
#define RAW_LEN (TS_LEN + RAND_LEN + MAC_LEN)   /* 56 bytes -> 75 base64url chars */

int
auth_secret_init(struct auth_secret *s, const void *key, size_t key_len, const char *server_id)
{
    size_t idlen;

    if (s == NULL || key == NULL || server_id == NULL)
        return -1;
    idlen = strlen(server_id);
    if (key_len < 16 || key_len > AUTH_SECRET_MAX || idlen > AUTH_SERVER_ID_MAX)
        return -1;
    memset(s, 0, sizeof(*s));
    memcpy(s->key, key, key_len);
    s->key_len = key_len;
    memcpy(s->server_id, server_id, idlen + 1);
    /* RFC 2104: H(K ^ opad, H(K ^ ipad, text)), K padded to the block (64 bytes, keys are
     * at most 64): the two keyed states are computed once here. */
    {
        unsigned char pad[SHA256_CBLOCK];
        SHA256_CTX c;
        memset(pad, 0, sizeof pad);
        memcpy(pad, key, key_len);
        for (size_t i = 0; i < sizeof pad; i++)
            pad[i] ^= 0x36;
        SHA256_Init(&c);
        SHA256_Update(&c, pad, sizeof pad);
        memcpy(s->hmac_inner, &c, sizeof c);
        for (size_t i = 0; i < sizeof pad; i++)
            pad[i] ^= 0x36 ^ 0x5c;
        SHA256_Init(&c);
        SHA256_Update(&c, pad, sizeof pad);
        memcpy(s->hmac_outer, &c, sizeof c);
        OPENSSL_cleanse(pad, sizeof pad);
        OPENSSL_cleanse(&c, sizeof c);
    }
    return 0;
}

int
auth_secret_generate(struct auth_secret *s, const char *server_id)
{
    unsigned char key[32];
    int rc;

    if (RAND_bytes(key, sizeof(key)) != 1)
        return -1;
    rc = auth_secret_init(s, key, sizeof(key), server_id);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

void
auth_secret_wipe(struct auth_secret *s)
{
    if (s != NULL)
        OPENSSL_cleanse(s, sizeof(*s));
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* RFC 4648 §5 without padding. <out> must hold 4 * ceil(n / 3) + 1 bytes. */
static size_t
b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int
b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes exactly AUTH_NONCE_LEN characters into RAW_LEN bytes. Returns 0 or -1. */
static int
nonce_decode(const char *nonce, unsigned char raw[RAW_LEN])
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (strlen(nonce) != AUTH_NONCE_LEN)
        return -1;
    for (size_t i = 0; i < AUTH_NONCE_LEN; i++) {
        int v = b64url_val((unsigned char)nonce[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= RAW_LEN)
                return -1;
            raw[o++] = (unsigned char)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    /* 75 chars = 450 bits = 56 bytes + 2 spare bits, which must be zero (canonical) */
    if (o != RAW_LEN || acc != 0)
        return -1;
    return 0;
}

/*
 * The 16 bytes that make a nonce unique: a per-process random salt (8 bytes, drawn
 * once) and a counter. Unique, not secret - the MAC is what makes a nonce ours - and
 * without a RAND_bytes call per challenge (a fifth of its cost).
 */
static unsigned char nonce_salt[8];
static bool nonce_salted;
static uint64_t nonce_seq;

/* A forked worker (frontend --workers) draws its own salt: no two processes share one. */
static void
nonce_after_fork(void)
{
    nonce_salted = false;
}

static void
nonce_register_fork(void)
{
    (void)pthread_atfork(NULL, NULL, nonce_after_fork);
}

static int
nonce_unique(unsigned char out[RAND_LEN])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    unsigned char *salt = nonce_salt;
    uint64_t n;

    (void)pthread_once(&once, nonce_register_fork);
    if (!__atomic_load_n(&nonce_salted, __ATOMIC_ACQUIRE)) {
        if (RAND_bytes(nonce_salt, sizeof nonce_salt) != 1)
            return -1;
        __atomic_store_n(&nonce_salted, true, __ATOMIC_RELEASE);
    }
    n = __atomic_add_fetch(&nonce_seq, 1, __ATOMIC_RELAXED);
    memcpy(out, salt, sizeof nonce_salt);
    for (int i = 0; i < 8; i++)
        out[8 + i] = (unsigned char)(n >> (8 * (7 - i)));
    return 0;
}

static int
nonce_mac(const struct auth_secret *s, const unsigned char *tsrand, unsigned char mac[MAC_LEN])
{
    unsigned char buf[TS_LEN + RAND_LEN + AUTH_SERVER_ID_MAX];
    size_t idlen = strnlen(s->server_id, AUTH_SERVER_ID_MAX);
    unsigned int mlen = 0;

    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_CTX c;

    memcpy(buf, tsrand, TS_LEN + RAND_LEN);
    memcpy(buf + TS_LEN + RAND_LEN, s->server_id, idlen);
    /* HMAC-SHA256 from the keyed states (auth_secret_init): OpenSSL's HMAC() one-shot
     * fetches and allocates per call, ~28,000 instructions against ~3,000 here */
    memcpy(&c, s->hmac_inner, sizeof c);
    SHA256_Update(&c, buf, TS_LEN + RAND_LEN + idlen);
    SHA256_Final(inner, &c);
    memcpy(&c, s->hmac_outer, sizeof c);
    SHA256_Update(&c, inner, sizeof inner);
    SHA256_Final(mac, &c);
    mlen = SHA256_DIGEST_LENGTH;
    OPENSSL_cleanse(&c, sizeof c);
    return mlen == MAC_LEN ? 0 : -1;
}

int
auth_nonce_make(const struct auth_secret *s, uint64_t now_s, char *out, size_t out_size)
{
    unsigned char raw[RAW_LEN];

    if (s == NULL || out == NULL || out_size < AUTH_NONCE_SIZE || s->key_len == 0)
        return -1;
    for (int i = 0; i < TS_LEN; i++)
        raw[i] = (unsigned char)(now_s >> (8 * (TS_LEN - 1 - i)));
    if (nonce_unique(raw + TS_LEN) != 0)
        return -1;
    if (nonce_mac(s, raw, raw + TS_LEN + RAND_LEN) != 0)
        return -1;
    b64url_encode(raw, RAW_LEN, out);
    return 0;
}

enum auth_nonce_status
auth_nonce_check(const struct auth_secret *s, const char *nonce, uint64_t now_s,
                 uint64_t lifetime_s, uint64_t *issued_s)
{
    unsigned char raw[RAW_LEN];
    unsigned char mac[MAC_LEN];
    uint64_t ts = 0;

    if (s == NULL || nonce == NULL || s->key_len == 0)
        return AUTH_NONCE_BAD;
    if (nonce_decode(nonce, raw) != 0)
        return AUTH_NONCE_BAD;
    if (nonce_mac(s, raw, mac) != 0)
        return AUTH_NONCE_BAD;
    if (CRYPTO_memcmp(mac, raw + TS_LEN + RAND_LEN, MAC_LEN) != 0)
        return AUTH_NONCE_BAD;
    for (int i = 0; i < TS_LEN; i++)
        ts = (ts << 8) | raw[i];
    if (issued_s != NULL)
        *issued_s = ts;
    /* ours: a future stamp means our clock went back; ask for a fresh one */
    if (ts > now_s || now_s - ts > lifetime_s)
        return AUTH_NONCE_STALE;
    return AUTH_NONCE_OK;
}

/* ---- nonce-count table ---- */

#define NIL ((size_t)-1)

struct nc_entry {
    char nonce[AUTH_NONCE_SIZE];
    uint64_t issued_s;
    uint32_t nc;            /* highest accepted */
    size_t hnext;           /* next in hash chain */
    size_t prev, next;      /* LRU list: head = most recent */
    bool used;
};

struct auth_nc_table {
    struct nc_entry *e;
    size_t *buckets;
    size_t nbuckets;
    size_t capacity;
    size_t count;
    size_t head, tail;      /* LRU list ends */
    size_t free_head;       /* free entries chained by hnext */
    uint64_t lifetime_s;
    uint64_t floor_s;       /* unknown nonces issued before this are UNKNOWN */
    bool have_floor;
};

static size_t
nc_hash(const char *s, size_t nbuckets)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return (size_t)(h % nbuckets);
}

struct auth_nc_table *
auth_nc_table_new(size_t capacity, uint64_t lifetime_s)
{
    struct auth_nc_table *t;

    if (capacity == 0 || capacity > (1u << 24))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->capacity = capacity;
    t->nbuckets = capacity * 2 + 1;
    t->e = calloc(capacity, sizeof(*t->e));
    t->buckets = malloc(t->nbuckets * sizeof(*t->buckets));
    if (t->e == NULL || t->buckets == NULL) {
        auth_nc_table_free(t);
        return NULL;
    }
    for (size_t i = 0; i < t->nbuckets; i++)
        t->buckets[i] = NIL;
    for (size_t i = 0; i < capacity; i++)
        t->e[i].hnext = i + 1 < capacity ? i + 1 : NIL;
    t->free_head = 0;
    t->head = t->tail = NIL;
    t->lifetime_s = lifetime_s;
    return t;
}

void
auth_nc_table_free(struct auth_nc_table *t)
{
    if (t == NULL)
        return;
    free(t->e);
    free(t->buckets);
    free(t);
}

size_t
auth_nc_table_count(const struct auth_nc_table *t)
{
    return t != NULL ? t->count : 0;
}

static void
lru_unlink(struct auth_nc_table *t, size_t i)
{
    struct nc_entry *x = &t->e[i];

    if (x->prev != NIL)
        t->e[x->prev].next = x->next;
    else
        t->head = x->next;
    if (x->next != NIL)
        t->e[x->next].prev = x->prev;
    else
        t->tail = x->prev;
    x->prev = x->next = NIL;
}

static void
lru_push_front(struct auth_nc_table *t, size_t i)
{
    struct nc_entry *x = &t->e[i];

    x->prev = NIL;
    x->next = t->head;
    if (t->head != NIL)
        t->e[t->head].prev = i;
    t->head = i;
    if (t->tail == NIL)
        t->tail = i;
}

static void
evict(struct auth_nc_table *t, size_t i, uint64_t now_s)
{
    struct nc_entry *x = &t->e[i];
    size_t b = nc_hash(x->nonce, t->nbuckets);
    size_t *pp = &t->buckets[b];

    while (*pp != NIL && *pp != i)
        pp = &t->e[*pp].hnext;
    if (*pp == i)
        *pp = x->hnext;
    lru_unlink(t, i);
    /* forgetting a nonce that is still valid: refuse every unknown nonce that old */
    if (x->issued_s <= now_s && now_s - x->issued_s <= t->lifetime_s) {
        if (!t->have_floor || x->issued_s + 1 > t->floor_s)
            t->floor_s = x->issued_s + 1;
        t->have_floor = true;
    }
    x->used = false;
    x->hnext = t->free_head;
    t->free_head = i;
    t->count--;
}

enum auth_nc_status
auth_nc_table_check(struct auth_nc_table *t, const char *nonce, uint64_t issued_s, uint32_t nc,
                    uint64_t now_s)
{
    size_t len, b, i;

    if (t == NULL || nonce == NULL)
        return AUTH_NC_UNKNOWN;
    len = strlen(nonce);
    if (len == 0 || len > AUTH_NONCE_LEN)
        return AUTH_NC_UNKNOWN;
    b = nc_hash(nonce, t->nbuckets);
    for (i = t->buckets[b]; i != NIL; i = t->e[i].hnext) {
        if (strcmp(t->e[i].nonce, nonce) == 0)
            break;
    }
    if (i != NIL) {
        struct nc_entry *x = &t->e[i];

        if (nc <= x->nc)
            return AUTH_NC_REPLAY;
        x->nc = nc;
        lru_unlink(t, i);
        lru_push_front(t, i);
        return AUTH_NC_OK;
    }
    if (nc == 0)
        return AUTH_NC_REPLAY;     /* RFC 2617 §3.2.2: the first request uses nc=00000001 */
    if (t->have_floor && issued_s < t->floor_s)
        return AUTH_NC_UNKNOWN;
    if (t->count == t->capacity)
        evict(t, t->tail, now_s);
    if (t->have_floor && issued_s < t->floor_s)
        return AUTH_NC_UNKNOWN;   /* the eviction just raised the floor past it */
    i = t->free_head;
    t->free_head = t->e[i].hnext;
    memcpy(t->e[i].nonce, nonce, len + 1);
    t->e[i].issued_s = issued_s;
    t->e[i].nc = nc;
    t->e[i].used = true;
    t->e[i].hnext = t->buckets[b];
    t->buckets[b] = i;
    lru_push_front(t, i);
    t->count++;
    return AUTH_NC_OK;
}
