/*
 * SCP03 against published vectors (tests/vectors/scp03/, sources named in
 * each file): sessions recorded from real cards (pySim), kaoh/globalplatform
 * sessions, OpenJavaCard wrap sequences and blaufish's KDF vectors. Both the
 * host and the card side must reproduce the recorded bytes exactly.
 */
#include "harness.h"

#include <stdlib.h>

#include "scp03/internal.h"
#include "scp03/loop.h"

static uint8_t *hexf(const struct tc_vec *v, const char *key, size_t *len)
{
    return tc_vec_hex(v, key, len);
}

/* ------------------------------------------------------------------ KDF */

static void test_kdf_blaufish(void)
{
    struct tc_vec v;
    size_t n = 0;
    if (!tc_vec_open(&v, "scp03/blaufish_kdf.txt"))
        return;
    while (tc_vec_next(&v)) {
        size_t kl = 0, cl = 0, ol = 0;
        uint8_t *k = hexf(&v, "KEY_IN", &kl);
        uint8_t *ctx = hexf(&v, "CONTEXT", &cl);
        uint8_t *want = hexf(&v, "KEY_OUT", &ol);
        uint64_t c = 0;
        char cs[8] = "0x";
        const char *cv = tc_vec_get(&v, "CONSTANT");
        EXPECT(cv != NULL && strlen(cv) <= 4);
        if (cv != NULL && strlen(cv) <= 4) {
            memcpy(cs + 2, cv, strlen(cv) + 1);
            EXPECT_OK(tc_parse_uint(cs, 0xFF, &c));
        }
        uint8_t out[64] = {0};
        if (k != NULL && ctx != NULL && want != NULL) {
            EXPECT_OK(tc_scp03_kdf(k, kl, (uint8_t)c, ctx, cl, out, ol));
            EXPECT_MEM(out, ol, want, ol);
            n++;
        }
        free(k);
        free(ctx);
        free(want);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 40);
}

/* ------------------------------------------------------------------ sessions */

struct session_vec {
    uint8_t enc[32], mac[32], dek[32];
    size_t key_len;
    uint8_t level;
    uint8_t *iu_cmd, *iu_resp, *ea_cmd, *aid;
    size_t iu_cmd_len, iu_resp_len, ea_cmd_len, aid_len;
};

static bool load_session(const struct tc_vec *v, struct session_vec *sv)
{
    size_t a = 0, b = 0, c = 0;
    uint8_t *e = hexf(v, "KEY_ENC", &a);
    uint8_t *m = hexf(v, "KEY_MAC", &b);
    uint8_t *d = hexf(v, "KEY_DEK", &c);
    size_t ll = 0;
    uint8_t *lv = hexf(v, "LEVEL", &ll);
    bool ok =
        e != NULL && m != NULL && d != NULL && lv != NULL && a == b && b == c && a <= 32 && ll == 1;
    if (ok) {
        memcpy(sv->enc, e, a);
        memcpy(sv->mac, m, a);
        memcpy(sv->dek, d, a);
        sv->key_len = a;
        sv->level = lv[0];
    }
    free(e);
    free(m);
    free(d);
    free(lv);
    sv->iu_cmd = hexf(v, "IU_CMD", &sv->iu_cmd_len);
    sv->iu_resp = hexf(v, "IU_RESP", &sv->iu_resp_len);
    sv->ea_cmd = hexf(v, "EA_CMD", &sv->ea_cmd_len);
    sv->aid = hexf(v, "AID", &sv->aid_len);
    return ok && sv->iu_cmd != NULL && sv->iu_resp != NULL && sv->ea_cmd != NULL &&
           sv->aid != NULL && sv->iu_cmd_len == 14 && sv->iu_resp_len >= 29;
}

static void free_session(struct session_vec *sv)
{
    free(sv->iu_cmd);
    free(sv->iu_resp);
    free(sv->ea_cmd);
    free(sv->aid);
}

/* Open a host session from the recorded handshake; checks IU and EA bytes. */
static bool host_from_vector(const struct session_vec *sv, struct tc_scp03_mem_provider *mem,
                             struct tc_scp03_key_provider *kp, struct tc_scp03_host *h)
{
    struct tc_scp03_keyset ks;
    uint8_t buf[64];
    struct tc_buf b;
    tc_scp03_mem_provider_init(mem, kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, sv->iu_resp[10], sv->enc, sv->mac, sv->dek, sv->key_len));
    EXPECT_OK(tc_scp03_mem_provider_add(mem, &ks));
    const struct tc_scp03_host_config cfg = {
        .kvn = sv->iu_cmd[2],
        .level = sv->level,
        .aid = sv->aid,
        .aid_len = sv->aid_len,
        .host_challenge = sv->iu_cmd + 5,
    };
    EXPECT_OK(tc_scp03_host_init(h, kp, &cfg));
    tc_buf_init_fixed(&b, buf, sizeof buf);
    EXPECT_OK(tc_scp03_host_initialize_update(h, &b));
    EXPECT_MEM(b.data, b.len, sv->iu_cmd, sv->iu_cmd_len);
    tc_buf_init_fixed(&b, buf, sizeof buf);
    tc_err rc = tc_scp03_host_external_authenticate(h, sv->iu_resp, sv->iu_resp_len, &b);
    EXPECT_OK(rc);
    if (rc != TC_OK)
        return false;
    EXPECT_MEM(b.data, b.len, sv->ea_cmd, sv->ea_cmd_len);
    EXPECT_OK(tc_scp03_host_authenticated(h, 0x9000));
    return tc_test_failures_in_case == 0;
}

/* A card configured to reproduce the recorded INITIALIZE UPDATE response. */
static bool card_from_vector(const struct session_vec *sv, struct loop *l)
{
    const uint8_t *r = sv->iu_resp;
    uint8_t i_param = r[12];
    struct tc_scp03_keyset ks;
    loop_init(l, i_param);
    memcpy(l->cfg.div_data, r, TC_SCP03_DIV_DATA_LEN);
    memcpy(l->cfg.aid, sv->aid, sv->aid_len);
    l->cfg.aid_len = (uint8_t)sv->aid_len;
    size_t n = sv->iu_resp_len;
    uint32_t seq = ((uint32_t)r[n - 3] << 16) | ((uint32_t)r[n - 2] << 8) | r[n - 1];
    EXPECT_OK(tc_scp03_keyset_set(&ks, r[10], sv->enc, sv->mac, sv->dek, sv->key_len));
    test_store_add(&l->store, &ks, seq - 1);
    uint8_t resp[64];
    size_t rlen = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_card_initialize_update(&l->card, sv->iu_cmd, sv->iu_cmd_len, resp,
                                              sizeof resp, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    EXPECT_MEM(resp, rlen, sv->iu_resp, sv->iu_resp_len);
    EXPECT_OK(tc_scp03_card_external_authenticate(&l->card, sv->ea_cmd, sv->ea_cmd_len, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    EXPECT_EQ_U(tc_scp03_card_level(&l->card), sv->level);
    return tc_test_failures_in_case == 0;
}

static void host_wrap_expect(struct tc_scp03_host *h, const uint8_t *plain, size_t plain_len,
                             const uint8_t *want, size_t want_len)
{
    struct tc_apdu a;
    uint8_t buf[600];
    struct tc_buf b;
    tc_buf_init_fixed(&b, buf, sizeof buf);
    EXPECT_OK(tc_apdu_decode(plain, plain_len, &a));
    EXPECT_OK(tc_scp03_host_wrap(h, &a, &b));
    EXPECT_MEM(b.data, b.len, want, want_len);
}

static void card_unwrap_expect(struct loop *l, const uint8_t *wrapped, size_t wlen,
                               const uint8_t *plain, size_t plain_len)
{
    uint8_t out[600];
    size_t olen = 0;
    uint16_t sw = 0;
    struct tc_scp03_card_cmd c;
    EXPECT_OK(tc_scp03_card_unwrap(&l->card, wrapped, wlen, out, sizeof out, &olen, &c, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    EXPECT_MEM(out, olen, plain, plain_len);
    EXPECT(c.was_secured);
}

static void test_pysim_sessions(void)
{
    struct tc_vec v;
    size_t sessions = 0;
    if (!tc_vec_open(&v, "scp03/pysim_sessions.txt"))
        return;
    static const char *const cases[4][2] = {{"CASE1_PLAIN", "CASE1"},
                                            {"CASE2_PLAIN", "CASE2"},
                                            {"CASE3_PLAIN", "CASE3"},
                                            {"CASE4_PLAIN", "CASE4"}};
    while (tc_vec_next(&v)) {
        struct session_vec sv = {0};
        if (!load_session(&v, &sv)) {
            tc_test_fail_at(__FILE__, __LINE__, "session vector incomplete");
            free_session(&sv);
            continue;
        }
        size_t gp = 0, gw = 0, gr = 0, grp = 0;
        uint8_t *eid_plain = hexf(&v, "GET_EID_PLAIN", &gp);
        uint8_t *eid = hexf(&v, "GET_EID", &gw);
        uint8_t *eid_resp = hexf(&v, "GET_EID_RESP", &gr);
        uint8_t *eid_resp_plain = hexf(&v, "GET_EID_RESP_PLAIN", &grp);

        /* Host side: the recorded commands, byte for byte. */
        struct tc_scp03_mem_provider mem;
        struct tc_scp03_key_provider kp;
        struct tc_scp03_host h;
        if (host_from_vector(&sv, &mem, &kp, &h)) {
            host_wrap_expect(&h, eid_plain, gp, eid, gw);
            uint8_t resp[300], out[300];
            size_t olen = 0;
            uint16_t sw = 0;
            memcpy(resp, eid_resp, gr);
            resp[gr] = 0x90;
            resp[gr + 1] = 0x00;
            EXPECT_OK(tc_scp03_host_unwrap(&h, resp, gr + 2, out, sizeof out, &olen, &sw));
            EXPECT_EQ_U(sw, 0x9000);
            EXPECT_MEM(out, olen, eid_resp_plain, grp);
            for (size_t i = 0; i < 4; i++) {
                size_t pl = 0, wl = 0;
                uint8_t *p = hexf(&v, cases[i][0], &pl);
                uint8_t *w = hexf(&v, cases[i][1], &wl);
                host_wrap_expect(&h, p, pl, w, wl);
                free(p);
                free(w);
            }
        }
        tc_scp03_host_wipe(&h);
        tc_scp03_mem_provider_wipe(&mem);

        /* Card side: the same session from the card's end. */
        static struct loop l;
        if (card_from_vector(&sv, &l)) {
            card_unwrap_expect(&l, eid, gw, eid_plain, gp);
            uint8_t out[300];
            size_t olen = 0;
            EXPECT_OK(
                tc_scp03_card_wrap(&l.card, eid_resp_plain, grp, 0x9000, out, sizeof out, &olen));
            EXPECT(olen == gr + 2 && olen >= 2 && out[olen - 2] == 0x90 && out[olen - 1] == 0);
            EXPECT_MEM(out, olen - 2, eid_resp, gr);
            for (size_t i = 0; i < 4; i++) {
                size_t pl = 0, wl = 0;
                uint8_t *p = hexf(&v, cases[i][0], &pl);
                uint8_t *w = hexf(&v, cases[i][1], &wl);
                card_unwrap_expect(&l, w, wl, p, pl);
                free(p);
                free(w);
            }
        }
        tc_scp03_card_reset(&l.card);
        free(eid_plain);
        free(eid);
        free(eid_resp);
        free(eid_resp_plain);
        free_session(&sv);
        sessions++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(sessions, 9);
}

static void test_kaoh_sessions(void)
{
    struct tc_vec v;
    size_t sessions = 0;
    if (!tc_vec_open(&v, "scp03/kaoh_sessions.txt"))
        return;
    while (tc_vec_next(&v)) {
        struct session_vec sv = {0};
        if (!load_session(&v, &sv)) {
            tc_test_fail_at(__FILE__, __LINE__, "session vector incomplete");
            free_session(&sv);
            continue;
        }
        struct tc_scp03_mem_provider mem;
        struct tc_scp03_key_provider kp;
        struct tc_scp03_host h;
        static struct loop l;
        bool host_ok = host_from_vector(&sv, &mem, &kp, &h);
        bool card_ok = card_from_vector(&sv, &l);
        if (host_ok && tc_vec_get(&v, "S_ENC") != NULL) {
            size_t a = 0, b = 0, c = 0;
            uint8_t *se = hexf(&v, "S_ENC", &a);
            uint8_t *sm = hexf(&v, "S_MAC", &b);
            uint8_t *sr = hexf(&v, "S_RMAC", &c);
            EXPECT_MEM(h.s.keys.s_enc, h.s.keys.key_len, se, a);
            EXPECT_MEM(h.s.keys.s_mac, h.s.keys.key_len, sm, b);
            EXPECT_MEM(h.s.keys.s_rmac, h.s.keys.key_len, sr, c);
            EXPECT_MEM(l.card.s.keys.s_enc, l.card.s.keys.key_len, se, a);
            free(se);
            free(sm);
            free(sr);
        }
        for (int i = 1; i <= 4 && host_ok && card_ok; i++) {
            char kp_name[32], kw_name[32], kr_name[32];
            (void)snprintf(kp_name, sizeof kp_name, "COMMAND%d_PLAIN", i);
            (void)snprintf(kw_name, sizeof kw_name, "COMMAND%d", i);
            (void)snprintf(kr_name, sizeof kr_name, "RESPONSE%d", i);
            if (tc_vec_get(&v, kp_name) == NULL)
                break;
            size_t pl = 0, wl = 0;
            uint8_t *p = hexf(&v, kp_name, &pl);
            uint8_t *w = hexf(&v, kw_name, &wl);
            host_wrap_expect(&h, p, pl, w, wl);
            card_unwrap_expect(&l, w, wl, p, pl);
            if (tc_vec_get(&v, kr_name) != NULL) {
                /* Level 03 has no R-MAC: the response passes unchanged. */
                size_t rl = 0, olen = 0;
                uint16_t sw = 0;
                uint8_t out[400];
                uint8_t *r = hexf(&v, kr_name, &rl);
                EXPECT_OK(tc_scp03_host_unwrap(&h, r, rl, out, sizeof out, &olen, &sw));
                EXPECT_EQ_U(sw, 0x9000);
                EXPECT_MEM(out, olen, r, rl - 2);
                free(r);
            }
            free(p);
            free(w);
        }
        tc_scp03_host_wipe(&h);
        tc_scp03_mem_provider_wipe(&mem);
        tc_scp03_card_reset(&l.card);
        free_session(&sv);
        sessions++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(sessions, 5);
}

/* ------------------------------------------------------------------ OpenJavaCard */

static void test_openjavacard(void)
{
    struct tc_vec v;
    struct tc_scp03_session s;
    size_t steps = 0, derivations = 0, blocks = 0;
    if (!tc_vec_open(&v, "scp03/openjavacard.txt"))
        return;
    memset(&s, 0, sizeof s);
    while (tc_vec_next(&v)) {
        size_t kl = 0;
        uint8_t *key = hexf(&v, "KEY", &kl);
        if (key == NULL || kl != 16) {
            free(key);
            continue;
        }
        struct tc_scp03_keyset ks;
        EXPECT_OK(tc_scp03_keyset_set(&ks, 0x01, key, key, key, kl));
        if (tc_vec_get(&v, "HOST_CHALLENGE") != NULL) {
            /* SCP03DerivationTest: session keys through the key provider. */
            struct tc_scp03_mem_provider mem;
            struct tc_scp03_key_provider kp;
            struct tc_scp03_session_keys sk;
            size_t hl = 0, cl = 0, a = 0, b = 0, c = 0;
            uint8_t *hc = hexf(&v, "HOST_CHALLENGE", &hl);
            uint8_t *cc = hexf(&v, "CARD_CHALLENGE", &cl);
            uint8_t *se = hexf(&v, "S_ENC", &a);
            uint8_t *sm = hexf(&v, "S_MAC", &b);
            uint8_t *sr = hexf(&v, "S_RMAC", &c);
            uint8_t ctx[32];
            memcpy(ctx, hc, hl);
            memcpy(ctx + hl, cc, cl);
            tc_scp03_mem_provider_init(&mem, &kp);
            EXPECT_OK(tc_scp03_mem_provider_add(&mem, &ks));
            EXPECT_OK(kp.session_keys(kp.ctx, 0x01, ctx, hl + cl, &sk));
            EXPECT_MEM(sk.s_enc, sk.key_len, se, a);
            EXPECT_MEM(sk.s_mac, sk.key_len, sm, b);
            EXPECT_MEM(sk.s_rmac, sk.key_len, sr, c);
            tc_memzero(&sk, sizeof sk);
            tc_scp03_mem_provider_wipe(&mem);
            free(hc);
            free(cc);
            free(se);
            free(sm);
            free(sr);
            derivations++;
        } else if (tc_vec_get(&v, "NEW_KEY") != NULL) {
            /* encryptSensitiveData: KL || AES-CBC(Key-DEK, 0, key). */
            struct tc_scp03_mem_provider cur_mem, new_mem;
            struct tc_scp03_key_provider cur, src;
            struct tc_scp03_keyset nks;
            size_t nl = 0, el = 0, wl = 0;
            uint8_t *nk = hexf(&v, "NEW_KEY", &nl);
            uint8_t *enc = hexf(&v, "ENCRYPTED", &el);
            uint8_t wrapped[32];
            tc_scp03_mem_provider_init(&cur_mem, &cur);
            tc_scp03_mem_provider_init(&new_mem, &src);
            EXPECT_OK(tc_scp03_mem_provider_add(&cur_mem, &ks));
            EXPECT_OK(tc_scp03_keyset_set(&nks, 0x02, nk, nk, nk, nl));
            EXPECT_OK(tc_scp03_mem_provider_add(&new_mem, &nks));
            EXPECT_OK(cur.wrap_key(cur.ctx, 0x01, &src, 0x02, TC_SCP03_KEY_DEK, wrapped,
                                   sizeof wrapped, &wl));
            EXPECT(el == 17 && enc[0] == nl);
            EXPECT_MEM(wrapped, wl, enc + 1, el - 1);
            /* The same bytes inside a PUT KEY key data block. */
            uint8_t data[TC_SCP03_PUT_KEY_DATA_MAX], kcvs[TC_SCP03_KCVS_LEN];
            struct tc_buf b;
            tc_buf_init_fixed(&b, data, sizeof data);
            EXPECT_OK(tc_scp03_put_key_data(&cur, 0x01, &src, 0x02, &b, kcvs));
            EXPECT_EQ_U(b.len, 1 + 3 * 23);
            EXPECT(data[0] == 0x02 && data[1] == 0x88 && data[2] == 0x11);
            EXPECT_MEM(data + 3, 17, enc, el);
            tc_scp03_mem_provider_wipe(&cur_mem);
            tc_scp03_mem_provider_wipe(&new_mem);
            free(nk);
            free(enc);
            blocks++;
        } else {
            /* SCP03WrapperTest: the core's C-DEC and C-MAC over CLA 14. */
            uint64_t step = 0;
            size_t pl = 0, wl = 0, ll = 0;
            EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "STEP"), 100, &step));
            uint8_t *lv = hexf(&v, "LEVEL", &ll);
            uint8_t *p = hexf(&v, "PLAIN", &pl);
            uint8_t *w = hexf(&v, "WRAPPED", &wl);
            if (step == 0) {
                memset(&s, 0, sizeof s);
                s.keys.key_len = 16;
                memcpy(s.keys.s_enc, key, 16);
                memcpy(s.keys.s_mac, key, 16);
                memcpy(s.keys.s_rmac, key, 16);
                s.s_len = 8;
                s.level = lv[0];
                s.state = TC_SCP03_STATE_AUTHENTICATED;
            }
            struct tc_apdu a;
            EXPECT_OK(tc_apdu_decode(p, pl, &a));
            uint8_t d[64], mac[16], out[80];
            size_t dl = a.lc;
            memcpy(d, a.data, a.lc);
            s.enc_counter++;
            if ((s.level & TC_SCP03_SL_CDEC) != 0)
                EXPECT_OK(tc_scp03_encrypt(&s, false, d, a.lc, sizeof d, &dl));
            EXPECT_OK(tc_scp03_cmac(&s, 0x14, a.ins, a.p1, a.p2, false, d, dl, mac));
            memcpy(s.mac_chain, mac, 16);
            size_t o = 0;
            out[o++] = 0x14;
            out[o++] = a.ins;
            out[o++] = a.p1;
            out[o++] = a.p2;
            out[o++] = (uint8_t)(dl + 8);
            memcpy(out + o, d, dl);
            o += dl;
            memcpy(out + o, mac, 8);
            o += 8;
            out[o++] = 0x00;
            EXPECT_MEM(out, o, w, wl);
            free(lv);
            free(p);
            free(w);
            steps++;
        }
        tc_scp03_keyset_wipe(&ks);
        free(key);
    }
    tc_vec_close(&v);
    tc_scp03_session_wipe(&s);
    EXPECT_EQ_U(derivations, 1);
    EXPECT_EQ_U(blocks, 2);
    EXPECT_EQ_U(steps, 16);
}

/* ------------------------------------------------------------------ asterix / Valade */

static void test_asterix_valade(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "scp03/asterix_valade.txt"))
        return;
    EXPECT(tc_vec_next(&v));
    size_t n[20] = {0};
    uint8_t *aid = hexf(&v, "AID", &n[0]);
    uint8_t *ke = hexf(&v, "KEY_ENC", &n[1]);
    uint8_t *km = hexf(&v, "KEY_MAC", &n[2]);
    uint8_t *kd = hexf(&v, "KEY_DEK", &n[3]);
    uint8_t *div = hexf(&v, "DIV_DATA", &n[4]);
    uint8_t *seq = hexf(&v, "SEQ", &n[5]);
    uint8_t *iu = hexf(&v, "IU_CMD", &n[6]);
    uint8_t *cc = hexf(&v, "CARD_CHALLENGE", &n[7]);
    uint8_t *se = hexf(&v, "S_ENC", &n[8]);
    uint8_t *sm = hexf(&v, "S_MAC", &n[9]);
    uint8_t *sr = hexf(&v, "S_RMAC", &n[10]);
    uint8_t *ccg = hexf(&v, "CARD_CRYPTOGRAM", &n[11]);
    uint8_t *hcg = hexf(&v, "HOST_CRYPTOGRAM", &n[12]);
    uint8_t *iur = hexf(&v, "IU_RESP", &n[13]);
    uint8_t *ea = hexf(&v, "EA_CMD_L01", &n[14]);
    uint8_t *chain = hexf(&v, "EA_MAC_CHAIN", &n[15]);
    uint8_t *cp = hexf(&v, "COMMAND_PLAIN", &n[16]);
    uint8_t *ced = hexf(&v, "COMMAND_ENC_DATA", &n[17]);
    tc_vec_close(&v);
    if (tc_test_failures_in_case > 0 || n[1] != 16 || n[5] != 3 || n[6] != 14)
        goto out;

    for (int level = 1; level <= 3; level += 2) {
        /* The card reproduces the reference INITIALIZE UPDATE response. */
        static struct loop l;
        struct tc_scp03_keyset ks;
        loop_init(&l, 0x70);
        memcpy(l.cfg.aid, aid, n[0]);
        l.cfg.aid_len = (uint8_t)n[0];
        memcpy(l.cfg.div_data, div, n[4]);
        EXPECT_OK(tc_scp03_keyset_set(&ks, 0x30, ke, km, kd, 16));
        test_store_add(&l.store, &ks,
                       (((uint32_t)seq[0] << 16) | ((uint32_t)seq[1] << 8) | seq[2]) - 1);
        uint8_t resp[64], cmd[64];
        size_t rlen = 0;
        uint16_t sw = 0;
        EXPECT_OK(
            tc_scp03_card_initialize_update(&l.card, iu, n[6], resp, sizeof resp, &rlen, &sw));
        EXPECT_MEM(resp, rlen, iur, n[13]);
        EXPECT_MEM(l.card.s.card_challenge, 8, cc, n[7]);
        EXPECT_MEM(l.card.s.keys.s_enc, 16, se, n[8]);
        EXPECT_MEM(l.card.s.keys.s_mac, 16, sm, n[9]);
        EXPECT_MEM(l.card.s.keys.s_rmac, 16, sr, n[10]);
        EXPECT_MEM(l.card.s.card_cryptogram, 8, ccg, n[11]);
        EXPECT_MEM(l.card.s.host_cryptogram, 8, hcg, n[12]);

        /* The host reproduces INITIALIZE UPDATE and EXTERNAL AUTHENTICATE. */
        struct tc_scp03_mem_provider mem;
        struct tc_scp03_key_provider kp;
        struct tc_scp03_host h;
        tc_scp03_mem_provider_init(&mem, &kp);
        EXPECT_OK(tc_scp03_mem_provider_add(&mem, &ks));
        const struct tc_scp03_host_config cfg = {.kvn = 0x30,
                                                 .level = (uint8_t)level,
                                                 .aid = aid,
                                                 .aid_len = n[0],
                                                 .host_challenge = iu + 5};
        EXPECT_OK(tc_scp03_host_init(&h, &kp, &cfg));
        struct tc_buf b;
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_OK(tc_scp03_host_initialize_update(&h, &b));
        EXPECT_MEM(b.data, b.len, iu, n[6]);
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_OK(tc_scp03_host_external_authenticate(&h, resp, rlen, &b));
        if (level == 1) {
            EXPECT_MEM(b.data, b.len, ea, n[14]);
            EXPECT_MEM(h.s.mac_chain, 16, chain, n[15]);
        }
        EXPECT_OK(tc_scp03_card_external_authenticate(&l.card, b.data, b.len, &sw));
        EXPECT_EQ_U(sw, 0x9000);
        EXPECT_OK(tc_scp03_host_authenticated(&h, sw));
        if (level == 3) {
            /* The first command at C-DEC: the encrypted data field. */
            struct tc_apdu a;
            uint8_t w[128];
            EXPECT_OK(tc_apdu_decode(cp, n[16], &a));
            tc_buf_init_fixed(&b, w, sizeof w);
            EXPECT_OK(tc_scp03_host_wrap(&h, &a, &b));
            EXPECT(b.len == 5 + n[17] + 8);
            EXPECT_MEM(w + 5, b.len - 13, ced, n[17]);
            card_unwrap_expect(&l, w, b.len, cp, n[16]);
        }
        tc_scp03_host_wipe(&h);
        tc_scp03_mem_provider_wipe(&mem);
        tc_scp03_keyset_wipe(&ks);
        tc_scp03_card_reset(&l.card);
    }
out:
    free(aid);
    free(ke);
    free(km);
    free(kd);
    free(div);
    free(seq);
    free(iu);
    free(cc);
    free(se);
    free(sm);
    free(sr);
    free(ccg);
    free(hcg);
    free(iur);
    free(ea);
    free(chain);
    free(cp);
    free(ced);
}

static const struct tc_test_case cases[] = {
    {"asterix_valade", test_asterix_valade}, {"kdf_blaufish", test_kdf_blaufish},
    {"pysim_sessions", test_pysim_sessions}, {"kaoh_sessions", test_kaoh_sessions},
    {"openjavacard", test_openjavacard},
};

TC_TEST_MAIN("scp03_vectors", cases)
