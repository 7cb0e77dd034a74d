/*
 * SCP03 host and card interoperating in-process (every key length x S8/S16
 * x security level x logical channel x challenge mode, short, extended and
 * chained APDUs, 61xx and 6Cxx), BEGIN/END R-MAC SESSION, PUT KEY / DELETE
 * KEY, and every rejection path on both ends.
 */
#include "harness.h"

#include <stdlib.h>

#include "scp03/internal.h"
#include "scp03/loop.h"

static struct loop L;
static struct tc_scp03_mem_provider MEM;
static struct tc_scp03_key_provider KP;
static struct tc_scp03_host H;

static struct tc_scp03_host_config base_cfg(uint8_t level, bool s16, uint8_t channel)
{
    struct tc_scp03_host_config cfg = {
        .kvn = 0x30,
        .level = level,
        .s16 = s16,
        .channel = channel,
        .aid = LOOP_AID,
        .aid_len = sizeof LOOP_AID,
    };
    return cfg;
}

/* Card with keyset 30 (key_len), host provider with the same keys. */
static void setup(uint8_t i_param, size_t key_len)
{
    struct tc_scp03_keyset ks;
    loop_init(&L, i_param);
    loop_add_keys(&L, 0x30, key_len, 0x10, 0);
    tc_scp03_mem_provider_init(&MEM, &KP);
    make_keyset(&ks, 0x30, key_len, 0x10);
    EXPECT_OK(tc_scp03_mem_provider_add(&MEM, &ks));
    tc_scp03_keyset_wipe(&ks);
}

static tc_err open_level(uint8_t level, bool s16, uint8_t channel)
{
    const struct tc_scp03_host_config cfg = base_cfg(level, s16, channel);
    return tc_scp03_host_open(&H, &L.t, &KP, &cfg);
}

static uint8_t gp_cla(uint8_t channel)
{
    uint8_t cla = 0;
    if (tc_cla_encode(true, channel, false, false, &cla) != TC_OK)
        return 0;
    return cla;
}

/* Wrap a command on the host without sending it. */
static size_t wrap_only(const struct tc_apdu *a, uint8_t *out, size_t size)
{
    struct tc_buf b;
    tc_buf_init_fixed(&b, out, size);
    EXPECT_OK(tc_scp03_host_wrap(&H, a, &b));
    return b.len;
}

static tc_err wrap_only_rc(const struct tc_apdu *a, uint8_t *out, size_t size)
{
    struct tc_buf b;
    tc_buf_init_fixed(&b, out, size);
    return tc_scp03_host_wrap(&H, a, &b);
}

/* Send raw bytes to the card; the status word it answered. */
static uint16_t send_raw(const uint8_t *cmd, size_t len)
{
    uint8_t resp[70000];
    size_t rlen = 0;
    EXPECT_OK(L.t.transmit(L.t.ctx, cmd, len, resp, sizeof resp, &rlen));
    if (rlen < 2)
        return 0;
    return (uint16_t)((resp[rlen - 2] << 8) | resp[rlen - 1]);
}

static struct tc_apdu echo_cmd(uint8_t channel, const uint8_t *data, size_t n)
{
    struct tc_apdu a = {.cla = gp_cla(channel),
                        .ins = 0xEE,
                        .p1 = 0x00,
                        .p2 = 0x00,
                        .data = n > 0 ? data : NULL,
                        .lc = n,
                        .le = 256,
                        .has_le = true};
    return a;
}

/* ------------------------------------------------------------------ interop */

static uint8_t big_in[4096];
static uint8_t big_out[70000];

static void exchange_all(uint8_t channel, bool extended, const char *what)
{
    size_t rlen = 0;
    uint16_t sw = 0;
    const uint8_t cla = gp_cla(channel);
    H.cfg.extended = extended;
    /* Case 1: no data, no Le. */
    struct tc_apdu c1 = {.cla = cla, .ins = 0xEE};
    EXPECT_OK(tc_scp03_host_transmit(&H, &c1, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x9000 && rlen == 0);
    /* Case 2: Le only. */
    struct tc_apdu c2 = {.cla = cla, .ins = 0xEE, .le = 32, .has_le = true};
    EXPECT_OK(tc_scp03_host_transmit(&H, &c2, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x9000 && rlen == 32 && big_out[31] == (uint8_t)(31 * 7));
    /* Cases 3 and 4. */
    struct tc_apdu c3 = echo_cmd(channel, big_in, 5);
    c3.has_le = false;
    EXPECT_OK(tc_scp03_host_transmit(&H, &c3, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x9000);
    EXPECT_MEM(big_out, rlen, big_in, 5);
    struct tc_apdu c4 = echo_cmd(channel, big_in, 200);
    EXPECT_OK(tc_scp03_host_transmit(&H, &c4, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_MEM(big_out, rlen, big_in, 200);
    /* Exactly one block of data: padding still added. */
    struct tc_apdu c16 = echo_cmd(channel, big_in + 3, 16);
    EXPECT_OK(tc_scp03_host_transmit(&H, &c16, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_MEM(big_out, rlen, big_in + 3, 16);
    /* Larger than a short APDU: extended length or command chaining. On
     * channel 19 a chained secure GP command would need CLA FF, which ISO
     * forbids: the host refuses and extended length is the way. */
    struct tc_apdu c5 = echo_cmd(channel, big_in, 1000);
    unsigned before = L.commands;
    if (channel == 19 && !extended && H.s.level != 0) {
        EXPECT_ERR(tc_scp03_host_transmit(&H, &c5, big_out, sizeof big_out, &rlen, &sw),
                   TC_ERR_UNSUPPORTED);
        H.cfg.extended = extended = true;
    }
    EXPECT_OK(tc_scp03_host_transmit(&H, &c5, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x9000);
    EXPECT_MEM(big_out, rlen, big_in, 1000);
    if (!extended && L.t0_chunk == 0)
        EXPECT(L.commands - before >= 4); /* 1000+ bytes in 255-byte segments */
    /* Extended Le. */
    if (extended) {
        struct tc_apdu c6 = {.cla = cla, .ins = 0xEE, .le = 3000, .has_le = true};
        EXPECT_OK(tc_scp03_host_transmit(&H, &c6, big_out, sizeof big_out, &rlen, &sw));
        EXPECT(sw == 0x9000 && rlen == 3000 && big_out[2999] == (uint8_t)(2999 * 7));
    }
    /* 6Cxx: re-sent with the right Le, wrapped anew. */
    struct tc_apdu c7 = {.cla = cla, .ins = 0xEC, .le = 5, .has_le = true};
    EXPECT_OK(tc_scp03_host_transmit(&H, &c7, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x9000 && rlen == 16 && big_out[0] == 0x5A);
    /* A warning carries protected data; an error comes bare. */
    struct tc_apdu c8 = {.cla = cla, .ins = 0xE0, .le = 256, .has_le = true};
    EXPECT_OK(tc_scp03_host_transmit(&H, &c8, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x6310 && rlen == 4 && big_out[3] == 0x33);
    struct tc_apdu c9 = {.cla = cla, .ins = 0xE2, .le = 256, .has_le = true};
    EXPECT_OK(tc_scp03_host_transmit(&H, &c9, big_out, sizeof big_out, &rlen, &sw));
    EXPECT(sw == 0x6A82 && rlen == 0);
    EXPECT(tc_scp03_card_authenticated(&L.card));
    if (tc_test_failures_in_case > 0)
        (void)fprintf(stderr, "  in %s\n", what);
}

static void test_interop_matrix(void)
{
    static const size_t key_lens[] = {16, 24, 32};
    static const uint8_t levels[] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33};
    static const uint8_t channels[] = {0, 1, 3, 4, 12, 19};
    for (size_t i = 0; i < sizeof big_in; i++)
        big_in[i] = (uint8_t)(i * 31u + 5u);
    unsigned sessions = 0;
    for (size_t k = 0; k < TC_ARRAY_LEN(key_lens); k++)
        for (int s16 = 0; s16 < 2; s16++)
            for (size_t lv = 0; lv < TC_ARRAY_LEN(levels); lv++)
                for (size_t ch = 0; ch < TC_ARRAY_LEN(channels); ch++)
                    for (int pseudo = 0; pseudo < 2; pseudo++) {
                        if (tc_test_failures_in_case > 0)
                            return;
                        char what[96];
                        (void)snprintf(what, sizeof what,
                                       "AES-%zu S%d level %02X channel %u %s challenge",
                                       key_lens[k] * 8, s16 ? 16 : 8, levels[lv], channels[ch],
                                       pseudo ? "pseudo-random" : "random");
                        uint8_t i_param = (uint8_t)((s16 ? TC_SCP03_I_S16 : 0) |
                                                    (pseudo ? TC_SCP03_I_PSEUDO_RANDOM : 0) |
                                                    TC_SCP03_I_RMAC | TC_SCP03_I_RENC);
                        setup(i_param, key_lens[k]);
                        EXPECT_OK(open_level(levels[lv], s16 != 0, channels[ch]));
                        EXPECT_EQ_U(tc_scp03_card_level(&L.card), levels[lv]);
                        EXPECT_EQ_U(L.card.s.channel, channels[ch]);
                        exchange_all(channels[ch], (sessions & 1u) != 0, what);
                        exchange_all(channels[ch], (sessions & 1u) == 0, what);
                        /* T=0 style responses through GET RESPONSE. */
                        L.t0_chunk = 200;
                        exchange_all(channels[ch], false, what);
                        L.t0_chunk = 0;
                        tc_scp03_host_close(&H);
                        sessions++;
                    }
    EXPECT_EQ_U(sessions, 3 * 2 * 6 * 6 * 2);
}

static void test_rmac_session(void)
{
    static const uint8_t levels[] = {0x01, 0x03};
    uint8_t data[40];
    memset(data, 0x42, sizeof data);
    for (size_t i = 0; i < TC_ARRAY_LEN(levels); i++) {
        for (int s16 = 0; s16 < 2; s16++) {
            setup((uint8_t)(0x70 | (s16 ? 1 : 0)), 16);
            EXPECT_OK(open_level(levels[i], s16 != 0, 2));
            bool renc = (levels[i] & TC_SCP03_SL_CDEC) != 0;
            EXPECT_OK(tc_scp03_host_begin_rmac(&H, renc));
            uint8_t want = (uint8_t)(levels[i] | 0x10 | (renc ? 0x20 : 0));
            EXPECT_EQ_U(tc_scp03_card_level(&L.card), want);
            EXPECT_EQ_U(H.s.level, want);
            struct tc_apdu a = echo_cmd(2, data, sizeof data);
            size_t rlen = 0;
            uint16_t sw = 0;
            EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
            EXPECT_MEM(big_out, rlen, data, sizeof data);
            /* A second BEGIN is refused by the host. */
            EXPECT_ERR(tc_scp03_host_begin_rmac(&H, false), TC_ERR_STATE);
            EXPECT_OK(tc_scp03_host_end_rmac(&H));
            EXPECT_EQ_U(tc_scp03_card_level(&L.card), levels[i]);
            EXPECT_EQ_U(H.s.level, levels[i]);
            EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
            EXPECT_MEM(big_out, rlen, data, sizeof data);
            EXPECT_ERR(tc_scp03_host_end_rmac(&H), TC_ERR_STATE);
            tc_scp03_host_close(&H);
        }
    }
    /* R-ENC without C-DEC, and R-MAC on a card without it, are refused. */
    setup(0x70, 16);
    EXPECT_OK(open_level(0x01, false, 0));
    EXPECT_ERR(tc_scp03_host_begin_rmac(&H, true), TC_ERR_STATE);
    setup(0x10, 16);
    EXPECT_OK(open_level(0x03, false, 0));
    EXPECT_ERR(tc_scp03_host_begin_rmac(&H, false), TC_ERR_UNSUPPORTED);
    /* The card refuses it too (BEGIN sent as a plain wrapped command). */
    struct tc_apdu b = {.cla = gp_cla(0), .ins = 0x7A, .p1 = 0x10, .p2 = 0x01};
    size_t rlen = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&H, &b, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x6A86);
    /* END without BEGIN. */
    struct tc_apdu e = {.cla = gp_cla(0), .ins = 0x78, .p1 = 0x00, .p2 = 0x03};
    EXPECT_OK(tc_scp03_host_transmit(&H, &e, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x6985);
    tc_scp03_host_close(&H);
}

/* ------------------------------------------------------------------ rejections: commands */

static void open_for_reject(uint8_t level)
{
    setup(0x70, 16);
    EXPECT_OK(open_level(level, false, 0));
}

static void expect_aborted(void)
{
    EXPECT_EQ_U(L.card.s.state, TC_SCP03_STATE_ABORTED);
    EXPECT_EQ_U(tc_scp03_card_level(&L.card), 0);
    /* Session keys are gone. */
    static const uint8_t zero[32] = {0};
    EXPECT_MEM(L.card.s.keys.s_mac, 32, zero, 32);
    EXPECT_MEM(L.card.dek, 32, zero, 32);
    /* Later commands are refused until a new INITIALIZE UPDATE. */
    uint8_t w[300];
    struct tc_apdu a = echo_cmd(0, big_in, 3);
    size_t n = wrap_only(&a, w, sizeof w);
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    const uint8_t plain[] = {0x80, 0xEE, 0x00, 0x00, 0x01, 0x01};
    EXPECT_EQ_U(send_raw(plain, sizeof plain), 0x6982);
    tc_scp03_host_close(&H);
    /* A new session works. */
    EXPECT_OK(open_level(0x03, false, 0));
    size_t rlen = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    tc_scp03_host_close(&H);
}

static void test_reject_tampered_mac(void)
{
    uint8_t w[300];
    for (uint8_t level = 0x01; level <= 0x03; level = (uint8_t)(level + 2)) {
        open_for_reject(level);
        struct tc_apdu a = echo_cmd(0, big_in, 10);
        size_t n = wrap_only(&a, w, sizeof w);
        w[n - 2] ^= 0x01; /* last C-MAC byte (Le follows) */
        EXPECT_EQ_U(send_raw(w, n), 0x6982);
        expect_aborted();
    }
}

static void test_reject_tampered_ciphertext(void)
{
    uint8_t w[300];
    open_for_reject(0x03);
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    size_t n = wrap_only(&a, w, sizeof w);
    w[5] ^= 0x80;
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
    /* Tampered header (P1) under a valid MAC. */
    open_for_reject(0x01);
    n = wrap_only(&a, w, sizeof w);
    w[2] ^= 0x01;
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
}

/* A command whose C-MAC is right but whose decrypted data is not padded:
 * only the padding check can catch it. */
static size_t craft_encrypted(const uint8_t *plain16x, size_t n, uint8_t *out)
{
    struct tc_scp03_session *s = &H.s;
    uint8_t icv[16], d[64], mac[16];
    s->enc_counter++;
    EXPECT_OK(tc_scp03_icv(s, false, icv));
    memcpy(d, plain16x, n);
    if (n % 16 == 0)
        EXPECT_OK(tc_aes_cbc_encrypt(s->keys.s_enc, s->keys.key_len, icv, d, n, d));
    EXPECT_OK(tc_scp03_cmac(s, 0x84, 0xEE, 0, 0, false, d, n, mac));
    memcpy(s->mac_chain, mac, 16);
    size_t o = 0;
    out[o++] = 0x84;
    out[o++] = 0xEE;
    out[o++] = 0;
    out[o++] = 0;
    out[o++] = (uint8_t)(n + 8);
    memcpy(out + o, d, n);
    o += n;
    memcpy(out + o, mac, 8);
    return o + 8;
}

static void test_reject_bad_padding(void)
{
    uint8_t w[100], p[32];
    open_for_reject(0x03);
    memset(p, 0x41, sizeof p); /* no 80 marker anywhere */
    size_t n = craft_encrypted(p, 16, w);
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
    /* Padding marker followed by non-zero bytes. */
    open_for_reject(0x03);
    memset(p, 0, sizeof p);
    p[10] = 0x80;
    p[15] = 0x01;
    n = craft_encrypted(p, 16, w);
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
    /* Ciphertext that is not a whole number of blocks. */
    open_for_reject(0x03);
    n = craft_encrypted(p, 12, w);
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
    /* Only padding (an encrypted empty field). */
    open_for_reject(0x03);
    memset(p, 0, sizeof p);
    p[0] = 0x80;
    n = craft_encrypted(p, 16, w);
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
    /* Sanity: the same crafting with valid padding is accepted. */
    open_for_reject(0x03);
    memset(p, 0x41, sizeof p);
    p[5] = 0x80;
    memset(p + 6, 0, 10);
    n = craft_encrypted(p, 16, w);
    EXPECT_EQ_U(send_raw(w, n), 0x9000);
    tc_scp03_host_close(&H);
}

static void test_reject_replay_and_reorder(void)
{
    uint8_t a1[300], a2[300];
    open_for_reject(0x03);
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    size_t n1 = wrap_only(&a, a1, sizeof a1);
    EXPECT_EQ_U(send_raw(a1, n1), 0x9000);
    EXPECT_EQ_U(send_raw(a1, n1), 0x6982); /* replay */
    expect_aborted();

    open_for_reject(0x01);
    n1 = wrap_only(&a, a1, sizeof a1);
    size_t n2 = wrap_only(&a, a2, sizeof a2);
    EXPECT_EQ_U(send_raw(a2, n2), 0x6982); /* reordered: second first */
    expect_aborted();

    /* Dropped command: the next one fails. */
    open_for_reject(0x01);
    (void)wrap_only(&a, a1, sizeof a1);
    n2 = wrap_only(&a, a2, sizeof a2);
    EXPECT_EQ_U(send_raw(a2, n2), 0x6982);
    expect_aborted();
}

static void test_reject_skipped_counter(void)
{
    uint8_t w[300];
    open_for_reject(0x03);
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    /* The MAC chain is right; only the encryption counter jumped. A wrong
     * ICV garbles the first CBC block only, so it shows in the padding of a
     * one-block field; in general the MAC chain, which moves in step with
     * the counter, is what catches a lost command. */
    H.s.enc_counter++;
    size_t n = wrap_only(&a, w, sizeof w);
    EXPECT_EQ_U(send_raw(w, n), 0x6982);
    expect_aborted();
    /* A data-less command still advances the counter on both ends. */
    open_for_reject(0x03);
    struct tc_apdu c1 = {.cla = 0x80, .ins = 0xEE};
    size_t rlen = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&H, &c1, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_EQ_U(H.s.enc_counter, 1);
    a.lc = 30;
    EXPECT_EQ_U(L.card.s.enc_counter, 1);
    EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    EXPECT_EQ_U(L.card.s.enc_counter, 2);
    tc_scp03_host_close(&H);
}

static void test_reject_truncated_and_unprotected(void)
{
    uint8_t w[300];
    open_for_reject(0x01);
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    a.has_le = false;
    size_t n = wrap_only(&a, w, sizeof w);
    EXPECT_EQ_U(send_raw(w, n - 1), 0x6700); /* Lc promises more */
    expect_aborted();

    open_for_reject(0x01);
    n = wrap_only(&a, w, sizeof w);
    w[4] = (uint8_t)(w[4] - 1); /* one MAC byte cut, Lc adjusted */
    EXPECT_EQ_U(send_raw(w, n - 1), 0x6982);
    expect_aborted();

    open_for_reject(0x01);
    const uint8_t tiny[] = {0x84, 0xEE, 0x00, 0x00, 0x04, 1, 2, 3, 4};
    EXPECT_EQ_U(send_raw(tiny, sizeof tiny), 0x6982); /* shorter than a C-MAC */
    expect_aborted();

    /* No C-MAC at a level that needs one. */
    open_for_reject(0x01);
    const uint8_t plain[] = {0x80, 0xEE, 0x00, 0x00, 0x01, 0x01};
    EXPECT_EQ_U(send_raw(plain, sizeof plain), 0x6982);
    expect_aborted();

    /* Secure messaging with no session at all. */
    setup(0x70, 16);
    const uint8_t sm[] = {0x84, 0xEE, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_EQ_U(send_raw(sm, sizeof sm), 0x6982);
    /* A plain command without a session passes (level 00 rules). */
    EXPECT_EQ_U(send_raw(plain, sizeof plain), 0x9000);
}

/* ------------------------------------------------------------------ rejections: handshake */

/* Run INITIALIZE UPDATE by hand; returns the card's response data. */
static size_t do_iu(uint8_t *resp, size_t size)
{
    uint8_t cmd[64];
    struct tc_buf b;
    size_t rlen = 0;
    uint16_t sw = 0;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_initialize_update(&H, &b));
    EXPECT_OK(tc_scp03_card_initialize_update(&L.card, cmd, b.len, resp, size, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    return rlen;
}

static void init_host(uint8_t level, bool s16)
{
    const struct tc_scp03_host_config cfg = base_cfg(level, s16, 0);
    EXPECT_OK(tc_scp03_host_init(&H, &KP, &cfg));
}

/* EXTERNAL AUTHENTICATE with a chosen level and cryptogram, valid C-MAC. */
static size_t craft_ea(uint8_t level, const uint8_t *cryptogram, uint8_t *out)
{
    struct tc_scp03_session *s = &H.s;
    uint8_t mac[16];
    memset(s->mac_chain, 0, 16);
    EXPECT_OK(tc_scp03_cmac(s, 0x84, 0x82, level, 0, false, cryptogram, s->s_len, mac));
    size_t o = 0;
    out[o++] = 0x84;
    out[o++] = 0x82;
    out[o++] = level;
    out[o++] = 0;
    out[o++] = (uint8_t)(2 * s->s_len);
    memcpy(out + o, cryptogram, s->s_len);
    o += s->s_len;
    memcpy(out + o, mac, s->s_len);
    return o + s->s_len;
}

static void test_reject_cryptograms(void)
{
    uint8_t resp[64], cmd[64], bad[16];
    uint16_t sw = 0;
    /* Wrong host cryptogram: 6300, counted; blocked at the limit. */
    setup(0x70, 16);
    L.cfg.max_auth_failures = 2;
    for (int round = 0; round < 2; round++) {
        init_host(0x03, false);
        size_t rl = do_iu(resp, sizeof resp);
        struct tc_buf b;
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rl, &b));
        memcpy(bad, H.s.host_cryptogram, 8);
        bad[round] ^= 0x20;
        size_t n = craft_ea(0x03, bad, cmd);
        EXPECT_ERR(tc_scp03_card_external_authenticate(&L.card, cmd, n, &sw), TC_ERR_AUTH);
        EXPECT_EQ_U(sw, 0x6300);
        EXPECT_EQ_U(L.store.failures[0], (unsigned)round + 1);
        EXPECT_EQ_U(L.card.s.state, TC_SCP03_STATE_ABORTED);
    }
    init_host(0x03, false);
    uint8_t iu[64];
    struct tc_buf b;
    tc_buf_init_fixed(&b, iu, sizeof iu);
    EXPECT_OK(tc_scp03_host_initialize_update(&H, &b));
    size_t rlen = 0;
    EXPECT_ERR(tc_scp03_card_initialize_update(&L.card, iu, b.len, resp, sizeof resp, &rlen, &sw),
               TC_ERR_AUTH);
    EXPECT_EQ_U(sw, 0x6983);

    /* A success resets the counter. */
    setup(0x70, 16);
    L.cfg.max_auth_failures = 3;
    init_host(0x03, false);
    size_t rl = do_iu(resp, sizeof resp);
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rl, &b));
    memcpy(bad, H.s.host_cryptogram, 8);
    bad[7] ^= 1;
    size_t n = craft_ea(0x03, bad, cmd);
    EXPECT_ERR(tc_scp03_card_external_authenticate(&L.card, cmd, n, &sw), TC_ERR_AUTH);
    EXPECT_EQ_U(L.store.failures[0], 1);
    EXPECT_OK(open_level(0x03, false, 0));
    EXPECT_EQ_U(L.store.failures[0], 0);
    tc_scp03_host_close(&H);

    /* EXTERNAL AUTHENTICATE with a bad C-MAC: 6982, also counted. */
    setup(0x70, 16);
    init_host(0x01, false);
    rl = do_iu(resp, sizeof resp);
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rl, &b));
    cmd[b.len - 1] ^= 1;
    EXPECT_ERR(tc_scp03_card_external_authenticate(&L.card, cmd, b.len, &sw), TC_ERR_AUTH);
    EXPECT_EQ_U(sw, 0x6982);
    EXPECT_EQ_U(L.store.failures[0], 1);

    /* Wrong card cryptogram: the host refuses to authenticate. */
    setup(0x70, 16);
    init_host(0x03, false);
    rl = do_iu(resp, sizeof resp);
    resp[10 + 3 + 8] ^= 0x01; /* first cryptogram byte */
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_ERR(tc_scp03_host_external_authenticate(&H, resp, rl, &b), TC_ERR_VERIFY);
    EXPECT(strstr(tc_error_last()->msg, "card cryptogram") != NULL);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
    EXPECT_EQ_U(b.len, 0);

    /* Wrong keys altogether (host provider differs from the card). */
    setup(0x70, 16);
    struct tc_scp03_keyset other;
    make_keyset(&other, 0x30, 16, 0x77);
    EXPECT_OK(tc_scp03_mem_provider_add(&MEM, &other));
    EXPECT_ERR(open_level(0x03, false, 0), TC_ERR_VERIFY);
}

static void test_reject_pseudo_random_challenge(void)
{
    uint8_t resp[64], cmd[64];
    struct tc_buf b;
    for (int s16 = 0; s16 < 2; s16++) {
        setup((uint8_t)(0x70 | s16), 24);
        init_host(0x03, s16 != 0);
        size_t rl = do_iu(resp, sizeof resp);
        resp[13] ^= 0x40; /* first card challenge byte */
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_ERR(tc_scp03_host_external_authenticate(&H, resp, rl, &b), TC_ERR_VERIFY);
        EXPECT(strstr(tc_error_last()->msg, "pseudo-random") != NULL);
        /* A different sequence counter does not match the challenge either. */
        init_host(0x03, s16 != 0);
        rl = do_iu(resp, sizeof resp);
        resp[rl - 1] ^= 0x01;
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_ERR(tc_scp03_host_external_authenticate(&H, resp, rl, &b), TC_ERR_VERIFY);
        /* Without the SD AID the host cannot check, so it refuses. */
        init_host(0x03, s16 != 0);
        H.cfg.aid = NULL;
        rl = do_iu(resp, sizeof resp);
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_ERR(tc_scp03_host_external_authenticate(&H, resp, rl, &b), TC_ERR_ARG);
    }
    /* The sequence counter moves on with every INITIALIZE UPDATE. */
    setup(0x70, 16);
    EXPECT_OK(open_level(0x01, false, 0));
    EXPECT_EQ_U(H.seq, 1);
    EXPECT_OK(open_level(0x01, false, 0));
    EXPECT_EQ_U(H.seq, 2);
    EXPECT_EQ_U(L.store.seq[0], 2);
    tc_scp03_host_close(&H);
}

static void test_reject_levels(void)
{
    uint8_t resp[64], cmd[64];
    uint16_t sw = 0;
    struct tc_buf b;
    /* The host refuses a level the card's i does not offer. */
    static const struct {
        uint8_t i, level;
    } refused[] = {{0x00, 0x11}, {0x10, 0x13}, {0x20, 0x33}, {0x30, 0x33}};
    for (size_t k = 0; k < TC_ARRAY_LEN(refused); k++) {
        setup(refused[k].i, 16);
        unsigned before = L.commands;
        EXPECT_ERR(open_level(refused[k].level, false, 0), TC_ERR_UNSUPPORTED);
        EXPECT_EQ_U(L.commands - before, 1); /* no EXTERNAL AUTHENTICATE sent */
    }
    /* The card refuses it as well, and invalid levels. */
    static const uint8_t bad_levels[] = {0x11, 0x02, 0x10, 0x31, 0x07, 0x83};
    for (size_t k = 0; k < TC_ARRAY_LEN(bad_levels); k++) {
        setup(0x00, 16);
        init_host(0x01, false);
        size_t rl = do_iu(resp, sizeof resp);
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rl, &b));
        size_t n = craft_ea(bad_levels[k], H.s.host_cryptogram, cmd);
        EXPECT_ERR(tc_scp03_card_external_authenticate(&L.card, cmd, n, &sw), TC_ERR_UNSUPPORTED);
        EXPECT_EQ_U(sw, 0x6A86);
        EXPECT(!tc_scp03_card_authenticated(&L.card));
    }
    /* The host configuration itself. */
    struct tc_scp03_host_config cfg = base_cfg(0x12, false, 0);
    EXPECT_ERR(tc_scp03_host_init(&H, &KP, &cfg), TC_ERR_ARG);
    cfg = base_cfg(0x01, false, 20);
    EXPECT_ERR(tc_scp03_host_init(&H, &KP, &cfg), TC_ERR_ARG);
}

static void test_reject_sequence_exhausted(void)
{
    setup(0x70, 16);
    L.store.seq[0] = TC_SCP03_SEQ_MAX - 1;
    EXPECT_OK(open_level(0x01, false, 0));
    EXPECT_EQ_U(H.seq, TC_SCP03_SEQ_MAX);
    EXPECT_ERR(open_level(0x01, false, 0), TC_ERR_CARD);
    EXPECT_EQ_U(L.last_sw, 0x6985);
    EXPECT_EQ_U(L.store.seq[0], TC_SCP03_SEQ_MAX);
    EXPECT(!tc_scp03_card_authenticated(&L.card));
}

static void test_reject_handshake_format(void)
{
    uint8_t resp[64], cmd[64];
    uint16_t sw = 0;
    size_t rlen = 0;
    struct tc_buf b;
    /* Card side: unknown KVN, wrong Lc (S8 host, S16 card), P2, CLA. */
    setup(0x71, 16);
    const uint8_t iu_kvn[] = {0x80, 0x50, 0x55, 0x00, 0x10, 1, 2, 3, 4, 5, 6,
                              7,    8,    1,    2,    3,    4, 5, 6, 7, 8, 0};
    EXPECT_ERR(tc_scp03_card_initialize_update(&L.card, iu_kvn, sizeof iu_kvn, resp, sizeof resp,
                                               &rlen, &sw),
               TC_ERR_NOT_FOUND);
    EXPECT_EQ_U(sw, 0x6A88);
    const uint8_t iu_s8[] = {0x80, 0x50, 0x30, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0};
    EXPECT_ERR(tc_scp03_card_initialize_update(&L.card, iu_s8, sizeof iu_s8, resp, sizeof resp,
                                               &rlen, &sw),
               TC_ERR_FORMAT);
    EXPECT_EQ_U(sw, 0x6700);
    uint8_t iu_p2[sizeof iu_kvn];
    memcpy(iu_p2, iu_kvn, sizeof iu_p2);
    iu_p2[2] = 0x30;
    iu_p2[3] = 0x01;
    EXPECT_ERR(tc_scp03_card_initialize_update(&L.card, iu_p2, sizeof iu_p2, resp, sizeof resp,
                                               &rlen, &sw),
               TC_ERR_FORMAT);
    EXPECT_EQ_U(sw, 0x6A86);
    iu_p2[3] = 0x00;
    iu_p2[0] = 0x84;
    EXPECT_ERR(tc_scp03_card_initialize_update(&L.card, iu_p2, sizeof iu_p2, resp, sizeof resp,
                                               &rlen, &sw),
               TC_ERR_FORMAT);
    EXPECT_EQ_U(sw, 0x6E00);
    /* EXTERNAL AUTHENTICATE without INITIALIZE UPDATE. */
    const uint8_t ea[] = {0x84, 0x82, 0x01, 0x00, 0x10, 1, 2, 3, 4, 5, 6,
                          7,    8,    1,    2,    3,    4, 5, 6, 7, 8};
    EXPECT_ERR(tc_scp03_card_external_authenticate(&L.card, ea, sizeof ea, &sw), TC_ERR_STATE);
    EXPECT_EQ_U(sw, 0x6985);
    /* Another command between INITIALIZE UPDATE and EXTERNAL AUTHENTICATE
     * abandons the handshake. */
    setup(0x70, 16);
    init_host(0x01, false);
    size_t rl = do_iu(resp, sizeof resp);
    const uint8_t plain[] = {0x80, 0xEE, 0x00, 0x00, 0x01, 0x01};
    EXPECT_EQ_U(send_raw(plain, sizeof plain), 0x9000);
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rl, &b));
    EXPECT_ERR(tc_scp03_card_external_authenticate(&L.card, cmd, b.len, &sw), TC_ERR_STATE);
    EXPECT_EQ_U(sw, 0x6985);

    /* Host side: malformed INITIALIZE UPDATE responses. */
    setup(0x70, 16);
    init_host(0x01, false);
    rl = do_iu(resp, sizeof resp);
    uint8_t copy[64];
    struct {
        size_t at;
        uint8_t value;
        size_t len_delta;
        tc_err want;
    } bad[] = {
        {11, 0x02, 0, TC_ERR_UNSUPPORTED}, /* SCP02 */
        {12, 0x71, 0, TC_ERR_UNSUPPORTED}, /* S16 card, S8 host */
        {12, 0x78, 0, TC_ERR_FORMAT},      /* RFU bit */
        {10, 0x31, 0, TC_ERR_VERIFY},      /* another KVN than asked */
        {0, 0, 1, TC_ERR_TRUNCATED},       /* one byte short */
    };
    for (size_t k = 0; k < TC_ARRAY_LEN(bad); k++) {
        init_host(0x01, false);
        uint8_t tmp[64];
        tc_buf_init_fixed(&b, tmp, sizeof tmp);
        EXPECT_OK(tc_scp03_host_initialize_update(&H, &b));
        memcpy(copy, resp, rl);
        if (bad[k].len_delta == 0)
            copy[bad[k].at] = bad[k].value;
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_ERR(tc_scp03_host_external_authenticate(&H, copy, rl - bad[k].len_delta, &b),
                   bad[k].want);
    }
    /* Trailing byte. */
    init_host(0x01, false);
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_initialize_update(&H, &b));
    memcpy(copy, resp, rl);
    copy[rl] = 0;
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_ERR(tc_scp03_host_external_authenticate(&H, copy, rl + 1, &b), TC_ERR_FORMAT);
    /* EXTERNAL AUTHENTICATE refused by the card. */
    init_host(0x01, false);
    rl = do_iu(resp, sizeof resp);
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rl, &b));
    EXPECT_ERR(tc_scp03_host_authenticated(&H, 0x6300), TC_ERR_AUTH);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
}

/* ------------------------------------------------------------------ rejections: responses */

static void test_reject_responses(void)
{
    uint8_t w[300], r[300], out[300];
    size_t olen = 0;
    uint16_t sw = 0;
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    /* A genuine response from the card, then tampered in data, MAC or SW. */
    for (int what = 0; what < 4; what++) {
        open_for_reject(0x11);
        size_t n = wrap_only(&a, w, sizeof w);
        struct tc_scp03_card_cmd c;
        size_t pl = 0, rl = 0;
        EXPECT_OK(tc_scp03_card_unwrap(&L.card, w, n, L.plain, sizeof L.plain, &pl, &c, &sw));
        EXPECT_OK(tc_scp03_card_wrap(&L.card, c.apdu.data, c.apdu.lc, 0x9000, r, sizeof r, &rl));
        if (what == 0)
            r[0] ^= 1;
        else if (what == 1)
            r[rl - 3] ^= 1;
        else if (what == 2)
            r[rl - 1] = 0x01; /* 9001 */
        if (what < 3) {
            EXPECT_ERR(tc_scp03_host_unwrap(&H, r, rl, out, sizeof out, &olen, &sw), TC_ERR_VERIFY);
            EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
            EXPECT_EQ_U(olen, 0);
        } else {
            EXPECT_OK(tc_scp03_host_unwrap(&H, r, rl, out, sizeof out, &olen, &sw));
            EXPECT_MEM(out, olen, big_in, 10);
            /* The same response again: nothing is pending any more. */
            EXPECT_ERR(tc_scp03_host_unwrap(&H, r, rl, out, sizeof out, &olen, &sw), TC_ERR_STATE);
        }
        tc_scp03_host_close(&H);
    }
    /* 9000 without its R-MAC; data shorter than an R-MAC; an error SW with
     * data that no R-MAC protects: each ends the host session. */
    static const uint8_t bare[] = {0x90, 0x00};
    static const uint8_t short_mac[] = {1, 2, 3, 0x90, 0x00};
    static const uint8_t err_data[] = {1, 2, 3, 0x6A, 0x82};
    const struct {
        const uint8_t *r;
        size_t n;
    } bad[] = {{bare, sizeof bare}, {short_mac, sizeof short_mac}, {err_data, sizeof err_data}};
    for (size_t k = 0; k < TC_ARRAY_LEN(bad); k++) {
        open_for_reject(0x11);
        (void)wrap_only(&a, w, sizeof w);
        EXPECT_ERR(tc_scp03_host_unwrap(&H, bad[k].r, bad[k].n, out, sizeof out, &olen, &sw),
                   TC_ERR_VERIFY);
        EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
        EXPECT_ERR(wrap_only_rc(&a, w, sizeof w), TC_ERR_STATE);
    }
    /* A bare error SW is fine. */
    open_for_reject(0x11);
    (void)wrap_only(&a, w, sizeof w);
    const uint8_t err[] = {0x6A, 0x82};
    EXPECT_OK(tc_scp03_host_unwrap(&H, err, 2, out, sizeof out, &olen, &sw));
    EXPECT(sw == 0x6A82 && olen == 0);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_AUTHENTICATED);
    tc_scp03_host_close(&H);

    /* R-ENC: bad padding inside a valid R-MAC is refused too. */
    open_for_reject(0x33);
    size_t n = wrap_only(&a, w, sizeof w);
    struct tc_scp03_card_cmd c;
    size_t pl = 0;
    EXPECT_OK(tc_scp03_card_unwrap(&L.card, w, n, L.plain, sizeof L.plain, &pl, &c, &sw));
    uint8_t blk[16], icv[16], mac[16];
    memset(blk, 0x41, sizeof blk);
    EXPECT_OK(tc_scp03_icv(&L.card.s, true, icv));
    EXPECT_OK(tc_aes_cbc_encrypt(L.card.s.keys.s_enc, 16, icv, blk, 16, r));
    EXPECT_OK(tc_scp03_rmac(&L.card.s, r, 16, 0x9000, mac));
    memcpy(r + 16, mac, 8);
    r[24] = 0x90;
    r[25] = 0x00;
    EXPECT_ERR(tc_scp03_host_unwrap(&H, r, 26, out, sizeof out, &olen, &sw), TC_ERR_FORMAT);
    tc_scp03_host_close(&H);
}

/* ------------------------------------------------------------------ PUT KEY / DELETE KEY */

struct trace_log {
    uint8_t buf[20000];
    size_t len;
    unsigned events[5];
};

static void trace_cb(void *ctx, enum tc_scp03_trace_kind kind, const uint8_t *p, size_t len)
{
    struct trace_log *t = ctx;
    if ((unsigned)kind < 5)
        t->events[kind]++;
    if (t->len + len <= sizeof t->buf) {
        memcpy(t->buf + t->len, p, len);
        t->len += len;
    }
}

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static void test_put_key_end_to_end(void)
{
    static struct trace_log tr;
    struct tc_scp03_mem_provider new_mem;
    struct tc_scp03_key_provider newp;
    struct tc_scp03_keyset nks;
    memset(&tr, 0, sizeof tr);
    setup(0x70, 16);
    struct tc_scp03_host_config cfg = base_cfg(0x03, false, 0);
    cfg.trace = trace_cb;
    cfg.trace_ctx = &tr;
    EXPECT_OK(tc_scp03_host_open(&H, &L.t, &KP, &cfg));
    /* Replace keyset 30 (AES-128) by keyset 31 (AES-256). */
    tc_scp03_mem_provider_init(&new_mem, &newp);
    make_keyset(&nks, 0x31, 32, 0x99);
    EXPECT_OK(tc_scp03_mem_provider_add(&new_mem, &nks));
    EXPECT_OK(tc_scp03_host_put_keys(&H, &newp, 0x31, 0x30));
    EXPECT(test_store_find(&L.store, 0x31) != NULL);
    struct tc_scp03_keyset *stored = test_store_find(&L.store, 0x31);
    if (stored != NULL) {
        EXPECT_EQ_U(stored->key_len, 32);
        EXPECT_MEM(stored->enc, 32, nks.enc, 32);
        EXPECT_MEM(stored->dek, 32, nks.dek, 32);
    }
    /* The trace never saw a new key in the clear. */
    EXPECT(tr.events[TC_SCP03_TRACE_CMD_PLAIN] > 0 && tr.events[TC_SCP03_TRACE_RESP_RAW] > 0);
    EXPECT(!contains(tr.buf, tr.len, nks.enc, 16));
    EXPECT(!contains(tr.buf, tr.len, nks.mac + 16, 16));
    EXPECT(!contains(tr.buf, tr.len, nks.dek, 16));
    /* Add keyset 32 (AES-192) next to it. */
    struct tc_scp03_keyset k192;
    make_keyset(&k192, 0x32, 24, 0x55);
    EXPECT_OK(tc_scp03_mem_provider_add(&new_mem, &k192));
    EXPECT_OK(tc_scp03_host_put_keys(&H, &newp, 0x32, 0x00));
    /* Adding a KVN that exists is refused. */
    EXPECT_ERR(tc_scp03_host_put_keys(&H, &newp, 0x32, 0x00), TC_ERR_CARD);
    EXPECT_EQ_U(L.last_sw, 0x6A80);
    tc_scp03_host_close(&H);

    /* Gate: the new keys open a channel, the old keyset is gone. */
    cfg = base_cfg(0x33, false, 0);
    cfg.kvn = 0x31;
    EXPECT_OK(tc_scp03_host_open(&H, &L.t, &newp, &cfg));
    EXPECT_EQ_U(tc_scp03_card_level(&L.card), 0x33);
    /* DELETE KEY keyset 32. */
    EXPECT_OK(tc_scp03_host_delete_key(&H, 0x32, 0));
    EXPECT_ERR(tc_scp03_host_delete_key(&H, 0x32, 0), TC_ERR_CARD);
    EXPECT_EQ_U(L.last_sw, 0x6A88);
    tc_scp03_host_close(&H);
    cfg.kvn = 0x32;
    EXPECT_ERR(tc_scp03_host_open(&H, &L.t, &newp, &cfg), TC_ERR_CARD);
    EXPECT_EQ_U(L.last_sw, 0x6A88);
    EXPECT_ERR(open_level(0x01, false, 0), TC_ERR_CARD);
    EXPECT_EQ_U(L.last_sw, 0x6A88);
    tc_scp03_mem_provider_wipe(&new_mem);
    tc_scp03_keyset_wipe(&nks);
    tc_scp03_keyset_wipe(&k192);
}

/* Build PUT KEY data by hand: with (KL) or without the key length byte. */
static size_t put_key_blocks(const uint8_t *dek, const struct tc_scp03_keyset *nk, bool with_kl,
                             int corrupt, uint8_t *out)
{
    static const uint8_t zero_iv[16] = {0};
    const uint8_t *keys[3] = {nk->enc, nk->mac, nk->dek};
    size_t o = 0;
    out[o++] = nk->kvn;
    for (int i = 0; i < 3; i++) {
        uint8_t enc[32], kcv[3];
        size_t el = nk->key_len <= 16 ? 16 : 32;
        uint8_t tmp[32] = {0};
        memcpy(tmp, keys[i], nk->key_len);
        EXPECT_OK(tc_aes_cbc_encrypt(dek, 16, zero_iv, tmp, el, enc));
        EXPECT_OK(tc_kcv_aes(keys[i], nk->key_len, kcv));
        out[o++] = corrupt == 1 && i == 0 ? 0x80 : 0x88;
        if (with_kl) {
            out[o++] = (uint8_t)(el + 1);
            out[o++] = nk->key_len;
        } else {
            out[o++] = (uint8_t)el;
        }
        memcpy(out + o, enc, el);
        o += el;
        out[o++] = corrupt == 2 && i == 1 ? 2 : 3;
        memcpy(out + o, kcv, 3);
        if (corrupt == 3 && i == 2)
            out[o] ^= 1;
        o += 3;
    }
    return o;
}

static uint16_t send_put_key(uint8_t p1, uint8_t p2, const uint8_t *data, size_t n)
{
    struct tc_apdu a = {.cla = 0x80,
                        .ins = 0xD8,
                        .p1 = p1,
                        .p2 = p2,
                        .data = data,
                        .lc = n,
                        .le = 256,
                        .has_le = true};
    size_t rlen = 0;
    uint16_t sw = 0;
    EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
    if (sw == 0x9000)
        EXPECT(rlen == 10 && big_out[0] == data[0]);
    return sw;
}

static void test_put_key_card_side(void)
{
    uint8_t data[200];
    struct tc_scp03_keyset nk;
    setup(0x70, 16);
    EXPECT_OK(open_level(0x01, false, 0));
    const uint8_t *dek = test_store_find(&L.store, 0x30)->dek;
    /* Both block layouts are accepted. */
    make_keyset(&nk, 0x40, 16, 0x21);
    size_t n = put_key_blocks(dek, &nk, false, 0, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x9000);
    EXPECT(test_store_find(&L.store, 0x40) != NULL);
    make_keyset(&nk, 0x41, 16, 0x22);
    n = put_key_blocks(dek, &nk, true, 0, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x9000);
    make_keyset(&nk, 0x42, 24, 0x23);
    n = put_key_blocks(dek, &nk, true, 0, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x9000);
    /* A 24-byte key cannot go without its length byte. */
    make_keyset(&nk, 0x43, 24, 0x24);
    n = put_key_blocks(dek, &nk, false, 0, data);
    data[2] = 0x18; /* LL = 24: neither layout */
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x6A80);
    /* Wrong KCV, wrong key type, wrong KCV length, truncated, trailing. */
    make_keyset(&nk, 0x44, 16, 0x25);
    n = put_key_blocks(dek, &nk, true, 3, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x6A80);
    n = put_key_blocks(dek, &nk, true, 1, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x6A80);
    n = put_key_blocks(dek, &nk, true, 2, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x6A80);
    n = put_key_blocks(dek, &nk, true, 0, data);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n - 1), 0x6A80);
    data[n] = 0;
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n + 1), 0x6A80);
    /* Mixed key lengths in one keyset. */
    struct tc_scp03_keyset mixed;
    make_keyset(&mixed, 0x45, 32, 0x26);
    uint8_t d2[200];
    size_t n2 = put_key_blocks(dek, &mixed, true, 0, d2);
    memcpy(d2 + 1, data + 1, 23); /* first block of a 16-byte keyset */
    memmove(d2 + 24, d2 + 1 + 39, n2 - 1 - 39);
    EXPECT_EQ_U(send_put_key(0x00, 0x81, d2, 24 + n2 - 1 - 39), 0x6A80);
    /* Replacing a KVN that does not exist; P1/P2 not supported. */
    EXPECT_EQ_U(send_put_key(0x55, 0x81, data, n), 0x6A88);
    EXPECT_EQ_U(send_put_key(0x00, 0x01, data, n), 0x6A86);
    EXPECT_EQ_U(send_put_key(0x80, 0x81, data, n), 0x6A86);
    /* New KVN out of range. */
    data[0] = 0x80;
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x6A80);
    data[0] = 0x00;
    EXPECT_EQ_U(send_put_key(0x00, 0x81, data, n), 0x6A80);
    tc_scp03_host_close(&H);

    /* PUT KEY outside a secure channel. */
    setup(0x70, 16);
    make_keyset(&nk, 0x46, 16, 0x27);
    n = put_key_blocks(dek, &nk, true, 0, data);
    uint8_t raw[220];
    raw[0] = 0x80;
    raw[1] = 0xD8;
    raw[2] = 0x00;
    raw[3] = 0x81;
    raw[4] = (uint8_t)n;
    memcpy(raw + 5, data, n);
    struct tc_scp03_card_cmd c;
    size_t pl = 0;
    uint16_t sw = 0;
    struct tc_scp03_put_key pk;
    EXPECT_OK(tc_scp03_card_unwrap(&L.card, raw, 5 + n, L.plain, sizeof L.plain, &pl, &c, &sw));
    EXPECT_ERR(tc_scp03_card_put_key(&L.card, &c, &pk, &sw), TC_ERR_STATE);
    EXPECT_EQ_U(sw, 0x6982);

    /* Host side: the card's KCVs are checked. */
    uint8_t kcvs[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const uint8_t good[10] = {0x31, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    EXPECT_OK(tc_scp03_put_key_check(good, 10, 0x31, kcvs));
    kcvs[8] ^= 1;
    EXPECT_ERR(tc_scp03_put_key_check(good, 10, 0x31, kcvs), TC_ERR_VERIFY);
    kcvs[8] ^= 1;
    EXPECT_ERR(tc_scp03_put_key_check(good, 10, 0x32, kcvs), TC_ERR_VERIFY);
    EXPECT_ERR(tc_scp03_put_key_check(good, 9, 0x31, kcvs), TC_ERR_FORMAT);
    tc_scp03_keyset_wipe(&nk);
}

/* ------------------------------------------------------------------ misc */

static void test_chain_reassembly(void)
{
    static uint8_t buf[600];
    struct tc_scp03_chain ch;
    bool complete = false;
    const uint8_t *out = NULL;
    size_t olen = 0;
    tc_scp03_chain_init(&ch, buf, sizeof buf);
    const uint8_t s1[] = {0x94, 0xE2, 0x01, 0x02, 0x03, 0xAA, 0xBB, 0xCC};
    const uint8_t s2[] = {0x84, 0xE2, 0x01, 0x02, 0x02, 0xDD, 0xEE, 0x00};
    EXPECT_OK(tc_scp03_chain_feed(&ch, s1, sizeof s1, &complete, &out, &olen));
    EXPECT(!complete);
    EXPECT_OK(tc_scp03_chain_feed(&ch, s2, sizeof s2, &complete, &out, &olen));
    EXPECT(complete);
    const uint8_t whole[] = {0x84, 0xE2, 0x01, 0x02, 0x05, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x00};
    EXPECT_MEM(out, olen, whole, sizeof whole);
    /* A segment with another header breaks the chain. */
    const uint8_t s3[] = {0x84, 0xE2, 0x01, 0x03, 0x01, 0x01};
    EXPECT_OK(tc_scp03_chain_feed(&ch, s1, sizeof s1, &complete, &out, &olen));
    EXPECT_ERR(tc_scp03_chain_feed(&ch, s3, sizeof s3, &complete, &out, &olen), TC_ERR_FORMAT);
    EXPECT(!ch.active);
    /* Overflow of the caller's buffer. */
    uint8_t seg[5 + 255];
    seg[0] = 0x90;
    seg[1] = 0xE2;
    seg[2] = 0;
    seg[3] = 0;
    seg[4] = 255;
    memset(seg + 5, 7, 255);
    EXPECT_OK(tc_scp03_chain_feed(&ch, seg, sizeof seg, &complete, &out, &olen));
    EXPECT_OK(tc_scp03_chain_feed(&ch, seg, sizeof seg, &complete, &out, &olen));
    EXPECT_ERR(tc_scp03_chain_feed(&ch, seg, sizeof seg, &complete, &out, &olen), TC_ERR_SPACE);
    /* Unchained commands pass straight through. */
    EXPECT_OK(tc_scp03_chain_feed(&ch, s2, sizeof s2, &complete, &out, &olen));
    EXPECT(complete && out == s2 && olen == sizeof s2);
}

static void test_levels_and_wipe(void)
{
    uint8_t l = 0;
    EXPECT_OK(tc_scp03_level_parse("clr", &l));
    EXPECT_EQ_U(l, 0x00);
    EXPECT_OK(tc_scp03_level_parse("mac", &l));
    EXPECT_EQ_U(l, 0x01);
    EXPECT_OK(tc_scp03_level_parse("enc", &l));
    EXPECT_EQ_U(l, 0x03);
    EXPECT_OK(tc_scp03_level_parse("rmac", &l));
    EXPECT_EQ_U(l, 0x11);
    EXPECT_OK(tc_scp03_level_parse("renc", &l));
    EXPECT_EQ_U(l, 0x33);
    EXPECT_OK(tc_scp03_level_parse("0x13", &l));
    EXPECT_EQ_U(l, 0x13);
    EXPECT_ERR(tc_scp03_level_parse("0x12", &l), TC_ERR_ARG);
    EXPECT_ERR(tc_scp03_level_parse("max", &l), TC_ERR_ARG);
    EXPECT_STR(tc_scp03_level_name(0x33), "C-DEC+C-MAC+R-MAC+R-ENC");
    EXPECT_STR(tc_scp03_level_name(0x02), "invalid security level");
    EXPECT_ERR(tc_scp03_level_check(0x11, 0x10), TC_ERR_UNSUPPORTED);
    EXPECT_ERR(tc_scp03_level_check(0x33, 0x20), TC_ERR_UNSUPPORTED);
    EXPECT_OK(tc_scp03_level_check(0x33, 0x60));
    /* Session end wipes both ends. */
    static const uint8_t zero[sizeof(struct tc_scp03_session_keys)] = {0};
    setup(0x71, 32);
    EXPECT_OK(open_level(0x33, true, 0));
    EXPECT(memcmp(&L.card.s.keys, zero, sizeof zero) != 0);
    tc_scp03_card_reset(&L.card);
    tc_scp03_host_close(&H);
    EXPECT_MEM(&L.card.s.keys, sizeof zero, zero, sizeof zero);
    EXPECT_MEM(&H.s.keys, sizeof zero, zero, sizeof zero);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
    /* A SELECT ends the card session. */
    EXPECT_OK(open_level(0x01, true, 0));
    const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 1, 0x51, 0, 0, 0, 0};
    EXPECT_EQ_U(send_raw(sel, sizeof sel), 0x9000);
    EXPECT(!tc_scp03_card_authenticated(&L.card));
    tc_scp03_host_close(&H);
    /* SELECT by the host before the handshake. */
    struct tc_scp03_host_config cfg = base_cfg(0x01, true, 0);
    cfg.select = true;
    EXPECT_OK(tc_scp03_host_open(&H, &L.t, &KP, &cfg));
    tc_scp03_host_close(&H);
    tc_scp03_mem_provider_wipe(&MEM);
}

static void test_host_failures_end_session(void)
{
    static const uint8_t zero[sizeof(struct tc_scp03_session_keys)] = {0};
    /* SELECT refused: nothing opens. */
    setup(0x70, 16);
    L.select_sw = 0x6A82;
    struct tc_scp03_host_config cfg = base_cfg(0x03, false, 0);
    cfg.select = true;
    EXPECT_ERR(tc_scp03_host_open(&H, &L.t, &KP, &cfg), TC_ERR_CARD);
    EXPECT(strstr(tc_error_last()->msg, "6A82") != NULL);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
    /* The link breaks during the handshake. */
    setup(0x70, 16);
    L.fail_at = 2; /* EXTERNAL AUTHENTICATE */
    EXPECT_ERR(open_level(0x03, false, 0), TC_ERR_IO);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
    EXPECT_MEM(&H.s.keys, sizeof zero, zero, sizeof zero);
    /* The link breaks with a command in flight: the session ends. */
    setup(0x70, 16);
    EXPECT_OK(open_level(0x33, false, 0));
    L.fail_at = L.commands + 1;
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    size_t rlen = 0;
    uint16_t sw = 0;
    EXPECT_ERR(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw), TC_ERR_IO);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_IDLE);
    EXPECT_MEM(&H.s.keys, sizeof zero, zero, sizeof zero);
    EXPECT_ERR(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw), TC_ERR_STATE);
    /* A caller buffer too small for the answer keeps the (verified) session. */
    L.fail_at = 0;
    EXPECT_OK(open_level(0x33, false, 0));
    EXPECT_ERR(tc_scp03_host_transmit(&H, &a, big_out, 4, &rlen, &sw), TC_ERR_SPACE);
    EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_AUTHENTICATED);
    EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_MEM(big_out, rlen, big_in, 10);
    tc_scp03_host_close(&H);
}

/* A link that alters the card's answer to one instruction: its status
 * word replaced (data dropped), or one byte flipped. */
struct tamper {
    struct tc_transport *inner;
    uint8_t ins;
    bool replace;
    uint16_t sw;
    size_t flip; /* byte index to flip when !replace */
};

static tc_err tamper_transmit(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t size,
                              size_t *rlen)
{
    struct tamper *tp = ctx;
    TC_GUARD(tp->inner->transmit(tp->inner->ctx, cmd, len, resp, size, rlen));
    if (len >= 2 && cmd[1] == tp->ins) {
        if (tp->replace) {
            resp[0] = (uint8_t)(tp->sw >> 8);
            resp[1] = (uint8_t)tp->sw;
            *rlen = 2;
        } else if (tp->flip < *rlen) {
            resp[tp->flip] ^= 0x01;
        }
    }
    return TC_OK;
}

static struct tc_transport tamper_link(struct tamper *tp)
{
    tp->inner = &L.t;
    struct tc_transport t = {.ctx = tp, .name = "tamper", .transmit = tamper_transmit};
    return t;
}

/* Every host outcome (docs/scp03.md "Host outcomes"), each from the failure
 * that defines it, with the last status word where the card gave one. */
static void test_host_outcomes(void)
{
    struct tc_scp03_host_config cfg;
    struct tamper tp;
    struct tc_transport t;
    size_t rlen = 0;
    uint16_t sw = 0;

    /* Names: distinct, "unknown" past the end. */
    for (unsigned a = 0; a <= TC_SCP03_HOST_OUTCOME_MAX_; a++) {
        EXPECT(strcmp(tc_scp03_host_outcome_name((enum tc_scp03_host_outcome)a), "unknown") != 0);
        for (unsigned b = a + 1; b <= TC_SCP03_HOST_OUTCOME_MAX_; b++)
            EXPECT(strcmp(tc_scp03_host_outcome_name((enum tc_scp03_host_outcome)a),
                          tc_scp03_host_outcome_name((enum tc_scp03_host_outcome)b)) != 0);
    }
    EXPECT_STR(tc_scp03_host_outcome_name((enum tc_scp03_host_outcome)99), "unknown");
    EXPECT_STR(tc_scp03_host_outcome_name(TC_SCP03_HOST_NO_KEYSET), "no-keyset");
    EXPECT_EQ_U(tc_scp03_host_outcome(NULL), TC_SCP03_HOST_OTHER);

    /* OK, with the status word of the handshake's last answer. */
    setup(0x70, 16);
    EXPECT_OK(open_level(0x33, false, 0));
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_OK);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), 0x9000);
    tc_scp03_host_close(&H);

    /* LINK: the transport fails (INITIALIZE UPDATE, then EXTERNAL
     * AUTHENTICATE). */
    for (unsigned at = 1; at <= 2; at++) {
        setup(0x70, 16);
        L.fail_at = at;
        EXPECT_ERR(open_level(0x03, false, 0), TC_ERR_IO);
        EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_LINK);
    }

    /* CARD_STATUS: SELECT refused (6A82). */
    setup(0x70, 16);
    L.select_sw = 0x6A82;
    cfg = base_cfg(0x03, false, 0);
    cfg.select = true;
    EXPECT_ERR(tc_scp03_host_open(&H, &L.t, &KP, &cfg), TC_ERR_CARD);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_CARD_STATUS);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), 0x6A82);

    /* NO_KEYSET: INITIALIZE UPDATE naming a KVN the card lacks (6A88). */
    setup(0x70, 16);
    cfg = base_cfg(0x03, false, 0);
    cfg.kvn = 0x55;
    EXPECT_ERR(tc_scp03_host_open(&H, &L.t, &KP, &cfg), TC_ERR_CARD);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_NO_KEYSET);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), 0x6A88);
    /* Another INITIALIZE UPDATE error is a card status, not a missing keyset. */
    setup(0x70, 16);
    tp = (struct tamper){.ins = 0x50, .replace = true, .sw = 0x6985};
    t = tamper_link(&tp);
    cfg = base_cfg(0x03, false, 0);
    EXPECT_ERR(tc_scp03_host_open(&H, &t, &KP, &cfg), TC_ERR_CARD);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_CARD_STATUS);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), 0x6985);

    /* CARD_AUTH: other keys; caught by the pseudo-random challenge (i=70)
     * and by the card cryptogram (i=60, random challenge). */
    static const uint8_t modes[] = {0x70, 0x60};
    for (size_t m = 0; m < TC_ARRAY_LEN(modes); m++) {
        setup(modes[m], 16);
        struct tc_scp03_keyset other;
        make_keyset(&other, 0x30, 16, 0x77);
        EXPECT_OK(tc_scp03_mem_provider_add(&MEM, &other));
        tc_scp03_keyset_wipe(&other);
        EXPECT_ERR(open_level(0x03, false, 0), TC_ERR_VERIFY);
        EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_CARD_AUTH);
        EXPECT(strstr(tc_error_last()->msg, m == 0 ? "pseudo-random" : "card cryptogram") != NULL);
    }

    /* HOST_AUTH: EXTERNAL AUTHENTICATE answered 6300; any other refusal
     * is a card status. */
    static const uint16_t ea_sw[] = {0x6300, 0x6982};
    for (size_t i = 0; i < TC_ARRAY_LEN(ea_sw); i++) {
        setup(0x70, 16);
        tp = (struct tamper){.ins = 0x82, .replace = true, .sw = ea_sw[i]};
        t = tamper_link(&tp);
        cfg = base_cfg(0x03, false, 0);
        EXPECT_ERR(tc_scp03_host_open(&H, &t, &KP, &cfg), TC_ERR_AUTH);
        EXPECT_EQ_U(tc_scp03_host_outcome(&H),
                    i == 0 ? TC_SCP03_HOST_HOST_AUTH : TC_SCP03_HOST_CARD_STATUS);
        EXPECT_EQ_U(tc_scp03_host_last_sw(&H), ea_sw[i]);
    }

    /* KEYS: the provider holds no keyset 30 (the card does). */
    setup(0x70, 16);
    struct tc_scp03_mem_provider other_mem;
    struct tc_scp03_key_provider otherp;
    struct tc_scp03_keyset ks31;
    tc_scp03_mem_provider_init(&other_mem, &otherp);
    make_keyset(&ks31, 0x31, 16, 0x10);
    EXPECT_OK(tc_scp03_mem_provider_add(&other_mem, &ks31));
    cfg = base_cfg(0x03, false, 0);
    EXPECT_ERR(tc_scp03_host_open(&H, &L.t, &otherp, &cfg), TC_ERR_NOT_FOUND);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_KEYS);

    /* PUT KEY at C-MAC only (the response is not R-MACed, so the link can
     * alter it): a KVN or KCV other than the new keys' is KCV_MISMATCH; a
     * response without the KCVs is RESPONSE; keys the source lacks, KEYS. */
    static const struct {
        bool replace;
        size_t flip;
        enum tc_scp03_host_outcome oc;
        tc_err rc;
    } pk[] = {
        {false, 1, TC_SCP03_HOST_KCV_MISMATCH, TC_ERR_VERIFY}, /* ENC KCV */
        {false, 9, TC_SCP03_HOST_KCV_MISMATCH, TC_ERR_VERIFY}, /* DEK KCV */
        {false, 0, TC_SCP03_HOST_KCV_MISMATCH, TC_ERR_VERIFY}, /* KVN */
        {true, 0, TC_SCP03_HOST_RESPONSE, TC_ERR_FORMAT},      /* 9000, no data */
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(pk); i++) {
        setup(0x70, 16);
        tp = (struct tamper){
            .ins = 0xD8, .replace = pk[i].replace, .sw = 0x9000, .flip = pk[i].flip};
        t = tamper_link(&tp);
        cfg = base_cfg(0x01, false, 0);
        EXPECT_OK(tc_scp03_host_open(&H, &t, &KP, &cfg));
        EXPECT_ERR(tc_scp03_host_put_keys(&H, &otherp, 0x31, 0x30), pk[i].rc);
        EXPECT_EQ_U(tc_scp03_host_outcome(&H), pk[i].oc);
        tc_scp03_host_close(&H);
    }
    setup(0x70, 16);
    EXPECT_OK(open_level(0x33, false, 0));
    EXPECT_ERR(tc_scp03_host_put_keys(&H, &otherp, 0x32, 0x30), TC_ERR_NOT_FOUND);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_KEYS);
    /* The card refusing PUT KEY: CARD_STATUS with its SW; then a good one. */
    EXPECT_ERR(tc_scp03_host_put_keys(&H, &otherp, 0x31, 0x44), TC_ERR_CARD);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_CARD_STATUS);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), L.last_sw);
    EXPECT(L.last_sw != 0x9000);
    EXPECT_OK(tc_scp03_host_put_keys(&H, &otherp, 0x31, 0x30));
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_OK);
    tc_scp03_host_close(&H);

    /* RESPONSE: an R-MACed answer altered on the way. */
    setup(0x70, 16);
    tp = (struct tamper){.ins = 0xEE, .flip = 0};
    t = tamper_link(&tp);
    cfg = base_cfg(0x33, false, 0);
    EXPECT_OK(tc_scp03_host_open(&H, &t, &KP, &cfg));
    struct tc_apdu a = echo_cmd(0, big_in, 10);
    tp.ins = a.ins;
    EXPECT_ERR(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw), TC_ERR_VERIFY);
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_RESPONSE);
    /* Transmit succeeds for any SW (the caller judges it): OK, last SW. */
    setup(0x70, 16);
    EXPECT_OK(open_level(0x33, false, 0));
    EXPECT_OK(tc_scp03_host_transmit(&H, &a, big_out, sizeof big_out, &rlen, &sw));
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_OK);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), sw);
    tc_scp03_host_close(&H);
    /* Outcome and SW survive close. */
    EXPECT_EQ_U(tc_scp03_host_outcome(&H), TC_SCP03_HOST_OK);
    EXPECT_EQ_U(tc_scp03_host_last_sw(&H), sw);
    tc_scp03_mem_provider_wipe(&other_mem);
    tc_scp03_keyset_wipe(&ks31);
}

/* A command decoded in extended form (Le 65536, no data) sent by a host
 * configured for short APDUs: Le is clamped to 256 and the command is
 * wrapped and sent in the short form, so both ends MAC the same header. */
static void test_short_host_extended_le(void)
{
    static const uint8_t levels[] = {0x00, 0x01, 0x03, 0x33};
    for (size_t i = 0; i < TC_ARRAY_LEN(levels); i++) {
        setup(0x70, 16);
        EXPECT_OK(open_level(levels[i], false, 0));
        const uint8_t raw[] = {0x80, 0xEE, 0x00, 0x00, 0x00, 0x00, 0x00}; /* case 2E */
        struct tc_apdu a;
        EXPECT_OK(tc_apdu_decode(raw, sizeof raw, &a));
        EXPECT(a.extended);
        uint8_t resp[300];
        size_t rlen = 0;
        uint16_t sw = 0;
        EXPECT_OK(tc_scp03_host_transmit(&H, &a, resp, sizeof resp, &rlen, &sw));
        EXPECT_EQ_U(sw, 0x9000);
        EXPECT_EQ_U(H.s.state, TC_SCP03_STATE_AUTHENTICATED);
        tc_scp03_host_close(&H);
    }
}

static const struct tc_test_case cases[] = {
    {"short_host_extended_le", test_short_host_extended_le},
    {"interop_matrix", test_interop_matrix},
    {"rmac_session", test_rmac_session},
    {"reject_tampered_mac", test_reject_tampered_mac},
    {"reject_tampered_ciphertext", test_reject_tampered_ciphertext},
    {"reject_bad_padding", test_reject_bad_padding},
    {"reject_replay_and_reorder", test_reject_replay_and_reorder},
    {"reject_skipped_counter", test_reject_skipped_counter},
    {"reject_truncated_and_unprotected", test_reject_truncated_and_unprotected},
    {"reject_cryptograms", test_reject_cryptograms},
    {"reject_pseudo_random_challenge", test_reject_pseudo_random_challenge},
    {"reject_levels", test_reject_levels},
    {"reject_sequence_exhausted", test_reject_sequence_exhausted},
    {"reject_handshake_format", test_reject_handshake_format},
    {"reject_responses", test_reject_responses},
    {"put_key_end_to_end", test_put_key_end_to_end},
    {"put_key_card_side", test_put_key_card_side},
    {"host_failures_end_session", test_host_failures_end_session},
    {"host_outcomes", test_host_outcomes},
    {"chain_reassembly", test_chain_reassembly},
    {"levels_and_wipe", test_levels_and_wipe},
};

TC_TEST_MAIN("scp03", cases)
