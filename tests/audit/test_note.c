#include "harness.h"

#include <stdlib.h>

#include <openssl/evp.h>

#include <trustchain/audit.h>

static bool peter_signer(struct tc_signer *s, struct tc_vec *v)
{
    size_t n = 0;
    uint8_t *seed = tc_vec_hex(v, "SEED", &n);
    if (seed == NULL || n != 32) {
        free(seed);
        return false;
    }
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    tc_memzero(seed, 32);
    free(seed);
    EXPECT(k != NULL);
    if (k == NULL)
        return false;
    tc_err rc = tc_signer_soft_new(k, s);
    EVP_PKEY_free(k);
    EXPECT_OK(rc);
    return rc == TC_OK;
}

static void test_go_verifier_keys(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/note.txt"))
        return;
    EXPECT(tc_vec_next(&v));
    const char *vk = tc_vec_get(&v, "PETER_VKEY");
    struct tc_note_verifier peter;
    EXPECT_OK(tc_note_verifier_parse(vk, &peter));
    EXPECT_STR(peter.name, "PeterNeumann");
    EXPECT_EQ_U(peter.key_id, 0xc74f20a3u);
    struct tc_note_verifier enoch;
    EXPECT_OK(tc_note_verifier_parse(tc_vec_get(&v, "ENOCH_VKEY"), &enoch));
    EXPECT_EQ_U(enoch.key_id, 0xaf0cfe78u);

    /* TestNewVerifier: every proper substring and every single-byte
     * increment of the good key is refused. */
    char buf[TC_NOTE_VKEY_MAX + 1];
    size_t len = strlen(vk);
    int refused = 0;
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i + 1; j <= len; j++) {
            if (i == 0 && j == len)
                continue;
            memcpy(buf, vk + i, j - i);
            buf[j - i] = '\0';
            struct tc_note_verifier bad;
            if (tc_note_verifier_parse(buf, &bad) == TC_OK)
                tc_test_fail_at(__FILE__, __LINE__, "accepted \"%s\"", buf);
            else
                refused++;
        }
    memcpy(buf, vk, len + 1);
    for (size_t i = 0; i < len; i++) {
        buf[i]++;
        struct tc_note_verifier bad;
        if (tc_note_verifier_parse(buf, &bad) == TC_OK)
            tc_test_fail_at(__FILE__, __LINE__, "accepted \"%s\"", buf);
        else
            refused++;
        buf[i]--;
    }
    EXPECT_EQ_U(refused, len * (len + 1) / 2 - 1 + len);

    /* The signer's verifier key string is the published one. */
    struct tc_signer s;
    if (peter_signer(&s, &v)) {
        char out[TC_NOTE_VKEY_MAX + 1];
        EXPECT_OK(tc_note_verifier_key(&s, "PeterNeumann", out, sizeof out));
        EXPECT_STR(out, vk);
        EXPECT_ERR(tc_note_verifier_key(&s, "Peter+Neumann", out, sizeof out), TC_ERR_FORMAT);
        EXPECT_ERR(tc_note_verifier_key(&s, "PeterNeumann", out, 20), TC_ERR_SPACE);
        tc_signer_soft_free(&s);
    }
    tc_vec_close(&v);

    if (!tc_vec_open(&v, "audit/note-vkeys-bad.txt"))
        return;
    int n = 0;
    while (tc_vec_next(&v)) {
        struct tc_note_verifier bad;
        EXPECT(tc_note_verifier_parse(tc_vec_get(&v, "VKEY"), &bad) != TC_OK);
        n++;
    }
    EXPECT_EQ_U(n, 4);
    tc_vec_close(&v);
}

static void test_go_sign(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/note.txt"))
        return;
    EXPECT(tc_vec_next(&v));
    size_t tl = 0, nl = 0;
    uint8_t *text = tc_vec_hex(&v, "TEXT", &tl);
    uint8_t *want = tc_vec_hex(&v, "NOTE", &nl);
    struct tc_signer s;
    if (peter_signer(&s, &v)) {
        uint8_t out[TC_NOTE_MAX];
        size_t n = 0;
        EXPECT_OK(tc_note_sign(text, tl, &s, "PeterNeumann", out, sizeof out, &n));
        EXPECT_MEM(out, n, want, nl);
        /* Text must be non-empty, end in a newline, and be clean UTF-8. */
        EXPECT_ERR(tc_note_sign(text, tl - 1, &s, "PeterNeumann", out, sizeof out, &n),
                   TC_ERR_FORMAT);
        EXPECT_ERR(tc_note_sign(text, 0, &s, "PeterNeumann", out, sizeof out, &n), TC_ERR_FORMAT);
        EXPECT_ERR(
            tc_note_sign((const uint8_t *)"a\tb\n", 4, &s, "PeterNeumann", out, sizeof out, &n),
            TC_ERR_FORMAT);
        EXPECT_ERR(tc_note_sign(text, tl, &s, "Peter Neumann", out, sizeof out, &n), TC_ERR_FORMAT);
        EXPECT_ERR(tc_note_sign(text, tl, &s, "", out, sizeof out, &n), TC_ERR_FORMAT);
        EXPECT_ERR(tc_note_sign(text, tl, &s, "PeterNeumann", out, 100, &n), TC_ERR_SPACE);
        tc_signer_soft_free(&s);
    }
    /* A P-256 key cannot sign Ed25519 notes. */
    struct tc_signer ec;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &ec));
    uint8_t out[TC_NOTE_MAX];
    size_t n = 0;
    EXPECT_ERR(tc_note_sign(text, tl, &ec, "PeterNeumann", out, sizeof out, &n),
               TC_ERR_UNSUPPORTED);
    tc_signer_soft_free(&ec);
    free(text);
    free(want);
    tc_vec_close(&v);
}

static void test_go_open(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/note.txt"))
        return;
    struct tc_note_verifier both[2];
    int n = 0;
    while (tc_vec_next(&v)) {
        EXPECT_OK(tc_note_verifier_parse(tc_vec_get(&v, "PETER_VKEY"), &both[0]));
        EXPECT_OK(tc_note_verifier_parse(tc_vec_get(&v, "ENOCH_VKEY"), &both[1]));
        size_t len = 0, tl = 0;
        uint8_t *note = tc_vec_hex(&v, "NOTE", &len);
        uint8_t *text = tc_vec_hex(&v, "TEXT", &tl);
        const char *res = tc_vec_get(&v, "RESULT");
        uint64_t want_verified = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "VERIFIED"), 10, &want_verified));
        size_t text_len = 0, verified = 0;
        tc_err rc = tc_note_open(note, len, both, 1, &text_len, &verified);
        tc_err want = strcmp(res, "ok") == 0       ? TC_OK
                      : strcmp(res, "verify") == 0 ? TC_ERR_VERIFY
                                                   : TC_ERR_FORMAT;
        if (rc != want)
            tc_test_fail_at(__FILE__, __LINE__, "record at line %d: got '%s', expected '%s'",
                            v.record_line, tc_err_name(rc), tc_err_name(want));
        if (rc == TC_OK) {
            EXPECT_EQ_U(verified, want_verified);
            EXPECT_MEM(note, text_len, text, tl);
        }
        free(note);
        free(text);
        n++;
    }
    EXPECT_EQ_U(n, 15);
    tc_vec_close(&v);

    /* TestOpen: both keys known, both verified. */
    if (!tc_vec_open(&v, "audit/note.txt"))
        return;
    EXPECT(tc_vec_next(&v) && tc_vec_next(&v));
    size_t len = 0, text_len = 0, verified = 0;
    uint8_t *note = tc_vec_hex(&v, "NOTE", &len);
    EXPECT_OK(tc_note_open(note, len, both, 2, &text_len, &verified));
    EXPECT_EQ_U(verified, 2);
    /* No verifiers at all: nothing verifies. */
    EXPECT_ERR(tc_note_open(note, len, both, 0, &text_len, &verified), TC_ERR_VERIFY);
    free(note);
    tc_vec_close(&v);
}

static void test_checkpoint_text(void)
{
    /* The example of c2sp.org/tlog-checkpoint. */
    const char *ex = "example.com/behind-the-sofa\n20852163\n"
                     "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    struct tc_checkpoint cp;
    EXPECT_OK(tc_checkpoint_parse((const uint8_t *)ex, strlen(ex), &cp));
    EXPECT_STR(cp.origin, "example.com/behind-the-sofa");
    EXPECT_EQ_U(cp.size, 20852163);
    EXPECT_EQ_U(cp.extensions, 0);
    uint8_t out[256];
    size_t n = 0;
    EXPECT_OK(tc_checkpoint_format(cp.origin, cp.size, cp.root, out, sizeof out, &n));
    EXPECT_MEM(out, n, ex, strlen(ex));

    const char *ext = "o\n0\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\nx\ny z\n";
    EXPECT_OK(tc_checkpoint_parse((const uint8_t *)ext, strlen(ext), &cp));
    EXPECT_EQ_U(cp.size, 0);
    EXPECT_EQ_U(cp.extensions, 2);

    static const char *const bad[] = {
        "",
        "o\n1\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",    /* no final newline */
        "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",   /* empty origin */
        "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* leading zero */
        "o\n\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",   /* empty size */
        "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* not decimal */
        "o\n1 \nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* trailing space */
        "o\n12345678901234567890\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",        /* pad bits */
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",         /* no padding */
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",      /* empty extension */
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",            /* short root */
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=AAAA\n",    /* long root */
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\next\r\n", /* control char */
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx q2I=\n",       /* space in base64 */
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(bad); i++) {
        if (tc_checkpoint_parse((const uint8_t *)bad[i], strlen(bad[i]), &cp) == TC_OK)
            tc_test_fail_at(__FILE__, __LINE__, "accepted bad checkpoint %zu", i);
    }
    uint8_t root[32] = {0};
    EXPECT_ERR(tc_checkpoint_format("", 1, root, out, sizeof out, &n), TC_ERR_ARG);
    EXPECT_ERR(tc_checkpoint_format("a\nb", 1, root, out, sizeof out, &n), TC_ERR_ARG);
    EXPECT_ERR(tc_checkpoint_format("a", 1, root, out, 10, &n), TC_ERR_SPACE);
}

/* A checkpoint signed with a fresh key opens with its verifier key string
 * and with nothing else. */
static void test_signed_checkpoint(void)
{
    struct tc_signer s;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &s));
    uint8_t root[32];
    memset(root, 0xA5, sizeof root);
    uint8_t text[256], note[TC_NOTE_MAX];
    size_t tl = 0, nl = 0;
    EXPECT_OK(tc_checkpoint_format("trustchain.example/audit", 42, root, text, sizeof text, &tl));
    EXPECT_OK(tc_note_sign(text, tl, &s, "trustchain.example/audit", note, sizeof note, &nl));
    char vk[TC_NOTE_VKEY_MAX + 1];
    EXPECT_OK(tc_note_verifier_key(&s, "trustchain.example/audit", vk, sizeof vk));
    struct tc_note_verifier v;
    EXPECT_OK(tc_note_verifier_parse(vk, &v));
    size_t text_len = 0, verified = 0;
    EXPECT_OK(tc_note_open(note, nl, &v, 1, &text_len, &verified));
    EXPECT_EQ_U(text_len, tl);
    struct tc_checkpoint cp;
    EXPECT_OK(tc_checkpoint_parse(note, text_len, &cp));
    EXPECT_EQ_U(cp.size, 42);
    EXPECT_MEM(cp.root, 32, root, 32);
    /* Any changed byte of the text breaks the signature or the syntax. */
    for (size_t i = 0; i < tl; i++) {
        note[i] ^= 0x01;
        EXPECT(tc_note_open(note, nl, &v, 1, &text_len, &verified) != TC_OK);
        note[i] ^= 0x01;
    }
    /* Another key with the same name: unknown key, so no verified signature. */
    struct tc_signer other;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &other));
    EXPECT_OK(tc_note_verifier_key(&other, "trustchain.example/audit", vk, sizeof vk));
    struct tc_note_verifier ov;
    EXPECT_OK(tc_note_verifier_parse(vk, &ov));
    EXPECT_ERR(tc_note_open(note, nl, &ov, 1, &text_len, &verified), TC_ERR_VERIFY);
    /* Same name and key ID but another key: the signature must verify and fails. */
    memcpy(ov.pub, v.pub, 32);
    ov.pub[0] ^= 1;
    ov.key_id = v.key_id;
    EXPECT_ERR(tc_note_open(note, nl, &ov, 1, &text_len, &verified), TC_ERR_VERIFY);
    tc_signer_soft_free(&other);
    tc_signer_soft_free(&s);
}

/* signed-note: valid UTF-8 only (no overlong forms, surrogates or values
 * beyond U+10FFFF), no control characters, key names without Unicode
 * spaces or '+'. */
static void test_utf8_and_names(void)
{
    struct tc_signer s;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &s));
    char vk[TC_NOTE_VKEY_MAX + 1];
    EXPECT_OK(tc_note_verifier_key(&s, "n", vk, sizeof vk));
    struct tc_note_verifier v;
    EXPECT_OK(tc_note_verifier_parse(vk, &v));
    static const char *const bad_text[] = {
        "a\xc0\xaf\n",         /* overlong '/' */
        "a\xe0\x80\xaf\n",     /* overlong, 3 bytes */
        "a\xed\xa0\x80\n",     /* surrogate U+D800 */
        "a\xf4\x90\x80\x80\n", /* U+110000 */
        "a\xe2\x82\n",         /* truncated sequence */
        "a\x80\n",             /* lone continuation byte */
        "a\x7f\n",             /* DEL is fine ... */
        "a\r\n",               /* ... CR is a control character */
    };
    uint8_t out[TC_NOTE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < TC_ARRAY_LEN(bad_text); i++) {
        tc_err rc = tc_note_sign((const uint8_t *)bad_text[i], strlen(bad_text[i]), &s, "n", out,
                                 sizeof out, &n);
        if (i == 6)
            EXPECT_OK(rc);
        else if (rc != TC_ERR_FORMAT)
            tc_test_fail_at(__FILE__, __LINE__, "text %zu: %s", i, tc_err_name(rc));
    }
    /* Multi-byte text and names are fine. */
    const char *text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92\n";
    EXPECT_OK(tc_note_sign((const uint8_t *)text, strlen(text), &s, "n", out, sizeof out, &n));
    size_t tl = 0, verified = 0;
    EXPECT_OK(tc_note_open(out, n, &v, 1, &tl, &verified));
    EXPECT_OK(tc_note_verifier_key(&s, "log.example/\xc3\xa9", vk, sizeof vk));
    EXPECT_OK(tc_note_verifier_parse(vk, &v));
    EXPECT_OK(tc_note_sign((const uint8_t *)text, strlen(text), &s, "log.example/\xc3\xa9", out,
                           sizeof out, &n));
    EXPECT_OK(tc_note_open(out, n, &v, 1, &tl, &verified));
    /* Names with a no-break space, an em space or a tab are refused. */
    static const char *const bad_names[] = {"a\xc2\xa0"
                                            "b",
                                            "a\xe2\x80\x83"
                                            "b",
                                            "a\tb", "a+b"};
    for (size_t i = 0; i < TC_ARRAY_LEN(bad_names); i++) {
        EXPECT_ERR(tc_note_sign((const uint8_t *)text, strlen(text), &s, bad_names[i], out,
                                sizeof out, &n),
                   TC_ERR_FORMAT);
        EXPECT_ERR(tc_note_verifier_key(&s, bad_names[i], vk, sizeof vk), TC_ERR_FORMAT);
    }
    /* A signature line naming a key with a no-break space is malformed. */
    const char *note = "t\n\n\xe2\x80\x94 a\xc2\xa0"
                       "b AAAAAAAA\n";
    EXPECT_ERR(tc_note_open((const uint8_t *)note, strlen(note), &v, 1, &tl, &verified),
               TC_ERR_FORMAT);
    /* A signature of only 4 bytes (key ID, no signature) is malformed. */
    note = "t\n\n\xe2\x80\x94 n AAAAAA==\n";
    EXPECT_ERR(tc_note_open((const uint8_t *)note, strlen(note), &v, 1, &tl, &verified),
               TC_ERR_FORMAT);
    /* Oversized note. */
    static uint8_t big[TC_NOTE_MAX + 1];
    memset(big, 'a', sizeof big);
    EXPECT_ERR(tc_note_open(big, sizeof big, &v, 1, &tl, &verified), TC_ERR_FORMAT);
    tc_signer_soft_free(&s);
}

static const struct tc_test_case cases[] = {
    {"UTF-8 and key names", test_utf8_and_names}, {"Go note verifier keys", test_go_verifier_keys},
    {"Go note signature", test_go_sign},          {"Go note open", test_go_open},
    {"checkpoint text", test_checkpoint_text},    {"signed checkpoint", test_signed_checkpoint},
};

TC_TEST_MAIN("audit-note", cases)
