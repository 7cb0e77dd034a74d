/*
 * trustchain apdu: decode command and response APDUs from hex, as traces
 * show them (ISO/IEC 7816-4 §5.1, §5.4.1, §5.6; GlobalPlatform commands).
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/codec.h>

#include "cli.h"

static const char apdu_decode_usage[] =
    "usage: trustchain apdu decode [--json] [--response] HEX...\n"
    "\n"
    "Decode one command APDU (ISO/IEC 7816-4 cases 1, 2S, 3S, 4S, 2E, 3E, 4E):\n"
    "case, CLA with its logical channel, chaining and secure messaging bits,\n"
    "INS with its ISO/GlobalPlatform name, P1, P2, Lc, data and Le.\n"
    "With --response, decode a response APDU: data, SW1 SW2 and its meaning.\n"
    "\n"
    "HEX may contain spaces, tabs, colons or newlines between bytes and may be\n"
    "split over several arguments, as traces are pasted.\n"
    "\n"
    "options:\n"
    "  --response  the bytes are a response APDU (data + SW1 SW2)\n"
    "  --json      print one JSON object instead of text\n"
    "  -h, --help  print this help\n";

static void print_hex_line(const char *label, const uint8_t *p, size_t n)
{
    (void)printf("%-9s", label);
    for (size_t i = 0; i < n; i++)
        (void)printf("%02X", p[i]);
    (void)putchar('\n');
}

static const char *sm_text(const struct tc_cla_info *ci)
{
    if (ci->further)
        return ci->sm ? (ci->proprietary ? "GlobalPlatform secure messaging (b6)"
                                         : "ISO/IEC 7816-4 §10, command header not authenticated")
                      : "none";
    switch (ci->sm) {
    case 0:
        return "none";
    case 1:
        return ci->proprietary ? "GlobalPlatform secure messaging (b3)"
                               : "proprietary secure messaging (b4-b3 = 01)";
    case 2:
        return "ISO/IEC 7816-4 §10, command header not authenticated";
    case 3:
        return "ISO/IEC 7816-4 §10, command header authenticated";
    default:
        return "?";
    }
}

static void class_text(uint8_t cla, char *out, size_t out_size, struct tc_cla_info *ci, bool *ok)
{
    *ok = tc_cla_decode(cla, ci) == TC_OK;
    if (!*ok) {
        (void)snprintf(out, out_size, "%s", tc_error_last()->msg);
        return;
    }
    if (ci->proprietary)
        (void)snprintf(out, out_size, "proprietary, GlobalPlatform coding for channels %s",
                       ci->further ? "4-19" : "0-3");
    else
        (void)snprintf(out, out_size, "interindustry, %s interindustry values (channels %s)",
                       ci->further ? "further" : "first", ci->further ? "4-19" : "0-3");
}

static int print_command(const struct tc_apdu *a, bool json)
{
    enum tc_apdu_case k = tc_apdu_case_of(a);
    const char *ins_name = tc_apdu_ins_name(a->cla, a->ins);
    struct tc_cla_info ci;
    bool cla_ok = false;
    char cls[300];
    class_text(a->cla, cls, sizeof cls, &ci, &cla_ok);
    char hx[3];
    if (json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "case");
        tc_json_string(&j, tc_apdu_case_name(k));
        tc_json_key(&j, "extended");
        tc_json_bool(&j, a->extended);
        tc_json_key(&j, "cla");
        tc_json_hex(&j, &a->cla, 1);
        tc_json_key(&j, "class");
        if (cla_ok) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "proprietary");
            tc_json_bool(&j, ci.proprietary);
            tc_json_key(&j, "further");
            tc_json_bool(&j, ci.further);
            tc_json_key(&j, "channel");
            tc_json_uint(&j, ci.channel);
            tc_json_key(&j, "chained");
            tc_json_bool(&j, ci.chained);
            tc_json_key(&j, "sm");
            tc_json_uint(&j, ci.sm);
            tc_json_key(&j, "secure");
            tc_json_bool(&j, ci.secure);
            tc_json_key(&j, "secure_messaging");
            tc_json_string(&j, sm_text(&ci));
            tc_json_end_object(&j);
        } else {
            tc_json_null(&j);
            tc_json_key(&j, "class_note");
            tc_json_string(&j, cls);
        }
        tc_json_key(&j, "ins");
        tc_json_hex(&j, &a->ins, 1);
        tc_json_key(&j, "ins_name");
        if (ins_name != NULL)
            tc_json_string(&j, ins_name);
        else
            tc_json_null(&j);
        tc_json_key(&j, "p1");
        tc_json_hex(&j, &a->p1, 1);
        tc_json_key(&j, "p2");
        tc_json_hex(&j, &a->p2, 1);
        tc_json_key(&j, "lc");
        tc_json_uint(&j, a->lc);
        tc_json_key(&j, "data");
        tc_json_hex(&j, a->data, a->lc);
        tc_json_key(&j, "le");
        if (a->has_le)
            tc_json_uint(&j, a->le);
        else
            tc_json_null(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
        return TC_EXIT_OK;
    }
    (void)printf("case:    %s (%s)\n", tc_apdu_case_name(k),
                 k == TC_APDU_CASE_1 ? "no length fields"
                 : a->extended       ? "extended length fields"
                                     : "short length fields");
    (void)printf("cla:     %02X\n", a->cla);
    (void)printf("class:   %s\n", cls);
    if (cla_ok) {
        (void)printf("channel: %u\n", ci.channel);
        (void)printf("sm:      %s\n", sm_text(&ci));
        (void)printf("chained: %s\n",
                     ci.chained ? "yes (more commands of the chain follow)" : "no");
    }
    (void)snprintf(hx, sizeof hx, "%02X", a->ins);
    if (ins_name != NULL)
        (void)printf("ins:     %s %s\n", hx, ins_name);
    else
        (void)printf("ins:     %s\n", hx);
    (void)printf("p1:      %02X\n", a->p1);
    (void)printf("p2:      %02X\n", a->p2);
    if (a->lc > 0) {
        (void)printf("lc:      %zu\n", a->lc);
        print_hex_line("data:", a->data, a->lc);
    }
    if (a->has_le)
        (void)printf("le:      %lu\n", (unsigned long)a->le);
    return TC_EXIT_OK;
}

static int print_response(const struct tc_rapdu *r, bool json)
{
    char sw[200];
    tc_sw_describe(r->sw, sw, sizeof sw);
    const char *status = sw + 6; /* past "XXXX: " */
    uint8_t swb[2] = {(uint8_t)(r->sw >> 8), (uint8_t)r->sw};
    if (json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "data");
        tc_json_hex(&j, r->data, r->len);
        tc_json_key(&j, "length");
        tc_json_uint(&j, r->len);
        tc_json_key(&j, "sw");
        tc_json_hex(&j, swb, 2);
        tc_json_key(&j, "status");
        tc_json_string(&j, status);
        tc_json_end_object(&j);
        tc_json_finish(&j);
        return TC_EXIT_OK;
    }
    if (r->len > 0)
        print_hex_line("data:", r->data, r->len);
    (void)printf("length:  %zu\n", r->len);
    (void)printf("sw:      %02X%02X\n", swb[0], swb[1]);
    (void)printf("status:  %s\n", status);
    return TC_EXIT_OK;
}

static int apdu_decode(int argc, char **argv)
{
    bool json = false, response = false, opts = true;
    bool *hex = calloc((size_t)argc, sizeof *hex);
    if (hex == NULL)
        return tc_cli_usage_error("apdu decode: out of memory");
    for (int i = 1; i < argc; i++) {
        if (opts && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
            free(hex);
            (void)fputs(apdu_decode_usage, stdout);
            return TC_EXIT_OK;
        }
        if (opts && strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (opts && strcmp(argv[i], "--response") == 0) {
            response = true;
        } else if (opts && strcmp(argv[i], "--") == 0) {
            opts = false;
        } else if (opts && argv[i][0] == '-') {
            free(hex);
            return tc_cli_usage_error("apdu decode: unknown option '%s' (see --help)", argv[i]);
        } else {
            hex[i] = true;
        }
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    size_t max = response ? (size_t)TC_APDU_MAX_EXT_LE + 2 : (size_t)TC_APDU_MAX_ENCODED;
    int rc = tc_cli_read_hex_args("apdu decode", argc, argv, hex, max, &bytes, &len);
    free(hex);
    if (rc != TC_EXIT_OK)
        return rc;
    if (response) {
        struct tc_rapdu r;
        tc_err e = tc_rapdu_decode(bytes, len, &r);
        rc = e == TC_OK ? print_response(&r, json) : tc_cli_error(e, "apdu decode");
    } else {
        struct tc_apdu a;
        tc_err e = tc_apdu_decode(bytes, len, &a);
        rc = e == TC_OK ? print_command(&a, json) : tc_cli_error(e, "apdu decode");
    }
    free(bytes);
    return rc;
}

static const struct tc_cli_cmd apdu_cmds[] = {
    {"decode", "decode a command or response APDU from hex", apdu_decode},
};

int tc_cli_apdu(int argc, char **argv)
{
    return tc_cli_group("apdu", NULL, apdu_cmds, TC_ARRAY_LEN(apdu_cmds), argc, argv);
}
