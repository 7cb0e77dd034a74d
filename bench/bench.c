/* The benchmark harness (see bench.h). */
#include "bench.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_SAMPLES 101u

static volatile uint8_t bench_sink;

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned env_uint(const char *name, unsigned def, unsigned lo, unsigned hi)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return def;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench: ignoring %s=%s (want %u..%u)\n", name, s, lo, hi);
        return def;
    }
    return (unsigned)v;
}

unsigned bench_samples(void)
{
    return env_uint("TC_BENCH_SAMPLES", BENCH_DEFAULT_SAMPLES, 1, BENCH_MAX_SAMPLES);
}

double bench_min_seconds(void)
{
    const char *s = getenv("TC_BENCH_MIN_SECONDS");
    if (s == NULL || *s == '\0')
        return BENCH_MIN_SECONDS;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0.0 && v <= 60.0)) {
        fprintf(stderr, "bench: ignoring TC_BENCH_MIN_SECONDS=%s\n", s);
        return BENCH_MIN_SECONDS;
    }
    return v;
}

void bench_init(const char *program)
{
    printf("%s: median of %u samples, >= %.2f s each\n", program, bench_samples(),
           bench_min_seconds());
    fflush(stdout);
}

void bench_consume(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= b[i];
    bench_sink ^= x;
}

static void run_or_die(bench_fn fn, void *arg, uint64_t iters)
{
    for (uint64_t i = 0; i < iters; i++)
        if (fn(arg) != 0) {
            fprintf(stderr, "bench: the operation failed; no figure\n");
            exit(1);
        }
}

/* Iterations that take about `seconds`, found by doubling from 1. */
static uint64_t calibrate(bench_fn fn, void *arg, double seconds)
{
    uint64_t iters = 1;
    for (;;) {
        double t0 = bench_now();
        run_or_die(fn, arg, iters);
        double dt = bench_now() - t0;
        if (dt >= seconds / 8 || iters >= (UINT64_C(1) << 40)) {
            double per = dt / (double)iters;
            double want = per > 0 ? seconds / per : (double)iters * 8;
            return want < 1 ? 1 : (uint64_t)want + 1;
        }
        iters *= 2;
    }
}

/* One sample: ops/s over at least `seconds`. */
static double sample(bench_fn fn, void *arg, uint64_t iters, double seconds)
{
    uint64_t done = 0;
    double t0 = bench_now(), dt = 0;
    do {
        run_or_die(fn, arg, iters);
        done += iters;
        dt = bench_now() - t0;
    } while (dt < seconds);
    return (double)done / dt;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_run(bench_fn fn, void *arg)
{
    double secs = bench_min_seconds();
    unsigned n = bench_samples();
    double v[BENCH_MAX_SAMPLES];
    uint64_t iters = calibrate(fn, arg, secs);
    for (unsigned i = 0; i < n; i++)
        v[i] = sample(fn, arg, iters, secs);
    return median(v, n);
}

static void human(char *out, size_t size, double ops)
{
    if (ops >= 1e6)
        snprintf(out, size, "%8.3f M", ops / 1e6);
    else if (ops >= 1e3)
        snprintf(out, size, "%8.3f k", ops / 1e3);
    else
        snprintf(out, size, "%8.3f  ", ops);
}

void bench_report(const char *name, double ops_per_s, const char *floor_name,
                  double floor_ops_per_s)
{
    char a[32], b[32];
    human(a, sizeof a, ops_per_s);
    if (floor_name == NULL) {
        printf("%-30s %s ops/s\n", name, a);
    } else {
        human(b, sizeof b, floor_ops_per_s);
        double ratio = ops_per_s > 0 ? floor_ops_per_s / ops_per_s : 0;
        printf("%-30s %s ops/s | floor %-30s %s ops/s | %5.2fx floor time\n", name, a, floor_name,
               b, ratio);
    }
    fflush(stdout);
}

double bench_compare(const char *name, bench_fn fn, void *arg, const char *floor_name,
                     bench_fn floor_fn, void *floor_arg)
{
    double secs = bench_min_seconds();
    unsigned n = bench_samples();
    double v[BENCH_MAX_SAMPLES], f[BENCH_MAX_SAMPLES];
    uint64_t iters = calibrate(fn, arg, secs);
    uint64_t floor_iters = calibrate(floor_fn, floor_arg, secs);
    for (unsigned i = 0; i < n; i++) {
        v[i] = sample(fn, arg, iters, secs);
        f[i] = sample(floor_fn, floor_arg, floor_iters, secs);
    }
    double ops = median(v, n), floor_ops = median(f, n);
    bench_report(name, ops, floor_name, floor_ops);
    return ops > 0 ? floor_ops / ops : 0;
}
