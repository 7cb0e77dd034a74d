/*
 * "No command, in any life-cycle state or selection, returns a private key
 * or a static SCP03 key." Every CLA (interindustry and GlobalPlatform, basic
 * and logical channels) x every INS x the documented P1 P2 values x several
 * data fields is sent, in every card life cycle state, with the ISD, the
 * identity applet or nothing selected, in the clear and inside an SCP03
 * session at the highest level. Every response (as sent and as unwrapped)
 * is scanned for any 8 consecutive bytes of any key the card holds at that
 * moment (static keys, the identity private key, the pending renewal
 * private key, and the session keys of every open secure channel);
 * tc_se_describe() is scanned too.
 */
#include "se_util.h"

#include <stdlib.h>
#include <unistd.h>

#define WINDOW 8u

static unsigned long long commands_sent, responses_scanned;

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    if (m == 0 || n < m)
        return false;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

/* Counts (and fails the test for) every secret with a WINDOW-byte run in p. */
static unsigned scan_quiet(const struct tc_se_card *card, const uint8_t *p, size_t n,
                           const char *what, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                           bool quiet)
{
    unsigned hits = 0;
    const struct se_nvm *nv = se_test_nvm(card);
    const uint8_t *secrets[TC_SE_MAX_KEYSETS * 3 + 2 + SE_MAX_SESSIONS * 4];
    size_t lens[TC_SE_MAX_KEYSETS * 3 + 2 + SE_MAX_SESSIONS * 4];
    size_t ns = 0;
    /* Session keys of every open secure channel session, too. */
    for (size_t i = 0; i < SE_MAX_SESSIONS; i++) {
        const struct se_session_slot *sl = &card->ram.sessions[i];
        const struct tc_scp03_session_keys *k = &sl->session.s.keys;
        if (!sl->in_use || sl->session.s.state != TC_SCP03_STATE_AUTHENTICATED)
            continue;
        secrets[ns] = k->s_enc;
        lens[ns++] = k->key_len;
        secrets[ns] = k->s_mac;
        lens[ns++] = k->key_len;
        secrets[ns] = k->s_rmac;
        lens[ns++] = k->key_len;
        secrets[ns] = sl->session.dek;
        lens[ns++] = k->key_len;
    }
    for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++) {
        const struct se_keyset *k = &nv->keysets[i];
        if (k->kvn == 0)
            continue;
        secrets[ns] = k->enc;
        lens[ns++] = k->key_len;
        secrets[ns] = k->mac;
        lens[ns++] = k->key_len;
        secrets[ns] = k->dek;
        lens[ns++] = k->key_len;
    }
    if (nv->app.has_key) {
        secrets[ns] = nv->app.priv;
        lens[ns++] = 32;
    }
    if (nv->app.has_pending) {
        secrets[ns] = nv->app.pending_priv;
        lens[ns++] = 32;
    }
    responses_scanned++;
    for (size_t s = 0; s < ns; s++)
        for (size_t off = 0; off + WINDOW <= lens[s]; off++)
            if (contains(p, n, secrets[s] + off, WINDOW)) {
                hits++;
                if (!quiet)
                    tc_test_fail_at(__FILE__, __LINE__,
                                    "%s of %02X %02X %02X %02X holds 8 bytes of secret %zu", what,
                                    cla, ins, p1, p2, s);
                break;
            }
    return hits;
}

static void scan(const struct tc_se_card *card, const uint8_t *p, size_t n, const char *what,
                 uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2)
{
    (void)scan_quiet(card, p, n, what, cla, ins, p1, p2, false);
}

/* P1 P2 pairs: every value a command of this card documents, plus edges. */
static const uint8_t p1p2[][2] = {
    {0x00, 0x00}, {0x00, 0x02}, {0x00, 0x0C}, {0x04, 0x00}, {0x04, 0x02}, {0x80, 0x00},
    {0x40, 0x00}, {0x20, 0x00}, {0x10, 0x00}, {0x80, 0x02}, {0x40, 0x02}, {0x20, 0x02},
    {0x10, 0x02}, {0x00, 0x81}, {0x30, 0x81}, {0x01, 0x00}, {0x9E, 0x9A}, {0x80, 0x01},
    {0x90, 0x00}, {0x88, 0x00}, {0x08, 0x00}, {0x0C, 0x00}, {0x80, 0x07}, {0x80, 0x0F},
    {0x80, 0x7F}, {0x40, 0x80}, {0x00, 0x42}, {0x00, 0x45}, {0x00, 0x66}, {0x00, 0xE0},
    {0x00, 0xC1}, {0x9F, 0x7F}, {0x00, 0x5A}, {0xBF, 0x3E}, {0x9F, 0x70}, {0xDF, 0x01},
    {0x10, 0x01}, {0x30, 0x01}, {0x00, 0x03}, {0x02, 0x00}, {0xFF, 0xFF},
};

/* Data fields: none, a search criterion, a digest-sized one. */
static const char *const datas[] = {
    "", "4F00", "0000000000000000000000000000000000000000000000000000000000000000"};

enum mode { PLAIN, SESSION };

struct enum_state {
    const char *image;
    enum se_obj select;
    enum mode mode;
    struct tc_se_card *card;
    struct se_session s;
    bool have_session;
    void *link_ctx; /* the in-process link under the scanning one */
    uint8_t lc;     /* life cycle to keep */
};

/* The link the host session uses: every response is scanned as it leaves
 * the card, before the host unwraps it. */
static tc_err scanning_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                                size_t resp_size, size_t *resp_len)
{
    struct enum_state *e = ctx;
    tc_err rc = tc_se_process(e->card, cmd, cmd_len, resp, resp_size, resp_len);
    if (rc == TC_OK)
        scan(e->card, resp, *resp_len, "wrapped response", cmd[0], cmd_len > 1 ? cmd[1] : 0,
             cmd_len > 2 ? cmd[2] : 0, cmd_len > 3 ? cmd[3] : 0);
    return rc;
}

static void session_close(struct enum_state *e)
{
    if (!e->have_session)
        return;
    e->s.t.ctx = e->link_ctx;
    se_session_close(&e->s);
    e->have_session = false;
}

static void restore(struct enum_state *e);

static void open_session(struct enum_state *e)
{
    session_close(e);
    if (e->mode != SESSION)
        return;
    if (se_session_open(&e->s, e->card, 0x30, se_gp_test_key, 16, 0x33, false, 0, false) == TC_OK) {
        e->have_session = true;
        e->link_ctx = e->s.t.ctx;
        e->s.t.ctx = e;
        e->s.t.transmit = scanning_transmit;
    }
    tc_error_clear();
}

static void select_target(struct enum_state *e)
{
    switch (e->select) {
    case SE_OBJ_ISD:
        (void)se_tx(e->card, "00A4040C00");
        break;
    case SE_OBJ_APPLET:
        (void)se_tx(e->card, "00A4040C0AF0747275737463680101");
        break;
    case SE_OBJ_NONE:
    default:
        /* Nothing selected on the basic channel (as after the selected
         * application was locked). */
        e->card->ram.ch[0].selected = SE_OBJ_NONE;
        break;
    }
}

static void restore(struct enum_state *e)
{
    session_close(e);
    tc_se_close(e->card);
    char work[512];
    (void)snprintf(work, sizeof work, "%s", se_tmp_path("enum-work.img"));
    size_t n = 0;
    uint8_t *img = tc_test_read_file(e->image, &n);
    FILE *f = fopen(work, "wb");
    if (img == NULL || f == NULL || fwrite(img, 1, n, f) != n)
        tc_test_fail_at(__FILE__, __LINE__, "cannot restore %s", e->image);
    if (f != NULL)
        fclose(f);
    free(img);
    e->card = se_card_reopen(work);
    select_target(e);
    open_session(e);
}

static void send_one(struct enum_state *e, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                     const char *data_hex)
{
    uint8_t data[64];
    size_t dl = se_unhex(data_hex, data, sizeof data);
    struct tc_apdu a = {.cla = cla,
                        .ins = ins,
                        .p1 = p1,
                        .p2 = p2,
                        .data = dl ? data : NULL,
                        .lc = dl,
                        .le = 256,
                        .has_le = true};
    commands_sent++;
    if (e->mode == SESSION && e->have_session) {
        size_t n = 0;
        uint16_t sw = 0;
        tc_err rc = tc_scp03_host_transmit(&e->s.h, &a, se_resp, sizeof se_resp, &n, &sw);
        if (rc == TC_OK)
            scan(e->card, se_resp, n, "unwrapped response", cla, ins, p1, p2);
        tc_error_clear();
        if (rc != TC_OK || sw == 0x6982)
            open_session(e);
    } else {
        uint8_t cmd[300];
        struct tc_buf b;
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        if (tc_apdu_encode(&a, &b) != TC_OK)
            return;
        size_t n = 0;
        uint8_t resp[TC_SE_MAX_RESPONSE];
        if (tc_se_process(e->card, cmd, b.len, resp, sizeof resp, &n) == TC_OK)
            scan(e->card, resp, n, "response", cla, ins, p1, p2);
        tc_error_clear();
    }
    /* Something changed the life cycle or removed what the scan needs
     * (SET STATUS, DELETE, ...): back to the state under test. */
    const struct se_nvm *nv = se_test_nvm(e->card);
    if (!tc_se_powered(e->card) || nv->life_cycle != e->lc || !nv->app.present ||
        !nv->app.has_key || !nv->app.has_pending || nv->keysets[0].kvn != 0x30)
        restore(e);
}

static void enumerate(const char *image, uint8_t lc)
{
    /* Basic channel, channel 1 (first interindustry) and 4 (further),
     * secure messaging and chaining bits. */
    static const uint8_t clas[] = {0x00, 0x80, 0x84, 0x01, 0x81, 0xC0, 0x0C, 0x90};
    for (int sel = SE_OBJ_NONE; sel <= SE_OBJ_APPLET; sel++) {
        for (int mode = PLAIN; mode <= SESSION; mode++) {
            struct enum_state e;
            memset(&e, 0, sizeof e);
            e.image = image;
            e.select = (enum se_obj)sel;
            e.mode = (enum mode)mode;
            e.lc = lc;
            restore(&e);
            for (size_t c = 0; c < sizeof clas; c++) {
                /* Inside a session the host adds secure messaging and picks
                 * the session's channel. */
                if (mode == SESSION && clas[c] != 0x00 && clas[c] != 0x80)
                    continue;
                for (unsigned ins = 0; ins < 256; ins++)
                    for (size_t p = 0; p < TC_ARRAY_LEN(p1p2); p++)
                        for (size_t d = 0; d < TC_ARRAY_LEN(datas); d++)
                            send_one(&e, clas[c], (uint8_t)ins, p1p2[p][0], p1p2[p][1], datas[d]);
            }
            struct tc_se_info info;
            EXPECT_OK(tc_se_card_describe(e.card, &info));
            scan(e.card, (const uint8_t *)&info, sizeof info, "tc_se_describe", 0, 0, 0, 0);
            session_close(&e);
            tc_se_close(e.card);
        }
    }
}

/* Bring a card to `lc` with a second keyset (AES-256), a key pair, a
 * pending renewal key pair and a certificate-less identity, and save it as
 * `name`. */
static const char *prepare(const char *name, uint8_t lc)
{
    static char paths[5][512];
    static int next;
    char *path = paths[next++ % 5];
    (void)snprintf(path, 512, "%s", se_tmp_path(name));
    struct tc_se_params p;
    tc_se_params_default(&p);
    EXPECT_OK(tc_se_create(path, &p, TC_SE_CREATE_FORCE));
    struct tc_se_card *card = se_card_reopen(path);
    struct se_session s;
    EXPECT_EQ_U(se_tx(card, "00A4040C0AF0747275737463680101"), 0x9000);
    EXPECT_OK(se_session_open(&s, card, 0x30, se_gp_test_key, 16, 0x33, false, 0, false));
    EXPECT_EQ_U(se_stx(&s, "8040000010 00112233445566778899AABBCCDDEEFF 00"), 0x9000);
    EXPECT_EQ_U(se_stx(&s, "8040020010 00112233445566778899AABBCCDDEEFF 00"), 0x9000);
    se_session_close(&s);
    EXPECT_OK(se_session_default(&s, card, 0x03));
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    uint8_t k[32];
    for (size_t i = 0; i < sizeof k; i++)
        k[i] = (uint8_t)(0xC3 ^ (i * 7));
    tc_scp03_mem_provider_init(&mp, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x21, k, k, k, 32));
    EXPECT_OK(tc_scp03_mem_provider_add(&mp, &ks));
    EXPECT_OK(tc_scp03_host_put_keys(&s.h, &kp, 0x21, 0x00));
    tc_scp03_mem_provider_wipe(&mp);
    static const char *const steps[] = {"80F0800700", "80F0800F00", "80F0807F00", "80F080FF00"};
    size_t nsteps = lc == TC_SE_LC_OP_READY      ? 0
                    : lc == TC_SE_LC_INITIALIZED ? 1
                    : lc == TC_SE_LC_SECURED     ? 2
                    : lc == TC_SE_LC_CARD_LOCKED ? 3
                                                 : 4;
    for (size_t i = 0; i < nsteps; i++)
        EXPECT_EQ_U(se_stx(&s, steps[i]), 0x9000);
    se_session_close(&s);
    tc_se_close(card);
    return path;
}

static void test_no_secret_leaves(void)
{
    static const uint8_t states[] = {TC_SE_LC_OP_READY, TC_SE_LC_INITIALIZED, TC_SE_LC_SECURED,
                                     TC_SE_LC_CARD_LOCKED};
    for (size_t i = 0; i < TC_ARRAY_LEN(states); i++) {
        char name[32];
        (void)snprintf(name, sizeof name, "enum-%02X.img", states[i]);
        enumerate(prepare(name, states[i]), states[i]);
    }
    printf("# %llu commands sent, %llu responses scanned\n", commands_sent, responses_scanned);
    EXPECT(commands_sent > 1000000ull);
}

/* TERMINATED: the keys are destroyed; nothing answers with data but the
 * identification GET DATA allows. */
static void test_terminated(void)
{
    const char *path = prepare("enum-term.img", TC_SE_LC_TERMINATED);
    struct tc_se_card *card = se_card_reopen(path);
    const struct se_nvm *nv = se_test_nvm(card);
    uint8_t zero[sizeof nv->keysets];
    memset(zero, 0, sizeof zero);
    EXPECT(memcmp(nv->keysets, zero, sizeof zero) == 0);
    EXPECT(!nv->app.has_key && !nv->app.has_pending);
    unsigned with_data = 0;
    for (unsigned cla = 0; cla < 256; cla += 1) {
        for (unsigned ins = 0; ins < 256; ins++) {
            uint8_t cmd[5] = {(uint8_t)cla, (uint8_t)ins, 0x9F, 0x7F, 0x00};
            uint8_t resp[TC_SE_MAX_RESPONSE];
            size_t n = 0;
            EXPECT_OK(tc_se_process(card, cmd, sizeof cmd, resp, sizeof resp, &n));
            if (n > 2)
                with_data++;
        }
    }
    /* Only GET DATA (CLA 00/80 on channel 0 and open channels) answers data. */
    EXPECT(with_data <= 2);
    tc_se_close(card);
}

/* The scanner itself finds a planted key anywhere in a response. */
static void test_scanner_finds_keys(void)
{
    struct tc_se_card *card = se_card_new("planted.img", NULL);
    const struct se_nvm *nv = se_test_nvm(card);
    uint8_t buf[64];
    memset(buf, 0xEE, sizeof buf);
    EXPECT_EQ_U(scan_quiet(card, buf, sizeof buf, "", 0, 0, 0, 0, true), 0);
    memcpy(buf + 37, nv->keysets[0].mac + 5, WINDOW);
    EXPECT_EQ_U(scan_quiet(card, buf, sizeof buf, "", 0, 0, 0, 0, true), 3); /* ENC=MAC=DEK */
    memcpy(buf + 37, nv->keysets[0].mac + 5, WINDOW - 1);
    buf[37 + WINDOW - 1] ^= 0xFF;
    EXPECT_EQ_U(scan_quiet(card, buf, sizeof buf, "", 0, 0, 0, 0, true), 0);
    /* The pending renewal key is looked for too. */
    struct se_session s;
    EXPECT_EQ_U(se_tx(card, "00A4040C0AF0747275737463680101"), 0x9000);
    EXPECT_OK(se_session_open(&s, card, 0x30, se_gp_test_key, 16, 0x03, false, 0, false));
    EXPECT_EQ_U(se_stx(&s, "8040000008 0011223344556677 00"), 0x9000);
    EXPECT_EQ_U(se_stx(&s, "8040020008 0011223344556677 00"), 0x9000);
    se_session_close(&s);
    memset(buf, 0xEE, sizeof buf);
    memcpy(buf + 3, nv->app.pending_priv + 20, WINDOW);
    EXPECT_EQ_U(scan_quiet(card, buf, sizeof buf, "", 0, 0, 0, 0, true), 1);
    tc_se_close(card);
}

static void cleanup(void)
{
    se_util_cleanup();
}

static const struct tc_test_case cases[] = {
    {"scanner_finds_keys", test_scanner_finds_keys},
    {"no_secret_leaves", test_no_secret_leaves},
    {"terminated", test_terminated},
    {"cleanup", cleanup},
};

TC_TEST_MAIN("se_noexport", cases)
