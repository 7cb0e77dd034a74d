#include "se_util.h"

#include <stdlib.h>
#include <unistd.h>

const uint8_t se_gp_test_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                    0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
const uint8_t se_isd_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
const uint8_t se_applet_aid[TC_SE_IDENTITY_AID_LEN] = {TC_SE_IDENTITY_AID};

uint8_t se_resp[TC_SE_MAX_RESPONSE];
size_t se_resp_len;
uint16_t se_sw;

static char tmpdir[256];
static char pathbuf[512];

const char *se_tmp_path(const char *name)
{
    if (tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        (void)snprintf(tmpdir, sizeof tmpdir, "%s/tc-se-XXXXXX", base ? base : "/tmp");
        if (mkdtemp(tmpdir) == NULL) {
            tc_test_fail_at(__FILE__, __LINE__, "mkdtemp failed");
            tmpdir[0] = '\0';
            return "/nonexistent/x";
        }
    }
    (void)snprintf(pathbuf, sizeof pathbuf, "%s/%s", tmpdir, name);
    return pathbuf;
}

void se_util_cleanup(void)
{
    se_ec_thread_cleanup(); /* the main thread's P-256 contexts (no key in them) */
    if (tmpdir[0] == '\0')
        return;
    char cmd[600];
    (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    tmpdir[0] = '\0';
}

struct tc_se_card *se_card_reopen(const char *path)
{
    struct tc_se_card *card = NULL;
    uint8_t atr[TC_SE_ATR_MAX];
    size_t atr_len;
    EXPECT_OK(tc_se_open(path, TC_SE_OPEN_NO_FSYNC, &card));
    if (card == NULL)
        return NULL;
    EXPECT_OK(tc_se_power_on(card, atr, sizeof atr, &atr_len));
    return card;
}

struct tc_se_card *se_card_new(const char *name, const struct tc_se_params *p)
{
    struct tc_se_params d;
    tc_se_params_default(&d);
    char path[512];
    (void)snprintf(path, sizeof path, "%s", se_tmp_path(name));
    EXPECT_OK(tc_se_create(path, p ? p : &d, TC_SE_CREATE_FORCE));
    return se_card_reopen(path);
}

size_t se_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (tc_hex_decode(hex, strlen(hex), TC_HEX_ALLOW_SEP, out, cap, &n) != TC_OK)
        tc_test_fail_at(__FILE__, __LINE__, "bad hex in test: %s", hex);
    return n;
}

uint16_t se_tx_bytes(struct tc_se_card *card, const uint8_t *cmd, size_t len)
{
    size_t n = 0;
    se_resp_len = 0;
    se_sw = 0;
    if (tc_se_process(card, cmd, len, se_resp, sizeof se_resp, &n) != TC_OK || n < 2) {
        tc_test_fail_at(__FILE__, __LINE__, "tc_se_process failed");
        return 0;
    }
    se_resp_len = n - 2;
    se_sw = (uint16_t)(se_resp[n - 2] << 8 | se_resp[n - 1]);
    return se_sw;
}

uint16_t se_tx(struct tc_se_card *card, const char *hex)
{
    uint8_t cmd[TC_SE_MAX_COMMAND];
    size_t n = se_unhex(hex, cmd, sizeof cmd);
    return se_tx_bytes(card, cmd, n);
}

bool se_resp_is(const char *hex)
{
    uint8_t want[TC_SE_MAX_RESPONSE];
    size_t n = se_unhex(hex, want, sizeof want);
    if (n != se_resp_len || memcmp(want, se_resp, n) != 0) {
        tc_test_dump_hex("  response", se_resp, se_resp_len);
        tc_test_dump_hex("  expected", want, n);
        return false;
    }
    return true;
}

tc_err se_session_open(struct se_session *s, struct tc_se_card *card, uint8_t kvn,
                       const uint8_t *key, size_t key_len, uint8_t level, bool s16, uint8_t channel,
                       bool select_isd)
{
    memset(s, 0, sizeof *s);
    TC_GUARD(tc_se_transport(card, &s->t));
    tc_scp03_mem_provider_init(&s->mp, &s->kp);
    struct tc_scp03_keyset ks;
    TC_GUARD(tc_scp03_keyset_set(&ks, kvn, key, key, key, key_len));
    tc_err rc = tc_scp03_mem_provider_add(&s->mp, &ks);
    tc_scp03_keyset_wipe(&ks);
    TC_GUARD(rc);
    struct tc_scp03_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kvn = kvn;
    cfg.level = level;
    cfg.s16 = s16;
    cfg.channel = channel;
    cfg.aid = se_isd_aid;
    cfg.aid_len = sizeof se_isd_aid;
    cfg.select = select_isd;
    rc = tc_scp03_host_open(&s->h, &s->t, &s->kp, &cfg);
    if (rc != TC_OK) {
        /* The link does not own the card: closing it only powers it off,
         * so keep it and let the caller go on. */
        free(s->t.ctx);
        s->t.ctx = NULL;
        s->t.close = NULL;
        return rc;
    }
    s->open = true;
    return TC_OK;
}

tc_err se_session_default(struct se_session *s, struct tc_se_card *card, uint8_t level)
{
    return se_session_open(s, card, 0x30, se_gp_test_key, 16, level, false, 0, true);
}

uint16_t se_stx_apdu(struct se_session *s, const struct tc_apdu *in)
{
    size_t n = 0;
    struct tc_apdu cmd = *in;
    const struct tc_apdu *a = &cmd;
    /* The class byte names the session's logical channel. */
    if (tc_cla_encode((in->cla & 0x80u) != 0, s->h.cfg.channel, false, false, &cmd.cla) != TC_OK)
        tc_test_fail_at(__FILE__, __LINE__, "cannot encode the CLA");
    se_resp_len = 0;
    se_sw = 0;
    if (tc_scp03_host_transmit(&s->h, a, se_resp, sizeof se_resp, &n, &se_sw) != TC_OK) {
        char msg[400];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(__FILE__, __LINE__, "host transmit failed: %s", msg);
        return 0;
    }
    se_resp_len = n;
    return se_sw;
}

uint16_t se_stx(struct se_session *s, const char *hex)
{
    uint8_t cmd[TC_SE_MAX_COMMAND];
    size_t n = se_unhex(hex, cmd, sizeof cmd);
    struct tc_apdu a;
    if (tc_apdu_decode(cmd, n, &a) != TC_OK) {
        tc_test_fail_at(__FILE__, __LINE__, "bad APDU in test: %s", hex);
        return 0;
    }
    return se_stx_apdu(s, &a);
}

void se_session_close(struct se_session *s)
{
    tc_scp03_host_close(&s->h);
    tc_scp03_mem_provider_wipe(&s->mp);
    /* Closing the link would power the card off; the tests keep it on. */
    if (s->t.close != NULL) {
        s->t.close = NULL;
        free(s->t.ctx);
    }
    s->open = false;
}

size_t se_spki_p256(const uint8_t pub[65], uint8_t out[91])
{
    /* RFC 5480: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 },
     * BIT STRING 00 || point } */
    static const uint8_t prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
                                       0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    memcpy(out, prefix, sizeof prefix);
    memcpy(out + sizeof prefix, pub, 65);
    return sizeof prefix + 65;
}
