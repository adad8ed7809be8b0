/*
 * us_pidf: presence documents — PIDF (RFC 3863) with the data model of RFC 4479 and
 * RPID activities (RFC 4480), parsed and built with libxml2.
 *
 * The presence agent keeps each publication as the document the client sent (after
 * us_pidf_parse() accepted it) and composes the presentity's view for watchers with
 * us_pidf_compose(): the <tuple>s of every publication plus one tuple per registered
 * endpoint that published nothing, and the newest publication's <dm:person> (its
 * activities). Parsing never loads external entities or DTDs (XML_PARSE_NONET, no
 * entity substitution); every function takes untrusted bytes and returns -1/NULL on
 * anything malformed.
 */
#ifndef PARLEY_HS_US_PIDF_H
#define PARLEY_HS_US_PIDF_H

#include <stdbool.h>
#include <stddef.h>

#define US_PIDF_NS "urn:ietf:params:xml:ns:pidf"
#define US_PIDF_DM_NS "urn:ietf:params:xml:ns:pidf:data-model"
#define US_PIDF_RPID_NS "urn:ietf:params:xml:ns:pidf:rpid"

/* Once per process, before any other call (libxml2 init; its errors go to our debug log). */
void us_pidf_init(void);

/* What the presence agent and the routing read from a document. */
struct us_pidf_info {
    char entity[256];            /* <presence entity=...> */
    int tuples;                  /* number of <tuple> */
    int open;                    /* tuples whose <status><basic> is "open" */
    char activity[64];           /* first RPID activity element name ("away", "busy", ...) or "" */
    char note[256];              /* first <note> of a tuple, person or the document, or "" */
};

/*
 * Validates PIDF <xml,len> (RFC 3863 §4): well-formed, root <presence> in the PIDF
 * namespace with an entity attribute, every <tuple> with an id and a <status>, <basic>
 * either "open" or "closed". Fills <info> (may be NULL). Returns 0, or -1 with a reason
 * for a 400 in <err> (<errlen> bytes).
 */
int us_pidf_parse(const char *xml, size_t len, struct us_pidf_info *info, char *err, size_t errlen);

/* One input of a composition. */
struct us_pidf_part {
    const char *doc;             /* a published document (accepted by us_pidf_parse), or NULL */
    size_t len;
    /* with doc == NULL: a registered endpoint that published nothing (one open tuple) */
    const char *tuple_id;
    const char *contact;
};

/*
 * The presentity's composed document for <entity> ("sip:alice@example.com"): tuples of
 * every part in order (ids made unique), the <dm:person> of the first part that has one,
 * <note>s of the documents. With <n> == 0 the result is the offline document: one tuple
 * whose basic status is closed. Returns a malloc'd NUL-terminated document (<*outlen>
 * bytes) or NULL.
 */
char *us_pidf_compose(const char *entity, const struct us_pidf_part *parts, size_t n, size_t *outlen);
/* The offline document (same as compose with no part). */
char *us_pidf_offline(const char *entity, size_t *outlen);

#endif
