/*
 * The device agent's relay: command script in, card, response script out.
 * The agent sees only wrapped APDUs; SCP03 is between server and card.
 */
#include <stdlib.h>

#include <trustchain/ota.h>
#include <trustchain/transport.h>

#define RAPDU_MAX (65536u + 2u)

static bool is_error(uint8_t sw1)
{
    /* ISO/IEC 7816-4 §5.6: 90 and 61 normal processing, 62/63 warnings. */
    return sw1 != 0x90 && sw1 != 0x61 && sw1 != 0x62 && sw1 != 0x63;
}

tc_err tc_ota_agent_run_script(struct tc_transport *t, const uint8_t *script, size_t script_len,
                               struct tc_buf *response)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_bytes cmds[TC_OTA_SCRIPT_MAX], rsp[TC_OTA_SCRIPT_MAX];
    size_t n = 0, done = 0;
    uint8_t *mem = NULL;
    TC_ENSURE(t != NULL && t->transmit != NULL && response != NULL, TC_ERR_ARG);
    TC_GUARD(tc_ota_script_decode(script, script_len, cmds, &n));
    /* One buffer per R-APDU of a short/extended response; caps are the
     * script's, freed (and wiped) below. */
    mem = calloc(n, RAPDU_MAX);
    TC_CHECK(mem != NULL, TC_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        size_t rl = 0;
        uint8_t *r = mem + i * RAPDU_MAX;
        TC_TRY(t->transmit(t->ctx, cmds[i].p, cmds[i].len, r, RAPDU_MAX, &rl));
        TC_CHECK_MSG(rl >= 2 && rl <= RAPDU_MAX, TC_ERR_FORMAT, "card answered %zu bytes", rl);
        rsp[i] = (struct tc_ota_bytes){r, rl};
        done++;
        if (is_error(r[rl - 2]))
            break;
    }
    TC_TRY(tc_ota_response_encode(rsp, done, response));
    ret = TC_OK;
out:
    if (mem != NULL) {
        tc_memzero(mem, n * RAPDU_MAX);
        free(mem);
    }
    return ret;
}
