/*
 * Shared by the example agents: command-line options common to all of them and the
 * signal handling that stops pagent_run(). Header-only to keep each example one file.
 *
 *   --socket PATH | --tcp HOST:PORT   where the home server listens for agents
 *   --secret S                        its --agent-secret
 *   --app NAME                        application name to register
 */
#ifndef PARLEY_AGENT_EXAMPLE_H
#define PARLEY_AGENT_EXAMPLE_H

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "parley-agent.h"

static struct pagent *example_agent;

static void
example_on_signal(int sig)
{
    (void)sig;
    if (example_agent)
        pagent_stop(example_agent);
}

/* Consumes the common option at argv[*i] into <o>; true when it was one. */
static inline bool
example_common_opt(struct pagent_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];

    if (*i + 1 >= argc)
        return false;
    if (strcmp(a, "--socket") == 0)
        o->socket_path = argv[++*i];
    else if (strcmp(a, "--tcp") == 0)
        o->tcp = argv[++*i];
    else if (strcmp(a, "--secret") == 0)
        o->secret = argv[++*i];
    else if (strcmp(a, "--app") == 0)
        o->app = argv[++*i];
    else
        return false;
    return true;
}

/* Runs <o> until SIGTERM/SIGINT. Returns the process exit status. */
static inline int
example_run(struct pagent_opts *o, const char *prog)
{
    struct sigaction sa;
    int rc;

    if ((o->socket_path == NULL && o->tcp == NULL) || o->app == NULL) {
        fprintf(stderr, "%s: --socket PATH (or --tcp HOST:PORT) and --app NAME are required\n", prog);
        return 2;
    }
    if ((example_agent = pagent_new(o)) == NULL) {
        fprintf(stderr, "%s: bad options\n", prog);
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = example_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = pagent_run(example_agent);
    pagent_free(example_agent);
    return rc == 0 ? 0 : 1;
}

#endif
