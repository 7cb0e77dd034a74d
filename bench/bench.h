/*
 * trustchain benchmark harness: measure an operation as median operations
 * per second over several samples and print it beside its floor (the raw
 * OpenSSL or PKCS#11 work the operation cannot avoid) measured in the same
 * run. Benchmarks are programs in bench/, never timed tests.
 *
 * Usage:
 *
 *     static int op(void *arg) { ...one operation...; return 0; }
 *     static int floor_op(void *arg) { ...the raw library work...; return 0; }
 *
 *     int main(void)
 *     {
 *         bench_init("bench_x");
 *         bench_compare("cmac 16 B", op, &state, "EVP_MAC cmac 16 B", floor_op, &state);
 *         return 0;
 *     }
 *
 * Each sample runs the function in a loop for at least BENCH_MIN_SECONDS
 * (0.3 s; TC_BENCH_MIN_SECONDS overrides) after a calibration pass; the
 * number of samples is 5 unless TC_BENCH_SAMPLES says otherwise (1..101).
 * Figures are medians, so a noisy neighbour on the machine moves them less.
 */
#ifndef TC_BENCH_H
#define TC_BENCH_H

#include <stddef.h>

/* One operation; returns 0 on success. A non-zero return stops the program
 * with an error (a benchmark of a failing operation measures nothing). */
typedef int (*bench_fn)(void *arg);

#define BENCH_MIN_SECONDS     0.3
#define BENCH_DEFAULT_SAMPLES 5u

/* Prints the header line (program name, samples, seconds per sample). */
void bench_init(const char *program);

/* Samples from TC_BENCH_SAMPLES (default 5) and seconds per sample. */
unsigned bench_samples(void);
double bench_min_seconds(void);

/* Monotonic time in seconds. */
double bench_now(void);

/* Median ops/s of fn over bench_samples() samples. */
double bench_run(bench_fn fn, void *arg);

/* Prints one aligned line: name, ops/s, the floor's name and ops/s, and the
 * ratio floor_ops_per_s / ops_per_s, i.e. how many times longer the
 * operation takes than its floor (1.00x = as fast as the floor). A
 * floor_name of NULL prints the figure alone. */
void bench_report(const char *name, double ops_per_s, const char *floor_name,
                  double floor_ops_per_s);

/* Measures fn and its floor with samples interleaved (fn, floor, fn, ...)
 * so drift on the machine affects both alike, then reports them. Returns
 * the ratio (floor ops/s over fn ops/s). */
double bench_compare(const char *name, bench_fn fn, void *arg, const char *floor_name,
                     bench_fn floor_fn, void *floor_arg);

/* Keeps a result alive so the compiler cannot drop the work producing it. */
void bench_consume(const void *p, size_t n);

#endif
