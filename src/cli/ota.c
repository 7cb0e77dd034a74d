/*
 * trustchain ota: the over-the-air service. `serve` runs the TLS 1.3
 * mutual-auth HTTPS endpoint devices connect to, trusting the workspace's
 * fleet root, batch CAs and current CRLs (reloaded when they change).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include <dirent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <trustchain/ota.h>
#include <trustchain/ota_ops.h>
#include <trustchain/ota_renew.h>
#include <trustchain/registry.h>

#include "cli.h"

static const char serve_usage[] =
    "usage: trustchain ota serve --listen ADDR:PORT [options]\n"
    "  --listen ADDR:PORT    numeric address and port (127.0.0.1:8443, [::1]:8443; port 0 picks "
    "one)\n"
    "  --workspace DIR       the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --max-connections N   connections open at once (default 20000)\n"
    "  --timeout-ms N        handshake, read and write timeout (default 10000)\n"
    "  --max-body N          request body cap in bytes (default 65536)\n"
    "  --threads N           loop threads for TLS and HTTP, sharing the connections and the\n"
    "                        cap (default: one per online CPU; 0: all on the main loop, which\n"
    "                        always runs the operations)\n"
    "  --stop-after S        exit after S seconds (default: run until SIGINT/SIGTERM)\n"
    "  --master NAME         apply every connecting device's queued operations (`trustchain\n"
    "                        device queue`) over SCP03 with its keys re-derived in the\n"
    "                        workspace HSM from its EID and tc:master:NAME (the line's master;\n"
    "                        a rotated keyset uses the master its rotation named); the\n"
    "                        workspace registry logs every step (user PIN from\n"
    "                        $" TC_HSM_ENV_PIN " or --pin-file)\n"
    "  --pin-file FILE       the workspace token's user PIN\n"
    "  --kvn N               the keyset version of devices the registry names none for\n"
    "The server's TLS key and certificate are <ws>/ota/server-key.pem and\n"
    "<ws>/ota/server.pem (created on first use; agents pin server.pem).\n";

static bool join(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    return n > 0 && (size_t)n < size;
}

/* A self-signed P-256 certificate for the server, valid ten years. */
static tc_err server_identity_create(const char *dir, const char *cert_path, const char *key_path)
{
    tc_err ret = TC_ERR_INTERNAL;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    X509V3_CTX v3;
    X509_EXTENSION *san = NULL;
    FILE *kf = NULL, *cf = NULL;
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    TC_CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST, TC_ERR_IO);
    k = EVP_EC_gen("P-256");
    x = X509_new();
    TC_CHECK(k != NULL && x != NULL, TC_ERR_CRYPTO);
    TC_TRY(tc_random(serial, sizeof serial));
    serial[0] &= 0x7F;
    bn = BN_bin2bn(serial, sizeof serial, NULL);
    TC_CHECK(bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL, TC_ERR_CRYPTO);
    X509_NAME *n = X509_get_subject_name(x);
    TC_TRY_OSSL(X509_set_version(x, 2));
    TC_TRY_OSSL(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                                           (const unsigned char *)"trustchain-ota", -1, -1, 0));
    TC_TRY_OSSL(X509_set_issuer_name(x, n));
    TC_CHECK(X509_gmtime_adj(X509_getm_notBefore(x), -300) != NULL &&
                 X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400L) != NULL,
             TC_ERR_CRYPTO);
    TC_TRY_OSSL(X509_set_pubkey(x, k));
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    TC_CHECK(san != NULL && X509_add_ext(x, san, -1) == 1, TC_ERR_CRYPTO);
    TC_CHECK(X509_sign(x, k, EVP_sha256()) > 0, TC_ERR_CRYPTO);
    int fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    TC_CHECK_MSG(fd >= 0, TC_ERR_IO, "cannot create %s", key_path);
    kf = fdopen(fd, "w");
    if (kf == NULL)
        (void)close(fd);
    TC_CHECK(kf != NULL, TC_ERR_IO);
    TC_CHECK(PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL, NULL) == 1, TC_ERR_IO);
    TC_CHECK(fclose(kf) == 0, TC_ERR_IO);
    kf = NULL;
    cf = fopen(cert_path, "w");
    TC_CHECK_MSG(cf != NULL, TC_ERR_IO, "cannot create %s", cert_path);
    TC_CHECK(PEM_write_X509(cf, x) == 1, TC_ERR_IO);
    TC_CHECK(fclose(cf) == 0, TC_ERR_IO);
    cf = NULL;
    ret = TC_OK;
out:
    if (kf != NULL)
        (void)fclose(kf);
    if (cf != NULL)
        (void)fclose(cf);
    BN_free(bn);
    X509_EXTENSION_free(san);
    X509_free(x);
    EVP_PKEY_free(k);
    return ret;
}

static tc_err server_identity(const char *ws, X509 **cert, EVP_PKEY **key)
{
    tc_err ret = TC_ERR_INTERNAL;
    char dir[1024], cp[1100], kp[1100];
    FILE *f = NULL;
    struct stat st;
    TC_CHECK(join(dir, sizeof dir, ws, "ota") && join(cp, sizeof cp, dir, "server.pem") &&
                 join(kp, sizeof kp, dir, "server-key.pem"),
             TC_ERR_RANGE);
    if (stat(kp, &st) != 0)
        TC_TRY(server_identity_create(dir, cp, kp));
    f = fopen(kp, "r");
    TC_CHECK_MSG(f != NULL, TC_ERR_IO, "cannot open %s", kp);
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    (void)fclose(f);
    f = fopen(cp, "r");
    TC_CHECK_MSG(f != NULL, TC_ERR_IO, "cannot open %s", cp);
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    TC_CHECK_MSG(*key != NULL && *cert != NULL, TC_ERR_FORMAT,
                 "bad server key or certificate in %s", dir);
    ret = TC_OK;
out:
    if (f != NULL)
        (void)fclose(f);
    return ret;
}

/* ------------------------------------------------------------ reload */

/* ------------------------------------------------------------ operations */

struct hsm_keys {
    struct tc_hsm *h;
    tc_hsm_obj master;
    const char *ws;
    const char *pin_file;
};

static bool file_has_serial(const char *path, const char *serial)
{
    FILE *f = fopen(path, "r");
    char line[256];
    bool found = false;
    if (f == NULL)
        return false;
    size_t n = strlen(serial);
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strncasecmp(line, serial, n) == 0 && line[n] == ' ';
    (void)fclose(f);
    return found;
}

static tc_err append_line(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    TC_ENSURE_MSG(f != NULL, TC_ERR_IO, "cannot open %s", path);
    bool ok = fputs(line, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    TC_ENSURE_MSG(ok, TC_ERR_IO, "cannot write %s", path);
    return TC_OK;
}

/* The batch's issued list (pki/batches/<B>/issued.txt, "<serial> <EID>
 * <station> <time>") that `pki revoke` revokes from. */
static tc_err issued_add(const char *ws, const char *batch, const char *serial, const char *eid,
                         const char *station)
{
    char path[4200], line[256];
    int w = snprintf(path, sizeof path, "%s/pki/batches/%s/issued.txt", ws, batch);
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof path, TC_ERR_RANGE, "workspace path too long");
    if (file_has_serial(path, serial))
        return TC_OK;
    w = snprintf(line, sizeof line, "%s %s %s %lld\n", serial, eid, station, (long long)time(NULL));
    TC_ENSURE(w > 0 && (size_t)w < sizeof line, TC_ERR_RANGE);
    return append_line(path, line);
}

/* Revocation by `trustchain pki revoke --serial` in a child process (the
 * batch CRL is published there and the trust reload picks it up); TC_OK
 * when the serial is revoked already. */
static tc_err revoke_serial(const struct hsm_keys *k, const char *batch, const uint8_t *serial,
                            size_t serial_len, const char *eid, uint16_t reason)
{
    char sn[2 * TC_AUDIT_SERIAL_MAX + 1], rs[8], path[4200];
    TC_GUARD(tc_hex_encode(serial, serial_len, sn, sizeof sn));
    int w = snprintf(path, sizeof path, "%s/pki/batches/%s/revoked.txt", k->ws, batch);
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof path, TC_ERR_RANGE, "workspace path too long");
    if (file_has_serial(path, sn))
        return TC_OK;
    TC_GUARD(issued_add(k->ws, batch, sn, eid, "line"));
    (void)snprintf(rs, sizeof rs, "%u", reason);
    char a0[] = "trustchain", a1[] = "pki", a2[] = "revoke", a3[] = "--workspace", a5[] = "--batch",
         a7[] = "--serial", a9[] = "--reason", a11[] = "--pin-file";
    char wsb[4096], bb[TC_AUDIT_ID_MAX + 1], pfb[4096];
    (void)snprintf(wsb, sizeof wsb, "%s", k->ws);
    (void)snprintf(bb, sizeof bb, "%s", batch);
    char *av[16] = {a0, a1, a2, a3, wsb, a5, bb, a7, sn, a9, rs, NULL};
    if (k->pin_file != NULL) {
        (void)snprintf(pfb, sizeof pfb, "%s", k->pin_file);
        av[11] = a11;
        av[12] = pfb;
        av[13] = NULL;
    }
    pid_t pid = 0;
    int st = 0;
    TC_ENSURE_MSG(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, av, environ) == 0, TC_ERR_IO,
                  "cannot start pki revoke");
    while (waitpid(pid, &st, 0) < 0)
        TC_ENSURE_MSG(errno == EINTR, TC_ERR_IO, "waitpid: %s", strerror(errno));
    TC_ENSURE_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, TC_ERR_STATE,
                  "pki revoke of serial %s failed (exit %d)", sn,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    TC_LOG_INF("ota: device %s: certificate %s revoked (CRLReason %u)", eid, sn, reason);
    return TC_OK;
}

/* decommission: each certificate the log shows issued to the device. */
static tc_err revoke_cb(void *arg, const char *eid, const char *batch, const uint8_t *serial,
                        size_t serial_len, uint16_t reason)
{
    return revoke_serial(arg, batch, serial, serial_len, eid, reason);
}

/* renew-cert: a certificate by the device's batch CA (key in the workspace
 * HSM) with the line's profile; recorded in the batch's issued list. */
static tc_err renew_issue(void *arg, const struct tc_ota_cert_request *rq, struct tc_buf *der)
{
    const struct hsm_keys *k = arg;
    tc_err ret = TC_ERR_INTERNAL;
    char path[4200], label[TC_HSM_LABEL_MAX + 1], sn[2 * TC_PKI_SERIAL_LEN + 1];
    struct tc_signer sig = {0};
    struct tc_pki_issuer *iss = NULL;
    struct tc_buf pem, ca;
    uint8_t serial[TC_PKI_SERIAL_LEN];
    tc_buf_init_heap(&pem, 64 * 1024);
    tc_buf_init_heap(&ca, TC_PKI_CERT_MAX);
    int w = snprintf(path, sizeof path, "%s/pki/batches/%s/ca.pem", k->ws, rq->batch);
    TC_CHECK(w > 0 && (size_t)w < sizeof path, TC_ERR_RANGE);
    tc_err rc = tc_cli_read_file(path, &pem);
    if (rc == TC_ERR_NOT_FOUND) {
        tc_error_clear();
        rc = TC_FAIL(TC_ERR_NOT_FOUND, "batch %s has no CA in this workspace", rq->batch);
    }
    TC_TRY(rc);
    TC_TRY(tc_pki_der_from_pem(pem.data, pem.len, &ca));
    w = snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_BATCH_CA, rq->batch);
    TC_CHECK(w > 0 && (size_t)w < sizeof label, TC_ERR_RANGE);
    TC_TRY(tc_hsm_signer(k->h, label, &sig));
    TC_TRY(tc_pki_issuer_new(&sig, ca.data, ca.len, &iss));
    struct tc_pki_device_req r = {.eid = rq->eid,
                                  .spki = rq->spki,
                                  .spki_len = rq->spki_len,
                                  .nonce = rq->nonce,
                                  .pop = rq->pop,
                                  .pop_len = rq->pop_len,
                                  .station_id = "ota-server",
                                  .production_time = (int64_t)time(NULL)};
    TC_TRY(tc_pki_device_issue(iss, &r, der, serial));
    TC_TRY(tc_hex_encode(serial, sizeof serial, sn, sizeof sn));
    TC_TRY(issued_add(k->ws, rq->batch, sn, rq->eid, "ota-server"));
    ret = TC_OK;
out:
    tc_pki_issuer_free(iss);
    if (sig.ctx != NULL)
        tc_hsm_signer_free(&sig);
    tc_buf_free(&pem);
    tc_buf_free(&ca);
    return ret;
}

static tc_err renew_revoke(void *arg, const char *batch, const uint8_t *serial, size_t serial_len,
                           uint16_t reason)
{
    return revoke_serial(arg, batch, serial, serial_len, "(renewal)", reason);
}

static tc_err hsm_open_ws(const char *ws, const char *pin_file, const char *master,
                          struct hsm_keys *k)

{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_hsm_workspace hw;
    char pin[TC_HSM_PIN_MAX + 1], label[TC_HSM_LABEL_MAX + 1];
    size_t pl = 0;
    TC_TRY(tc_hsm_workspace_load(ws, &hw));
    TC_TRY(tc_hsm_pin_read(TC_HSM_ENV_PIN, pin_file, pin, sizeof pin, &pl));
    struct tc_hsm_config c = {.module_path = hw.module_path,
                              .softhsm_conf = hw.softhsm_conf,
                              .token_label = hw.token_label,
                              .pin = pin,
                              .pin_len = pl,
                              .pool_size = 2};
    TC_TRY(tc_hsm_open(&c, &k->h));
    int n = snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, master);
    TC_CHECK(n > 0 && (size_t)n < sizeof label, TC_ERR_RANGE);
    TC_TRY(tc_hsm_find(k->h, TC_HSM_KIND_SECRET, label, &k->master));
    ret = TC_OK;
out:
    tc_memzero(pin, sizeof pin);
    return ret;
}

struct serve_state {
    const char *ws;
    struct tc_registry *reg;
    struct tc_ota_ops *ops;
    struct tc_ota_cert_services *svc; /* renew-cert's services name the registry */
    struct tc_ota_server *srv;
    struct tc_ota_trust *trust;
    uint64_t stamp;
    struct event_base *base;
};

static void stamp_file(const char *path, uint64_t *h)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    uint64_t v[4] = {(uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec,
                     (uint64_t)st.st_size, (uint64_t)st.st_ino};
    for (size_t i = 0; i < 4; i++)
        *h = (*h ^ v[i]) * 1099511628211u; /* FNV-1a over the stat fields */
}

/* A digest of the trust files' metadata: changes when a CRL is republished
 * (files are replaced by rename) or a batch appears. */
static uint64_t trust_stamp(const char *ws)
{
    uint64_t h = 14695981039346656037u;
    char p[1024], d[1024], sub[600];
    if (join(p, sizeof p, ws, "pki/root.pem"))
        stamp_file(p, &h);
    if (join(p, sizeof p, ws, "pki/root-crl.pem"))
        stamp_file(p, &h);
    if (!join(d, sizeof d, ws, "pki/batches"))
        return h;
    DIR *dir = opendir(d);
    if (dir == NULL)
        return h;
    const struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (join(sub, sizeof sub, e->d_name, "ca.pem") && join(p, sizeof p, d, sub))
            stamp_file(p, &h);
        if (join(sub, sizeof sub, e->d_name, "crl.pem") && join(p, sizeof p, d, sub))
            stamp_file(p, &h);
    }
    (void)closedir(dir);
    return h;
}

/* One process writes a registry (docs/audit-log.md): when another one
 * (`trustchain device queue`) appended meanwhile, the tree in memory is
 * stale, so the registry is reopened from disk. */
static void registry_refresh(struct serve_state *st)
{
    if (st->reg == NULL)
        return;
    char path[4200];
    struct tc_audit_store store = {0};
    uint64_t size = 0;
    uint8_t root[TC_AUDIT_HASH_LEN];
    if (!join(path, sizeof path, st->ws, TC_REGISTRY_DB_NAME) ||
        tc_audit_store_sqlite_open(path, &store) != TC_OK)
        return;
    tc_err rc = store.ops->get_tree(store.ctx, &size, root);
    tc_audit_store_close(&store);
    if (rc != TC_OK || size == tc_audit_log_size(tc_registry_log(st->reg)))
        return;
    struct tc_registry *r = NULL;
    if (tc_registry_open_workspace(st->ws, &r) != TC_OK) {
        char m[300];
        tc_error_format(m, sizeof m);
        TC_LOG_ERR("ota: registry reopen failed, keeping the previous one: %s", m);
        return;
    }
    tc_ota_ops_set_registry(st->ops, r);
    if (st->svc != NULL)
        st->svc->reg = r;
    tc_registry_close(st->reg);
    st->reg = r;
    TC_LOG_INF("ota: registry reopened (log size %llu)", (unsigned long long)size);
}

static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve_state *st = arg;
    registry_refresh(st);
    uint64_t now = trust_stamp(st->ws);
    if (now == st->stamp)
        return;
    struct tc_ota_trust *t = NULL;
    tc_err rc = tc_ota_trust_load(st->ws, &t);
    if (rc != TC_OK) {
        char m[300];
        tc_error_format(m, sizeof m);
        TC_LOG_ERR("ota: trust reload failed, keeping the previous one: %s", m);
        return;
    }
    st->stamp = now;
    (void)tc_ota_server_set_trust(st->srv, t);
    tc_ota_trust_free(st->trust);
    st->trust = t;
    TC_LOG_INF("ota: trust reloaded (root, batch CAs, CRLs)");
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)event_base_loopexit(arg, NULL);
}

static bool parse_listen(char *s, const char **host, uint16_t *port)
{
    char *colon = strrchr(s, ':');
    uint64_t p = 0;
    if (colon == NULL || tc_parse_uint(colon + 1, 65535, &p) != TC_OK)
        return false;
    *colon = '\0';
    if (s[0] == '[') {
        size_t n = strlen(s);
        if (n < 3 || s[n - 1] != ']')
            return false;
        s[n - 1] = '\0';
        s++;
    }
    *host = s;
    *port = (uint16_t)p;
    return s[0] != '\0';
}

static int cmd_serve(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(serve_usage, stdout);
        return TC_EXIT_OK;
    }
    const char *ws = tc_cli_default_workspace();
    char *listen = NULL;
    uint64_t max_conns = 0, timeout = 0, max_body = 0, stop_after = 0, kvn = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t threads = cpus < 1                          ? 1u
                       : cpus > (long)TC_OTA_THREADS_MAX ? TC_OTA_THREADS_MAX
                                                         : (uint64_t)cpus;
    const char *master = NULL, *pin_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            return tc_cli_usage_error("ota serve: %s needs a value or is unknown", a);
        i++;
        if (strcmp(a, "--listen") == 0)
            listen = argv[i];
        else if (strcmp(a, "--workspace") == 0)
            ws = v;
        else if (strcmp(a, "--max-connections") == 0) {
            if (tc_parse_uint(v, 1000000, &max_conns) != TC_OK || max_conns == 0)
                return tc_cli_usage_error("ota serve: bad --max-connections %s", v);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (tc_parse_uint(v, 600000, &timeout) != TC_OK || timeout == 0)
                return tc_cli_usage_error("ota serve: bad --timeout-ms %s", v);
        } else if (strcmp(a, "--max-body") == 0) {
            if (tc_parse_uint(v, 16u << 20, &max_body) != TC_OK || max_body == 0)
                return tc_cli_usage_error("ota serve: bad --max-body %s", v);
        } else if (strcmp(a, "--threads") == 0) {
            if (tc_parse_uint(v, TC_OTA_THREADS_MAX, &threads) != TC_OK)
                return tc_cli_usage_error("ota serve: bad --threads %s (0 to %u)", v,
                                          TC_OTA_THREADS_MAX);
        } else if (strcmp(a, "--stop-after") == 0) {
            if (tc_parse_uint(v, 86400u * 365u, &stop_after) != TC_OK)
                return tc_cli_usage_error("ota serve: bad --stop-after %s", v);
        } else if (strcmp(a, "--master") == 0)
            master = v;
        else if (strcmp(a, "--pin-file") == 0)
            pin_file = v;
        else if (strcmp(a, "--kvn") == 0) {
            if (tc_parse_uint(v, 0x7F, &kvn) != TC_OK || kvn == 0)
                return tc_cli_usage_error("ota serve: bad --kvn %s", v);
        } else if (strcmp(a, "--pin") == 0)
            return tc_cli_usage_error("ota serve: PINs are not accepted on the command line");
        else
            return tc_cli_usage_error("ota serve: unknown option %s", a);
    }
    const char *host = NULL;
    uint16_t port = 0;
    if (listen == NULL)
        return tc_cli_usage_error("ota serve: --listen ADDR:PORT is required");
    if (!parse_listen(listen, &host, &port))
        return tc_cli_usage_error("ota serve: bad --listen (ADDR:PORT, [v6]:PORT)");

    int code = TC_EXIT_FAIL;
    struct serve_state st = {.ws = ws};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    struct event *reload = NULL, *sigint = NULL, *sigterm = NULL, *stop = NULL;
    struct hsm_keys hk = {.ws = ws, .pin_file = pin_file};
    struct tc_ota_cert_services svc;
    struct tc_ota_app app;
    bool have_app = false;
    (void)signal(SIGPIPE, SIG_IGN);
    st.stamp = trust_stamp(ws);
    tc_err rc = tc_ota_trust_load(ws, &st.trust);
    if (rc != TC_OK) {
        code = tc_cli_error(rc, "ota serve: loading the fleet trust");
        goto out;
    }
    rc = server_identity(ws, &cert, &key);
    if (rc != TC_OK) {
        code = tc_cli_error(rc, "ota serve: server identity");
        goto out;
    }
    st.base = event_base_new();
    if (st.base == NULL)
        goto out;
    if (master != NULL) {
        rc = hsm_open_ws(ws, pin_file, master, &hk);
        if (rc != TC_OK) {
            code = tc_cli_error(rc, "ota serve: the workspace HSM");
            goto out;
        }
        rc = tc_registry_open_workspace(ws, &st.reg);
        if (rc != TC_OK) {
            code = tc_cli_error(rc, "ota serve: the workspace registry");
            goto out;
        }
        struct tc_ota_ops_config oc = {.reg = st.reg,
                                       .hsm = hk.h,
                                       .workspace = ws,
                                       .default_master = master,
                                       .default_kvn = (uint8_t)kvn,
                                       .revoke = revoke_cb,
                                       .revoke_arg = &hk,
                                       .max_sessions = max_conns != 0 ? (size_t)max_conns
                                                                      : TC_OTA_CONNECTIONS_MAX,
                                       .base = st.base};
        rc = tc_ota_ops_new(&oc, &st.ops, &app);
        if (rc != TC_OK) {
            code = tc_cli_error(rc, "ota serve");
            goto out;
        }
        svc = (struct tc_ota_cert_services){
            .arg = &hk, .reg = st.reg, .issue = renew_issue, .revoke = renew_revoke};
        st.svc = &svc;
        rc = tc_ota_renew_attach(st.ops, &svc);
        if (rc != TC_OK) {
            code = tc_cli_error(rc, "ota serve");
            goto out;
        }
        have_app = true;
    }
    struct tc_ota_server_config cfg = {.host = host,
                                       .port = port,
                                       .cert = cert,
                                       .key = key,
                                       .trust = st.trust,
                                       .max_body = (size_t)max_body,
                                       .timeout_ms = (unsigned)timeout,
                                       .max_connections = (unsigned)max_conns,
                                       .app = have_app ? &app : NULL,
                                       .threads = (unsigned)threads};
    rc = tc_ota_server_new(st.base, &cfg, &st.srv);
    if (rc != TC_OK) {
        code = tc_cli_error(rc, "ota serve");
        goto out;
    }
    struct timeval one = {.tv_sec = 1};
    reload = event_new(st.base, -1, EV_PERSIST, reload_cb, &st);
    sigint = evsignal_new(st.base, SIGINT, stop_cb, st.base);
    sigterm = evsignal_new(st.base, SIGTERM, stop_cb, st.base);
    if (reload == NULL || sigint == NULL || sigterm == NULL || event_add(reload, &one) != 0 ||
        event_add(sigint, NULL) != 0 || event_add(sigterm, NULL) != 0)
        goto out;
    if (stop_after > 0) {
        struct timeval tv = {.tv_sec = (time_t)stop_after};
        stop = evtimer_new(st.base, stop_cb, st.base);
        if (stop == NULL || evtimer_add(stop, &tv) != 0)
            goto out;
    }
    (void)printf("listening on %s%s%s:%u\n", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", (unsigned)tc_ota_server_port(st.srv));
    (void)fflush(stdout);
    if (event_base_dispatch(st.base) < 0)
        goto out;
    struct tc_ota_stats s;
    tc_ota_server_stats(st.srv, &s);
    TC_LOG_INF("ota: stopped: %llu accepted, %llu verified, %llu refused certificates, %llu "
               "failed handshakes, %llu requests",
               (unsigned long long)s.accepted, (unsigned long long)s.handshakes,
               (unsigned long long)s.cert_rejected, (unsigned long long)s.handshake_failed,
               (unsigned long long)s.requests);
    code = TC_EXIT_OK;
out:
    if (stop != NULL)
        event_free(stop);
    if (reload != NULL)
        event_free(reload);
    if (sigint != NULL)
        event_free(sigint);
    if (sigterm != NULL)
        event_free(sigterm);
    tc_ota_server_free(st.srv);
    if (st.ops != NULL) {
        struct tc_ota_ops_stats os;
        tc_ota_ops_stats(st.ops, &os);
        TC_LOG_INF("ota: operations: %llu dialogs, %llu done, %llu failed, %llu aborted",
                   (unsigned long long)os.dialogs, (unsigned long long)os.ops_done,
                   (unsigned long long)os.ops_failed, (unsigned long long)os.aborted);
    }
    if (st.ops != NULL)
        tc_ota_renew_detach(st.ops);
    tc_ota_ops_free(st.ops); /* before the loop: it owns an event on it */
    if (st.base != NULL)
        event_base_free(st.base);
    tc_registry_close(st.reg);
    tc_hsm_close(hk.h);
    tc_ota_trust_free(st.trust);
    X509_free(cert);
    EVP_PKEY_free(key);
    return code;
}

static const struct tc_cli_cmd ota_cmds[] = {
    {"serve", "the HTTPS (TLS 1.3, mutual authentication) endpoint devices connect to", cmd_serve},
    {"agent", "one OTA dialog for the local card (TLS 1.3, card-held key)", tc_cli_ota_agent},
};

int tc_cli_ota(int argc, char **argv)
{
    return tc_cli_dispatch("trustchain ota", ota_cmds, TC_ARRAY_LEN(ota_cmds), argc - 1, argv + 1);
}
