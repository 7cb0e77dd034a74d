/*
 * The card side allocates nothing (STYLE.md rule 9): every heap allocation
 * made by this program (through libc's malloc family, wrapped at link time,
 * and through OpenSSL's allocator hooks) is counted while the card-side
 * functions run a whole session: INITIALIZE UPDATE, EXTERNAL AUTHENTICATE,
 * unwrapping and wrapping at every level, BEGIN/END R-MAC SESSION, PUT KEY
 * and chained commands. The host side runs outside the counted window (it
 * may allocate). The crypto module's per-thread contexts are created once,
 * by a warm-up session before counting starts.
 */
#include "harness.h"

#include <stdlib.h>

#include <openssl/crypto.h>

#include "scp03/internal.h"
#include "scp03/loop.h"

static bool counting;
static unsigned long allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

void *__wrap_malloc(size_t n)
{
    if (counting)
        allocations++;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (counting)
        allocations++;
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (counting)
        allocations++;
    return __real_realloc(p, n);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (counting)
        allocations++;
    return __real_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (counting)
        allocations++;
    return __real_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static void hook_openssl(void) __attribute__((constructor));
static void hook_openssl(void)
{
    /* Must run before OpenSSL allocates anything. */
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1)
        abort();
}

static struct loop L;
static struct tc_scp03_mem_provider MEM;
static struct tc_scp03_key_provider KP;
static struct tc_scp03_host H;

/* Card-side call with counting on. */
#define CARD(call)                                                                                 \
    do {                                                                                           \
        counting = true;                                                                           \
        tc_err card_rc_ = (call);                                                                  \
        counting = false;                                                                          \
        (void)card_rc_;                                                                            \
    } while (0)

static void one_session(uint8_t level, bool s16, size_t key_len, bool random_challenge)
{
    uint8_t cmd[600], resp[600], plain[600], out[600];
    size_t rlen = 0, plen = 0, olen = 0;
    uint16_t sw = 0;
    struct tc_buf b;
    struct tc_scp03_keyset ks;
    loop_init(&L, (uint8_t)((random_challenge ? 0x60 : 0x70) | (s16 ? 1 : 0)));
    if (random_challenge)
        L.cfg.random = NULL; /* the card draws from OpenSSL's DRBG */
    loop_add_keys(&L, 0x30, key_len, 0x10, 0);
    tc_scp03_mem_provider_init(&MEM, &KP);
    make_keyset(&ks, 0x30, key_len, 0x10);
    EXPECT_OK(tc_scp03_mem_provider_add(&MEM, &ks));
    const struct tc_scp03_host_config cfg = {
        .kvn = 0x30, .level = level, .s16 = s16, .aid = LOOP_AID, .aid_len = sizeof LOOP_AID};
    EXPECT_OK(tc_scp03_host_init(&H, &KP, &cfg));
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_initialize_update(&H, &b));
    CARD(tc_scp03_card_initialize_update(&L.card, cmd, b.len, resp, sizeof resp, &rlen, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_external_authenticate(&H, resp, rlen, &b));
    CARD(tc_scp03_card_external_authenticate(&L.card, cmd, b.len, &sw));
    EXPECT_OK(tc_scp03_host_authenticated(&H, sw));

    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)i;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 255, 300};
    for (size_t k = 0; k < TC_ARRAY_LEN(sizes); k++) {
        struct tc_apdu a = {.cla = 0x80,
                            .ins = 0xEE,
                            .data = sizes[k] ? data : NULL,
                            .lc = sizes[k],
                            .le = 256,
                            .has_le = true};
        tc_buf_init_fixed(&b, cmd, sizeof cmd);
        EXPECT_OK(tc_scp03_host_wrap(&H, &a, &b));
        struct tc_scp03_card_cmd c;
        CARD(tc_scp03_card_unwrap(&L.card, cmd, b.len, plain, sizeof plain, &plen, &c, &sw));
        EXPECT_EQ_U(sw, 0x9000);
        CARD(tc_scp03_card_wrap(&L.card, c.apdu.data, c.apdu.lc, 0x9000, resp, sizeof resp, &rlen));
        EXPECT_OK(tc_scp03_host_unwrap(&H, resp, rlen, out, sizeof out, &olen, &sw));
        EXPECT_MEM(out, olen, data, sizes[k]);
    }
    /* A chained command, reassembled in fixed memory. */
    struct tc_apdu big = {.cla = 0x80, .ins = 0xEE, .data = data, .lc = 280};
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_wrap(&H, &big, &b));
    {
        struct tc_apdu w;
        EXPECT_OK(tc_apdu_decode(cmd, b.len, &w));
        uint8_t seg[300];
        bool complete = false;
        const uint8_t *whole = NULL;
        size_t wl = 0;
        for (size_t off = 0; off < w.lc;) {
            size_t n = w.lc - off > 255 ? 255 : w.lc - off;
            bool last = off + n == w.lc;
            seg[0] = last ? w.cla : (uint8_t)(w.cla | 0x10);
            seg[1] = w.ins;
            seg[2] = w.p1;
            seg[3] = w.p2;
            seg[4] = (uint8_t)n;
            memcpy(seg + 5, w.data + off, n);
            CARD(tc_scp03_chain_feed(&L.chain, seg, 5 + n, &complete, &whole, &wl));
            off += n;
        }
        EXPECT(complete);
        struct tc_scp03_card_cmd c;
        CARD(tc_scp03_card_unwrap(&L.card, whole, wl, plain, sizeof plain, &plen, &c, &sw));
        EXPECT_EQ_U(sw, 0x9000);
        EXPECT_MEM(c.apdu.data, c.apdu.lc, data, 280);
        CARD(tc_scp03_card_wrap(&L.card, NULL, 0, 0x9000, resp, sizeof resp, &rlen));
        EXPECT_OK(tc_scp03_host_unwrap(&H, resp, rlen, out, sizeof out, &olen, &sw));
    }
    /* PUT KEY. */
    struct tc_scp03_mem_provider nm;
    struct tc_scp03_key_provider np;
    struct tc_scp03_keyset nk;
    uint8_t pk_data[TC_SCP03_PUT_KEY_DATA_MAX], kcvs[TC_SCP03_KCVS_LEN];
    tc_scp03_mem_provider_init(&nm, &np);
    make_keyset(&nk, 0x31, 32, 0x60);
    EXPECT_OK(tc_scp03_mem_provider_add(&nm, &nk));
    struct tc_buf pb;
    tc_buf_init_fixed(&pb, pk_data, sizeof pk_data);
    EXPECT_OK(tc_scp03_put_key_data(&KP, 0x30, &np, 0x31, &pb, kcvs));
    struct tc_apdu put = {.cla = 0x80,
                          .ins = 0xD8,
                          .p1 = 0x30,
                          .p2 = 0x81,
                          .data = pk_data,
                          .lc = pb.len,
                          .le = 256,
                          .has_le = true};
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_wrap(&H, &put, &b));
    struct tc_scp03_card_cmd c;
    struct tc_scp03_put_key pk;
    CARD(tc_scp03_card_unwrap(&L.card, cmd, b.len, plain, sizeof plain, &plen, &c, &sw));
    CARD(tc_scp03_card_put_key(&L.card, &c, &pk, &sw));
    EXPECT_EQ_U(sw, 0x9000);
    CARD(tc_scp03_put_key_response(&pk, out, sizeof out, &olen));
    CARD(tc_scp03_card_wrap(&L.card, out, olen, 0x9000, resp, sizeof resp, &rlen));
    EXPECT_OK(tc_scp03_host_unwrap(&H, resp, rlen, out, sizeof out, &olen, &sw));
    EXPECT_OK(tc_scp03_put_key_check(out, olen, 0x31, kcvs));
    tc_memzero(&pk, sizeof pk);
    tc_scp03_mem_provider_wipe(&nm);
    /* A failure path too: a tampered command aborts without allocating. */
    struct tc_apdu e = {.cla = 0x80, .ins = 0xEE, .data = data, .lc = 20};
    tc_buf_init_fixed(&b, cmd, sizeof cmd);
    EXPECT_OK(tc_scp03_host_wrap(&H, &e, &b));
    cmd[b.len - 1] ^= 1;
    CARD(tc_scp03_card_unwrap(&L.card, cmd, b.len, plain, sizeof plain, &plen, &c, &sw));
    EXPECT_EQ_U(sw, 0x6982);
    counting = true;
    tc_scp03_card_reset(&L.card);
    counting = false;
    tc_scp03_host_wipe(&H);
    tc_scp03_mem_provider_wipe(&MEM);
    tc_scp03_keyset_wipe(&ks);
}

static void test_card_side_allocates_nothing(void)
{
    /* Warm-up: the crypto module creates its per-thread contexts once. */
    one_session(0x33, false, 16, false);
    one_session(0x33, true, 24, true);
    one_session(0x33, true, 32, false);
    allocations = 0;
    static const uint8_t levels[] = {0x01, 0x03, 0x11, 0x13, 0x33};
    for (size_t k = 0; k < TC_ARRAY_LEN(levels); k++) {
        one_session(levels[k], false, 16, false);
        one_session(levels[k], true, 24, true);
        one_session(levels[k], true, 32, false);
        one_session(levels[k], false, 32, true);
    }
    EXPECT_EQ_U(allocations, 0);
    /* The counting itself works: a heap buffer allocates. */
    struct tc_buf hb;
    tc_buf_init_heap(&hb, 1024);
    counting = true;
    tc_buf_put_u8(&hb, 1);
    counting = false;
    EXPECT_OK(tc_buf_status(&hb));
    tc_buf_free(&hb);
    EXPECT(allocations >= 1);
    unsigned long before = allocations;
    counting = true;
    void *q = OPENSSL_malloc(8);
    counting = false;
    OPENSSL_free(q);
    EXPECT_EQ_U(allocations, before + 1);
}

static const struct tc_test_case cases[] = {
    {"card_side_allocates_nothing", test_card_side_allocates_nothing},
};

TC_TEST_MAIN("scp03_noalloc", cases)
