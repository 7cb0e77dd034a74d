/*
 * trustchain transport: how a host reaches a card. One interface, several
 * implementations: the in-process emulator (se module), TCP and PC/SC
 * (transport module; real readers and the emulator behind vpcd alike).
 *
 * An implementation moves bytes only: it never interprets, logs or keeps the
 * APDUs it carries beyond the call (they may hold wrapped key material).
 */
#ifndef TRUSTCHAIN_TRANSPORT_H
#define TRUSTCHAIN_TRANSPORT_H

#include <signal.h>

#include <trustchain/core.h>

/* Largest response: 65536 data bytes + SW1 SW2. */
#define TC_TRANSPORT_MAX_RESPONSE (65536u + 2u)
#define TC_TRANSPORT_MAX_ATR      33u

struct tc_transport {
    void *ctx;
    /* Human-readable name for messages ("emulator card.img", "PC/SC reader X"). */
    const char *name;
    /* Send one command APDU; receive its response (data + SW1 SW2, at least 2
     * bytes). TC_ERR_IO when the card is gone or the link broke. */
    tc_err (*transmit)(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                       size_t resp_size, size_t *resp_len);
    /* Cold or warm reset; returns the ATR. May be NULL when not supported. */
    tc_err (*reset)(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len);
    /* Release the link and ctx; NULL-safe through tc_transport_close(). */
    void (*close)(void *ctx);
};

/* ------------------------------------------------------------------ host side */

/* A TCP link to `trustchain se serve --tcp` (docs/transports.md: 2-byte
 * big-endian length framing; one reply frame per request). `hostport` is
 * "HOST:PORT" or "[v6addr]:PORT"; timeout_ms bounds connect and each
 * exchange (0 = the default, TC_TRANSPORT_TIMEOUT_MS). */
#define TC_TRANSPORT_TIMEOUT_MS 30000
TC_MUST_CHECK tc_err tc_transport_tcp_open(struct tc_transport *t, const char *hostport,
                                           int timeout_ms);

/* A PC/SC reader through libpcsclite (pcscd): `reader` is an exact reader
 * name, or a substring matching exactly one reader, or NULL for the only
 * reader with a card in it. Connects shared (T=1, T=0 only as a fallback) and
 * holds a PC/SC transaction until closed, so that no other application's
 * commands land inside a secure channel. */
TC_MUST_CHECK tc_err tc_transport_pcsc_open(struct tc_transport *t, const char *reader);
/* The readers pcscd knows (at most `max`; *count is how many were found) and
 * whether a card is present in each. */
struct tc_pcsc_reader {
    char name[128];
    bool card_present;
};
TC_MUST_CHECK tc_err tc_transport_pcsc_list(struct tc_pcsc_reader *out, size_t max, size_t *count);

/* ------------------------------------------------------------------ card side */

/*
 * What a card server needs from a card: its ATR, power events and APDU
 * exchange. Power off and reset lose the card's RAM state (selections,
 * sessions), as on a physical card; power on is a cold reset.
 */
enum tc_card_power { TC_CARD_POWER_OFF = 0, TC_CARD_POWER_ON = 1, TC_CARD_RESET = 2 };

struct tc_card_ops {
    void *ctx;
    tc_err (*atr)(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len);
    tc_err (*power)(void *ctx, enum tc_card_power ev);
    /* Same contract as tc_transport.transmit. */
    tc_err (*transmit)(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                       size_t resp_size, size_t *resp_len);
};

/* Largest payload the 2-byte length prefix of both wire protocols carries. */
#define TC_TRANSPORT_MAX_FRAME 65535u

/*
 * Serve the card over TCP at `hostport` ("[HOST:]PORT", host 127.0.0.1 when
 * omitted, port 0 = any free port) until *stop becomes non-zero. One client at
 * a time; a connection is a card insertion (cold reset), its end a removal.
 * `on_listen` (may be NULL) is told the bound port once listening.
 */
TC_MUST_CHECK tc_err tc_transport_serve_tcp(const struct tc_card_ops *card, const char *hostport,
                                            const volatile sig_atomic_t *stop,
                                            void (*on_listen)(void *arg, uint16_t port), void *arg);

/*
 * Plug the card into pcscd through vsmartcard's vpcd driver: connect to vpcd
 * at `hostport` ("[HOST:]PORT", host 127.0.0.1 when omitted) and answer its
 * messages until *stop becomes non-zero; reconnect (a new insertion) when
 * vpcd drops the link or is not listening yet.
 */
TC_MUST_CHECK tc_err tc_transport_serve_vpcd(const struct tc_card_ops *card, const char *hostport,
                                             const volatile sig_atomic_t *stop);

static inline void tc_transport_close(struct tc_transport *t)
{
    if (t != NULL && t->close != NULL)
        t->close(t->ctx);
    if (t != NULL) {
        t->ctx = NULL;
        t->close = NULL;
    }
}

#endif
