/*
 * scr: Parley's application script language (modeled on LCS's MSPL; design §4).
 *
 * A script is compiled once at load with scr_compile() into an immutable
 * struct scr_program (bytecode + interned constants) and run once per message
 * with scr_run(). The module knows nothing about SIP: the message is reached
 * through struct scr_host, a table of function pointers the application chain
 * implements. The language is described for administrators in
 * docs/script-language.md and the implementation in docs/internals/script.md.
 *
 * Safety: compiling hostile text gives a compile error (never a crash): the
 * source size, nesting depth, constants, variables, literal length and code
 * size are capped. A run is bounded by a step budget and a per-run memory cap;
 * exceeding either is a runtime error and the message falls through.
 *
 * Threading: a program is read-only after scr_compile()/scr_program_set_limits(),
 * so several threads may scr_run() the same program at once.
 */
#ifndef PARLEY_SCRIPT_SCR_H
#define PARLEY_SCRIPT_SCR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCR_MAX_SOURCE      (1024u * 1024u)  /* bytes of script text */
#define SCR_MAX_DEPTH       64               /* nested blocks/parentheses/operators */
#define SCR_MAX_CONSTS      65535u           /* distinct constants */
#define SCR_MAX_VARS        1024u            /* variables incl. hidden loop slots */
#define SCR_MAX_LITERAL     (64u * 1024u)    /* bytes of one string literal (after escapes) */
#define SCR_MAX_CODE        (256u * 1024u)   /* instructions */
#define SCR_MAX_ARGS        16               /* arguments of one call */
#define SCR_MAX_STRING      (64u * 1024u)    /* bytes of one string built at run time */
#define SCR_DEFAULT_STEPS   100000u          /* instructions per run */
#define SCR_DEFAULT_MEMORY  (1024u * 1024u)  /* bytes allocated per run */
#define SCR_MAX_ENDPOINTS   1024u            /* records kept from one Endpoints() call */

struct scr_program;

/* A compile error: where (1-based line and byte column) and why. */
struct scr_err {
    char file[256];
    int line, col;
    char msg[256];
};

/*
 * One registered endpoint of a user, as the host reports it to Endpoints().
 * All strings are borrowed and must stay valid until scr_run() returns; NULL
 * reads as null in the script.
 */
struct scr_endpoint {
    const char *epid;             /* endpoint identifier (design §3) */
    const char *contact;          /* Contact URI of the binding */
    const char *activity;         /* RPID activity (RFC 4480), e.g. "busy", "away" */
    const char *path;             /* registration Path (RFC 3327) to add as Route, or NULL */
    int64_t availability;         /* presence availability, higher is more available */
    int64_t present_since;        /* unix seconds since the endpoint is in this state */
};

/* Called by the host once per endpoint; return 0 to continue, -1 to stop early. */
typedef int scr_endpoint_cb(void *cb_arg, const struct scr_endpoint *ep);

/*
 * The message and the actions, as the host (application chain) provides them.
 * Every string argument passed to the host is NUL-terminated and valid only for
 * the call; every string the host returns is borrowed and must stay valid until
 * scr_run() returns. A NULL getter reads as null; a NULL action pointer makes
 * the action a runtime error ("... not available"). Actions return 0, or -1 if
 * the host refuses (a runtime error in the script).
 */
struct scr_host {
    bool (*is_request)(void *arg);                 /* sipRequest true, sipResponse false */
    const char *(*method)(void *arg);              /* sipRequest.Method */
    const char *(*request_uri)(void *arg);         /* sipRequest.RequestUri */
    int (*status_code)(void *arg);                 /* sipResponse.StatusCode */
    /* <idx>-th (0-based) value of header <name>, or NULL past the last one. */
    const char *(*header)(void *arg, const char *name, size_t idx);
    const char *(*body)(void *arg);                /* GetBody(); NULL without body */
    const char *(*content_type)(void *arg);        /* ContentType() */
    /* Calls <cb> for each endpoint of <user_at_host>; returns 0, or -1 on failure. */
    int (*endpoints)(void *arg, const char *user_at_host, scr_endpoint_cb *cb, void *cb_arg);
    int64_t (*now)(void *arg);                     /* unix seconds; NULL = time(NULL) */

    int (*proxy_request)(void *arg, const char *uri);       /* <uri> NULL: keep R-URI */
    int (*respond)(void *arg, int code, const char *reason, const char *headers /* or NULL */);
    int (*redirect)(void *arg, const char *contact);        /* 302 with this Contact */
    int (*add_header)(void *arg, const char *name, const char *value);
    int (*set_header)(void *arg, const char *name, const char *value);
    int (*remove_header)(void *arg, const char *name);
    int (*add_route)(void *arg, const char *uri);
    int (*set_to_epid)(void *arg, const char *epid);
    bool (*dispatch)(void *arg, const char *handler);       /* false: agent queue full */
    void (*log)(void *arg, int level, const char *text);    /* level as in util/log.h */
    void *arg;
};

/* What a run did with the message. */
enum scr_outcome {
    SCR_PASS = 0,       /* no terminal action: pass to the next application */
    SCR_PROXIED,        /* ProxyRequest() */
    SCR_RESPONDED,      /* Respond() */
    SCR_REDIRECTED,     /* Redirect() */
    SCR_DISPATCHED,     /* Dispatch() returned true */
    SCR_ERROR,          /* runtime error; see scr_run_result.msg */
};

struct scr_run_result {
    enum scr_outcome outcome;
    enum scr_outcome acted;       /* terminal action taken, also when a later error ended the run */
    uint32_t steps;               /* instructions executed */
    size_t mem;                   /* bytes allocated by the run */
    int line;                     /* SCR_ERROR: source line of the failing instruction */
    char msg[256];                /* SCR_ERROR: "file:line: why"; else empty */
};

/*
 * Compiles <len> bytes of <src> (need not be NUL-terminated). <file> names the
 * script in messages (may be NULL). Returns a program owned by the caller, or
 * NULL with <err> filled in (err may be NULL).
 */
struct scr_program *scr_compile(const char *src, size_t len, const char *file,
                                struct scr_err *err);

/* Frees <p>; accepts NULL. */
void scr_program_free(struct scr_program *p);

/*
 * Sets the per-run step budget and memory cap (0 keeps the default). Call
 * before the program is shared between threads.
 */
void scr_program_set_limits(struct scr_program *p, uint32_t max_steps, size_t max_mem);

/*
 * Runs <p> against the message behind <host>. <out> (required) receives the
 * outcome, the steps taken and, on SCR_ERROR, the message. Returns out->outcome.
 * Allocates nothing for small runs; memory is released before returning.
 */
enum scr_outcome scr_run(const struct scr_program *p, const struct scr_host *host,
                         struct scr_run_result *out);

/* "pass", "proxied", "responded", "redirected", "dispatched", "error". */
const char *scr_outcome_name(enum scr_outcome o);

/* Disassembles <p> into <buf> (for tests and `parleyctl apps show`); returns bytes needed. */
size_t scr_program_dump(const struct scr_program *p, char *buf, size_t size);

#endif
