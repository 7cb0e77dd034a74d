/*
 * Audit log benchmarks:
 *   - durable appends per second with group commit (SQLite, WAL,
 *     synchronous=FULL), many appenders at once, beside the raw fsync rate
 *     of the same file system;
 *   - inclusion and consistency proofs in a tree of 10 million leaves
 *     (built directly from leaf hashes), beside one raw SHA-256 node hash;
 *   - bytes per event on disk, beside the encoded event size.
 * TC_BENCH_AUDIT_LEAVES overrides the 10 million; TC_BENCH_DIR the scratch
 * directory (default: the current one).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <trustchain/audit.h>

#include "bench.h"

#define H TC_AUDIT_HASH_LEN

static void die(const char *what)
{
    char msg[400];
    tc_error_format(msg, sizeof msg);
    fprintf(stderr, "bench_audit: %s: %s\n", what, msg);
    exit(1);
}

static size_t make_event(uint8_t out[TC_AUDIT_EVENT_MAX], unsigned a, unsigned b)
{
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_KEYS_INJECTED;
    ev.time_ms = 1764201600000ull + b;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR |
                TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV | TC_AUDIT_HAS_PREV_KVN;
    ev.eid_len = 16;
    for (unsigned i = 0; i < 16; i++)
        ev.eid[i] = (uint8_t)(a * 131 + b * 7 + i);
    (void)snprintf(ev.batch, sizeof ev.batch, "B2026-%03u", a % 1000);
    (void)snprintf(ev.station, sizeof ev.station, "line1-st%u", a % 8);
    (void)snprintf(ev.actor, sizeof ev.actor, "station-%u", a % 8);
    ev.kvn = 0x30;
    ev.prev_kvn = 0x01;
    for (unsigned i = 0; i < 9; i++)
        ev.kcv[i / 3][i % 3] = (uint8_t)(b + i);
    size_t n = 0;
    if (tc_audit_event_encode(&ev, out, TC_AUDIT_EVENT_MAX, &n) != TC_OK)
        die("encode");
    return n;
}

/* ------------------------------------------------------------- appends */

struct appender {
    struct tc_audit_log *log;
    unsigned id, batch;
    volatile int *stop;
    uint64_t done;
};

static void *append_loop(void *arg)
{
    struct appender *a = arg;
    uint8_t ev[64][TC_AUDIT_EVENT_MAX];
    const uint8_t *p[64];
    size_t len[64];
    unsigned b = 0;
    while (!*a->stop) {
        for (unsigned i = 0; i < a->batch; i++) {
            len[i] = make_event(ev[i], a->id, b++);
            p[i] = ev[i];
        }
        if (tc_audit_log_append(a->log, p, len, a->batch, NULL) != TC_OK)
            die("append");
        a->done += a->batch;
    }
    return NULL;
}

static unsigned commits;
static void count(void *arg, enum tc_audit_step step)
{
    (void)arg;
    if (step == TC_AUDIT_STEP_COMMIT)
        __atomic_add_fetch(&commits, 1, __ATOMIC_RELAXED);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* Events per second over `seconds` with `threads` appenders. */
static double append_rate(struct tc_audit_log *log, unsigned threads, unsigned batch,
                          double seconds, double *per_commit)
{
    volatile int stop = 0;
    struct appender *a = calloc(threads, sizeof *a);
    pthread_t *th = calloc(threads, sizeof *th);
    if (!a || !th)
        die("calloc");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    unsigned c0 = __atomic_load_n(&commits, __ATOMIC_RELAXED);
    double t0 = bench_now();
    for (unsigned i = 0; i < threads; i++) {
        a[i] = (struct appender){log, i, batch, &stop, 0};
        if (pthread_create(&th[i], &attr, append_loop, &a[i]) != 0)
            die("pthread_create");
    }
    while (bench_now() - t0 < seconds)
        usleep(10000);
    stop = 1;
    uint64_t total = 0;
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += a[i].done;
    }
    double t = bench_now() - t0;
    unsigned c = __atomic_load_n(&commits, __ATOMIC_RELAXED) - c0;
    *per_commit = c ? (double)total / c : 0;
    pthread_attr_destroy(&attr);
    free(a);
    free(th);
    return (double)total / t;
}

/* The floor: write 4 KiB and fdatasync, on the same file system. */
static double fsync_rate(const char *dir, double seconds)
{
    char path[4096];
    (void)snprintf(path, sizeof path, "%s/fsync.bench", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open fsync file");
    static char buf[4096];
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0)
            die("write/fdatasync");
        n++;
        t = bench_now() - t0;
    } while (t < seconds);
    close(fd);
    unlink(path);
    return (double)n / t;
}

static void bench_appends(const char *dir)
{
    char db[4096];
    (void)snprintf(db, sizeof db, "%s/bench-audit.db", dir);
    unlink(db);
    struct tc_audit_store s;
    struct tc_audit_log *log = NULL;
    if (tc_audit_store_sqlite_open(db, &s) != TC_OK || tc_audit_log_open(s, "bench", &log))
        die("open log");
    tc_audit_log_set_fault_hook(log, count, NULL);
    static const struct {
        unsigned threads, batch;
    } cfg[] = {{256, 1}, {512, 1}, {64, 16}};
    unsigned samples = bench_samples();
    double secs = 4 * bench_min_seconds();
    for (size_t c = 0; c < TC_ARRAY_LEN(cfg); c++) {
        double r[101], f[101], pc[101];
        for (unsigned i = 0; i < samples; i++) {
            r[i] = append_rate(log, cfg[c].threads, cfg[c].batch, secs, &pc[i]);
            f[i] = fsync_rate(dir, secs / 2);
        }
        char name[96];
        (void)snprintf(name, sizeof name, "durable appends/s, %u threads x %u ev", cfg[c].threads,
                       cfg[c].batch);
        bench_report(name, median(r, samples), "fdatasync/s", median(f, samples));
        printf("    (%.0f events per transaction)\n", median(pc, samples));
    }
    uint64_t events = tc_audit_log_size(log);
    uint8_t ev[TC_AUDIT_EVENT_MAX];
    size_t ev_len = make_event(ev, 1, 1);
    tc_audit_log_close(log); /* the last close checkpoints and removes the WAL */
    uint64_t bytes = 0;
    if (tc_audit_store_sqlite_disk_bytes(db, &bytes) != TC_OK)
        die("disk bytes");
    /* Bytes per event: the floor is the encoded event itself. */
    double per = (double)bytes / (double)events;
    printf("%-44s %12.1f B   floor %-26s %10.1f B   %6.2fx\n", "bytes per event on disk", per,
           "encoded event", (double)ev_len, per / (double)ev_len);
    printf("    (%llu events, %llu bytes)\n", (unsigned long long)events,
           (unsigned long long)bytes);
    unlink(db);
}

/* -------------------------------------------------------------- proofs */

struct proof_state {
    struct tc_merkle_tree t;
    uint64_t size, rng;
    const EVP_MD *md;
    EVP_MD_CTX *ctx;
    uint8_t node[1 + 2 * H];
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int prove_one(void *arg)
{
    struct proof_state *st = arg;
    uint8_t proof[TC_MERKLE_PROOF_MAX][H];
    size_t n = 0;
    uint64_t i = next_rand(&st->rng) % st->size;
    if (tc_merkle_inclusion_proof(&st->t, i, st->size, proof, TC_MERKLE_PROOF_MAX, &n) != TC_OK)
        return 1;
    bench_consume(proof, n * H);
    return 0;
}

static int consistency_one(void *arg)
{
    struct proof_state *st = arg;
    uint8_t proof[TC_MERKLE_PROOF_MAX][H];
    size_t n = 0;
    uint64_t m = 1 + next_rand(&st->rng) % st->size;
    if (tc_merkle_consistency_proof(&st->t, m, st->size, proof, TC_MERKLE_PROOF_MAX, &n) != TC_OK)
        return 1;
    bench_consume(proof, n * H);
    return 0;
}

static uint8_t vroot[H];
static int verify_one(void *arg)
{
    struct proof_state *st = arg;
    uint8_t proof[TC_MERKLE_PROOF_MAX][H], leaf[H];
    size_t n = 0;
    uint64_t i = next_rand(&st->rng) % st->size;
    if (tc_merkle_inclusion_proof(&st->t, i, st->size, proof, TC_MERKLE_PROOF_MAX, &n) != TC_OK ||
        tc_merkle_node(&st->t, 0, i, leaf) != TC_OK ||
        tc_merkle_verify_inclusion(leaf, i, st->size, (const uint8_t(*)[H])proof, n, vroot) !=
            TC_OK)
        return 1;
    return 0;
}

/* The floor: one RFC 9162 node hash, SHA-256 over 65 bytes. */
static int sha_one(void *arg)
{
    struct proof_state *st = arg;
    uint8_t out[H];
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(st->ctx, st->md, NULL) != 1 ||
        EVP_DigestUpdate(st->ctx, st->node, sizeof st->node) != 1 ||
        EVP_DigestFinal_ex(st->ctx, out, &n) != 1)
        return 1;
    st->node[1] ^= out[0];
    return 0;
}

static void bench_proofs(void)
{
    static struct proof_state st;
    st.size = 10000000;
    const char *env = getenv("TC_BENCH_AUDIT_LEAVES");
    if (env && tc_parse_uint(env, UINT64_C(1) << 40, &st.size) != TC_OK)
        die("TC_BENCH_AUDIT_LEAVES");
    tc_merkle_init(&st.t);
    double t0 = bench_now();
    for (uint64_t i = 0; i < st.size; i++) {
        uint8_t d[8], lh[H];
        for (int k = 0; k < 8; k++)
            d[k] = (uint8_t)(i >> (8 * k));
        if (tc_merkle_leaf_hash(d, sizeof d, lh) != TC_OK || tc_merkle_append(&st.t, lh) != TC_OK)
            die("build tree");
    }
    if (tc_merkle_seal(&st.t) != TC_OK)
        die("seal");
    double build = bench_now() - t0;
    printf("tree of %llu leaves built in %.1f s (%.0f leaves/s)\n", (unsigned long long)st.size,
           build, (double)st.size / build);
    if (tc_merkle_root(&st.t, st.size, vroot) != TC_OK)
        die("root");
    /* Warm up: read the whole tree once and run proofs for a while; the
     * first pass over freshly grown arrays is several times slower here. */
    for (unsigned l = 0; l < TC_MERKLE_LEVELS && (st.size >> l) > 0; l++)
        bench_consume(st.t.level[l], (size_t)(st.size >> l) * H);
    st.rng = 1;
    for (double w0 = bench_now(); bench_now() - w0 < 2.0;)
        for (int i = 0; i < 1000; i++)
            if (prove_one(&st) != 0)
                die("proof");
    st.rng = 0x9E3779B97F4A7C15ull;
    st.md = EVP_sha256();
    st.ctx = EVP_MD_CTX_new();
    if (st.ctx == NULL)
        die("EVP_MD_CTX_new");
    char name[96];
    (void)snprintf(name, sizeof name, "inclusion proof, %llu leaves", (unsigned long long)st.size);
    double ratio = bench_compare(name, prove_one, &st, "SHA-256 node hash", sha_one, &st);
    double ops = bench_run(prove_one, &st);
    printf("    (%.2f us per inclusion proof, target < 100 us; %.2fx a node hash)\n", 1e6 / ops,
           ratio);
    (void)snprintf(name, sizeof name, "consistency proof, %llu leaves",
                   (unsigned long long)st.size);
    bench_compare(name, consistency_one, &st, "SHA-256 node hash", sha_one, &st);
    (void)snprintf(name, sizeof name, "inclusion proof + verify, %llu",
                   (unsigned long long)st.size);
    bench_compare(name, verify_one, &st, "SHA-256 node hash", sha_one, &st);
    EVP_MD_CTX_free(st.ctx);
    tc_merkle_free(&st.t);
}

int main(void)
{
    bench_init("bench_audit");
    const char *dir = getenv("TC_BENCH_DIR");
    if (dir == NULL)
        dir = ".";
    bench_appends(dir);
    bench_proofs();
    return 0;
}
