/*
 * The identity applet commands the agent's identity read (agent.c) and the
 * card provider's SIGN (provider.c) share. `resp` holds
 * TC_TRANSPORT_MAX_RESPONSE bytes.
 */
#ifndef TC_OTA_CARD_INT_H
#define TC_OTA_CARD_INT_H

#include <trustchain/core.h>
#include <trustchain/transport.h>

/* One APDU: the response data length (without SW) and the SW. */
TC_MUST_CHECK tc_err tc_ota_card_cmd(struct tc_transport *t, const uint8_t *cmd, size_t cmd_len,
                                     uint8_t *resp, size_t *data_len, uint16_t *sw);
/*
 * SELECT the identity applet. When it answers 6A82 and allow_locked, SELECT
 * the ISD A000000151000000: 6283 means CARD_LOCKED (GP CS 2.3 §5.1.1.4,
 * only the ISD selectable; it answers the identity SIGN, docs/se.md) and
 * *locked is set. TC_ERR_CARD otherwise, naming the SW.
 */
TC_MUST_CHECK tc_err tc_ota_card_select_identity(struct tc_transport *t, uint8_t *resp,
                                                 bool allow_locked, bool *locked);

#endif
