/*
 * test_agent: a scriptable agent for the integration tests and the benchmark
 * (tests/integration/agents/run.sh), built on libparley-agent.
 *
 *   test_agent --socket PATH --app NAME --mode MODE [--events FILE] [--hold-ms N] [--trying-ms N]
 *
 * Modes: respond  RESPOND 200 to every request
 *        pass     PROXY every request unchanged (the pass-through of the benchmark)
 *        hold     send TRYING every --trying-ms for --hold-ms, then RESPOND 486
 *        never    never act (requests time out)
 *        stall    register, then stop reading the socket
 * Every event (and "request <method>") is appended to --events, one per line.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parley-agent.h"

#define MAX_HELD 4096

struct held {
    uint64_t id;
    int64_t start_ms, last_trying_ms;
};

static const char *mode = "respond";
static FILE *events;
static long hold_ms = 6000, trying_ms = 2000;
static struct held held[MAX_HELD];
static unsigned nheld;

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends "<what> <a> <b>" to the events file. */
static void
note(const char *what, const char *a, unsigned long long b)
{
    if (events) {
        fprintf(events, "%s %s %llu\n", what, a, b);
        fflush(events);
    }
}

static void
on_request(struct pagent *a, const struct pagent_msg *m, void *arg)
{
    uint64_t id = pagent_msg_id(m);

    note("request", pagent_msg_method(m), (unsigned long long)id);
    if (strcmp(mode, "respond") == 0) {
        const char *hdr[] = {"X-Agent: test_agent"};
        pagent_respond(a, id, 200, "OK by agent", hdr, 1);
    } else if (strcmp(mode, "pass") == 0) {
        pagent_proxy(a, id, NULL, NULL, 0);
    } else if (strcmp(mode, "hold") == 0 && nheld < MAX_HELD) {
        held[nheld].id = id;
        held[nheld].start_ms = held[nheld].last_trying_ms = now_ms();
        nheld++;
        pagent_trying(a, id);
    }
}

static void
on_event(struct pagent *a, uint64_t id, int ev, const char *reason, void *arg)
{
    const char *name = ev == PAGENT_EV_TIMEOUT ? "timeout" : ev == PAGENT_EV_DROPPED ? "dropped"
                     : ev == PAGENT_EV_SHUTDOWN ? "shutdown" : "disconnected";
    note("event", name, (unsigned long long)id);
}

static void
tick(struct pagent *a)
{
    int64_t now = now_ms();

    for (unsigned i = 0; i < nheld;) {
        struct held *h = &held[i];
        if (now - h->start_ms >= hold_ms) {
            pagent_respond(a, h->id, 486, "Busy Here (after hold)", NULL, 0);
            note("answered", "486", (unsigned long long)h->id);
            held[i] = held[--nheld];
            continue;
        }
        if (now - h->last_trying_ms >= trying_ms) {
            pagent_trying(a, h->id);
            note("trying", "sent", (unsigned long long)h->id);
            h->last_trying_ms = now;
        }
        i++;
    }
}

int
main(int argc, char **argv)
{
    struct pagent_opts o = {0};
    struct pagent *a;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--socket") == 0)
            o.socket_path = argv[i + 1];
        else if (strcmp(argv[i], "--secret") == 0)
            o.secret = argv[i + 1];
        else if (strcmp(argv[i], "--app") == 0)
            o.app = argv[i + 1];
        else if (strcmp(argv[i], "--mode") == 0)
            mode = argv[i + 1];
        else if (strcmp(argv[i], "--events") == 0)
            events = fopen(argv[i + 1], "a");
        else if (strcmp(argv[i], "--hold-ms") == 0)
            hold_ms = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--trying-ms") == 0)
            trying_ms = strtol(argv[i + 1], NULL, 10);
    }
    o.on_request = on_request;
    o.on_event = on_event;
    if ((a = pagent_new(&o)) == NULL) {
        fprintf(stderr, "test_agent: bad options\n");
        return 2;
    }
    for (;;) {
        struct pollfd pf;
        if (!pagent_connected(a) && pagent_connect(a) != 0) {
            usleep(100000);
            continue;
        }
        note("registered", o.app, (unsigned long long)pagent_queue_size(a));
        if (strcmp(mode, "stall") == 0) {
            for (;;)
                pause();   /* never reads: the server's queue for us fills */
        }
        while (pagent_connected(a)) {
            pf.fd = pagent_fd(a);
            pf.events = POLLIN;
            pf.revents = 0;
            if (poll(&pf, 1, 50) > 0)
                pagent_dispatch(a);
            tick(a);
        }
    }
}
