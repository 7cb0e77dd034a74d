/*
 * hsm tests against a real SoftHSM2 running with its own config and token
 * directory in a mkdtemp directory (never the system configuration).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <trustchain/crypto.h>
#include <trustchain/hsm.h>

#include "hsm/hsm_int.h"

#define SO_PIN   "so-secret-1234"
#define USER_PIN "user-secret-5678"
#define TOKEN    "tc-test"

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

static void teardown(void)
{
    tc_hsm_close(H);
    H = NULL;
    if (tmpdir[0] != '\0')
        (void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct tc_hsm_config config(const char *pin)
{
    struct tc_hsm_config c = {.module_path = ws.module_path,
                              .softhsm_conf = ws.softhsm_conf,
                              .token_label = TOKEN,
                              .pin = pin,
                              .pin_len = pin != NULL ? strlen(pin) : 0,
                              .pool_size = 2};
    return c;
}

/* One workspace and token per process: SOFTHSM2_CONF is read once, at the
 * module's C_Initialize. */
static struct tc_hsm *hsm(void)
{
    if (H != NULL || setup_failed)
        return H;
    setup_failed = true;
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    (void)snprintf(tmpdir, sizeof tmpdir, "%s/tc-hsm-test-XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp failed");
        return NULL;
    }
    char wsdir[300];
    (void)snprintf(wsdir, sizeof wsdir, "%s/ws", tmpdir);
    EXPECT_OK(tc_hsm_workspace_create(wsdir, NULL, TOKEN, &ws));
    EXPECT_OK(tc_hsm_init_token(ws.module_path, ws.softhsm_conf, TOKEN, SO_PIN, strlen(SO_PIN),
                                USER_PIN, strlen(USER_PIN)));
    struct tc_hsm_config c = config(USER_PIN);
    EXPECT_OK(tc_hsm_open(&c, &H));
    if (H != NULL)
        setup_failed = false;
    return H;
}

static void hex(const char *s, uint8_t *out, size_t n)
{
    size_t len = 0;
    EXPECT_OK(tc_hex_decode(s, strlen(s), 0, out, n, &len));
    EXPECT_EQ_U(len, n);
}

/* ------------------------------------------------------------ workspace */

static void test_workspace_isolated(void)
{
    if (hsm() == NULL)
        return;
    size_t len = 0;
    uint8_t *conf = tc_test_read_file(ws.softhsm_conf, &len);
    EXPECT(conf != NULL);
    if (conf != NULL) {
        char want[TC_HSM_PATH_MAX + 32];
        (void)snprintf(want, sizeof want, "directories.tokendir = %s\n", ws.token_dir);
        EXPECT(strstr((char *)conf, want) != NULL);
        EXPECT(strstr((char *)conf, "/etc/softhsm") == NULL);
        free(conf);
    }
    EXPECT_STR(getenv("SOFTHSM2_CONF"), ws.softhsm_conf);
    char wsdir[300];
    (void)snprintf(wsdir, sizeof wsdir, "%s/ws", tmpdir);
    struct tc_hsm_workspace back;
    EXPECT_OK(tc_hsm_workspace_load(wsdir, &back));
    EXPECT_STR(back.module_path, TC_HSM_DEFAULT_MODULE);
    EXPECT_STR(back.token_label, TOKEN);
    EXPECT_STR(back.softhsm_conf, ws.softhsm_conf);
    char nohsm[300];
    (void)snprintf(nohsm, sizeof nohsm, "%s/nothing", tmpdir);
    EXPECT_ERR(tc_hsm_workspace_load(nohsm, &back), TC_ERR_NOT_FOUND);
    EXPECT(strstr(tc_error_last()->msg, "does not exist") != NULL);
    /* A token directory was populated by C_InitToken. */
    EXPECT(access(ws.token_dir, R_OK | X_OK) == 0);
}

static void test_init_token_twice_refused(void)
{
    if (hsm() == NULL)
        return;
    EXPECT_ERR(tc_hsm_init_token(ws.module_path, ws.softhsm_conf, TOKEN, SO_PIN, strlen(SO_PIN),
                                 USER_PIN, strlen(USER_PIN)),
               TC_ERR_STATE);
    EXPECT(strstr(tc_error_last()->msg, "already exists") != NULL);
    EXPECT_ERR(tc_hsm_init_token(ws.module_path, ws.softhsm_conf, "short-pin", "123", 3, USER_PIN,
                                 strlen(USER_PIN)),
               TC_ERR_RANGE);
    EXPECT_ERR(tc_hsm_init_token(ws.module_path, ws.softhsm_conf,
                                 "a-label-that-is-longer-than-32-chars", SO_PIN, strlen(SO_PIN),
                                 USER_PIN, strlen(USER_PIN)),
               TC_ERR_RANGE);
}

static void test_pin_sources(void)
{
    char pin[64];
    size_t n = 0;
    char path[300];
    if (hsm() == NULL)
        return;
    (void)snprintf(path, sizeof path, "%s/pin", tmpdir);
    FILE *f = fopen(path, "w");
    EXPECT(f != NULL);
    if (f == NULL)
        return;
    (void)fputs("1234abcd\nignored\n", f);
    (void)fclose(f);
    EXPECT_OK(tc_hsm_pin_read("TC_TEST_NO_SUCH_VAR", path, pin, sizeof pin, &n));
    EXPECT_EQ_U(n, 8);
    EXPECT_STR(pin, "1234abcd");
    EXPECT(setenv("TC_TEST_PIN_VAR", "from-env", 1) == 0);
    EXPECT_OK(tc_hsm_pin_read("TC_TEST_PIN_VAR", NULL, pin, sizeof pin, &n));
    EXPECT_STR(pin, "from-env");
    EXPECT_ERR(tc_hsm_pin_read("TC_TEST_NO_SUCH_VAR", NULL, pin, sizeof pin, &n), TC_ERR_NOT_FOUND);
    EXPECT(strstr(tc_error_last()->msg, "set TC_TEST_NO_SUCH_VAR") != NULL);
    (void)snprintf(path, sizeof path, "%s/no-such-pin-file", tmpdir);
    EXPECT_ERR(tc_hsm_pin_read(NULL, path, pin, sizeof pin, &n), TC_ERR_IO);
    EXPECT_ERR(tc_hsm_pin_read("TC_TEST_PIN_VAR", NULL, pin, 4, &n), TC_ERR_RANGE);
}

/* ------------------------------------------------------------ key file */

static tc_err parse_keys(const char *text, size_t *key_len)
{
    uint8_t e[32], m[32], d[32];
    tc_err rc =
        tc_hsm_transport_keyfile_parse((const uint8_t *)text, strlen(text), e, m, d, key_len);
    if (rc == TC_OK) {
        /* ENC is 40.., MAC 50.., DEK 60.. in every accepted case below. */
        EXPECT(e[0] == 0x40 && m[0] == 0x50 && d[0] == 0x60);
        EXPECT(e[*key_len - 1] == 0x4F && d[*key_len - 1] == 0x6F);
    }
    return rc;
}

static void test_transport_keyfile(void)
{
    size_t n = 0;
    EXPECT_OK(parse_keys("ENC = 404142434445464748494A4B4C4D4E4F\n"
                         "MAC = 505152535455565758595A5B5C5D5E5F\n"
                         "DEK = 606162636465666768696A6B6C6D6E6F\n",
                         &n));
    EXPECT_EQ_U(n, 16);
    /* Comments, blank lines, CRLF, no final newline, other order. */
    EXPECT_OK(parse_keys("# vendor keys, batch 7\r\n\r\n  DEK=606162636465666768696A6B6C6D6E6F\r\n"
                         "ENC =404142434445464748494A4B4C4D4E4F   \n"
                         "MAC\t=\t505152535455565758595A5B5C5D5E5F",
                         &n));
    EXPECT_EQ_U(n, 16);
    EXPECT_OK(parse_keys("ENC = 404142434445464748494A4B4C4D4E4F404142434445464748494A4B4C4D4E4F\n"
                         "MAC = 505152535455565758595A5B5C5D5E5F505152535455565758595A5B5C5D5E5F\n"
                         "DEK = 606162636465666768696A6B6C6D6E6F606162636465666768696A6B6C6D6E6F\n",
                         &n));
    EXPECT_EQ_U(n, 32);
    static const struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"", "the key file must give ENC, MAC and DEK"},
        {"ENC = 404142434445464748494A4B4C4D4E4F\nMAC = 505152535455565758595A5B5C5D5E5F\n",
         "the key file must give ENC, MAC and DEK"},
        {"ENC = 404142434445464748494A4B4C4D4E4F\nENC = 404142434445464748494A4B4C4D4E4F\n",
         "key file line 2: ENC given twice"},
        {"\n# x\nKEY = 404142434445464748494A4B4C4D4E4F\n",
         "key file line 3: 'KEY' is not ENC, MAC or DEK"},
        {"ENC = 4041424344454647\n", "key file line 1: ENC must be 16 or 32 bytes of hex"},
        {"ENC = 404142434445464748494A4B4C4D4E4F4041424344454647\n",
         "key file line 1: ENC must be 16 or 32 bytes of hex"},
        {"ENC = 404142434445464748494A4B4C4D4E4G\n",
         "key file line 1: ENC must be 16 or 32 bytes of hex"},
        {"ENC = 404142434445464748494A4B4C4D4E4F\n"
         "MAC = 505152535455565758595A5B5C5D5E5F505152535455565758595A5B5C5D5E5F\n",
         "key file line 2: ENC, MAC and DEK must have the same length"},
        {"ENC 404142434445464748494A4B4C4D4E4F\n", "line 1: expected '=' after ENC"},
        {"= 40\n", "line 1: expected NAME = value"},
        {"ENC = 4041\x01\n", "line 1: control character in the value"},
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(bad); i++) {
        EXPECT_ERR(parse_keys(bad[i].text, &n), TC_ERR_FORMAT);
        EXPECT_STR(tc_error_last()->msg, bad[i].msg);
        EXPECT_EQ_U(n, 0);
    }
    if (hsm() == NULL)
        return;
    char path[300];
    (void)snprintf(path, sizeof path, "%s/no-such-keys", tmpdir);
    uint8_t e[32], m[32], d[32];
    EXPECT_ERR(tc_hsm_transport_keyfile_read(path, e, m, d, &n), TC_ERR_NOT_FOUND);
    /* hsm.conf goes through the same reader: unknown settings refused. */
    char wsdir[300], conf[TC_HSM_PATH_MAX + 16];
    (void)snprintf(wsdir, sizeof wsdir, "%s/badconf", tmpdir);
    struct tc_hsm_workspace w;
    EXPECT_OK(tc_hsm_workspace_create(wsdir, "/x/mod.so", "lbl", &w));
    EXPECT_OK(tc_hsm_workspace_load(wsdir, &w));
    EXPECT_STR(w.module_path, "/x/mod.so");
    EXPECT_STR(w.token_label, "lbl");
    (void)snprintf(conf, sizeof conf, "%s/hsm.conf", w.dir);
    FILE *f = fopen(conf, "a");
    EXPECT(f != NULL);
    if (f != NULL) {
        (void)fputs("pin = 1234\n", f);
        (void)fclose(f);
    }
    EXPECT_ERR(tc_hsm_workspace_load(wsdir, &w), TC_ERR_FORMAT);
    EXPECT(strstr(tc_error_last()->msg, "hsm.conf:4: unknown setting 'pin'") != NULL);
}

/* ------------------------------------------------------------ errors */

static void test_error_module_missing(void)
{
    if (hsm() == NULL)
        return;
    struct tc_hsm_config c = config(USER_PIN);
    c.module_path = "/nonexistent/libnothing-pkcs11.so";
    struct tc_hsm *h = NULL;
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_IO);
    EXPECT(h == NULL);
    EXPECT(strstr(tc_error_last()->msg,
                  "cannot load PKCS#11 module '/nonexistent/libnothing-pkcs11.so'") != NULL);
    /* A shared library that is not a PKCS#11 module. */
    c.module_path = "libz.so.1";
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_IO);
    EXPECT(strstr(tc_error_last()->msg, "is not a PKCS#11 module") != NULL);
}

static void test_error_token_missing(void)
{
    if (hsm() == NULL)
        return;
    struct tc_hsm_config c = config(USER_PIN);
    c.token_label = "no-such-token";
    struct tc_hsm *h = NULL;
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_NOT_FOUND);
    EXPECT(h == NULL);
    EXPECT_STR(tc_error_last()->msg,
               "no initialised token labelled 'no-such-token' in the PKCS#11 module");
    /* SoftHSM2 reads SOFTHSM2_CONF once, at C_Initialize: while the module
     * is in use, another configuration cannot be honoured. */
    c = config(USER_PIN);
    c.softhsm_conf = "/nonexistent/other-softhsm2.conf";
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_STATE);
    EXPECT(strstr(tc_error_last()->msg, "is already in use with another configuration") != NULL);
    EXPECT_STR(getenv("SOFTHSM2_CONF"), ws.softhsm_conf);
}

static void test_error_wrong_pin(void)
{
    if (hsm() == NULL)
        return;
    struct tc_hsm_config c = config("not-the-pin");
    struct tc_hsm *h = NULL;
    /* The pool already holds a login for this application; close it so
     * that the wrong PIN meets C_Login for real. */
    tc_hsm_close(H);
    H = NULL;
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_AUTH);
    EXPECT(h == NULL);
    EXPECT_STR(tc_error_last()->msg, "wrong user PIN for token '" TOKEN "' (CKR_PIN_INCORRECT)");
    c = config(USER_PIN);
    EXPECT_OK(tc_hsm_open(&c, &H));
    /* A second logged-in handle on the same token is refused: it could not
     * verify its PIN (the application is already logged in) and closing it
     * would log the first one out. A handle without login is fine. */
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_STATE);
    EXPECT_STR(tc_error_last()->msg, "token '" TOKEN "' is already open with a login in this "
                                     "process; share that handle");
    c = config("not-the-pin");
    EXPECT_ERR(tc_hsm_open(&c, &h), TC_ERR_STATE);
    c = config(NULL);
    EXPECT_OK(tc_hsm_open(&c, &h));
    tc_hsm_close(h);
    /* H still works after the other handle closed. */
    tc_hsm_obj o = 0;
    EXPECT_ERR(tc_hsm_find(H, TC_HSM_KIND_SECRET, "tc:master:none", &o), TC_ERR_NOT_FOUND);
    uint8_t k[16] = {0};
    struct tc_hsm_keyset ks;
    EXPECT_OK(tc_hsm_transport_import(H, "after-second-handle", 1, k, k, k, 16, &ks));
}

static void test_error_mechanism_unsupported(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    /* SoftHSM2 2.6.1 has CKM_SHA256 for digests only, and no
     * CKM_ECDSA_SHA256 at all. */
    EXPECT_ERR(tc_hsm_require_mech(h, CKM_SHA256, CKF_SIGN, "a test"), TC_ERR_UNSUPPORTED);
    EXPECT_STR(tc_error_last()->msg, "the PKCS#11 module does not support CKM_SHA256 for a test");
    EXPECT_ERR(tc_hsm_require_mech(h, CKM_ECDSA_SHA256, CKF_SIGN, "hashing signatures"),
               TC_ERR_UNSUPPORTED);
    EXPECT_STR(tc_error_last()->msg,
               "the PKCS#11 module does not support mechanism 0x1044 for hashing signatures");
    EXPECT_OK(tc_hsm_require_mech(h, CKM_AES_CMAC, CKF_SIGN, "CMAC"));
}

static void test_error_key_not_found(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    tc_hsm_obj o = 0;
    EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:master:absent", &o), TC_ERR_NOT_FOUND);
    EXPECT_STR(tc_error_last()->msg, "key 'tc:master:absent' not found in the HSM token");
    struct tc_signer s;
    EXPECT_ERR(tc_hsm_signer(h, "tc:batch-ca:absent", &s), TC_ERR_NOT_FOUND);
    struct tc_hsm_keyset ks;
    EXPECT_ERR(tc_hsm_transport_find(h, "absent", 1, &ks), TC_ERR_NOT_FOUND);
    EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, "bad label", &o), TC_ERR_FORMAT);
    EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, "", &o), TC_ERR_RANGE);
}

/* ------------------------------------------------------------ policy */

static CK_RV raw_read_value(struct tc_hsm *h, tc_hsm_obj o)
{
    uint8_t buf[256];
    CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof buf};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_GetAttributeValue(s, o, &a, 1);
    tc_hsm_session_release(h, s);
    return rv;
}

static CK_RV raw_wrap(struct tc_hsm *h, tc_hsm_obj wrapping, tc_hsm_obj o, CK_MECHANISM_TYPE m)
{
    uint8_t buf[512];
    CK_ULONG len = sizeof buf;
    uint8_t iv[16] = {0};
    CK_MECHANISM mech = {m, m == CKM_AES_CBC ? iv : NULL, m == CKM_AES_CBC ? 16 : 0};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_WrapKey(s, &mech, wrapping, o, buf, &len);
    tc_hsm_session_release(h, s);
    return rv;
}

static bool attr_true(struct tc_hsm *h, tc_hsm_obj o, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {t, &v, sizeof v};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_GetAttributeValue(s, o, &a, 1);
    tc_hsm_session_release(h, s);
    return rv == CKR_OK && v == CK_TRUE;
}

static void test_master_and_ca_keys_never_leave(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    tc_hsm_obj master = 0, gen = 0, imported = 0, ca_priv = 0, ca_pub = 0, cp_priv = 0, cp_pub = 0;
    struct tc_hsm_keyset tr;
    const uint8_t k[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                           0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f};
    EXPECT_OK(tc_hsm_master_generate(h, "policy", 32, &gen));
    EXPECT_OK(tc_hsm_master_import(h, "policy-imported", k, 16, &imported));
    EXPECT_OK(tc_hsm_keypair_generate(h, TC_SIG_ECDSA_P256_SHA256, "tc:batch-ca:policy", &ca_priv,
                                      &ca_pub));
    EXPECT_OK(tc_hsm_keypair_generate(h, TC_SIG_ED25519, "tc:audit:policy", &cp_priv, &cp_pub));
    EXPECT_OK(tc_hsm_transport_import(h, "policy", 0x30, k, k, k, 16, &tr));
    EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:master:policy", &master));
    EXPECT_EQ_U(master, gen);

    const tc_hsm_obj never[] = {gen, imported, ca_priv, cp_priv, tr.enc, tr.mac, tr.dek};
    for (size_t i = 0; i < TC_ARRAY_LEN(never); i++) {
        /* PKCS#11 2.40 §4.9: a sensitive or unextractable key's CKA_VALUE
         * cannot be revealed, and C_WrapKey refuses an unextractable key. */
        EXPECT_EQ_U(raw_read_value(h, never[i]), CKR_ATTRIBUTE_SENSITIVE);
        CK_RV rv = raw_wrap(h, tr.dek, never[i], CKM_AES_CBC);
        EXPECT(rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE);
        rv = raw_wrap(h, tr.dek, never[i], CKM_AES_KEY_WRAP);
        EXPECT(rv != CKR_OK);
        EXPECT(attr_true(h, never[i], CKA_SENSITIVE));
        EXPECT(!attr_true(h, never[i], CKA_EXTRACTABLE));
        /* Generated keys were never extractable; imported ones were
         * known outside the HSM once (§4.4: CKA_NEVER_EXTRACTABLE FALSE). */
        bool generated = never[i] == gen || never[i] == ca_priv || never[i] == cp_priv;
        EXPECT(attr_true(h, never[i], CKA_NEVER_EXTRACTABLE) == generated);
        /* An application cannot flip CKA_EXTRACTABLE back (§4.4 Table 25:
         * it may only be changed from TRUE to FALSE). */
        CK_BBOOL t = CK_TRUE;
        CK_ATTRIBUTE a = {CKA_EXTRACTABLE, &t, sizeof t};
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
        EXPECT(h->f->C_SetAttributeValue(s, never[i], &a, 1) != CKR_OK);
        tc_hsm_session_release(h, s);
        uint8_t out[64];
        size_t out_len = 0;
        EXPECT_ERR(tc_hsm_wrap(h, tr.dek, never[i], out, sizeof out, &out_len), TC_ERR_STATE);
        EXPECT_EQ_U(out_len, 0);
    }
    /* The master key derives and does nothing else. */
    EXPECT(attr_true(h, gen, CKA_DERIVE));
    EXPECT(!attr_true(h, gen, CKA_ENCRYPT));
    EXPECT(!attr_true(h, gen, CKA_SIGN));
    EXPECT(!attr_true(h, gen, CKA_WRAP));
    EXPECT(attr_true(h, gen, CKA_TOKEN));
    uint8_t kcv[3];
    EXPECT_ERR(tc_hsm_kcv(h, gen, kcv), TC_ERR_STATE);
    /* A CA key cannot be used for anything but signing. */
    EXPECT(attr_true(h, ca_priv, CKA_SIGN));
    EXPECT(!attr_true(h, ca_priv, CKA_DECRYPT));
    EXPECT(!attr_true(h, ca_priv, CKA_DERIVE));

    /* Labels are unique. */
    EXPECT_ERR(tc_hsm_master_generate(h, "policy", 16, &gen), TC_ERR_STATE);
    EXPECT_STR(tc_error_last()->msg, "an HSM key labelled 'tc:master:policy' already exists");
    EXPECT_ERR(tc_hsm_keypair_generate(h, TC_SIG_ECDSA_P256_SHA256, "tc:batch-ca:policy", &ca_priv,
                                       &ca_pub),
               TC_ERR_STATE);
    EXPECT_ERR(tc_hsm_transport_import(h, "policy", 0x30, k, k, k, 16, &tr), TC_ERR_STATE);
    EXPECT_ERR(tc_hsm_master_generate(h, "bad-length", 24, &gen), TC_ERR_RANGE);
    /* A keyset import that fails on its last key leaves nothing behind. */
    {
        CK_OBJECT_CLASS sc = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_BBOOL yes = CK_TRUE;
        char lbl[] = "tc:transport:partial:01:dek";
        uint8_t v[16] = {9};
        CK_ATTRIBUTE a[] = {{CKA_CLASS, &sc, sizeof sc},
                            {CKA_KEY_TYPE, &kt, sizeof kt},
                            {CKA_TOKEN, &yes, sizeof yes},
                            {CKA_LABEL, lbl, sizeof lbl - 1},
                            {CKA_VALUE, v, sizeof v}};
        CK_OBJECT_HANDLE o = 0;
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
        EXPECT_EQ_U(h->f->C_CreateObject(s, a, TC_ARRAY_LEN(a), &o), CKR_OK);
        tc_hsm_session_release(h, s);
        EXPECT_ERR(tc_hsm_transport_import(h, "partial", 1, k, k, k, 16, &tr), TC_ERR_STATE);
        EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:transport:partial:01:enc", &o),
                   TC_ERR_NOT_FOUND);
        EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:transport:partial:01:mac", &o),
                   TC_ERR_NOT_FOUND);
    }

    /* The token survives a close/open: the keys are token objects. */
    tc_hsm_close(H);
    struct tc_hsm_config c = config(USER_PIN);
    EXPECT_OK(tc_hsm_open(&c, &H));
    h = H;
    if (h == NULL)
        return;
    EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:master:policy", &master));
    struct tc_hsm_keyset tr2;
    EXPECT_OK(tc_hsm_transport_find(h, "policy", 0x30, &tr2));
    EXPECT_EQ_U(tr2.key_len, 16);
    /* Objects that are not ours do not disturb the listing: a data object
     * (no CKA_ID at all) and a key whose label is longer than ours. */
    {
        CK_OBJECT_CLASS dc = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        char dl[] = "tc:foreign:data";
        char longl[100];
        memset(longl, 'x', sizeof longl);
        memcpy(longl, "tc:", 3);
        uint8_t v[4] = {1, 2, 3, 4};
        CK_ATTRIBUTE da[] = {{CKA_CLASS, &dc, sizeof dc},
                             {CKA_TOKEN, &yes, sizeof yes},
                             {CKA_LABEL, dl, sizeof dl - 1},
                             {CKA_VALUE, v, sizeof v}};
        CK_ATTRIBUTE la[] = {{CKA_CLASS, &dc, sizeof dc},
                             {CKA_TOKEN, &yes, sizeof yes},
                             {CKA_LABEL, longl, sizeof longl}};
        CK_OBJECT_HANDLE d1 = 0, d2 = 0;
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
        EXPECT_EQ_U(h->f->C_CreateObject(s, da, TC_ARRAY_LEN(da), &d1), CKR_OK);
        EXPECT_EQ_U(h->f->C_CreateObject(s, la, TC_ARRAY_LEN(la), &d2), CKR_OK);
        tc_hsm_session_release(h, s);
    }
    /* Listing shows attributes, never values. */
    struct tc_hsm_obj_info list[32];
    size_t n = 0;
    EXPECT_OK(tc_hsm_list(h, list, TC_ARRAY_LEN(list), &n));
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].label, "tc:master:policy") == 0) {
            seen++;
            EXPECT_STR(list[i].key_type, "AES");
            EXPECT_EQ_U(list[i].value_len, 32);
            EXPECT(list[i].sensitive && !list[i].extractable && list[i].derive);
            EXPECT_EQ_U(list[i].id_len, TC_HSM_ID_LEN);
        }
        if (strcmp(list[i].label, "tc:batch-ca:policy") == 0 &&
            list[i].kind == TC_HSM_KIND_PRIVATE) {
            seen++;
            EXPECT_STR(list[i].curve, "P-256");
            EXPECT(list[i].never_extractable);
        }
        if (strcmp(list[i].label, "tc:audit:policy") == 0) {
            seen++;
            EXPECT_STR(list[i].curve, "Ed25519");
            EXPECT_STR(list[i].key_type, "EC_EDWARDS");
        }
        if (strcmp(list[i].label, "tc:foreign:data") == 0) {
            seen++;
            EXPECT_EQ_U(list[i].kind, TC_HSM_KIND_OTHER);
            EXPECT_EQ_U(list[i].id_len, 0);
        }
        EXPECT(strlen(list[i].label) <= TC_HSM_LABEL_MAX);
    }
    EXPECT_EQ_U(seen, 5);
    EXPECT_ERR(tc_hsm_list(h, list, 2, &n), TC_ERR_SPACE);
}

/* Secret keys in the token or sessions that are extractable. */
static unsigned count_extractable(struct tc_hsm *h)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE q[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_EXTRACTABLE, &t, sizeof t}};
    CK_OBJECT_HANDLE found[16];
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    if (h->f->C_FindObjectsInit(s, q, 2) == CKR_OK) {
        (void)h->f->C_FindObjects(s, found, 16, &n);
        (void)h->f->C_FindObjectsFinal(s);
    } else {
        n = 99;
    }
    tc_hsm_session_release(h, s);
    return (unsigned)n;
}

/* Derived device keys: not extractable (PKCS#11 2.40 §4.10 Table 31),
 * sensitive, and the attributes C_DeriveKey passes on from the master
 * (§5.16.x: CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE of the new key
 * follow the base key's). Reading their value and wrapping them fail,
 * under the keyset's own DEK and under a wrapping key a user-PIN holder
 * imports; only tc_hsm_wrap_keyset_key makes a PUT KEY block, from a
 * copy it destroys at once. */
static void test_derived_keys_never_leave(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    const uint8_t k[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                           0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f};
    const uint8_t eid[16] = {0x89, 0x04, 0x90, 0x32, 0x12, 0x34, 0x51, 0x23,
                             0x45, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x35};
    tc_hsm_obj gen = 0, imp = 0;
    struct tc_hsm_keyset tr, a, b;
    EXPECT_OK(tc_hsm_master_generate(h, "derived-policy", 16, &gen));
    EXPECT_OK(tc_hsm_master_import(h, "derived-policy-imported", k, 16, &imp));
    EXPECT_OK(tc_hsm_transport_import(h, "derived-policy", 0x30, k, k, k, 16, &tr));
    EXPECT_OK(tc_hsm_diversify(h, gen, eid, 16, &a));
    EXPECT_OK(tc_hsm_diversify(h, imp, eid, 16, &b));
    /* A wrapping key of the user's own choosing (C_CreateObject, CKA_WRAP). */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL tru = CK_TRUE, fal = CK_FALSE;
    CK_ATTRIBUTE wt[] = {{CKA_CLASS, &cls, sizeof cls},
                         {CKA_KEY_TYPE, &kt, sizeof kt},
                         {CKA_TOKEN, &fal, sizeof fal},
                         {CKA_WRAP, &tru, sizeof tru},
                         {CKA_VALUE, (void *)(uintptr_t)k, sizeof k}};
    CK_OBJECT_HANDLE mine = CK_INVALID_HANDLE;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    EXPECT_EQ_U(h->f->C_CreateObject(s, wt, TC_ARRAY_LEN(wt), &mine), CKR_OK);
    tc_hsm_session_release(h, s);
    const tc_hsm_obj keys[] = {a.enc, a.mac, a.dek, b.enc, b.mac, b.dek};
    for (size_t i = 0; i < TC_ARRAY_LEN(keys); i++) {
        bool from_generated = i < 3;
        EXPECT_EQ_U(raw_read_value(h, keys[i]), CKR_ATTRIBUTE_SENSITIVE);
        const tc_hsm_obj wrappers[] = {tr.dek, a.dek, mine};
        for (size_t w = 0; w < TC_ARRAY_LEN(wrappers); w++) {
            if (wrappers[w] == keys[i])
                continue;
            CK_RV rv = raw_wrap(h, wrappers[w], keys[i], CKM_AES_CBC);
            EXPECT(rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE);
            EXPECT(raw_wrap(h, wrappers[w], keys[i], CKM_AES_KEY_WRAP) != CKR_OK);
        }
        EXPECT(attr_true(h, keys[i], CKA_SENSITIVE));
        EXPECT(!attr_true(h, keys[i], CKA_EXTRACTABLE));
        EXPECT(!attr_true(h, keys[i], CKA_TOKEN));
        EXPECT(!attr_true(h, keys[i], CKA_PRIVATE)); /* session objects (keys.c) */
        EXPECT(attr_true(h, keys[i], CKA_NEVER_EXTRACTABLE) == from_generated);
        EXPECT(attr_true(h, keys[i], CKA_ALWAYS_SENSITIVE) == from_generated);
        CK_ATTRIBUTE back = {CKA_EXTRACTABLE, &tru, sizeof tru};
        s = tc_hsm_session_acquire(h);
        EXPECT(h->f->C_SetAttributeValue(s, keys[i], &back, 1) != CKR_OK);
        tc_hsm_session_release(h, s);
        EXPECT(!attr_true(h, keys[i], CKA_EXTRACTABLE));
    }
    /* PUT KEY blocks of each key under the transport DEK; no extractable
     * key is left behind, after a block is made or refused. */
    unsigned before = count_extractable(h);
    uint8_t blk[64], kcv[3];
    size_t bl = 0;
    for (unsigned t = TC_HSM_KEY_ENC; t <= TC_HSM_KEY_DEK; t++) {
        EXPECT_OK(tc_hsm_wrap_keyset_key(h, tr.dek, &a, t, blk, sizeof blk, &bl));
        EXPECT_EQ_U(bl, 16);
        EXPECT_EQ_U(count_extractable(h), before);
    }
    /* The block decrypts (transport DEK = k) to the key whose KCV the HSM
     * reports for the keyset's own key. */
    EXPECT_OK(tc_hsm_wrap_keyset_key(h, tr.dek, &b, TC_HSM_KEY_MAC, blk, sizeof blk, &bl));
    uint8_t iv[16] = {0}, clear[16], soft_kcv[3];
    EXPECT_OK(tc_aes_cbc_decrypt(k, sizeof k, iv, blk, 16, clear));
    EXPECT_OK(tc_kcv_aes(clear, 16, soft_kcv));
    EXPECT_OK(tc_hsm_kcv(h, b.mac, kcv));
    EXPECT_MEM(kcv, 3, soft_kcv, 3);
    tc_memzero(clear, sizeof clear);
    /* A key that cannot wrap as the DEK: refused, nothing left behind. */
    EXPECT(tc_hsm_wrap_keyset_key(h, a.enc, &a, TC_HSM_KEY_MAC, blk, sizeof blk, &bl) != TC_OK);
    EXPECT_EQ_U(bl, 0);
    EXPECT_EQ_U(count_extractable(h), before);
    EXPECT_ERR(tc_hsm_wrap_keyset_key(h, tr.dek, &a, 4, blk, sizeof blk, &bl), TC_ERR_ARG);
    /* The copy cannot be derived (the recorded master is a key that may
     * not derive): refused, nothing left behind. */
    struct tc_hsm_keyset bad = a;
    bad.master = a.enc;
    EXPECT(tc_hsm_wrap_keyset_key(h, tr.dek, &bad, TC_HSM_KEY_ENC, blk, sizeof blk, &bl) != TC_OK);
    EXPECT_EQ_U(bl, 0);
    EXPECT_EQ_U(count_extractable(h), before);
    /* A token keyset is wrapped as it is: the transport keys never. */
    EXPECT_ERR(tc_hsm_wrap_keyset_key(h, a.dek, &tr, TC_HSM_KEY_ENC, blk, sizeof blk, &bl),
               TC_ERR_STATE);
    EXPECT_ERR(tc_hsm_wrap_keyset_key_kcv(h, a.dek, &tr, TC_HSM_KEY_ENC, blk, sizeof blk, &bl, kcv),
               TC_ERR_STATE);
    EXPECT_EQ_U(bl, 0);
    /* With its KCV: refused the same way, nothing left behind. */
    EXPECT(tc_hsm_wrap_keyset_key_kcv(h, a.enc, &a, TC_HSM_KEY_MAC, blk, sizeof blk, &bl, kcv) !=
           TC_OK);
    EXPECT_EQ_U(bl, 0);
    EXPECT(tc_hsm_wrap_keyset_key_kcv(h, tr.dek, &bad, TC_HSM_KEY_ENC, blk, sizeof blk, &bl, kcv) !=
           TC_OK);
    EXPECT_EQ_U(count_extractable(h), before);
    tc_hsm_keyset_destroy(h, &a);
    tc_hsm_keyset_destroy(h, &b);
    s = tc_hsm_session_acquire(h);
    (void)h->f->C_DestroyObject(s, mine);
    tc_hsm_session_release(h, s);
}

/* ------------------------------------------------------------ diversify */

/* Token keys that tc_hsm_find returns are computed with through a session
 * copy of their own (hsm_int.h "working copies"): as protected as the key,
 * invisible to lookups and listings, gone with the key. */
static void test_working_copies(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    /* RFC 4493 §4 example 1: AES-128 key, empty message. */
    uint8_t k[16], want[16], mac[16];
    hex("2b7e151628aed2a6abf7158809cf4f3c", k, sizeof k);
    hex("bb1d6929e95937287fa37d129b756746", want, sizeof want);
    struct tc_hsm_keyset made, tr;
    EXPECT_OK(tc_hsm_transport_import(h, "working", 0x31, k, k, k, 16, &made));
    /* Made, not yet found: no copy. */
    EXPECT_EQ_U(tc_hsm_work_obj(h, made.mac), made.mac);
    EXPECT_OK(tc_hsm_transport_find(h, "working", 0x31, &tr));
    EXPECT_EQ_U(tr.mac, made.mac);
    const tc_hsm_obj keys[3] = {tr.enc, tr.mac, tr.dek};
    for (size_t i = 0; i < 3; i++) {
        tc_hsm_obj c = tc_hsm_work_obj(h, keys[i]);
        EXPECT(c != keys[i]);
        EXPECT(!attr_true(h, c, CKA_TOKEN));
        EXPECT(attr_true(h, c, CKA_SENSITIVE));
        EXPECT(!attr_true(h, c, CKA_EXTRACTABLE));
        EXPECT(attr_true(h, c, CKA_PRIVATE));
        EXPECT_EQ_U(raw_read_value(h, c), CKR_ATTRIBUTE_SENSITIVE);
        EXPECT(raw_wrap(h, tr.dek, c, CKM_AES_CBC) != CKR_OK);
        EXPECT(attr_true(h, c, CKA_WRAP) == attr_true(h, keys[i], CKA_WRAP));
        EXPECT(attr_true(h, c, CKA_SIGN) == attr_true(h, keys[i], CKA_SIGN));
        CK_BBOOL t = CK_TRUE;
        CK_ATTRIBUTE a = {CKA_EXTRACTABLE, &t, sizeof t};
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
        EXPECT(h->f->C_SetAttributeValue(s, c, &a, 1) != CKR_OK);
        char label[8];
        CK_ATTRIBUTE la = {CKA_LABEL, label, sizeof label};
        EXPECT_EQ_U(h->f->C_GetAttributeValue(s, c, &la, 1), CKR_OK);
        EXPECT_EQ_U(la.ulValueLen, 0);
        tc_hsm_session_release(h, s);
    }
    /* Found again: the same token object, one copy, no second match. */
    tc_hsm_obj again = 0;
    EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:transport:working:31:mac", &again));
    EXPECT_EQ_U(again, tr.mac);
    tc_hsm_obj copy = tc_hsm_work_obj(h, tr.mac);
    struct tc_hsm_obj_info *all = calloc(256, sizeof *all);
    size_t n = 0;
    EXPECT(all != NULL);
    if (all != NULL) {
        EXPECT_OK(tc_hsm_list(h, all, 256, &n));
        size_t labelled = 0;
        for (size_t i = 0; i < n; i++) {
            EXPECT(all[i].handle != copy);
            labelled += strcmp(all[i].label, "tc:transport:working:31:mac") == 0;
        }
        EXPECT_EQ_U(labelled, 1);
        free(all);
    }
    /* The copy computes what the key computes. */
    struct tc_iov none = {NULL, 0};
    EXPECT_OK(tc_hsm_cmac(h, tr.mac, &none, 1, mac));
    EXPECT_MEM(mac, 16, want, 16);
    /* Destroying the key destroys its copy: nothing computes with it after. */
    EXPECT_OK(tc_hsm_destroy(h, tr.mac));
    EXPECT_EQ_U(tc_hsm_work_obj(h, tr.mac), tr.mac);
    EXPECT_EQ_U(raw_read_value(h, copy), CKR_OBJECT_HANDLE_INVALID);
    EXPECT(tc_hsm_cmac(h, tr.mac, &none, 1, mac) != TC_OK);
    EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:transport:working:31:mac", &again),
               TC_ERR_NOT_FOUND);
    /* A key the token will not copy (CKA_COPYABLE FALSE, PKCS#11 2.40
     * §4.4) is computed with as it is. */
    {
        CK_OBJECT_CLASS sc = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        char lbl[] = "tc:transport:nocopy:01:mac";
        CK_ATTRIBUTE a[] = {{CKA_CLASS, &sc, sizeof sc},       {CKA_KEY_TYPE, &kt, sizeof kt},
                            {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
                            {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_SIGN, &yes, sizeof yes},
                            {CKA_COPYABLE, &no, sizeof no},    {CKA_LABEL, lbl, sizeof lbl - 1},
                            {CKA_VALUE, k, sizeof k}};
        CK_OBJECT_HANDLE o = 0;
        tc_hsm_obj nc = 0;
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
        EXPECT_EQ_U(h->f->C_CreateObject(s, a, TC_ARRAY_LEN(a), &o), CKR_OK);
        tc_hsm_session_release(h, s);
        EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, lbl, &nc));
        EXPECT_EQ_U(nc, o);
        EXPECT_EQ_U(tc_hsm_work_obj(h, nc), nc);
        EXPECT_OK(tc_hsm_cmac(h, nc, &none, 1, mac));
        EXPECT_MEM(mac, 16, want, 16);
        EXPECT_OK(tc_hsm_destroy(h, nc));
    }
    /* A found master's length is read once and still bounds its keysets. */
    const uint8_t eid[16] = {0x89, 0x04, 0x90, 0x32, 0x12, 0x34, 0x51, 0x23,
                             0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67, 0x89};
    tc_hsm_obj m = 0, found = 0;
    struct tc_hsm_keyset ks;
    EXPECT_OK(tc_hsm_master_generate(h, "working", 16, &m));
    EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, "tc:master:working", &found));
    EXPECT_EQ_U(found, m);
    for (int round = 0; round < 2; round++) {
        EXPECT_ERR(tc_hsm_diversify(h, m, eid, 32, &ks), TC_ERR_RANGE);
        EXPECT_STR(tc_error_last()->msg,
                   "a 32-byte keyset needs a master key of at least 32 bytes");
        EXPECT_OK(tc_hsm_diversify(h, m, eid, 16, &ks));
        EXPECT_EQ_U(ks.key_len, 16);
        tc_hsm_keyset_destroy(h, &ks);
    }
}

static void test_diversify_vectors(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    struct tc_vec v;
    if (!tc_vec_open(&v, "hsm/diversify.txt"))
        return;
    int records = 0;
    while (tc_vec_next(&v)) {
        size_t mlen = 0, elen = 0, dlen = 0;
        uint8_t *master = tc_vec_hex(&v, "MASTER", &mlen);
        const char *eid_digits = tc_vec_get(&v, "EID");
        uint8_t *dek = tc_vec_hex(&v, "DEK", &dlen);
        uint64_t keylen = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "KEYLEN"), 32, &keylen));
        uint8_t eid[16];
        EXPECT_OK(tc_hex_decode(eid_digits, strlen(eid_digits), 0, eid, sizeof eid, &elen));
        char name[64];
        (void)snprintf(name, sizeof name, "vec-%d", records);
        tc_hsm_obj m = 0;
        EXPECT_OK(tc_hsm_master_import(h, name, master, mlen, &m));
        char batch[64];
        (void)snprintf(batch, sizeof batch, "vec-%d", records);
        struct tc_hsm_keyset tr;
        EXPECT_OK(tc_hsm_transport_import(h, batch, 1, dek, dek, dek, dlen, &tr));
        struct tc_hsm_keyset ks;
        EXPECT_OK(tc_hsm_diversify(h, m, eid, (size_t)keylen, &ks));
        EXPECT(ks.session);
        const char *roles[3] = {"ENC", "MAC", "DEK"};
        const tc_hsm_obj objs[3] = {ks.enc, ks.mac, ks.dek};
        for (size_t r = 0; r < 3; r++) {
            char key[16];
            size_t n = 0;
            (void)snprintf(key, sizeof key, "D_%s", roles[r]);
            uint8_t *want_d = tc_vec_hex(&v, key, &n);
            uint8_t d[32];
            for (size_t i = 1; i <= keylen / 16; i++)
                EXPECT_OK(tc_hsm_diversify_block(eid, (uint8_t)(r + 1), (size_t)keylen, i,
                                                 d + 16 * (i - 1)));
            EXPECT_MEM(d, (size_t)keylen, want_d, n);
            free(want_d);

            /* The software reference (tests only): K = AES-ECB(master, D),
             * KCV by the crypto module; compare with the KCV the HSM
             * computes on the derived object. */
            (void)snprintf(key, sizeof key, "K_%s", roles[r]);
            uint8_t *want_k = tc_vec_hex(&v, key, &n);
            uint8_t soft_k[32];
            EXPECT_OK(tc_aes_ecb_encrypt(master, mlen, d, (size_t)keylen, soft_k));
            EXPECT_MEM(soft_k, (size_t)keylen, want_k, n);
            (void)snprintf(key, sizeof key, "KCV_%s", roles[r]);
            uint8_t *want_kcv = tc_vec_hex(&v, key, &n);
            uint8_t soft_kcv[3], hsm_kcv[3];
            EXPECT_OK(tc_kcv_aes(soft_k, (size_t)keylen, soft_kcv));
            EXPECT_MEM(soft_kcv, 3, want_kcv, n);
            EXPECT_OK(tc_hsm_kcv(h, objs[r], hsm_kcv));
            EXPECT_MEM(hsm_kcv, 3, want_kcv, n);

            /* PUT KEY block: wrapped in the HSM under the transport DEK. */
            (void)snprintf(key, sizeof key, "WRAP_%s", roles[r]);
            uint8_t *want_w = tc_vec_hex(&v, key, &n);
            uint8_t w[64];
            size_t wlen = 0;
            EXPECT_OK(tc_hsm_wrap_keyset_key(h, tr.dek, &ks, (unsigned)r + 1, w, sizeof w, &wlen));
            EXPECT_MEM(w, wlen, want_w, n);
            /* The keyset's own key is never wrapped (not extractable). */
            EXPECT_ERR(tc_hsm_wrap(h, tr.dek, objs[r], w, sizeof w, &wlen), TC_ERR_STATE);
            /* Derived keys are sensitive: their value cannot be read. */
            EXPECT_EQ_U(raw_read_value(h, objs[r]), CKR_ATTRIBUTE_SENSITIVE);
            EXPECT(!attr_true(h, objs[r], CKA_TOKEN));
            tc_memzero(soft_k, sizeof soft_k);
            free(want_k);
            free(want_kcv);
            free(want_w);
        }
        /* Only the DEK wraps, only ENC/MAC compute CMACs. */
        EXPECT(attr_true(h, ks.dek, CKA_WRAP));
        EXPECT(!attr_true(h, ks.enc, CKA_WRAP));
        EXPECT(!attr_true(h, ks.dek, CKA_SIGN));
        EXPECT(attr_true(h, ks.mac, CKA_SIGN));
        tc_hsm_obj found = 0;
        char label[80];
        (void)snprintf(label, sizeof label, "tc:device:%s:mac", eid_digits);
        EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &found));
        EXPECT_EQ_U(found, ks.mac);
        tc_hsm_keyset_destroy(h, &ks);
        EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &found), TC_ERR_NOT_FOUND);

        /* Deferred: no key exists until asked for. The PUT KEY block and
         * the KCV come from the one-off copy (same bytes as above) and
         * leave no key behind, extractable or not. */
        struct tc_hsm_keyset dk;
        unsigned before = count_extractable(h);
        EXPECT_OK(tc_hsm_diversify_deferred(h, m, eid, (size_t)keylen, &dk));
        EXPECT(dk.session);
        EXPECT_EQ_U(dk.enc, CK_INVALID_HANDLE);
        EXPECT_EQ_U(dk.mac, CK_INVALID_HANDLE);
        EXPECT_EQ_U(dk.dek, CK_INVALID_HANDLE);
        for (size_t r = 0; r < 3; r++) {
            char key[16];
            size_t n = 0, wlen = 0;
            uint8_t w[64], kcv[3];
            (void)snprintf(key, sizeof key, "WRAP_%s", roles[r]);
            uint8_t *want_w = tc_vec_hex(&v, key, &n);
            EXPECT_OK(tc_hsm_wrap_keyset_key_kcv(h, tr.dek, &dk, (unsigned)r + 1, w, sizeof w,
                                                 &wlen, kcv));
            EXPECT_MEM(w, wlen, want_w, n);
            free(want_w);
            (void)snprintf(key, sizeof key, "KCV_%s", roles[r]);
            uint8_t *want_kcv = tc_vec_hex(&v, key, &n);
            EXPECT_MEM(kcv, 3, want_kcv, n);
            EXPECT_EQ_U(count_extractable(h), before);
            if (r < 2) /* the MAC key (label) is made at r == 1, below */
                EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &found), TC_ERR_NOT_FOUND);
            /* Asked for: derived once, the same key (KCV), kept. */
            tc_hsm_obj o = 0, again = 0;
            EXPECT_OK(tc_hsm_keyset_key(h, &dk, (unsigned)r + 1, &o));
            EXPECT(o != CK_INVALID_HANDLE);
            EXPECT_OK(tc_hsm_keyset_key(h, &dk, (unsigned)r + 1, &again));
            EXPECT_EQ_U(again, o);
            EXPECT_OK(tc_hsm_kcv(h, o, kcv));
            EXPECT_MEM(kcv, 3, want_kcv, n);
            free(want_kcv);
            EXPECT_EQ_U(raw_read_value(h, o), CKR_ATTRIBUTE_SENSITIVE);
            EXPECT(!attr_true(h, o, CKA_EXTRACTABLE));
            EXPECT(!attr_true(h, o, CKA_TOKEN));
            EXPECT(attr_true(h, o, CKA_WRAP) == (r == 2));
            EXPECT(attr_true(h, o, CKA_SIGN) == (r != 2));
            EXPECT_EQ_U(count_extractable(h), before);
        }
        EXPECT_OK(tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &found));
        EXPECT_EQ_U(found, dk.mac);
        tc_hsm_keyset_destroy(h, &dk);
        EXPECT_ERR(tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &found), TC_ERR_NOT_FOUND);
        free(master);
        free(dek);
        records++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 4);
}

static void test_diversify_rejects(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    tc_hsm_obj m = 0;
    EXPECT_OK(tc_hsm_master_generate(h, "rejects", 16, &m));
    uint8_t eid[16];
    hex("8904903212345123451234567890123A", eid, sizeof eid);
    struct tc_hsm_keyset ks;
    EXPECT_ERR(tc_hsm_diversify(h, m, eid, 16, &ks), TC_ERR_FORMAT);
    EXPECT_STR(tc_error_last()->msg, "EID digit 32 is not a decimal digit");
    hex("F9049032123451234512345678901235", eid, sizeof eid);
    EXPECT_ERR(tc_hsm_diversify(h, m, eid, 16, &ks), TC_ERR_FORMAT);
    hex("89049032123451234512345678901235", eid, sizeof eid);
    EXPECT_ERR(tc_hsm_diversify(h, m, eid, 24, &ks), TC_ERR_RANGE);
    /* A 128-bit master cannot give AES-256 keysets. */
    EXPECT_ERR(tc_hsm_diversify(h, m, eid, 32, &ks), TC_ERR_RANGE);
    EXPECT_STR(tc_error_last()->msg, "a 32-byte keyset needs a master key of at least 32 bytes");
    uint8_t d[16];
    EXPECT_ERR(tc_hsm_diversify_block(eid, 4, 16, 1, d), TC_ERR_ARG);
    EXPECT_ERR(tc_hsm_diversify_block(eid, 1, 16, 2, d), TC_ERR_ARG);
    /* A key that may not derive cannot be used as a master. */
    struct tc_hsm_keyset tr;
    const uint8_t k[16] = {1};
    EXPECT_OK(tc_hsm_transport_import(h, "rejects", 1, k, k, k, 16, &tr));
    EXPECT_ERR(tc_hsm_diversify(h, tr.enc, eid, 16, &ks), TC_ERR_STATE);
    /* Different EIDs give different keysets; the same EID the same. */
    struct tc_hsm_keyset a, b, c;
    uint8_t ka[3], kb[3], kc[3];
    EXPECT_OK(tc_hsm_diversify(h, m, eid, 16, &a));
    EXPECT_OK(tc_hsm_diversify(h, m, eid, 16, &b));
    hex("89049032123451234512345678901236", eid, sizeof eid);
    EXPECT_OK(tc_hsm_diversify(h, m, eid, 16, &c));
    EXPECT_OK(tc_hsm_kcv(h, a.enc, ka));
    EXPECT_OK(tc_hsm_kcv(h, b.enc, kb));
    EXPECT_OK(tc_hsm_kcv(h, c.enc, kc));
    EXPECT(memcmp(ka, kb, 3) == 0);
    EXPECT(memcmp(ka, kc, 3) != 0);
    tc_hsm_keyset_destroy(h, &a);
    tc_hsm_keyset_destroy(h, &b);
    tc_hsm_keyset_destroy(h, &c);

    /* Deferred keysets: the same checks up front; a master that may not
     * derive fails when the first key is asked for. */
    struct tc_hsm_keyset dk;
    hex("8904903212345123451234567890123A", eid, sizeof eid);
    EXPECT_ERR(tc_hsm_diversify_deferred(h, m, eid, 16, &dk), TC_ERR_FORMAT);
    EXPECT_STR(tc_error_last()->msg, "EID digit 32 is not a decimal digit");
    hex("89049032123451234512345678901235", eid, sizeof eid);
    EXPECT_ERR(tc_hsm_diversify_deferred(h, m, eid, 24, &dk), TC_ERR_RANGE);
    EXPECT_ERR(tc_hsm_diversify_deferred(h, m, eid, 32, &dk), TC_ERR_RANGE);
    EXPECT_STR(tc_error_last()->msg, "a 32-byte keyset needs a master key of at least 32 bytes");
    EXPECT_ERR(tc_hsm_diversify_deferred(h, m, eid, 16, NULL), TC_ERR_ARG);
    tc_hsm_obj o = 0;
    EXPECT_OK(tc_hsm_diversify_deferred(h, tr.enc, eid, 16, &dk));
    EXPECT_ERR(tc_hsm_keyset_key(h, &dk, TC_HSM_KEY_ENC, &o), TC_ERR_STATE);
    EXPECT_EQ_U(dk.enc, CK_INVALID_HANDLE);
    EXPECT_OK(tc_hsm_diversify_deferred(h, m, eid, 16, &dk));
    EXPECT_ERR(tc_hsm_keyset_key(h, &dk, 0, &o), TC_ERR_ARG);
    EXPECT_ERR(tc_hsm_keyset_key(h, &dk, 4, &o), TC_ERR_ARG);
    /* Only what was made is destroyed (here the MAC key alone). */
    EXPECT_OK(tc_hsm_keyset_key(h, &dk, TC_HSM_KEY_MAC, &o));
    EXPECT_EQ_U(dk.enc, CK_INVALID_HANDLE);
    EXPECT_EQ_U(dk.dek, CK_INVALID_HANDLE);
    tc_hsm_keyset_destroy(h, &dk);
    EXPECT_EQ_U(raw_read_value(h, o), CKR_OBJECT_HANDLE_INVALID);
    /* A token keyset's keys are what they are. */
    EXPECT_OK(tc_hsm_keyset_key(h, &tr, TC_HSM_KEY_DEK, &o));
    EXPECT_EQ_U(o, tr.dek);
}

/* ------------------------------------------------------------ CMAC, KDF */

static void test_cmac_vectors(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    struct tc_vec v;
    if (!tc_vec_open(&v, "hsm/cmac.txt"))
        return;
    int records = 0;
    while (tc_vec_next(&v)) {
        size_t kl = 0, ml = 0, tl = 0;
        uint8_t *key = tc_vec_hex(&v, "KEY", &kl);
        uint8_t *msg = tc_vec_hex(&v, "MSG", &ml);
        uint8_t *want = tc_vec_hex(&v, "MAC", &tl);
        char batch[32];
        (void)snprintf(batch, sizeof batch, "cmac-%d", records);
        struct tc_hsm_keyset ks;
        EXPECT_OK(tc_hsm_transport_import(h, batch, 1, key, key, key, kl, &ks));
        uint8_t mac[16];
        struct tc_iov one = {msg, ml};
        EXPECT_OK(tc_hsm_cmac(h, ks.mac, &one, 1, mac));
        EXPECT_MEM(mac, 16, want, tl);
        /* The same message in uneven parts (C_SignUpdate). */
        if (ml > 5) {
            struct tc_iov parts[3] = {{msg, 1}, {msg + 1, 0}, {msg + 1, ml - 1}};
            EXPECT_OK(tc_hsm_cmac(h, ks.enc, parts, 3, mac));
            EXPECT_MEM(mac, 16, want, tl);
        }
        /* The DEK may not sign: CKA_SIGN is FALSE. */
        EXPECT_ERR(tc_hsm_cmac(h, ks.dek, &one, 1, mac), TC_ERR_STATE);
        free(key);
        free(msg);
        free(want);
        records++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 8);
    /* Messages up to 256 bytes go to the token in one C_Sign, longer ones
     * in parts: both give the CMAC the software computes, at and around
     * the boundary and for a message far beyond it. */
    uint8_t key[16], big[600], mac[16], want[16];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    memset(key, 0x5c, sizeof key);
    struct tc_hsm_keyset ks;
    EXPECT_OK(tc_hsm_transport_import(h, "cmac-long", 1, key, key, key, 16, &ks));
    const size_t lens[] = {255, 256, 257, 600};
    for (size_t i = 0; i < TC_ARRAY_LEN(lens); i++) {
        struct tc_iov parts[2] = {{big, 100}, {big + 100, lens[i] - 100}};
        EXPECT_OK(tc_hsm_cmac(h, ks.mac, parts, 2, mac));
        EXPECT_OK(tc_aes_cmac(key, sizeof key, big, lens[i], want));
        EXPECT_MEM(mac, 16, want, 16);
    }
}

static void test_scp03_kdf_vectors(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    struct tc_vec v;
    if (!tc_vec_open(&v, "hsm/scp03_kdf.txt"))
        return;
    int records = 0;
    while (tc_vec_next(&v)) {
        size_t kl = 0, cl = 0, ol = 0;
        uint8_t *key = tc_vec_hex(&v, "KEY", &kl);
        uint8_t *ctx = tc_vec_hex(&v, "CONTEXT", &cl);
        uint8_t *want = tc_vec_hex(&v, "OUT", &ol);
        uint64_t constant = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "CONSTANT"), 0xff, &constant));
        char batch[32];
        (void)snprintf(batch, sizeof batch, "kdf-%d", records);
        struct tc_hsm_keyset ks;
        EXPECT_OK(tc_hsm_transport_import(h, batch, 1, key, key, key, kl, &ks));
        uint8_t out[32];
        EXPECT_OK(tc_hsm_scp03_kdf(h, ks.enc, (uint8_t)constant, ctx, cl, out, ol));
        EXPECT_MEM(out, ol, want, ol);
        /* Same as the software KDF of the crypto module. */
        uint8_t soft[32];
        EXPECT_OK(tc_scp03_kdf(key, kl, (uint8_t)constant, ctx, cl, soft, ol));
        EXPECT_MEM(out, ol, soft, ol);
        free(key);
        free(ctx);
        free(want);
        records++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 5);
    uint8_t out[40];
    EXPECT_ERR(tc_hsm_scp03_kdf(h, 0, 4, NULL, 0, out, 40), TC_ERR_RANGE);
    EXPECT_ERR(tc_hsm_scp03_kdf(h, 0, 4, NULL, 0, out, 12), TC_ERR_RANGE);
}

/* ------------------------------------------------------------ signing */

static void test_ecdsa_der(void)
{
    uint8_t rs[64], der[80];
    size_t n = 0;
    /* r with the top bit set gets a 00 pad; s with leading zeros is
     * minimal (X.690 §8.3.2). */
    memset(rs, 0, sizeof rs);
    rs[0] = 0x80;
    rs[31] = 0x01;
    rs[62] = 0x01;
    rs[63] = 0x02;
    EXPECT_OK(tc_hsm_ecdsa_der(rs, 32, der, sizeof der, &n));
    /* 30 27 | 02 21 00 80 <30 x 00> 01 | 02 02 01 02 */
    uint8_t want[41] = {0x30, 0x27, 0x02, 0x21, 0x00, 0x80};
    want[36] = 0x01;
    want[37] = 0x02;
    want[38] = 0x02;
    want[39] = 0x01;
    want[40] = 0x02;
    EXPECT_MEM(der, n, want, sizeof want);
    memset(rs, 0, sizeof rs);
    EXPECT_OK(tc_hsm_ecdsa_der(rs, 32, der, sizeof der, &n));
    const uint8_t zero[] = {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00};
    EXPECT_MEM(der, n, zero, sizeof zero);
    EXPECT_ERR(tc_hsm_ecdsa_der(rs, 32, der, 7, &n), TC_ERR_SPACE);
}

static void test_ec_point_forms(void)
{
    uint8_t buf[70];
    const uint8_t *key = NULL;
    memset(buf, 0xAB, sizeof buf);
    /* DER OCTET STRING around an uncompressed P-256 point. */
    buf[0] = 0x04;
    buf[1] = 65;
    buf[2] = 0x04;
    EXPECT_OK(tc_hsm_ec_point(buf, 67, 65, true, &key));
    EXPECT(key == buf + 2);
    /* The bare point. */
    EXPECT_OK(tc_hsm_ec_point(buf + 2, 65, 65, true, &key));
    EXPECT(key == buf + 2);
    /* Wrong tag, wrong inner length, wrong total, compressed point. */
    buf[0] = 0x03;
    EXPECT_ERR(tc_hsm_ec_point(buf, 67, 65, true, &key), TC_ERR_FORMAT);
    buf[0] = 0x04;
    buf[1] = 64;
    EXPECT_ERR(tc_hsm_ec_point(buf, 67, 65, true, &key), TC_ERR_FORMAT);
    buf[1] = 65;
    EXPECT_ERR(tc_hsm_ec_point(buf, 66, 65, true, &key), TC_ERR_FORMAT);
    EXPECT_ERR(tc_hsm_ec_point(buf, 68, 65, true, &key), TC_ERR_FORMAT);
    buf[2] = 0x02;
    EXPECT_ERR(tc_hsm_ec_point(buf, 67, 65, true, &key), TC_ERR_FORMAT);
    EXPECT_STR(tc_error_last()->msg, "CKA_EC_POINT is not an uncompressed point");
    /* Ed25519: 32 bytes, any first byte, wrapped or bare. */
    buf[0] = 0x04;
    buf[1] = 32;
    EXPECT_OK(tc_hsm_ec_point(buf, 34, 32, false, &key));
    EXPECT_OK(tc_hsm_ec_point(buf + 2, 32, 32, false, &key));
    EXPECT_ERR(tc_hsm_ec_point(buf, 0, 32, false, &key), TC_ERR_FORMAT);
}

static void sign_and_verify(struct tc_hsm *h, enum tc_sig_alg alg, const char *label,
                            size_t spki_len)
{
    tc_hsm_obj priv = 0, pub = 0;
    EXPECT_OK(tc_hsm_keypair_generate(h, alg, label, &priv, &pub));
    struct tc_signer s;
    EXPECT_OK(tc_hsm_signer(h, label, &s));
    EXPECT_EQ_U(s.alg, alg);
    uint8_t spki[TC_SPKI_MAX];
    size_t spki_n = 0;
    EXPECT_OK(s.public_key(s.ctx, spki, sizeof spki, &spki_n));
    EXPECT_EQ_U(spki_n, spki_len);
    /* OpenSSL parses the SPKI as a public key of the right type. */
    const unsigned char *p = spki;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_n);
    EXPECT(pk != NULL);
    EXPECT(p == spki + spki_n);
    if (pk != NULL) {
        EXPECT(EVP_PKEY_is_a(pk, alg == TC_SIG_ED25519 ? "ED25519" : "EC"));
        EVP_PKEY_free(pk);
    }
    const uint8_t msg[] = "tbsCertificate bytes";
    for (int i = 0; i < 4; i++) {
        uint8_t sig[TC_SIG_MAX];
        size_t sig_n = 0;
        EXPECT_OK(s.sign(s.ctx, msg, sizeof msg - 1, sig, sizeof sig, &sig_n));
        if (alg == TC_SIG_ED25519)
            EXPECT_EQ_U(sig_n, 64);
        else
            EXPECT(sig[0] == 0x30 && sig[1] == sig_n - 2);
        EXPECT_OK(tc_sig_verify(alg, spki, spki_n, msg, sizeof msg - 1, sig, sig_n));
        EXPECT_ERR(tc_sig_verify(alg, spki, spki_n, msg, sizeof msg - 2, sig, sig_n),
                   TC_ERR_VERIFY);
        sig[sig_n - 1] ^= 0x01;
        EXPECT(tc_sig_verify(alg, spki, spki_n, msg, sizeof msg - 1, sig, sig_n) != TC_OK);
    }
    uint8_t small[8];
    size_t small_n = 0;
    EXPECT(s.sign(s.ctx, msg, sizeof msg - 1, small, sizeof small, &small_n) == TC_ERR_SPACE);
    EXPECT_ERR(s.public_key(s.ctx, small, sizeof small, &small_n), TC_ERR_SPACE);
    tc_hsm_signer_free(&s);
}

static void test_sign_p256(void)
{
    struct tc_hsm *h = hsm();
    if (h != NULL)
        sign_and_verify(h, TC_SIG_ECDSA_P256_SHA256, "tc:batch-ca:B0001", 91);
}

static void test_sign_p384(void)
{
    struct tc_hsm *h = hsm();
    if (h != NULL)
        sign_and_verify(h, TC_SIG_ECDSA_P384_SHA384, "tc:root-ca:R1", 120);
}

static void test_sign_ed25519(void)
{
    struct tc_hsm *h = hsm();
    if (h != NULL)
        sign_and_verify(h, TC_SIG_ED25519, TC_HSM_LABEL_AUDIT, 44);
}

/* ------------------------------------------------------------ pool */

struct worker {
    struct tc_signer *s;
    const uint8_t *spki;
    size_t spki_len;
    int ok;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 25; i++) {
        uint8_t msg[8] = {(uint8_t)i};
        uint8_t sig[TC_SIG_MAX];
        size_t n = 0;
        if (w->s->sign(w->s->ctx, msg, sizeof msg, sig, sizeof sig, &n) == TC_OK &&
            tc_sig_verify(TC_SIG_ECDSA_P256_SHA256, w->spki, w->spki_len, msg, sizeof msg, sig,
                          n) == TC_OK)
            w->ok++;
    }
    return NULL;
}

static void test_pool_threads(void)
{
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return;
    tc_hsm_obj priv = 0, pub = 0;
    EXPECT_OK(
        tc_hsm_keypair_generate(h, TC_SIG_ECDSA_P256_SHA256, "tc:batch-ca:pool", &priv, &pub));
    struct tc_signer s;
    EXPECT_OK(tc_hsm_signer(h, "tc:batch-ca:pool", &s));
    uint8_t spki[TC_SPKI_MAX];
    size_t spki_n = 0;
    EXPECT_OK(tc_hsm_public_key(h, pub, spki, sizeof spki, &spki_n));
    /* 6 threads over a pool of 2 sessions: acquire waits, nothing opens
     * or logs in per operation. */
    pthread_t t[6];
    struct worker w[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (struct worker){&s, spki, spki_n, 0};
        EXPECT(pthread_create(&t[i], NULL, worker_run, &w[i]) == 0);
    }
    for (int i = 0; i < 6; i++) {
        (void)pthread_join(t[i], NULL);
        EXPECT_EQ_U(w[i].ok, 25);
    }
    struct tc_hsm_info info;
    EXPECT_OK(tc_hsm_info(h, &info));
    EXPECT_EQ_U(info.pool_size, 2);
    EXPECT_EQ_U(h->n_free, 2);
    EXPECT(info.logged_in);
    EXPECT_STR(info.token_label, TOKEN);
    EXPECT_STR(info.manufacturer, "SoftHSM");
    EXPECT_EQ_U(info.version_major, 2);
    size_t supported = 0;
    for (size_t i = 0; i < TC_HSM_MECH_COUNT; i++)
        supported += info.mech[i].supported ? 1u : 0u;
    EXPECT_EQ_U(supported, TC_HSM_MECH_COUNT);
    tc_hsm_signer_free(&s);
}

static const struct tc_test_case cases[] = {
    {"workspace_isolated", test_workspace_isolated},
    {"init_token_twice_refused", test_init_token_twice_refused},
    {"pin_sources", test_pin_sources},
    {"transport_keyfile", test_transport_keyfile},
    {"error_module_missing", test_error_module_missing},
    {"error_token_missing", test_error_token_missing},
    {"error_wrong_pin", test_error_wrong_pin},
    {"error_mechanism_unsupported", test_error_mechanism_unsupported},
    {"error_key_not_found", test_error_key_not_found},
    {"master_and_ca_keys_never_leave", test_master_and_ca_keys_never_leave},
    {"working_copies", test_working_copies},
    {"diversify_vectors", test_diversify_vectors},
    {"derived_keys_never_leave", test_derived_keys_never_leave},
    {"diversify_rejects", test_diversify_rejects},
    {"cmac_vectors", test_cmac_vectors},
    {"scp03_kdf_vectors", test_scp03_kdf_vectors},
    {"ecdsa_der", test_ecdsa_der},
    {"ec_point_forms", test_ec_point_forms},
    {"sign_p256", test_sign_p256},
    {"sign_p384", test_sign_p384},
    {"sign_ed25519", test_sign_ed25519},
    {"pool_threads", test_pool_threads},
};

/* The HSM is closed before main returns: SoftHSM2 tears its state down in
 * its own exit handlers, after which no PKCS#11 call is valid. */
int main(int argc, char **argv)
{
    int rc = tc_test_run("hsm", cases, TC_ARRAY_LEN(cases), argc, argv);
    teardown();
    return rc;
}
