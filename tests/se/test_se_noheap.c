/*
 * The card path allocates nothing: malloc, calloc and realloc are wrapped at
 * link time (-Wl,--wrap) for every trustchain object in this binary, and
 * counted while the card processes commands: plain ones, the SCP03
 * handshake, wrapped management commands with NVM commits, and the identity
 * applet. OpenSSL's own allocations (inside a shared library) are outside
 * the wrap, as the module's contract says.
 */
#include "se_util.h"

#include <stdlib.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static bool counting;
static unsigned long allocations;

void *__wrap_malloc(size_t n)
{
    allocations += counting;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    allocations += counting;
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    allocations += counting;
    return __real_realloc(p, n);
}

/* A link that counts only while the card works. */
static tc_err counted_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                               size_t resp_size, size_t *resp_len)
{
    counting = true;
    tc_err rc = tc_se_process(ctx, cmd, cmd_len, resp, resp_size, resp_len);
    counting = false;
    return rc;
}

static void run_sequence(struct tc_se_card *card)
{
    static const char *const plain[] = {
        "00A4040000", "80CA004200", "80CA004500", "80CA006600",
        "80CA00E000", "80CA00C100", "80CA9F7F00", "80CABF3E00",
        "80CA9F7000", "80CA00CF00", "0070000001", "81CA004200",
        "0070800100", "FFCA000000", "80AA000000", "00A4040C0AF0747275737463680101",
        "8048000000", "8042000000", "00A4040C00",
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(plain); i++) {
        counting = true;
        (void)se_tx(card, plain[i]);
        counting = false;
    }
    struct se_session s;
    memset(&s, 0, sizeof s);
    tc_scp03_mem_provider_init(&s.mp, &s.kp);
    struct tc_scp03_keyset ks;
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x30, se_gp_test_key, se_gp_test_key, se_gp_test_key, 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&s.mp, &ks));
    struct tc_transport t = {.ctx = card, .name = "counted", .transmit = counted_transmit};
    struct tc_scp03_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kvn = 0x30;
    cfg.level = 0x33;
    cfg.aid = se_isd_aid;
    cfg.aid_len = sizeof se_isd_aid;
    cfg.select = true;
    EXPECT_OK(tc_scp03_host_open(&s.h, &t, &s.kp, &cfg));
    static const char *const wrapped[] = {
        "80F2800202 4F00 00",    "80F2400202 4F00 00", "80F2100002 4F00 00",
        "80E2900005 DF0102ABCD", "80CADF0100",         "80E4000003 D20177 00",
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(wrapped); i++)
        (void)se_stx(&s, wrapped[i]);
    tc_scp03_host_close(&s.h);
    tc_scp03_mem_provider_wipe(&s.mp);
    tc_scp03_keyset_wipe(&ks);
}

static void test_no_heap_on_card_path(void)
{
    struct tc_se_card *card = se_card_new("noheap.img", NULL);
    run_sequence(card); /* first use on this thread: OpenSSL fetches */
    allocations = 0;
    for (int i = 0; i < 50; i++)
        run_sequence(card);
    EXPECT_EQ_U(allocations, 0);
    /* The wrap is live: an allocation from trustchain code is counted. */
    counting = true;
    struct tc_buf b;
    tc_buf_init_heap(&b, 64);
    tc_buf_put_u8(&b, 1);
    counting = false;
    EXPECT(allocations > 0);
    tc_buf_free(&b);
    tc_se_close(card);
}

static void cleanup(void)
{
    se_util_cleanup();
}

static const struct tc_test_case cases[] = {
    {"no_heap_on_card_path", test_no_heap_on_card_path},
    {"cleanup", cleanup},
};

TC_TEST_MAIN("se_noheap", cases)
