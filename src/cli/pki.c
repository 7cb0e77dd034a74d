/*
 * trustchain pki: the fleet PKI on the workspace's HSM. The root key lives
 * in its own token, opened only by root-ceremony, batch-ca, revoke-batch
 * and root CRLs; batch CA keys live in the workspace's token. State (issued
 * serials, revocations, CRL numbers) is kept in files under <ws>/pki/
 * (docs/pki.md). PINs come from the environment or files, never argv.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <trustchain/audit.h>
#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>

#include "cli.h"

#define ROOT_TOKEN_DEFAULT "trustchain-root"
#define ROOT_KEY_LABEL     TC_HSM_LABEL_ROOT_CA "root"
#define ENV_ROOT_PIN       "TRUSTCHAIN_ROOT_PIN"
#define PATH_MAX_TC        4096
#define MAX_REVOKED        100000u
#define DAY                INT64_C(86400)

static const char pki_usage[] =
    "usage: trustchain pki <command> [options]\n"
    "\n"
    "commands:\n"
    "  root-ceremony --cn NAME --org ORG [--country CC] [--alg p384|p256] [--years N]\n"
    "        initialise the root token if needed, generate the root key in it,\n"
    "        write the self-signed root certificate and the first root CRL\n"
    "  batch-ca --batch ID --eid-prefix DIGITS --manufacturer ORG [--cn NAME]\n"
    "        [--crl-url URL] [--years N]\n"
    "        batch CA key in the workspace token, certificate signed by the root\n"
    "  issue --batch ID --eid EID --pubkey HEX --nonce HEX --pop HEX --station ID\n"
    "        [--time UNIX] [--out FILE]\n"
    "        device certificate after checking the EID and the proof of possession\n"
    "        (--pubkey: 65-byte uncompressed P-256 point or SubjectPublicKeyInfo)\n"
    "  revoke --batch ID (--serial HEX | --eid EID) [--reason R]\n"
    "        revoke a device and publish a new batch CRL\n"
    "  revoke-batch --batch ID [--reason R]\n"
    "        revoke a batch CA and publish a new root CRL\n"
    "  crl (--batch ID | --root) [--days N]\n"
    "        publish a fresh CRL (next CRL number)\n"
    "  verify CERT [--batch ID]\n"
    "        chain to the root, both CRLs, every profile rule; one reason on failure\n"
    "\n"
    "common options:\n"
    "  --workspace DIR     the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --pin-file FILE     workspace token user PIN (default $" TC_HSM_ENV_PIN ")\n"
    "  --root-pin-file F   root token user PIN (default $" ENV_ROOT_PIN ")\n"
    "  --so-pin-file F     SO PIN to initialise the root token (default $" TC_HSM_ENV_SO_PIN ")\n"
    "  --root-token LABEL  the root token (default '" ROOT_TOKEN_DEFAULT "')\n"
    "  --days N            CRL validity (nextUpdate), default 30\n"
    "  --json              machine-readable output\n"
    "  -h, --help          print this help\n"
    "\n"
    "reasons: unspecified keyCompromise cACompromise affiliationChanged superseded\n"
    "         cessationOfOperation certificateHold privilegeWithdrawn aACompromise (or 0-10)\n"
    "PINs are never accepted on the command line.\n";

struct pki_opts {
    const char *workspace, *pin_file, *root_pin_file, *so_pin_file, *root_token;
    const char *cn, *org, *country, *alg, *years, *batch, *eid_prefix, *manufacturer, *crl_url;
    const char *eid, *pubkey, *nonce, *pop, *station, *time, *out, *serial, *reason, *days;
    const char *cert;
    bool root, json;
};

#define PIN_REFUSED                                                                                \
    "PINs are not accepted on the command line; use $" TC_HSM_ENV_PIN ", $" ENV_ROOT_PIN           \
    ", $" TC_HSM_ENV_SO_PIN " or the --*-pin-file options"
#define V(n, f) TC_CLI_OPT_VALUE_AT(n, struct pki_opts, f)
static const struct tc_cli_opt pki_options[] = {
    V("--workspace", workspace),
    V("--pin-file", pin_file),
    V("--root-pin-file", root_pin_file),
    V("--so-pin-file", so_pin_file),
    V("--root-token", root_token),
    V("--cn", cn),
    V("--org", org),
    V("--country", country),
    V("--alg", alg),
    V("--years", years),
    V("--batch", batch),
    V("--eid-prefix", eid_prefix),
    V("--manufacturer", manufacturer),
    V("--crl-url", crl_url),
    V("--eid", eid),
    V("--pubkey", pubkey),
    V("--nonce", nonce),
    V("--pop", pop),
    V("--station", station),
    V("--time", time),
    V("--out", out),
    V("--serial", serial),
    V("--reason", reason),
    V("--days", days),
    TC_CLI_OPT_FLAG_AT("--json", struct pki_opts, json),
    TC_CLI_OPT_FLAG_AT("--root", struct pki_opts, root),
    TC_CLI_OPT_REFUSE("--pin", PIN_REFUSED),
    TC_CLI_OPT_REFUSE("--root-pin", PIN_REFUSED),
    TC_CLI_OPT_REFUSE("--so-pin", PIN_REFUSED),
};
#undef V

/* Every pki command takes the same options; only verify takes an
 * argument (the certificate). */
static int parse_opts(const char *cmd, int argc, char **argv, struct pki_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workspace = tc_cli_default_workspace();
    o->root_token = ROOT_TOKEN_DEFAULT;
    struct tc_cli_args args = {.pos = &o->cert, .max = strcmp(cmd, "verify") == 0 ? 1 : 0};
    return tc_cli_parse_opts("pki", cmd, pki_options, TC_ARRAY_LEN(pki_options), argc, argv, o,
                             &args);
}

static int need(const char *cmd, const char *v, const char *opt)
{
    if (v == NULL)
        return tc_cli_usage_error("pki %s: %s is required", cmd, opt);
    return TC_EXIT_OK;
}

static int fail(tc_err rc, const char *cmd)
{
    char what[64];
    (void)snprintf(what, sizeof what, "pki %s", cmd);
    return tc_cli_error(rc, what);
}

/* Batch IDs name directories: letters, digits, '.', '_', '-'; not "." or "..". */
static bool batch_ok(const char *b)
{
    size_t n = strlen(b);
    if (n == 0 || n > TC_PKI_ID_MAX || b[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int number(const char *cmd, const char *opt, const char *v, uint64_t max, uint64_t dflt,
                  uint64_t *out)
{
    if (v == NULL) {
        *out = dflt;
        return TC_EXIT_OK;
    }
    if (tc_parse_uint(v, max, out) != TC_OK || *out == 0)
        return tc_cli_usage_error("pki %s: %s must be a number from 1 to %llu", cmd, opt,
                                  (unsigned long long)max);
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------ files */

struct paths {
    char pki[PATH_MAX_TC];
    char root[PATH_MAX_TC];
    char root_crl[PATH_MAX_TC];
    char root_num[PATH_MAX_TC];
    char root_rev[PATH_MAX_TC];
    char batch[PATH_MAX_TC]; /* directory */
    char ca[PATH_MAX_TC];
    char crl[PATH_MAX_TC];
    char num[PATH_MAX_TC];
    char rev[PATH_MAX_TC];
    char issued[PATH_MAX_TC];
    char devices[PATH_MAX_TC];
};

static bool join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX_TC, "%s/%s", dir, name);
    return n > 0 && n < PATH_MAX_TC;
}

static tc_err make_paths(const char *ws, const char *batch, struct paths *p)
{
    char batches[PATH_MAX_TC];
    bool ok = join(p->pki, ws, "pki") && join(p->root, p->pki, "root.pem") &&
              join(p->root_crl, p->pki, "root-crl.pem") &&
              join(p->root_num, p->pki, "root-crl.number") &&
              join(p->root_rev, p->pki, "root-revoked.txt");
    if (ok && batch != NULL)
        ok = join(batches, p->pki, "batches") && join(p->batch, batches, batch) &&
             join(p->ca, p->batch, "ca.pem") && join(p->crl, p->batch, "crl.pem") &&
             join(p->num, p->batch, "crl.number") && join(p->rev, p->batch, "revoked.txt") &&
             join(p->issued, p->batch, "issued.txt") && join(p->devices, p->batch, "devices");
    TC_ENSURE_MSG(ok, TC_ERR_ARG, "workspace path too long");
    return TC_OK;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static tc_err mkdirs(const char *path)
{
    char tmp[PATH_MAX_TC];
    (void)snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = tmp + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return TC_FAIL(TC_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        *s = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return TC_FAIL(TC_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    return TC_OK;
}

/* Write via a temporary file and rename, so a reader never sees half. */
static tc_err write_all(const char *path, const void *p, size_t n, bool append)
{
    if (append) {
        FILE *f = fopen(path, "ab");
        TC_ENSURE_MSG(f != NULL, TC_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        bool ok = fwrite(p, 1, n, f) == n;
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
        TC_ENSURE_MSG(ok, TC_ERR_IO, "cannot write %s", path);
        return TC_OK;
    }
    char tmp[PATH_MAX_TC + 8];
    (void)snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    TC_ENSURE_MSG(f != NULL, TC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = fwrite(p, 1, n, f) == n;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    TC_ENSURE_MSG(ok && rename(tmp, path) == 0, TC_ERR_IO, "cannot write %s", path);
    return TC_OK;
}

static tc_err write_pem(const char *path, const char *label, const struct tc_buf *der)
{
    struct tc_buf pem;
    tc_buf_init_heap(&pem, TC_PKI_CRL_MAX * 2);
    tc_err rc = tc_pki_pem_encode(label, der->data, der->len, &pem);
    if (rc == TC_OK)
        rc = write_all(path, pem.data, pem.len, false);
    tc_buf_free(&pem);
    return rc;
}

static tc_err load_der(const char *path, struct tc_buf *der)
{
    struct tc_buf raw;
    tc_buf_init_heap(&raw, TC_PKI_CRL_MAX * 2);
    tc_err rc = tc_cli_read_file(path, &raw);
    if (rc == TC_OK)
        rc = tc_pki_der_from_pem(raw.data, raw.len, der);
    tc_buf_free(&raw);
    return rc;
}

static tc_err read_number(const char *path, uint64_t *n)
{
    char s[32] = "";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        *n = 0;
        return TC_OK;
    }
    bool ok = fgets(s, sizeof s, f) != NULL;
    (void)fclose(f);
    s[strcspn(s, "\n")] = '\0';
    TC_ENSURE_MSG(ok && tc_parse_uint(s, UINT64_MAX / 2, n) == TC_OK, TC_ERR_FORMAT,
                  "%s does not hold a CRL number", path);
    return TC_OK;
}

/* ------------------------------------------------------------ HSM */

static tc_err open_token(const char *workspace, const char *label, const char *env,
                         const char *pin_file, struct tc_hsm **h)
{
    struct tc_hsm_workspace ws;
    char pin[TC_HSM_PIN_MAX + 1];
    size_t pin_len = 0;
    TC_GUARD(tc_hsm_workspace_load(workspace, &ws));
    TC_GUARD(tc_hsm_pin_read(env, pin_file, pin, sizeof pin, &pin_len));
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = label != NULL ? label : ws.token_label,
                                .pin = pin,
                                .pin_len = pin_len,
                                .pool_size = 1};
    tc_err rc = tc_hsm_open(&cfg, h);
    tc_memzero(pin, sizeof pin);
    return rc;
}

/* The key pair with this label, generated if the token has none. */
static tc_err signer_for(struct tc_hsm *h, enum tc_sig_alg alg, const char *label, bool create,
                         struct tc_signer *s)
{
    if (create) {
        tc_hsm_obj priv, pub;
        tc_err rc = tc_hsm_keypair_generate(h, alg, label, &priv, &pub);
        if (rc != TC_OK && rc != TC_ERR_STATE)
            return rc;
    }
    return tc_hsm_signer(h, label, s);
}

/* ------------------------------------------------------------ revocations */

static const char *const reason_names[] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", "",
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};

static int parse_reason(const char *cmd, const char *v, int *out)
{
    *out = 0;
    if (v == NULL)
        return TC_EXIT_OK;
    for (size_t i = 0; i < TC_ARRAY_LEN(reason_names); i++) {
        if (reason_names[i][0] != '\0' && strcmp(v, reason_names[i]) == 0 && i != 8) {
            *out = (int)i;
            return TC_EXIT_OK;
        }
    }
    uint64_t n;
    if (tc_parse_uint(v, 10, &n) == TC_OK && n != 7 && n != 8) {
        *out = (int)n;
        return TC_EXIT_OK;
    }
    return tc_cli_usage_error("pki %s: unknown revocation reason '%s'", cmd, v);
}

/* revoked.txt: one "<serial hex> <unix time> <reason> <label>" per line. */
static tc_err load_revoked(const char *path, struct tc_pki_revoked **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return TC_OK;
    size_t cap = 0;
    char line[512];
    tc_err rc = TC_OK;
    while (fgets(line, sizeof line, f) != NULL) {
        char hex[2 * TC_PKI_SERIAL_MAX + 2];
        long long t;
        int reason;
        if (sscanf(line, "%41s %lld %d", hex, &t, &reason) != 3) {
            rc = TC_FAIL(TC_ERR_FORMAT, "%s: malformed line", path);
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct tc_pki_revoked *p =
                cap <= MAX_REVOKED ? realloc(*list, cap * sizeof **list) : NULL;
            if (p == NULL) {
                rc = TC_FAIL(TC_ERR_NOMEM, "%s: too many revocations", path);
                break;
            }
            *list = p;
        }
        struct tc_pki_revoked *r = &(*list)[*n];
        if (tc_hex_decode(hex, strlen(hex), 0, r->serial, sizeof r->serial, &r->serial_len) !=
                TC_OK ||
            r->serial_len == 0) {
            rc = TC_FAIL(TC_ERR_FORMAT, "%s: bad serial '%s'", path, hex);
            break;
        }
        r->revoked_at = t;
        r->reason = reason;
        (*n)++;
    }
    (void)fclose(f);
    if (rc != TC_OK) {
        free(*list);
        *list = NULL;
        *n = 0;
    }
    return rc;
}

static bool revoked_has(const struct tc_pki_revoked *list, size_t n, const uint8_t *serial,
                        size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i].serial_len == len && memcmp(list[i].serial, serial, len) == 0)
            return true;
    }
    return false;
}

/* A new CRL from the revoked list with the next CRL number. */
static tc_err publish_crl(struct tc_pki_issuer *iss, const char *rev_path, const char *num_path,
                          const char *crl_path, int64_t days, uint64_t *number)
{
    struct tc_pki_revoked *list = NULL;
    size_t n = 0;
    uint64_t last = 0;
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CRL_MAX);
    int64_t now = (int64_t)time(NULL);
    tc_err rc = read_number(num_path, &last);
    if (rc == TC_OK)
        rc = load_revoked(rev_path, &list, &n);
    if (rc == TC_OK)
        rc = tc_pki_crl_create(iss, last + 1, now, now + days * DAY, list, n, &der);
    if (rc == TC_OK)
        rc = write_pem(crl_path, "X509 CRL", &der);
    if (rc == TC_OK) {
        char s[32];
        int w = snprintf(s, sizeof s, "%llu\n", (unsigned long long)(last + 1));
        rc = write_all(num_path, s, (size_t)w, false);
    }
    if (rc == TC_OK)
        *number = last + 1;
    free(list);
    tc_buf_free(&der);
    return rc;
}

static void serial_hex(const X509 *x, char *out, size_t size)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    if (tc_hex_encode(ASN1_STRING_get0_data(sn), (size_t)ASN1_STRING_length(sn), out, size) !=
        TC_OK)
        out[0] = '\0';
}

static X509 *parse_x509(const struct tc_buf *der)
{
    const uint8_t *p = der->data;
    return d2i_X509(NULL, &p, (long)der->len);
}

static void fingerprint(const struct tc_buf *der, char out[65])
{
    uint8_t md[32];
    unsigned int l = 0;
    if (EVP_Digest(der->data, der->len, md, &l, EVP_sha256(), NULL) != 1 ||
        tc_hex_encode(md, 32, out, 65) != TC_OK)
        out[0] = '\0';
}

/* ------------------------------------------------------------ root-ceremony */

static int cmd_root_ceremony(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("root-ceremony", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if ((rc = need("root-ceremony", o.cn, "--cn")) != TC_EXIT_OK ||
        (rc = need("root-ceremony", o.org, "--org")) != TC_EXIT_OK)
        return rc;
    enum tc_sig_alg alg = TC_SIG_ECDSA_P384_SHA384;
    if (o.alg != NULL && strcmp(o.alg, "p256") == 0)
        alg = TC_SIG_ECDSA_P256_SHA256;
    else if (o.alg != NULL && strcmp(o.alg, "p384") != 0)
        return tc_cli_usage_error("pki root-ceremony: --alg must be p384 or p256");
    uint64_t years, days;
    if ((rc = number("root-ceremony", "--years", o.years, 100, 25, &years)) != TC_EXIT_OK ||
        (rc = number("root-ceremony", "--days", o.days, 3650, 30, &days)) != TC_EXIT_OK)
        return rc;
    struct paths p;
    tc_err e = make_paths(o.workspace, NULL, &p);
    if (e != TC_OK)
        return fail(e, "root-ceremony");
    if (exists(p.root))
        return tc_cli_usage_error("pki root-ceremony: %s exists: the workspace has a root", p.root);

    struct tc_hsm *h = NULL;
    struct tc_signer s = {0};
    struct tc_pki_issuer *iss = NULL;
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    rc = TC_EXIT_FAIL;
    /* The root token: initialised here the first time (SO PIN needed). */
    struct tc_hsm_workspace ws;
    char pin[TC_HSM_PIN_MAX + 1];
    size_t pin_len = 0;
    e = tc_hsm_workspace_load(o.workspace, &ws);
    if (e == TC_OK)
        e = tc_hsm_pin_read(ENV_ROOT_PIN, o.root_pin_file, pin, sizeof pin, &pin_len);
    if (e == TC_ERR_NOT_FOUND) {
        rc = tc_cli_usage_error("pki root-ceremony: %s", tc_error_last()->msg);
        goto out;
    }
    if (e == TC_OK) {
        struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                    .softhsm_conf = ws.softhsm_conf,
                                    .token_label = o.root_token,
                                    .pin = pin,
                                    .pin_len = pin_len,
                                    .pool_size = 1};
        e = tc_hsm_open(&cfg, &h);
        if (e == TC_ERR_NOT_FOUND) {
            char so[TC_HSM_PIN_MAX + 1];
            size_t so_len = 0;
            e = tc_hsm_pin_read(TC_HSM_ENV_SO_PIN, o.so_pin_file, so, sizeof so, &so_len);
            if (e == TC_ERR_NOT_FOUND) {
                tc_memzero(pin, sizeof pin);
                rc = tc_cli_usage_error("pki root-ceremony: the root token '%s' does not exist "
                                        "and initialising it needs the SO PIN ($%s or "
                                        "--so-pin-file)",
                                        o.root_token, TC_HSM_ENV_SO_PIN);
                goto out;
            }
            if (e == TC_OK)
                e = tc_hsm_init_token(ws.module_path, ws.softhsm_conf, o.root_token, so, so_len,
                                      pin, pin_len);
            tc_memzero(so, sizeof so);
            if (e == TC_OK)
                e = tc_hsm_open(&cfg, &h);
        }
    }
    tc_memzero(pin, sizeof pin);
    if (e != TC_OK) {
        rc = fail(e, "root-ceremony");
        goto out;
    }
    /* A ceremony interrupted before root.pem was written resumes with the
     * key it generated (the root token holds at most one root key). */
    if (e == TC_OK)
        e = signer_for(h, alg, ROOT_KEY_LABEL, true, &s);
    int64_t now = (int64_t)time(NULL);
    struct tc_pki_root_params rp = {.common_name = o.cn,
                                    .organization = o.org,
                                    .country = o.country,
                                    .not_before = now,
                                    .not_after = now + (int64_t)years * 365 * DAY};
    if (e == TC_OK)
        e = tc_pki_root_create(&s, &rp, &der);
    if (e == TC_OK)
        e = mkdirs(p.pki);
    if (e == TC_OK)
        e = tc_pki_issuer_new(&s, der.data, der.len, &iss);
    uint64_t crl_no = 0;
    if (e == TC_OK)
        e = publish_crl(iss, p.root_rev, p.root_num, p.root_crl, (int64_t)days, &crl_no);
    if (e == TC_OK)
        e = write_pem(p.root, "CERTIFICATE", &der);
    if (e != TC_OK) {
        rc = fail(e, "root-ceremony");
        goto out;
    }
    X509 *x = parse_x509(&der);
    char serial[2 * TC_PKI_SERIAL_MAX + 1] = "", fp[65];
    if (x != NULL)
        serial_hex(x, serial, sizeof serial);
    X509_free(x);
    fingerprint(&der, fp);
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "certificate");
        tc_json_string(&j, p.root);
        tc_json_key(&j, "crl");
        tc_json_string(&j, p.root_crl);
        tc_json_key(&j, "serial");
        tc_json_string(&j, serial);
        tc_json_key(&j, "sha256");
        tc_json_string(&j, fp);
        tc_json_key(&j, "token");
        tc_json_string(&j, o.root_token);
        tc_json_key(&j, "key");
        tc_json_string(&j, ROOT_KEY_LABEL);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("root key %s generated in token '%s'\n", ROOT_KEY_LABEL, o.root_token);
        (void)printf("root certificate %s (serial %s)\n", p.root, serial);
        (void)printf("SHA-256 fingerprint %s\n", fp);
        (void)printf("root CRL %s (number %llu)\n", p.root_crl, (unsigned long long)crl_no);
    }
    rc = TC_EXIT_OK;
out:
    tc_pki_issuer_free(iss);
    if (s.ctx != NULL)
        tc_hsm_signer_free(&s);
    tc_hsm_close(h);
    tc_buf_free(&der);
    return rc;
}

/* ------------------------------------------------------------ batch-ca */

/* The root as an issuer: its certificate and its key in the root token. */
static tc_err open_root(const struct pki_opts *o, const struct paths *p, struct tc_hsm **h,
                        struct tc_signer *s, struct tc_pki_issuer **iss)
{
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    tc_err e = load_der(p->root, &der);
    if (e == TC_OK)
        e = open_token(o->workspace, o->root_token, ENV_ROOT_PIN, o->root_pin_file, h);
    if (e == TC_OK)
        e = tc_hsm_signer(*h, ROOT_KEY_LABEL, s);
    if (e == TC_OK)
        e = tc_pki_issuer_new(s, der.data, der.len, iss);
    tc_buf_free(&der);
    return e;
}

static tc_err open_batch(const struct pki_opts *o, const struct paths *p, struct tc_hsm **h,
                         struct tc_signer *s, struct tc_pki_issuer **iss)
{
    char label[TC_HSM_LABEL_MAX + 1];
    (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_BATCH_CA, o->batch);
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    tc_err e = load_der(p->ca, &der);
    if (e == TC_ERR_NOT_FOUND)
        e = TC_FAIL(TC_ERR_NOT_FOUND, "batch %s has no CA in this workspace", o->batch);
    if (e == TC_OK)
        e = open_token(o->workspace, NULL, TC_HSM_ENV_PIN, o->pin_file, h);
    if (e == TC_OK)
        e = tc_hsm_signer(*h, label, s);
    if (e == TC_OK)
        e = tc_pki_issuer_new(s, der.data, der.len, iss);
    tc_buf_free(&der);
    return e;
}

static int cmd_batch_ca(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("batch-ca", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if ((rc = need("batch-ca", o.batch, "--batch")) != TC_EXIT_OK ||
        (rc = need("batch-ca", o.eid_prefix, "--eid-prefix")) != TC_EXIT_OK ||
        (rc = need("batch-ca", o.manufacturer, "--manufacturer")) != TC_EXIT_OK)
        return rc;
    if (!batch_ok(o.batch))
        return tc_cli_usage_error("pki batch-ca: batch ID must be 1-64 letters, digits, '.', '_' "
                                  "or '-', not starting with '.'");
    if (tc_pki_eid_prefix_check(o.eid_prefix) != TC_OK)
        return tc_cli_usage_error("pki batch-ca: --eid-prefix must be 1 to 30 decimal digits");
    uint64_t years, days;
    if ((rc = number("batch-ca", "--years", o.years, 100, 10, &years)) != TC_EXIT_OK ||
        (rc = number("batch-ca", "--days", o.days, 3650, 30, &days)) != TC_EXIT_OK)
        return rc;
    struct paths p;
    tc_err e = make_paths(o.workspace, o.batch, &p);
    if (e != TC_OK)
        return fail(e, "batch-ca");
    if (exists(p.ca))
        return tc_cli_usage_error("pki batch-ca: batch %s already has a CA (%s)", o.batch, p.ca);
    if (!exists(p.root))
        return tc_cli_usage_error("pki batch-ca: no root in this workspace (run 'trustchain pki "
                                  "root-ceremony')");

    struct tc_hsm *hb = NULL, *hr = NULL;
    struct tc_signer sb = {0}, sr = {0};
    struct tc_pki_issuer *root = NULL, *batch = NULL;
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    char label[TC_HSM_LABEL_MAX + 1];
    (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_BATCH_CA, o.batch);
    /* The batch key first (workspace token), then the root signs. */
    e = open_token(o.workspace, NULL, TC_HSM_ENV_PIN, o.pin_file, &hb);
    if (e == TC_OK)
        e = signer_for(hb, TC_SIG_ECDSA_P256_SHA256, label, true, &sb);
    if (e == TC_OK)
        e = sb.public_key(sb.ctx, spki, sizeof spki, &sl);
    if (e == TC_OK)
        e = open_root(&o, &p, &hr, &sr, &root);
    int64_t now = (int64_t)time(NULL);
    struct tc_pki_batch_params bp = {.batch_id = o.batch,
                                     .eid_prefix = o.eid_prefix,
                                     .manufacturer = o.manufacturer,
                                     .common_name = o.cn,
                                     .crl_url = o.crl_url,
                                     .not_before = now,
                                     .not_after = now + (int64_t)years * 365 * DAY};
    if (e == TC_OK)
        e = tc_pki_batch_ca_create(root, spki, sl, &bp, &der);
    if (e == TC_OK)
        e = mkdirs(p.devices);
    if (e == TC_OK)
        e = tc_pki_issuer_new(&sb, der.data, der.len, &batch);
    uint64_t crl_no = 0;
    if (e == TC_OK)
        e = publish_crl(batch, p.rev, p.num, p.crl, (int64_t)days, &crl_no);
    if (e == TC_OK)
        e = write_pem(p.ca, "CERTIFICATE", &der);
    if (e != TC_OK) {
        rc = fail(e, "batch-ca");
        goto out;
    }
    X509 *x = parse_x509(&der);
    char serial[2 * TC_PKI_SERIAL_MAX + 1] = "";
    if (x != NULL)
        serial_hex(x, serial, sizeof serial);
    X509_free(x);
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "batch");
        tc_json_string(&j, o.batch);
        tc_json_key(&j, "eid_prefix");
        tc_json_string(&j, o.eid_prefix);
        tc_json_key(&j, "certificate");
        tc_json_string(&j, p.ca);
        tc_json_key(&j, "crl");
        tc_json_string(&j, p.crl);
        tc_json_key(&j, "serial");
        tc_json_string(&j, serial);
        tc_json_key(&j, "key");
        tc_json_string(&j, label);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("batch %s: key %s, EID prefix %s\n", o.batch, label, o.eid_prefix);
        (void)printf("batch CA certificate %s (serial %s)\n", p.ca, serial);
        (void)printf("batch CRL %s (number %llu)\n", p.crl, (unsigned long long)crl_no);
    }
    rc = TC_EXIT_OK;
out:
    tc_pki_issuer_free(root);
    tc_pki_issuer_free(batch);
    if (sb.ctx != NULL)
        tc_hsm_signer_free(&sb);
    if (sr.ctx != NULL)
        tc_hsm_signer_free(&sr);
    tc_hsm_close(hr);
    tc_hsm_close(hb);
    tc_buf_free(&der);
    return rc;
}

/* ------------------------------------------------------------ issue */

static int hex_arg(const char *cmd, const char *opt, const char *v, uint8_t *out, size_t size,
                   size_t *len)
{
    if (tc_hex_decode(v, strlen(v), 0, out, size, len) != TC_OK)
        return tc_cli_usage_error("pki %s: %s is not hex of at most %zu bytes", cmd, opt, size);
    return TC_EXIT_OK;
}

static int cmd_issue(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("issue", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    const char *req[][2] = {{o.batch, "--batch"}, {o.eid, "--eid"}, {o.pubkey, "--pubkey"},
                            {o.nonce, "--nonce"}, {o.pop, "--pop"}, {o.station, "--station"}};
    for (size_t i = 0; i < TC_ARRAY_LEN(req); i++)
        if ((rc = need("issue", req[i][0], req[i][1])) != TC_EXIT_OK)
            return rc;
    if (!batch_ok(o.batch))
        return tc_cli_usage_error("pki issue: bad batch ID '%s'", o.batch);
    /* The public key: a bare point (as the identity applet returns it) or SPKI. */
    static const uint8_t p256_prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                            0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                            0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    uint8_t spki[TC_SPKI_MAX], nonce[64], pop[TC_SIG_MAX];
    size_t sl = 0, nl = 0, pl = 0;
    if ((rc = hex_arg("issue", "--pubkey", o.pubkey, spki + sizeof p256_prefix,
                      sizeof spki - sizeof p256_prefix, &sl)) != TC_EXIT_OK)
        return rc;
    if (sl == TC_PKI_P256_POINT) {
        memcpy(spki, p256_prefix, sizeof p256_prefix);
        sl += sizeof p256_prefix;
    } else {
        memmove(spki, spki + sizeof p256_prefix, sl);
    }
    if ((rc = hex_arg("issue", "--nonce", o.nonce, nonce, sizeof nonce, &nl)) != TC_EXIT_OK ||
        (rc = hex_arg("issue", "--pop", o.pop, pop, sizeof pop, &pl)) != TC_EXIT_OK)
        return rc;
    if (nl != TC_PKI_NONCE_LEN)
        return tc_cli_usage_error("pki issue: --nonce must be %u bytes", TC_PKI_NONCE_LEN);
    uint64_t t = (uint64_t)time(NULL);
    if (o.time != NULL && tc_parse_uint(o.time, 253402300799u, &t) != TC_OK)
        return tc_cli_usage_error("pki issue: --time must be seconds since 1970");
    struct paths p;
    tc_err e = make_paths(o.workspace, o.batch, &p);
    if (e != TC_OK)
        return fail(e, "issue");

    struct tc_hsm *h = NULL;
    struct tc_signer s = {0};
    struct tc_pki_issuer *iss = NULL;
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    uint8_t serial[TC_PKI_SERIAL_LEN];
    char sh[2 * TC_PKI_SERIAL_LEN + 1] = "", path[PATH_MAX_TC + 64];
    e = open_batch(&o, &p, &h, &s, &iss);
    struct tc_pki_device_req r = {.eid = o.eid,
                                  .spki = spki,
                                  .spki_len = sl,
                                  .nonce = nonce,
                                  .pop = pop,
                                  .pop_len = pl,
                                  .station_id = o.station,
                                  .production_time = (int64_t)t};
    if (e == TC_OK)
        e = tc_pki_device_issue(iss, &r, &der, serial);
    if (e == TC_OK)
        e = tc_hex_encode(serial, sizeof serial, sh, sizeof sh);
    if (e == TC_OK) {
        (void)snprintf(path, sizeof path, "%s/%s.pem", p.devices, sh);
        e = write_pem(path, "CERTIFICATE", &der);
    }
    if (e == TC_OK && o.out != NULL)
        e = write_pem(o.out, "CERTIFICATE", &der);
    if (e == TC_OK) {
        /* issued.txt: "<serial> <EID> <station> <production time>" */
        char line[256];
        int w = snprintf(line, sizeof line, "%s %s %s %llu\n", sh, o.eid, o.station,
                         (unsigned long long)t);
        e = (w > 0 && (size_t)w < sizeof line) ? write_all(p.issued, line, (size_t)w, true)
                                               : TC_FAIL(TC_ERR_ARG, "station ID too long");
    }
    if (e != TC_OK) {
        rc = fail(e, "issue");
        goto out;
    }
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "batch");
        tc_json_string(&j, o.batch);
        tc_json_key(&j, "eid");
        tc_json_string(&j, o.eid);
        tc_json_key(&j, "serial");
        tc_json_string(&j, sh);
        tc_json_key(&j, "certificate");
        tc_json_string(&j, path);
        tc_json_key(&j, "der");
        tc_json_hex(&j, der.data, der.len);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("issued %s for EID %s in batch %s\n", sh, o.eid, o.batch);
        (void)printf("certificate %s\n", path);
    }
    rc = TC_EXIT_OK;
out:
    tc_pki_issuer_free(iss);
    if (s.ctx != NULL)
        tc_hsm_signer_free(&s);
    tc_hsm_close(h);
    tc_buf_free(&der);
    return rc;
}

/* ------------------------------------------------------------ revoke */

/* The latest serial issued to an EID in this batch, or check a serial. */
static tc_err find_issued(const char *issued, const char *eid, const char *serial, char *out,
                          size_t out_size, char *out_eid)
{
    FILE *f = fopen(issued, "r");
    TC_ENSURE_MSG(f != NULL, TC_ERR_NOT_FOUND, "nothing issued in this batch");
    char line[256];
    bool found = false;
    while (fgets(line, sizeof line, f) != NULL) {
        char s[2 * TC_PKI_SERIAL_MAX + 2], e[33];
        if (sscanf(line, "%41s %32s", s, e) != 2)
            continue;
        bool match = eid != NULL ? strcmp(e, eid) == 0 : strcasecmp(s, serial) == 0;
        if (match) {
            (void)snprintf(out, out_size, "%s", s);
            (void)snprintf(out_eid, 33, "%s", e);
            found = true;
        }
    }
    (void)fclose(f);
    TC_ENSURE_MSG(found, TC_ERR_NOT_FOUND, "%s %s was not issued by this batch",
                  eid != NULL ? "EID" : "serial", eid != NULL ? eid : serial);
    return TC_OK;
}

/*
 * A certificate the line issued: the line records it in the workspace
 * registry (a cert-issued event, its DER in the certificate side table,
 * docs/registry.md), not in issued.txt. For --eid the device's current
 * certificate, for --serial any certificate-issued event of a device of
 * the batch with that serial. The DER is accepted only as a device
 * certificate of this batch (profile, batch ID, EID/serial) whose issuer
 * and signature are the batch CA's (RFC 5280 §6.1.3 (a)(1)), so a registry
 * entry cannot put a foreign serial on this batch's CRL.
 */
struct reg_find {
    struct tc_registry *r;
    const uint8_t *serial;
    size_t serial_len;
    uint8_t (*eids)[TC_AUDIT_EID_MAX];
    size_t *eid_lens, n, cap;
    uint8_t sha[TC_AUDIT_HASH_LEN];
    bool found;
};

static tc_err reg_collect(void *arg, const struct tc_registry_device *d)
{
    struct reg_find *f = arg;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        uint8_t(*e)[TC_AUDIT_EID_MAX] = realloc(f->eids, cap * sizeof *e);
        if (e != NULL)
            f->eids = e;
        size_t *l = e != NULL ? realloc(f->eid_lens, cap * sizeof *l) : NULL;
        TC_ENSURE(l != NULL, TC_ERR_NOMEM);
        f->eid_lens = l;
        f->cap = cap;
    }
    memcpy(f->eids[f->n], d->eid, d->eid_len);
    f->eid_lens[f->n++] = d->eid_len;
    return TC_OK;
}

static tc_err reg_issued(void *arg, uint64_t index, const struct tc_audit_event *ev,
                         const uint8_t *event, size_t len)
{
    struct reg_find *f = arg;
    (void)index;
    (void)event;
    (void)len;
    if (ev->type == TC_AUDIT_CERT_ISSUED && (ev->fields & TC_AUDIT_HAS_CERT_SHA256) &&
        ev->cert_serial_len == f->serial_len &&
        memcmp(ev->cert_serial, f->serial, f->serial_len) == 0) {
        memcpy(f->sha, ev->cert_sha256, sizeof f->sha);
        f->found = true;
    }
    return TC_OK;
}

static tc_err find_registered(const char *ws, const struct paths *p, const char *batch,
                              const char *eid, const char *serial, char *out, size_t out_size,
                              char *out_eid)
{
    tc_err ret = TC_ERR_INTERNAL;
    char path[PATH_MAX_TC];
    struct reg_find f = {0};
    struct tc_registry_device d;
    uint8_t sb[TC_PKI_SERIAL_MAX], eb[TC_AUDIT_EID_MAX];
    size_t sbl = 0, ebl = 0, dl = 0;
    uint8_t *der = NULL;
    X509 *x = NULL, *ca = NULL;
    struct tc_buf cader;
    struct tc_pki_device_info di;
    tc_buf_init_heap(&cader, TC_PKI_CERT_MAX);
    TC_CHECK_MSG(join(path, ws, "registry.db") && exists(path), TC_ERR_NOT_FOUND,
                 "%s %s was not issued by this batch (not in issued.txt, no registry)",
                 eid != NULL ? "EID" : "serial", eid != NULL ? eid : serial);
    TC_TRY(tc_registry_open_reader(path, &f.r));
    if (eid != NULL) {
        /* The registry's EID is the 32 digits as 16 BCD bytes. */
        TC_TRY(tc_hex_decode(eid, strlen(eid), 0, eb, sizeof eb, &ebl));
        tc_err rc = tc_registry_device_get(f.r, eb, ebl, &d);
        TC_CHECK_MSG(rc == TC_OK && d.has_cert && strcmp(d.batch, batch) == 0, TC_ERR_NOT_FOUND,
                     "EID %s was not issued a certificate by this batch", eid);
        memcpy(f.sha, d.cert_sha256, sizeof f.sha);
        memcpy(sb, d.cert_serial, d.cert_serial_len);
        sbl = d.cert_serial_len;
    } else {
        TC_CHECK_MSG(tc_hex_decode(serial, strlen(serial), 0, sb, sizeof sb, &sbl) == TC_OK &&
                         sbl > 0,
                     TC_ERR_ARG, "serial %s is not hex", serial);
        f.serial = sb;
        f.serial_len = sbl;
        TC_TRY(tc_registry_device_list(f.r, batch, 0, reg_collect, &f));
        for (size_t i = 0; i < f.n && !f.found; i++)
            TC_TRY(tc_registry_device_history(f.r, f.eids[i], f.eid_lens[i], reg_issued, &f));
        TC_CHECK_MSG(f.found, TC_ERR_NOT_FOUND, "serial %s was not issued by this batch", serial);
    }
    der = malloc(TC_PKI_CERT_MAX);
    TC_CHECK(der != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_registry_cert_get(f.r, f.sha, der, TC_PKI_CERT_MAX, &dl));
    TC_CHECK_MSG(tc_pki_check_device(der, dl, &di) == TC_OK && strcmp(di.batch_id, batch) == 0 &&
                     di.serial_len == sbl && memcmp(di.serial, sb, sbl) == 0 &&
                     (eid == NULL || strcmp(di.eid, eid) == 0),
                 TC_ERR_VERIFY,
                 "the registry's certificate for %s is not a device certificate of "
                 "batch %s",
                 eid != NULL ? eid : serial, batch);
    TC_TRY(load_der(p->ca, &cader));
    const uint8_t *q = der;
    x = d2i_X509(NULL, &q, (long)dl);
    q = cader.data;
    ca = d2i_X509(NULL, &q, (long)cader.len);
    TC_CHECK_MSG(x != NULL && ca != NULL && X509_check_issued(ca, x) == X509_V_OK &&
                     X509_verify(x, X509_get0_pubkey(ca)) == 1,
                 TC_ERR_VERIFY, "the registry's certificate for %s is not signed by batch %s",
                 eid != NULL ? eid : serial, batch);
    TC_TRY(tc_hex_encode(sb, sbl, out, out_size));
    (void)snprintf(out_eid, 33, "%s", di.eid);
    ret = TC_OK;
out:
    X509_free(x);
    X509_free(ca);
    free(der);
    free(f.eids);
    free(f.eid_lens);
    tc_buf_free(&cader);
    tc_registry_close(f.r);
    return ret;
}

static int print_crl_result(const struct pki_opts *o, const char *what, const char *serial,
                            const char *crl, uint64_t number)
{
    if (o->json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        if (serial != NULL) {
            tc_json_key(&j, "revoked");
            tc_json_string(&j, serial);
        }
        tc_json_key(&j, "crl");
        tc_json_string(&j, crl);
        tc_json_key(&j, "crl_number");
        tc_json_uint(&j, number);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        if (serial != NULL)
            (void)printf("revoked %s %s\n", what, serial);
        (void)printf("CRL %s (number %llu)\n", crl, (unsigned long long)number);
    }
    return TC_EXIT_OK;
}

static int cmd_revoke(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("revoke", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if ((rc = need("revoke", o.batch, "--batch")) != TC_EXIT_OK)
        return rc;
    if ((o.serial == NULL) == (o.eid == NULL))
        return tc_cli_usage_error("pki revoke: give exactly one of --serial and --eid");
    if (!batch_ok(o.batch))
        return tc_cli_usage_error("pki revoke: bad batch ID '%s'", o.batch);
    int reason;
    uint64_t days;
    if ((rc = parse_reason("revoke", o.reason, &reason)) != TC_EXIT_OK ||
        (rc = number("revoke", "--days", o.days, 3650, 30, &days)) != TC_EXIT_OK)
        return rc;
    struct paths p;
    tc_err e = make_paths(o.workspace, o.batch, &p);
    if (e != TC_OK)
        return fail(e, "revoke");
    struct tc_hsm *h = NULL;
    struct tc_signer s = {0};
    struct tc_pki_issuer *iss = NULL;
    struct tc_pki_revoked *list = NULL;
    size_t n = 0;
    char serial[2 * TC_PKI_SERIAL_MAX + 2], eid[33];
    uint8_t sb[TC_PKI_SERIAL_MAX];
    size_t sbl = 0;
    uint64_t number_out = 0;
    e = find_issued(p.issued, o.eid, o.serial, serial, sizeof serial, eid);
    if (e == TC_ERR_NOT_FOUND)
        e = find_registered(o.workspace, &p, o.batch, o.eid, o.serial, serial, sizeof serial, eid);
    if (e == TC_OK)
        e = tc_hex_decode(serial, strlen(serial), 0, sb, sizeof sb, &sbl);
    if (e == TC_OK)
        e = load_revoked(p.rev, &list, &n);
    if (e == TC_OK && revoked_has(list, n, sb, sbl))
        e = TC_FAIL(TC_ERR_STATE, "%s is already revoked", serial);
    if (e == TC_OK)
        e = open_batch(&o, &p, &h, &s, &iss);
    if (e == TC_OK) {
        char line[200];
        int w = snprintf(line, sizeof line, "%s %lld %d %s\n", serial, (long long)time(NULL),
                         reason, eid);
        e = write_all(p.rev, line, (size_t)w, true);
    }
    if (e == TC_OK)
        e = publish_crl(iss, p.rev, p.num, p.crl, (int64_t)days, &number_out);
    if (e != TC_OK) {
        rc = fail(e, "revoke");
        goto out;
    }
    rc = print_crl_result(&o, "device", serial, p.crl, number_out);
out:
    free(list);
    tc_pki_issuer_free(iss);
    if (s.ctx != NULL)
        tc_hsm_signer_free(&s);
    tc_hsm_close(h);
    return rc;
}

static int cmd_revoke_batch(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("revoke-batch", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if ((rc = need("revoke-batch", o.batch, "--batch")) != TC_EXIT_OK)
        return rc;
    if (!batch_ok(o.batch))
        return tc_cli_usage_error("pki revoke-batch: bad batch ID '%s'", o.batch);
    int reason;
    uint64_t days;
    if ((rc = parse_reason("revoke-batch", o.reason, &reason)) != TC_EXIT_OK ||
        (rc = number("revoke-batch", "--days", o.days, 3650, 30, &days)) != TC_EXIT_OK)
        return rc;
    struct paths p;
    tc_err e = make_paths(o.workspace, o.batch, &p);
    if (e != TC_OK)
        return fail(e, "revoke-batch");
    struct tc_hsm *h = NULL;
    struct tc_signer s = {0};
    struct tc_pki_issuer *iss = NULL;
    struct tc_pki_revoked *list = NULL;
    size_t n = 0;
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    char serial[2 * TC_PKI_SERIAL_MAX + 1] = "";
    uint64_t number_out = 0;
    e = load_der(p.ca, &der);
    if (e == TC_ERR_NOT_FOUND)
        e = TC_FAIL(TC_ERR_NOT_FOUND, "batch %s has no CA in this workspace", o.batch);
    X509 *x = e == TC_OK ? parse_x509(&der) : NULL;
    if (e == TC_OK && x == NULL)
        e = TC_FAIL(TC_ERR_FORMAT, "%s does not parse", p.ca);
    if (x != NULL) {
        serial_hex(x, serial, sizeof serial);
        const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
        if (e == TC_OK)
            e = load_revoked(p.root_rev, &list, &n);
        if (e == TC_OK &&
            revoked_has(list, n, ASN1_STRING_get0_data(sn), (size_t)ASN1_STRING_length(sn)))
            e = TC_FAIL(TC_ERR_STATE, "batch %s is already revoked", o.batch);
        X509_free(x);
    }
    if (e == TC_OK)
        e = open_root(&o, &p, &h, &s, &iss);
    if (e == TC_OK) {
        char line[200];
        int w = snprintf(line, sizeof line, "%s %lld %d %s\n", serial, (long long)time(NULL),
                         reason, o.batch);
        e = write_all(p.root_rev, line, (size_t)w, true);
    }
    if (e == TC_OK)
        e = publish_crl(iss, p.root_rev, p.root_num, p.root_crl, (int64_t)days, &number_out);
    if (e != TC_OK) {
        rc = fail(e, "revoke-batch");
        goto out;
    }
    rc = print_crl_result(&o, "batch CA", serial, p.root_crl, number_out);
out:
    free(list);
    tc_buf_free(&der);
    tc_pki_issuer_free(iss);
    if (s.ctx != NULL)
        tc_hsm_signer_free(&s);
    tc_hsm_close(h);
    return rc;
}

static int cmd_crl(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("crl", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if ((o.batch == NULL) == !o.root)
        return tc_cli_usage_error("pki crl: give exactly one of --batch and --root");
    if (o.batch != NULL && !batch_ok(o.batch))
        return tc_cli_usage_error("pki crl: bad batch ID '%s'", o.batch);
    uint64_t days;
    if ((rc = number("crl", "--days", o.days, 3650, 30, &days)) != TC_EXIT_OK)
        return rc;
    struct paths p;
    tc_err e = make_paths(o.workspace, o.batch, &p);
    if (e != TC_OK)
        return fail(e, "crl");
    struct tc_hsm *h = NULL;
    struct tc_signer s = {0};
    struct tc_pki_issuer *iss = NULL;
    uint64_t number_out = 0;
    e = o.root ? open_root(&o, &p, &h, &s, &iss) : open_batch(&o, &p, &h, &s, &iss);
    if (e == TC_OK)
        e = o.root
                ? publish_crl(iss, p.root_rev, p.root_num, p.root_crl, (int64_t)days, &number_out)
                : publish_crl(iss, p.rev, p.num, p.crl, (int64_t)days, &number_out);
    if (e != TC_OK)
        rc = fail(e, "crl");
    else
        rc = print_crl_result(&o, "", NULL, o.root ? p.root_crl : p.crl, number_out);
    tc_pki_issuer_free(iss);
    if (s.ctx != NULL)
        tc_hsm_signer_free(&s);
    tc_hsm_close(h);
    return rc;
}

/* ------------------------------------------------------------ verify */

static bool subject_ou(const struct tc_buf *der, char *out, size_t size)
{
    X509 *x = parse_x509(der);
    if (x == NULL)
        return false;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationalUnitName, out,
                                      (int)size);
    X509_free(x);
    return n > 0;
}

static int cmd_verify(int argc, char **argv)
{
    struct pki_opts o;
    int rc = parse_opts("verify", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if (o.cert == NULL)
        return tc_cli_usage_error("pki verify: no certificate given");
    struct tc_buf cert, root, batch, rcrl, bcrl;
    tc_buf_init_heap(&cert, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&root, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&batch, TC_PKI_CERT_MAX);
    tc_buf_init_heap(&rcrl, TC_PKI_CRL_MAX);
    tc_buf_init_heap(&bcrl, TC_PKI_CRL_MAX);
    char ou[TC_PKI_NAME_MAX + 1] = "", reason[256] = "";
    enum tc_pki_kind kind = TC_PKI_KIND_DEVICE;
    struct tc_pki_device_info di;
    memset(&di, 0, sizeof di);
    struct paths p;
    tc_err e = load_der(o.cert, &cert);
    if (e == TC_OK)
        e = tc_pki_kind_of(cert.data, cert.len, &kind);
    if (e == TC_OK && kind == TC_PKI_KIND_ROOT)
        e = TC_FAIL(TC_ERR_ARG, "%s is a root certificate; verify a batch CA or device", o.cert);
    const char *b = o.batch;
    if (e == TC_OK && b == NULL) {
        if (!subject_ou(&cert, ou, sizeof ou))
            e = TC_FAIL(TC_ERR_FORMAT, "the certificate names no batch (subject OU); give --batch");
        b = ou;
    }
    if (e == TC_OK && !batch_ok(b))
        e = TC_FAIL(TC_ERR_FORMAT, "batch '%s' is not in this workspace", b);
    if (e == TC_OK)
        e = make_paths(o.workspace, b, &p);
    if (e == TC_OK)
        e = load_der(p.root, &root);
    if (e == TC_OK)
        e = load_der(p.root_crl, &rcrl);
    if (e == TC_OK && kind == TC_PKI_KIND_DEVICE) {
        e = load_der(p.ca, &batch);
        if (e == TC_OK)
            e = load_der(p.crl, &bcrl);
    }
    if (e != TC_OK) {
        rc = fail(e, "verify");
        goto out;
    }
    struct tc_pki_chain c = {.root = root.data,
                             .root_len = root.len,
                             .batch = kind == TC_PKI_KIND_DEVICE ? batch.data : cert.data,
                             .batch_len = kind == TC_PKI_KIND_DEVICE ? batch.len : cert.len,
                             .device = kind == TC_PKI_KIND_DEVICE ? cert.data : NULL,
                             .device_len = kind == TC_PKI_KIND_DEVICE ? cert.len : 0,
                             .root_crl = rcrl.data,
                             .root_crl_len = rcrl.len,
                             .batch_crl = bcrl.data,
                             .batch_crl_len = bcrl.len};
    e = tc_pki_verify(&c, reason, sizeof reason);
    if (e == TC_OK && kind == TC_PKI_KIND_DEVICE)
        e = tc_pki_check_device(cert.data, cert.len, &di);
    if (e != TC_OK && e != TC_ERR_VERIFY) {
        rc = fail(e, "verify");
        goto out;
    }
    bool valid = e == TC_OK;
    char serial[2 * TC_PKI_SERIAL_MAX + 1] = "";
    X509 *x = parse_x509(&cert);
    if (x != NULL)
        serial_hex(x, serial, sizeof serial);
    X509_free(x);
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "valid");
        tc_json_bool(&j, valid);
        tc_json_key(&j, "kind");
        tc_json_string(&j, kind == TC_PKI_KIND_DEVICE ? "device" : "batch-ca");
        tc_json_key(&j, "batch");
        tc_json_string(&j, b);
        tc_json_key(&j, "serial");
        tc_json_string(&j, serial);
        if (valid && kind == TC_PKI_KIND_DEVICE) {
            tc_json_key(&j, "eid");
            tc_json_string(&j, di.eid);
            tc_json_key(&j, "station");
            tc_json_string(&j, di.station_id);
            tc_json_key(&j, "production_time");
            tc_json_uint(&j, (uint64_t)di.production_time);
        }
        if (!valid) {
            tc_json_key(&j, "reason");
            tc_json_string(&j, reason);
        }
        tc_json_end_object(&j);
        tc_json_finish(&j);
        rc = valid ? TC_EXIT_OK : TC_EXIT_FAIL;
    } else if (valid) {
        if (kind == TC_PKI_KIND_DEVICE)
            (void)printf("OK: device EID %s, batch %s, serial %s\n", di.eid, b, serial);
        else
            (void)printf("OK: batch CA %s, serial %s\n", b, serial);
        rc = TC_EXIT_OK;
    } else {
        (void)fprintf(stderr, "trustchain: pki verify: %s\n", reason);
        rc = TC_EXIT_FAIL;
    }
out:
    tc_buf_free(&cert);
    tc_buf_free(&root);
    tc_buf_free(&batch);
    tc_buf_free(&rcrl);
    tc_buf_free(&bcrl);
    return rc;
}

static const struct tc_cli_cmd pki_cmds[] = {
    {"root-ceremony", "root key in its own token, self-signed root, first root CRL",
     cmd_root_ceremony},
    {"batch-ca", "batch CA key and certificate (name constraints, EID prefix)", cmd_batch_ca},
    {"issue", "device certificate after EID and proof-of-possession checks", cmd_issue},
    {"revoke", "revoke a device certificate (new batch CRL)", cmd_revoke},
    {"revoke-batch", "revoke a batch CA (new root CRL)", cmd_revoke_batch},
    {"crl", "publish a fresh root or batch CRL", cmd_crl},
    {"verify", "chain, CRLs and profile of a device or batch CA certificate", cmd_verify},
};

int tc_cli_pki(int argc, char **argv)
{
    return tc_cli_group("pki", pki_usage, pki_cmds, TC_ARRAY_LEN(pki_cmds), argc, argv);
}
