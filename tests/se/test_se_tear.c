/*
 * Tearing: power is lost at every single write point of every
 * state-changing command, and afterwards the image holds exactly the old
 * state (a write before the sync was torn) or exactly the new one (the sync
 * was the point lost). A torn keyset is never usable.
 */
#include "se_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static char base_path[512], work_path[512];

static void copy_file(const char *from, const char *to)
{
    size_t n = 0;
    uint8_t *p = tc_test_read_file(from, &n);
    FILE *f = fopen(to, "wb");
    if (p == NULL || f == NULL || fwrite(p, 1, n, f) != n)
        tc_test_fail_at(__FILE__, __LINE__, "cannot copy %s to %s", from, to);
    if (f != NULL)
        fclose(f);
    free(p);
}

struct tear_ctx {
    struct se_session s;
    bool session;
    uint8_t cert[1024];
    size_t cert_len;
};

struct scenario {
    const char *name;
    /* Everything up to the command under test (may commit). */
    void (*setup)(struct tc_se_card *card, struct tear_ctx *x);
    /* The command under test; TC_OK with its SW, or TC_ERR_IO when torn. */
    tc_err (*cmd)(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw);
    /* After a torn run with the old state: what must (not) work. */
    void (*check_old)(struct tc_se_card *card);
};

static tc_err send_wrapped(struct tear_ctx *x, const char *hex, uint16_t *sw)
{
    uint8_t cmd[TC_SE_MAX_COMMAND];
    size_t n = se_unhex(hex, cmd, sizeof cmd);
    struct tc_apdu a;
    if (tc_apdu_decode(cmd, n, &a) != TC_OK)
        return TC_ERR_ARG;
    size_t rl = 0;
    return tc_scp03_host_transmit(&x->s.h, &a, se_resp, sizeof se_resp, &rl, sw);
}

static tc_err send_plain(struct tc_se_card *card, const char *hex, uint16_t *sw)
{
    uint8_t cmd[TC_SE_MAX_COMMAND];
    size_t n = se_unhex(hex, cmd, sizeof cmd), rl = 0;
    tc_err rc = tc_se_process(card, cmd, n, se_resp, sizeof se_resp, &rl);
    if (rc == TC_OK && rl >= 2)
        *sw = (uint16_t)(se_resp[rl - 2] << 8 | se_resp[rl - 1]);
    return rc;
}

static void setup_isd_enc(struct tc_se_card *card, struct tear_ctx *x)
{
    EXPECT_OK(se_session_default(&x->s, card, 0x03));
    x->session = true;
}

static void setup_applet_enc(struct tc_se_card *card, struct tear_ctx *x)
{
    EXPECT_EQ_U(se_tx(card, "00A4040C0AF0747275737463680101"), 0x9000);
    EXPECT_OK(se_session_open(&x->s, card, 0x30, se_gp_test_key, 16, 0x03, false, 0, false));
    x->session = true;
}

static const uint8_t new_key[16] = {0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78,
                                    0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0};

static tc_err cmd_put_key(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw, uint8_t old)
{
    (void)card;
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    tc_scp03_mem_provider_init(&mp, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, old == 0 ? 0x31 : 0x30, new_key, new_key, new_key, 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&mp, &ks));
    tc_err rc = tc_scp03_host_put_keys(&x->s.h, &kp, ks.kvn, old);
    *sw = rc == TC_OK ? 0x9000 : 0x6F00;
    tc_scp03_mem_provider_wipe(&mp);
    tc_scp03_keyset_wipe(&ks);
    return rc == TC_ERR_IO ? TC_ERR_IO : TC_OK;
}

static tc_err cmd_put_key_add(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    return cmd_put_key(card, x, sw, 0x00);
}

static tc_err cmd_put_key_replace(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    return cmd_put_key(card, x, sw, 0x30);
}

/* After a torn replacement the old keys work and the new ones do not. */
static void check_put_key_old(struct tc_se_card *card)
{
    struct se_session s;
    EXPECT_OK(se_session_default(&s, card, 0x03));
    se_session_close(&s);
    EXPECT(se_session_open(&s, card, 0x30, new_key, 16, 0x03, false, 0, true) != TC_OK);
    EXPECT(se_session_open(&s, card, 0x31, new_key, 16, 0x03, false, 0, true) != TC_OK);
    tc_error_clear();
}

static tc_err cmd_generate(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x, "8040010010 00112233445566778899AABBCCDDEEFF 00", sw);
}

static EVP_PKEY *pub_to_pkey(const uint8_t pub[65])
{
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)pub, 65),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* A certificate for the public key in the last GENERATE KEY response. */
static void cert_for_last_key(struct tear_ctx *x)
{
    EVP_PKEY *ca = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *subj = pub_to_pkey(se_resp + 2);
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), 42);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tear", -1, -1, 0);
    X509_set_issuer_name(c, name);
    X509_gmtime_adj(X509_getm_notBefore(c), 0);
    X509_gmtime_adj(X509_getm_notAfter(c), 60);
    X509_set_pubkey(c, subj);
    EXPECT(X509_sign(c, ca, EVP_sha256()) > 0);
    unsigned char *p = x->cert;
    int n = i2d_X509(c, &p);
    EXPECT(n > 0 && (size_t)n <= sizeof x->cert);
    x->cert_len = (size_t)n;
    X509_free(c);
    EVP_PKEY_free(subj);
    EVP_PKEY_free(ca);
}

static void setup_cert(struct tc_se_card *card, struct tear_ctx *x)
{
    setup_applet_enc(card, x);
    uint16_t sw = 0;
    EXPECT_OK(send_wrapped(x, "8040000010 00112233445566778899AABBCCDDEEFF 00", &sw));
    EXPECT_EQ_U(sw, 0x9000);
    cert_for_last_key(x);
}

/* An identity, and a renewal key pair with its certificate ready. */
static void setup_cert_pending(struct tc_se_card *card, struct tear_ctx *x)
{
    setup_applet_enc(card, x);
    uint16_t sw = 0;
    EXPECT_OK(send_wrapped(x, "8040000010 00112233445566778899AABBCCDDEEFF 00", &sw));
    EXPECT_EQ_U(sw, 0x9000);
    EXPECT_OK(send_wrapped(x, "8040020010 F0E1D2C3B4A5968778695A4B3C2D1E0F 00", &sw));
    EXPECT_EQ_U(sw, 0x9000);
    cert_for_last_key(x);
}

static void setup_identity(struct tc_se_card *card, struct tear_ctx *x)
{
    setup_applet_enc(card, x);
    uint16_t sw = 0;
    EXPECT_OK(send_wrapped(x, "8040000010 00112233445566778899AABBCCDDEEFF 00", &sw));
    EXPECT_EQ_U(sw, 0x9000);
}

static tc_err cmd_generate_pending(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x, "8040020010 00112233445566778899AABBCCDDEEFF 00", sw);
}

/* After a torn promotion the old key pair is active and the pending one
 * still waits for its certificate. */
static void check_promotion_old(struct tc_se_card *card)
{
    EXPECT_EQ_U(se_tx(card, "00A4040C0AF0747275737463680101"), 0x9000);
    EXPECT_EQ_U(se_tx(card, "8042010000"), 0x9000);
    EXPECT(se_test_nvm(card)->app.has_pending);
    EXPECT(se_test_nvm(card)->app.cert_len == 0);
}

static tc_err cmd_store_cert(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    struct tc_apdu a = {.cla = 0x80,
                        .ins = TC_SE_ID_INS_STORE_CERT,
                        .p1 = 0x80,
                        .data = x->cert,
                        .lc = x->cert_len};
    size_t rl = 0;
    return tc_scp03_host_transmit(&x->s.h, &a, se_resp, sizeof se_resp, &rl, sw);
}

static tc_err cmd_set_status(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x, "80F0800700", sw);
}

static tc_err cmd_store_data(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x, "80E2900009 4203AABBCC DF0101EE", sw);
}

static tc_err cmd_delete_app(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x, "80E400000C 4F0AF0747275737463680101 00", sw);
}

static void setup_two_keysets(struct tc_se_card *card, struct tear_ctx *x)
{
    setup_isd_enc(card, x);
    uint16_t sw = 0;
    EXPECT_OK(cmd_put_key_add(card, x, &sw));
    EXPECT_EQ_U(sw, 0x9000);
}

static tc_err cmd_delete_key(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x, "80E4000003 D20131 00", sw);
}

static void setup_no_applet(struct tc_se_card *card, struct tear_ctx *x)
{
    setup_isd_enc(card, x);
    uint16_t sw = 0;
    EXPECT_OK(cmd_delete_app(card, x, &sw));
    EXPECT_EQ_U(sw, 0x9000);
}

static tc_err cmd_install(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)card;
    return send_wrapped(x,
                        "80E604002609F074727573746368010AF07472757374636801010AF0747275737463680101"
                        "010002C9000000",
                        sw);
}

static void setup_nothing(struct tc_se_card *card, struct tear_ctx *x)
{
    (void)card;
    (void)x;
}

static tc_err cmd_initialize_update(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)x;
    return send_plain(card, "8050300008 0102030405060708 00", sw);
}

static void setup_initialized(struct tc_se_card *card, struct tear_ctx *x)
{
    (void)x;
    EXPECT_EQ_U(se_tx(card, "8050300008 0102030405060708 00"), 0x9000);
}

static tc_err cmd_bad_external_auth(struct tc_se_card *card, struct tear_ctx *x, uint16_t *sw)
{
    (void)x;
    tc_err rc = send_plain(card, "8482010010 00000000000000000000000000000000", sw);
    if (rc == TC_OK && *sw == 0x6300)
        *sw = 0x9000; /* the failure counter is the state this command changes */
    return rc;
}

static const struct scenario scenarios[] = {
    {"PUT KEY (add)", setup_isd_enc, cmd_put_key_add, check_put_key_old},
    {"PUT KEY (replace)", setup_isd_enc, cmd_put_key_replace, check_put_key_old},
    {"GENERATE KEY", setup_applet_enc, cmd_generate, NULL},
    {"STORE CERTIFICATE", setup_cert, cmd_store_cert, NULL},
    {"GENERATE KEY (pending)", setup_identity, cmd_generate_pending, NULL},
    {"STORE CERTIFICATE (promotes the pending key)", setup_cert_pending, cmd_store_cert,
     check_promotion_old},
    {"SET STATUS", setup_isd_enc, cmd_set_status, NULL},
    {"STORE DATA", setup_isd_enc, cmd_store_data, NULL},
    {"DELETE (application)", setup_isd_enc, cmd_delete_app, NULL},
    {"DELETE KEY", setup_two_keysets, cmd_delete_key, NULL},
    {"INSTALL", setup_no_applet, cmd_install, NULL},
    {"INITIALIZE UPDATE (sequence counter)", setup_nothing, cmd_initialize_update, NULL},
    {"EXTERNAL AUTHENTICATE (failure counter)", setup_initialized, cmd_bad_external_auth, NULL},
};

static void close_ctx(struct tear_ctx *x)
{
    if (x->session)
        se_session_close(&x->s);
    x->session = false;
}

static void run_scenario(const struct scenario *sc)
{
    static struct se_nvm before, intended, after;
    struct tear_ctx x;
    memset(&x, 0, sizeof x);
    /* Reference run: how many write points the command has. */
    copy_file(base_path, work_path);
    struct tc_se_card *card = se_card_reopen(work_path);
    if (card == NULL)
        return;
    sc->setup(card, &x);
    uint64_t p0 = se_test_write_points(card);
    uint16_t sw = 0;
    EXPECT_OK(sc->cmd(card, &x, &sw));
    if (sw != 0x9000)
        tc_test_fail_at(__FILE__, __LINE__, "%s: reference run answered %04X", sc->name, sw);
    uint64_t points = se_test_write_points(card) - p0;
    close_ctx(&x);
    tc_se_close(card);
    /* One write point per chunk of a slot, plus the sync. */
    EXPECT_EQ_U(points, SE_SLOT_SIZE / SE_IMG_CHUNK + 1);

    for (uint64_t k = 0; k < points; k++) {
        memset(&x, 0, sizeof x);
        copy_file(base_path, work_path);
        card = se_card_reopen(work_path);
        if (card == NULL)
            return;
        sc->setup(card, &x);
        memcpy(&before, se_test_nvm(card), sizeof before);
        se_test_set_tear(card, se_test_write_points(card) + k);
        tc_err rc = sc->cmd(card, &x, &sw);
        if (rc != TC_ERR_IO)
            tc_test_fail_at(__FILE__, __LINE__, "%s, write point %llu: not torn (%s)", sc->name,
                            (unsigned long long)k, tc_err_name(rc));
        tc_error_clear();
        memcpy(&intended, se_test_nvm(card), sizeof intended);
        EXPECT(memcmp(&before, &intended, sizeof before) != 0);
        EXPECT(!tc_se_powered(card));
        close_ctx(&x);
        /* Power comes back: the same card reloads its image. */
        uint8_t atr[TC_SE_ATR_MAX];
        size_t atr_len;
        se_test_set_tear(card, UINT64_MAX);
        EXPECT_OK(tc_se_power_on(card, atr, sizeof atr, &atr_len));
        memcpy(&after, se_test_nvm(card), sizeof after);
        /* The new state is complete once every byte of the slot that
         * matters is written: at the sync, or when the torn chunk's first
         * half already reaches past the slot's content. */
        bool last = k + 1 == points ||
                    (k + 2 == points && k * SE_IMG_CHUNK + SE_IMG_CHUNK / 2 >= SE_SLOT_RAW);
        const struct se_nvm *want = last ? &intended : &before;
        if (memcmp(&after, want, sizeof after) != 0)
            tc_test_fail_at(__FILE__, __LINE__, "%s, write point %llu: image holds %s", sc->name,
                            (unsigned long long)k,
                            memcmp(&after, &before, sizeof after) == 0     ? "the old state"
                            : memcmp(&after, &intended, sizeof after) == 0 ? "the new state"
                                                                           : "a mixed state");
        /* Reading the file afresh gives the same. */
        static struct se_nvm fresh;
        uint8_t slot = 0;
        uint64_t gen = 0;
        int fd = open(work_path, O_RDONLY);
        EXPECT_OK(se_image_read(fd, &fresh, &slot, &gen));
        close(fd);
        EXPECT(memcmp(&fresh, want, sizeof fresh) == 0);
        EXPECT_EQ_U(se_tx(card, "80CA00C100"), 0x9000);
        if (!last && sc->check_old != NULL)
            sc->check_old(card);
        tc_se_close(card);
    }
}

static void test_tearing(void)
{
    struct tc_se_params p;
    tc_se_params_default(&p);
    (void)snprintf(base_path, sizeof base_path, "%s", se_tmp_path("base.img"));
    (void)snprintf(work_path, sizeof work_path, "%s", se_tmp_path("work.img"));
    EXPECT_OK(tc_se_create(base_path, &p, TC_SE_CREATE_FORCE));
    for (size_t i = 0; i < TC_ARRAY_LEN(scenarios); i++)
        run_scenario(&scenarios[i]);
}

/* A torn write that leaves garbage in the middle of a slot is caught by
 * the checksum, never half-applied. */
static void test_torn_slot_garbage(void)
{
    struct tc_se_params p;
    tc_se_params_default(&p);
    const char *path = se_tmp_path("garbage.img");
    EXPECT_OK(tc_se_create(path, &p, TC_SE_CREATE_FORCE));
    struct tc_se_info a, b;
    EXPECT_OK(tc_se_describe(path, &a));
    int fd = open(path, O_RDWR);
    uint8_t junk[SE_IMG_CHUNK];
    memset(junk, 0x5A, sizeof junk);
    /* Slot 1 holds nothing valid yet; write a plausible half of it. */
    EXPECT(pwrite(fd, junk, sizeof junk, (off_t)SE_SLOT_SIZE + SE_IMG_CHUNK) ==
           (ssize_t)sizeof junk);
    close(fd);
    EXPECT_OK(tc_se_describe(path, &b));
    EXPECT_EQ_U(b.nvm_generation, a.nvm_generation);
    EXPECT(memcmp(&a, &b, sizeof a) == 0);
}

static void cleanup(void)
{
    se_util_cleanup();
}

static const struct tc_test_case cases[] = {
    {"tearing", test_tearing},
    {"torn_slot_garbage", test_torn_slot_garbage},
    {"cleanup", cleanup},
};

TC_TEST_MAIN("se_tear", cases)
