/*
 * trustchain hsm: set up the workspace's HSM (SoftHSM2 with its own config
 * and token directory), describe the module and token, list our keys.
 * PINs come from the environment or a file, never from argv; no PIN and no
 * key value is ever printed.
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/hsm.h>

#include "cli.h"

static const char hsm_usage[] =
    "usage: trustchain hsm <command> [options]\n"
    "\n"
    "commands:\n"
    "  init   create the workspace's SoftHSM2 config and token directory and\n"
    "         initialise a token (C_InitToken, C_InitPIN)\n"
    "  info   the PKCS#11 module, the token and the mechanisms trustchain needs\n"
    "  keys   the token's trustchain keys: labels, IDs, types, attributes\n"
    "  generate --master NAME [--bits 128|256]\n"
    "         generate the master diversification key tc:master:NAME\n"
    "  generate --keypair LABEL --alg p256|p384|ed25519\n"
    "         generate a signature key pair (e.g. tc:batch-ca:B1, tc:audit:checkpoint)\n"
    "  import-transport --batch B --kvn N --key-file FILE\n"
    "         import the SE vendor's transport keyset once (FILE has lines\n"
    "         ENC = hex, MAC = hex, DEK = hex); it is non-extractable from then on\n"
    "\n"
    "common options:\n"
    "  --workspace DIR   the workspace (default $TRUSTCHAIN_WORKSPACE or\n"
    "                    ./trustchain-work)\n"
    "  --module PATH     PKCS#11 module (default: the workspace's, else\n"
    "                    " TC_HSM_DEFAULT_MODULE ")\n"
    "  --label LABEL     token label (default: the workspace's, else '" TC_HSM_DEFAULT_TOKEN "')\n"
    "  --pin-file FILE   user PIN from the first line of FILE (default: $" TC_HSM_ENV_PIN ")\n"
    "  --so-pin-file F   SO PIN for init (default: $" TC_HSM_ENV_SO_PIN ")\n"
    "  --json            machine-readable output (info, keys, init)\n"
    "  -h, --help        print this help\n"
    "\n"
    "PINs are never accepted on the command line.\n";

struct hsm_opts {
    const char *workspace;
    const char *module;
    const char *label;
    const char *pin_file;
    const char *so_pin_file;
    const char *master;
    const char *keypair;
    const char *alg;
    const char *bits;
    const char *batch;
    const char *kvn;
    const char *key_file;
    bool json;
};

#define V(n, f) TC_CLI_OPT_VALUE_AT(n, struct hsm_opts, f)
#define PIN_REFUSED                                                                                \
    "PINs are not accepted on the command line; use $" TC_HSM_ENV_PIN                              \
    " or --pin-file (and $" TC_HSM_ENV_SO_PIN " or --so-pin-file)"
static const struct tc_cli_opt hsm_options[] = {
    V("--workspace", workspace),
    V("--module", module),
    V("--label", label),
    V("--pin-file", pin_file),
    V("--so-pin-file", so_pin_file),
    V("--master", master),
    V("--keypair", keypair),
    V("--alg", alg),
    V("--bits", bits),
    V("--batch", batch),
    V("--kvn", kvn),
    V("--key-file", key_file),
    TC_CLI_OPT_FLAG_AT("--json", struct hsm_opts, json),
    TC_CLI_OPT_REFUSE("--pin", PIN_REFUSED),
    TC_CLI_OPT_REFUSE("--so-pin", PIN_REFUSED),
};
#undef V

static int parse_opts(const char *cmd, int argc, char **argv, struct hsm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workspace = tc_cli_default_workspace();
    return tc_cli_parse_opts("hsm", cmd, hsm_options, TC_ARRAY_LEN(hsm_options), argc, argv, o,
                             NULL);
}

/* Workspace settings, overridden by --module/--label. */
static int resolve(const char *cmd, const struct hsm_opts *o, struct tc_hsm_workspace *ws)
{
    tc_err rc = tc_hsm_workspace_load(o->workspace, ws);
    if (rc != TC_OK) {
        char what[64];
        (void)snprintf(what, sizeof what, "hsm %s", cmd);
        return tc_cli_error(rc, what);
    }
    if (o->module != NULL)
        (void)snprintf(ws->module_path, sizeof ws->module_path, "%s", o->module);
    if (o->label != NULL) {
        if (strlen(o->label) > 32)
            return tc_cli_usage_error("hsm %s: token label must be at most 32 characters", cmd);
        (void)snprintf(ws->token_label, sizeof ws->token_label, "%s", o->label);
    }
    return TC_EXIT_OK;
}

static int read_pin(const char *cmd, const char *env, const char *file, char *pin, size_t size,
                    size_t *len)
{
    tc_err rc = tc_hsm_pin_read(env, file, pin, size, len);
    if (rc == TC_OK)
        return TC_EXIT_OK;
    if (rc == TC_ERR_NOT_FOUND)
        return tc_cli_usage_error("hsm %s: %s", cmd, tc_error_last()->msg);
    char what[64];
    (void)snprintf(what, sizeof what, "hsm %s", cmd);
    return tc_cli_error(rc, what);
}

/* ------------------------------------------------------------ init */

static int cmd_init(int argc, char **argv)
{
    struct hsm_opts o;
    int rc = parse_opts("init", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    char so_pin[TC_HSM_PIN_MAX + 1];
    char pin[TC_HSM_PIN_MAX + 1];
    size_t so_len = 0, pin_len = 0;
    struct tc_hsm *h = NULL;
    rc = read_pin("init", TC_HSM_ENV_SO_PIN, o.so_pin_file, so_pin, sizeof so_pin, &so_len);
    if (rc != TC_EXIT_OK)
        goto out;
    rc = read_pin("init", TC_HSM_ENV_PIN, o.pin_file, pin, sizeof pin, &pin_len);
    if (rc != TC_EXIT_OK)
        goto out;
    struct tc_hsm_workspace ws;
    tc_err e = tc_hsm_workspace_create(o.workspace, o.module, o.label, &ws);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "hsm init");
        goto out;
    }
    e = tc_hsm_init_token(ws.module_path, ws.softhsm_conf, ws.token_label, so_pin, so_len, pin,
                          pin_len);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "hsm init");
        goto out;
    }
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = ws.token_label,
                                .pin = pin,
                                .pin_len = pin_len,
                                .pool_size = 1};
    /* Prove the new user PIN logs in before reporting success. */
    e = tc_hsm_open(&cfg, &h);
    struct tc_hsm_info info;
    if (e == TC_OK)
        e = tc_hsm_info(h, &info);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "hsm init");
        goto out;
    }
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "softhsm_conf");
        tc_json_string(&j, ws.softhsm_conf);
        tc_json_key(&j, "token_dir");
        tc_json_string(&j, ws.token_dir);
        tc_json_key(&j, "module");
        tc_json_string(&j, ws.module_path);
        tc_json_key(&j, "token_label");
        tc_json_string(&j, info.token_label);
        tc_json_key(&j, "token_serial");
        tc_json_string(&j, info.token_serial);
        tc_json_key(&j, "slot");
        tc_json_uint(&j, info.slot_id);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("created %s\n", ws.softhsm_conf);
        (void)printf("created %s/\n", ws.token_dir);
        (void)printf("initialised token '%s' (serial %s, slot %lu) in %s\n", info.token_label,
                     info.token_serial, info.slot_id, ws.module_path);
        (void)printf("SO PIN and user PIN set (not shown)\n");
    }
    rc = TC_EXIT_OK;
out:
    tc_hsm_close(h);
    tc_memzero(so_pin, sizeof so_pin);
    tc_memzero(pin, sizeof pin);
    return rc;
}

/* ------------------------------------------------------------ info */

static int cmd_info(int argc, char **argv)
{
    struct hsm_opts o;
    int rc = parse_opts("info", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    struct tc_hsm_workspace ws;
    rc = resolve("info", &o, &ws);
    if (rc != TC_EXIT_OK)
        return rc;
    /* Public information only: no login, no PIN needed. */
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = ws.token_label,
                                .pool_size = 1};
    struct tc_hsm *h = NULL;
    struct tc_hsm_info info;
    tc_err e = tc_hsm_open(&cfg, &h);
    if (e == TC_OK)
        e = tc_hsm_info(h, &info);
    tc_hsm_close(h);
    if (e != TC_OK)
        return tc_cli_error(e, "hsm info");
    size_t supported = 0;
    for (size_t i = 0; i < TC_HSM_MECH_COUNT; i++)
        supported += info.mech[i].supported ? 1u : 0u;
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "module");
        tc_json_string(&j, info.module_path);
        tc_json_key(&j, "softhsm_conf");
        tc_json_string(&j, ws.softhsm_conf);
        tc_json_key(&j, "manufacturer");
        tc_json_string(&j, info.manufacturer);
        tc_json_key(&j, "library");
        tc_json_string(&j, info.library);
        char ver[16];
        (void)snprintf(ver, sizeof ver, "%u.%u", info.version_major, info.version_minor);
        tc_json_key(&j, "cryptoki_version");
        tc_json_string(&j, ver);
        tc_json_key(&j, "slot");
        tc_json_uint(&j, info.slot_id);
        tc_json_key(&j, "token_label");
        tc_json_string(&j, info.token_label);
        tc_json_key(&j, "token_model");
        tc_json_string(&j, info.token_model);
        tc_json_key(&j, "token_serial");
        tc_json_string(&j, info.token_serial);
        tc_json_key(&j, "slots");
        tc_json_begin_array(&j);
        for (size_t i = 0; i < info.n_slots && i < TC_HSM_INFO_SLOTS; i++) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "id");
            tc_json_uint(&j, info.slots[i].id);
            tc_json_key(&j, "token_present");
            tc_json_bool(&j, info.slots[i].token_present);
            tc_json_key(&j, "initialized");
            tc_json_bool(&j, info.slots[i].initialized);
            if (info.slots[i].initialized) {
                tc_json_key(&j, "label");
                tc_json_string(&j, info.slots[i].label);
            }
            tc_json_end_object(&j);
        }
        tc_json_end_array(&j);
        tc_json_key(&j, "mechanisms");
        tc_json_begin_array(&j);
        for (size_t i = 0; i < TC_HSM_MECH_COUNT; i++) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "name");
            tc_json_string(&j, info.mech[i].name);
            tc_json_key(&j, "purpose");
            tc_json_string(&j, info.mech[i].purpose);
            tc_json_key(&j, "supported");
            tc_json_bool(&j, info.mech[i].supported);
            tc_json_end_object(&j);
        }
        tc_json_end_array(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
        return TC_EXIT_OK;
    }
    (void)printf("module:        %s\n", info.module_path);
    (void)printf("library:       %s (%s), Cryptoki %u.%u\n", info.library, info.manufacturer,
                 info.version_major, info.version_minor);
    (void)printf("config:        %s\n", ws.softhsm_conf);
    (void)printf("token:         '%s' (model %s, serial %s) in slot %lu\n", info.token_label,
                 info.token_model, info.token_serial, info.slot_id);
    (void)printf("slots:         %zu\n", info.n_slots);
    for (size_t i = 0; i < info.n_slots && i < TC_HSM_INFO_SLOTS; i++) {
        if (info.slots[i].initialized)
            (void)printf("  slot %-10lu token '%s'\n", info.slots[i].id, info.slots[i].label);
        else
            (void)printf("  slot %-10lu %s\n", info.slots[i].id,
                         info.slots[i].token_present ? "uninitialised token" : "no token");
    }
    (void)printf("mechanisms:    %zu of %u supported\n", supported, TC_HSM_MECH_COUNT);
    for (size_t i = 0; i < TC_HSM_MECH_COUNT; i++)
        (void)printf("  %-28s %-13s %s\n", info.mech[i].name,
                     info.mech[i].supported ? "supported" : "NOT SUPPORTED", info.mech[i].purpose);
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------ keys */

static const char *kind_name(enum tc_hsm_kind k)
{
    switch (k) {
    case TC_HSM_KIND_SECRET:
        return "secret";
    case TC_HSM_KIND_PRIVATE:
        return "private";
    case TC_HSM_KIND_PUBLIC:
        return "public";
    case TC_HSM_KIND_OTHER:
    default:
        return "other";
    }
}

static void usage_flags(const struct tc_hsm_obj_info *k, char *out, size_t size)
{
    struct {
        bool on;
        const char *name;
    } f[] = {
        {k->token, "token"},
        {k->sensitive, "sensitive"},
        {k->extractable, "extractable"},
        {k->never_extractable, "never-extractable"},
        {k->encrypt, "encrypt"},
        {k->decrypt, "decrypt"},
        {k->sign, "sign"},
        {k->verify, "verify"},
        {k->wrap, "wrap"},
        {k->unwrap, "unwrap"},
        {k->derive, "derive"},
    };
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < TC_ARRAY_LEN(f); i++) {
        if (!f[i].on)
            continue;
        int w = snprintf(out + n, size - n, "%s%s", n > 0 ? "," : "", f[i].name);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
}

static int cmd_keys(int argc, char **argv)
{
    struct hsm_opts o;
    int rc = parse_opts("keys", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    struct tc_hsm_workspace ws;
    rc = resolve("keys", &o, &ws);
    if (rc != TC_EXIT_OK)
        return rc;
    char pin[TC_HSM_PIN_MAX + 1];
    size_t pin_len = 0;
    struct tc_hsm *h = NULL;
    struct tc_hsm_obj_info *list = NULL;
    rc = read_pin("keys", TC_HSM_ENV_PIN, o.pin_file, pin, sizeof pin, &pin_len);
    if (rc != TC_EXIT_OK)
        goto out;
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = ws.token_label,
                                .pin = pin,
                                .pin_len = pin_len,
                                .pool_size = 1};
    const size_t max = 4096;
    list = calloc(max, sizeof *list);
    size_t n = 0;
    tc_err e = list == NULL ? TC_FAIL(TC_ERR_NOMEM, "out of memory") : tc_hsm_open(&cfg, &h);
    if (e == TC_OK)
        e = tc_hsm_list(h, list, max, &n);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "hsm keys");
        goto out;
    }
    struct tc_json j;
    if (o.json) {
        tc_json_init(&j, stdout);
        tc_json_begin_array(&j);
    }
    for (size_t i = 0; i < n; i++) {
        const struct tc_hsm_obj_info *k = &list[i];
        char id[2 * sizeof k->id + 1] = "";
        if (tc_hex_encode(k->id, k->id_len, id, sizeof id) != TC_OK)
            id[0] = '\0';
        char flags[160];
        usage_flags(k, flags, sizeof flags);
        char size[24] = "";
        if (k->kind == TC_HSM_KIND_SECRET)
            (void)snprintf(size, sizeof size, "%lu bits", k->value_len * 8);
        else
            (void)snprintf(size, sizeof size, "%s", k->curve);
        if (o.json) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "label");
            tc_json_string(&j, k->label);
            tc_json_key(&j, "id");
            tc_json_string(&j, id);
            tc_json_key(&j, "class");
            tc_json_string(&j, kind_name(k->kind));
            tc_json_key(&j, "key_type");
            tc_json_string(&j, k->key_type);
            if (k->kind == TC_HSM_KIND_SECRET) {
                tc_json_key(&j, "bits");
                tc_json_uint(&j, (uint64_t)k->value_len * 8u);
            } else {
                tc_json_key(&j, "curve");
                tc_json_string(&j, k->curve);
            }
            tc_json_key(&j, "attributes");
            tc_json_string(&j, flags);
            tc_json_end_object(&j);
        } else {
            (void)printf("%-44s %-7s %-10s %-9s id %s  %s\n", k->label, kind_name(k->kind),
                         k->key_type, size, id, flags);
        }
    }
    if (o.json) {
        tc_json_end_array(&j);
        tc_json_finish(&j);
    } else if (n == 0) {
        (void)printf("no trustchain keys in token '%s'\n", ws.token_label);
    }
    rc = TC_EXIT_OK;
out:
    free(list);
    tc_hsm_close(h);
    tc_memzero(pin, sizeof pin);
    return rc;
}

/* ------------------------------------------------------------ generate */

static int open_user(const char *cmd, const struct hsm_opts *o, struct tc_hsm **h)
{
    struct tc_hsm_workspace ws;
    int rc = resolve(cmd, o, &ws);
    if (rc != TC_EXIT_OK)
        return rc;
    char pin[TC_HSM_PIN_MAX + 1];
    size_t pin_len = 0;
    rc = read_pin(cmd, TC_HSM_ENV_PIN, o->pin_file, pin, sizeof pin, &pin_len);
    if (rc != TC_EXIT_OK)
        return rc;
    struct tc_hsm_config cfg = {.module_path = ws.module_path,
                                .softhsm_conf = ws.softhsm_conf,
                                .token_label = ws.token_label,
                                .pin = pin,
                                .pin_len = pin_len,
                                .pool_size = 1};
    tc_err e = tc_hsm_open(&cfg, h);
    tc_memzero(pin, sizeof pin);
    if (e != TC_OK) {
        char what[64];
        (void)snprintf(what, sizeof what, "hsm %s", cmd);
        return tc_cli_error(e, what);
    }
    return TC_EXIT_OK;
}

static int cmd_generate(int argc, char **argv)
{
    struct hsm_opts o;
    int rc = parse_opts("generate", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if ((o.master == NULL) == (o.keypair == NULL))
        return tc_cli_usage_error("hsm generate: give exactly one of --master NAME or "
                                  "--keypair LABEL");
    size_t key_len = 16;
    enum tc_sig_alg alg = TC_SIG_ECDSA_P256_SHA256;
    if (o.master != NULL) {
        if (o.alg != NULL)
            return tc_cli_usage_error("hsm generate: --alg applies to --keypair only");
        if (o.bits != NULL && strcmp(o.bits, "128") != 0 && strcmp(o.bits, "256") != 0)
            return tc_cli_usage_error("hsm generate: --bits must be 128 or 256");
        key_len = o.bits != NULL && strcmp(o.bits, "256") == 0 ? 32 : 16;
    } else {
        if (o.bits != NULL)
            return tc_cli_usage_error("hsm generate: --bits applies to --master only");
        if (o.alg == NULL)
            return tc_cli_usage_error("hsm generate: --keypair needs --alg p256|p384|ed25519");
        if (strcmp(o.alg, "p256") == 0)
            alg = TC_SIG_ECDSA_P256_SHA256;
        else if (strcmp(o.alg, "p384") == 0)
            alg = TC_SIG_ECDSA_P384_SHA384;
        else if (strcmp(o.alg, "ed25519") == 0)
            alg = TC_SIG_ED25519;
        else
            return tc_cli_usage_error("hsm generate: unknown --alg '%s' (p256, p384, ed25519)",
                                      o.alg);
        if (strncmp(o.keypair, "tc:", 3) != 0)
            return tc_cli_usage_error("hsm generate: key labels start with 'tc:' "
                                      "(see docs/hsm.md)");
    }
    struct tc_hsm *h = NULL;
    rc = open_user("generate", &o, &h);
    if (rc != TC_EXIT_OK)
        return rc;
    tc_hsm_obj a = 0, b = 0;
    tc_err e;
    char label[TC_HSM_LABEL_MAX + 16];
    if (o.master != NULL) {
        e = tc_hsm_master_generate(h, o.master, key_len, &a);
        (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, o.master);
    } else {
        e = tc_hsm_keypair_generate(h, alg, o.keypair, &a, &b);
        (void)snprintf(label, sizeof label, "%s", o.keypair);
    }
    uint8_t spki[TC_SPKI_MAX];
    size_t spki_len = 0;
    if (e == TC_OK && o.keypair != NULL)
        e = tc_hsm_public_key(h, b, spki, sizeof spki, &spki_len);
    tc_hsm_close(h);
    if (e != TC_OK)
        return tc_cli_error(e, "hsm generate");
    char spki_hex[2 * TC_SPKI_MAX + 1] = "";
    if (spki_len > 0)
        if (tc_hex_encode(spki, spki_len, spki_hex, sizeof spki_hex) != TC_OK)
            spki_hex[0] = '\0';
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "label");
        tc_json_string(&j, label);
        if (spki_len > 0) {
            tc_json_key(&j, "spki");
            tc_json_string(&j, spki_hex);
        }
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("generated %s\n", label);
        if (spki_len > 0)
            (void)printf("public key (SPKI DER): %s\n", spki_hex);
    }
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------ transport */

static int cmd_import_transport(int argc, char **argv)
{
    struct hsm_opts o;
    int rc = parse_opts("import-transport", argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    if (o.batch == NULL || o.kvn == NULL || o.key_file == NULL)
        return tc_cli_usage_error("hsm import-transport: --batch, --kvn and --key-file are "
                                  "required");
    uint64_t kvn = 0;
    if (tc_parse_uint(o.kvn, 0x7F, &kvn) != TC_OK || kvn == 0)
        return tc_cli_usage_error("hsm import-transport: --kvn must be 1 to 127 (GP key "
                                  "version number)");
    uint8_t keys[3][TC_AES_MAX_KEY];
    size_t key_len = 0;
    struct tc_hsm *h = NULL;
    tc_err e = tc_hsm_transport_keyfile_read(o.key_file, keys[0], keys[1], keys[2], &key_len);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "hsm import-transport");
        goto out;
    }
    rc = open_user("import-transport", &o, &h);
    if (rc != TC_EXIT_OK)
        goto out;
    struct tc_hsm_keyset ks;
    e = tc_hsm_transport_import(h, o.batch, (uint8_t)kvn, keys[0], keys[1], keys[2], key_len, &ks);
    uint8_t kcv[3][TC_KCV_LEN];
    if (e == TC_OK)
        e = tc_hsm_kcv(h, ks.enc, kcv[0]);
    if (e == TC_OK)
        e = tc_hsm_kcv(h, ks.mac, kcv[1]);
    if (e == TC_OK)
        e = tc_hsm_kcv(h, ks.dek, kcv[2]);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "hsm import-transport");
        goto out;
    }
    static const char *const roles[3] = {"enc", "mac", "dek"};
    struct tc_json j;
    if (o.json) {
        tc_json_init(&j, stdout);
        tc_json_begin_array(&j);
    }
    for (size_t i = 0; i < 3; i++) {
        char label[TC_HSM_LABEL_MAX + 1];
        char k[2 * TC_KCV_LEN + 1];
        (void)snprintf(label, sizeof label, "%s%s:%02X:%s", TC_HSM_LABEL_TRANSPORT, o.batch,
                       (unsigned)kvn, roles[i]);
        if (tc_hex_encode(kcv[i], TC_KCV_LEN, k, sizeof k) != TC_OK)
            k[0] = '\0';
        if (o.json) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "label");
            tc_json_string(&j, label);
            tc_json_key(&j, "kcv");
            tc_json_string(&j, k);
            tc_json_end_object(&j);
        } else {
            (void)printf("imported %s (KCV %s)\n", label, k);
        }
    }
    if (o.json) {
        tc_json_end_array(&j);
        tc_json_finish(&j);
    }
    rc = TC_EXIT_OK;
out:
    tc_hsm_close(h);
    tc_memzero(keys, sizeof keys);
    return rc;
}

static const struct tc_cli_cmd hsm_cmds[] = {
    {"init", "set up the workspace's SoftHSM2 and initialise a token", cmd_init},
    {"info", "module, token and supported mechanisms", cmd_info},
    {"keys", "the token's trustchain keys (attributes, never values)", cmd_keys},
    {"generate", "generate a master key or a signature key pair", cmd_generate},
    {"import-transport", "import an SE vendor transport keyset", cmd_import_transport},
};

int tc_cli_hsm(int argc, char **argv)
{
    return tc_cli_group("hsm", hsm_usage, hsm_cmds, TC_ARRAY_LEN(hsm_cmds), argc, argv);
}
