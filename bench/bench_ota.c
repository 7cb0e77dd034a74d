/*
 * bench_ota: the OTA server under load, over loopback, bounded in count and
 * time. Each server (tc_ota_server on libevent: its loop threads carry the
 * connections, the operations run on its main loop) runs in a
 * forked child, forked before the fleet fills this process's heap; this
 * process is the load generator holding the emulated devices.
 *
 *   floor        raw OpenSSL TLS 1.3 handshakes with the same credentials
 *                (P-256 server certificate, mutual authentication with a
 *                device certificate, OpenSSL's default chain verification
 *                to the root) over loopback: two blocking server processes
 *                and four client threads, the rate this machine reaches
 *                with both ends on it. Its samples are interleaved with the
 *                samples of each measurement.
 *   verify       the device certificate check the server runs in every
 *                handshake (tc_ota_trust_verify_x509) beside OpenSSL's
 *                default verification of the same chain: for a device seen
 *                before (the trust's cache answers) and the full check.
 *   concurrency  N devices (own EID, software P-256 key, certificate issued
 *                by the batch CA) connect (TLS 1.3 + GET /ota/v1/identity)
 *                and hold their connection: how many are open at once on
 *                the server, and its memory per connection.
 *   SCP03        complete SCP03 sessions per second over the Amendment B
 *                dialog with p50/p99 latency (connect, TLS, SELECT +
 *                INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, a wrapped GET
 *                DATA at C-MAC+C-DEC+R-MAC+R-ENC answered by the card, 204),
 *                the keyset derived in SoftHSM2 for every session
 *                (tc_ota_scp03_app). Not key rotations.
 *   rotations    complete key rotations per second with p50/p99 latency:
 *                a pool of devices provisioned by the station (emulated
 *                cards in memory, registry on disk); per round one
 *                rotate-keys operation is queued for each, then every
 *                device runs the agent library's dialog (TLS key in the
 *                card through the agent's OpenSSL provider) against the
 *                operations engine: SCP03 with the current keyset derived
 *                in the HSM, PUT KEY of the new keyset (KCVs checked),
 *                re-authentication with it, DELETE KEY of the old one, and
 *                the durable audit appends. After each round every card
 *                must hold exactly the new keyset.
 *
 * Options: --devices N held at once (default 10000), --seconds S per
 * sample (default 3), --inflight K concurrent dialogs (default 64), --pool
 * P rotations per round (default 256), --samples R (default 3), --threads
 * T the server's loop threads (default: one per online CPU; 0: the
 * server's one event loop carries everything), --skip-hold, --skip-scp03
 * (the phases left out). TC_BENCH_DIR names
 * the directory for the HSM tokens and the registry (default: the current
 * one, a real disk; removed at the end).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <trustchain/hsm.h>
#include <trustchain/ota.h>
#include <trustchain/ota_agent.h>
#include <trustchain/ota_ops.h>
#include <trustchain/registry.h>
#include <trustchain/pki.h>
#include <trustchain/se.h>
#include <trustchain/station.h>
#include <trustchain/transport.h>

#include "bench.h"

#define BATCH         "B-BENCH-OTA"
#define PREFIX        "89049032"
#define PIN           "bench-user-pin"
#define KVN           0x30u
#define DAY           86400
#define LAT_MAX       (1u << 20)
#define HOLD_SECS     2
#define FLOOR_THREADS 4u /* client threads; the floor server has 2 processes */

static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

/* What every session runs inside the channel: GET DATA 9F70, the card life
 * cycle (GP CS 2.3 §11.3), as `trustchain ota serve --master` does. */
static const struct tc_apdu SESSION_CMDS[] = {
    {.cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256}};

struct device {
    char eid[33];
    X509 *x509;
    EVP_PKEY *pkey;
    struct tc_se_card *card; /* only for the SCP03 pool */
    struct tc_transport link;
    bool busy;
};

/* A device of the rotation pool: provisioned by the station (card keyset
 * from the line master, identity applet key pair and certificate), its
 * TLS key the card's (the agent's provider). */
struct pdev {
    struct tc_se_card *card;
    struct tc_transport link;
    struct tc_ota_card oc;
    struct tc_ota_agent_session *sess;
    double t0;
    struct rot *r;
};

static struct fleet {
    size_t n;
    struct device *dev;
    struct tc_signer root_key, batch_key;
    struct tc_buf root, batch, root_crl, batch_crl;
    X509 *root_x, *batch_x, *srv_cert;
    EVP_PKEY *srv_key;
    uint8_t master[16];  /* "line": the station's and the first keysets */
    uint8_t master2[16]; /* "fleet-2": the rotations' other master */
    uint8_t tk[16];      /* the cards' transport keys */
    struct tc_ota_trust *trust;
} F;

static struct opts {
    size_t devices, inflight, pool;
    double seconds;
    unsigned samples;
    unsigned threads; /* the server's loop threads */
    bool skip_hold, skip_scp03;
} O = {.devices = 10000, .inflight = 64, .pool = 256, .seconds = 3.0, .samples = 3};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);

/* The bench directory (HSM tokens, registry) and the process that made it:
 * removed when that process gives up. */
static char bench_dir[600];
static pid_t main_pid;

/* A measurement that failed: no figure; the bench directory goes. */
static void give_up(const char *what)
{
    (void)fprintf(stderr, "bench_ota: %s: no figure\n", what);
    if (getpid() == main_pid && bench_dir[0] != '\0')
        (void)nftw(bench_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    exit(1);
}

static void die(const char *what)
{
    char msg[400];
    tc_error_format(msg, sizeof msg);
    (void)fprintf(stderr, "bench_ota: %s: %s\n", what, msg);
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char m[256];
        ERR_error_string_n(e, m, sizeof m);
        (void)fprintf(stderr, "bench_ota: openssl: %s\n", m);
    }
    if (getpid() == main_pid && bench_dir[0] != '\0')
        (void)nftw(bench_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    exit(1);
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    (void)snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    (void)fclose(f);
    return kb;
}

/* CPU seconds (user + system) a process has used so far. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    (void)snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    (void)fclose(f);
    buf[n] = '\0';
    /* Fields after the command name in parentheses: state is field 3;
     * utime and stime are fields 14 and 15 (proc(5)). */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile of sorted v. */
static double percentile(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    return v[k == 0 ? 0 : k > n ? n - 1 : k - 1];
}

/* ------------------------------------------------------------ fixture */

static X509 *x509_of(const struct tc_buf *der)
{
    const unsigned char *p = der->data;
    return d2i_X509(NULL, &p, (long)der->len);
}

static void ca_setup(void)
{
    int64_t t0 = ((int64_t)time(NULL) / DAY - 30) * DAY;
    struct tc_pki_root_params rp = {.common_name = "Bench OTA Root",
                                    .organization = "Bench",
                                    .not_before = t0,
                                    .not_after = t0 + 3650 * DAY};
    struct tc_pki_batch_params bp = {.batch_id = BATCH,
                                     .eid_prefix = PREFIX,
                                     .manufacturer = "Bench",
                                     .not_before = t0,
                                     .not_after = t0 + 3650 * DAY};
    struct tc_pki_issuer *root = NULL;
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    tc_buf_init_heap(&F.root, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&F.batch, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&F.root_crl, TC_PKI_CRL_MAX);
    tc_buf_init_heap(&F.batch_crl, TC_PKI_CRL_MAX);
    if (tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &F.root_key) != TC_OK ||
        tc_pki_root_create(&F.root_key, &rp, &F.root) != TC_OK ||
        tc_pki_issuer_new(&F.root_key, F.root.data, F.root.len, &root) != TC_OK ||
        tc_pki_crl_create(root, 1, t0 + DAY, t0 + 400 * DAY, NULL, 0, &F.root_crl) != TC_OK)
        die("fleet root");
    if (tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &F.batch_key) != TC_OK ||
        F.batch_key.public_key(F.batch_key.ctx, spki, sizeof spki, &sl) != TC_OK ||
        tc_pki_batch_ca_create(root, spki, sl, &bp, &F.batch) != TC_OK)
        die("batch CA");
    struct tc_pki_issuer *batch = NULL;
    if (tc_pki_issuer_new(&F.batch_key, F.batch.data, F.batch.len, &batch) != TC_OK ||
        tc_pki_crl_create(batch, 1, t0 + DAY, t0 + 400 * DAY, NULL, 0, &F.batch_crl) != TC_OK)
        die("batch CRL");
    tc_pki_issuer_free(batch);
    tc_pki_issuer_free(root);
    F.root_x = x509_of(&F.root);
    F.batch_x = x509_of(&F.batch);
    if (F.root_x == NULL || F.batch_x == NULL)
        die("CA certificates");
}

static void server_cert(void)
{
    F.srv_key = EVP_EC_gen("P-256");
    F.srv_cert = X509_new();
    X509_NAME *n = F.srv_cert != NULL ? X509_get_subject_name(F.srv_cert) : NULL;
    if (F.srv_key == NULL || n == NULL || X509_set_version(F.srv_cert, 2) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(F.srv_cert), 1) != 1 ||
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(F.srv_cert, n) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(F.srv_cert), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(F.srv_cert), 86400) == NULL ||
        X509_set_pubkey(F.srv_cert, F.srv_key) != 1)
        die("server certificate");
    /* The agent checks the address it dialled (RFC 6125 iPAddress). */
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, F.srv_cert, F.srv_cert, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    if (ext == NULL || X509_add_ext(F.srv_cert, ext, -1) != 1 ||
        X509_sign(F.srv_cert, F.srv_key, EVP_sha256()) <= 0)
        die("server certificate");
    X509_EXTENSION_free(ext);
}

/* Device i: EID, P-256 key, certificate with proof of possession issued by
 * the batch CA (tc_pki_device_issue, as the station does). */
static void devices_issue(size_t n)
{
    struct tc_pki_issuer *batch = NULL;
    struct tc_buf der;
    uint8_t nonce[TC_PKI_NONCE_LEN], serial[TC_PKI_SERIAL_LEN];
    if (tc_pki_issuer_new(&F.batch_key, F.batch.data, F.batch.len, &batch) != TC_OK)
        die("batch issuer");
    int64_t prod = (int64_t)time(NULL) - DAY;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    F.dev = calloc(n, sizeof *F.dev);
    if (F.dev == NULL)
        die("devices");
    F.n = n;
    for (size_t i = 0; i < n; i++) {
        struct device *d = &F.dev[i];
        struct tc_signer s;
        uint8_t spki[TC_SPKI_MAX], msg[TC_PKI_POP_MSG_LEN], pop[TC_SIG_MAX];
        size_t sl = 0, pl = 0;
        if (tc_station_emulated_eid(PREFIX, i, d->eid) != TC_OK || tc_random(nonce, sizeof nonce))
            die("EID");
        d->pkey = EVP_EC_gen("P-256");
        if (d->pkey == NULL || tc_signer_soft_new(d->pkey, &s) != TC_OK)
            die("device key");
        struct tc_pki_device_req r = {
            .eid = d->eid, .nonce = nonce, .station_id = "bench-ota", .production_time = prod};
        tc_buf_reset(&der);
        if (s.public_key(s.ctx, spki, sizeof spki, &sl) != TC_OK ||
            tc_pki_pop_message(d->eid, spki, sl, nonce, msg) != TC_OK ||
            s.sign(s.ctx, msg, sizeof msg, pop, sizeof pop, &pl) != TC_OK)
            die("proof of possession");
        r.spki = spki;
        r.spki_len = sl;
        r.pop = pop;
        r.pop_len = pl;
        if (tc_pki_device_issue(batch, &r, &der, serial) != TC_OK)
            die("device certificate");
        tc_signer_soft_free(&s);
        d->x509 = x509_of(&der);
        if (d->x509 == NULL)
            die("device certificate DER");
    }
    tc_buf_free(&der);
    tc_pki_issuer_free(batch);
}

/* The keyset the HSM derives for the device (docs/hsm.md "Diversification":
 * K = AES-ECB(master, D(t, 1)) for AES-128), computed in software here to
 * personalise the emulated card as the station would have. */
static void card_keys(const char *eid, uint8_t enc[16], uint8_t mac[16], uint8_t dek[16])
{
    uint8_t bcd[TC_PKI_EID_BCD_LEN], blk[16];
    uint8_t *out[3] = {enc, mac, dek};
    static const uint8_t types[3] = {TC_HSM_KEY_ENC, TC_HSM_KEY_MAC, TC_HSM_KEY_DEK};
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL || tc_pki_eid_to_bcd(eid, bcd) != TC_OK)
        die("card keys");
    for (size_t i = 0; i < 3; i++) {
        int l1 = 0;
        if (tc_hsm_diversify_block(bcd, types[i], 16, 1, blk) != TC_OK ||
            EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, F.master, NULL) != 1 ||
            EVP_CIPHER_CTX_set_padding(c, 0) != 1 ||
            EVP_EncryptUpdate(c, out[i], &l1, blk, sizeof blk) != 1 || l1 != 16)
            die("card keys (AES)");
    }
    EVP_CIPHER_CTX_free(c);
    tc_memzero(blk, sizeof blk);
}

static void card_open(struct device *d)
{
    struct tc_se_params p;
    tc_se_params_default(&p);
    if (tc_pki_eid_to_bcd(d->eid, p.eid) != TC_OK)
        die("card EID");
    memcpy(p.kdd, p.eid + 6, TC_SE_KDD_LEN);
    p.kvn = KVN;
    p.key_len = 16;
    card_keys(d->eid, p.key_enc, p.key_mac, p.key_dek);
    if (tc_se_open_mem(&p, &d->card) != TC_OK || tc_se_transport(d->card, &d->link) != TC_OK)
        die("emulated card");
    tc_se_params_wipe(&p);
}

/* ------------------------------------------------------------ server child */

enum srv_mode { SRV_PLAIN, SRV_SCP03, SRV_OPS };

struct srv_report {
    struct tc_ota_stats st;
    long rss_kb;
    uint64_t scp03_ok, scp03_failed;
    struct tc_ota_ops_stats ops;
};

/* Asks the ops server to queue one rotate-keys operation for each of the
 * first `devices` devices: KVN and master alternate by round. */
struct srv_queue_req {
    uint32_t devices, round;
};

static uint8_t round_kvn(uint32_t round)
{
    return round % 2 == 0 ? 0x31 : 0x32;
}

static const char *round_master(uint32_t round)
{
    return round % 2 == 0 ? "fleet-2" : "line";
}

struct srv_child {
    pid_t pid;
    int ctl; /* parent end: 'S' asks for a report, 'Q' stops */
    uint16_t port;
};

struct hsm_keys {
    struct tc_hsm *h;
    tc_hsm_obj master;
    uint64_t ok, failed;
};

struct hsm_token {
    struct tc_hsm_scp03_provider m;
    struct tc_hsm_keyset ks;
};

static tc_err hsm_keys_cb(void *ctx, const char *eid, struct tc_scp03_key_provider *p, void **token)
{
    struct hsm_keys *k = ctx;
    struct hsm_token *t = calloc(1, sizeof *t);
    TC_ENSURE(t != NULL, TC_ERR_NOMEM);
    tc_hsm_scp03_provider_init(&t->m, k->h, p);
    tc_err rc = tc_ota_device_keys(k->h, k->master, eid, KVN, 16, &t->m, &t->ks);
    if (rc != TC_OK) {
        free(t);
        return rc;
    }
    *token = t;
    return TC_OK;
}

static void hsm_release_cb(void *ctx, void *token)
{
    struct hsm_keys *k = ctx;
    struct hsm_token *t = token;
    if (t == NULL)
        return;
    tc_hsm_keyset_destroy(k->h, &t->ks);
    free(t);
}

static void scp03_done_cb(void *ctx, const char *eid, const struct tc_ota_remote *r, tc_err rc)
{
    struct hsm_keys *k = ctx;
    (void)eid;
    /* Done only when the card answered GET DATA 9F70 inside the channel. */
    if (rc == TC_OK && r->sw[0] == 0x9000 && r->data_len[0] == 4 && r->data[0][0] == 0x9F &&
        r->data[0][1] == 0x70)
        k->ok++;
    else
        k->failed++;
}

struct child_state {
    struct event_base *base;
    struct tc_ota_server *srv;
    struct hsm_keys *keys;
    int ctl;
    /* SRV_OPS: the engine is set up on the 'O' command (once the station
     * has written the registry), then the server's app points at it. */
    const char *dir;
    struct tc_ota_app *app;
    struct tc_ota_ops *ops;
    struct tc_registry *reg;
    struct tc_hsm *hsm;
};

static void hsm_setup(struct hsm_keys *k, const char *dir);

/* The operations engine as `trustchain ota serve` runs it: the workspace
 * registry (written by the station) and HSM with the line master and a
 * second fleet master. */
static void ops_open(struct child_state *cs)
{
    struct hsm_keys hk = {0};
    char path[700], hdir[700];
    tc_hsm_obj o = 0;
    (void)snprintf(hdir, sizeof hdir, "%s/ops", cs->dir);
    hsm_setup(&hk, hdir); /* imports F.master as "ota" */
    if (tc_hsm_master_import(hk.h, "line", F.master, sizeof F.master, &o) != TC_OK ||
        tc_hsm_master_import(hk.h, "fleet-2", F.master2, sizeof F.master2, &o) != TC_OK)
        die("ops masters");
    cs->hsm = hk.h;
    (void)snprintf(path, sizeof path, "%s/registry.db", cs->dir);
    if (tc_registry_open(path, NULL, &cs->reg) != TC_OK)
        die("ops registry");
    /* .base: durable appends on the engine's writer thread, shared by the
     * dialogs waiting at that moment (one commit). */
    struct tc_ota_ops_config cfg = {.reg = cs->reg,
                                    .hsm = cs->hsm,
                                    .workspace = hdir,
                                    .default_master = "line",
                                    .base = cs->base};
    if (tc_ota_ops_new(&cfg, &cs->ops, cs->app) != TC_OK)
        die("ops engine");
}

/* Queues the round's rotations (durable appends, as `trustchain device
 * queue` does); answers how many were queued. */
static uint32_t ops_queue(struct child_state *cs, const struct srv_queue_req *q)
{
    char hdir[700];
    uint32_t n = 0;
    (void)snprintf(hdir, sizeof hdir, "%s/ops", cs->dir);
    for (uint32_t i = 0; i < q->devices; i++) {
        char eid[33];
        uint64_t id = 0;
        if (tc_station_emulated_eid(PREFIX, i, eid) != TC_OK)
            break;
        struct tc_ota_queue_request rq = {.eid = eid,
                                          .code = TC_OTA_OP_ROTATE_KEYS,
                                          .actor = "bench",
                                          .kvn = round_kvn(q->round),
                                          .master = round_master(q->round),
                                          .workspace = hdir};
        if (tc_ota_queue_add(cs->reg, &rq, &id) != TC_OK)
            break;
        n++;
    }
    return n;
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct child_state *cs = arg;
    char c = 0;
    (void)what;
    ssize_t n = read(fd, &c, 1);
    if (n == 1 && c == 'O' && cs->app != NULL) {
        if (cs->ops == NULL)
            ops_open(cs);
        if (write(fd, &c, 1) != 1)
            (void)event_base_loopbreak(cs->base);
        return;
    }
    if (n == 1 && c == 'R' && cs->ops != NULL) {
        struct srv_queue_req q;
        if (read(fd, &q, sizeof q) != (ssize_t)sizeof q) {
            (void)event_base_loopbreak(cs->base);
            return;
        }
        uint32_t done = ops_queue(cs, &q);
        if (write(fd, &done, sizeof done) != (ssize_t)sizeof done)
            (void)event_base_loopbreak(cs->base);
        return;
    }
    if (n == 1 && c == 'S') {
        struct srv_report r = {.rss_kb = rss_kb(getpid())};
        tc_ota_server_stats(cs->srv, &r.st);
        if (cs->keys != NULL) {
            r.scp03_ok = cs->keys->ok;
            r.scp03_failed = cs->keys->failed;
        }
        if (cs->ops != NULL)
            tc_ota_ops_stats(cs->ops, &r.ops);
        if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
            (void)event_base_loopbreak(cs->base);
        return;
    }
    (void)event_base_loopbreak(cs->base);
}

/* A fresh SoftHSM2 token in <dir>/hsm, logged in. */
static struct tc_hsm *token_open(const char *dir, const char *label, unsigned pool)
{
    struct tc_hsm_workspace hw;
    struct tc_hsm *h = NULL;
    if (tc_hsm_workspace_create(dir, NULL, label, &hw) != TC_OK ||
        tc_hsm_init_token(hw.module_path, hw.softhsm_conf, label, "bench-so-pin", 12, PIN,
                          strlen(PIN)) != TC_OK)
        die("HSM token");
    struct tc_hsm_config c = {.module_path = hw.module_path,
                              .softhsm_conf = hw.softhsm_conf,
                              .token_label = label,
                              .pin = PIN,
                              .pin_len = strlen(PIN),
                              .pool_size = pool};
    if (tc_hsm_open(&c, &h) != TC_OK)
        die("HSM open");
    return h;
}

static void hsm_setup(struct hsm_keys *k, const char *dir)
{
    k->h = token_open(dir, "bench", 4);
    if (tc_hsm_master_import(k->h, "ota", F.master, sizeof F.master, &k->master) != TC_OK)
        die("HSM master");
}

static void server_child(enum srv_mode mode, int ctl, int port_fd, const char *hsm_dir,
                         unsigned timeout_ms)
{
    struct child_state cs = {.ctl = ctl, .dir = hsm_dir};
    struct hsm_keys hk = {0};
    struct tc_ota_scp03_app *sa = NULL;
    struct tc_ota_app app = {0};
    if (mode == SRV_OPS)
        cs.app = &app;
    tc_log_set_level(TC_LOG_ERROR);
    if (mode == SRV_SCP03) {
        hsm_setup(&hk, hsm_dir);
        struct tc_ota_scp03_app_config ac = {
            .ctx = &hk,
            .keys = hsm_keys_cb,
            .release = hsm_release_cb,
            .done = scp03_done_cb,
            .host = {.kvn = KVN, .level = TC_SCP03_LEVEL_RENC, .aid = ISD, .aid_len = sizeof ISD},
            .cmds = SESSION_CMDS,
            .ncmds = TC_ARRAY_LEN(SESSION_CMDS),
            .max_sessions = 1024};
        if (tc_ota_scp03_app_new(&ac, &sa, &app) != TC_OK)
            die("SCP03 app");
        cs.keys = &hk;
    }
    cs.base = event_base_new();
    struct tc_ota_server_config cfg = {.host = "127.0.0.1",
                                       .cert = F.srv_cert,
                                       .key = F.srv_key,
                                       .trust = F.trust,
                                       .timeout_ms = timeout_ms,
                                       .app = mode != SRV_PLAIN ? &app : NULL,
                                       .threads = O.threads};
    if (cs.base == NULL || tc_ota_server_new(cs.base, &cfg, &cs.srv) != TC_OK)
        die("server");
    uint16_t port = tc_ota_server_port(cs.srv);
    struct event *ev = event_new(cs.base, ctl, EV_READ | EV_PERSIST, ctl_cb, &cs);
    if (ev == NULL || event_add(ev, NULL) != 0 || write(port_fd, &port, sizeof port) != 2)
        die("server control");
    (void)close(port_fd);
    (void)event_base_dispatch(cs.base);
    event_free(ev);
    tc_ota_server_free(cs.srv);
    tc_ota_ops_free(cs.ops); /* before the base: its writer's events live there */
    event_base_free(cs.base);
    tc_ota_scp03_app_free(sa);
    tc_hsm_close(hk.h);
    tc_registry_close(cs.reg);
    tc_hsm_close(cs.hsm);
    _exit(0);
}

static struct srv_child server_start(enum srv_mode mode, const char *hsm_dir, unsigned timeout_ms)
{
    struct srv_child c = {0};
    int sv[2], pp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(pp) != 0)
        die("socketpair");
    (void)fflush(NULL);
    c.pid = fork();
    if (c.pid < 0)
        die("fork");
    if (c.pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        (void)close(sv[0]);
        (void)close(pp[0]);
        server_child(mode, sv[1], pp[1], hsm_dir, timeout_ms);
    }
    (void)close(sv[1]);
    (void)close(pp[1]);
    if (read(pp[0], &c.port, sizeof c.port) != (ssize_t)sizeof c.port)
        die("server did not start");
    (void)close(pp[0]);
    c.ctl = sv[0];
    return c;
}

static struct srv_report server_report(const struct srv_child *c)
{
    struct srv_report r;
    char q = 'S';
    if (write(c->ctl, &q, 1) != 1 || read(c->ctl, &r, sizeof r) != (ssize_t)sizeof r)
        die("server report");
    return r;
}

static void server_stop(struct srv_child *c)
{
    char q = 'Q';
    int st = 0;
    if (write(c->ctl, &q, 1) != 1)
        (void)fprintf(stderr, "bench_ota: server child gone before the stop\n");
    (void)close(c->ctl);
    if (waitpid(c->pid, &st, 0) != c->pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        (void)fprintf(stderr, "bench_ota: server child ended badly (status %d)\n", st);
}

/* ------------------------------------------------------------ TLS contexts */

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    X509_STORE *st = c != NULL ? SSL_CTX_get_cert_store(c) : NULL;
    if (st == NULL || SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
        X509_STORE_add_cert(st, F.srv_cert) != 1)
        die("client SSL_CTX");
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    (void)SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    return c;
}

static SSL *client_ssl(SSL_CTX *ctx, const struct device *d)
{
    SSL *s = SSL_new(ctx);
    if (s == NULL || SSL_use_certificate(s, d->x509) != 1 || SSL_use_PrivateKey(s, d->pkey) != 1)
        die("client SSL");
    return s;
}

/* ------------------------------------------------------------ floor */

/* The floor server: TLS 1.3 only, no tickets or session cache (as the OTA
 * server), the device chain verified by OpenSSL's default verifier with
 * the root and the batch CA in the store. */
static SSL_CTX *floor_server_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    X509_STORE *st = c != NULL ? SSL_CTX_get_cert_store(c) : NULL;
    if (st == NULL || SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_num_tickets(c, 0) != 1 || SSL_CTX_use_certificate(c, F.srv_cert) != 1 ||
        SSL_CTX_use_PrivateKey(c, F.srv_key) != 1 || X509_STORE_add_cert(st, F.root_x) != 1 ||
        X509_STORE_add_cert(st, F.batch_x) != 1)
        die("floor SSL_CTX");
    (void)SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    (void)SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return c;
}

static void floor_worker(int lfd)
{
    SSL_CTX *ctx = floor_server_ctx();
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            _exit(1);
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        SSL *s = SSL_new(ctx);
        if (s != NULL && SSL_set_fd(s, fd) == 1 && SSL_accept(s) == 1 &&
            SSL_get_verify_result(s) == X509_V_OK)
            (void)SSL_write(s, "k", 1); /* the client waits for it */
        SSL_free(s);
        (void)close(fd);
    }
}

static int listen_any(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        die("floor listen");
    *port = ntohs(a.sin_port);
    return fd;
}

struct floor_run {
    SSL_CTX *ctx;
    uint16_t port;
    double until;
    size_t first;
    _Atomic uint64_t done;
    _Atomic int failed;
    double cpu; /* the thread's CPU seconds */
};

static int tcp_connect(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* no TIME_WAIT pile-up */
    if (fd < 0)
        return -1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        (void)close(fd);
        return -1;
    }
    return fd;
}

static void *floor_client(void *arg)
{
    struct floor_run *r = arg;
    struct timespec c0, c1;
    size_t i = r->first;
    (void)clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    while (bench_now() < r->until) {
        const struct device *d = &F.dev[i % F.n];
        i += FLOOR_THREADS;
        int fd = tcp_connect(r->port);
        SSL *s = fd >= 0 ? client_ssl(r->ctx, d) : NULL;
        char b = 0;
        bool ok = s != NULL && SSL_set_fd(s, fd) == 1 && SSL_connect(s) == 1 &&
                  SSL_read(s, &b, 1) == 1 && b == 'k';
        SSL_free(s);
        if (fd >= 0)
            (void)close(fd);
        ERR_clear_error();
        if (ok)
            atomic_fetch_add(&r->done, 1);
        else
            atomic_fetch_add(&r->failed, 1);
    }
    (void)clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    r->cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
    return NULL;
}

/* The floor's two server processes, forked before the fleet exists (so
 * they do not run on copy-on-write pages of the generator's heap) and
 * kept for the whole run. */
static struct floor {
    pid_t w[2];
    uint16_t port;
    SSL_CTX *ctx;
    uint64_t failed;
} FL;

static void floor_start(void)
{
    int lfd = listen_any(&FL.port);
    (void)fflush(NULL);
    for (size_t i = 0; i < 2; i++) {
        FL.w[i] = fork();
        if (FL.w[i] < 0)
            die("fork");
        if (FL.w[i] == 0) {
            (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
            floor_worker(lfd);
        }
    }
    (void)close(lfd);
}

static void floor_stop(void)
{
    for (size_t i = 0; i < 2; i++) {
        (void)kill(FL.w[i], SIGTERM);
        (void)waitpid(FL.w[i], NULL, 0);
    }
    SSL_CTX_free(FL.ctx);
    if (FL.failed > 0)
        (void)fprintf(stderr, "bench_ota: floor: %llu handshakes failed\n",
                      (unsigned long long)FL.failed);
}

/* One floor sample: handshakes/s over `seconds`; *cpu_per gets the CPU
 * seconds (both sides) per handshake. */
static double floor_sample(double seconds, double *cpu_per)
{
    struct floor_run r[FLOOR_THREADS];
    pthread_t th[FLOOR_THREADS];
    if (FL.ctx == NULL)
        FL.ctx = client_ctx();
    double w0 = cpu_s(FL.w[0]) + cpu_s(FL.w[1]);
    double t0 = bench_now();
    for (size_t i = 0; i < FLOOR_THREADS; i++) {
        r[i] =
            (struct floor_run){.ctx = FL.ctx, .port = FL.port, .until = t0 + seconds, .first = i};
        if (pthread_create(&th[i], NULL, floor_client, &r[i]) != 0)
            die("thread");
    }
    uint64_t n = 0;
    double cpu = 0;
    for (size_t i = 0; i < FLOOR_THREADS; i++) {
        (void)pthread_join(th[i], NULL);
        n += atomic_load(&r[i].done);
        FL.failed += (uint64_t)atomic_load(&r[i].failed);
        cpu += r[i].cpu;
    }
    double dt = bench_now() - t0;
    cpu += cpu_s(FL.w[0]) + cpu_s(FL.w[1]) - w0;
    if (cpu_per != NULL)
        *cpu_per = n > 0 ? cpu / (double)n : 0;
    return (double)n / dt;
}

/* ------------------------------------------------------------ generator */

enum conn_kind { CONN_HOLD, CONN_SCP03 };

struct gen;

struct conn {
    struct gen *g;
    struct device *d;
    size_t slot;
    struct evhttp_connection *evc;
    double t0;
    int posts;
    bool holding;
};

struct gen {
    struct event_base *base;
    SSL_CTX *ctx;
    uint16_t port;
    enum conn_kind kind;
    /* hold */
    struct conn *conns;
    size_t next, started, inflight, holding, failed, dropped;
    double first_t, last_t;
    /* SCP03 */
    size_t nslots, pool;
    size_t *cursor; /* per slot: the next device index of the slot */
    bool stopping;
    size_t active;
    uint64_t sessions;
    double *lat;
    size_t nlat;
    struct tc_buf resp;
    char errmsg[200];
};

static void conn_free_later(evutil_socket_t fd, short what, void *arg)
{
    struct evhttp_connection *evc = arg;
    (void)fd;
    (void)what;
    evhttp_connection_free(evc);
}

static void conn_drop(struct conn *c)
{
    if (c->evc == NULL)
        return;
    /* Not from inside libevent's callback that reported the response. */
    struct timeval zero = {0, 0};
    if (event_base_once(c->g->base, -1, EV_TIMEOUT, conn_free_later, c->evc, &zero) != 0)
        evhttp_connection_free(c->evc);
    c->evc = NULL;
}

static bool conn_open(struct gen *g, struct conn *c, struct device *d)
{
    SSL *ssl = client_ssl(g->ctx, d);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        g->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return false;
    }
    c->g = g;
    c->d = d;
    c->posts = 0;
    c->t0 = bench_now();
    c->evc = evhttp_connection_base_bufferevent_new(g->base, NULL, bev, "127.0.0.1", g->port);
    if (c->evc == NULL) {
        bufferevent_free(bev);
        return false;
    }
    evhttp_connection_set_retries(c->evc, 0);
    /* Held connections sit idle for the whole ramp. */
    evhttp_connection_set_timeout(c->evc, g->kind == CONN_HOLD ? 900 : 60);
    return true;
}

/* Keeps the first failure for the report. */
static void fail(struct gen *g, const char *eid, const char *what, int code)
{
    if (g->errmsg[0] == '\0')
        (void)snprintf(g->errmsg, sizeof g->errmsg, "device %s: %s (HTTP %d)", eid, what, code);
}

/* Small HTTP messages leave as separate TLS records: without TCP_NODELAY
 * each second record waits for the peer's delayed ACK. The socket exists
 * once evhttp has started connecting. */
static void nodelay(struct evhttp_connection *evc)
{
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evc));
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- hold: TLS + GET /ota/v1/identity, then keep the connection */

static void hold_pump(struct gen *g);

/* A held connection closed (by the server or a timeout) before the end. */
static void hold_close_cb(struct evhttp_connection *evc, void *arg)
{
    struct conn *c = arg;
    (void)evc;
    if (c->holding && !c->g->stopping) {
        c->holding = false;
        c->g->holding--;
        c->g->dropped++;
    }
}

static void hold_cb(struct evhttp_request *req, void *arg)
{
    struct conn *c = arg;
    struct gen *g = c->g;
    g->inflight--;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    struct evbuffer *b = req != NULL ? evhttp_request_get_input_buffer(req) : NULL;
    char body[40] = "";
    size_t bl = b != NULL ? evbuffer_get_length(b) : 0;
    if (b != NULL && bl < sizeof body)
        (void)evbuffer_copyout(b, body, bl);
    if (code == 200 && bl == 33 && strncmp(body, c->d->eid, 32) == 0) {
        c->holding = true;
        evhttp_connection_set_closecb(c->evc, hold_close_cb, c);
        g->holding++;
        g->last_t = bench_now();
    } else {
        g->failed++;
        fail(g, c->d->eid, "identity request failed", code);
        conn_drop(c);
    }
    hold_pump(g);
}

static void hold_pump(struct gen *g)
{
    while (g->inflight < O.inflight * 4 && g->next < F.n) {
        struct conn *c = &g->conns[g->next];
        struct device *d = &F.dev[g->next++];
        if (!conn_open(g, c, d)) {
            g->failed++;
            continue;
        }
        struct evhttp_request *req = evhttp_request_new(hold_cb, c);
        if (req == NULL)
            die("request");
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        (void)evhttp_add_header(h, "Host", "127.0.0.1");
        if (evhttp_make_request(c->evc, req, EVHTTP_REQ_GET, "/ota/v1/identity") != 0) {
            g->failed++;
            conn_drop(c);
            continue;
        }
        if (g->started++ == 0)
            g->first_t = bench_now();
        g->inflight++;
    }
    if (g->inflight == 0 && g->next >= F.n)
        (void)event_base_loopbreak(g->base);
}

/* ---- SCP03 sessions */

static void scp03_start(struct gen *g, size_t slot);

static bool admin_post(struct conn *c, const char *uri, const uint8_t *body, size_t len);

static void scp03_end(struct conn *c, bool ok)
{
    struct gen *g = c->g;
    size_t slot = c->slot;
    c->d->busy = false;
    conn_drop(c);
    g->active--;
    if (ok) {
        g->sessions++;
        if (g->nlat < LAT_MAX)
            g->lat[g->nlat++] = bench_now() - c->t0;
    } else {
        g->failed++;
    }
    if (!g->stopping)
        scp03_start(g, slot);
    else if (g->active == 0)
        (void)event_base_loopbreak(g->base);
}

static void scp03_cb(struct evhttp_request *req, void *arg)
{
    struct conn *c = arg;
    struct gen *g = c->g;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    if (code == 204) {
        scp03_end(c, true);
        return;
    }
    const char *next =
        code == 200 ? evhttp_find_header(evhttp_request_get_input_headers(req), "X-Admin-Next-URI")
                    : NULL;
    struct evbuffer *b = code == 200 ? evhttp_request_get_input_buffer(req) : NULL;
    size_t bl = b != NULL ? evbuffer_get_length(b) : 0;
    const uint8_t *script = bl > 0 ? evbuffer_pullup(b, -1) : NULL;
    char uri[128];
    if (next == NULL || script == NULL || strlen(next) >= sizeof uri) {
        fail(g, c->d->eid, "admin POST not answered with a script", code);
        scp03_end(c, false);
        return;
    }
    (void)snprintf(uri, sizeof uri, "%s", next);
    /* The agent's relay: every C-APDU to the card as it is, the R-APDUs
     * back as a response script. */
    tc_buf_reset(&g->resp);
    if (tc_ota_agent_run_script(&c->d->link, script, bl, &g->resp) != TC_OK ||
        !admin_post(c, uri, g->resp.data, g->resp.len)) {
        fail(g, c->d->eid, "relay to the card or next POST failed", code);
        scp03_end(c, false);
    }
}

static bool admin_post(struct conn *c, const char *uri, const uint8_t *body, size_t len)
{
    char from[64];
    struct evhttp_request *req = evhttp_request_new(scp03_cb, c);
    if (req == NULL)
        return false;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    (void)snprintf(from, sizeof from, "//se-id/eid/%s", c->d->eid);
    (void)evhttp_add_header(h, "Host", "127.0.0.1");
    (void)evhttp_add_header(h, "X-Admin-Protocol", TC_OTA_ADMIN_PROTOCOL);
    (void)evhttp_add_header(h, "X-Admin-From", from);
    if (len > 0) {
        (void)evhttp_add_header(h, "Content-Type", TC_OTA_CT_RESPONSE);
        (void)evhttp_add_header(h, "X-Admin-Script-Status", "ok");
        if (evbuffer_add(evhttp_request_get_output_buffer(req), body, len) != 0) {
            evhttp_request_free(req);
            return false;
        }
    }
    c->posts++;
    if (evhttp_make_request(c->evc, req, EVHTTP_REQ_POST, uri) != 0)
        return false;
    nodelay(c->evc);
    return true;
}

static void scp03_start(struct gen *g, size_t slot)
{
    struct conn *c = &g->conns[slot];
    /* Slot s owns devices s, s + K, s + 2K, ... of the pool, so no device
     * has two sessions at once. */
    size_t per = g->pool / g->nslots;
    size_t idx = slot + (g->cursor[slot]++ % per) * g->nslots;
    struct device *d = &F.dev[idx];
    c->slot = slot;
    d->busy = true;
    g->active++;
    if (!conn_open(g, c, d) || !admin_post(c, TC_OTA_ADMIN_PATH, NULL, 0)) {
        fail(g, d->eid, "cannot start a session", 0);
        c->d = d;
        c->g = g;
        scp03_end(c, false);
    }
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gen *g = arg;
    (void)fd;
    (void)what;
    (void)event_base_loopbreak(g->base);
}

static void loop_for(struct gen *g, double seconds)
{
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    struct event *t = evtimer_new(g->base, stop_cb, g);
    if (t == NULL || evtimer_add(t, &tv) != 0)
        die("timer");
    (void)event_base_dispatch(g->base);
    event_free(t);
}

/* ------------------------------------------------------------ phases */

static double median_of(const double *v, size_t n)
{
    double w[101];
    memcpy(w, v, n * sizeof *v);
    return median(w, n);
}

static void phase_hold(struct srv_child *s)
{
    struct gen g = {.kind = CONN_HOLD};
    double fcpu = 0, f[2];
    g.base = event_base_new();
    g.ctx = client_ctx();
    g.conns = calloc(F.n, sizeof *g.conns);
    if (g.base == NULL || g.conns == NULL)
        die("generator");
    g.port = s->port;
    f[0] = floor_sample(O.seconds, &fcpu);
    long gen0 = rss_kb(getpid());
    struct srv_report r0 = server_report(s);
    double c0 = cpu_s(s->pid);
    hold_pump(&g);
    loop_for(&g, 900.0);
    double ramp = g.last_t - g.first_t, scpu = cpu_s(s->pid) - c0;
    struct srv_report r1 = server_report(s);
    long gen1 = rss_kb(getpid());
    size_t peak = g.holding;
    /* Still connected after a pause: nobody timed out or was dropped. */
    loop_for(&g, HOLD_SECS);
    struct srv_report r2 = server_report(s);
    size_t after = g.holding;
    g.stopping = true;
    for (size_t i = 0; i < F.n; i++)
        if (g.conns[i].evc != NULL)
            evhttp_connection_free(g.conns[i].evc);
    (void)event_base_loop(g.base, EVLOOP_NONBLOCK);
    f[1] = floor_sample(O.seconds, NULL);
    double floor_hs = (f[0] + f[1]) / 2;
    double rate = ramp > 0 ? (double)peak / ramp : 0;
    (void)printf("concurrency: %zu devices connected, TLS 1.3 verified and answered "
                 "(GET /ota/v1/identity) at once; %zu still after %d s idle; %zu failed, %zu "
                 "dropped%s%s\n",
                 peak, after, HOLD_SECS, g.failed, g.dropped, g.errmsg[0] ? ": " : "", g.errmsg);
    (void)printf("  server: %llu connections open at the peak, %llu after the idle pause; %llu "
                 "handshakes, %llu refused, %llu failed; listener paused %llu times\n",
                 (unsigned long long)r1.st.open, (unsigned long long)r2.st.open,
                 (unsigned long long)r2.st.handshakes, (unsigned long long)r2.st.cert_rejected,
                 (unsigned long long)r2.st.handshake_failed, (unsigned long long)r2.st.paused);
    if (r1.st.open > 0)
        (void)printf("  memory per connection: server %.1f KiB (RSS %ld -> %ld KiB), "
                     "generator %.1f KiB (client side)\n",
                     (double)(r1.rss_kb - r0.rss_kb) / (double)r1.st.open, r0.rss_kb, r1.rss_kb,
                     (double)(gen1 - gen0) / (double)(peak ? peak : 1));
    if (peak > 0)
        (void)printf("  ramp: %.1f s; server CPU per connection %.2f ms; floor CPU per "
                     "handshake (both sides) %.2f ms\n",
                     ramp, scpu * 1e3 / (double)peak, fcpu * 1e3);
    char name[64];
    (void)snprintf(name, sizeof name, "connect+TLS+GET, ramp of %zu", peak);
    bench_report(name, rate, "raw TLS 1.3 handshakes", floor_hs);
    free(g.conns);
    SSL_CTX_free(g.ctx);
    event_base_free(g.base);
    if (g.failed > 0 || after < F.n)
        give_up("concurrency: devices failed or dropped");
}

/* Lets the sessions in flight finish (none is started meanwhile). */
static void scp03_drain(struct gen *g)
{
    g->stopping = true;
    if (g->active > 0)
        loop_for(g, 60.0);
    if (g->active > 0)
        die("sessions did not finish within 60 s");
    g->stopping = false;
}

static void phase_scp03(struct srv_child *s)
{
    struct gen g = {.kind = CONN_SCP03, .nslots = O.inflight};
    size_t per = F.n / g.nslots < 4 ? F.n / g.nslots : 4;
    if (per == 0)
        die("--inflight exceeds --devices");
    g.pool = per * g.nslots;
    g.base = event_base_new();
    g.ctx = client_ctx();
    g.conns = calloc(g.nslots, sizeof *g.conns);
    g.cursor = calloc(g.nslots, sizeof *g.cursor);
    g.lat = calloc(LAT_MAX, sizeof *g.lat);
    tc_buf_init_heap(&g.resp, TC_OTA_SCRIPT_BYTES_MAX * 4);
    if (g.base == NULL || g.conns == NULL || g.cursor == NULL || g.lat == NULL)
        die("generator");
    for (size_t i = 0; i < g.pool; i++)
        card_open(&F.dev[i]);
    g.port = s->port;
    for (size_t i = 0; i < g.nslots; i++)
        scp03_start(&g, i);
    loop_for(&g, 1.0); /* warm-up, not counted */
    scp03_drain(&g);
    double rate[101], p50[101], p99[101], fl[101], fcpu[101], cpu[101], scpu[101];
    uint64_t total = 0;
    /* Samples interleaved: floor, sessions, floor, sessions, ... so drift
     * on the machine affects both alike. */
    for (unsigned k = 0; k < O.samples; k++) {
        fl[k] = floor_sample(O.seconds, &fcpu[k]);
        uint64_t n0 = g.sessions;
        g.nlat = 0;
        double c0 = cpu_s(s->pid), gc0 = cpu_s(getpid());
        double t0 = bench_now();
        for (size_t i = 0; i < g.nslots; i++)
            scp03_start(&g, i);
        loop_for(&g, O.seconds);
        double dt = bench_now() - t0;
        uint64_t n = g.sessions - n0;
        double c1 = cpu_s(s->pid), gc1 = cpu_s(getpid());
        scp03_drain(&g); /* sessions finishing here are not counted */
        rate[k] = (double)n / dt;
        total += n;
        cpu[k] = n > 0 ? (c1 - c0 + gc1 - gc0) / (double)n : 0;
        scpu[k] = n > 0 ? (c1 - c0) / (double)n : 0;
        qsort(g.lat, g.nlat, sizeof *g.lat, cmp_double);
        p50[k] = percentile(g.lat, g.nlat, 50) * 1e3;
        p99[k] = percentile(g.lat, g.nlat, 99) * 1e3;
    }
    struct srv_report r = server_report(s);
    (void)printf("SCP03 sessions (NOT key rotations: no PUT KEY, re-auth, DELETE or audit): %zu "
                 "devices in flight over a pool of %zu cards, each session's keyset derived in "
                 "SoftHSM2\n",
                 g.nslots, g.pool);
    (void)printf("  %llu sessions measured, %zu failed%s%s; server: %llu proved by the card "
                 "(GET DATA 9F70 in the channel), %llu failed\n",
                 (unsigned long long)total, g.failed, g.errmsg[0] ? ": " : "", g.errmsg,
                 (unsigned long long)r.scp03_ok, (unsigned long long)r.scp03_failed);
    (void)printf("  latency (connect to 204): p50 %.1f ms, p99 %.1f ms\n",
                 median_of(p50, O.samples), median_of(p99, O.samples));
    (void)printf("  CPU per session %.2f ms (server %.2f ms) | floor CPU per handshake %.2f ms "
                 "| %.2fx floor CPU\n",
                 median_of(cpu, O.samples) * 1e3, median_of(scpu, O.samples) * 1e3,
                 median_of(fcpu, O.samples) * 1e3,
                 median_of(cpu, O.samples) / median_of(fcpu, O.samples));
    bench_report("SCP03 sessions/s", median_of(rate, O.samples), "raw TLS 1.3 handshakes",
                 median_of(fl, O.samples));
    for (size_t i = 0; i < g.pool; i++) {
        tc_transport_close(&F.dev[i].link);
        tc_se_close(F.dev[i].card);
        F.dev[i].card = NULL;
    }
    tc_buf_free(&g.resp);
    free(g.lat);
    free(g.cursor);
    free(g.conns);
    SSL_CTX_free(g.ctx);
    event_base_free(g.base);
    if (g.failed > 0 || r.scp03_failed > 0)
        give_up("SCP03 sessions failed");
}

/* ------------------------------------------------------------ rotations */

static tc_err station_card(size_t index, struct tc_se_card **card)
{
    struct tc_se_params p;
    char eid[33];
    tc_se_params_default(&p);
    TC_GUARD(tc_station_emulated_eid(PREFIX, index, eid));
    TC_GUARD(tc_pki_eid_to_bcd(eid, p.eid));
    memcpy(p.kdd, p.eid + 6, TC_SE_KDD_LEN);
    p.kvn = TC_STATION_TRANSPORT_KVN;
    p.key_len = 16;
    memcpy(p.key_enc, F.tk, 16);
    memcpy(p.key_mac, F.tk, 16);
    memcpy(p.key_dek, F.tk, 16);
    tc_err rc = tc_se_open_mem(&p, card);
    tc_se_params_wipe(&p);
    return rc;
}

/* Provisions devices 0..n-1 through the station (in memory cards, its own
 * SoftHSM2 token with the line master, the registry the ops server then
 * opens): the fleet as the line leaves it. */
static struct pdev *pool_provision(const char *dir, size_t n)
{
    struct tc_hsm *h = NULL;
    struct tc_registry *reg = NULL;
    struct tc_station *st = NULL;
    struct tc_hsm_keyset ks;
    tc_hsm_obj o = 0;
    char sdir[700], path[700];
    (void)snprintf(sdir, sizeof sdir, "%s/station", dir);
    (void)snprintf(path, sizeof path, "%s/registry.db", dir);
    h = token_open(sdir, "station", 2);
    if (tc_hsm_master_import(h, "line", F.master, sizeof F.master, &o) != TC_OK ||
        tc_hsm_transport_import(h, BATCH, TC_STATION_TRANSPORT_KVN, F.tk, F.tk, F.tk, 16, &ks) !=
            TC_OK ||
        tc_registry_open(path, NULL, &reg) != TC_OK)
        die("station HSM and registry");
    struct tc_station_config sc = {.batch_id = BATCH,
                                   .station_id = "BENCH",
                                   .actor = "bench",
                                   .hsm = h,
                                   .master_name = "line",
                                   .batch_signer = &F.batch_key,
                                   .batch_ca = F.batch.data,
                                   .batch_ca_len = F.batch.len,
                                   .registry = reg};
    if (tc_station_new(&sc, &st) != TC_OK)
        die("station");
    struct pdev *pd = calloc(n, sizeof *pd);
    if (pd == NULL)
        die("pool");
    for (size_t i = 0; i < n; i++) {
        struct tc_station_result r;
        if (station_card(i, &pd[i].card) != TC_OK ||
            tc_se_transport(pd[i].card, &pd[i].link) != TC_OK)
            die("pool card");
        if (tc_station_provision(st, &pd[i].link, &r) != TC_OK ||
            r.outcome != TC_STATION_PROVISIONED) {
            (void)fprintf(stderr, "bench_ota: station: %s\n", r.detail);
            die("station provisioning");
        }
        if (tc_ota_card_open(&pd[i].link, &pd[i].oc) != TC_OK)
            die("card identity");
    }
    tc_station_free(st);
    tc_registry_close(reg);
    tc_hsm_close(h);
    return pd;
}

struct rot {
    struct event_base *base;
    struct tc_ota_agent *agent;
    struct pdev *pd;
    size_t n, next, active, done, failed;
    double *lat;
    size_t nlat;
    char errmsg[300];
};

static void rot_start(struct rot *r);

static void rot_done(void *arg, const struct tc_ota_agent_result *res)
{
    struct pdev *d = arg;
    struct rot *r = d->r;
    tc_ota_agent_session_free(d->sess); /* allowed inside done */
    d->sess = NULL;
    r->active--;
    if (res->outcome == TC_OTA_AGENT_DONE) {
        r->done++;
        r->lat[r->nlat++] = bench_now() - d->t0;
    } else {
        r->failed++;
        if (r->errmsg[0] == '\0')
            (void)snprintf(r->errmsg, sizeof r->errmsg, "device %s: %s: %s", d->oc.eid,
                           tc_ota_agent_outcome_name(res->outcome), res->detail);
    }
    rot_start(r);
}

static void rot_start(struct rot *r)
{
    while (r->active < O.inflight && r->next < r->n) {
        struct pdev *d = &r->pd[r->next++];
        d->r = r;
        d->t0 = bench_now();
        if (tc_ota_agent_start(r->agent, r->base, &d->oc, rot_done, d, &d->sess) != TC_OK) {
            r->failed++;
            continue;
        }
        r->active++;
    }
    if (r->active == 0 && r->next >= r->n)
        (void)event_base_loopbreak(r->base);
}

static void phase_rotate(struct srv_child *s, const char *dir)
{
    size_t n = O.pool;
    double t0 = bench_now();
    struct pdev *pd = pool_provision(dir, n);
    (void)printf("rotation pool: %zu devices provisioned by the station (cards in memory, "
                 "registry on disk) in %.1f s\n",
                 n, bench_now() - t0);
    char q = 'O';
    if (write(s->ctl, &q, 1) != 1 || read(s->ctl, &q, 1) != 1)
        die("ops server");
    char pem[700];
    (void)snprintf(pem, sizeof pem, "%s/server.pem", dir);
    FILE *f = fopen(pem, "w");
    if (f == NULL || PEM_write_X509(f, F.srv_cert) != 1 || fclose(f) != 0)
        die("server.pem");
    char url[64];
    (void)snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)s->port);
    struct tc_ota_agent_config ac = {.url = url, .trust_file = pem};
    struct rot r = {.pd = pd, .n = n};
    r.base = event_base_new();
    r.lat = calloc(n, sizeof *r.lat);
    if (r.base == NULL || r.lat == NULL || tc_ota_agent_new(&ac, &r.agent) != TC_OK)
        die("agent");
    double rate[101], p50[101], p99[101], fl[101], fcpu[101], cpu[101], scpu[101], qrate[101];
    size_t total = 0;
    struct srv_report r0 = server_report(s);
    for (unsigned k = 0; k < O.samples; k++) {
        struct srv_queue_req qr = {.devices = (uint32_t)n, .round = k};
        uint32_t queued = 0;
        char c = 'R';
        double q0 = bench_now();
        if (write(s->ctl, &c, 1) != 1 || write(s->ctl, &qr, sizeof qr) != (ssize_t)sizeof qr ||
            read(s->ctl, &queued, sizeof queued) != (ssize_t)sizeof queued || queued != n)
            die("queueing rotations");
        qrate[k] = (double)n / (bench_now() - q0);
        fl[k] = floor_sample(O.seconds, &fcpu[k]);
        r.next = r.done = r.nlat = 0;
        double c0 = cpu_s(s->pid), gc0 = cpu_s(getpid()), t1 = bench_now();
        rot_start(&r);
        (void)event_base_dispatch(r.base);
        double dt = bench_now() - t1;
        double c1 = cpu_s(s->pid), gc1 = cpu_s(getpid());
        rate[k] = (double)r.done / dt;
        total += r.done;
        cpu[k] = r.done > 0 ? (c1 - c0 + gc1 - gc0) / (double)r.done : 0;
        scpu[k] = r.done > 0 ? (c1 - c0) / (double)r.done : 0;
        qsort(r.lat, r.nlat, sizeof *r.lat, cmp_double);
        p50[k] = percentile(r.lat, r.nlat, 50) * 1e3;
        p99[k] = percentile(r.lat, r.nlat, 99) * 1e3;
        /* The card proves it: exactly one keyset, the round's KVN. */
        for (size_t i = 0; i < n; i++) {
            struct tc_se_info info;
            if (tc_se_card_describe(pd[i].card, &info) != TC_OK || info.nkeysets != 1 ||
                info.keysets[0].kvn != round_kvn(k)) {
                (void)fprintf(stderr, "bench_ota: device %s: card keyset not rotated\n",
                              pd[i].oc.eid);
                r.failed++;
                break;
            }
        }
    }
    struct srv_report r1 = server_report(s);
    (void)printf("key rotations (rotate-keys via the ops engine: SCP03 with HSM-derived keys, "
                 "PUT KEY, re-auth with the new keyset, DELETE KEY, durable audit), "
                 "%zu devices in flight, device TLS key in the card (agent provider)\n",
                 O.inflight);
    (void)printf("  %zu rotations measured, %zu failed%s%s; engine: %llu done, %llu failed, %llu "
                 "durable appends\n",
                 total, r.failed, r.errmsg[0] ? ": " : "", r.errmsg,
                 (unsigned long long)(r1.ops.ops_done - r0.ops.ops_done),
                 (unsigned long long)(r1.ops.ops_failed - r0.ops.ops_failed),
                 (unsigned long long)(r1.ops.appends - r0.ops.appends));
    /* Round 1 is every device's first connection to this server: the
     * trust's verified-certificate cache misses; later rounds hit. */
    (void)printf("  per round (rotations/s, p50 ms, CPU ms per rotation):");
    for (unsigned k = 0; k < O.samples; k++)
        (void)printf(" %s%.0f / %.0f / %.2f", k == 0 ? "first connections " : "| ", rate[k], p50[k],
                     cpu[k] * 1e3);
    (void)printf("\n");
    (void)printf("  latency (connect to 204): p50 %.1f ms, p99 %.1f ms; queueing %.0f ops/s\n",
                 median_of(p50, O.samples), median_of(p99, O.samples), median_of(qrate, O.samples));
    (void)printf("  CPU per rotation %.2f ms (server %.2f ms) | floor CPU per handshake %.2f ms "
                 "| %.2fx floor CPU\n",
                 median_of(cpu, O.samples) * 1e3, median_of(scpu, O.samples) * 1e3,
                 median_of(fcpu, O.samples) * 1e3,
                 median_of(cpu, O.samples) / median_of(fcpu, O.samples));
    bench_report("key rotations/s", median_of(rate, O.samples), "raw TLS 1.3 handshakes",
                 median_of(fl, O.samples));
    tc_ota_agent_free(r.agent);
    event_base_free(r.base);
    free(r.lat);
    for (size_t i = 0; i < n; i++) {
        tc_ota_card_close(&pd[i].oc);
        tc_transport_close(&pd[i].link);
        tc_se_close(pd[i].card);
    }
    free(pd);
    if (r.failed > 0 || total != n * O.samples)
        give_up("rotations failed");
}

/* ------------------------------------------------------------ verification */

/* What the server adds to each handshake: the device certificate checked
 * by tc_ota_trust_verify_x509 (RFC 5280 path with both CRLs, the profile),
 * beside OpenSSL's default verification of the same chain (root and batch
 * CA in the store, no CRLs) that the floor's server runs. */
struct verify_arg {
    X509_STORE *store;
    X509 *leaf;
    struct tc_ota_trust *trust;
};

static int verify_ours(void *arg)
{
    struct verify_arg *v = arg;
    struct tc_pki_device_info info;
    char reason[TC_OTA_REASON_MAX];
    /* As in the server's handshake: on libssl's parsed certificate. */
    return tc_ota_trust_verify_x509(v->trust, v->leaf, 0, &info, reason, sizeof reason) != TC_OK;
}

static int verify_floor(void *arg)
{
    struct verify_arg *v = arg;
    X509_STORE_CTX *c = X509_STORE_CTX_new();
    int ok = c != NULL && X509_STORE_CTX_init(c, v->store, v->leaf, NULL) == 1 &&
             X509_verify_cert(c) == 1;
    X509_STORE_CTX_free(c);
    return !ok;
}

/* The fleet's trust (root, its CRL, the batch CA and its CRL). */
static struct tc_ota_trust *trust_make(void)
{
    struct tc_ota_trust *t = NULL;
    if (tc_ota_trust_new(F.root.data, F.root.len, F.root_crl.data, F.root_crl.len, &t) != TC_OK ||
        tc_ota_trust_add_batch(t, F.batch.data, F.batch.len, F.batch_crl.data, F.batch_crl.len) !=
            TC_OK)
        die("trust");
    return t;
}

/* Twice: a device seen before (the trust's verified-certificate cache
 * answers, as for a device that reconnects) and the full check (a trust
 * without the cache, as for a device's first connection). */
static void phase_verify(void)
{
    struct verify_arg v = {.leaf = F.dev[0].x509, .store = X509_STORE_new(), .trust = F.trust};
    if (v.store == NULL || X509_STORE_add_cert(v.store, F.root_x) != 1 ||
        X509_STORE_add_cert(v.store, F.batch_x) != 1)
        die("verify setup");
    bench_compare("device cert verify, seen before", verify_ours, &v, "X509_verify_cert (no CRLs)",
                  verify_floor, &v);
    v.trust = trust_make();
    if (tc_ota_trust_set_cache(v.trust, 0) != TC_OK)
        die("trust without a cache");
    bench_compare("device cert verify, full check", verify_ours, &v, "X509_verify_cert (no CRLs)",
                  verify_floor, &v);
    tc_ota_trust_free(v.trust);
    X509_STORE_free(v.store);
}

/* ------------------------------------------------------------ main */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void usage(void)
{
    (void)fprintf(stderr, "usage: bench_ota [--devices N] [--seconds S] [--inflight K] "
                          "[--pool P] [--samples R] [--threads T] [--skip-hold] [--skip-scp03]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--skip-hold") == 0) {
            O.skip_hold = true;
            continue;
        }
        if (strcmp(a, "--skip-scp03") == 0) {
            O.skip_scp03 = true;
            continue;
        }
        if (val == NULL)
            usage();
        i++;
        if (strcmp(a, "--devices") == 0 && tc_parse_uint(val, 19000, &v) == TC_OK && v > 0)
            O.devices = (size_t)v;
        else if (strcmp(a, "--seconds") == 0 && tc_parse_uint(val, 60, &v) == TC_OK && v > 0)
            O.seconds = (double)v;
        else if (strcmp(a, "--inflight") == 0 && tc_parse_uint(val, 1000, &v) == TC_OK && v > 0)
            O.inflight = (size_t)v;
        else if (strcmp(a, "--pool") == 0 && tc_parse_uint(val, 100000, &v) == TC_OK && v > 0)
            O.pool = (size_t)v;
        else if (strcmp(a, "--samples") == 0 && tc_parse_uint(val, 101, &v) == TC_OK && v > 0)
            O.samples = (unsigned)v;
        else if (strcmp(a, "--threads") == 0 && tc_parse_uint(val, TC_OTA_THREADS_MAX, &v) == TC_OK)
            O.threads = (unsigned)v;
        else
            usage();
    }
    if (O.inflight > O.devices)
        O.inflight = O.devices;
}

int main(int argc, char **argv)
{
    main_pid = getpid();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    O.threads = cpus < 1                          ? 1u
                : cpus > (long)TC_OTA_THREADS_MAX ? TC_OTA_THREADS_MAX
                                                  : (unsigned)cpus;
    parse(argc, argv);
    (void)signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    (void)getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < O.devices + 1000) {
        /* Each side holds one descriptor per device plus its own. */
        if (rl.rlim_cur < 1100) {
            (void)fprintf(stderr, "bench_ota: open files limit %llu is too low\n",
                          (unsigned long long)rl.rlim_cur);
            return 1;
        }
        (void)printf("bench_ota: open files limit %llu: %zu devices instead of %zu\n",
                     (unsigned long long)rl.rlim_cur, (size_t)rl.rlim_cur - 1000, O.devices);
        O.devices = (size_t)rl.rlim_cur - 1000;
        if (O.inflight > O.devices)
            O.inflight = O.devices;
    }
    double la[3] = {0};
    (void)getloadavg(la, 3);
    (void)printf("bench_ota: %zu devices, %u samples of %.0f s, server loop threads %u, fd limit "
                 "%llu, load average %.2f %.2f %.2f\n",
                 O.devices, O.samples, O.seconds, O.threads, (unsigned long long)rl.rlim_cur, la[0],
                 la[1], la[2]);
    (void)printf("  concurrency and SCP03 phases: device TLS key in software (not the card); "
                 "rotation phase: the card's key\n");
    (void)fflush(stdout);

    double t0 = bench_now();
    ca_setup();
    server_cert();
    if (tc_random(F.master, sizeof F.master) != TC_OK ||
        tc_random(F.master2, sizeof F.master2) != TC_OK || tc_random(F.tk, sizeof F.tk) != TC_OK)
        die("keys");
    F.trust = trust_make();
    char *dir = bench_dir;
    const char *base = getenv("TC_BENCH_DIR") != NULL ? getenv("TC_BENCH_DIR") : ".";
    (void)snprintf(dir, sizeof bench_dir, "%s/bench-ota-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        dir[0] = '\0';
        die("mkdtemp");
    }
    /* Every server process is forked before the fleet fills this one's
     * heap. The hold server keeps idle connections for 600 s. */
    floor_start();
    struct srv_child hold = {0}, scp = server_start(SRV_SCP03, dir, 0);
    struct srv_child ops = server_start(SRV_OPS, dir, 0);
    if (!O.skip_hold)
        hold = server_start(SRV_PLAIN, NULL, 600000);
    devices_issue(O.devices);
    (void)printf("fixture: root, batch CA and %zu device certificates issued in %.1f s\n",
                 O.devices, bench_now() - t0);
    (void)fflush(stdout);
    (void)floor_sample(0.5, NULL); /* warm-up */
    phase_verify();

    if (!O.skip_hold) {
        phase_hold(&hold);
        server_stop(&hold);
    }
    if (!O.skip_scp03)
        phase_scp03(&scp);
    server_stop(&scp);
    phase_rotate(&ops, dir);
    server_stop(&ops);
    floor_stop();
    (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    (void)getloadavg(la, 3);
    (void)printf("bench_ota: done in %.0f s, load average %.2f %.2f %.2f\n", bench_now() - t0,
                 la[0], la[1], la[2]);

    for (size_t i = 0; i < F.n; i++) {
        X509_free(F.dev[i].x509);
        EVP_PKEY_free(F.dev[i].pkey);
    }
    free(F.dev);
    tc_ota_trust_free(F.trust);
    X509_free(F.root_x);
    X509_free(F.batch_x);
    X509_free(F.srv_cert);
    EVP_PKEY_free(F.srv_key);
    tc_signer_soft_free(&F.root_key);
    tc_signer_soft_free(&F.batch_key);
    tc_buf_free(&F.root);
    tc_buf_free(&F.batch);
    tc_buf_free(&F.root_crl);
    tc_buf_free(&F.batch_crl);
    tc_memzero(F.master, sizeof F.master);
    return 0;
}
