/*
 * Registry benchmarks over a log of N events (default 1 million;
 * TC_BENCH_REGISTRY_EVENTS=10000000 for the 10 million case), ~10 events per
 * device in a realistic mix (the 8 line events, a key rotation and a life
 * cycle change; devices interleaved 64 at a time as on a line):
 *   - state-at-T: fold a random device's events up to a random moment
 *     (tc_registry_device_at: a range scan of the (EID, index) table and one
 *     event read per folded event), beside a raw SQLite point query of one
 *     event by index;
 *   - bytes per event on disk (events, leaf hashes, tree head and the whole
 *     projection), beside the canonical event size.
 *   - CPU per durable append as the station makes them (a device's 8 line
 *     events in 4 appends of 2, one thread): events, leaf hashes, tree head
 *     and projection in one synced transaction, beside the floor of the same
 *     transactions in raw SQLite (the events inserted into a bare table,
 *     BEGIN/COMMIT, synchronous=FULL WAL); and the same for an OTA key
 *     rotation of each of those devices as the ops engine's writer appends
 *     it (op-queued; op-step; keys-rotated + op-done). Process CPU time, not wall time,
 *     and on tmpfs (/dev/shm, else TC_BENCH_DIR; TC_BENCH_APPEND_DIR
 *     overrides): on a disk the kernel's share of each fsync varies by
 *     hundreds of microseconds and hides the work; the CPU is what bounds a
 *     station on 2 cores. TC_BENCH_APPEND_DEVICES (default 500), median of
 *     5 interleaved runs.
 * The log is generated straight into the database in one transaction (events,
 * leaf hashes, projection rows through the registry's own projection code,
 * tree head), not through group-committed appends (bench_audit measures
 * those), with synchronous=OFF and a large page cache since what is measured
 * is the finished database. TC_BENCH_DIR is the scratch directory (default:
 * the current one).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <trustchain/registry.h>

#include "bench.h"
#include "registry/internal.h"

#define T0         1764201600000ull
#define PER_DEV    10u
#define INTERLEAVE 64u

static void die(const char *what)
{
    char msg[400];
    tc_error_format(msg, sizeof msg);
    fprintf(stderr, "bench_registry: %s: %s\n", what, msg);
    exit(1);
}

static void eid_of(uint64_t dev, uint8_t eid[16])
{
    /* 89049032 prefix, device number in the low bytes, BCD-looking. */
    static const uint8_t prefix[8] = {0x89, 0x04, 0x90, 0x32, 0x12, 0x34, 0x00, 0x00};
    memcpy(eid, prefix, 8);
    for (unsigned i = 0; i < 8; i++)
        eid[15 - i] = (uint8_t)(dev >> (8 * i));
}

static size_t encode(const struct tc_audit_event *ev, uint8_t out[TC_AUDIT_EVENT_MAX])
{
    size_t n = 0;
    if (tc_audit_event_encode(ev, out, TC_AUDIT_EVENT_MAX, &n) != TC_OK)
        die("encode");
    return n;
}

/* Event k (0..PER_DEV-1) of device dev at time t. */
static size_t make_event(uint8_t out[TC_AUDIT_EVENT_MAX], uint64_t dev, unsigned k, uint64_t t)
{
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    static const enum tc_audit_event_type types[PER_DEV] = {
        TC_AUDIT_CARD_RECEIVED,       TC_AUDIT_KEYS_DERIVED,      TC_AUDIT_KEYS_INJECTED,
        TC_AUDIT_INJECTION_CONFIRMED, TC_AUDIT_KEYPAIR_GENERATED, TC_AUDIT_CERT_ISSUED,
        TC_AUDIT_CERT_STORED,         TC_AUDIT_LIFECYCLE_CHANGED, TC_AUDIT_KEYS_ROTATED,
        TC_AUDIT_LIFECYCLE_CHANGED};
    ev.type = types[k];
    ev.time_ms = t;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR;
    eid_of(dev, ev.eid);
    ev.eid_len = 16;
    (void)snprintf(ev.batch, sizeof ev.batch, "B2026-%03u", (unsigned)(dev / 10000 % 1000));
    if (ev.type != TC_AUDIT_KEYS_ROTATED) {
        ev.fields |= TC_AUDIT_HAS_STATION;
        (void)snprintf(ev.station, sizeof ev.station, "line1-st%u", (unsigned)(dev % 8));
    }
    (void)snprintf(ev.actor, sizeof ev.actor, "station-%u", (unsigned)(dev % 8));
    uint8_t sha[32];
    for (unsigned i = 0; i < 32; i++)
        sha[i] = (uint8_t)(dev * 31 + i);
    switch (ev.type) {
    case TC_AUDIT_CARD_RECEIVED:
        ev.fields |= TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_KVN;
        ev.lifecycle = 0x07;
        ev.kvn = 0x01;
        break;
    case TC_AUDIT_KEYS_ROTATED:
        ev.fields |= TC_AUDIT_HAS_PREV_KVN;
        ev.prev_kvn = 0x30;
        TC_FALLTHROUGH;
    case TC_AUDIT_KEYS_DERIVED:
    case TC_AUDIT_KEYS_INJECTED:
    case TC_AUDIT_INJECTION_CONFIRMED:
        ev.fields |= TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
        ev.kvn = ev.type == TC_AUDIT_KEYS_ROTATED ? 0x31 : 0x30;
        for (unsigned i = 0; i < 9; i++)
            ev.kcv[i / 3][i % 3] = (uint8_t)(dev + i);
        break;
    case TC_AUDIT_CERT_ISSUED:
        ev.fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
        memcpy(ev.pubkey_sha256, sha, 32);
        TC_FALLTHROUGH;
    case TC_AUDIT_CERT_STORED:
        ev.fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
        ev.cert_serial_len = 16;
        memcpy(ev.cert_serial, sha, 16);
        ev.cert_serial[0] = 0x7F;
        memcpy(ev.cert_sha256, sha + 1, 31);
        break;
    case TC_AUDIT_KEYPAIR_GENERATED:
        ev.fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
        memcpy(ev.pubkey_sha256, sha, 32);
        break;
    case TC_AUDIT_LIFECYCLE_CHANGED:
        ev.fields |= TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
        ev.lifecycle = k == 7 ? 0x0F : 0x7F;
        ev.prev_lifecycle = k == 7 ? 0x07 : 0x0F;
        break;
    case TC_AUDIT_DEVICE_REJECTED:
    case TC_AUDIT_CERT_REVOKED:
    case TC_AUDIT_BATCH_REVOKED:
    default:
        break;
    }
    return encode(&ev, out);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Writes n events (n / PER_DEV devices) in one transaction. */
static void generate(const char *path, uint64_t n, uint64_t *event_bytes)
{
    struct tc_registry *r = NULL;
    if (tc_registry_open(path, NULL, &r) != TC_OK)
        die("create registry");
    tc_registry_close(r);

    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *tree = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("open");
    if (reg_exec(db, "PRAGMA synchronous = OFF; PRAGMA cache_size = -4000000; BEGIN IMMEDIATE") !=
            TC_OK ||
        reg_prep(db, "INSERT INTO audit_events(idx, leaf_hash, event) VALUES(?1, ?2, ?3)", &ins) !=
            TC_OK ||
        reg_prep(db, "INSERT OR REPLACE INTO audit_tree(id, size, root) VALUES(1, ?1, ?2)",
                 &tree) != TC_OK)
        die("prepare");
    struct reg_proj p;
    if (reg_proj_init(&p, db, "main") != TC_OK)
        die("projection");
    struct tc_merkle_tree t;
    tc_merkle_init(&t);
    uint64_t devices = n / PER_DEV, idx = 0, bytes = 0;
    double t0 = bench_now();
    for (uint64_t g = 0; g < devices; g += INTERLEAVE) {
        uint64_t gn = devices - g < INTERLEAVE ? devices - g : INTERLEAVE;
        for (unsigned k = 0; k < PER_DEV; k++) {
            for (uint64_t d = g; d < g + gn; d++) {
                uint8_t ev[TC_AUDIT_EVENT_MAX], leaf[TC_AUDIT_HASH_LEN];
                /* one event per millisecond across the line */
                size_t len = make_event(ev, d, k, T0 + idx);
                if (tc_merkle_leaf_hash(ev, len, leaf) != TC_OK ||
                    tc_merkle_append(&t, leaf) != TC_OK)
                    die("hash");
                sqlite3_bind_int64(ins, 1, (sqlite3_int64)idx);
                sqlite3_bind_blob(ins, 2, leaf, sizeof leaf, SQLITE_STATIC);
                sqlite3_bind_blob(ins, 3, ev, (int)len, SQLITE_STATIC);
                if (sqlite3_step(ins) != SQLITE_DONE)
                    die("insert");
                sqlite3_reset(ins);
                if (reg_proj_apply(&p, idx, ev, len) != TC_OK)
                    die("project");
                bytes += len;
                idx++;
            }
        }
        if (g % (INTERLEAVE * 16384) == 0 && g > 0)
            fprintf(stderr, "  %llu events...\n", (unsigned long long)idx);
    }
    uint8_t root[TC_AUDIT_HASH_LEN];
    if (tc_merkle_root(&t, t.size, root) != TC_OK)
        die("root");
    sqlite3_bind_int64(tree, 1, (sqlite3_int64)t.size);
    sqlite3_bind_blob(tree, 2, root, sizeof root, SQLITE_STATIC);
    if (sqlite3_step(tree) != SQLITE_DONE)
        die("tree head");
    reg_proj_free(&p);
    sqlite3_finalize(ins);
    sqlite3_finalize(tree);
    if (reg_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)") != TC_OK)
        die("commit");
    sqlite3_close(db);
    tc_merkle_free(&t);
    double secs = bench_now() - t0;
    printf("generated %llu events (%llu devices) in %.1f s: %.0f events/s projected in one "
           "transaction\n",
           (unsigned long long)idx, (unsigned long long)devices, secs, (double)idx / secs);
    *event_bytes = bytes;
}

struct q {
    struct tc_registry *r;
    sqlite3 *db;
    sqlite3_stmt *point;
    uint64_t devices, events;
};

static int op_state_at(void *arg)
{
    struct q *q = arg;
    uint64_t dev = rng() % q->devices;
    uint8_t eid[16];
    eid_of(dev, eid);
    /* A moment within the device's life on the line (its events are about
     * INTERLEAVE ms apart), or after it. */
    uint64_t first = (dev / INTERLEAVE) * INTERLEAVE * PER_DEV + dev % INTERLEAVE;
    uint64_t at = T0 + first + rng() % (PER_DEV * INTERLEAVE + 1);
    struct tc_registry_device d;
    size_t n = 0;
    if (tc_registry_device_at(q->r, eid, 16, at, &d, NULL, 0, &n) != TC_OK)
        return 1;
    bench_consume(&d, sizeof d);
    return n > 0 ? 0 : 1;
}

static int op_point(void *arg)
{
    struct q *q = arg;
    sqlite3_bind_int64(q->point, 1, (sqlite3_int64)(rng() % q->events));
    int rc = sqlite3_step(q->point);
    if (rc == SQLITE_ROW)
        bench_consume(sqlite3_column_blob(q->point, 0), (size_t)sqlite3_column_bytes(q->point, 0));
    sqlite3_reset(q->point);
    return rc == SQLITE_ROW ? 0 : 1;
}

/* ------------------------------------------------------------ append CPU */

/* Process CPU seconds (user and system). */
static double cpu_now(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

/*
 * The appends measured, per device: the station's (its 8 line events in 4
 * appends of 2) or an OTA key rotation's on a provisioned device (op-queued;
 * op-step; keys-rotated and op-done: the writer thread's three commits, two
 * of which change only the device row's event counters).
 */
enum shape { SHAPE_STATION, SHAPE_OTA };
static const unsigned shape_appends[] = {[SHAPE_STATION] = 4, [SHAPE_OTA] = 3};

static size_t ota_event(uint8_t out[TC_AUDIT_EVENT_MAX], uint64_t dev, unsigned k, uint64_t t)
{
    static const enum tc_audit_event_type types[] = {TC_AUDIT_OP_QUEUED, TC_AUDIT_OP_STEP,
                                                     TC_AUDIT_KEYS_ROTATED, TC_AUDIT_OP_DONE};
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = types[k];
    ev.time_ms = t;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_OP_ID;
    eid_of(dev, ev.eid);
    ev.eid_len = 16;
    ev.op_id = dev * 16 + 1;
    switch (ev.type) {
    case TC_AUDIT_OP_QUEUED:
        ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_OP_KIND;
        (void)snprintf(ev.actor, sizeof ev.actor, "op:fleet");
        ev.op_kind = 1;
        break;
    case TC_AUDIT_OP_STEP:
        ev.fields |= TC_AUDIT_HAS_STEP;
        ev.step = 1;
        break;
    case TC_AUDIT_KEYS_ROTATED:
        ev.fields |= TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV |
                     TC_AUDIT_HAS_PREV_KVN;
        (void)snprintf(ev.batch, sizeof ev.batch, "B2026-%03u", (unsigned)(dev / 10000 % 1000));
        (void)snprintf(ev.actor, sizeof ev.actor, "ota");
        ev.kvn = 0x32;
        ev.prev_kvn = 0x31;
        for (unsigned i = 0; i < 9; i++)
            ev.kcv[i / 3][i % 3] = (uint8_t)(dev + 2 * i);
        break;
    case TC_AUDIT_OP_DONE:
    default:
        break;
    }
    return encode(&ev, out);
}

/* Append a (0..shape_appends - 1) of device dev: its events into enc. */
static size_t shape_events(enum shape sh, uint64_t dev, unsigned a,
                           uint8_t enc[2][TC_AUDIT_EVENT_MAX], size_t lens[2])
{
    if (sh == SHAPE_STATION) {
        for (unsigned j = 0; j < 2; j++)
            lens[j] = make_event(enc[j], dev, 2 * a + j, T0 + dev * 100 + 2 * a + j);
        return 2;
    }
    uint64_t t = T0 + 50000000 + dev * 100 + a;
    lens[0] = ota_event(enc[0], dev, a, t);
    if (a < 2)
        return 1;
    lens[1] = ota_event(enc[1], dev, 3, t);
    return 2;
}

/* The appends of shape sh for devices [first, first + count). */
static double append_registry(const char *path, enum shape sh, uint64_t first, uint64_t count)
{
    struct tc_registry *r = NULL;
    if (tc_registry_open(path, NULL, &r) != TC_OK)
        die("open registry");
    double c0 = cpu_now();
    for (uint64_t dev = first; dev < first + count; dev++)
        for (unsigned a = 0; a < shape_appends[sh]; a++) {
            uint8_t enc[2][TC_AUDIT_EVENT_MAX];
            size_t lens[2];
            const uint8_t *ptr[2] = {enc[0], enc[1]};
            size_t n = shape_events(sh, dev, a, enc, lens);
            if (tc_registry_append_encoded(r, ptr, lens, n, NULL) != TC_OK)
                die("append");
        }
    double cpu = cpu_now() - c0;
    tc_registry_close(r);
    return cpu / (double)(count * shape_appends[sh]);
}

/* The floor: the same transactions with only the events, in raw SQLite
 * (*next: the next event index of the floor's table). */
static double append_floor(const char *path, enum shape sh, uint64_t first, uint64_t count,
                           uint64_t *next)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        reg_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE IF NOT EXISTS ev(idx INTEGER PRIMARY KEY, event BLOB)") != TC_OK ||
        reg_prep(db, "INSERT INTO ev(idx, event) VALUES(?1, ?2)", &ins) != TC_OK ||
        reg_prep(db, "BEGIN IMMEDIATE", &begin) != TC_OK ||
        reg_prep(db, "COMMIT", &commit) != TC_OK)
        die("floor database");
    double c0 = cpu_now();
    for (uint64_t dev = first; dev < first + count; dev++)
        for (unsigned a = 0; a < shape_appends[sh]; a++) {
            bool ok = sqlite3_step(begin) == SQLITE_DONE;
            sqlite3_reset(begin);
            uint8_t enc[2][TC_AUDIT_EVENT_MAX];
            size_t lens[2];
            size_t n = shape_events(sh, dev, a, enc, lens);
            for (size_t j = 0; j < n; j++) {
                sqlite3_bind_int64(ins, 1, (sqlite3_int64)(*next)++);
                sqlite3_bind_blob(ins, 2, enc[j], (int)lens[j], SQLITE_STATIC);
                ok = ok && sqlite3_step(ins) == SQLITE_DONE;
                sqlite3_reset(ins);
            }
            ok = ok && sqlite3_step(commit) == SQLITE_DONE;
            sqlite3_reset(commit);
            if (!ok)
                die("floor append");
        }
    double cpu = cpu_now() - c0;
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    return cpu / (double)(count * shape_appends[sh]);
}

static void remove_db(const char *path)
{
    char p[4200];
    (void)unlink(path);
    (void)snprintf(p, sizeof p, "%s-wal", path);
    (void)unlink(p);
    (void)snprintf(p, sizeof p, "%s-shm", path);
    (void)unlink(p);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_appends(const char *dir)
{
    uint64_t count = 500;
    const char *env = getenv("TC_BENCH_APPEND_DEVICES");
    if (env != NULL && (tc_parse_uint(env, 1000000, &count) != TC_OK || count == 0)) {
        fprintf(stderr, "bench_registry: TC_BENCH_APPEND_DEVICES must be 1..1000000\n");
        exit(1);
    }
    struct stat st;
    const char *adir = getenv("TC_BENCH_APPEND_DIR");
    if (adir == NULL || adir[0] == '\0')
        adir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : dir;
    dir = adir;
    char reg[4096], raw[4096];
    (void)snprintf(reg, sizeof reg, "%s/bench-registry-appends.db", dir);
    (void)snprintf(raw, sizeof raw, "%s/bench-registry-floor.db", dir);
    remove_db(reg);
    remove_db(raw);
    enum { RUNS = 5 };
    double ours[2][RUNS], floor[2][RUNS];
    uint64_t next = 0;
    /* Interleaved, each run continuing the same databases: the station's
     * appends for the run's devices, then an OTA rotation of each. */
    for (unsigned i = 0; i < RUNS; i++)
        for (unsigned sh = SHAPE_STATION; sh <= SHAPE_OTA; sh++) {
            ours[sh][i] = append_registry(reg, sh, i * count, count);
            floor[sh][i] = append_floor(raw, sh, i * count, count, &next);
        }
    static const char *const names[] = {
        [SHAPE_STATION] = "durable append, 2 events (station-like)",
        [SHAPE_OTA] = "durable append, OTA rotation (1, 1, 2 ev.)",
    };
    for (unsigned sh = SHAPE_STATION; sh <= SHAPE_OTA; sh++) {
        qsort(ours[sh], RUNS, sizeof ours[sh][0], cmp_double);
        qsort(floor[sh], RUNS, sizeof floor[sh][0], cmp_double);
        double o = ours[sh][RUNS / 2], f = floor[sh][RUNS / 2];
        printf("%-44s %7.1f us CPU | floor raw SQLite, same txns %7.1f us CPU | %5.2fx floor\n",
               names[sh], o * 1e6, f * 1e6, o / f);
        printf("    (%s, %llu devices x %u appends per run, median of %d runs; per device: %.0f "
               "us CPU)\n",
               dir, (unsigned long long)count, shape_appends[sh], RUNS,
               o * 1e6 * shape_appends[sh]);
    }
    remove_db(reg);
    remove_db(raw);
}

int main(void)
{
    bench_init("bench_registry");
    uint64_t n = 1000000;
    const char *env = getenv("TC_BENCH_REGISTRY_EVENTS");
    if (env != NULL && (tc_parse_uint(env, 100000000, &n) != TC_OK || n < PER_DEV * INTERLEAVE)) {
        fprintf(stderr, "bench_registry: TC_BENCH_REGISTRY_EVENTS must be 640..100000000\n");
        return 1;
    }
    n = n / PER_DEV * PER_DEV;
    const char *dir = getenv("TC_BENCH_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = ".";
    char path[4096], wal[4200], shm[4200];
    (void)snprintf(path, sizeof path, "%s/bench-registry.db", dir);
    (void)snprintf(wal, sizeof wal, "%s-wal", path);
    (void)snprintf(shm, sizeof shm, "%s-shm", path);
    (void)unlink(path);
    (void)unlink(wal);
    (void)unlink(shm);

    bench_appends(dir);

    uint64_t event_bytes = 0;
    generate(path, n, &event_bytes);

    struct q q = {.devices = n / PER_DEV, .events = n};
    if (tc_registry_open_reader(path, &q.r) != TC_OK)
        die("open reader");
    if (sqlite3_open_v2(path, &q.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        reg_prep(q.db, "SELECT event FROM audit_events WHERE idx = ?1", &q.point) != TC_OK)
        die("open floor");
    char name[96];
    (void)snprintf(name, sizeof name, "state-at-T, %llu events", (unsigned long long)n);
    double ratio = bench_compare(name, op_state_at, &q, "SQLite point query", op_point, &q);
    (void)ratio;
    double per_s = bench_run(op_state_at, &q);
    printf("    state-at-T: %.3f ms per query (median of %u samples; target < 5 ms)\n",
           1000.0 / per_s, bench_samples());

    uint64_t disk = 0;
    if (tc_audit_store_sqlite_disk_bytes(path, &disk) != TC_OK)
        die("disk bytes");
    printf("%-44s %10.1f B   canonical event %6.1f B   %.2fx\n", "bytes per event on disk",
           (double)disk / (double)n, (double)event_bytes / (double)n,
           ((double)disk / (double)n) / ((double)event_bytes / (double)n));

    sqlite3_finalize(q.point);
    sqlite3_close(q.db);
    tc_registry_close(q.r);
    (void)unlink(path);
    (void)unlink(wal);
    (void)unlink(shm);
    return 0;
}
