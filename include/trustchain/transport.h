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
