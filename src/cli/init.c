/*
 * trustchain init: one command that makes a working workspace (docs/station.md):
 * the line configuration, SoftHSM2's config and token (through
 * tc_hsm_workspace_create and PKCS#11 C_InitToken), the master
 * diversification key and the audit checkpoint key in the token, and the
 * registry database holding the audit log.
 *
 * PINs: from $TRUSTCHAIN_HSM_PIN / $TRUSTCHAIN_HSM_SO_PIN / $TRUSTCHAIN_ROOT_PIN
 * or --pin-file / --so-pin-file / --root-pin-file when given; otherwise (a
 * demonstration workspace) random ones are generated into
 * <ws>/secrets/ (user.pin, so.pin, root.pin), mode 0600. Never printed.
 *
 * Must never: print a PIN, put one on a command line, or overwrite a PIN
 * file or an initialised token.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <trustchain/hsm.h>
#include <trustchain/registry.h>
#include <trustchain/station.h>

#include "cli.h"

#define INIT_PATH_MAX  4096
#define INIT_PIN_BYTES 12 /* 24 hex characters */
#define ENV_ROOT_PIN   "TRUSTCHAIN_ROOT_PIN"
#define ROOT_TOKEN     "trustchain-root"

static const char usage[] =
    "usage: trustchain init [options]\n"
    "\n"
    "Create a workspace in one command: trustchain.conf (the line configuration),\n"
    "SoftHSM2's config and token, the master diversification key and the audit\n"
    "checkpoint key in the token, and registry.db (the registry and its audit log).\n"
    "Running it again on a workspace keeps everything that exists.\n"
    "\n"
    "options:\n"
    "  --workspace DIR     the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --module PATH       PKCS#11 module (default " TC_HSM_DEFAULT_MODULE ")\n"
    "  --token LABEL       token label (default " TC_HSM_DEFAULT_TOKEN ")\n"
    "  --station ID        this station's identifier (default ST-01)\n"
    "  --master NAME       master key name, tc:master:NAME (default line)\n"
    "  --pin-file F        user PIN (default $" TC_HSM_ENV_PIN ")\n"
    "  --so-pin-file F     SO PIN (default $" TC_HSM_ENV_SO_PIN ")\n"
    "  --root-pin-file F   root token PIN for the ceremony (default $" ENV_ROOT_PIN ")\n"
    "  --json              machine-readable output\n"
    "\n"
    "Without a PIN from the environment or a file, random PINs are written to\n"
    "<workspace>/secrets/{user,so,root}.pin (mode 0600): a demonstration workspace.\n";

struct init_opts {
    const char *workspace, *module, *token, *station, *master;
    const char *pin_file, *so_pin_file, *root_pin_file;
    bool json;
};

static bool join(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    return n > 0 && (size_t)n < size;
}

static tc_err mkdir_p(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return TC_FAIL(TC_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    return TC_OK;
}

/* Write a new file (never replacing one) with mode 0600, fsynced. */
static tc_err write_new(const char *path, const char *data, size_t len, bool *created)
{
    *created = false;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        return TC_OK;
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    TC_ENSURE_MSG(ok, TC_ERR_IO, "cannot write %s", path);
    *created = true;
    return TC_OK;
}

/* A PIN: from env/file when given, else the demo PIN file (generated once). */
static tc_err pin_get(const char *env, const char *file, const char *demo_path, char *pin,
                      size_t size, size_t *len, bool *generated)
{
    *generated = false;
    tc_err rc = tc_hsm_pin_read(env, file, pin, size, len);
    if (rc != TC_ERR_NOT_FOUND || file != NULL)
        return rc;
    tc_error_clear();
    uint8_t raw[INIT_PIN_BYTES];
    char hex[2 * INIT_PIN_BYTES + 2];
    TC_GUARD(tc_random(raw, sizeof raw));
    rc = tc_hex_encode(raw, sizeof raw, hex, sizeof hex);
    tc_memzero(raw, sizeof raw);
    size_t hl = 2 * INIT_PIN_BYTES;
    hex[hl] = '\n';
    if (rc == TC_OK)
        rc = write_new(demo_path, hex, hl + 1, generated);
    tc_memzero(hex, sizeof hex);
    TC_GUARD(rc);
    return tc_hsm_pin_read(NULL, demo_path, pin, size, len);
}

static const struct tc_cli_opt init_opts_table[] = {
    TC_CLI_OPT_FLAG_AT("--json", struct init_opts, json),
    TC_CLI_OPT_VALUE_AT("--workspace", struct init_opts, workspace),
    TC_CLI_OPT_VALUE_AT("--module", struct init_opts, module),
    TC_CLI_OPT_VALUE_AT("--token", struct init_opts, token),
    TC_CLI_OPT_VALUE_AT("--station", struct init_opts, station),
    TC_CLI_OPT_VALUE_AT("--master", struct init_opts, master),
    TC_CLI_OPT_VALUE_AT("--pin-file", struct init_opts, pin_file),
    TC_CLI_OPT_VALUE_AT("--so-pin-file", struct init_opts, so_pin_file),
    TC_CLI_OPT_VALUE_AT("--root-pin-file", struct init_opts, root_pin_file),
    TC_CLI_OPT_REFUSE("--pin", "PINs are not accepted on the command line; use $" TC_HSM_ENV_PIN
                               " or --pin-file"),
    TC_CLI_OPT_REFUSE("--so-pin", "PINs are not accepted on the command line; use $" TC_HSM_ENV_PIN
                                  " or --pin-file"),
};

static int parse(int argc, char **argv, struct init_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workspace = tc_cli_default_workspace();
    o->station = "ST-01";
    o->master = "line";
    int rc =
        tc_cli_parse_opts("init", NULL, init_opts_table,
                          sizeof init_opts_table / sizeof init_opts_table[0], argc, argv, o, NULL);
    if (rc != TC_EXIT_OK)
        return rc;
    for (const char *p = o->station; *p != '\0'; p++)
        if (*p <= 0x20 || *p > 0x7E)
            return tc_cli_usage_error("init: --station must be printable without spaces");
    if (o->station[0] == '\0' || strlen(o->station) > 64 || o->master[0] == '\0' ||
        strlen(o->master) > 32)
        return tc_cli_usage_error("init: --station (1-64) or --master (1-32) has a bad length");
    return TC_EXIT_OK;
}

int tc_cli_init(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(usage, stdout);
        return TC_EXIT_OK;
    }
    struct init_opts o;
    int rc = parse(argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    char ws[INIT_PATH_MAX], secrets[INIT_PATH_MAX], conf[INIT_PATH_MAX];
    char up[INIT_PATH_MAX], sp[INIT_PATH_MAX], rp[INIT_PATH_MAX];
    tc_err e = mkdir_p(o.workspace, 0700);
    if (e != TC_OK)
        return tc_cli_error(e, "init");
    if (realpath(o.workspace, ws) == NULL)
        return tc_cli_error(TC_FAIL(TC_ERR_IO, "%s: %s", o.workspace, strerror(errno)), "init");
    if (!join(secrets, sizeof secrets, ws, "secrets") ||
        !join(conf, sizeof conf, ws, "trustchain.conf") ||
        !join(up, sizeof up, secrets, "user.pin") || !join(sp, sizeof sp, secrets, "so.pin") ||
        !join(rp, sizeof rp, secrets, "root.pin"))
        return tc_cli_usage_error("init: workspace path too long");

    char pin[TC_HSM_PIN_MAX + 1], so[TC_HSM_PIN_MAX + 1], root[TC_HSM_PIN_MAX + 1];
    size_t pin_len = 0, so_len = 0, root_len = 0;
    bool gen_user = false, gen_so = false, gen_root = false, token_new = false;
    bool master_new = false, audit_new = false, conf_new = false;
    struct tc_hsm *h = NULL;
    struct tc_registry *reg = NULL;
    struct tc_hsm_workspace hw;
    rc = TC_EXIT_FAIL;
    e = mkdir_p(secrets, 0700);
    if (e == TC_OK)
        e = pin_get(TC_HSM_ENV_PIN, o.pin_file, up, pin, sizeof pin, &pin_len, &gen_user);
    if (e == TC_OK)
        e = pin_get(TC_HSM_ENV_SO_PIN, o.so_pin_file, sp, so, sizeof so, &so_len, &gen_so);
    if (e == TC_OK)
        e = pin_get(ENV_ROOT_PIN, o.root_pin_file, rp, root, sizeof root, &root_len, &gen_root);
    if (e == TC_OK)
        e = tc_hsm_workspace_create(ws, o.module, o.token, &hw);
    if (e == TC_OK) {
        /* PKCS#11 §5.6 C_InitToken + C_InitPIN; a token with the label
         * already there (TC_ERR_STATE) is kept. */
        e = tc_hsm_init_token(hw.module_path, hw.softhsm_conf, hw.token_label, so, so_len, pin,
                              pin_len);
        token_new = e == TC_OK;
        if (e == TC_ERR_STATE) {
            tc_error_clear();
            e = TC_OK;
        }
    }
    struct tc_hsm_config hc = {.module_path = hw.module_path,
                               .softhsm_conf = hw.softhsm_conf,
                               .token_label = hw.token_label,
                               .pin = pin,
                               .pin_len = pin_len,
                               .pool_size = 1};
    if (e == TC_OK)
        e = tc_hsm_open(&hc, &h);
    char label[TC_HSM_LABEL_MAX + 1];
    (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, o.master);
    tc_hsm_obj obj, pub;
    if (e == TC_OK) {
        e = tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &obj);
        if (e == TC_ERR_NOT_FOUND) {
            tc_error_clear();
            /* AES-128: the master must be at least as long as the device
             * keys it derives (docs/hsm.md); SE vendors ship AES-128. */
            e = tc_hsm_master_generate(h, o.master, 16, &obj);
            master_new = e == TC_OK;
        }
    }
    if (e == TC_OK) {
        e = tc_hsm_find(h, TC_HSM_KIND_PRIVATE, TC_HSM_LABEL_AUDIT, &obj);
        if (e == TC_ERR_NOT_FOUND) {
            tc_error_clear();
            e = tc_hsm_keypair_generate(h, TC_SIG_ED25519, TC_HSM_LABEL_AUDIT, &obj, &pub);
            audit_new = e == TC_OK;
        }
    }
    if (e == TC_OK)
        e = tc_registry_open_workspace(ws, &reg);
    char text[1024];
    int tl =
        snprintf(text, sizeof text,
                 "# trustchain workspace: the line's configuration (docs/station.md)\n"
                 "station = %s\n"
                 "actor = station:%s\n"
                 "master = %s\n"
                 "transport_kvn = %02X\n"
                 "device_kvn = %02X\n",
                 o.station, o.station, o.master, TC_STATION_TRANSPORT_KVN, TC_STATION_DEVICE_KVN);
    if (e == TC_OK && (tl <= 0 || (size_t)tl >= sizeof text))
        e = TC_FAIL(TC_ERR_ARG, "configuration too long");
    if (e == TC_OK)
        e = write_new(conf, text, (size_t)tl, &conf_new);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "init");
        goto out;
    }
    char reg_path[INIT_PATH_MAX + 16];
    (void)snprintf(reg_path, sizeof reg_path, "%s/%s", ws, TC_REGISTRY_DB_NAME);
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "workspace");
        tc_json_string(&j, ws);
        tc_json_key(&j, "config");
        tc_json_string(&j, conf);
        tc_json_key(&j, "softhsm_conf");
        tc_json_string(&j, hw.softhsm_conf);
        tc_json_key(&j, "token");
        tc_json_string(&j, hw.token_label);
        tc_json_key(&j, "token_created");
        tc_json_bool(&j, token_new);
        tc_json_key(&j, "master_key");
        tc_json_string(&j, label);
        tc_json_key(&j, "audit_key");
        tc_json_string(&j, TC_HSM_LABEL_AUDIT);
        tc_json_key(&j, "registry");
        tc_json_string(&j, reg_path);
        tc_json_key(&j, "generated_pin_files");
        tc_json_begin_array(&j);
        if (gen_user)
            tc_json_string(&j, up);
        if (gen_so)
            tc_json_string(&j, sp);
        if (gen_root)
            tc_json_string(&j, rp);
        tc_json_end_array(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("workspace %s\n", ws);
        (void)printf("  configuration  %s%s\n", conf, conf_new ? "" : " (kept)");
        (void)printf("  HSM            %s, token '%s'%s\n", hw.softhsm_conf, hw.token_label,
                     token_new ? "" : " (kept)");
        (void)printf("  master key     %s%s\n", label, master_new ? "" : " (kept)");
        (void)printf("  audit key      %s%s\n", TC_HSM_LABEL_AUDIT, audit_new ? "" : " (kept)");
        (void)printf("  registry       %s (audit log inside)\n", reg_path);
        if (gen_user || gen_so || gen_root)
            (void)printf("  PINs           random, in %s/*.pin (mode 0600; never printed)\n",
                         secrets);
    }
    rc = TC_EXIT_OK;
out:
    tc_registry_close(reg);
    tc_hsm_close(h);
    tc_memzero(pin, sizeof pin);
    tc_memzero(so, sizeof so);
    tc_memzero(root, sizeof root);
    return rc;
}
