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
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/station.h>

#include "cli.h"

#define DEMO_PATH_MAX 4096
#define DEMO_BATCH    "DEMO-0001"
#define DEMO_PREFIX   "89049032"
#define DEMO_STAMP    ".trustchain-demo"

static const char usage[] =
    "usage: trustchain demo [--workspace DIR] [--count N] [--jobs J]\n"
    "\n"
    "Run a whole manufacturing line on this machine: create a workspace (SoftHSM2\n"
    "token, registry, audit log), hold the root key ceremony, create a batch CA,\n"
    "import the SE vendor's transport keys, provision N emulated secure elements\n"
    "(default 1000), then show one device's state with its inclusion proofs, verify\n"
    "the audit log and verify that device's certificate chain with the CRLs.\n"
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

    say("1/8 Create the workspace %s: configuration, SoftHSM2 token with the master\n"
        "    diversification key and the audit checkpoint key, registry with its audit log.",
        ws);
    int rc = run(tc_cli_init, (const char *const[]){"init", "--workspace", ws, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("2/8 Root key ceremony: the root CA key is generated in its own HSM token and\n"
        "    signs the self-signed root certificate and the first root CRL.");
    rc =
        run(tc_cli_pki, (const char *const[]){"pki", "root-ceremony", "--workspace", ws, "--cn",
                                              "trustchain Demo Root CA", "--org", "trustchain demo",
                                              "--root-pin-file", rp, "--so-pin-file", sp, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("3/8 Batch CA for batch %s (EIDs %s...): its key in the line's token, its\n"
        "    certificate signed by the root.",
        DEMO_BATCH, DEMO_PREFIX);
    rc = run(tc_cli_pki,
             (const char *const[]){"pki", "batch-ca", "--workspace", ws, "--batch", DEMO_BATCH,
                                   "--eid-prefix", DEMO_PREFIX, "--manufacturer", "trustchain demo",
                                   "--pin-file", up, "--root-pin-file", rp, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("4/8 The SE vendor's transport keyset for the batch: written to the vendor's key\n"
        "    file %s and imported into the HSM (never readable again).",
        keyfile);
    if ((e = vendor_keys(ws, keyfile)) != TC_OK)
        return tc_cli_error(e, "demo");

    say("5/8 The line: %s emulated secure elements, shipped with the transport keys, go\n"
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
    say("6/8 One device, %s: its state as the log proves it (each event with an\n"
        "    inclusion proof against a signed checkpoint).",
        eid);
    rc = run(tc_cli_audit, (const char *const[]){"audit", "checkpoint", "--workspace", ws,
                                                 "--pin-file", up, NULL});
    if (rc == TC_EXIT_OK)
        rc = run(tc_cli_device, (const char *const[]){"device", "show", eid_hex, "--workspace", ws,
                                                      "--pin-file", up, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("7/8 Verify the whole audit log: every event, the Merkle tree, every checkpoint\n"
        "    signature, and the registry rebuilt from the log.");
    rc = run(tc_cli_audit,
             (const char *const[]){"audit", "verify", "--workspace", ws, "--pin-file", up, NULL});
    if (rc != TC_EXIT_OK)
        return rc;

    say("8/8 Verify that device's certificate chain (device -> batch CA -> root) with\n"
        "    the root and batch CRLs.");
    rc = run(tc_cli_pki, (const char *const[]){"pki", "verify", certf, "--workspace", ws, NULL});
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
    (void)printf("  cards            %s/card-*.img (emulated secure elements, now SECURED)\n",
                 cards);
    (void)printf("  registry + log   %s/%s (every step of every device is an event)\n", ws,
                 TC_REGISTRY_DB_NAME);
    (void)printf("  one device cert  %s (EID %s)\n", certf, eid);
    (void)printf("Try: trustchain device history %s --workspace %s\n", eid_hex, ws);
    return TC_EXIT_OK;
}
