/*
 * Card side of the two wire protocols. Both carry frames of a 2-byte
 * big-endian length and a payload; a 1-byte payload is a control message,
 * anything longer a command APDU answered with response data + SW.
 *
 * vpcd (vsmartcard, virtualsmartcard/src/vpcd/vpcd.c): the card connects to
 * the vpcd driver inside pcscd. Control 00 power off, 01 power on, 02 reset
 * get no reply; 04 asks for the ATR, which pcscd does about every 400 ms to
 * see whether the card is present, so it is always answered (an empty or
 * missing reply makes vpcd drop the card). A new connection is an insertion.
 *
 * TCP (ours, docs/transports.md): the host connects to the card. The same
 * control codes, but every request gets exactly one reply frame: the ATR for
 * 01, 02 and 04, an empty frame for 00. A connection is an insertion (cold
 * reset); its end a removal.
 *
 * Nothing here logs or keeps APDU bytes: they may carry wrapped keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"

enum {
    CTL_POWER_OFF = 0x00,
    CTL_POWER_ON = 0x01,
    CTL_RESET = 0x02,
    CTL_ATR = 0x04,
};

/* Used when the card itself failed (an internal error, not a card status):
 * ISO/IEC 7816-4 §5.6 6F00 "no precise diagnosis". The link must still be
 * answered or the reader side gives the card up. */
static const uint8_t sw_no_diagnosis[2] = {0x6F, 0x00};

#define SERVE_REPLY_TIMEOUT_MS 5000

struct conn_bufs {
    uint8_t cmd[TC_TRANSPORT_MAX_FRAME];
    uint8_t resp[TC_TRANSPORT_MAX_RESPONSE];
};

static tc_err reply_atr(const struct tc_card_ops *card, int fd)
{
    uint8_t atr[TC_TRANSPORT_MAX_ATR];
    size_t n = 0;
    TC_GUARD(card->atr(card->ctx, atr, sizeof atr, &n));
    TC_ENSURE_MSG(n >= 2 && n <= sizeof atr, TC_ERR_INTERNAL, "card gave an ATR of %zu bytes", n);
    return tc_frame_write(fd, atr, n, SERVE_REPLY_TIMEOUT_MS);
}

static tc_err reply_apdu(const struct tc_card_ops *card, int fd, struct conn_bufs *b, size_t len)
{
    size_t rlen = 0;
    tc_err rc = card->transmit(card->ctx, b->cmd, len, b->resp, sizeof b->resp, &rlen);
    const uint8_t *r = b->resp;
    if (rc != TC_OK || rlen < 2 || rlen > TC_TRANSPORT_MAX_FRAME) {
        char why[300];
        tc_error_format(why, sizeof why);
        TC_LOG_WARNING("card server: card failed a command (%s); answered 6F00",
                       rc != TC_OK ? why : "reply does not fit a frame");
        r = sw_no_diagnosis;
        rlen = sizeof sw_no_diagnosis;
    }
    rc = tc_frame_write(fd, r, rlen, SERVE_REPLY_TIMEOUT_MS);
    tc_memzero(b->resp, rlen <= sizeof b->resp ? rlen : sizeof b->resp);
    return rc;
}

enum proto { PROTO_TCP, PROTO_VPCD };

static tc_err serve_conn(enum proto proto, const struct tc_card_ops *card, int fd, size_t cap,
                         const volatile sig_atomic_t *stop)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(card != NULL && card->atr != NULL && card->power != NULL && card->transmit != NULL,
              TC_ERR_ARG);
    if (cap > TC_TRANSPORT_MAX_FRAME)
        cap = TC_TRANSPORT_MAX_FRAME;
    struct conn_bufs *b = malloc(sizeof *b);
    TC_ENSURE(b != NULL, TC_ERR_NOMEM);

    /* A new link is a card insertion. On vpcd the driver powers the card on
     * itself (01); on TCP the connection is the cold reset. */
    if (proto == PROTO_TCP)
        TC_TRY(card->power(card->ctx, TC_CARD_POWER_ON));
    for (;;) {
        size_t len = 0;
        enum tc_frame_event ev = TC_FRAME_OK;
        TC_TRY(tc_frame_read(fd, b->cmd, cap, &len, -1, stop, &ev));
        if (ev != TC_FRAME_OK)
            break;
        if (len >= 2) {
            TC_TRY(reply_apdu(card, fd, b, len));
            tc_memzero(b->cmd, len);
            continue;
        }
        if (len == 0) {
            /* vpcd never sends an empty frame; on TCP it is meaningless. */
            TC_CHECK_MSG(proto == PROTO_VPCD, TC_ERR_FORMAT, "empty request frame");
            continue;
        }
        switch (b->cmd[0]) {
        case CTL_POWER_OFF:
            TC_TRY(card->power(card->ctx, TC_CARD_POWER_OFF));
            if (proto == PROTO_TCP)
                TC_TRY(tc_frame_write(fd, NULL, 0, SERVE_REPLY_TIMEOUT_MS));
            break;
        case CTL_POWER_ON:
        case CTL_RESET:
            TC_TRY(
                card->power(card->ctx, b->cmd[0] == CTL_RESET ? TC_CARD_RESET : TC_CARD_POWER_ON));
            if (proto == PROTO_TCP)
                TC_TRY(reply_atr(card, fd));
            break;
        case CTL_ATR:
            TC_TRY(reply_atr(card, fd));
            break;
        default:
            /* vpcd defines no other code; one we do not know expects no
             * reply we could give, so the link is out of step. */
            TC_CHECK_MSG(false, TC_ERR_FORMAT, "unknown control message %02X", b->cmd[0]);
        }
    }
    ret = TC_OK;
out:
    /* The link is gone: the card is removed, its RAM state lost. */
    if (card->power(card->ctx, TC_CARD_POWER_OFF) != TC_OK && ret == TC_OK)
        ret = TC_FAIL(TC_ERR_INTERNAL, "card failed to power off");
    tc_memzero(b, sizeof *b);
    free(b);
    return ret;
}

tc_err tc_serve_tcp_conn(const struct tc_card_ops *card, int fd, size_t cap,
                         const volatile sig_atomic_t *stop)
{
    return serve_conn(PROTO_TCP, card, fd, cap, stop);
}

tc_err tc_serve_vpcd_conn(const struct tc_card_ops *card, int fd, size_t cap,
                          const volatile sig_atomic_t *stop)
{
    return serve_conn(PROTO_VPCD, card, fd, cap, stop);
}

static bool stopped(const volatile sig_atomic_t *stop)
{
    return stop != NULL && *stop != 0;
}

/* Sleep ms in slices, returning early when stopped. */
static void nap(int ms, const volatile sig_atomic_t *stop)
{
    while (ms > 0 && !stopped(stop)) {
        int slice = ms < TC_NET_STOP_POLL_MS ? ms : TC_NET_STOP_POLL_MS;
        (void)poll(NULL, 0, slice);
        ms -= slice;
    }
}

tc_err tc_transport_serve_tcp(const struct tc_card_ops *card, const char *hostport,
                              const volatile sig_atomic_t *stop,
                              void (*on_listen)(void *arg, uint16_t port), void *arg)
{
    TC_ENSURE(card != NULL && hostport != NULL && stop != NULL, TC_ERR_ARG);
    struct tc_hostport hp;
    TC_GUARD(tc_net_parse_hostport(hostport, "127.0.0.1", true, &hp));
    int lfd = -1;
    uint16_t port = 0;
    TC_GUARD(tc_net_listen(&hp, &lfd, &port));
    if (on_listen != NULL)
        on_listen(arg, port);
    TC_LOG_INF("card server: listening on %s port %u", hp.host, (unsigned)port);
    tc_err ret = TC_OK;
    while (!stopped(stop)) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        int n = poll(&pfd, 1, TC_NET_STOP_POLL_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = TC_FAIL(TC_ERR_IO, "poll: %s", strerror(errno));
            break;
        }
        if (n == 0)
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        /* Non-blocking, so that a host that stops reading cannot block a
         * reply past its deadline. */
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
            (void)close(fd);
            continue;
        }
        TC_LOG_INF("card server: host connected (card inserted)");
        tc_err rc = tc_serve_tcp_conn(card, fd, TC_TRANSPORT_MAX_FRAME, stop);
        (void)close(fd);
        if (rc != TC_OK) {
            char why[300];
            tc_error_format(why, sizeof why);
            TC_LOG_WARNING("card server: link dropped: %s", why);
        }
        TC_LOG_INF("card server: host disconnected (card removed)");
    }
    (void)close(lfd);
    return ret;
}

tc_err tc_transport_serve_vpcd(const struct tc_card_ops *card, const char *hostport,
                               const volatile sig_atomic_t *stop)
{
    TC_ENSURE(card != NULL && hostport != NULL && stop != NULL, TC_ERR_ARG);
    struct tc_hostport hp;
    TC_GUARD(tc_net_parse_hostport(hostport, "127.0.0.1", false, &hp));
    bool waiting_logged = false;
    while (!stopped(stop)) {
        int fd = -1;
        if (tc_net_connect(&hp, 1000, &fd) != TC_OK) {
            if (!waiting_logged)
                TC_LOG_INF("card server: waiting for vpcd at %s port %u", hp.host,
                           (unsigned)hp.port);
            waiting_logged = true;
            nap(500, stop);
            continue;
        }
        waiting_logged = false;
        TC_LOG_INF("card server: connected to vpcd at %s port %u (card inserted)", hp.host,
                   (unsigned)hp.port);
        tc_err rc = tc_serve_vpcd_conn(card, fd, TC_TRANSPORT_MAX_FRAME, stop);
        (void)close(fd);
        if (rc != TC_OK) {
            char why[300];
            tc_error_format(why, sizeof why);
            TC_LOG_WARNING("card server: vpcd link dropped: %s", why);
        } else if (!stopped(stop)) {
            TC_LOG_INF("card server: vpcd closed the link (card removed); reconnecting");
        }
        nap(200, stop);
    }
    return TC_OK;
}
