/*
 * trustchain demo (what `make demo` runs): a whole line in one command, in
 * plain words. init -> root ceremony -> batch CA -> the SE vendor's
 * transport keyset into the HSM -> 1,000 emulated cards through the line ->
 * one device's state with its proofs -> audit verify -> pki verify of that
 * device's chain with both CRLs.
 *
 * Every step runs in this process: the library for the transport keyset and
 * the certificate read-out, the same command functions a user would type
 * for the rest (so what the demo prints is what those commands print).
 *
 * Must never: print a PIN (the demo workspace's PINs are random, in
 * <ws>/secrets/ with mode 0600), or delete a directory it did not create.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <trustchain/hsm.h>
#include <trustchain/ota_agent.h>
#include <trustchain/ota_ops.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/station.h>

#include "cli.h"

#define DEMO_PATH_MAX 4096
#define DEMO_BATCH    "DEMO-0001"
#define DEMO_PREFIX   "89049032"
#define DEMO_STAMP    ".trustchain-demo"

extern char **environ;

static const char usage[] =
    "usage: trustchain demo [--workspace DIR] [--count N] [--jobs J]\n"
    "\n"
    "Run a whole manufacturing line on this machine: create a workspace (SoftHSM2\n"
    "token, registry, audit log), hold the root key ceremony, create a batch CA,\n"
    "import the SE vendor's transport keys, provision N emulated secure elements\n"
    "(default 1000), then show one device's state with its inclusion proofs, verify\n"
    "the audit log and verify that device's certificate chain with the CRLs; then,\n"
    "over the air (an OTA server and every card's agent on loopback): rotate every\n"
    "device's SCP03 keys, renew one certificate, revoke one device and then the\n"
    "whole batch, each refused at the TLS handshake.\n"
    "\n"
    "The workspace defaults to ./trustchain-demo; a previous demo workspace there\n"
    "is replaced (only one this command created).\n";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void say(const char *fmt, ...) TC_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)fputs("\n==> ", stdout);
    (void)vprintf(fmt, ap);
    (void)fputc('\n', stdout);
    va_end(ap);
    (void)fflush(stdout);
}

/* Run a command group's function as the user would type it. */
static int run(int (*fn)(int, char **), const char *const *args)
{
    char *argv[32];
    int argc = 0;
    (void)fputs("    $ trustchain", stdout);
    for (; args[argc] != NULL && argc < 31; argc++) {
        argv[argc] = (char *)(uintptr_t)args[argc];
        (void)printf(" %s", args[argc]);
    }
    argv[argc] = NULL;
    (void)fputc('\n', stdout);
    (void)fflush(stdout);
    int rc = fn(argc, argv);
    (void)fflush(stdout);
    (void)fflush(stderr);
    return rc;
}

static bool exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A fresh workspace directory; an earlier demo's is removed. */
static tc_err fresh_workspace(const char *ws)
{
    char stamp[DEMO_PATH_MAX + 32];
    (void)snprintf(stamp, sizeof stamp, "%s/%s", ws, DEMO_STAMP);
    if (exists(ws)) {
        TC_ENSURE_MSG(exists(stamp), TC_ERR_STATE,
                      "%s exists and is not a demo workspace; choose another --workspace", ws);
        TC_ENSURE_MSG(nftw(ws, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, TC_ERR_IO,
                      "cannot remove the previous demo workspace %s", ws);
    }
    TC_ENSURE_MSG(mkdir(ws, 0700) == 0, TC_ERR_IO, "cannot create %s: %s", ws, strerror(errno));
    int fd = open(stamp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "cannot create %s", stamp);
    (void)close(fd);
    return TC_OK;
}

/* The SE vendor's side: a transport keyset for the batch, its key file
 * (as vendors deliver it), and the import into the HSM. */
static tc_err vendor_keys(const char *ws, const char *keyfile)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t k[3][16];
    char text[256];
    struct tc_hsm *h = NULL;
    struct tc_hsm_workspace hw;
    char pin[TC_HSM_PIN_MAX + 1], pf[DEMO_PATH_MAX + 32];
    size_t pin_len = 0;
    (void)snprintf(pf, sizeof pf, "%s/secrets/user.pin", ws);
    for (size_t i = 0; i < 3; i++)
        TC_TRY(tc_random(k[i], sizeof k[i]));
    char hex[3][33];
    for (size_t i = 0; i < 3; i++)
        TC_TRY(tc_hex_encode(k[i], 16, hex[i], sizeof hex[i]));
    int n = snprintf(text, sizeof text,
                     "# SE vendor transport keyset, batch %s, KVN 30 (demo)\nENC = %s\nMAC = "
                     "%s\nDEK = %s\n",
                     DEMO_BATCH, hex[0], hex[1], hex[2]);
    tc_memzero(hex, sizeof hex);
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    TC_CHECK_MSG(fd >= 0, TC_ERR_IO, "cannot create %s: %s", keyfile, strerror(errno));
    bool ok = n > 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    TC_CHECK_MSG(ok, TC_ERR_IO, "cannot write %s", keyfile);
    TC_TRY(tc_hsm_workspace_load(ws, &hw));
    TC_TRY(tc_hsm_pin_read(TC_HSM_ENV_PIN, exists(pf) ? pf : NULL, pin, sizeof pin, &pin_len));
    struct tc_hsm_config hc = {.module_path = hw.module_path,
                               .softhsm_conf = hw.softhsm_conf,
                               .token_label = hw.token_label,
                               .pin = pin,
                               .pin_len = pin_len,
                               .pool_size = 1};
    TC_TRY(tc_hsm_open(&hc, &h));
    struct tc_hsm_keyset ks;
    TC_TRY(tc_hsm_transport_import(h, DEMO_BATCH, TC_STATION_TRANSPORT_KVN, k[0], k[1], k[2], 16,
                                   &ks));
    ret = TC_OK;
out:
    tc_hsm_close(h);
    tc_memzero(pin, sizeof pin);
    tc_memzero(k, sizeof k);
    tc_memzero(text, sizeof text);
    return ret;
}

/* The device's certificate from the registry's side table, as PEM. */
static tc_err device_cert(const char *ws, const char *eid, const char *out, char *eid_hex,
                          size_t hex_size)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_registry *reg = NULL;
    uint8_t bcd[16], der[TC_REGISTRY_CERT_MAX];
    size_t dl = 0;
    struct tc_registry_device d;
    struct tc_buf pem;
    tc_buf_init_heap(&pem, 4 * TC_REGISTRY_CERT_MAX);
    TC_TRY(tc_pki_eid_to_bcd(eid, bcd));
    TC_TRY(tc_hex_encode(bcd, sizeof bcd, eid_hex, hex_size));
    TC_TRY(tc_registry_open_workspace(ws, &reg));
    TC_TRY(tc_registry_device_get(reg, bcd, sizeof bcd, &d));
    TC_CHECK_MSG(d.state == TC_REG_PROVISIONED && d.has_cert, TC_ERR_STATE,
                 "device %s is %s, not provisioned", eid, tc_registry_state_name(d.state));
    TC_TRY(tc_registry_cert_get(reg, d.cert_sha256, der, sizeof der, &dl));
    TC_TRY(tc_pki_pem_encode("CERTIFICATE", der, dl, &pem));
    FILE *f = fopen(out, "wb");
    TC_CHECK_MSG(f != NULL, TC_ERR_IO, "cannot write %s", out);
    bool ok = fwrite(pem.data, 1, pem.len, f) == pem.len;
    ok = fclose(f) == 0 && ok;
    TC_CHECK_MSG(ok, TC_ERR_IO, "cannot write %s", out);
    ret = TC_OK;
out:
    tc_registry_close(reg);
    tc_buf_free(&pem);
    return ret;
}

/* ------------------------------------------------------------ over the air */

struct demo_eids {
    char (*eid)[33];
    size_t n, cap;
};

static tc_err collect_eid(void *arg, const struct tc_registry_device *d)
{
    struct demo_eids *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap != 0 ? 2 * l->cap : 256;
        char(*p)[33] = realloc(l->eid, cap * sizeof *p);
        TC_ENSURE(p != NULL, TC_ERR_NOMEM);
        l->eid = p;
        l->cap = cap;
    }
    TC_GUARD(tc_hex_encode(d->eid, d->eid_len, l->eid[l->n], sizeof l->eid[0]));
    l->n++;
    return TC_OK;
}

struct queue_job {
    struct tc_registry *reg;
    const struct demo_eids *l;
    size_t from, to;
    tc_err rc;
};

/* Queueing from several threads: the registry commits them together. */
static void *queue_slice(void *arg)
{
    struct queue_job *q = arg;
    q->rc = TC_OK;
    for (size_t i = q->from; i < q->to && q->rc == TC_OK; i++) {
        struct tc_ota_queue_request rq = {.eid = q->l->eid[i],
                                          .code = TC_OTA_OP_ROTATE_KEYS,
                                          .actor = "demo-operator",
                                          .kvn = 0x31,
                                          .master = "fleet-2"};
        uint64_t id = 0;
        q->rc = tc_ota_queue_add(q->reg, &rq, &id);
    }
    return NULL;
}

/* Every provisioned device gets rotate-keys to KVN 31 from master fleet-2;
 * the first one also renew-cert. */
static tc_err queue_batch(const char *ws, struct demo_eids *l)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_registry *reg = NULL;
    struct queue_job jobs[8];
    pthread_t th[8];
    size_t started = 0;
    TC_TRY(tc_registry_open_workspace(ws, &reg));
    TC_TRY(tc_registry_device_list(reg, DEMO_BATCH, TC_REG_PROVISIONED, collect_eid, l));
    TC_CHECK_MSG(l->n >= 3, TC_ERR_STATE, "the demo needs at least 3 provisioned devices");
    for (size_t t = 0; t < 8; t++) {
        jobs[t] = (struct queue_job){reg, l, l->n * t / 8, l->n * (t + 1) / 8, TC_OK};
        if (pthread_create(&th[t], NULL, queue_slice, &jobs[t]) != 0)
            break;
        started++;
    }
    for (size_t t = 0; t < started; t++)
        (void)pthread_join(th[t], NULL);
    TC_CHECK_MSG(started == 8, TC_ERR_INTERNAL, "cannot start the queueing threads");
    for (size_t t = 0; t < 8; t++)
        TC_TRY(jobs[t].rc);
    struct tc_ota_queue_request rq = {
        .eid = l->eid[0], .code = TC_OTA_OP_RENEW_CERT, .actor = "demo-operator"};
    uint64_t id = 0;
    TC_TRY(tc_ota_queue_add(reg, &rq, &id));
    ret = TC_OK;
out:
    tc_registry_close(reg);
    return ret;
}

/* A free loopback port (closed again; the server binds it right after). */
static tc_err free_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &al) == 0;
    (void)close(fd);
    TC_ENSURE_MSG(ok, TC_ERR_IO, "no free port: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return TC_OK;
}

static bool port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    (void)close(fd);
    return ok;
}

struct serve_thread {
    char *argv[16];
    int argc;
    int rc;
    atomic_bool ended;
};

static void *serve_main(void *arg)
{
    struct serve_thread *s = arg;
    s->rc = tc_cli_ota(s->argc, s->argv);
    atomic_store(&s->ended, true);
    return NULL;
}

/* `trustchain <args>` in a child process: the revocations open the HSM
 * with a PIN, which this process (the server thread) is logged in to. */
static int run_child(const char *const *args)
{
    pid_t pid = 0;
    int st = 0;
    char *av[24];
    size_t n = 0;
    av[n++] = (char *)(uintptr_t) "trustchain";
    for (; args[n - 1] != NULL && n < TC_ARRAY_LEN(av) - 1; n++)
        av[n] = (char *)(uintptr_t)args[n - 1];
    av[n] = NULL;
    (void)fflush(stdout);
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, av, environ) != 0)
        return TC_EXIT_FAIL;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return TC_EXIT_FAIL;
    return WIFEXITED(st) ? WEXITSTATUS(st) : TC_EXIT_FAIL;
}

struct fleet {
    struct tc_ota_agent *agent;
    struct event_base *base;
    const char *cards;
    size_t n, next, running, done, ok;
    struct dev_run *runs;
    char (*card_eid)[33];
};

struct dev_run {
    struct fleet *f;
    size_t index;
    bool ok;
    struct tc_transport t;
    struct tc_ota_card card;
    struct tc_ota_agent_session *sess;
    bool open;
};

static void start_more(struct fleet *f);

static void dev_done(void *arg, const struct tc_ota_agent_result *res)
{
    struct dev_run *r = arg;
    struct fleet *f = r->f;
    if (res->outcome == TC_OTA_AGENT_DONE) {
        f->ok++;
        r->ok = true;
    } else {
        (void)fprintf(stderr, "  card %zu: %s (retried below)\n", r->index, res->detail);
    }
    tc_ota_agent_session_free(r->sess);
    r->sess = NULL;
    tc_ota_card_close(&r->card);
    tc_transport_close(&r->t);
    r->open = false;
    f->running--;
    f->done++;
    if (f->done % 250 == 0 || f->done == f->n)
        say("    %zu/%zu devices connected", f->done, f->n);
    start_more(f);
}

/* Up to 64 cards in dialog at once, all on this thread's loop. */
static void start_more(struct fleet *f)
{
    while (f->running < 64 && f->next < f->n) {
        struct dev_run *r = &f->runs[f->next];
        char path[DEMO_PATH_MAX + 64];
        r->f = f;
        r->index = f->next++;
        (void)snprintf(path, sizeof path, "%s/card-%06zu.img", f->cards, r->index);
        tc_err rc = tc_se_transport_open(path, TC_SE_OPEN_NO_FSYNC, &r->t);
        if (rc == TC_OK) {
            rc = tc_ota_card_open(&r->t, &r->card);
            if (rc != TC_OK)
                tc_transport_close(&r->t);
        }
        if (rc == TC_OK) {
            (void)snprintf(f->card_eid[r->index], sizeof f->card_eid[0], "%s", r->card.eid);
            rc = tc_ota_agent_start(f->agent, f->base, &r->card, dev_done, r, &r->sess);
            if (rc != TC_OK) {
                tc_ota_card_close(&r->card);
                tc_transport_close(&r->t);
            }
        }
        if (rc != TC_OK) {
            char m[300];
            tc_error_format(m, sizeof m);
            (void)fprintf(stderr, "  card %zu: %s\n", r->index, m);
            f->done++;
            continue;
        }
        r->open = true;
        f->running++;
    }
    if (f->done == f->n)
        (void)event_base_loopexit(f->base, NULL);
}

/* Connect until the server refuses the card at TLS (it reloads the CRLs
 * every second; a loaded machine may need a few): the last outcome. */
static enum tc_ota_agent_outcome connect_one(struct tc_ota_agent *a, const char *cards, size_t i,
                                             char *detail, size_t detail_size);
static enum tc_ota_agent_outcome until_refused(struct tc_ota_agent *a, const char *cards, size_t i,
                                               char *detail, size_t detail_size)
{
    enum tc_ota_agent_outcome o = TC_OTA_AGENT_INTERNAL;
    for (int attempt = 0; attempt < 10; attempt++) {
        (void)usleep(1000000);
        o = connect_one(a, cards, i, detail, detail_size);
        if (o == TC_OTA_AGENT_REFUSED)
            break;
    }
    return o;
}

/* One card's dialog, blocking: the outcome (refused at TLS is the point). */
static enum tc_ota_agent_outcome connect_one(struct tc_ota_agent *a, const char *cards, size_t i,
                                             char *detail, size_t detail_size)
{
    char path[DEMO_PATH_MAX + 64];
    struct tc_transport t;
    struct tc_ota_card card;
    struct tc_ota_agent_result res;
    memset(&res, 0, sizeof res);
    res.outcome = TC_OTA_AGENT_INTERNAL;
    (void)snprintf(path, sizeof path, "%s/card-%06zu.img", cards, i);
    if (tc_se_transport_open(path, TC_SE_OPEN_NO_FSYNC, &t) == TC_OK) {
        if (tc_ota_card_open(&t, &card) == TC_OK) {
            if (tc_ota_agent_run(a, &card, &res) == TC_OK)
                res.outcome = TC_OTA_AGENT_DONE;
            tc_ota_card_close(&card);
        }
        tc_transport_close(&t);
    }
    (void)snprintf(detail, detail_size, "%s", res.detail);
    return res.outcome;
}

static int ota_steps(const char *ws, const char *up, const char *rp, const char *cards)
{
    int rc = TC_EXIT_FAIL;
    struct demo_eids l = {0};
    struct fleet f = {0};
    struct serve_thread st = {0};
    pthread_t th;
    bool serving = false;
    char listen[32], url[64], trust[DEMO_PATH_MAX + 32], detail[256];
    uint16_t port = 0;
    tc_err e;

    say("9/13 Over the air: a new master key fleet-2 in the HSM, and for every device\n"
        "     a rotate-keys operation queued in the audit log (KVN 31 from fleet-2);\n"
        "     the first device also gets renew-cert.");
    rc = run(tc_cli_hsm, (const char *const[]){"hsm", "generate", "--workspace", ws, "--master",
                                               "fleet-2", "--pin-file", up, NULL});
    if (rc != TC_EXIT_OK)
        goto out;
    rc = TC_EXIT_FAIL;
    if ((e = queue_batch(ws, &l)) != TC_OK) {
        rc = tc_cli_error(e, "demo");
        goto out;
    }
    say("    %zu operations queued.", l.n + 1);

    say("10/13 The OTA server (TLS 1.3, mutual authentication, GP Amendment B, SCP03 end\n"
        "      to end) on loopback, and every card's agent connecting to it: the server\n"
        "      applies each device's queued operations, recording its intent before\n"
        "      every change to the card.");
    if ((e = free_port(&port)) != TC_OK) {
        rc = tc_cli_error(e, "demo");
        goto out;
    }
    (void)snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
    (void)snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)port);
    (void)snprintf(trust, sizeof trust, "%s/ota/server.pem", ws);
    const char *sargs[] = {"ota",        "serve",    "--listen",     listen,  "--workspace",
                           ws,           "--master", "line",         "--kvn", "1",
                           "--pin-file", up,         "--stop-after", "3600",  NULL};
    for (st.argc = 0; sargs[st.argc] != NULL; st.argc++)
        st.argv[st.argc] = (char *)(uintptr_t)sargs[st.argc];
    if (pthread_create(&th, NULL, serve_main, &st) != 0)
        goto out;
    serving = true;
    /* Wait for it to listen; the probe connection closes without TLS,
     * which the server would log as a refused handshake. */
    enum tc_log_level level = tc_log_get_level();
    tc_log_set_level(TC_LOG_ERROR);
    for (int i = 0; i < 200 && !(exists(trust) && port_open(port)); i++)
        (void)usleep(50000);
    (void)usleep(100000);
    tc_log_set_level(level);
    struct tc_ota_agent_config ac = {.url = url, .trust_file = trust};
    if ((e = tc_ota_agent_new(&ac, &f.agent)) != TC_OK) {
        rc = tc_cli_error(e, "demo");
        goto out;
    }
    f.base = event_base_new();
    f.cards = cards;
    f.n = l.n;
    f.runs = calloc(f.n, sizeof *f.runs);
    f.card_eid = calloc(f.n, sizeof *f.card_eid);
    if (f.base == NULL || f.runs == NULL || f.card_eid == NULL)
        goto out;
    struct timespec a0, a1;
    (void)clock_gettime(CLOCK_MONOTONIC, &a0);
    start_more(&f);
    if (f.done < f.n)
        (void)event_base_dispatch(f.base);
    /* A dialog that failed (a timeout on a loaded machine) is simply run
     * again: the device's operations resume from what the log holds. */
    for (size_t i = 0; i < f.n && f.ok < f.n; i++) {
        if (f.runs[i].ok)
            continue;
        if (connect_one(f.agent, cards, i, detail, sizeof detail) == TC_OTA_AGENT_DONE) {
            f.runs[i].ok = true;
            f.ok++;
        } else {
            (void)fprintf(stderr, "  card %zu: %s\n", i, detail);
        }
    }
    (void)clock_gettime(CLOCK_MONOTONIC, &a1);
    say("     %zu of %zu devices completed their dialog in %.1f s (keys rotated, one\n"
        "     certificate renewed).",
        f.ok, f.n, (double)(a1.tv_sec - a0.tv_sec) + (double)(a1.tv_nsec - a0.tv_nsec) / 1e9);
    if (f.ok != f.n)
        goto out;
    rc = run(tc_cli_device, (const char *const[]){"device", "ops", f.card_eid[1], "--all",
                                                  "--workspace", ws, NULL});
    if (rc != TC_EXIT_OK)
        goto out;

    say("11/13 The renewed device: a new key pair generated on the card with proof of\n"
        "      possession, a new certificate stored and read back, the old one revoked.");
    rc = run(tc_cli_device,
             (const char *const[]){"device", "ops", l.eid[0], "--all", "--workspace", ws, NULL});
    if (rc != TC_EXIT_OK)
        goto out;

    size_t one = strcmp(f.card_eid[1], l.eid[0]) != 0 ? 1 : 2;
    size_t other = one == 1 ? 2 : 3;
    other = other < f.n ? other : 0;
    say("12/13 Revoke one device (%s): a new batch CRL; the server reloads it and\n"
        "      refuses that device at the TLS handshake.",
        f.card_eid[one]);
    rc = run_child((const char *const[]){"device", "revoke", f.card_eid[one], "--reason",
                                         "keyCompromise", "--workspace", ws, "--pin-file", up,
                                         NULL});
    if (rc != TC_EXIT_OK)
        goto out;
    rc = TC_EXIT_FAIL;
    enum tc_ota_agent_outcome o = until_refused(f.agent, cards, one, detail, sizeof detail);
    say("      device %s: %s (%s)", f.card_eid[one], tc_ota_agent_outcome_name(o), detail);
    if (o != TC_OTA_AGENT_REFUSED)
        goto out;

    say("13/13 Revoke the whole batch %s: a new root CRL; every device of the batch is\n"
        "      refused at the TLS handshake.",
        DEMO_BATCH);
    rc = run_child((const char *const[]){"device", "revoke-batch", DEMO_BATCH, "--workspace", ws,
                                         "--root-pin-file", rp, NULL});
    if (rc != TC_EXIT_OK)
        goto out;
    rc = TC_EXIT_FAIL;
    o = until_refused(f.agent, cards, other, detail, sizeof detail);
    say("      device %s: %s (%s)", f.card_eid[other], tc_ota_agent_outcome_name(o), detail);
    if (o != TC_OTA_AGENT_REFUSED)
        goto out;
    rc = TC_EXIT_OK;
out:
    if (serving) {
        /* The server's loop catches SIGTERM and stops (a server that
         * already ended no longer handles it). */
        if (!atomic_load(&st.ended))
            (void)raise(SIGTERM);
        (void)pthread_join(th, NULL);
        if (rc == TC_EXIT_OK && st.rc != TC_EXIT_OK)
            rc = st.rc;
    }
    for (size_t i = 0; f.runs != NULL && i < f.n; i++) {
        if (f.runs[i].sess != NULL)
            tc_ota_agent_session_free(f.runs[i].sess);
        if (f.runs[i].open) {
            tc_ota_card_close(&f.runs[i].card);
            tc_transport_close(&f.runs[i].t);
        }
    }
    free(f.runs);
    free(f.card_eid);
    if (f.base != NULL)
        event_base_free(f.base);
    tc_ota_agent_free(f.agent);
    free(l.eid);
    return rc;
}

int tc_cli_demo(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(usage, stdout);
        return TC_EXIT_OK;
    }
    const char *wsarg = "trustchain-demo", *count = "1000", *jobs = "32";
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--workspace") == 0)
            slot = &wsarg;
        else if (strcmp(argv[i], "--count") == 0)
            slot = &count;
        else if (strcmp(argv[i], "--jobs") == 0)
            slot = &jobs;
        else
            return tc_cli_usage_error("demo: unknown option '%s' (see 'trustchain demo --help')",
                                      argv[i]);
        if (i + 1 >= argc)
            return tc_cli_usage_error("demo: %s needs a value", argv[i]);
        *slot = argv[++i];
    }
    uint64_t n = 0, j = 0;
    if (tc_parse_uint(count, 100000, &n) != TC_OK || n == 0)
        return tc_cli_usage_error("demo: --count must be 1 to 100000");
    if (tc_parse_uint(jobs, TC_STATION_MAX_JOBS, &j) != TC_OK || j == 0)
        return tc_cli_usage_error("demo: --jobs must be 1 to %u", TC_STATION_MAX_JOBS);
    struct timespec t0, t1;
    (void)clock_gettime(CLOCK_MONOTONIC, &t0);
    tc_err e = fresh_workspace(wsarg);
    if (e != TC_OK)
        return tc_cli_error(e, "demo");
    char ws[DEMO_PATH_MAX];
    if (realpath(wsarg, ws) == NULL)
        return tc_cli_error(TC_FAIL(TC_ERR_IO, "%s: %s", wsarg, strerror(errno)), "demo");
    /* The demo's own PINs: random files in the workspace, never the
     * caller's environment (a real line passes its own). */
    (void)unsetenv(TC_HSM_ENV_PIN);
    (void)unsetenv(TC_HSM_ENV_SO_PIN);
    (void)unsetenv("TRUSTCHAIN_ROOT_PIN");
    char up[DEMO_PATH_MAX + 32], sp[DEMO_PATH_MAX + 32], rp[DEMO_PATH_MAX + 32];
    char keyfile[DEMO_PATH_MAX + 64], cards[DEMO_PATH_MAX + 16], certf[DEMO_PATH_MAX + 32];
    (void)snprintf(up, sizeof up, "%s/secrets/user.pin", ws);
    (void)snprintf(sp, sizeof sp, "%s/secrets/so.pin", ws);
    (void)snprintf(rp, sizeof rp, "%s/secrets/root.pin", ws);
    (void)snprintf(keyfile, sizeof keyfile, "%s/secrets/vendor-%s-transport.keys", ws, DEMO_BATCH);
    (void)snprintf(cards, sizeof cards, "%s/cards", ws);
    (void)snprintf(certf, sizeof certf, "%s/device.pem", ws);
    char eid[33], eid_hex[33];
    if (tc_station_emulated_eid(DEMO_PREFIX, 0, eid) != TC_OK)
        return tc_cli_error(TC_ERR_INTERNAL, "demo");

    say("1/13 Create the workspace %s: configuration, SoftHSM2 token with the master\n"
        "    diversification key and the audit checkpoint key, registry with its audit log.",
        ws);
    int rc = run(tc_cli_init, (const char *const[]){"init", "--workspace", ws, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("2/13 Root key ceremony: the root CA key is generated in its own HSM token and\n"
        "    signs the self-signed root certificate and the first root CRL.");
    rc =
        run(tc_cli_pki, (const char *const[]){"pki", "root-ceremony", "--workspace", ws, "--cn",
                                              "trustchain Demo Root CA", "--org", "trustchain demo",
                                              "--root-pin-file", rp, "--so-pin-file", sp, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("3/13 Batch CA for batch %s (EIDs %s...): its key in the line's token, its\n"
        "    certificate signed by the root.",
        DEMO_BATCH, DEMO_PREFIX);
    rc = run(tc_cli_pki,
             (const char *const[]){"pki", "batch-ca", "--workspace", ws, "--batch", DEMO_BATCH,
                                   "--eid-prefix", DEMO_PREFIX, "--manufacturer", "trustchain demo",
                                   "--pin-file", up, "--root-pin-file", rp, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("4/13 The SE vendor's transport keyset for the batch: written to the vendor's key\n"
        "    file %s and imported into the HSM (never readable again).",
        keyfile);
    if ((e = vendor_keys(ws, keyfile)) != TC_OK)
        return tc_cli_error(e, "demo");

    say("5/13 The line: %s emulated secure elements, shipped with the transport keys, go\n"
        "    through every gate (%s at a time).",
        count, jobs);
    rc = run(tc_cli_line,
             (const char *const[]){"line", "run", "--workspace", ws, "--batch", DEMO_BATCH,
                                   "--count", count, "--emulate", cards, "--vendor-keys", keyfile,
                                   "--jobs", jobs, "--pin-file", up, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    if ((e = device_cert(ws, eid, certf, eid_hex, sizeof eid_hex)) != TC_OK)
        return tc_cli_error(e, "demo");
    say("6/13 One device, %s: its state as the log proves it (each event with an\n"
        "    inclusion proof against a signed checkpoint).",
        eid);
    rc = run(tc_cli_audit, (const char *const[]){"audit", "checkpoint", "--workspace", ws,
                                                 "--pin-file", up, NULL});
    if (rc == TC_EXIT_OK)
        rc = run(tc_cli_device, (const char *const[]){"device", "show", eid_hex, "--workspace", ws,
                                                      "--pin-file", up, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("7/13 Verify the whole audit log: every event, the Merkle tree, every checkpoint\n"
        "    signature, and the registry rebuilt from the log.");
    rc = run(tc_cli_audit,
             (const char *const[]){"audit", "verify", "--workspace", ws, "--pin-file", up, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("8/13 Verify that device's certificate chain (device -> batch CA -> root) with\n"
        "    the root and batch CRLs.");
    rc = run(tc_cli_pki, (const char *const[]){"pki", "verify", certf, "--workspace", ws, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    rc = ota_steps(ws, up, rp, cards);
    if (rc != TC_EXIT_OK)
        return rc;

    (void)clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    (void)printf("\nDone in %.1f s. What happened and where it is:\n", secs);
    (void)printf("  workspace        %s\n", ws);
    (void)printf("  configuration    %s/trustchain.conf\n", ws);
    (void)printf("  HSM tokens       %s/hsm/ (line token + root token; PINs in %s/secrets/, "
                 "mode 0600)\n",
                 ws, ws);
    (void)printf("  root CA          %s/pki/root.pem, CRL %s/pki/root-crl.pem\n", ws, ws);
    (void)printf("  batch CA         %s/pki/batches/%s/ca.pem, CRL crl.pem beside it\n", ws,
                 DEMO_BATCH);
    (void)printf("  cards            %s/card-*.img (emulated secure elements, SECURED, keyset KVN "
                 "31 from master fleet-2)\n",
                 cards);
    (void)printf("  registry + log   %s/%s (every step of every device is an event)\n", ws,
                 TC_REGISTRY_DB_NAME);
    (void)printf("  one device cert  %s (EID %s)\n", certf, eid);
    (void)printf("Try: trustchain device history %s --workspace %s\n", eid_hex, ws);
    return TC_EXIT_OK;
}
