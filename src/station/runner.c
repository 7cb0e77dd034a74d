/*
 * The batch runner: `jobs` threads take the next card index, provision it
 * and tally the verdict. A registry failure stops every thread (the line
 * cannot record, so it must not work on cards).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct run {
    struct tc_station *st;
    const struct tc_station_cards *cards;
    const struct tc_station_run_opts *opts;
    pthread_mutex_t lock;
    size_t next;
    bool stop;
    tc_err err;
    struct tc_error err_info;
    struct tc_station_stats stats;
    struct timespec t0;
};

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    (void)clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void tally(struct run *r, const struct tc_station_result *res, size_t index)
{
    struct tc_station_stats *s = &r->stats;
    s->done++;
    s->events += res->events;
    s->revoked += res->revoked_earlier + (res->cert_revoked ? 1u : 0u);
    switch (res->outcome) {
    case TC_STATION_PROVISIONED:
        s->provisioned++;
        break;
    case TC_STATION_REJECTED:
        s->rejected++;
        if (res->reason <= TC_STATION_R_MAX_)
            s->by_reason[res->reason]++;
        break;
    case TC_STATION_ALREADY_DONE:
        s->already_done++;
        break;
    case TC_STATION_ALREADY_REJECTED:
        s->already_rejected++;
        break;
    case TC_STATION_NO_CARD:
    default:
        s->no_card++;
        break;
    }
    s->seconds = elapsed(&r->t0);
    if (r->opts != NULL && r->opts->progress != NULL)
        r->opts->progress(r->opts->arg, s, res, index);
}

static void *worker(void *arg)
{
    struct run *r = arg;
    struct tc_station_result *res = malloc(sizeof *res);
    for (;;) {
        (void)pthread_mutex_lock(&r->lock);
        size_t i = r->next;
        bool go = !r->stop && i < r->cards->count && res != NULL;
        if (go)
            r->next++;
        if (res == NULL && !r->stop) {
            r->stop = true;
            r->err = TC_FAIL(TC_ERR_NOMEM, "out of memory");
            r->err_info = *tc_error_last();
        }
        (void)pthread_mutex_unlock(&r->lock);
        if (!go)
            break;
        struct tc_transport t = {0};
        tc_err rc = r->cards->open(r->cards->arg, i, &t);
        if (rc != TC_OK) {
            memset(res, 0, sizeof *res);
            res->outcome = TC_STATION_NO_CARD;
            (void)snprintf(res->detail, sizeof res->detail, "%s", tc_error_last()->msg);
        } else {
            rc = tc_station_provision(r->st, &t, res);
            tc_transport_close(&t);
        }
        (void)pthread_mutex_lock(&r->lock);
        if (rc != TC_OK && res->outcome != TC_STATION_NO_CARD) {
            if (!r->stop) {
                r->err = rc;
                r->err_info = *tc_error_last();
            }
            r->stop = true;
        } else {
            tally(r, res, i);
        }
        (void)pthread_mutex_unlock(&r->lock);
    }
    free(res);
    tc_crypto_thread_cleanup();
    return NULL;
}

tc_err tc_station_run(struct tc_station *st, const struct tc_station_cards *cards,
                      const struct tc_station_run_opts *opts, struct tc_station_stats *out)
{
    TC_ENSURE(st != NULL && cards != NULL && cards->open != NULL && out != NULL, TC_ERR_ARG);
    unsigned jobs = opts != NULL && opts->jobs > 0 ? opts->jobs : 1;
    TC_ENSURE_MSG(jobs <= TC_STATION_MAX_JOBS, TC_ERR_RANGE, "at most %u jobs",
                  TC_STATION_MAX_JOBS);
    if ((size_t)jobs > cards->count && cards->count > 0)
        jobs = (unsigned)cards->count;
    struct run *r = calloc(1, sizeof *r);
    TC_ENSURE(r != NULL, TC_ERR_NOMEM);
    r->st = st;
    r->cards = cards;
    r->opts = opts;
    r->stats.total = cards->count;
    (void)clock_gettime(CLOCK_MONOTONIC, &r->t0);
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return TC_FAIL(TC_ERR_INTERNAL, "mutex");
    }
    pthread_t th[TC_STATION_MAX_JOBS];
    unsigned started = 0;
    for (; started < jobs; started++)
        if (pthread_create(&th[started], NULL, worker, r) != 0)
            break;
    if (started == 0)
        worker(r);
    for (unsigned i = 0; i < started; i++)
        (void)pthread_join(th[i], NULL);
    r->stats.seconds = elapsed(&r->t0);
    *out = r->stats;
    tc_err rc = r->err;
    if (rc != TC_OK)
        rc = TC_FAIL(rc, "%s", r->err_info.msg);
    (void)pthread_mutex_destroy(&r->lock);
    free(r);
    return rc;
}
