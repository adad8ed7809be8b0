/*
 * app_manifest: the manifest of one application of the home server's chain
 * (design §4; docs/internals/apps.md). A manifest file (*.am) is a header of
 * `key: value` lines, a line `---`, then the script (docs/script-language.md):
 *
 *     # the routing application
 *     name: routing
 *     strict-route: false          see strict-routed requests too (default false)
 *     critical: false              (default false)
 *     request-filter: INVITE, MESSAGE     methods, or *
 *     response-filter: none        none | * | classes 1xx..6xx | codes 100..699
 *     max-steps: 100000            optional script step budget per message
 *     param.voicemail: sip:vm@example.com
 *     ---
 *     if (...) { ... }
 *
 * `param.NAME: VALUE` makes NAME a variable of the script holding VALUE (an integer,
 * true/false, or else a string), so one script serves several deployments. The
 * parser keeps the script text with the header lines blanked (and a param line
 * rewritten as `NAME= VALUE;` at the same columns), so compile errors of the script
 * name the manifest's own line and column.
 *
 * Parsing is a line/token parser; every error says file:line:col and why.
 */
#ifndef PARLEY_APPS_APP_MANIFEST_H
#define PARLEY_APPS_APP_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APP_MAX_MANIFEST   (1024u * 1024u + 64u * 1024u)  /* bytes of one .am file */
#define APP_MAX_METHODS    32        /* methods in one request-filter */
#define APP_MAX_NAME       64        /* bytes of an application name */

/* An error a person reads: "file:line:col: why" (line/col 0 when unknown). */
struct app_err {
    char file[256];
    int line, col;
    char msg[256];
};

/* Formats <err> as "file:line:col: msg" into <buf>; returns <buf>. */
const char *app_err_str(const struct app_err *err, char *buf, size_t len);

/*
 * A parsed manifest. Immutable after parsing. The script text covers the whole file
 * (header lines blanked) so that scr_compile() line/col numbers are the file's.
 */
struct app_manifest {
    char *file;                       /* path as given */
    char name[APP_MAX_NAME];
    bool strict_route;                /* sees strict-routed requests (design §2) */
    bool critical;                    /* its failure stops the server (agents, later) */
    bool all_methods;                 /* request-filter: * */
    unsigned nmethods;
    char methods[APP_MAX_METHODS][24];/* upper case method tokens */
    bool any_response;                /* some response code is selected */
    uint8_t responses[88];            /* bit <code> set: the response filter selects it (0..699) */
    uint32_t max_steps;               /* 0 = the script default */
    char *script;                     /* NUL-terminated compile text (owned) */
    size_t script_len;
    int script_line;                  /* first line after `---` */
};

/*
 * Parses <len> bytes of <text> read from <file> (for messages; may be NULL).
 * Returns a manifest owned by the caller, or NULL with <err> filled.
 */
struct app_manifest *app_manifest_parse(const char *text, size_t len, const char *file,
                                        struct app_err *err);
/* Reads and parses the file <path>. NULL with <err> filled on failure. */
struct app_manifest *app_manifest_load(const char *path, struct app_err *err);
/* Frees <m>; accepts NULL. */
void app_manifest_free(struct app_manifest *m);

/* Does the request filter select <method> (case-insensitive)? */
bool app_manifest_wants_request(const struct app_manifest *m, const char *method);
/* Does the response filter select status <code>? */
bool app_manifest_wants_response(const struct app_manifest *m, int code);

#endif
