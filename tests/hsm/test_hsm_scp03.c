/*
 * The HSM as the SCP03 host's key provider, end to end: a card (the SE
 * emulator, in memory) ships with the vendor transport keyset; the HSM holds
 * that keyset (imported once) and the master key; the host opens SCP03 with
 * the HSM's transport keys, replaces them by PUT KEY with the keyset the HSM
 * derived from the card's EID (wrapped in the HSM), and a new session with
 * the new keys succeeds while the old keys fail. The same PUT KEY data is
 * produced by the software provider over the software reference keys.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <ftw.h>
#include <stdlib.h>

#include <trustchain/hsm.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>

#define TOKEN    "tc-scp03"
#define USER_PIN "user-pin-2468"
#define NO_KEY   0u /* CK_INVALID_HANDLE: a deferred key not derived yet */

static char tmpdir[256];
static struct tc_hsm_workspace ws;
static struct tc_hsm *H;
static bool setup_failed;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static struct tc_hsm *hsm(void)
{
    if (H != NULL || setup_failed)
        return H;
    setup_failed = true;
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    (void)snprintf(tmpdir, sizeof tmpdir, "%s/tc-hsm-scp03-XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp failed");
        return NULL;
    }
    char wsdir[300];
    (void)snprintf(wsdir, sizeof wsdir, "%s/ws", tmpdir);
    EXPECT_OK(tc_hsm_workspace_create(wsdir, NULL, TOKEN, &ws));
    EXPECT_OK(tc_hsm_init_token(ws.module_path, ws.softhsm_conf, TOKEN, "so-pin-1357", 11, USER_PIN,
                                strlen(USER_PIN)));
    struct tc_hsm_config c = {.module_path = ws.module_path,
                              .softhsm_conf = ws.softhsm_conf,
                              .token_label = TOKEN,
                              .pin = USER_PIN,
                              .pin_len = strlen(USER_PIN),
                              .pool_size = 2};
    EXPECT_OK(tc_hsm_open(&c, &H));
    if (H != NULL)
        setup_failed = false;
    return H;
}

/* First record of tests/vectors/hsm/diversify.txt: master 40..4F, the
 * emulator's default EID; the derived keys and KCVs computed with openssl. */
static const char *const MASTER = "404142434445464748494A4B4C4D4E4F";
static const char *const K_ENC = "ED65BA2437751E34B7B3B2433E80AB4F";
static const char *const K_MAC = "D79AE6324C27FD39B419628F19ED4F9C";
static const char *const K_DEK = "9B23DE76FABBA7ACA14148EF8AE4104E";
static const uint8_t KCVS[9] = {0x5D, 0x63, 0x73, 0xE7, 0xF1, 0x5A, 0xB4, 0x18, 0x01};

static void unhex(const char *s, uint8_t *out, size_t n)
{
    size_t len = 0;
    EXPECT_OK(tc_hex_decode(s, strlen(s), 0, out, n, &len));
    EXPECT_EQ_U(len, n);
}

static struct tc_scp03_host_config host_cfg(uint8_t kvn, uint8_t level)
{
    static const uint8_t isd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    struct tc_scp03_host_config c = {
        .kvn = kvn, .level = level, .aid = isd, .aid_len = sizeof isd, .select = true};
    return c;
}

static void test_line_put_key_through_hsm(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    struct tc_se_params sp;
    tc_se_params_default(&sp);
    struct tc_se_card *card = NULL;
    EXPECT_OK(tc_se_open_mem(&sp, &card));
    struct tc_transport t;
    memset(&t, 0, sizeof t);
    EXPECT_OK(tc_se_transport(card, &t));

    /* The HSM side: the vendor's transport keyset imported once, the master
     * key, the device keyset derived from the card's EID. */
    struct tc_hsm_keyset transport, device;
    EXPECT_OK(tc_hsm_transport_import(h, "B1", sp.kvn, sp.key_enc, sp.key_mac, sp.key_dek,
                                      sp.key_len, &transport));
    uint8_t master[16];
    unhex(MASTER, master, sizeof master);
    tc_hsm_obj m = 0;
    EXPECT_OK(tc_hsm_master_import(h, "line", master, sizeof master, &m));
    EXPECT_OK(tc_hsm_diversify(h, m, sp.eid, 16, &device));

    struct tc_scp03_key_provider cur, next;
    struct tc_hsm_scp03_provider cur_m, next_m;
    tc_hsm_scp03_provider_init(&cur_m, h, &cur);
    tc_hsm_scp03_provider_init(&next_m, h, &next);
    EXPECT_OK(tc_hsm_scp03_provider_add(&cur_m, sp.kvn, &transport));
    EXPECT_OK(tc_hsm_scp03_provider_add(&next_m, 0x01, &device));

    /* SCP03 with the transport keys, full security level. */
    struct tc_scp03_host host;
    struct tc_scp03_host_config cfg = host_cfg(sp.kvn, TC_SCP03_LEVEL_RENC);
    EXPECT_OK(tc_scp03_host_open(&host, &t, &cur, &cfg));
    /* PUT KEY: replace keyset 30 by keyset 01; the card's KCVs must match
     * the HSM's (checked inside), and they are the vector's. */
    EXPECT_OK(tc_scp03_host_put_keys(&host, &next, 0x01, sp.kvn));
    uint8_t kcv[3];
    EXPECT_OK(next.kcv(next.ctx, 0x01, TC_SCP03_KEY_ENC, kcv));
    EXPECT_MEM(kcv, 3, KCVS, 3);
    EXPECT_OK(next.kcv(next.ctx, 0x01, TC_SCP03_KEY_DEK, kcv));
    EXPECT_MEM(kcv, 3, KCVS + 6, 3);
    tc_scp03_host_close(&host);

    /* The gate: the new keys open a session, the old ones no longer do. */
    cfg = host_cfg(0x01, TC_SCP03_LEVEL_ENC_RMAC);
    EXPECT_OK(tc_scp03_host_open(&host, &t, &next, &cfg));
    tc_scp03_host_close(&host);
    cfg = host_cfg(sp.kvn, TC_SCP03_LEVEL_MAC);
    EXPECT(tc_scp03_host_open(&host, &t, &cur, &cfg) != TC_OK);
    tc_scp03_host_close(&host);

    /* Rotation in the field: a keyset from a new master (generated in the
     * HSM, value unknown to anyone) replaces keyset 01, wrapped under the
     * derived DEK of keyset 01, itself an HSM object. */
    tc_hsm_obj m2 = 0;
    struct tc_hsm_keyset rotated;
    struct tc_scp03_key_provider rot;
    struct tc_hsm_scp03_provider rot_m;
    EXPECT_OK(tc_hsm_master_generate(h, "rotation", 32, &m2));
    EXPECT_OK(tc_hsm_diversify(h, m2, sp.eid, 32, &rotated));
    tc_hsm_scp03_provider_init(&rot_m, h, &rot);
    EXPECT_OK(tc_hsm_scp03_provider_add(&rot_m, 0x02, &rotated));
    cfg = host_cfg(0x01, TC_SCP03_LEVEL_ENC);
    EXPECT_OK(tc_scp03_host_open(&host, &t, &next, &cfg));
    EXPECT_OK(tc_scp03_host_put_keys(&host, &rot, 0x02, 0x01));
    tc_scp03_host_close(&host);
    cfg = host_cfg(0x02, TC_SCP03_LEVEL_RENC);
    EXPECT_OK(tc_scp03_host_open(&host, &t, &rot, &cfg));
    tc_scp03_host_close(&host);
    cfg = host_cfg(0x01, TC_SCP03_LEVEL_MAC);
    EXPECT(tc_scp03_host_open(&host, &t, &next, &cfg) != TC_OK);
    tc_scp03_host_close(&host);

    tc_hsm_keyset_destroy(h, &rotated);
    tc_hsm_keyset_destroy(h, &device);
    tc_transport_close(&t);
    tc_se_close(card);
    tc_se_params_wipe(&sp);
}

/* The two HSM providers of a PUT KEY: the transport keyset (KVN 20, every
 * key tk) in hm_cur and the device keyset derived from MASTER for the
 * test EID (KVN 21, at once or deferred) in hm_new; label names the
 * objects. */
struct hsm_pair {
    struct tc_hsm_keyset transport, device;
    struct tc_scp03_key_provider hp_cur, hp_new;
    struct tc_hsm_scp03_provider hm_cur, hm_new;
};

static void hsm_pair(struct tc_hsm *h, const char *label, const uint8_t tk[16], bool deferred,
                     struct hsm_pair *p)
{
    uint8_t master[16], eid[16];
    unhex(MASTER, master, sizeof master);
    unhex("89049032123451234512345678901235", eid, sizeof eid);
    tc_hsm_obj m = 0;
    EXPECT_OK(tc_hsm_transport_import(h, label, 0x20, tk, tk, tk, 16, &p->transport));
    EXPECT_OK(tc_hsm_master_import(h, label, master, sizeof master, &m));
    if (deferred)
        EXPECT_OK(tc_hsm_diversify_deferred(h, m, eid, 16, &p->device));
    else
        EXPECT_OK(tc_hsm_diversify(h, m, eid, 16, &p->device));
    tc_hsm_scp03_provider_init(&p->hm_cur, h, &p->hp_cur);
    tc_hsm_scp03_provider_init(&p->hm_new, h, &p->hp_new);
    EXPECT_OK(tc_hsm_scp03_provider_add(&p->hm_cur, 0x20, &p->transport));
    EXPECT_OK(tc_hsm_scp03_provider_add(&p->hm_new, 0x21, &p->device));
    tc_memzero(master, sizeof master);
}

/* The HSM provider computes exactly what the software provider computes
 * over the same key values. */
static void test_same_as_software_provider(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    uint8_t tk[16];
    unhex("000102030405060708090A0B0C0D0E0F", tk, sizeof tk);
    struct hsm_pair p;
    hsm_pair(h, "equiv", tk, false, &p);

    /* Software reference: the same p.transport keys, the derived values. */
    struct tc_scp03_keyset ks_cur, ks_new;
    uint8_t ke[16], km[16], kd[16];
    unhex(K_ENC, ke, 16);
    unhex(K_MAC, km, 16);
    unhex(K_DEK, kd, 16);
    EXPECT_OK(tc_scp03_keyset_set(&ks_cur, 0x20, tk, tk, tk, 16));
    EXPECT_OK(tc_scp03_keyset_set(&ks_new, 0x21, ke, km, kd, 16));
    struct tc_scp03_key_provider sp_cur, sp_new;
    struct tc_scp03_mem_provider sm_cur, sm_new;
    tc_scp03_mem_provider_init(&sm_cur, &sp_cur);
    tc_scp03_mem_provider_init(&sm_new, &sp_new);
    EXPECT_OK(tc_scp03_mem_provider_add(&sm_cur, &ks_cur));
    EXPECT_OK(tc_scp03_mem_provider_add(&sm_new, &ks_new));

    size_t len = 0;
    EXPECT_OK(p.hp_new.key_len(p.hp_new.ctx, 0x21, &len));
    EXPECT_EQ_U(len, 16);
    const uint8_t context[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct tc_scp03_session_keys a, b;
    EXPECT_OK(p.hp_new.session_keys(p.hp_new.ctx, 0x21, context, sizeof context, &a));
    EXPECT_OK(sp_new.session_keys(sp_new.ctx, 0x21, context, sizeof context, &b));
    EXPECT_EQ_U(a.key_len, 16);
    EXPECT_MEM(a.s_enc, 16, b.s_enc, 16);
    EXPECT_MEM(a.s_mac, 16, b.s_mac, 16);
    EXPECT_MEM(a.s_rmac, 16, b.s_rmac, 16);
    const uint8_t seq[3] = {0x00, 0x00, 0x2A};
    const uint8_t aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    uint8_t ca[16], cb[16];
    EXPECT_OK(p.hp_new.card_challenge(p.hp_new.ctx, 0x21, seq, aid, sizeof aid, ca, 8));
    EXPECT_OK(sp_new.card_challenge(sp_new.ctx, 0x21, seq, aid, sizeof aid, cb, 8));
    EXPECT_MEM(ca, 8, cb, 8);

    uint8_t hbuf[TC_SCP03_PUT_KEY_DATA_MAX], sbuf[TC_SCP03_PUT_KEY_DATA_MAX];
    uint8_t hk[TC_SCP03_KCVS_LEN], sk[TC_SCP03_KCVS_LEN];
    struct tc_buf hb, sb;
    tc_buf_init_fixed(&hb, hbuf, sizeof hbuf);
    tc_buf_init_fixed(&sb, sbuf, sizeof sbuf);
    EXPECT_OK(tc_scp03_put_key_data(&p.hp_cur, 0x20, &p.hp_new, 0x21, &hb, hk));
    EXPECT_OK(tc_scp03_put_key_data(&sp_cur, 0x20, &sp_new, 0x21, &sb, sk));
    EXPECT_MEM(hbuf, hb.len, sbuf, sb.len);
    EXPECT_MEM(hk, sizeof hk, KCVS, sizeof KCVS);

    /* Rejections: unknown KVN, a software source, a non-extractable
     * source (the p.transport keys never leave the HSM, not even wrapped). */
    uint8_t w[32];
    size_t wl = 0;
    EXPECT_ERR(p.hp_cur.key_len(p.hp_cur.ctx, 0x55, &len), TC_ERR_NOT_FOUND);
    EXPECT_STR(tc_error_last()->msg, "the HSM holds no SCP03 keyset with KVN 55");
    EXPECT_ERR(p.hp_cur.session_keys(p.hp_cur.ctx, 0x55, context, sizeof context, &a),
               TC_ERR_NOT_FOUND);
    EXPECT_ERR(
        p.hp_cur.wrap_key(p.hp_cur.ctx, 0x20, &sp_new, 0x21, TC_SCP03_KEY_ENC, w, sizeof w, &wl),
        TC_ERR_UNSUPPORTED);
    EXPECT_ERR(
        p.hp_cur.wrap_key(p.hp_cur.ctx, 0x20, &p.hp_cur, 0x20, TC_SCP03_KEY_ENC, w, sizeof w, &wl),
        TC_ERR_STATE);
    EXPECT_ERR(p.hp_cur.kcv(p.hp_cur.ctx, 0x20, (enum tc_scp03_key_id)4, w), TC_ERR_ARG);
    EXPECT_ERR(p.hp_cur.card_challenge(p.hp_cur.ctx, 0x20, seq, aid, sizeof aid, ca, 12),
               TC_ERR_RANGE);
    struct tc_hsm_keyset bad = p.device;
    bad.key_len = 24;
    EXPECT_ERR(tc_hsm_scp03_provider_add(&p.hm_cur, 0x22, &bad), TC_ERR_RANGE);
    for (uint8_t k = 0x22; k < 0x22 + TC_HSM_SCP03_KEYSETS - 1; k++)
        EXPECT_OK(tc_hsm_scp03_provider_add(&p.hm_cur, k, &p.device));
    EXPECT_ERR(tc_hsm_scp03_provider_add(&p.hm_cur, 0x40, &p.device), TC_ERR_NOMEM);

    tc_memzero(&a, sizeof a);
    tc_memzero(&b, sizeof b);
    tc_scp03_keyset_wipe(&ks_cur);
    tc_scp03_keyset_wipe(&ks_new);
    tc_scp03_mem_provider_wipe(&sm_cur);
    tc_scp03_mem_provider_wipe(&sm_new);
    tc_hsm_keyset_destroy(h, &p.device);
}

/* A deferred keyset (tc_hsm_diversify_deferred) in the provider gives the
 * same bytes as the software provider while deriving only the keys that
 * are used: a PUT KEY of it derives none of its own keys (blocks and KCVs
 * come from the one-off copies), a session derives ENC and MAC, wrapping
 * under it derives its DEK. */
static void test_deferred_keyset(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    uint8_t tk[16], ke[16], km[16], kd[16];
    unhex("000102030405060708090A0B0C0D0E0F", tk, sizeof tk);
    unhex(K_ENC, ke, 16);
    unhex(K_MAC, km, 16);
    unhex(K_DEK, kd, 16);
    struct hsm_pair p;
    hsm_pair(h, "deferred", tk, true, &p);
    EXPECT(tc_hsm_scp03_provider_keyset(&p.hm_new, 0x22) == NULL);
    struct tc_hsm_keyset *held = tc_hsm_scp03_provider_keyset(&p.hm_new, 0x21);
    EXPECT(held != NULL);
    if (held == NULL)
        return;

    struct tc_scp03_keyset ks_cur, ks_new;
    EXPECT_OK(tc_scp03_keyset_set(&ks_cur, 0x20, tk, tk, tk, 16));
    EXPECT_OK(tc_scp03_keyset_set(&ks_new, 0x21, ke, km, kd, 16));
    struct tc_scp03_key_provider sp_cur, sp_new;
    struct tc_scp03_mem_provider sm_cur, sm_new;
    tc_scp03_mem_provider_init(&sm_cur, &sp_cur);
    tc_scp03_mem_provider_init(&sm_new, &sp_new);
    EXPECT_OK(tc_scp03_mem_provider_add(&sm_cur, &ks_cur));
    EXPECT_OK(tc_scp03_mem_provider_add(&sm_new, &ks_new));

    /* PUT KEY of the deferred keyset: the software provider's bytes and
     * the vector's KCVs, and not one of its keys derived. */
    uint8_t hbuf[TC_SCP03_PUT_KEY_DATA_MAX], sbuf[TC_SCP03_PUT_KEY_DATA_MAX];
    uint8_t hk[TC_SCP03_KCVS_LEN], sk[TC_SCP03_KCVS_LEN];
    struct tc_buf hb, sb;
    tc_buf_init_fixed(&hb, hbuf, sizeof hbuf);
    tc_buf_init_fixed(&sb, sbuf, sizeof sbuf);
    EXPECT_OK(tc_scp03_put_key_data(&p.hp_cur, 0x20, &p.hp_new, 0x21, &hb, hk));
    EXPECT_OK(tc_scp03_put_key_data(&sp_cur, 0x20, &sp_new, 0x21, &sb, sk));
    EXPECT_MEM(hbuf, hb.len, sbuf, sb.len);
    EXPECT_MEM(hk, sizeof hk, KCVS, sizeof KCVS);
    EXPECT_EQ_U(held->enc, NO_KEY);
    EXPECT_EQ_U(held->mac, NO_KEY);
    EXPECT_EQ_U(held->dek, NO_KEY);
    EXPECT_EQ_U(p.hm_new.sets[0].kcv_known, 7);
    uint8_t kcv[3];
    EXPECT_OK(p.hp_new.kcv(p.hp_new.ctx, 0x21, TC_SCP03_KEY_DEK, kcv));
    EXPECT_MEM(kcv, 3, KCVS + 6, 3);
    EXPECT_EQ_U(held->dek, NO_KEY);

    /* A session with it: ENC and MAC derived, the DEK still not. */
    const uint8_t context[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct tc_scp03_session_keys a, b;
    EXPECT_OK(p.hp_new.session_keys(p.hp_new.ctx, 0x21, context, sizeof context, &a));
    EXPECT_OK(sp_new.session_keys(sp_new.ctx, 0x21, context, sizeof context, &b));
    EXPECT_MEM(a.s_enc, 16, b.s_enc, 16);
    EXPECT_MEM(a.s_mac, 16, b.s_mac, 16);
    EXPECT_MEM(a.s_rmac, 16, b.s_rmac, 16);
    EXPECT(held->enc != NO_KEY);
    EXPECT(held->mac != NO_KEY);
    EXPECT_EQ_U(held->dek, NO_KEY);

    /* As the current keyset: its DEK is derived to wrap the next one (the
     * p.transport keys stand in as the source, refused as not extractable
     * after the DEK was made), and it wraps what the software DEK wraps. */
    uint8_t w[32], sw[32];
    size_t wl = 0, swl = 0;
    EXPECT_ERR(
        p.hp_new.wrap_key(p.hp_new.ctx, 0x21, &p.hp_cur, 0x20, TC_SCP03_KEY_ENC, w, sizeof w, &wl),
        TC_ERR_STATE);
    EXPECT(held->dek != NO_KEY);
    EXPECT_OK(
        p.hp_new.wrap_key(p.hp_new.ctx, 0x21, &p.hp_new, 0x21, TC_SCP03_KEY_MAC, w, sizeof w, &wl));
    EXPECT_OK(
        sp_new.wrap_key(sp_new.ctx, 0x21, &sp_new, 0x21, TC_SCP03_KEY_MAC, sw, sizeof sw, &swl));
    EXPECT_MEM(w, wl, sw, swl);
    /* A deferred key that cannot be derived fails where it is first used. */
    struct tc_hsm_keyset bad;
    uint8_t eid[16];
    unhex("89049032123451234512345678901235", eid, sizeof eid);
    EXPECT_OK(tc_hsm_diversify_deferred(h, p.transport.enc, eid, 16, &bad));
    EXPECT_OK(tc_hsm_scp03_provider_add(&p.hm_cur, 0x23, &bad));
    EXPECT_ERR(p.hp_cur.session_keys(p.hp_cur.ctx, 0x23, context, sizeof context, &a),
               TC_ERR_STATE);
    EXPECT_ERR(
        p.hp_cur.wrap_key(p.hp_cur.ctx, 0x23, &p.hp_new, 0x21, TC_SCP03_KEY_ENC, w, sizeof w, &wl),
        TC_ERR_STATE);

    tc_memzero(&a, sizeof a);
    tc_memzero(&b, sizeof b);
    tc_scp03_keyset_wipe(&ks_cur);
    tc_scp03_keyset_wipe(&ks_new);
    tc_scp03_mem_provider_wipe(&sm_cur);
    tc_scp03_mem_provider_wipe(&sm_new);
    tc_hsm_keyset_destroy(h, held);
}

static const struct tc_test_case cases[] = {
    {"line_put_key_through_hsm", test_line_put_key_through_hsm},
    {"same_as_software_provider", test_same_as_software_provider},
    {"deferred_keyset", test_deferred_keyset},
};

int main(int argc, char **argv)
{
    int rc = tc_test_run("hsm_scp03", cases, TC_ARRAY_LEN(cases), argc, argv);
    tc_hsm_close(H);
    if (tmpdir[0] != '\0')
        (void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
