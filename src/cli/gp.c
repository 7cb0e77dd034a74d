/*
 * trustchain gp: drive a GlobalPlatform card through an SCP03 secure channel
 * (GP Card Specification 2.3, Amendment D) over any link: a PC/SC reader
 * (real cards and the emulator behind vpcd), the TCP card server, or a card
 * image in process. docs/gp-cli.md describes every option and output.
 *
 * Must never: print or trace a static or session key (the trace shows APDUs
 * only, and PUT KEY data is already encrypted under the DEK when traced).
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/codec.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "cli.h"

/* GP Card Specification 2.3 Amendment D test keys (404142...4F), what
 * vendors ship evaluation cards with and GP tools default to. */
static const uint8_t gp_test_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                        0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};

#define GP_MAX_ARGS    4096
#define GP_RESP_MAX    TC_TRANSPORT_MAX_RESPONSE
#define GP_KEYFILE_MAX 4096

/* Where keys come from: one key for all three, or each separately. */
struct gp_keysrc {
    const char *all, *enc, *mac, *dek, *file;
};

struct gp {
    const char *sub;
    const char *pos[GP_MAX_ARGS];
    int npos;
    const char *reader, *tcp, *se_file;
    bool reader_set;
    struct gp_keysrc keys, new_keys;
    uint8_t kvn;
    uint8_t level;
    bool s16, trace, json, extended, level_set;
    uint8_t aid[TC_SCP03_AID_MAX];
    size_t aid_len;
    uint8_t new_kvn;
    bool new_kvn_set;
    uint8_t replace_kvn;
    /* Open state. */
    struct tc_transport t;
    bool t_open;
    struct tc_scp03_mem_provider mem;
    struct tc_scp03_key_provider prov;
    struct tc_scp03_host host;
    bool host_open;
    uint8_t *resp;
};

static const char gp_usage[] =
    "usage: trustchain gp <command> TARGET [options]\n"
    "\n"
    "commands:\n"
    "  info                 ATR, IIN, CIN, card data, CPLC, key information, "
    "life cycle,\n"
    "                       sequence counter\n"
    "  list                 GET STATUS: the ISD, applications, load files (and "
    "modules)\n"
    "  put-keys             PUT KEY: add (or --replace) a keyset; the card's "
    "KCVs are checked\n"
    "  delete-key KVN [ID]  DELETE KEY: a keyset (or one key of it)\n"
    "  set-status card STATE          card life cycle: "
    "initialized|secured|locked|\n"
    "                                 terminated or a number\n"
    "  set-status app AID lock|unlock application lock\n"
    "  apdu HEX...          send plain command APDUs through the secure "
    "channel\n"
    "  readers              list PC/SC readers (no secure channel)\n"
    "\n"
    "TARGET (exactly one):\n"
    "  --reader NAME        PC/SC reader (exact name or a unique part of it; "
    "\"\" = the\n"
    "                       only reader with a card)\n"
    "  --tcp HOST:PORT      a card served by 'trustchain se serve --tcp'\n"
    "  --se FILE            a card image, in process\n"
    "\n"
    "secure channel:\n"
    "  --key HEX            one AES key for ENC, MAC and DEK (16/24/32 bytes; "
    "test keys only:\n"
    "                       argv is visible to other users)\n"
    "  --key-enc/--key-mac/--key-dek HEX   the three keys separately\n"
    "  --key-file FILE      keys from a file: one hex key, or lines 'enc = "
    "HEX' 'mac = HEX'\n"
    "                       'dek = HEX'\n"
    "                       (default: the GlobalPlatform test keys "
    "404142...4F)\n"
    "  --kvn N              key version number for INITIALIZE UPDATE (0 = card "
    "default)\n"
    "  --mode M             clr|mac|enc|rmac|renc (default mac; enc for "
    "put-keys)\n"
    "  --s16                S16 mode (16-byte challenges, cryptograms and "
    "MACs)\n"
    "  --aid HEX            security domain AID to select (default: SELECT "
    "without AID and\n"
    "                       the AID from the FCI)\n"
    "  --extended           extended-length APDUs instead of command chaining\n"
    "  --trace              each APDU before and after wrapping and each "
    "response, on stderr\n"
    "  --json               machine-readable output\n"
    "\n"
    "put-keys: --new-kvn N, --new-key HEX | "
    "--new-key-enc/--new-key-mac/--new-key-dek HEX |\n"
    "          --new-key-file FILE, [--replace KVN]\n"
    "Numbers are decimal or 0x hex.\n";

/* ------------------------------------------------------------------ output
 * helpers */

static char *hex_alloc(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (s == NULL)
        return NULL;
    if (tc_hex_encode(p, n, s, 2 * n + 1) != TC_OK)
        s[0] = '\0';
    return s;
}

static void print_hex_line(FILE *f, const char *label, const uint8_t *p, size_t n)
{
    char *s = hex_alloc(p, n);
    (void)fprintf(f, "%s%s\n", label, s != NULL ? s : "?");
    free(s);
}

static void trace_cb(void *ctx, enum tc_scp03_trace_kind kind, const uint8_t *p, size_t len)
{
    (void)ctx;
    const char *label = "?";
    switch (kind) {
    case TC_SCP03_TRACE_CMD_PLAIN:
        label = "> plain   ";
        break;
    case TC_SCP03_TRACE_CMD_WRAPPED:
        label = "> wrapped ";
        break;
    case TC_SCP03_TRACE_RESP_RAW:
        label = "< raw     ";
        break;
    case TC_SCP03_TRACE_RESP_PLAIN:
        label = "< plain   ";
        break;
    default:
        break;
    }
    print_hex_line(stderr, label, p, len);
}

static int card_error(const char *what, uint16_t sw)
{
    char d[128];
    tc_sw_describe(sw, d, sizeof d);
    (void)fprintf(stderr, "trustchain: %s: the card answered %s\n", what, d);
    return TC_EXIT_FAIL;
}

/* ------------------------------------------------------------------ option
 * parsing */

static int parse_u8(const char *opt, const char *v, uint8_t *out)
{
    uint64_t x = 0;
    if (tc_parse_uint(v, 0xFF, &x) != TC_OK)
        return tc_cli_usage_error("%s: '%s' is not a number 0..255 (decimal or 0x hex)", opt, v);
    *out = (uint8_t)x;
    return TC_EXIT_OK;
}

static int parse_hex(const char *opt, const char *v, uint8_t *out, size_t cap, size_t *len)
{
    if (tc_hex_decode(v, strlen(v), 0, out, cap, len) != TC_OK)
        return tc_cli_usage_error("%s: not valid hex of at most %zu bytes", opt, cap);
    return TC_EXIT_OK;
}

static int parse_args(struct gp *g, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0' || strcmp(a, "--") == 0) {
            if (strcmp(a, "--") == 0) {
                for (i++; i < argc; i++) {
                    if (g->npos >= GP_MAX_ARGS)
                        return tc_cli_usage_error("too many arguments");
                    g->pos[g->npos++] = argv[i];
                }
                break;
            }
            if (g->npos >= GP_MAX_ARGS)
                return tc_cli_usage_error("too many arguments");
            g->pos[g->npos++] = a;
            continue;
        }
        /* Flags without a value. */
        if (strcmp(a, "--s16") == 0) {
            g->s16 = true;
            continue;
        }
        if (strcmp(a, "--trace") == 0) {
            g->trace = true;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            g->json = true;
            continue;
        }
        if (strcmp(a, "--extended") == 0) {
            g->extended = true;
            continue;
        }
        if (i + 1 >= argc)
            return tc_cli_usage_error("%s needs a value (see 'trustchain gp --help')", a);
        const char *v = argv[++i];
        int rc = TC_EXIT_OK;
        if (strcmp(a, "--reader") == 0) {
            g->reader = v;
            g->reader_set = true;
        } else if (strcmp(a, "--tcp") == 0) {
            g->tcp = v;
        } else if (strcmp(a, "--se") == 0) {
            g->se_file = v;
        } else if (strcmp(a, "--key") == 0) {
            g->keys.all = v;
        } else if (strcmp(a, "--key-enc") == 0) {
            g->keys.enc = v;
        } else if (strcmp(a, "--key-mac") == 0) {
            g->keys.mac = v;
        } else if (strcmp(a, "--key-dek") == 0) {
            g->keys.dek = v;
        } else if (strcmp(a, "--key-file") == 0) {
            g->keys.file = v;
        } else if (strcmp(a, "--new-key") == 0) {
            g->new_keys.all = v;
        } else if (strcmp(a, "--new-key-enc") == 0) {
            g->new_keys.enc = v;
        } else if (strcmp(a, "--new-key-mac") == 0) {
            g->new_keys.mac = v;
        } else if (strcmp(a, "--new-key-dek") == 0) {
            g->new_keys.dek = v;
        } else if (strcmp(a, "--new-key-file") == 0) {
            g->new_keys.file = v;
        } else if (strcmp(a, "--kvn") == 0) {
            rc = parse_u8(a, v, &g->kvn);
        } else if (strcmp(a, "--new-kvn") == 0) {
            rc = parse_u8(a, v, &g->new_kvn);
            g->new_kvn_set = true;
        } else if (strcmp(a, "--replace") == 0) {
            rc = parse_u8(a, v, &g->replace_kvn);
        } else if (strcmp(a, "--mode") == 0) {
            if (tc_scp03_level_parse(v, &g->level) != TC_OK)
                return tc_cli_usage_error("--mode: '%s' is not one of clr|mac|enc|rmac|renc", v);
            g->level_set = true;
        } else if (strcmp(a, "--aid") == 0) {
            rc = parse_hex(a, v, g->aid, sizeof g->aid, &g->aid_len);
            if (rc == TC_EXIT_OK && g->aid_len < TC_SCP03_AID_MIN)
                return tc_cli_usage_error("--aid: an AID has 5 to 16 bytes");
        } else {
            return tc_cli_usage_error("unknown option '%s' (see 'trustchain gp --help')", a);
        }
        if (rc != TC_EXIT_OK)
            return rc;
    }
    if (!g->level_set)
        g->level = strcmp(g->npos > 0 ? g->pos[0] : "", "put-keys") == 0 ? TC_SCP03_LEVEL_ENC
                                                                         : TC_SCP03_LEVEL_MAC;
    if (g->npos == 0)
        return tc_cli_usage_error("no gp command given (see 'trustchain gp --help')");
    g->sub = g->pos[0];
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------------ keys */

/* One hex key of 16, 24 or 32 bytes. */
static int decode_key(const char *what, const char *hex, size_t hex_len, uint8_t *out, size_t *len)
{
    if (tc_hex_decode(hex, hex_len, 0, out, TC_SCP03_KEY_MAX, len) != TC_OK ||
        (*len != 16 && *len != 24 && *len != 32)) {
        tc_memzero(out, TC_SCP03_KEY_MAX);
        return tc_cli_usage_error("%s: an AES key is 16, 24 or 32 bytes of hex", what);
    }
    return TC_EXIT_OK;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

/* Key file: one hex key (for all three), or lines "enc = HEX", "mac = HEX",
 * "dek = HEX"; '#' starts a comment. */
static int read_key_file(const char *path, uint8_t k[3][TC_SCP03_KEY_MAX], size_t len[3])
{
    int ret = TC_EXIT_USAGE;
    char *buf = calloc(1, GP_KEYFILE_MAX + 1);
    if (buf == NULL)
        return tc_cli_usage_error("out of memory");
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        free(buf);
        return tc_cli_usage_error("--key-file: cannot open '%s'", path);
    }
    size_t n = fread(buf, 1, GP_KEYFILE_MAX + 1, f);
    (void)fclose(f);
    if (n > GP_KEYFILE_MAX) {
        ret = tc_cli_usage_error("--key-file: '%s' is larger than %u bytes", path, GP_KEYFILE_MAX);
        goto out;
    }
    bool have[3] = {false, false, false};
    bool single = false;
    const char *p = buf, *end = buf + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        const char *s = skip_ws(p, eol);
        const char *e = s;
        while (e < eol && *e != '#')
            e++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        p = eol + (eol < end ? 1 : 0);
        if (s == e)
            continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        int idx = -1;
        if (eq != NULL) {
            const char *ne = eq;
            while (ne > s && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
            size_t nl = (size_t)(ne - s);
            if (nl == 3 && strncmp(s, "enc", 3) == 0)
                idx = 0;
            else if (nl == 3 && strncmp(s, "mac", 3) == 0)
                idx = 1;
            else if (nl == 3 && strncmp(s, "dek", 3) == 0)
                idx = 2;
            if (idx < 0) {
                ret = tc_cli_usage_error("--key-file: unknown name (want enc, mac or dek)");
                goto out;
            }
            s = skip_ws(eq + 1, e);
        }
        if (single || (idx < 0 && (have[0] || have[1] || have[2])) || (idx >= 0 && have[idx])) {
            ret = tc_cli_usage_error("--key-file: a key is given twice");
            goto out;
        }
        if (idx < 0) {
            if (decode_key("--key-file", s, (size_t)(e - s), k[0], &len[0]) != TC_EXIT_OK)
                goto out;
            memcpy(k[1], k[0], TC_SCP03_KEY_MAX);
            memcpy(k[2], k[0], TC_SCP03_KEY_MAX);
            len[1] = len[2] = len[0];
            have[0] = have[1] = have[2] = single = true;
        } else {
            if (decode_key("--key-file", s, (size_t)(e - s), k[idx], &len[idx]) != TC_EXIT_OK)
                goto out;
            have[idx] = true;
        }
    }
    if (!have[0] || !have[1] || !have[2]) {
        ret = tc_cli_usage_error("--key-file: needs one key, or all of enc, mac and dek");
        goto out;
    }
    ret = TC_EXIT_OK;
out:
    tc_memzero(buf, GP_KEYFILE_MAX + 1);
    free(buf);
    return ret;
}

/* Build a keyset from one source; `prefix` names the options in messages. */
static int load_keys(const struct gp_keysrc *src, const char *prefix, uint8_t kvn, bool use_default,
                     struct tc_scp03_keyset *ks)
{
    uint8_t k[3][TC_SCP03_KEY_MAX];
    size_t len[3] = {0, 0, 0};
    int rc = TC_EXIT_USAGE;
    bool parts = src->enc != NULL || src->mac != NULL || src->dek != NULL;
    int nsrc = (src->all != NULL) + (parts ? 1 : 0) + (src->file != NULL);
    memset(k, 0, sizeof k);
    if (nsrc > 1) {
        rc = tc_cli_usage_error("give keys one way: --%skey, --%skey-enc/mac/dek or --%skey-file",
                                prefix, prefix, prefix);
        goto out;
    }
    if (src->all != NULL) {
        char what[32];
        (void)snprintf(what, sizeof what, "--%skey", prefix);
        if ((rc = decode_key(what, src->all, strlen(src->all), k[0], &len[0])) != TC_EXIT_OK)
            goto out;
        memcpy(k[1], k[0], sizeof k[0]);
        memcpy(k[2], k[0], sizeof k[0]);
        len[1] = len[2] = len[0];
    } else if (parts) {
        const char *v[3] = {src->enc, src->mac, src->dek};
        const char *names[3] = {"enc", "mac", "dek"};
        for (int i = 0; i < 3; i++) {
            char what[32];
            (void)snprintf(what, sizeof what, "--%skey-%s", prefix, names[i]);
            if (v[i] == NULL) {
                rc = tc_cli_usage_error("%s is missing (give all three keys)", what);
                goto out;
            }
            if ((rc = decode_key(what, v[i], strlen(v[i]), k[i], &len[i])) != TC_EXIT_OK)
                goto out;
        }
    } else if (src->file != NULL) {
        if ((rc = read_key_file(src->file, k, len)) != TC_EXIT_OK)
            goto out;
    } else if (use_default) {
        for (int i = 0; i < 3; i++) {
            memcpy(k[i], gp_test_key, sizeof gp_test_key);
            len[i] = sizeof gp_test_key;
        }
    } else {
        rc = tc_cli_usage_error("no new keys: give --%skey, --%skey-enc/mac/dek or --%skey-file",
                                prefix, prefix, prefix);
        goto out;
    }
    if (len[0] != len[1] || len[0] != len[2]) {
        rc = tc_cli_usage_error("the three keys of a keyset must have the same length");
        goto out;
    }
    if (tc_scp03_keyset_set(ks, kvn, k[0], k[1], k[2], len[0]) != TC_OK) {
        rc = tc_cli_error(TC_ERR_ARG, "keyset");
        goto out;
    }
    rc = TC_EXIT_OK;
out:
    tc_memzero(k, sizeof k);
    return rc;
}

/* ------------------------------------------------------------------ link and
 * channel */

static int open_link(struct gp *g)
{
    int n = (g->reader_set ? 1 : 0) + (g->tcp != NULL) + (g->se_file != NULL);
    if (n != 1)
        return tc_cli_usage_error("give exactly one target: --reader NAME, --tcp HOST:PORT or "
                                  "--se FILE");
    tc_err rc;
    if (g->se_file != NULL)
        rc = tc_se_transport_open(g->se_file, 0, &g->t);
    else if (g->tcp != NULL)
        rc = tc_transport_tcp_open(&g->t, g->tcp, 0);
    else
        rc = tc_transport_pcsc_open(&g->t, g->reader[0] != '\0' ? g->reader : NULL);
    if (rc != TC_OK)
        return tc_cli_error(rc, "connecting to the card");
    g->t_open = true;
    return TC_EXIT_OK;
}

/* A plain exchange outside the secure channel (SELECT before it opens). */
static tc_err raw_exchange(struct gp *g, const uint8_t *cmd, size_t len, size_t off, size_t *rlen)
{
    if (g->trace)
        print_hex_line(stderr, "> plain   ", cmd, len);
    TC_GUARD(g->t.transmit(g->t.ctx, cmd, len, g->resp + off, GP_RESP_MAX - off, rlen));
    if (g->trace)
        print_hex_line(stderr, "< raw     ", g->resp + off, *rlen);
    return TC_OK;
}

/* GP CS 2.3 §11.9 SELECT with no AID selects the ISD; its FCI (6F) names it
 * in tag 84. Outside the secure channel the exchange is plain, so a T=0
 * card's 6Cxx (resend with Le = xx) and 61xx (GET RESPONSE for xx more
 * bytes, ISO/IEC 7816-4 §5.3.4 / §7.6.1) are followed here. */
static int find_isd(struct gp *g)
{
    uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    size_t rlen = 0;
    tc_err rc = raw_exchange(g, sel, sizeof sel, 0, &rlen);
    if (rc == TC_OK && g->resp[rlen - 2] == 0x6C) {
        sel[4] = g->resp[rlen - 1];
        rc = raw_exchange(g, sel, sizeof sel, 0, &rlen);
    }
    size_t data = rlen - 2; /* FCI bytes so far; the last SW follows them */
    for (unsigned round = 0; rc == TC_OK && g->resp[data] == 0x61; round++) {
        if (round >= 32 || GP_RESP_MAX - data < 258u) {
            (void)fprintf(stderr, "trustchain: SELECT: endless 61xx response chain\n");
            return TC_EXIT_FAIL;
        }
        const uint8_t get[] = {0x00, 0xC0, 0x00, 0x00, g->resp[data + 1]};
        rc = raw_exchange(g, get, sizeof get, data, &rlen);
        if (rc == TC_OK)
            data += rlen - 2;
    }
    if (rc != TC_OK)
        return tc_cli_error(rc, "SELECT");
    rlen = data + 2;
    uint16_t sw = (uint16_t)(g->resp[rlen - 2] << 8 | g->resp[rlen - 1]);
    /* GP CS 2.3 §11.9.3: 6283 = the card is CARD_LOCKED; the ISD is still
     * selected and answers its FCI. */
    if (sw == 0x6283)
        (void)fprintf(stderr, "trustchain: note: the card is CARD_LOCKED (SELECT answered 6283)\n");
    else if (sw != 0x9000)
        return card_error("SELECT of the security domain (give --aid)", sw);
    static const uint32_t path[] = {0x6F, 0x84};
    struct tc_tlv t;
    if (tc_tlv_find_path(g->resp, rlen - 2, path, 2, &t) != TC_OK || t.len < TC_SCP03_AID_MIN ||
        t.len > TC_SCP03_AID_MAX) {
        (void)fprintf(stderr, "trustchain: SELECT: the FCI names no security domain AID "
                              "(give --aid)\n");
        return TC_EXIT_FAIL;
    }
    memcpy(g->aid, t.value, t.len);
    g->aid_len = t.len;
    return TC_EXIT_OK;
}

static int open_channel(struct gp *g)
{
    int rc;
    struct tc_scp03_keyset ks;
    memset(&ks, 0, sizeof ks);
    if ((rc = load_keys(&g->keys, "", g->kvn, true, &ks)) != TC_EXIT_OK)
        return rc;
    /* KVN 0 in the provider answers for whatever KVN the card reports. */
    tc_scp03_mem_provider_init(&g->mem, &g->prov);
    tc_err e = tc_scp03_mem_provider_add(&g->mem, &ks);
    tc_scp03_keyset_wipe(&ks);
    if (e != TC_OK)
        return tc_cli_error(e, "keys");
    bool select = g->aid_len > 0;
    if (!select && (rc = find_isd(g)) != TC_EXIT_OK)
        return rc;
    struct tc_scp03_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kvn = g->kvn;
    cfg.level = g->level;
    cfg.s16 = g->s16;
    cfg.aid = g->aid;
    cfg.aid_len = g->aid_len;
    cfg.select = select;
    cfg.extended = g->extended;
    cfg.trace = g->trace ? trace_cb : NULL;
    e = tc_scp03_host_open(&g->host, &g->t, &g->prov, &cfg);
    if (e != TC_OK)
        return tc_cli_error(e, "opening the secure channel");
    g->host_open = true;
    return TC_EXIT_OK;
}

static void gp_close(struct gp *g)
{
    if (g->host_open)
        tc_scp03_host_close(&g->host);
    g->host_open = false;
    if (g->t_open)
        tc_transport_close(&g->t);
    g->t_open = false;
    tc_scp03_mem_provider_wipe(&g->mem);
    if (g->resp != NULL) {
        tc_memzero(g->resp, GP_RESP_MAX);
        free(g->resp);
    }
    g->resp = NULL;
}

/* One command through the channel; *sw is the card's status word. */
static tc_err send_cmd(struct gp *g, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                       const uint8_t *data, size_t lc, bool has_le, size_t *rlen, uint16_t *sw)
{
    struct tc_apdu a;
    memset(&a, 0, sizeof a);
    a.cla = cla;
    a.ins = ins;
    a.p1 = p1;
    a.p2 = p2;
    a.data = lc > 0 ? data : NULL;
    a.lc = lc;
    a.has_le = has_le;
    a.le = has_le ? 256u : 0u;
    return tc_scp03_host_transmit(&g->host, &a, g->resp, GP_RESP_MAX, rlen, sw);
}

/* ------------------------------------------------------------------ names */

static const char *card_lc_name(uint8_t lc)
{
    return tc_se_life_cycle_name(lc);
}

/* GP CS 2.3 §11.1.1 Table 11-4 (executable load files) and §11.1.1 Table
 * 11-7 (applications). */
static const char *app_state_name(int kind, uint8_t st)
{
    if (kind == 0x20 || kind == 0x10)
        return st == 0x01 ? "LOADED" : "UNKNOWN";
    if ((st & 0x80u) != 0)
        return "LOCKED";
    switch (st) {
    case 0x03:
        return "INSTALLED";
    case 0x07:
        return "SELECTABLE";
    default:
        return (st & 0x07u) == 0x07u ? "SELECTABLE (application specific)" : "UNKNOWN";
    }
}

/* ------------------------------------------------------------------ info */

struct cplc_field {
    const char *name;
    uint8_t len;
};

/* GP CS 2.3 §H.6 / Visa GlobalPlatform: CPLC data, 42 bytes. */
static const struct cplc_field cplc_fields[] = {
    {"ic_fabricator", 2},
    {"ic_type", 2},
    {"os_id", 2},
    {"os_release_date", 2},
    {"os_release_level", 2},
    {"ic_fabrication_date", 2},
    {"ic_serial_number", 4},
    {"ic_batch_identifier", 2},
    {"ic_module_fabricator", 2},
    {"ic_module_packaging_date", 2},
    {"icc_manufacturer", 2},
    {"ic_embedding_date", 2},
    {"ic_pre_personalizer", 2},
    {"ic_pre_perso_equipment_date", 2},
    {"ic_pre_perso_equipment_id", 4},
    {"ic_personalizer", 2},
    {"ic_personalization_date", 2},
    {"ic_perso_equipment_id", 4},
};

/* GET DATA for `tag`; on 9000 returns the value of the TLV with that tag. */
static tc_err get_data(struct gp *g, uint16_t tag, const uint8_t **val, size_t *vlen, uint16_t *sw)
{
    size_t rlen = 0;
    *val = NULL;
    *vlen = 0;
    TC_GUARD(send_cmd(g, 0x80, 0xCA, (uint8_t)(tag >> 8), (uint8_t)tag, NULL, 0, true, &rlen, sw));
    if (*sw != 0x9000)
        return TC_OK;
    struct tc_tlv t;
    if (tc_tlv_find(g->resp, rlen, tag, &t) != TC_OK) {
        /* Some cards answer the bare value. */
        tc_error_clear();
        *val = g->resp;
        *vlen = rlen;
        return TC_OK;
    }
    *val = t.value;
    *vlen = t.len;
    return TC_OK;
}

struct info_item {
    const char *key;
    const char *label;
    uint16_t tag;
};

static const struct info_item info_items[] = {
    {"iin", "IIN", 0x0042},
    {"cin", "CIN", 0x0045},
    {"eid", "EID", 0x005A},
    {"card_data", "Card data", 0x0066},
};

static int cmd_info(struct gp *g)
{
    if (g->npos != 1)
        return tc_cli_usage_error("info takes no arguments");
    int rc = open_link(g);
    if (rc != TC_EXIT_OK)
        return rc;
    uint8_t atr[TC_TRANSPORT_MAX_ATR];
    size_t atr_len = 0;
    if (g->t.reset != NULL) {
        tc_err e = g->t.reset(g->t.ctx, atr, sizeof atr, &atr_len);
        if (e != TC_OK)
            return tc_cli_error(e, "reset");
    }
    if ((rc = open_channel(g)) != TC_EXIT_OK)
        return rc;

    struct tc_json j;
    tc_json_init(&j, stdout);
    if (g->json) {
        tc_json_begin_object(&j);
        tc_json_key(&j, "reader");
        tc_json_string(&j, g->t.name != NULL ? g->t.name : "");
        tc_json_key(&j, "atr");
        tc_json_hex(&j, atr, atr_len);
        tc_json_key(&j, "isd_aid");
        tc_json_hex(&j, g->aid, g->aid_len);
        tc_json_key(&j, "security_level");
        tc_json_string(&j, tc_scp03_level_name(g->level));
    } else {
        (void)printf("Card: %s\n", g->t.name != NULL ? g->t.name : "");
        print_hex_line(stdout, "ATR: ", atr, atr_len);
        print_hex_line(stdout, "ISD: ", g->aid, g->aid_len);
        (void)printf("Secure channel: SCP03 %s, %s\n", g->s16 ? "S16" : "S8",
                     tc_scp03_level_name(g->level));
    }
    const uint8_t *v;
    size_t vl;
    uint16_t sw;
    tc_err e;
    for (size_t i = 0; i < TC_ARRAY_LEN(info_items); i++) {
        if ((e = get_data(g, info_items[i].tag, &v, &vl, &sw)) != TC_OK)
            return tc_cli_error(e, "GET DATA");
        if (g->json) {
            tc_json_key(&j, info_items[i].key);
            if (sw == 0x9000)
                tc_json_hex(&j, v, vl);
            else
                tc_json_null(&j);
        } else if (sw == 0x9000) {
            char label[40];
            (void)snprintf(label, sizeof label, "%s: ", info_items[i].label);
            print_hex_line(stdout, label, v, vl);
        } else {
            (void)printf("%s: not available (%04X)\n", info_items[i].label, sw);
        }
    }

    /* CPLC (GET DATA 9F7F). */
    if ((e = get_data(g, 0x9F7F, &v, &vl, &sw)) != TC_OK)
        return tc_cli_error(e, "GET DATA CPLC");
    bool cplc_ok = sw == 0x9000 && vl == 42;
    if (g->json) {
        tc_json_key(&j, "cplc");
        if (!cplc_ok) {
            tc_json_null(&j);
        } else {
            tc_json_begin_object(&j);
            size_t off = 0;
            for (size_t i = 0; i < TC_ARRAY_LEN(cplc_fields); i++) {
                tc_json_key(&j, cplc_fields[i].name);
                tc_json_hex(&j, v + off, cplc_fields[i].len);
                off += cplc_fields[i].len;
            }
            tc_json_end_object(&j);
        }
    } else if (cplc_ok) {
        (void)printf("CPLC:\n");
        size_t off = 0;
        for (size_t i = 0; i < TC_ARRAY_LEN(cplc_fields); i++) {
            char label[48];
            (void)snprintf(label, sizeof label, "  %-28s ", cplc_fields[i].name);
            print_hex_line(stdout, label, v + off, cplc_fields[i].len);
            off += cplc_fields[i].len;
        }
    } else {
        (void)printf("CPLC: not available (%04X)\n", sw);
    }

    /* Key information template (GET DATA 00E0): C0 entries of key id, KVN,
     * then type/length pairs (GP CS 2.3 §11.3.3.1). */
    if ((e = get_data(g, 0x00E0, &v, &vl, &sw)) != TC_OK)
        return tc_cli_error(e, "GET DATA key information");
    if (g->json) {
        tc_json_key(&j, "keys");
        tc_json_begin_array(&j);
    } else {
        (void)printf("Keys:%s\n", sw == 0x9000 ? "" : " not available");
    }
    if (sw == 0x9000) {
        struct tc_cursor c;
        tc_cursor_init(&c, v, vl);
        struct tc_tlv t;
        while (tc_cursor_remaining(&c) > 0 && tc_tlv_next(&c, &t) == TC_OK) {
            if (t.tag != 0xC0 || t.len < 4)
                continue;
            if (g->json) {
                tc_json_begin_object(&j);
                tc_json_key(&j, "kvn");
                tc_json_uint(&j, t.value[1]);
                tc_json_key(&j, "id");
                tc_json_uint(&j, t.value[0]);
                tc_json_key(&j, "type");
                tc_json_uint(&j, t.value[2]);
                tc_json_key(&j, "length");
                tc_json_uint(&j, t.value[3]);
                tc_json_end_object(&j);
            } else {
                (void)printf("  KVN %02X id %02X type %02X%s length %u\n", t.value[1], t.value[0],
                             t.value[2], t.value[2] == 0x88 ? " (AES)" : "", (unsigned)t.value[3]);
            }
        }
        tc_error_clear();
    }
    if (g->json)
        tc_json_end_array(&j);

    /* Card life cycle: GET STATUS of the ISD (P1 80, TLV format). */
    static const uint8_t all[] = {0x4F, 0x00};
    size_t rlen = 0;
    if ((e = send_cmd(g, 0x80, 0xF2, 0x80, 0x02, all, sizeof all, true, &rlen, &sw)) != TC_OK)
        return tc_cli_error(e, "GET STATUS");
    struct tc_tlv lc;
    static const uint32_t lc_path[] = {0xE3, 0x9F70};
    bool have_lc =
        sw == 0x9000 && tc_tlv_find_path(g->resp, rlen, lc_path, 2, &lc) == TC_OK && lc.len == 1;
    tc_error_clear();
    if (g->json) {
        tc_json_key(&j, "life_cycle");
        if (have_lc) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "value");
            tc_json_uint(&j, lc.value[0]);
            tc_json_key(&j, "name");
            tc_json_string(&j, card_lc_name(lc.value[0]));
            tc_json_end_object(&j);
        } else {
            tc_json_null(&j);
        }
    } else if (have_lc) {
        (void)printf("Life cycle: %s (%02X)\n", card_lc_name(lc.value[0]), lc.value[0]);
    } else {
        (void)printf("Life cycle: not available (%04X)\n", sw);
    }

    /* Sequence counter (GET DATA 00C1). */
    if ((e = get_data(g, 0x00C1, &v, &vl, &sw)) != TC_OK)
        return tc_cli_error(e, "GET DATA sequence counter");
    uint32_t seq = 0;
    for (size_t i = 0; i < vl && i < 4; i++)
        seq = seq << 8 | v[i];
    bool have_seq = sw == 0x9000 && vl >= 1 && vl <= 3;
    if (g->json) {
        tc_json_key(&j, "sequence_counter");
        if (have_seq)
            tc_json_uint(&j, seq);
        else
            tc_json_null(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else if (have_seq) {
        (void)printf("Sequence counter: %u\n", (unsigned)seq);
    } else {
        (void)printf("Sequence counter: not available (%04X)\n", sw);
    }
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------------ list */

struct status_kind {
    uint8_t p1;
    const char *key;
    const char *label;
};

/* GP CS 2.3 §11.4.2.1: GET STATUS P1 subsets. */
static const struct status_kind status_kinds[] = {
    {0x80, "isd", "ISD"},
    {0x40, "applications", "APP"},
    {0x20, "load_files", "PKG"},
    {0x10, "load_files_modules", "PKG+MOD"},
};

static int list_entries(struct gp *g, const struct status_kind *k, struct tc_json *j)
{
    static const uint8_t all[] = {0x4F, 0x00};
    if (g->json) {
        tc_json_key(j, k->key);
        tc_json_begin_array(j);
    }
    /* GP CS 2.3 §11.4.2: P2 02 = TLV format, first occurrence; 03 = next
     * occurrence while the card answers 6310 (more data). */
    uint8_t p2 = 0x02;
    for (int round = 0; round < 64; round++) {
        size_t rlen = 0;
        uint16_t sw = 0;
        tc_err e = send_cmd(g, 0x80, 0xF2, k->p1, p2, all, sizeof all, true, &rlen, &sw);
        if (e != TC_OK)
            return tc_cli_error(e, "GET STATUS");
        if (sw == 0x6A88)
            break; /* nothing of this kind */
        if (sw != 0x9000 && sw != 0x6310)
            return card_error("GET STATUS", sw);
        struct tc_cursor c;
        tc_cursor_init(&c, g->resp, rlen);
        struct tc_tlv e3;
        while (tc_cursor_remaining(&c) > 0) {
            if (tc_tlv_next(&c, &e3) != TC_OK || e3.tag != 0xE3) {
                (void)fprintf(stderr, "trustchain: GET STATUS: malformed response\n");
                return TC_EXIT_FAIL;
            }
            struct tc_tlv aid, st, priv;
            bool has_aid = tc_tlv_find(e3.value, e3.len, 0x4F, &aid) == TC_OK;
            bool has_st = tc_tlv_find(e3.value, e3.len, 0x9F70, &st) == TC_OK && st.len >= 1;
            bool has_priv = tc_tlv_find(e3.value, e3.len, 0xC5, &priv) == TC_OK;
            tc_error_clear();
            if (!has_aid) {
                (void)fprintf(stderr, "trustchain: GET STATUS: an entry without AID\n");
                return TC_EXIT_FAIL;
            }
            uint8_t state = has_st ? st.value[0] : 0;
            const char *sname = k->p1 == 0x80 ? card_lc_name(state) : app_state_name(k->p1, state);
            if (g->json) {
                tc_json_begin_object(j);
                tc_json_key(j, "aid");
                tc_json_hex(j, aid.value, aid.len);
                tc_json_key(j, "state");
                tc_json_uint(j, state);
                tc_json_key(j, "state_name");
                tc_json_string(j, sname);
                if (has_priv) {
                    tc_json_key(j, "privileges");
                    tc_json_hex(j, priv.value, priv.len);
                }
                tc_json_end_object(j);
            } else {
                char *h = hex_alloc(aid.value, aid.len);
                (void)printf("%-8s %s (%s)", k->label, h != NULL ? h : "?", sname);
                free(h);
                if (has_priv) {
                    char *ph = hex_alloc(priv.value, priv.len);
                    (void)printf(" privileges %s", ph != NULL ? ph : "?");
                    free(ph);
                }
                (void)printf("\n");
            }
            /* Modules of a load file (tag 84, P1 10). */
            struct tc_cursor ec;
            tc_cursor_init(&ec, e3.value, e3.len);
            struct tc_tlv m;
            while (!g->json && tc_cursor_remaining(&ec) > 0 && tc_tlv_next(&ec, &m) == TC_OK) {
                if (m.tag == 0x84)
                    print_hex_line(stdout, "         module ", m.value, m.len);
            }
            tc_error_clear();
        }
        if (sw == 0x9000)
            break;
        p2 = 0x03;
    }
    if (g->json)
        tc_json_end_array(j);
    return TC_EXIT_OK;
}

static int cmd_list(struct gp *g)
{
    if (g->npos != 1)
        return tc_cli_usage_error("list takes no arguments");
    int rc;
    if ((rc = open_link(g)) != TC_EXIT_OK || (rc = open_channel(g)) != TC_EXIT_OK)
        return rc;
    struct tc_json j;
    tc_json_init(&j, stdout);
    if (g->json)
        tc_json_begin_object(&j);
    for (size_t i = 0; i < TC_ARRAY_LEN(status_kinds); i++)
        if ((rc = list_entries(g, &status_kinds[i], &j)) != TC_EXIT_OK)
            return rc;
    if (g->json) {
        tc_json_end_object(&j);
        tc_json_finish(&j);
    }
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------------ put-keys
 */

static int cmd_put_keys(struct gp *g)
{
    if (g->npos != 1)
        return tc_cli_usage_error("put-keys takes no arguments (see --new-kvn, --new-key)");
    if (!g->new_kvn_set || g->new_kvn == 0 || g->new_kvn > 0x7F)
        return tc_cli_usage_error("put-keys needs --new-kvn 1..127");
    /* The new keys sit in a provider of their own: the session's provider
     * wraps them under its DEK. */
    struct tc_scp03_mem_provider nm;
    struct tc_scp03_key_provider np;
    struct tc_scp03_keyset ks;
    memset(&ks, 0, sizeof ks);
    tc_scp03_mem_provider_init(&nm, &np);
    int rc = load_keys(&g->new_keys, "new-", g->new_kvn, false, &ks);
    if (rc != TC_EXIT_OK)
        return rc;
    tc_err e = tc_scp03_mem_provider_add(&nm, &ks);
    tc_scp03_keyset_wipe(&ks);
    if (e != TC_OK) {
        tc_scp03_mem_provider_wipe(&nm);
        return tc_cli_error(e, "new keys");
    }
    if ((rc = open_link(g)) != TC_EXIT_OK || (rc = open_channel(g)) != TC_EXIT_OK)
        goto out;
    e = tc_scp03_host_put_keys(&g->host, &np, g->new_kvn, g->replace_kvn);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "PUT KEY");
        goto out;
    }
    uint8_t kcv[3][TC_KCV_LEN];
    for (int i = 0; i < 3; i++) {
        e = np.kcv(np.ctx, g->new_kvn, (enum tc_scp03_key_id)(i + 1), kcv[i]);
        if (e != TC_OK) {
            rc = tc_cli_error(e, "KCV");
            goto out;
        }
    }
    static const char *names[3] = {"enc", "mac", "dek"};
    if (g->json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "kvn");
        tc_json_uint(&j, g->new_kvn);
        tc_json_key(&j, "replaced");
        if (g->replace_kvn != 0)
            tc_json_uint(&j, g->replace_kvn);
        else
            tc_json_null(&j);
        tc_json_key(&j, "kcv");
        tc_json_begin_object(&j);
        for (int i = 0; i < 3; i++) {
            tc_json_key(&j, names[i]);
            tc_json_hex(&j, kcv[i], TC_KCV_LEN);
        }
        tc_json_end_object(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        if (g->replace_kvn != 0)
            (void)printf("Keyset %02X replaced by keyset %02X; the card's KCVs match:\n",
                         g->replace_kvn, g->new_kvn);
        else
            (void)printf("Keyset %02X added; the card's KCVs match:\n", g->new_kvn);
        for (int i = 0; i < 3; i++) {
            char label[16];
            (void)snprintf(label, sizeof label, "  %s ", names[i]);
            print_hex_line(stdout, label, kcv[i], TC_KCV_LEN);
        }
    }
    rc = TC_EXIT_OK;
out:
    tc_scp03_mem_provider_wipe(&nm);
    return rc;
}

/* ------------------------------------------------------------------ delete-key
 */

static int cmd_delete_key(struct gp *g)
{
    if (g->npos < 2 || g->npos > 3)
        return tc_cli_usage_error("usage: trustchain gp delete-key KVN [KEY-ID] TARGET");
    uint8_t kvn = 0, id = 0;
    int rc = parse_u8("KVN", g->pos[1], &kvn);
    if (rc != TC_EXIT_OK)
        return rc;
    if (kvn == 0 || kvn > 0x7F)
        return tc_cli_usage_error("KVN: a key version number is 1..127");
    if (g->npos == 3) {
        if ((rc = parse_u8("KEY-ID", g->pos[2], &id)) != TC_EXIT_OK)
            return rc;
        if (id == 0 || id > 0x7F)
            return tc_cli_usage_error("KEY-ID: a key identifier is 1..127");
    }
    if ((rc = open_link(g)) != TC_EXIT_OK || (rc = open_channel(g)) != TC_EXIT_OK)
        return rc;
    tc_err e = tc_scp03_host_delete_key(&g->host, kvn, id);
    if (e != TC_OK)
        return tc_cli_error(e, "DELETE KEY");
    if (g->json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "deleted_kvn");
        tc_json_uint(&j, kvn);
        tc_json_key(&j, "key_id");
        if (id != 0)
            tc_json_uint(&j, id);
        else
            tc_json_null(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else if (id != 0) {
        (void)printf("Key %02X of keyset %02X deleted\n", id, kvn);
    } else {
        (void)printf("Keyset %02X deleted\n", kvn);
    }
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------------ set-status
 */

struct lc_name {
    const char *name;
    uint8_t value;
};

/* GP CS 2.3 §11.1.1 Table 11-5: card life cycle coding. */
static const struct lc_name card_states[] = {
    {"initialized", 0x07},
    {"secured", 0x0F},
    {"locked", 0x7F},
    {"terminated", 0xFF},
};

static int cmd_set_status(struct gp *g)
{
    uint8_t p1, p2;
    uint8_t aid[TC_SCP03_AID_MAX];
    size_t aid_len = 0;
    int rc;
    if (g->npos == 3 && strcmp(g->pos[1], "card") == 0) {
        /* GP CS 2.3 §11.10.2: P1 80 = the ISD (card life cycle), P2 = the new
         * state. */
        p1 = 0x80;
        bool found = false;
        p2 = 0;
        for (size_t i = 0; i < TC_ARRAY_LEN(card_states); i++)
            if (strcmp(g->pos[2], card_states[i].name) == 0) {
                p2 = card_states[i].value;
                found = true;
            }
        uint64_t x = 0;
        if (!found && tc_parse_uint(g->pos[2], 0xFF, &x) != TC_OK)
            return tc_cli_usage_error("STATE: initialized|secured|locked|terminated or a number");
        if (!found)
            p2 = (uint8_t)x;
    } else if (g->npos == 4 && strcmp(g->pos[1], "app") == 0) {
        /* P1 40 = an application; P2 b8 locks, 00 unlocks; data = its AID. */
        p1 = 0x40;
        if ((rc = parse_hex("AID", g->pos[2], aid, sizeof aid, &aid_len)) != TC_EXIT_OK)
            return rc;
        if (aid_len < TC_SCP03_AID_MIN)
            return tc_cli_usage_error("AID: an AID has 5 to 16 bytes");
        if (strcmp(g->pos[3], "lock") == 0)
            p2 = 0x80;
        else if (strcmp(g->pos[3], "unlock") == 0)
            p2 = 0x00;
        else
            return tc_cli_usage_error("application state: lock or unlock");
    } else {
        return tc_cli_usage_error("usage: trustchain gp set-status card STATE | "
                                  "set-status app AID lock|unlock");
    }
    if ((rc = open_link(g)) != TC_EXIT_OK || (rc = open_channel(g)) != TC_EXIT_OK)
        return rc;
    size_t rlen = 0;
    uint16_t sw = 0;
    tc_err e = send_cmd(g, 0x80, 0xF0, p1, p2, aid, aid_len, false, &rlen, &sw);
    if (e != TC_OK)
        return tc_cli_error(e, "SET STATUS");
    if (sw != 0x9000)
        return card_error("SET STATUS", sw);
    if (g->json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "target");
        tc_json_string(&j, p1 == 0x80 ? "card" : "app");
        if (p1 == 0x40) {
            tc_json_key(&j, "aid");
            tc_json_hex(&j, aid, aid_len);
        }
        tc_json_key(&j, "state");
        tc_json_uint(&j, p2);
        if (p1 == 0x80) {
            tc_json_key(&j, "name");
            tc_json_string(&j, card_lc_name(p2));
        }
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else if (p1 == 0x80) {
        (void)printf("Card life cycle set to %s (%02X)\n", card_lc_name(p2), p2);
    } else {
        (void)printf("Application %s\n", p2 == 0x80 ? "locked" : "unlocked");
    }
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------------ apdu */

static int cmd_apdu(struct gp *g)
{
    if (g->npos < 2)
        return tc_cli_usage_error("usage: trustchain gp apdu HEX... TARGET");
    /* Check every command before touching the card. */
    uint8_t *cmd = malloc(TC_APDU_MAX_ENCODED);
    if (cmd == NULL)
        return tc_cli_usage_error("out of memory");
    int rc = TC_EXIT_USAGE;
    for (int i = 1; i < g->npos; i++) {
        size_t n = 0;
        struct tc_apdu a;
        if (tc_hex_decode(g->pos[i], strlen(g->pos[i]), TC_HEX_ALLOW_SEP, cmd, TC_APDU_MAX_ENCODED,
                          &n) != TC_OK ||
            tc_apdu_decode(cmd, n, &a) != TC_OK) {
            rc = tc_cli_usage_error("APDU %d ('%s') is not a command APDU: %s", i, g->pos[i],
                                    tc_error_last()->msg);
            goto out;
        }
    }
    if ((rc = open_link(g)) != TC_EXIT_OK || (rc = open_channel(g)) != TC_EXIT_OK)
        goto out;
    struct tc_json j;
    tc_json_init(&j, stdout);
    if (g->json)
        tc_json_begin_array(&j);
    for (int i = 1; i < g->npos; i++) {
        size_t n = 0, rlen = 0;
        struct tc_apdu a;
        uint16_t sw = 0;
        if (tc_hex_decode(g->pos[i], strlen(g->pos[i]), TC_HEX_ALLOW_SEP, cmd, TC_APDU_MAX_ENCODED,
                          &n) != TC_OK ||
            tc_apdu_decode(cmd, n, &a) != TC_OK) {
            rc = tc_cli_error(TC_ERR_FORMAT, "APDU");
            goto out;
        }
        tc_err e = tc_scp03_host_transmit(&g->host, &a, g->resp, GP_RESP_MAX, &rlen, &sw);
        if (e != TC_OK) {
            rc = tc_cli_error(e, "APDU");
            goto out;
        }
        if (g->json) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "command");
            tc_json_hex(&j, cmd, n);
            tc_json_key(&j, "data");
            tc_json_hex(&j, g->resp, rlen);
            tc_json_key(&j, "sw");
            uint8_t swb[2] = {(uint8_t)(sw >> 8), (uint8_t)sw};
            tc_json_hex(&j, swb, 2);
            tc_json_end_object(&j);
        } else {
            char *h = hex_alloc(g->resp, rlen);
            (void)printf("%s%s%04X\n", h != NULL ? h : "?", rlen > 0 ? " " : "", sw);
            free(h);
        }
    }
    if (g->json) {
        tc_json_end_array(&j);
        tc_json_finish(&j);
    }
    rc = TC_EXIT_OK;
out:
    tc_memzero(cmd, TC_APDU_MAX_ENCODED);
    free(cmd);
    return rc;
}

/* ------------------------------------------------------------------ readers */

static int cmd_readers(struct gp *g)
{
    if (g->npos != 1)
        return tc_cli_usage_error("readers takes no arguments");
    struct tc_pcsc_reader r[16];
    size_t n = 0;
    tc_err e = tc_transport_pcsc_list(r, TC_ARRAY_LEN(r), &n);
    if (e != TC_OK)
        return tc_cli_error(e, "PC/SC");
    if (n > TC_ARRAY_LEN(r))
        n = TC_ARRAY_LEN(r);
    struct tc_json j;
    tc_json_init(&j, stdout);
    if (g->json)
        tc_json_begin_array(&j);
    for (size_t i = 0; i < n; i++) {
        if (g->json) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "name");
            tc_json_string(&j, r[i].name);
            tc_json_key(&j, "card_present");
            tc_json_bool(&j, r[i].card_present);
            tc_json_end_object(&j);
        } else {
            (void)printf("%s%s\n", r[i].name, r[i].card_present ? " (card present)" : "");
        }
    }
    if (g->json) {
        tc_json_end_array(&j);
        tc_json_finish(&j);
    } else if (n == 0) {
        (void)printf("no readers\n");
    }
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------------ entry */

struct gp_sub {
    const char *name;
    int (*run)(struct gp *g);
};

static const struct gp_sub gp_subs[] = {
    {"info", cmd_info},
    {"list", cmd_list},
    {"put-keys", cmd_put_keys},
    {"delete-key", cmd_delete_key},
    {"set-status", cmd_set_status},
    {"apdu", cmd_apdu},
    {"readers", cmd_readers},
};

int tc_cli_gp(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv) || (argc >= 2 && strcmp(argv[1], "help") == 0)) {
        (void)fputs(gp_usage, stdout);
        return TC_EXIT_OK;
    }
    struct gp *g = calloc(1, sizeof *g);
    if (g == NULL)
        return tc_cli_usage_error("out of memory");
    int rc = parse_args(g, argc, argv);
    if (rc != TC_EXIT_OK)
        goto out;
    const struct gp_sub *sub = NULL;
    for (size_t i = 0; i < TC_ARRAY_LEN(gp_subs); i++)
        if (strcmp(g->sub, gp_subs[i].name) == 0)
            sub = &gp_subs[i];
    if (sub == NULL) {
        rc = tc_cli_usage_error("'%s' is not a gp command (see 'trustchain gp --help')", g->sub);
        goto out;
    }
    if ((g->level & TC_SCP03_SL_CDEC) == 0 && strcmp(g->sub, "put-keys") == 0) {
        /* GP CS 2.3 §11.8.1: key data travels confidential, under C-DEC. */
        rc = tc_cli_usage_error("put-keys needs --mode enc or renc (C-DECRYPTION)");
        goto out;
    }
    g->resp = malloc(GP_RESP_MAX);
    if (g->resp == NULL) {
        rc = tc_cli_usage_error("out of memory");
        goto out;
    }
    rc = sub->run(g);
out:
    gp_close(g);
    tc_memzero(g, sizeof *g);
    free(g);
    return rc;
}
