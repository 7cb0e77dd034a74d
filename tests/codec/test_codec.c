/*
 * codec: command and response APDUs, the class byte, instruction names,
 * status words and BER-TLV, driven by the vector files in
 * tests/vectors/codec/ (each names its source).
 */
#include "harness.h"

#include <stdlib.h>

#include <trustchain/codec.h>

/* ------------------------------------------------------------- helpers */

/* Expand {N*XX} into N copies of XX; everything else is copied. */
static char *expand(const char *s)
{
    size_t cap = strlen(s) + 1, n = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    while (*s != '\0') {
        size_t count = 0;
        char pair[3] = {0};
        const char *close = NULL;
        if (*s == '{' && (close = strchr(s, '}')) != NULL && strchr(s, '*') != NULL &&
            strchr(s, '*') < close) {
            const char *star = strchr(s, '*');
            char num[16] = {0};
            size_t nl = (size_t)(star - s - 1);
            if (nl == 0 || nl >= sizeof num || close - star != 3) {
                tc_test_fail_at(__FILE__, __LINE__, "bad repeat in vector: %s", s);
                free(out);
                return NULL;
            }
            memcpy(num, s + 1, nl);
            uint64_t v = 0;
            if (tc_parse_uint(num, 1u << 20, &v) != TC_OK) {
                tc_test_fail_at(__FILE__, __LINE__, "bad repeat count in vector: %s", s);
                free(out);
                return NULL;
            }
            count = (size_t)v;
            pair[0] = star[1];
            pair[1] = star[2];
            size_t need = n + 2 * count + strlen(close + 1) + 1;
            if (need > cap) {
                char *p = realloc(out, need);
                if (p == NULL) {
                    free(out);
                    return NULL;
                }
                out = p;
                cap = need;
            }
            for (size_t i = 0; i < count; i++) {
                out[n++] = pair[0];
                out[n++] = pair[1];
            }
            s = close + 1;
            continue;
        }
        if (n + 2 > cap) {
            char *p = realloc(out, cap * 2);
            if (p == NULL) {
                free(out);
                return NULL;
            }
            out = p;
            cap *= 2;
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    return out;
}

/* A hex field with {N*XX} expanded; an empty value gives len 0. */
static uint8_t *field_bytes(const struct tc_vec *v, const char *key, size_t *len)
{
    *len = 0;
    const char *s = tc_vec_get(v, key);
    if (s == NULL) {
        tc_test_fail_at(v->path, v->record_line, "record lacks %s", key);
        return NULL;
    }
    char *x = expand(s);
    if (x == NULL)
        return NULL;
    size_t sl = strlen(x);
    uint8_t *out = malloc(sl / 2 + 1);
    if (out != NULL && tc_hex_decode(x, sl, TC_HEX_ALLOW_SEP, out, sl / 2 + 1, len) != TC_OK) {
        tc_test_fail_at(v->path, v->record_line, "%s is not hex", key);
        free(out);
        out = NULL;
    }
    free(x);
    return out;
}

static uint64_t field_uint(const struct tc_vec *v, const char *key)
{
    const char *s = tc_vec_get(v, key);
    uint64_t out = 0;
    if (s == NULL || tc_parse_uint(s, UINT64_MAX, &out) != TC_OK)
        tc_test_fail_at(v->path, v->record_line, "%s is not a number", key);
    return out;
}

static uint64_t field_hexnum(const struct tc_vec *v, const char *key)
{
    const char *s = tc_vec_get(v, key);
    char buf[32];
    uint64_t out = 0;
    if (s == NULL || strlen(s) > 16) {
        tc_test_fail_at(v->path, v->record_line, "%s missing", key);
        return 0;
    }
    (void)snprintf(buf, sizeof buf, "0x%s", s);
    if (tc_parse_uint(buf, UINT64_MAX, &out) != TC_OK)
        tc_test_fail_at(v->path, v->record_line, "%s is not hex", key);
    return out;
}

static bool field_yes(const struct tc_vec *v, const char *key)
{
    const char *s = tc_vec_get(v, key);
    if (s == NULL || (strcmp(s, "yes") != 0 && strcmp(s, "no") != 0)) {
        tc_test_fail_at(v->path, v->record_line, "%s must be yes or no", key);
        return false;
    }
    return strcmp(s, "yes") == 0;
}

static tc_err err_code(const struct tc_vec *v)
{
    static const struct {
        const char *name;
        tc_err code;
    } names[] = {
        {"ARG", TC_ERR_ARG},
        {"TRUNCATED", TC_ERR_TRUNCATED},
        {"FORMAT", TC_ERR_FORMAT},
        {"RANGE", TC_ERR_RANGE},
        {"SPACE", TC_ERR_SPACE},
        {"NOT_FOUND", TC_ERR_NOT_FOUND},
        {"UNSUPPORTED", TC_ERR_UNSUPPORTED},
    };
    const char *s = tc_vec_get(v, "ERROR");
    for (size_t i = 0; s != NULL && i < TC_ARRAY_LEN(names); i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].code;
    tc_test_fail_at(v->path, v->record_line, "unknown ERROR %s", s ? s : "(none)");
    return TC_OK;
}

/* The call failed with the record's ERROR and exactly its MESSAGE. */
static void expect_failure(const struct tc_vec *v, tc_err rc)
{
    tc_err want = err_code(v);
    const char *msg = tc_vec_get(v, "MESSAGE");
    if (rc != want)
        tc_test_fail_at(v->path, v->record_line, "returned '%s', expected '%s'", tc_err_name(rc),
                        tc_err_name(want));
    if (msg == NULL || strcmp(tc_error_last()->msg, msg) != 0)
        tc_test_fail_at(v->path, v->record_line, "message \"%s\", expected \"%s\"",
                        tc_error_last()->msg, msg ? msg : "(none)");
}

static void expect_ok_at(const struct tc_vec *v, tc_err rc, const char *what)
{
    if (rc != TC_OK) {
        char m[400];
        tc_error_format(m, sizeof m);
        tc_test_fail_at(v->path, v->record_line, "%s failed: %s", what, m);
    }
}

#define EXPECT_AT(v, cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tc_test_fail_at((v)->path, (v)->record_line, "expected: %s", #cond);                   \
    } while (0)

static size_t run_vectors(const char *file, void (*fn)(const struct tc_vec *v))
{
    struct tc_vec v;
    size_t n = 0;
    if (!tc_vec_open(&v, file))
        return 0;
    while (tc_vec_next(&v)) {
        fn(&v);
        n++;
    }
    tc_vec_close(&v);
    if (n == 0)
        tc_test_fail_at(__FILE__, __LINE__, "%s has no records", file);
    return n;
}

/* ------------------------------------------------------------- APDU */

static enum tc_apdu_case case_from(const char *s)
{
    for (int c = TC_APDU_CASE_1; c <= TC_APDU_CASE_4E; c++)
        if (s != NULL && strcmp(tc_apdu_case_name((enum tc_apdu_case)c), s) == 0)
            return (enum tc_apdu_case)c;
    return (enum tc_apdu_case)0;
}

static void apdu_case_vector(const struct tc_vec *v)
{
    size_t len = 0;
    uint8_t *in = field_bytes(v, "APDU", &len);
    if (in == NULL)
        return;
    struct tc_apdu a;
    memset(&a, 0xA5, sizeof a);
    struct tc_apdu before = a;
    tc_error_clear();
    tc_err rc = tc_apdu_decode(in, len, &a);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        EXPECT_AT(v, memcmp(&a, &before, sizeof a) == 0); /* out untouched */
        free(in);
        return;
    }
    expect_ok_at(v, rc, "tc_apdu_decode");
    if (rc == TC_OK) {
        size_t dlen = 0;
        uint8_t *data = tc_vec_get(v, "DATA") ? field_bytes(v, "DATA", &dlen) : NULL;
        enum tc_apdu_case want = case_from(tc_vec_get(v, "CASE"));
        EXPECT_AT(v, want != 0 && tc_apdu_case_of(&a) == want);
        EXPECT_AT(v, a.cla == field_hexnum(v, "CLA"));
        EXPECT_AT(v, a.ins == field_hexnum(v, "INS"));
        EXPECT_AT(v, a.p1 == field_hexnum(v, "P1"));
        EXPECT_AT(v, a.p2 == field_hexnum(v, "P2"));
        EXPECT_AT(v, a.lc == field_uint(v, "LC"));
        EXPECT_AT(v, a.lc == dlen);
        if (a.lc == 0)
            EXPECT_AT(v, a.data == NULL);
        else
            EXPECT_AT(v, a.data != NULL && data != NULL && memcmp(a.data, data, dlen) == 0);
        const char *le = tc_vec_get(v, "LE");
        if (le != NULL && strcmp(le, "none") == 0)
            EXPECT_AT(v, !a.has_le);
        else
            EXPECT_AT(v, a.has_le && a.le == field_uint(v, "LE"));
        EXPECT_AT(v, a.extended == field_yes(v, "EXTENDED"));
        /* Round trip: encoding the decoded command gives the input. */
        struct tc_buf b;
        tc_buf_init_heap(&b, TC_APDU_MAX_ENCODED);
        expect_ok_at(v, tc_apdu_encode(&a, &b), "tc_apdu_encode");
        EXPECT_AT(v, b.len == len && memcmp(b.data, in, len) == 0);
        tc_buf_free(&b);
        free(data);
    }
    free(in);
}

static void test_apdu_decode_vectors(void)
{
    EXPECT(run_vectors("codec/apdu_cases.txt", apdu_case_vector) >= 40);
}

static void apdu_encode_vector(const struct tc_vec *v)
{
    struct tc_apdu a = {0};
    a.cla = (uint8_t)field_hexnum(v, "CLA");
    a.ins = (uint8_t)field_hexnum(v, "INS");
    a.p1 = (uint8_t)field_hexnum(v, "P1");
    a.p2 = (uint8_t)field_hexnum(v, "P2");
    uint8_t *data = NULL;
    size_t dlen = 0;
    if (tc_vec_get(v, "DATA") != NULL)
        data = field_bytes(v, "DATA", &dlen);
    a.data = dlen ? data : NULL;
    a.lc = dlen;
    const char *le = tc_vec_get(v, "LE");
    a.has_le = !(le != NULL && strcmp(le, "none") == 0);
    if (a.has_le)
        a.le = (uint32_t)field_uint(v, "LE");
    a.extended = field_yes(v, "EXTENDED");
    struct tc_buf b;
    tc_buf_init_heap(&b, TC_APDU_MAX_ENCODED + 16);
    tc_error_clear();
    tc_err rc = tc_apdu_encode(&a, &b);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        EXPECT_AT(v, b.len == 0); /* nothing written before the checks */
    } else {
        size_t elen = 0;
        uint8_t *exp = field_bytes(v, "ENCODED", &elen);
        expect_ok_at(v, rc, "tc_apdu_encode");
        EXPECT_AT(v, exp != NULL && b.len == elen && memcmp(b.data, exp, elen) == 0);
        /* And back. */
        struct tc_apdu d;
        expect_ok_at(v, tc_apdu_decode(b.data, b.len, &d), "tc_apdu_decode");
        EXPECT_AT(v, d.lc == a.lc && d.has_le == a.has_le && (!a.has_le || d.le == a.le));
        free(exp);
    }
    tc_buf_free(&b);
    free(data);
}

static void test_apdu_encode_vectors(void)
{
    EXPECT(run_vectors("codec/apdu_encode.txt", apdu_encode_vector) >= 20);
}

static void test_apdu_encode_errors(void)
{
    /* Lc without data. */
    struct tc_apdu a = {.cla = 0x00, .ins = 0xA4, .lc = 3, .data = NULL};
    struct tc_buf b;
    uint8_t mem[8];
    tc_buf_init_fixed(&b, mem, sizeof mem);
    EXPECT_ERR(tc_apdu_encode(&a, &b), TC_ERR_ARG);
    EXPECT_STR(tc_error_last()->msg, "Lc of 3 without data");
    EXPECT_ERR(tc_apdu_encode(NULL, &b), TC_ERR_ARG);
    EXPECT_ERR(tc_apdu_encode(&a, NULL), TC_ERR_ARG);
    /* Output too small: 4S with 8 data bytes needs 14 bytes. */
    const uint8_t d[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct tc_apdu iu = {.cla = 0x80, .ins = 0x50, .data = d, .lc = 8, .has_le = true, .le = 256};
    tc_buf_init_fixed(&b, mem, sizeof mem);
    EXPECT_ERR(tc_apdu_encode(&iu, &b), TC_ERR_SPACE);
    uint8_t mem14[14];
    tc_buf_init_fixed(&b, mem14, sizeof mem14);
    EXPECT_OK(tc_apdu_encode(&iu, &b));
    EXPECT_EQ_U(b.len, 14);
    /* Decoder argument checks. */
    struct tc_apdu out;
    EXPECT_ERR(tc_apdu_decode(NULL, 4, &out), TC_ERR_ARG);
    EXPECT_ERR(tc_apdu_decode(mem14, 14, NULL), TC_ERR_ARG);
}

static void test_apdu_case_names(void)
{
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_1), "1");
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_2S), "2S");
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_3S), "3S");
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_4S), "4S");
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_2E), "2E");
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_3E), "3E");
    EXPECT_STR(tc_apdu_case_name(TC_APDU_CASE_4E), "4E");
    EXPECT_STR(tc_apdu_case_name((enum tc_apdu_case)0), "?");
    /* case_of follows the encoder's choice of form. */
    uint8_t d[300] = {0};
    struct tc_apdu a = {.data = d, .lc = 255, .has_le = true, .le = 256};
    EXPECT_EQ_U(tc_apdu_case_of(&a), TC_APDU_CASE_4S);
    a.le = 257;
    EXPECT_EQ_U(tc_apdu_case_of(&a), TC_APDU_CASE_4E);
    a.le = 1;
    a.lc = 256;
    EXPECT_EQ_U(tc_apdu_case_of(&a), TC_APDU_CASE_4E);
    a.has_le = false;
    EXPECT_EQ_U(tc_apdu_case_of(&a), TC_APDU_CASE_3E);
    a.lc = 0;
    a.data = NULL;
    a.extended = true;
    EXPECT_EQ_U(tc_apdu_case_of(&a), TC_APDU_CASE_1);
    a.has_le = true;
    EXPECT_EQ_U(tc_apdu_case_of(&a), TC_APDU_CASE_2E);
}

static void ins_vector(const struct tc_vec *v)
{
    const char *name =
        tc_apdu_ins_name((uint8_t)field_hexnum(v, "CLA"), (uint8_t)field_hexnum(v, "INS"));
    const char *want = tc_vec_get(v, "NAME");
    if (want != NULL && strcmp(want, "none") == 0)
        EXPECT_AT(v, name == NULL);
    else
        EXPECT_AT(v, name != NULL && want != NULL && strcmp(name, want) == 0);
}

static void test_ins_names(void)
{
    EXPECT(run_vectors("codec/ins.txt", ins_vector) >= 20);
}

/* ------------------------------------------------------------- CLA */

static void cla_vector(const struct tc_vec *v)
{
    uint8_t cla = (uint8_t)field_hexnum(v, "CLA");
    struct tc_cla_info i;
    memset(&i, 0x5A, sizeof i);
    tc_error_clear();
    tc_err rc = tc_cla_decode(cla, &i);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        return;
    }
    expect_ok_at(v, rc, "tc_cla_decode");
    EXPECT_AT(v, i.proprietary == field_yes(v, "PROPRIETARY"));
    EXPECT_AT(v, i.further == field_yes(v, "FURTHER"));
    EXPECT_AT(v, i.channel == field_uint(v, "CHANNEL"));
    EXPECT_AT(v, i.chained == field_yes(v, "CHAINED"));
    EXPECT_AT(v, i.sm == field_uint(v, "SM"));
    EXPECT_AT(v, i.secure == field_yes(v, "SECURE"));
    if (field_yes(v, "ROUNDTRIP")) {
        uint8_t back = 0;
        expect_ok_at(v, tc_cla_encode(i.proprietary, i.channel, i.secure, i.chained, &back),
                     "tc_cla_encode");
        EXPECT_AT(v, back == cla);
    }
}

static void test_cla_vectors(void)
{
    EXPECT(run_vectors("codec/cla.txt", cla_vector) >= 25);
    struct tc_cla_info i;
    EXPECT_ERR(tc_cla_decode(0x00, NULL), TC_ERR_ARG);
    /* Every value either decodes to a channel 0..19 or is refused. */
    for (unsigned c = 0; c < 256; c++) {
        tc_err rc = tc_cla_decode((uint8_t)c, &i);
        if (rc == TC_OK)
            EXPECT(i.channel <= 19 && i.sm <= 3);
        else
            EXPECT(c == 0xFF || (c & 0x60u) == 0x20u);
    }
}

static void cla_encode_vector(const struct tc_vec *v)
{
    uint8_t cla = 0x33;
    tc_error_clear();
    tc_err rc = tc_cla_encode(field_yes(v, "PROPRIETARY"), (uint8_t)field_uint(v, "CHANNEL"),
                              field_yes(v, "SECURE"), field_yes(v, "CHAINED"), &cla);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        EXPECT_AT(v, cla == 0x33);
        return;
    }
    expect_ok_at(v, rc, "tc_cla_encode");
    EXPECT_AT(v, cla == field_hexnum(v, "CLA"));
}

static void test_cla_encode_vectors(void)
{
    EXPECT(run_vectors("codec/cla_encode.txt", cla_encode_vector) >= 10);
    EXPECT_ERR(tc_cla_encode(false, 0, false, false, NULL), TC_ERR_ARG);
}

/* ------------------------------------------------------------- SW */

static void sw_vector(const struct tc_vec *v)
{
    char out[256];
    uint16_t sw = (uint16_t)field_hexnum(v, "SW");
    tc_sw_describe(sw, out, sizeof out);
    const char *want = tc_vec_get(v, "TEXT");
    if (want == NULL || strcmp(out, want) != 0)
        tc_test_fail_at(v->path, v->record_line, "\"%s\", expected \"%s\"", out,
                        want ? want : "(none)");
    /* tc_sw_text is the same text without the prefix, except for the
     * groups whose SW2 carries a number. */
    uint8_t sw1 = (uint8_t)(sw >> 8);
    bool numbered = (sw1 == 0x61 || sw1 == 0x6C || (sw1 == 0x63 && (sw & 0xF0u) == 0xC0u)) &&
                    sw != 0x6310 && sw != 0x6381 && sw != 0x6300;
    if (!numbered && want != NULL && strlen(want) > 6)
        EXPECT_AT(v, strcmp(tc_sw_text(sw), want + 6) == 0);
}

static void test_sw_vectors(void)
{
    EXPECT(run_vectors("codec/sw.txt", sw_vector) >= 45);
    /* Never NULL, never empty; truncation keeps a terminated string. */
    for (unsigned sw = 0; sw <= 0xFFFF; sw++) {
        const char *t = tc_sw_text((uint16_t)sw);
        EXPECT(t != NULL && t[0] != '\0');
    }
    char small[5];
    tc_sw_describe(0x6982, small, sizeof small);
    EXPECT_STR(small, "6982");
    tc_sw_describe(0x6982, small, 0); /* writes nothing */
    tc_sw_describe(0x6982, NULL, 10);
}

static void rapdu_vector(const struct tc_vec *v)
{
    size_t len = 0;
    uint8_t *in = field_bytes(v, "RAPDU", &len);
    if (in == NULL && len != 0)
        return;
    struct tc_rapdu r;
    memset(&r, 0x77, sizeof r);
    tc_error_clear();
    tc_err rc = tc_rapdu_decode(in, len, &r);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        free(in);
        return;
    }
    expect_ok_at(v, rc, "tc_rapdu_decode");
    size_t dlen = 0;
    uint8_t *data = field_bytes(v, "DATA", &dlen);
    EXPECT_AT(v, r.len == dlen);
    if (dlen == 0)
        EXPECT_AT(v, r.data == NULL);
    else
        EXPECT_AT(v, r.data != NULL && data != NULL && memcmp(r.data, data, dlen) == 0);
    EXPECT_AT(v, r.sw == field_hexnum(v, "SW"));
    free(data);
    free(in);
}

static void test_rapdu_vectors(void)
{
    EXPECT(run_vectors("codec/rapdu.txt", rapdu_vector) >= 9);
    struct tc_rapdu r;
    EXPECT_ERR(tc_rapdu_decode(NULL, 2, &r), TC_ERR_ARG);
}

/* ------------------------------------------------------------- TLV */

struct sb {
    char *s;
    size_t len, cap;
};

static void sb_add(struct sb *b, const char *s)
{
    size_t l = strlen(s);
    if (b->len + l + 1 > b->cap) {
        size_t cap = (b->cap + l + 1) * 2;
        char *p = realloc(b->s, cap);
        if (p == NULL)
            return;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, l + 1);
    b->len += l;
}

static tc_err walk(struct sb *w, const uint8_t *p, size_t len, unsigned depth)
{
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    while (tc_cursor_remaining(&c) > 0) {
        struct tc_tlv t;
        TC_GUARD(tc_tlv_next(&c, &t));
        char tok[600];
        (void)snprintf(tok, sizeof tok, "%s%u:%0*lX:%c:%zu", w->len ? " " : "", depth,
                       2 * t.tag_len, (unsigned long)t.tag, t.constructed ? 'c' : 'p', t.len);
        sb_add(w, tok);
        if (t.constructed) {
            TC_GUARD(walk(w, t.value, t.len, depth + 1));
        } else if (t.len > 0) {
            sb_add(w, ":");
            for (size_t i = 0; i < t.len; i++) {
                (void)snprintf(tok, sizeof tok, "%02X", t.value[i]);
                sb_add(w, tok);
            }
        }
    }
    return TC_OK;
}

/* Rebuild with the encoder: primitives with tc_tlv_put, constructed ones
 * with tc_tlv_begin/tc_tlv_end. */
static tc_err rebuild(struct tc_buf *b, const uint8_t *p, size_t len)
{
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    while (tc_cursor_remaining(&c) > 0) {
        struct tc_tlv t;
        TC_GUARD(tc_tlv_next(&c, &t));
        if (t.constructed) {
            size_t m = tc_tlv_begin(b, t.tag);
            TC_GUARD(rebuild(b, t.value, t.len));
            tc_tlv_end(b, m);
        } else {
            tc_tlv_put(b, t.tag, t.value, t.len);
        }
    }
    return tc_buf_status(b);
}

static void tlv_vector(const struct tc_vec *v)
{
    size_t len = 0;
    uint8_t *in = field_bytes(v, "TLV", &len);
    if (in == NULL && len != 0)
        return;
    tc_error_clear();
    tc_err rc = tc_tlv_validate(in, len);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        free(in);
        return;
    }
    expect_ok_at(v, rc, "tc_tlv_validate");
    struct sb w = {0};
    sb_add(&w, "");
    expect_ok_at(v, walk(&w, in, len, 0), "walk");
    char *want = expand(tc_vec_get(v, "WALK") ? tc_vec_get(v, "WALK") : "?");
    if (want == NULL || w.s == NULL || strcmp(w.s, want) != 0)
        tc_test_fail_at(v->path, v->record_line, "walk\n    got      %s\n    expected %s",
                        w.s ? w.s : "(null)", want ? want : "(null)");
    free(want);
    free(w.s);
    if (field_yes(v, "MINIMAL")) {
        struct tc_buf b;
        tc_buf_init_heap(&b, 1u << 20);
        expect_ok_at(v, rebuild(&b, in, len), "rebuild");
        EXPECT_AT(v, b.len == len && (len == 0 || memcmp(b.data, in, len) == 0));
        tc_buf_free(&b);
    }
    free(in);
}

static void test_tlv_vectors(void)
{
    EXPECT(run_vectors("codec/tlv.txt", tlv_vector) >= 35);
    EXPECT_ERR(tc_tlv_validate(NULL, 1), TC_ERR_ARG);
    EXPECT_OK(tc_tlv_validate(NULL, 0));
}

static size_t parse_path(const char *s, uint32_t *path, size_t max)
{
    size_t n = 0;
    while (*s != '\0' && n < max) {
        char tok[16] = "0x";
        size_t l = strcspn(s, "/");
        if (l == 0 || l > 8)
            return 0;
        memcpy(tok + 2, s, l);
        tok[2 + l] = '\0';
        uint64_t t = 0;
        if (tc_parse_uint(tok, UINT32_MAX, &t) != TC_OK)
            return 0;
        path[n++] = (uint32_t)t;
        s += l;
        if (*s == '/')
            s++;
    }
    return n;
}

static void tlv_find_vector(const struct tc_vec *v)
{
    size_t len = 0;
    uint8_t *in = field_bytes(v, "TLV", &len);
    uint32_t path[TC_TLV_MAX_DEPTH];
    const char *ps = tc_vec_get(v, "PATH");
    size_t depth = ps ? parse_path(ps, path, TC_ARRAY_LEN(path)) : 0;
    EXPECT_AT(v, depth > 0);
    if (in == NULL || depth == 0) {
        free(in);
        return;
    }
    struct tc_tlv t;
    tc_error_clear();
    tc_err rc = tc_tlv_find_path(in, len, path, depth, &t);
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, rc);
        if (depth == 1) {
            tc_error_clear();
            expect_failure(v, tc_tlv_find(in, len, path[0], &t));
        }
        free(in);
        return;
    }
    expect_ok_at(v, rc, "tc_tlv_find_path");
    size_t vlen = 0;
    uint8_t *val = field_bytes(v, "VALUE", &vlen);
    EXPECT_AT(v, t.tag == path[depth - 1] && t.len == vlen &&
                     (vlen == 0 || memcmp(t.value, val, vlen) == 0));
    if (depth == 1) {
        struct tc_tlv f;
        expect_ok_at(v, tc_tlv_find(in, len, path[0], &f), "tc_tlv_find");
        EXPECT_AT(v, f.value == t.value && f.len == t.len);
    }
    free(val);
    free(in);
}

static void test_tlv_find_vectors(void)
{
    EXPECT(run_vectors("codec/tlv_find.txt", tlv_find_vector) >= 11);
    const uint8_t fci[] = {0x6F, 0x03, 0x84, 0x01, 0xAA};
    uint32_t path[TC_TLV_MAX_DEPTH + 1] = {0x6F};
    struct tc_tlv t;
    EXPECT_ERR(tc_tlv_find_path(fci, sizeof fci, path, 0, &t), TC_ERR_ARG);
    EXPECT_STR(tc_error_last()->msg, "a tag path has 1 to 16 tags, got 0");
    EXPECT_ERR(tc_tlv_find_path(fci, sizeof fci, path, TC_TLV_MAX_DEPTH + 1, &t), TC_ERR_ARG);
    EXPECT_ERR(tc_tlv_find_path(fci, sizeof fci, NULL, 1, &t), TC_ERR_ARG);
    EXPECT_ERR(tc_tlv_find(fci, sizeof fci, 0x6F, NULL), TC_ERR_ARG);
}

static void tlv_len_vector(const struct tc_vec *v)
{
    struct tc_buf b;
    uint8_t mem[8];
    tc_buf_init_fixed(&b, mem, sizeof mem);
    tc_error_clear();
    tc_tlv_put_len(&b, (size_t)field_uint(v, "LEN"));
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, tc_buf_status(&b));
        EXPECT_AT(v, b.len == 0);
        return;
    }
    size_t elen = 0;
    uint8_t *exp = field_bytes(v, "ENCODED", &elen);
    expect_ok_at(v, tc_buf_status(&b), "tc_tlv_put_len");
    EXPECT_AT(v, exp != NULL && b.len == elen && memcmp(b.data, exp, elen) == 0);
    free(exp);
}

static void tlv_tag_vector(const struct tc_vec *v)
{
    struct tc_buf b;
    uint8_t mem[8];
    tc_buf_init_fixed(&b, mem, sizeof mem);
    tc_error_clear();
    tc_tlv_put_tag(&b, (uint32_t)field_hexnum(v, "TAG"));
    if (tc_vec_get(v, "ERROR") != NULL) {
        expect_failure(v, tc_buf_status(&b));
        EXPECT_AT(v, b.len == 0);
        return;
    }
    size_t elen = 0;
    uint8_t *exp = field_bytes(v, "ENCODED", &elen);
    expect_ok_at(v, tc_buf_status(&b), "tc_tlv_put_tag");
    EXPECT_AT(v, exp != NULL && b.len == elen && memcmp(b.data, exp, elen) == 0);
    /* What the encoder writes, the parser reads back as the same tag. */
    tc_tlv_put_len(&b, 0);
    struct tc_cursor c;
    struct tc_tlv t;
    tc_cursor_init(&c, b.data, b.len);
    expect_ok_at(v, tc_tlv_next(&c, &t), "tc_tlv_next");
    EXPECT_AT(v, t.tag == field_hexnum(v, "TAG") && t.tag_len == elen);
    free(exp);
}

static void test_tlv_encode_vectors(void)
{
    EXPECT(run_vectors("codec/tlv_len.txt", tlv_len_vector) >= 11);
    EXPECT(run_vectors("codec/tlv_tag.txt", tlv_tag_vector) >= 13);
}

/* tc_tlv_end widens the length field and moves the content. */
static void test_tlv_begin_end(void)
{
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)i;
    const size_t sizes[] = {0, 1, 124, 125, 126, 200, 252, 253, 300, 65531, 65532, 69990};
    /* Content of 70 = 53 header + value; expected 70 length field octets
     * per X.690 §8.1.3.5. */
    for (size_t k = 0; k < TC_ARRAY_LEN(sizes); k++) {
        size_t n = sizes[k];
        struct tc_buf b;
        tc_buf_init_heap(&b, 1u << 20);
        size_t m = tc_tlv_begin(&b, 0x70);
        tc_tlv_put(&b, 0x53, big, n);
        tc_tlv_end(&b, m);
        EXPECT_OK(tc_buf_status(&b));
        EXPECT_OK(tc_tlv_validate(b.data, b.len));
        uint32_t path[2] = {0x70, 0x53};
        struct tc_tlv t;
        EXPECT_OK(tc_tlv_find_path(b.data, b.len, path, 2, &t));
        EXPECT(t.len == n && (n == 0 || memcmp(t.value, big, n) == 0));
        struct tc_tlv outer;
        EXPECT_OK(tc_tlv_find(b.data, b.len, 0x70, &outer));
        size_t inner_hdr = n < 128 ? 2 : n < 256 ? 3 : n < 65536 ? 4 : 5;
        size_t content = inner_hdr + n;
        size_t outer_len_bytes = content < 128 ? 1 : content < 256 ? 2 : content < 65536 ? 3 : 4;
        EXPECT_EQ_U(outer.len, content);
        EXPECT_EQ_U(outer.header_len, 1 + outer_len_bytes);
        EXPECT_EQ_U(b.len, 1 + outer_len_bytes + content);
        tc_buf_free(&b);
    }
    /* Nested: 6F { 84 8 bytes, A5 { 9F65 FF } } is the ISD FCI of
     * tlv.txt, built from the inside out. */
    const uint8_t aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    const uint8_t ff = 0xFF;
    const uint8_t want[] = {0x6F, 0x10, 0x84, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51,
                            0x00, 0x00, 0x00, 0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF};
    uint8_t mem[sizeof want];
    struct tc_buf b;
    tc_buf_init_fixed(&b, mem, sizeof mem);
    size_t m6f = tc_tlv_begin(&b, 0x6F);
    tc_tlv_put(&b, 0x84, aid, sizeof aid);
    size_t ma5 = tc_tlv_begin(&b, 0xA5);
    tc_tlv_put(&b, 0x9F65, &ff, 1);
    tc_tlv_end(&b, ma5);
    tc_tlv_end(&b, m6f);
    EXPECT_OK(tc_buf_status(&b));
    EXPECT_MEM(b.data, b.len, want, sizeof want);
    /* Widening past a fixed buffer's end is a sticky SPACE error. */
    uint8_t small[130];
    tc_buf_init_fixed(&b, small, sizeof small);
    size_t m = tc_tlv_begin(&b, 0x70);
    tc_buf_put(&b, big, 128);
    tc_tlv_end(&b, m);
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_SPACE);
    /* A mark past the end. */
    tc_buf_init_fixed(&b, small, sizeof small);
    tc_tlv_end(&b, 5);
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_ARG);
    /* After a failure (here a malformed tag) begin/put/end change nothing
     * and the first error stays. */
    tc_buf_init_fixed(&b, small, sizeof small);
    m = tc_tlv_begin(&b, 0x9F);
    tc_tlv_put(&b, 0x84, &ff, 1);
    tc_tlv_end(&b, m);
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_ARG);
    EXPECT_STR(tc_error_last()->msg, "not a well-formed BER-TLV tag (9F)");
    EXPECT_EQ_U(b.len, 0);
    /* NULL value with a length. */
    tc_buf_init_fixed(&b, small, sizeof small);
    tc_tlv_put(&b, 0x84, NULL, 3);
    EXPECT_ERR(tc_buf_status(&b), TC_ERR_ARG);
    EXPECT_EQ_U(b.len, 0);
}

/* tc_tlv_next reads one object at a time and leaves the cursor where it
 * was on failure. */
static void test_tlv_next_cursor(void)
{
    const uint8_t d[] = {0x42, 0x01, 0xAA, 0x9F, 0x7F, 0x03, 0x01, 0x02};
    struct tc_cursor c;
    tc_cursor_init(&c, d, sizeof d);
    struct tc_tlv t;
    EXPECT_OK(tc_tlv_next(&c, &t));
    EXPECT_EQ_U(t.tag, 0x42);
    EXPECT_EQ_U(t.header_len, 2);
    EXPECT_EQ_U(c.pos, 3);
    struct tc_tlv before = t;
    EXPECT_ERR(tc_tlv_next(&c, &t), TC_ERR_TRUNCATED);
    EXPECT_STR(tc_error_last()->msg, "byte 7: tag 9F7F has a value of 3 byte(s) but only 2 remain");
    EXPECT_EQ_U(c.pos, 3);
    EXPECT(memcmp(&t, &before, sizeof t) == 0);
    EXPECT_ERR(tc_tlv_next(NULL, &t), TC_ERR_ARG);
    EXPECT_ERR(tc_tlv_next(&c, NULL), TC_ERR_ARG);
    struct tc_cursor e;
    tc_cursor_init(&e, d, 0);
    EXPECT_ERR(tc_tlv_next(&e, &t), TC_ERR_TRUNCATED);
    EXPECT_STR(tc_error_last()->msg, "byte 1: input ends where a tag was expected");
}

static const struct tc_test_case cases[] = {
    {"apdu decode vectors", test_apdu_decode_vectors},
    {"apdu encode vectors", test_apdu_encode_vectors},
    {"apdu encode errors", test_apdu_encode_errors},
    {"apdu case names", test_apdu_case_names},
    {"instruction names", test_ins_names},
    {"class byte vectors", test_cla_vectors},
    {"class byte encode vectors", test_cla_encode_vectors},
    {"status word vectors", test_sw_vectors},
    {"response apdu vectors", test_rapdu_vectors},
    {"tlv vectors", test_tlv_vectors},
    {"tlv find vectors", test_tlv_find_vectors},
    {"tlv length and tag encoding", test_tlv_encode_vectors},
    {"tlv begin/end", test_tlv_begin_end},
    {"tlv next and the cursor", test_tlv_next_cursor},
};

TC_TEST_MAIN("codec", cases)
