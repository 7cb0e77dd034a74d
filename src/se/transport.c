/*
 * The in-process link: a struct tc_transport whose transmit is a function
 * call into the card.
 */
#include <stdlib.h>

#include "se_internal.h"

struct se_link {
    struct tc_se_card *card;
    bool owned;
};

static tc_err link_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                            size_t resp_size, size_t *resp_len)
{
    struct se_link *l = ctx;
    TC_ENSURE(l != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(resp_size >= 2, TC_ERR_SPACE, "response buffer too small");
    if (resp_size >= TC_SE_MAX_RESPONSE)
        return tc_se_process(l->card, cmd, cmd_len, resp, resp_size, resp_len);
    /* A smaller caller buffer: go through a full-size one. */
    static _Thread_local uint8_t big[TC_SE_MAX_RESPONSE];
    size_t n = 0;
    tc_err rc = tc_se_process(l->card, cmd, cmd_len, big, sizeof big, &n);
    if (rc == TC_OK && n > resp_size)
        rc = TC_FAIL(TC_ERR_SPACE, "response of %zu bytes does not fit %zu", n, resp_size);
    if (rc == TC_OK) {
        for (size_t i = 0; i < n; i++)
            resp[i] = big[i];
        *resp_len = n;
    }
    tc_memzero(big, n);
    return rc;
}

static tc_err link_reset(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    struct se_link *l = ctx;
    TC_ENSURE(l != NULL, TC_ERR_ARG);
    return tc_se_reset(l->card, atr, atr_size, atr_len);
}

static void link_close(void *ctx)
{
    struct se_link *l = ctx;
    if (l == NULL)
        return;
    if (l->owned)
        tc_se_close(l->card);
    else
        tc_se_power_off(l->card);
    free(l);
}

static tc_err link_make(struct tc_se_card *card, bool owned, struct tc_transport *out)
{
    struct se_link *l = calloc(1, sizeof *l);
    TC_ENSURE_MSG(l != NULL, TC_ERR_NOMEM, "cannot allocate a link");
    l->card = card;
    l->owned = owned;
    if (!tc_se_powered(card)) {
        uint8_t atr[TC_SE_ATR_MAX];
        size_t atr_len = 0;
        tc_err rc = tc_se_power_on(card, atr, sizeof atr, &atr_len);
        if (rc != TC_OK) {
            free(l);
            return rc;
        }
    }
    out->ctx = l;
    out->name = "emulated secure element";
    out->transmit = link_transmit;
    out->reset = link_reset;
    out->close = link_close;
    return TC_OK;
}

tc_err tc_se_transport(struct tc_se_card *card, struct tc_transport *out)
{
    TC_ENSURE(card != NULL && out != NULL, TC_ERR_ARG);
    return link_make(card, false, out);
}

tc_err tc_se_transport_open(const char *path, unsigned flags, struct tc_transport *out)
{
    TC_ENSURE(path != NULL && out != NULL, TC_ERR_ARG);
    struct tc_se_card *card = NULL;
    TC_GUARD(tc_se_open(path, flags, &card));
    tc_err rc = link_make(card, true, out);
    if (rc != TC_OK)
        tc_se_close(card);
    return rc;
}
