#include "harness.h"

#include <stdlib.h>

static void test_error_record(void)
{
    tc_error_clear();
    EXPECT_EQ_U(tc_error_last()->code, TC_OK);
    tc_err rc = TC_FAIL(TC_ERR_FORMAT, "byte %d is bad", 7);
    EXPECT_EQ_U(rc, TC_ERR_FORMAT);
    char msg[200];
    tc_error_format(msg, sizeof msg);
    EXPECT(strstr(msg, "byte 7 is bad (malformed input, core/test_core.c:") == msg);
    EXPECT_STR(tc_err_name(TC_ERR_VERIFY), "verification failed");
    EXPECT_STR(tc_err_name((tc_err)999), "unknown error");
}

static void test_error_context_wraps_previous(void)
{
    (void)TC_FAIL(TC_ERR_IO, "connection refused");
    tc_err rc = TC_FAIL(TC_ERR_IO, "cannot reach 127.0.0.1:9: %s", tc_error_last()->msg);
    EXPECT_EQ_U(rc, TC_ERR_IO);
    EXPECT_STR(tc_error_last()->msg, "cannot reach 127.0.0.1:9: connection refused");
}

static tc_err guarded(int x)
{
    TC_ENSURE(x > 0, TC_ERR_RANGE);
    return TC_OK;
}

static tc_err propagates(int x)
{
    TC_GUARD(guarded(x));
    return TC_OK;
}

static void test_guard_keeps_deepest_cause(void)
{
    EXPECT_ERR(propagates(-1), TC_ERR_RANGE);
    EXPECT_STR(tc_error_last()->msg, "check failed: x > 0");
    EXPECT_OK(propagates(1));
}

static void test_cursor_reads(void)
{
    const uint8_t d[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a};
    struct tc_cursor c;
    tc_cursor_init(&c, d, sizeof d);
    uint8_t b = 0;
    uint16_t w = 0;
    uint32_t t = 0;
    EXPECT_OK(tc_cursor_u8(&c, &b));
    EXPECT_EQ_U(b, 1);
    EXPECT_OK(tc_cursor_u16be(&c, &w));
    EXPECT_EQ_U(w, 0x0203);
    EXPECT_OK(tc_cursor_u24be(&c, &t));
    EXPECT_EQ_U(t, 0x040506);
    EXPECT_OK(tc_cursor_u32be(&c, &t));
    EXPECT_EQ_U(t, 0x0708090a);
    EXPECT_EQ_U(tc_cursor_remaining(&c), 0);
    EXPECT_OK(tc_cursor_expect_end(&c));
}

static void test_cursor_failed_read_does_not_move(void)
{
    const uint8_t d[] = {0xAA, 0xBB, 0xCC};
    struct tc_cursor c;
    tc_cursor_init(&c, d, sizeof d);
    uint32_t v = 0x12345678;
    uint8_t out[8] = {0};
    const uint8_t *view = NULL;
    struct tc_cursor sub;
    EXPECT_ERR(tc_cursor_u32be(&c, &v), TC_ERR_TRUNCATED);
    EXPECT_EQ_U(v, 0x12345678);
    EXPECT_EQ_U(c.pos, 0);
    EXPECT_ERR(tc_cursor_copy(&c, out, 4), TC_ERR_TRUNCATED);
    EXPECT_ERR(tc_cursor_view(&c, 4, &view), TC_ERR_TRUNCATED);
    EXPECT(view == NULL);
    EXPECT_ERR(tc_cursor_sub(&c, 4, &sub), TC_ERR_TRUNCATED);
    EXPECT_ERR(tc_cursor_skip(&c, 4), TC_ERR_TRUNCATED);
    EXPECT_EQ_U(c.pos, 0);
    EXPECT_ERR(tc_cursor_expect_end(&c), TC_ERR_FORMAT);
    EXPECT_OK(tc_cursor_sub(&c, 2, &sub));
    EXPECT_EQ_U(sub.len, 2);
    uint8_t p = 0;
    EXPECT_OK(tc_cursor_peek(&c, &p));
    EXPECT_EQ_U(p, 0xCC);
    EXPECT_EQ_U(c.pos, 2);
    EXPECT_OK(tc_cursor_skip(&c, 1));
    EXPECT_ERR(tc_cursor_peek(&c, &p), TC_ERR_TRUNCATED);
    EXPECT_ERR(tc_cursor_u8(&c, &p), TC_ERR_TRUNCATED);
    /* A huge length must not wrap the bounds check. */
    tc_cursor_init(&c, d, sizeof d);
    EXPECT_ERR(tc_cursor_skip(&c, SIZE_MAX), TC_ERR_TRUNCATED);
}

static void test_buf_fixed_cap_is_sticky(void)
{
    uint8_t mem[4];
    struct tc_buf b;
    tc_buf_init_fixed(&b, mem, sizeof mem);
    tc_buf_put_u16be(&b, 0x0102);
    tc_buf_put_u8(&b, 3);
    EXPECT_OK(tc_buf_status(&b));
    tc_buf_put_u16be(&b, 0x0405); /* does not fit */
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_SPACE);
    tc_buf_put_u8(&b, 9); /* would fit, but the error is sticky */
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_SPACE);
    EXPECT_EQ_U(b.len, 3);
    const uint8_t want[] = {1, 2, 3};
    EXPECT_MEM(mem, 3, want, sizeof want);
    EXPECT(tc_buf_reserve(&b, 1) == NULL);
    tc_buf_reset(&b);
    EXPECT_OK(tc_buf_status(&b));
    tc_buf_put_u32be(&b, 0xdeadbeef);
    const uint8_t want2[] = {0xde, 0xad, 0xbe, 0xef};
    EXPECT_MEM(mem, b.len, want2, sizeof want2);
}

static void test_buf_heap_grows_to_cap(void)
{
    struct tc_buf b;
    tc_buf_init_heap(&b, 1000);
    for (int i = 0; i < 1000; i++)
        tc_buf_put_u8(&b, (uint8_t)i);
    EXPECT_OK(tc_buf_status(&b));
    EXPECT_EQ_U(b.len, 1000);
    EXPECT_EQ_U(b.data[999], (uint8_t)999);
    tc_buf_put_u8(&b, 0);
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_NOMEM);
    tc_buf_free(&b);
    tc_buf_free(&b); /* twice is fine */
    /* Zero-length puts on a buffer with no memory yet are no-ops. */
    tc_buf_init_heap(&b, 16);
    tc_buf_put(&b, NULL, 0);
    EXPECT(tc_buf_reserve(&b, 0) == NULL);
    EXPECT_OK(tc_buf_status(&b));
    EXPECT_EQ_U(b.len, 0);
    tc_buf_put_u8(&b, 7);
    EXPECT(tc_buf_reserve(&b, 0) == b.data + 1);
    EXPECT_OK(tc_buf_status(&b));
    tc_buf_free(&b);
    tc_buf_free(NULL);
}

static void test_hex_strict(void)
{
    uint8_t out[8];
    size_t n = 99;
    EXPECT_OK(tc_hex_decode("00a4FF", 6, 0, out, sizeof out, &n));
    const uint8_t want[] = {0x00, 0xa4, 0xff};
    EXPECT_MEM(out, n, want, sizeof want);
    EXPECT_OK(tc_hex_decode("", 0, 0, out, sizeof out, &n));
    EXPECT_EQ_U(n, 0);
    EXPECT_ERR(tc_hex_decode("abc", 3, 0, out, sizeof out, &n), TC_ERR_FORMAT);
    EXPECT(strstr(tc_error_last()->msg, "odd number of digits") != NULL);
    EXPECT_ERR(tc_hex_decode("0g", 2, 0, out, sizeof out, &n), TC_ERR_FORMAT);
    EXPECT(strstr(tc_error_last()->msg, "character 2 ('g')") != NULL);
    EXPECT_ERR(tc_hex_decode("00 a4", 5, 0, out, sizeof out, &n), TC_ERR_FORMAT);
    EXPECT(strstr(tc_error_last()->msg, "character 3 (' ')") != NULL);
    EXPECT_ERR(tc_hex_decode("001122334455667788", 18, 0, out, sizeof out, &n), TC_ERR_SPACE);
}

static void test_hex_separators(void)
{
    uint8_t out[8];
    size_t n = 0;
    EXPECT_OK(tc_hex_decode(" 00 A4:04\t00\n", 13, TC_HEX_ALLOW_SEP, out, sizeof out, &n));
    const uint8_t want[] = {0x00, 0xa4, 0x04, 0x00};
    EXPECT_MEM(out, n, want, sizeof want);
    /* A separator never splits a byte. */
    EXPECT_ERR(tc_hex_decode("0 0", 3, TC_HEX_ALLOW_SEP, out, sizeof out, &n), TC_ERR_FORMAT);
    EXPECT(strstr(tc_error_last()->msg, "separators only between whole bytes") != NULL);
    EXPECT_ERR(tc_hex_decode("00 0", 4, TC_HEX_ALLOW_SEP, out, sizeof out, &n), TC_ERR_FORMAT);
}

static void test_hex_encode(void)
{
    const uint8_t in[] = {0x00, 0x9f, 0x7f, 0xab};
    char s[9];
    EXPECT_OK(tc_hex_encode(in, sizeof in, s, sizeof s));
    EXPECT_STR(s, "009F7FAB");
    EXPECT_ERR(tc_hex_encode(in, sizeof in, s, 8), TC_ERR_SPACE);
}

static void test_ct_equal_and_memzero(void)
{
    uint8_t a[16], b[16];
    memset(a, 0x5a, sizeof a);
    memset(b, 0x5a, sizeof b);
    EXPECT(tc_ct_equal(a, b, sizeof a));
    b[15] ^= 1;
    EXPECT(!tc_ct_equal(a, b, sizeof a));
    b[15] ^= 1;
    b[0] ^= 0x80;
    EXPECT(!tc_ct_equal(a, b, sizeof a));
    EXPECT(tc_ct_equal(a, b, 0));
    tc_memzero(a, sizeof a);
    const uint8_t z[16] = {0};
    EXPECT_MEM(a, sizeof a, z, sizeof z);
    tc_memzero(NULL, 5);
}

static void test_parse_uint(void)
{
    uint64_t v = 0;
    EXPECT_OK(tc_parse_uint("48", 255, &v));
    EXPECT_EQ_U(v, 48);
    EXPECT_OK(tc_parse_uint("0x30", 255, &v));
    EXPECT_EQ_U(v, 0x30);
    EXPECT_OK(tc_parse_uint("0XfF", 255, &v));
    EXPECT_EQ_U(v, 255);
    EXPECT_ERR(tc_parse_uint("256", 255, &v), TC_ERR_RANGE);
    EXPECT_ERR(tc_parse_uint("", 255, &v), TC_ERR_FORMAT);
    EXPECT_ERR(tc_parse_uint("0x", 255, &v), TC_ERR_FORMAT);
    EXPECT_ERR(tc_parse_uint("12a", 255, &v), TC_ERR_FORMAT);
    EXPECT_ERR(tc_parse_uint("-1", 255, &v), TC_ERR_FORMAT);
    EXPECT_ERR(tc_parse_uint("99999999999999999999999", UINT64_MAX, &v), TC_ERR_RANGE);
    EXPECT_OK(tc_parse_uint("18446744073709551615", UINT64_MAX, &v));
    EXPECT_EQ_U(v, UINT64_MAX);
}

static void test_log_levels(void)
{
    tc_log_set_level(TC_LOG_WARN);
    EXPECT(tc_log_enabled(TC_LOG_ERROR));
    EXPECT(tc_log_enabled(TC_LOG_WARN));
    EXPECT(!tc_log_enabled(TC_LOG_INFO));
    tc_log_set_level(TC_LOG_TRACE);
    EXPECT(tc_log_enabled(TC_LOG_TRACE));
    tc_log_set_level(TC_LOG_ERROR);
}

static const struct tc_test_case cases[] = {
    {"error_record", test_error_record},
    {"error_context_wraps_previous", test_error_context_wraps_previous},
    {"guard_keeps_deepest_cause", test_guard_keeps_deepest_cause},
    {"cursor_reads", test_cursor_reads},
    {"cursor_failed_read_does_not_move", test_cursor_failed_read_does_not_move},
    {"buf_fixed_cap_is_sticky", test_buf_fixed_cap_is_sticky},
    {"buf_heap_grows_to_cap", test_buf_heap_grows_to_cap},
    {"hex_strict", test_hex_strict},
    {"hex_separators", test_hex_separators},
    {"hex_encode", test_hex_encode},
    {"ct_equal_and_memzero", test_ct_equal_and_memzero},
    {"parse_uint", test_parse_uint},
    {"log_levels", test_log_levels},
};

TC_TEST_MAIN("core", cases)
