/*
 * Helpers shared by the secure element tests: temporary card images, plain
 * APDUs from hex, and SCP03 sessions through the scp03 host over the
 * in-process link.
 */
#ifndef TC_TESTS_SE_UTIL_H
#define TC_TESTS_SE_UTIL_H

#include "harness.h"

#include <trustchain/scp03.h>
#include <trustchain/se.h>

#include "se/se_internal.h"

extern const uint8_t se_gp_test_key[16];
extern const uint8_t se_isd_aid[8];
extern const uint8_t se_applet_aid[TC_SE_IDENTITY_AID_LEN];

/* A fresh temp directory (removed by se_util_cleanup) and a path in it. */
const char *se_tmp_path(const char *name);
void se_util_cleanup(void);

/* Create an image with the default params (or p) and open + power it. */
struct tc_se_card *se_card_new(const char *name, const struct tc_se_params *p);
struct tc_se_card *se_card_reopen(const char *path);

/* The last response. */
extern uint8_t se_resp[TC_SE_MAX_RESPONSE];
extern size_t se_resp_len; /* data only */
extern uint16_t se_sw;

/* Send a plain APDU given as hex; returns the SW (data in se_resp). */
uint16_t se_tx(struct tc_se_card *card, const char *hex);
uint16_t se_tx_bytes(struct tc_se_card *card, const uint8_t *cmd, size_t len);

/* An SCP03 session on `card` (keyset kvn, the given keys, level). When
 * select_isd, the ISD is selected first; the channel is cfg's. */
struct se_session {
    struct tc_transport t;
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host h;
    bool open;
};
tc_err se_session_open(struct se_session *s, struct tc_se_card *card, uint8_t kvn,
                       const uint8_t *key, size_t key_len, uint8_t level, bool s16, uint8_t channel,
                       bool select_isd);
/* Open with the factory keys (KVN 30, GP test keys). */
tc_err se_session_default(struct se_session *s, struct tc_se_card *card, uint8_t level);
/* Send a plain command (hex, without SM) through the session. */
uint16_t se_stx(struct se_session *s, const char *hex);
uint16_t se_stx_apdu(struct se_session *s, const struct tc_apdu *a);
void se_session_close(struct se_session *s);

/* SubjectPublicKeyInfo DER of an uncompressed P-256 point. */
size_t se_spki_p256(const uint8_t pub[65], uint8_t out[91]);

/* Hex helpers. */
size_t se_unhex(const char *hex, uint8_t *out, size_t cap);
bool se_resp_is(const char *hex);

#endif
