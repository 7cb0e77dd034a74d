/*
 * trustchain se serve: put an emulated card (a card image) on the wire.
 *   --tcp [HOST:]PORT   our TCP card protocol, loopback unless a host is given
 *   --vpcd [HOST:]PORT  into pcscd through vsmartcard's vpcd driver
 * Until SIGINT or SIGTERM; every state-changing command has already been
 * committed to the image when it was answered, so stopping loses only RAM
 * state (sessions, selections), as pulling a card does.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "cli.h"

static volatile sig_atomic_t serve_stop;

static void on_signal(int sig)
{
    (void)sig;
    serve_stop = 1;
}

struct served_card {
    struct tc_se_card *card;
    uint8_t atr[TC_TRANSPORT_MAX_ATR];
    size_t atr_len;
};

static tc_err served_atr(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    const struct served_card *s = ctx;
    TC_ENSURE(s->atr_len <= atr_size, TC_ERR_SPACE);
    memcpy(atr, s->atr, s->atr_len);
    *atr_len = s->atr_len;
    return TC_OK;
}

static tc_err served_power(void *ctx, enum tc_card_power ev)
{
    struct served_card *s = ctx;
    uint8_t atr[TC_TRANSPORT_MAX_ATR];
    size_t n = 0;
    switch (ev) {
    case TC_CARD_POWER_OFF:
        tc_se_power_off(s->card);
        return TC_OK;
    case TC_CARD_POWER_ON:
        /* A card already powered is cold-reset, as a reader would. */
        tc_se_power_off(s->card);
        return tc_se_power_on(s->card, atr, sizeof atr, &n);
    case TC_CARD_RESET:
        return tc_se_reset(s->card, atr, sizeof atr, &n);
    default:
        return TC_FAIL(TC_ERR_ARG, "unknown power event %d", (int)ev);
    }
}

static tc_err served_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                              size_t resp_size, size_t *resp_len)
{
    struct served_card *s = ctx;
    return tc_se_process(s->card, cmd, cmd_len, resp, resp_size, resp_len);
}

static void on_listen(void *arg, uint16_t port)
{
    const char *host = arg;
    /* Scripts that asked for port 0 read the port from this line. */
    (void)printf("listening on %s port %u\n", host, (unsigned)port);
    (void)fflush(stdout);
}

static const char serve_usage[] =
    "usage: trustchain se serve --state FILE (--tcp [HOST:]PORT | --vpcd "
    "[HOST:]PORT)\n"
    "\n"
    "  --state FILE        the card image (trustchain se new)\n"
    "  --tcp [HOST:]PORT   serve the card over TCP (host 127.0.0.1 unless "
    "given; port 0 =\n"
    "                      any free port, printed as 'listening on HOST port "
    "N')\n"
    "  --vpcd [HOST:]PORT  connect the card to pcscd's vpcd driver "
    "(vsmartcard) at that\n"
    "                      port (host 127.0.0.1 unless given); reconnects when "
    "dropped\n"
    "Runs until SIGINT or SIGTERM.\n";

int tc_cli_se_serve(int argc, char **argv)
{
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(serve_usage, stdout);
        return TC_EXIT_OK;
    }
    const char *state = NULL, *tcp = NULL, *vpcd = NULL;
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--state") == 0)
            slot = &state;
        else if (strcmp(argv[i], "--tcp") == 0)
            slot = &tcp;
        else if (strcmp(argv[i], "--vpcd") == 0)
            slot = &vpcd;
        else
            return tc_cli_usage_error("se serve: unknown argument '%s'", argv[i]);
        if (i + 1 >= argc)
            return tc_cli_usage_error("se serve: %s needs a value", argv[i]);
        if (*slot != NULL)
            return tc_cli_usage_error("se serve: %s given twice", argv[i]);
        *slot = argv[++i];
    }
    if (state == NULL)
        return tc_cli_usage_error("se serve: --state FILE is required");
    if ((tcp == NULL) == (vpcd == NULL))
        return tc_cli_usage_error("se serve: give exactly one of --tcp and --vpcd");

    /* Handlers first: a stop asked for while the image opens is honoured
     * once it is open, never by dying half-way. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    (void)sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    /* A peer that vanishes mid-write is an error return, not a signal. */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    (void)sigaction(SIGPIPE, &ign, NULL);

    struct served_card s;
    memset(&s, 0, sizeof s);
    tc_err rc = tc_se_open(state, 0, &s.card);
    if (rc != TC_OK)
        return tc_cli_error(rc, "opening the card image");
    /* The ATR is the card's; vpcd asks for it about every 400 ms whatever the
     * power state, so it is read once here. */
    rc = tc_se_power_on(s.card, s.atr, sizeof s.atr, &s.atr_len);
    tc_se_power_off(s.card);
    if (rc != TC_OK) {
        tc_se_close(s.card);
        return tc_cli_error(rc, "powering the card on");
    }
    const struct tc_card_ops ops = {
        .ctx = &s, .atr = served_atr, .power = served_power, .transmit = served_transmit};

    char host[300] = "127.0.0.1";
    if (tcp != NULL) {
        const char *colon = strrchr(tcp, ':');
        if (colon != NULL) {
            size_t hl = (size_t)(colon - tcp);
            if (hl >= sizeof host)
                hl = sizeof host - 1;
            memcpy(host, tcp, hl);
            host[hl] = '\0';
        }
        rc = tc_transport_serve_tcp(&ops, tcp, &serve_stop, on_listen, host);
    } else {
        (void)printf("connecting to vpcd at %s\n", vpcd);
        (void)fflush(stdout);
        rc = tc_transport_serve_vpcd(&ops, vpcd, &serve_stop);
    }
    tc_se_power_off(s.card);
    tc_se_close(s.card);
    if (rc != TC_OK)
        return tc_cli_error(rc, "se serve");
    (void)printf("stopped\n");
    return TC_EXIT_OK;
}
