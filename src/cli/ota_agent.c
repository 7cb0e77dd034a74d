/*
 * trustchain ota agent: the device side of one OTA dialog. Reads the
 * identity from the local secure element (emulator image, PC/SC reader or
 * a card served over TCP), connects to the OTA server with TLS 1.3 and the
 * card's certificate (the handshake signature is made by the card), and
 * relays every command script to the card until the server ends the
 * session (docs/ota-agent.md).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <trustchain/ota.h>
#include <trustchain/ota_agent.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "cli.h"

/* Exit statuses beyond the common 0/1/2 (docs/ota-agent.md). */
enum {
    EXIT_CARD = 3,        /* no card, no identity on it, locked or terminated */
    EXIT_UNREACHABLE = 4, /* server unreachable or silent */
    EXIT_UNTRUSTED = 5,   /* the server's certificate does not match the pin */
    EXIT_REFUSED = 6,     /* the server refused this device */
    EXIT_DIALOG = 7       /* the dialog failed: server error, malformed script, bounds, card link */
};

static const char agent_usage[] =
    "usage: trustchain ota agent --server URL (--se FILE | --reader NAME | --tcp HOST:PORT)\n"
    "                            [options]\n"
    "  --server URL        the OTA server: https://HOST:PORT\n"
    "  --se FILE           an emulated card image\n"
    "  --reader NAME       a PC/SC reader (exact name or a unique substring)\n"
    "  --tcp HOST:PORT     a card served by `trustchain se serve --tcp`\n"
    "  --server-cert FILE  the server certificate (or CA) to trust, PEM\n"
    "                      (default <workspace>/ota/server.pem)\n"
    "  --card-cert FILE    the device's copy of its certificate: written (PEM) from the\n"
    "                      card when its identity applet answers, read (PEM or DER) when\n"
    "                      the card is CARD_LOCKED and the applet is out of reach\n"
    "  --workspace DIR     the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --timeout-ms N      connect, handshake and each exchange (default 10000)\n"
    "  --deadline-ms N     the whole dialog (default 120000)\n"
    "  --max-steps N       command scripts accepted in one dialog (default 64)\n"
    "  --resume            announce a resumed session (X-Admin-Resume: true)\n"
    "  --json              print the result as JSON\n"
    "  --verbose           one line per script relayed, on stderr\n"
    "Exit status: 0 done, 1 other failure, 2 bad arguments, 3 card absent, locked or\n"
    "without identity, 4 server unreachable or silent, 5 server certificate not trusted,\n"
    "6 device refused by the server, 7 dialog failed (server error, malformed script,\n"
    "bounds, card link lost).\n";

static int exit_of(enum tc_ota_agent_outcome o)
{
    switch (o) {
    case TC_OTA_AGENT_DONE:
        return TC_EXIT_OK;
    case TC_OTA_AGENT_UNREACHABLE:
    case TC_OTA_AGENT_TIMEOUT:
        return EXIT_UNREACHABLE;
    case TC_OTA_AGENT_SERVER_UNTRUSTED:
        return EXIT_UNTRUSTED;
    case TC_OTA_AGENT_REFUSED:
        return EXIT_REFUSED;
    case TC_OTA_AGENT_HTTP:
    case TC_OTA_AGENT_PROTOCOL:
    case TC_OTA_AGENT_CARD:
    case TC_OTA_AGENT_BOUNDS:
        return EXIT_DIALOG;
    case TC_OTA_AGENT_TLS:
    case TC_OTA_AGENT_INTERNAL:
    default:
        return TC_EXIT_FAIL;
    }
}

static int card_error(tc_err rc, const char *where)
{
    char m[300];
    tc_error_format(m, sizeof m);
    /* A transport's message may already start with the link's name. */
    size_t wl = strlen(where);
    const char *msg = strncmp(m, where, wl) == 0 && strncmp(m + wl, ": ", 2) == 0 ? m + wl + 2 : m;
    (void)fprintf(stderr, "trustchain: ota agent: card (%s): %s\n", where, msg);
    return rc == TC_ERR_ARG ? TC_EXIT_USAGE : EXIT_CARD;
}

static void on_script(void *arg, const char *eid, unsigned step, unsigned apdus, uint16_t last_sw)
{
    (void)arg;
    (void)fprintf(stderr, "ota agent: %s: script %u: %u response APDU(s), last SW %04X\n", eid,
                  step, apdus, (unsigned)last_sw);
}

/* A certificate file, PEM or DER, as DER. */
static bool read_cert(const char *path, uint8_t *out, size_t size, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    if (x == NULL) {
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    (void)fclose(f);
    ERR_clear_error();
    int n = x != NULL ? i2d_X509(x, NULL) : -1;
    bool ok = n > 0 && (size_t)n <= size;
    if (ok) {
        unsigned char *p = out;
        ok = i2d_X509(x, &p) == n;
        *len = (size_t)n;
    }
    X509_free(x);
    return ok;
}

/* PEM through a temporary file and rename: never half a certificate. */
static bool write_cert(const char *path, X509 *x)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return false;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_X509(f, x) == 1;
    ok = fclose(f) == 0 && ok && rename(tmp, path) == 0;
    if (!ok)
        (void)unlink(tmp);
    ERR_clear_error();
    return ok;
}

struct agent_opts {
    const char *server, *se, *reader, *tcp, *server_cert, *card_cert, *workspace;
    const char *timeout_ms, *deadline_ms, *max_steps;
    bool json, resume, verbose;
};

static const struct tc_cli_opt agent_options[] = {
    TC_CLI_OPT_VALUE_AT("--server", struct agent_opts, server),
    TC_CLI_OPT_VALUE_AT("--se", struct agent_opts, se),
    TC_CLI_OPT_VALUE_AT("--reader", struct agent_opts, reader),
    TC_CLI_OPT_VALUE_AT("--tcp", struct agent_opts, tcp),
    TC_CLI_OPT_VALUE_AT("--server-cert", struct agent_opts, server_cert),
    TC_CLI_OPT_VALUE_AT("--card-cert", struct agent_opts, card_cert),
    TC_CLI_OPT_VALUE_AT("--workspace", struct agent_opts, workspace),
    TC_CLI_OPT_VALUE_AT("--timeout-ms", struct agent_opts, timeout_ms),
    TC_CLI_OPT_VALUE_AT("--deadline-ms", struct agent_opts, deadline_ms),
    TC_CLI_OPT_VALUE_AT("--max-steps", struct agent_opts, max_steps),
    TC_CLI_OPT_FLAG_AT("--json", struct agent_opts, json),
    TC_CLI_OPT_FLAG_AT("--resume", struct agent_opts, resume),
    TC_CLI_OPT_FLAG_AT("--verbose", struct agent_opts, verbose),
};

int tc_cli_ota_agent(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(agent_usage, stdout);
        return TC_EXIT_OK;
    }
    struct agent_opts o = {.workspace = tc_cli_default_workspace()};
    int pc = tc_cli_parse_opts("ota", "agent", agent_options, TC_ARRAY_LEN(agent_options), argc,
                               argv, &o, NULL);
    if (pc != TC_EXIT_OK)
        return pc;
    const char *ws = o.workspace, *server = o.server, *se = o.se, *reader = o.reader, *tcp = o.tcp,
               *pin = o.server_cert, *card_cert = o.card_cert;
    bool json = o.json, resume = o.resume, verbose = o.verbose;
    uint64_t timeout = 0, deadline = 0, steps = 0;
    const struct {
        const char *name, *value;
        uint64_t max, *out;
    } nums[] = {{"--timeout-ms", o.timeout_ms, 600000, &timeout},
                {"--deadline-ms", o.deadline_ms, 3600000, &deadline},
                {"--max-steps", o.max_steps, 1024, &steps}};
    for (size_t i = 0; i < TC_ARRAY_LEN(nums); i++)
        if (nums[i].value != NULL &&
            (tc_parse_uint(nums[i].value, nums[i].max, nums[i].out) != TC_OK || *nums[i].out == 0))
            return tc_cli_usage_error("ota agent: bad %s %s (1..%llu)", nums[i].name, nums[i].value,
                                      (unsigned long long)nums[i].max);
    if (server == NULL)
        return tc_cli_usage_error("ota agent: --server URL is required");
    if ((se != NULL) + (reader != NULL) + (tcp != NULL) != 1)
        return tc_cli_usage_error("ota agent: name the card: one of --se FILE, --reader NAME, "
                                  "--tcp HOST:PORT");
    char pin_path[4096];
    if (pin == NULL) {
        int n = snprintf(pin_path, sizeof pin_path, "%s/ota/server.pem", ws);
        if (n < 0 || (size_t)n >= sizeof pin_path)
            return tc_cli_usage_error("ota agent: workspace path too long");
        pin = pin_path;
    }

    uint8_t cached[TC_OTA_CARD_CERT_MAX];
    size_t cached_len = 0;
    if (card_cert != NULL && access(card_cert, F_OK) == 0 &&
        !read_cert(card_cert, cached, sizeof cached, &cached_len))
        return tc_cli_usage_error("ota agent: --card-cert %s: not a certificate (PEM or DER, "
                                  "at most %u bytes)",
                                  card_cert, TC_OTA_CARD_CERT_MAX);
    (void)signal(SIGPIPE, SIG_IGN); /* a server that closes early */
    struct tc_ota_agent_config cfg = {.url = server,
                                      .trust_file = pin,
                                      .timeout_ms = (unsigned)timeout,
                                      .deadline_ms = (unsigned)deadline,
                                      .max_steps = (unsigned)steps,
                                      .resume = resume,
                                      .on_script = verbose ? on_script : NULL};
    struct tc_ota_agent *a = NULL;
    tc_err rc = tc_ota_agent_new(&cfg, &a);
    if (rc != TC_OK) {
        /* A bad URL or an unreadable server certificate: bad arguments. */
        int c = tc_cli_error(rc, rc == TC_ERR_FORMAT ? "ota agent: --server"
                                                     : "ota agent: --server-cert");
        return rc == TC_ERR_FORMAT || rc == TC_ERR_IO ? TC_EXIT_USAGE : c;
    }

    int code = TC_EXIT_FAIL;
    struct tc_transport t = {0};
    struct tc_ota_card card;
    uint8_t serial[20];
    size_t serial_len = 0;
    memset(&card, 0, sizeof card);
    if (se != NULL)
        rc = tc_se_transport_open(se, 0, &t);
    else if (reader != NULL)
        rc = tc_transport_pcsc_open(&t, reader);
    else
        rc = tc_transport_tcp_open(&t, tcp, (int)(timeout != 0 ? timeout : 10000));
    if (rc != TC_OK && tcp != NULL && (rc == TC_ERR_FORMAT || rc == TC_ERR_RANGE)) {
        /* Not HOST:PORT, or a port outside 1..65535: bad arguments. */
        code = tc_cli_error(rc, "ota agent: --tcp");
        goto out;
    }
    if (rc != TC_OK) {
        code = card_error(rc, se != NULL ? se : reader != NULL ? reader : tcp);
        goto out;
    }
    rc = tc_ota_card_open_ex(&t, cached_len > 0 ? cached : NULL, cached_len, &card);
    if (rc != TC_OK) {
        code = card_error(rc, t.name != NULL ? t.name : "card");
        goto out;
    }
    /* Keep the device's copy current (a renewal replaces the certificate). */
    if (card_cert != NULL && !card.locked &&
        (cached_len != card.cert_len || memcmp(cached, card.cert_der, cached_len) != 0) &&
        !write_cert(card_cert, card.cert)) {
        (void)fprintf(stderr, "trustchain: ota agent: --card-cert %s: cannot write\n", card_cert);
        code = TC_EXIT_FAIL;
        goto out;
    }
    /* The certificate's serial (for pki revoke --serial). */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(card.cert);
    if (sn != NULL && sn->length > 0 && (size_t)sn->length <= sizeof serial) {
        memcpy(serial, sn->data, (size_t)sn->length);
        serial_len = (size_t)sn->length;
    }

    struct tc_ota_agent_result res;
    rc = tc_ota_agent_run(a, &card, &res); /* res says why */
    code = exit_of(res.outcome);
    /* Failures: one line on stderr and nothing on stdout. */
    if (json && res.outcome == TC_OTA_AGENT_DONE) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "eid");
        tc_json_string(&j, card.eid);
        tc_json_key(&j, "serial");
        tc_json_hex(&j, serial, serial_len);
        tc_json_key(&j, "outcome");
        tc_json_string(&j, tc_ota_agent_outcome_name(res.outcome));
        tc_json_key(&j, "http_status");
        tc_json_uint(&j, (uint64_t)(res.http_status > 0 ? res.http_status : 0));
        tc_json_key(&j, "scripts");
        tc_json_uint(&j, res.scripts);
        tc_json_key(&j, "apdus");
        tc_json_uint(&j, res.apdus);
        tc_json_key(&j, "last_sw");
        char sw[5];
        (void)snprintf(sw, sizeof sw, "%04X", (unsigned)res.last_sw);
        tc_json_string(&j, sw);
        tc_json_key(&j, "detail");
        tc_json_string(&j, res.detail);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else if (res.outcome == TC_OTA_AGENT_DONE) {
        (void)printf("card: EID %s (%s)\n", card.eid, t.name != NULL ? t.name : "card");
        (void)printf("server: %s\n", server);
        (void)printf("%s; last card status %04X\n", res.detail, (unsigned)res.last_sw);
    }
    if (res.outcome != TC_OTA_AGENT_DONE)
        (void)fprintf(stderr, "trustchain: ota agent: %s: %s\n",
                      tc_ota_agent_outcome_name(res.outcome), res.detail);
out:
    tc_ota_card_close(&card);
    tc_transport_close(&t);
    tc_ota_agent_free(a);
    return code;
}
