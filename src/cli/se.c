/*
 * trustchain se: emulated secure elements.
 *   se new   --state FILE ...   create a card image as a vendor ships it
 *   se show  --state FILE       print what is safe to print (never a key)
 *   se serve ...                put a card on the wire (se_serve.c)
 * The keys given to `se new` are factory test keys (argv is acceptable for
 * them); --key-file keeps them off the command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <trustchain/crypto.h>
#include <trustchain/se.h>

#include "cli.h"

static const char new_usage[] =
    "usage: trustchain se new --state FILE [--force] [--eid HEX] [--isd-aid HEX]\n"
    "         [--kvn N] [--key HEX | --key-enc HEX --key-mac HEX --key-dek HEX |\n"
    "          --key-file FILE] [--i-param HEX] [--kdd HEX] [--seq N]\n"
    "\n"
    "Create a card image: OP_READY, the identity applet installed and selectable,\n"
    "one factory keyset. Defaults: ISD A000000151000000, KVN 0x30 with the GP test\n"
    "keys 404142...4F, i-parameter 70, EID 89049032123451234512345678901235,\n"
    "KDD = the last 10 bytes of the EID, sequence counter 0.\n"
    "  --eid HEX        16 bytes (32 hex digits)\n"
    "  --isd-aid HEX    5 to 16 bytes\n"
    "  --kvn N          key version number 1..127 (decimal or 0x..)\n"
    "  --key HEX        one AES key (16, 24 or 32 bytes) for ENC, MAC and DEK\n"
    "  --key-enc/--key-mac/--key-dek HEX   three keys of one length\n"
    "  --key-file FILE  one hex key, or lines 'enc = HEX', 'mac = HEX', 'dek = HEX'\n"
    "  --i-param HEX    SCP03 i: 01 S16, 10 pseudo-random challenge, 20 R-MAC, 40 R-ENC\n"
    "  --kdd HEX        10 bytes of key diversification data\n"
    "  --seq N          initial sequence counter (0..0xFFFFFF)\n"
    "  --force          replace an existing file\n";

static const char show_usage[] =
    "usage: trustchain se show --state FILE [--json]\n"
    "\n"
    "Print a card image's identifiers, life cycle, keysets (versions, types, lengths\n"
    "and key check values), sequence counter and identity applet state. Never a key.\n";

static int hex_arg(const char *opt, const char *s, uint8_t *out, size_t min, size_t max,
                   size_t *len)
{
    size_t n = 0;
    if (tc_hex_decode(s, strlen(s), 0, out, max, &n) != TC_OK) {
        tc_error_clear();
        return tc_cli_usage_error("%s: expected %zu to %zu bytes of hex", opt, min, max);
    }
    if (n < min)
        return tc_cli_usage_error("%s: expected %zu to %zu bytes of hex, got %zu", opt, min, max,
                                  n);
    *len = n;
    return TC_EXIT_OK;
}

static int key_arg(const char *opt, const char *s, uint8_t *out, size_t *len)
{
    int rc = hex_arg(opt, s, out, 16, TC_SE_MAX_KEY, len);
    if (rc != TC_EXIT_OK)
        return rc;
    if (!tc_aes_key_len_ok(*len))
        return tc_cli_usage_error("%s: an AES key is 16, 24 or 32 bytes, not %zu", opt, *len);
    return TC_EXIT_OK;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* One hex key for all three, or enc/mac/dek lines; '#' comments. */
static int read_key_file(const char *path, uint8_t k[3][TC_SE_MAX_KEY], size_t len[3])
{
    static const char *const names[3] = {"enc", "mac", "dek"};
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return tc_cli_usage_error("--key-file: cannot open '%s'", path);
    char line[256];
    int rc = TC_EXIT_OK;
    int single = 0, named = 0;
    while (rc == TC_EXIT_OK && fgets(line, sizeof line, f) != NULL) {
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            if (single++ || named) {
                rc = tc_cli_usage_error("--key-file: more than one unnamed key");
                break;
            }
            rc = key_arg("--key-file", s, k[0], &len[0]);
            memcpy(k[1], k[0], len[0]);
            memcpy(k[2], k[0], len[0]);
            len[1] = len[2] = len[0];
            continue;
        }
        *eq = '\0';
        char *name = trim(s), *val = trim(eq + 1);
        int idx = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(name, names[i]) == 0)
                idx = i;
        if (idx < 0 || single) {
            rc = tc_cli_usage_error("--key-file: expected 'enc', 'mac' or 'dek' lines");
            break;
        }
        if (named & (1 << idx)) {
            rc = tc_cli_usage_error("--key-file: '%s' is given twice", names[idx]);
            break;
        }
        named |= 1 << idx;
        rc = key_arg("--key-file", val, k[idx], &len[idx]);
    }
    (void)fclose(f);
    tc_memzero(line, sizeof line);
    if (rc == TC_EXIT_OK && !single && named != 7)
        rc = tc_cli_usage_error("--key-file: needs one key, or enc, mac and dek");
    return rc;
}

static void hexs(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if (n == 0 || tc_hex_encode(p, n, out, cap) != TC_OK)
        out[0] = '\0';
}

static int cmd_new(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(new_usage, stdout);
        return TC_EXIT_OK;
    }
    struct tc_se_params p;
    tc_se_params_default(&p);
    const char *state = NULL;
    unsigned flags = 0;
    bool have_key = false, eid_set = false, kdd_set = false;
    uint8_t k[3][TC_SE_MAX_KEY];
    size_t klen[3] = {0, 0, 0};
    int rc = TC_EXIT_OK;
    for (int i = 1; i < argc && rc == TC_EXIT_OK; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--force") == 0) {
            flags |= TC_SE_CREATE_FORCE;
            continue;
        }
        if (i + 1 >= argc) {
            rc = tc_cli_usage_error("%s needs a value (see 'trustchain se new --help')", a);
            break;
        }
        const char *v = argv[++i];
        size_t n = 0;
        uint64_t num = 0;
        if (strcmp(a, "--state") == 0) {
            state = v;
        } else if (strcmp(a, "--eid") == 0) {
            rc = hex_arg(a, v, p.eid, TC_SE_EID_LEN, TC_SE_EID_LEN, &n);
            eid_set = true;
        } else if (strcmp(a, "--isd-aid") == 0) {
            rc = hex_arg(a, v, p.isd_aid, TC_SE_AID_MIN, TC_SE_AID_MAX, &p.isd_aid_len);
        } else if (strcmp(a, "--kvn") == 0) {
            if (tc_parse_uint(v, 0x7F, &num) != TC_OK || num == 0) {
                tc_error_clear();
                rc = tc_cli_usage_error("--kvn: expected 1..127 (decimal or 0x..), got '%s'", v);
            }
            p.kvn = (uint8_t)num;
        } else if (strcmp(a, "--key") == 0 || strcmp(a, "--key-file") == 0) {
            if (have_key || klen[0] || klen[1] || klen[2]) {
                rc = tc_cli_usage_error("give the keys once: --key, --key-file or "
                                        "--key-enc/--key-mac/--key-dek");
                break;
            }
            if (strcmp(a, "--key") == 0) {
                rc = key_arg(a, v, k[0], &klen[0]);
                memcpy(k[1], k[0], klen[0]);
                memcpy(k[2], k[0], klen[0]);
                klen[1] = klen[2] = klen[0];
            } else {
                rc = read_key_file(v, k, klen);
            }
            have_key = true;
        } else if (strcmp(a, "--key-enc") == 0 || strcmp(a, "--key-mac") == 0 ||
                   strcmp(a, "--key-dek") == 0) {
            int idx = a[6] == 'e' ? 0 : a[6] == 'm' ? 1 : 2;
            if (have_key || klen[idx]) {
                rc = tc_cli_usage_error("%s: the key is already given", a);
                break;
            }
            rc = key_arg(a, v, k[idx], &klen[idx]);
        } else if (strcmp(a, "--i-param") == 0) {
            const char *h = strncmp(v, "0x", 2) == 0 || strncmp(v, "0X", 2) == 0 ? v + 2 : v;
            rc = hex_arg(a, h, &p.i_param, 1, 1, &n);
        } else if (strcmp(a, "--kdd") == 0) {
            rc = hex_arg(a, v, p.kdd, TC_SE_KDD_LEN, TC_SE_KDD_LEN, &n);
            kdd_set = true;
        } else if (strcmp(a, "--seq") == 0) {
            if (tc_parse_uint(v, TC_SE_SEQ_MAX, &num) != TC_OK) {
                tc_error_clear();
                rc = tc_cli_usage_error("--seq: expected 0..0xFFFFFF (decimal or 0x..), got '%s'",
                                        v);
            }
            p.seq = (uint32_t)num;
        } else {
            rc = tc_cli_usage_error("se new: unknown option '%s'", a);
        }
    }
    if (rc == TC_EXIT_OK && state == NULL)
        rc = tc_cli_usage_error("se new: --state FILE is required");
    if (rc == TC_EXIT_OK && !have_key && (klen[0] || klen[1] || klen[2])) {
        if (!klen[0] || !klen[1] || !klen[2])
            rc = tc_cli_usage_error("--key-enc, --key-mac and --key-dek go together");
        else if (klen[0] != klen[1] || klen[1] != klen[2])
            rc = tc_cli_usage_error("--key-enc, --key-mac and --key-dek must have one length");
        else
            have_key = true;
    }
    if (rc == TC_EXIT_OK && have_key) {
        if (klen[0] != klen[1] || klen[1] != klen[2]) {
            rc = tc_cli_usage_error("--key-file: the three keys must have one length");
        } else {
            p.key_len = klen[0];
            memcpy(p.key_enc, k[0], klen[0]);
            memcpy(p.key_mac, k[1], klen[1]);
            memcpy(p.key_dek, k[2], klen[2]);
        }
    }
    if (rc == TC_EXIT_OK && eid_set && !kdd_set)
        memcpy(p.kdd, p.eid + TC_SE_EID_LEN - TC_SE_KDD_LEN, TC_SE_KDD_LEN);
    if (rc == TC_EXIT_OK) {
        tc_err e = tc_se_create(state, &p, flags);
        if (e != TC_OK) {
            rc = tc_cli_error(e, "se new");
        } else {
            struct tc_se_info info;
            e = tc_se_describe(state, &info);
            if (e != TC_OK) {
                rc = tc_cli_error(e, "se new");
            } else {
                char eid[2 * TC_SE_EID_LEN + 1], kcv[7];
                hexs(info.eid, TC_SE_EID_LEN, eid, sizeof eid);
                hexs(info.keysets[0].kcv[0], 3, kcv, sizeof kcv);
                (void)printf("created %s: EID %s, KVN %02X AES-%u (KCV ENC %s), OP_READY\n", state,
                             eid, info.keysets[0].kvn, info.keysets[0].key_len * 8u, kcv);
            }
        }
    }
    tc_memzero(k, sizeof k);
    tc_se_params_wipe(&p);
    return rc;
}

static const char *applet_state_name(uint8_t s)
{
    switch (s & 0x7Fu) {
    case TC_SE_APP_INSTALLED:
        return s & TC_SE_APP_LOCKED ? "INSTALLED, LOCKED" : "INSTALLED";
    case TC_SE_APP_SELECTABLE:
        return s & TC_SE_APP_LOCKED ? "SELECTABLE, LOCKED" : "SELECTABLE";
    case TC_SE_APP_PERSONALIZED:
        return s & TC_SE_APP_LOCKED ? "PERSONALIZED, LOCKED" : "PERSONALIZED";
    default:
        return "UNKNOWN";
    }
}

static void show_json(const char *path, const struct tc_se_info *in)
{
    struct tc_json j;
    tc_json_init(&j, stdout);
    tc_json_begin_object(&j);
    tc_json_key(&j, "state_file");
    tc_json_string(&j, path);
    tc_json_key(&j, "eid");
    tc_json_hex(&j, in->eid, TC_SE_EID_LEN);
    tc_json_key(&j, "isd_aid");
    tc_json_hex(&j, in->isd_aid, in->isd_aid_len);
    tc_json_key(&j, "life_cycle");
    tc_json_string(&j, tc_se_life_cycle_name(in->life_cycle));
    tc_json_key(&j, "life_cycle_code");
    tc_json_uint(&j, in->life_cycle);
    tc_json_key(&j, "i_param");
    tc_json_hex(&j, &in->i_param, 1);
    tc_json_key(&j, "kdd");
    tc_json_hex(&j, in->kdd, TC_SE_KDD_LEN);
    tc_json_key(&j, "sequence_counter");
    tc_json_uint(&j, in->seq);
    tc_json_key(&j, "iin");
    tc_json_hex(&j, in->iin, in->iin_len);
    tc_json_key(&j, "cin");
    tc_json_hex(&j, in->cin, in->cin_len);
    tc_json_key(&j, "keysets");
    tc_json_begin_array(&j);
    for (size_t i = 0; i < in->nkeysets; i++) {
        const struct tc_se_keyset_info *k = &in->keysets[i];
        tc_json_begin_object(&j);
        tc_json_key(&j, "kvn");
        tc_json_uint(&j, k->kvn);
        tc_json_key(&j, "type");
        tc_json_string(&j, "AES");
        tc_json_key(&j, "length");
        tc_json_uint(&j, k->key_len);
        tc_json_key(&j, "kcv_enc");
        tc_json_hex(&j, k->kcv[0], 3);
        tc_json_key(&j, "kcv_mac");
        tc_json_hex(&j, k->kcv[1], 3);
        tc_json_key(&j, "kcv_dek");
        tc_json_hex(&j, k->kcv[2], 3);
        tc_json_end_object(&j);
    }
    tc_json_end_array(&j);
    tc_json_key(&j, "profile_bytes");
    tc_json_uint(&j, in->profile_len);
    tc_json_key(&j, "identity_applet");
    if (!in->applet_present) {
        tc_json_null(&j);
    } else {
        tc_json_begin_object(&j);
        tc_json_key(&j, "aid");
        tc_json_hex(&j, in->applet_aid, in->applet_aid_len);
        tc_json_key(&j, "state");
        tc_json_string(&j, applet_state_name(in->applet_state));
        tc_json_key(&j, "public_key");
        if (in->has_key)
            tc_json_hex(&j, in->public_key, TC_SE_EC_PUB_LEN);
        else
            tc_json_null(&j);
        /* A renewal key pair waiting for its certificate (its public key
         * only; docs/identity-applet.md "Renewal"). */
        tc_json_key(&j, "pending_public_key");
        if (in->has_pending)
            tc_json_hex(&j, in->pending_public_key, TC_SE_EC_PUB_LEN);
        else
            tc_json_null(&j);
        tc_json_key(&j, "certificate");
        if (in->has_cert) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "length");
            tc_json_uint(&j, in->cert_len);
            tc_json_key(&j, "sha256");
            tc_json_hex(&j, in->cert_sha256, 32);
            tc_json_key(&j, "serial");
            tc_json_hex(&j, in->cert_serial, in->cert_serial_len);
            tc_json_end_object(&j);
        } else {
            tc_json_null(&j);
        }
        tc_json_end_object(&j);
    }
    tc_json_key(&j, "nvm_generation");
    tc_json_uint(&j, in->nvm_generation);
    tc_json_end_object(&j);
    tc_json_finish(&j);
}

static void show_text(const char *path, const struct tc_se_info *in)
{
    char h[2 * TC_SE_EC_PUB_LEN + 1];
    (void)printf("card image        %s\n", path);
    hexs(in->eid, TC_SE_EID_LEN, h, sizeof h);
    (void)printf("EID               %s\n", h);
    hexs(in->isd_aid, in->isd_aid_len, h, sizeof h);
    (void)printf("ISD AID           %s\n", h);
    (void)printf("life cycle        %s (%02X)\n", tc_se_life_cycle_name(in->life_cycle),
                 in->life_cycle);
    (void)printf("SCP03 i-parameter %02X (%s, %s challenge%s%s)\n", in->i_param,
                 in->i_param & 0x01 ? "S16" : "S8", in->i_param & 0x10 ? "pseudo-random" : "random",
                 in->i_param & 0x20 ? ", R-MAC" : "", in->i_param & 0x40 ? ", R-ENC" : "");
    hexs(in->kdd, TC_SE_KDD_LEN, h, sizeof h);
    (void)printf("KDD               %s\n", h);
    (void)printf("sequence counter  %u\n", (unsigned)in->seq);
    hexs(in->iin, in->iin_len, h, sizeof h);
    (void)printf("IIN               %s\n", h);
    hexs(in->cin, in->cin_len, h, sizeof h);
    (void)printf("CIN               %s\n", h);
    for (size_t i = 0; i < in->nkeysets; i++) {
        const struct tc_se_keyset_info *k = &in->keysets[i];
        char e[7], m[7], d[7];
        hexs(k->kcv[0], 3, e, sizeof e);
        hexs(k->kcv[1], 3, m, sizeof m);
        hexs(k->kcv[2], 3, d, sizeof d);
        (void)printf("keyset            KVN %02X AES-%u KCV ENC %s MAC %s DEK %s\n", k->kvn,
                     k->key_len * 8u, e, m, d);
    }
    if (in->nkeysets == 0)
        (void)printf("keyset            none\n");
    (void)printf("profile data      %zu bytes\n", in->profile_len);
    if (!in->applet_present) {
        (void)printf("identity applet   not installed\n");
    } else {
        hexs(in->applet_aid, in->applet_aid_len, h, sizeof h);
        (void)printf("identity applet   %s %s (%02X)\n", h, applet_state_name(in->applet_state),
                     in->applet_state);
        hexs(in->public_key, TC_SE_EC_PUB_LEN, h, sizeof h);
        (void)printf("public key        %s\n", in->has_key ? h : "none");
        hexs(in->pending_public_key, TC_SE_EC_PUB_LEN, h, sizeof h);
        (void)printf("pending key       %s\n", in->has_pending ? h : "none");
        if (in->has_cert) {
            char sh[65], se[41];
            hexs(in->cert_sha256, 32, sh, sizeof sh);
            hexs(in->cert_serial, in->cert_serial_len, se, sizeof se);
            (void)printf("certificate       %zu bytes, serial %s, SHA-256 %s\n", in->cert_len, se,
                         sh);
        } else {
            (void)printf("certificate       none\n");
        }
    }
    (void)printf("NVM generation    %llu\n", (unsigned long long)in->nvm_generation);
}

static int cmd_show(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(show_usage, stdout);
        return TC_EXIT_OK;
    }
    const char *state = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
            state = argv[++i];
        } else if (strcmp(argv[i], "--state") == 0) {
            return tc_cli_usage_error("--state needs a value");
        } else {
            return tc_cli_usage_error("se show: unknown option '%s'", argv[i]);
        }
    }
    if (state == NULL)
        return tc_cli_usage_error("se show: --state FILE is required");
    struct tc_se_info info;
    tc_err e = tc_se_describe(state, &info);
    if (e != TC_OK)
        return tc_cli_error(e, "se show");
    if (json)
        show_json(state, &info);
    else
        show_text(state, &info);
    return TC_EXIT_OK;
}

static const struct tc_cli_cmd se_cmds[] = {
    {"new", "create a card image as a vendor ships it", cmd_new},
    {"show", "print what is safe to print about a card image", cmd_show},
    {"serve", "put a card image on TCP or into pcscd (vpcd)", tc_cli_se_serve},
};

int tc_cli_se(int argc, char **argv)
{
    return tc_cli_group("se", NULL, se_cmds, TC_ARRAY_LEN(se_cmds), argc, argv);
}
