/*
 * The device agent: the card provider (an OpenSSL 3 provider whose key has
 * no private component and whose signature is the identity applet's SIGN),
 * TLS 1.3 client authentication with it against a plain OpenSSL server, and
 * the Amendment B dialog against the trustchain server running the SCP03
 * application (tc_ota_scp03_app, in-memory keys): a complete session, a
 * tampering card link (command and response) detected by the card and the
 * server, and each refusal the agent must name (revoked device, wrong
 * server pin, unreachable server, no identity on the card, a card link that
 * fails, too many steps, a malformed script, bad URLs), the blocking and
 * the libevent-driven API. Cards are emulated in memory and personalised
 * as the line does: GENERATE KEY with PoP in an SCP03 session, the batch CA
 * issues, STORE CERTIFICATE.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <trustchain/crypto.h>
#include <trustchain/ota.h>
#include <trustchain/ota_agent.h>
#include <trustchain/pki.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "harness.h"
#include "ota_fixture.h"

/* test_ota_agent_threads builds this file with the server's connections
 * on loop threads. */
#ifndef OTA_TEST_THREADS
#define OTA_TEST_THREADS 0
#endif

#define DAY    INT64_C(86400)
#define PREFIX "890490321234"

static const uint8_t GP_KEY[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                   0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
/* ------------------------------------------------------------ fixture */

struct card {
    struct tc_se_card *se;
    struct tc_transport link; /* the emulator */
    char eid[33];
    uint8_t serial[TC_PKI_SERIAL_LEN];
    struct tc_buf cert;
};

static struct fixture {
    bool ready;
    struct ota_fx_pki pki; /* root and batch CA (tests/ota/ota_fixture.h) */
    struct tc_buf root_crl, batch_crl, batch_crl_rev;
    struct card c1, c2, bare; /* bare: no key pair, no certificate */
    struct card locked;       /* personalised, then CARD_LOCKED */
    EVP_PKEY *srv_key, *other_key, *misname_key;
    X509 *srv_cert, *other_cert, *misname_cert;
    bool serve_misname; /* the server presents misname_cert */
    char dir[64], pin[96], wrong_pin[96], misname_pin[96];
} F;

static struct tc_buf new_buf(void)
{
    struct tc_buf b;
    tc_buf_init_heap(&b, 1u << 20);
    return b;
}

/* An SCP03 session with the GP test keyset (KVN 30) of an emulated card;
 * select: SELECT the ISD first (else the selected applet's channel). */
struct gp_session {
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host h;
};

static bool gp_open(struct gp_session *g, struct card *c, uint8_t level, bool select)
{
    struct tc_scp03_keyset ks;
    struct tc_scp03_host_config cfg = {
        .kvn = 0x30, .level = level, .aid = ISD, .aid_len = sizeof ISD, .select = select};
    memset(&g->h, 0, sizeof g->h);
    tc_scp03_mem_provider_init(&g->mp, &g->kp);
    bool ok = tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16) == TC_OK &&
              tc_scp03_mem_provider_add(&g->mp, &ks) == TC_OK &&
              tc_scp03_host_open(&g->h, &c->link, &g->kp, &cfg) == TC_OK;
    tc_scp03_keyset_wipe(&ks);
    return ok;
}

static bool gp_send(struct gp_session *g, const struct tc_apdu *cmd, uint8_t *resp, size_t *rl)
{
    static uint8_t scratch[TC_SE_MAX_RESPONSE];
    size_t n = 0;
    uint16_t sw = 0;
    bool ok = tc_scp03_host_transmit(&g->h, cmd, resp != NULL ? resp : scratch,
                                     resp != NULL ? TC_SE_MAX_RESPONSE : sizeof scratch, &n,
                                     &sw) == TC_OK &&
              sw == 0x9000;
    if (rl != NULL)
        *rl = n;
    return ok;
}

static void gp_close(struct gp_session *g)
{
    tc_scp03_host_wipe(&g->h);
    tc_scp03_mem_provider_wipe(&g->mp);
}

/* The line's identity (ota_fx_card_identity: GENERATE KEY with PoP in an
 * SCP03 session to the identity applet, the batch CA issues, STORE
 * CERTIFICATE, SECURED) on an in-memory card with the GP test keyset. */
static bool card_make(struct card *c, const char *eid30, bool personalise)
{
    struct tc_se_params p;
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    struct ota_fx_identity id;
    bool ok = false;
    tc_scp03_mem_provider_init(&mp, &kp);
    c->cert = new_buf();
    tc_se_params_default(&p);
    if (tc_pki_eid_complete(eid30, c->eid) != TC_OK || tc_pki_eid_to_bcd(c->eid, p.eid) != TC_OK ||
        tc_se_open_mem(&p, &c->se) != TC_OK || tc_se_transport(c->se, &c->link) != TC_OK)
        goto out;
    if (!personalise) {
        ok = true;
        goto out;
    }
    if (tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16) != TC_OK ||
        tc_scp03_mem_provider_add(&mp, &ks) != TC_OK ||
        !ota_fx_card_identity(&c->link, &kp, 0x30, &F.pki, c->eid, &id))
        goto out;
    tc_buf_put(&c->cert, id.cert, id.cert_len);
    memcpy(c->serial, id.serial, sizeof c->serial);
    ok = tc_buf_status(&c->cert) == TC_OK;
out:
    tc_scp03_keyset_wipe(&ks);
    tc_scp03_mem_provider_wipe(&mp);
    tc_se_params_wipe(&p);
    return ok;
}

/* SECURED -> CARD_LOCKED: SET STATUS P1 80 (GP CS 2.3 §11.10) in an
 * SCP03 session with the ISD. */
static bool card_lock(struct card *c)
{
    struct gp_session g;
    struct tc_apdu st = {.cla = 0x80, .ins = 0xF0, .p1 = 0x80, .p2 = 0x7F};
    bool ok = gp_open(&g, c, TC_SCP03_LEVEL_MAC, true) && gp_send(&g, &st, NULL, NULL);
    gp_close(&g);
    return ok;
}

static bool self_signed(const char *san_list, EVP_PKEY **key, X509 **cert)
{
    *key = EVP_EC_gen("P-256");
    *cert = X509_new();
    if (*key == NULL || *cert == NULL)
        return false;
    X509_NAME *n = X509_get_subject_name(*cert);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, *cert, *cert, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san_list);
    bool ok = san != NULL && X509_set_version(*cert, 2) == 1 &&
              ASN1_INTEGER_set(X509_get_serialNumber(*cert), 1) == 1 &&
              X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"OTA server",
                                         -1, -1, 0) == 1 &&
              X509_set_issuer_name(*cert, n) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(*cert), -3600) != NULL &&
              X509_gmtime_adj(X509_getm_notAfter(*cert), 3600) != NULL &&
              X509_set_pubkey(*cert, *key) == 1 && X509_add_ext(*cert, san, -1) == 1 &&
              X509_sign(*cert, *key, EVP_sha256()) > 0;
    X509_EXTENSION_free(san);
    return ok;
}

static bool write_pem(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_X509(f, x) == 1;
    return fclose(f) == 0 && ok;
}

static bool fixture(void)
{
    if (F.ready)
        return true;
    (void)signal(SIGPIPE, SIG_IGN);
    EXPECT(evthread_use_pthreads() == 0);
    F.root_crl = new_buf();
    F.batch_crl = new_buf();
    F.batch_crl_rev = new_buf();
    int64_t t0 = F.pki.t0;
    bool ok = ota_fx_pki_setup(&F.pki, "B-AGENT", PREFIX) &&
              (t0 = F.pki.t0, tc_pki_crl_create(F.pki.root_iss, 1, t0 + DAY, t0 + 400 * DAY, NULL,
                                                0, &F.root_crl) == TC_OK) &&
              tc_pki_crl_create(F.pki.batch_iss, 1, t0 + DAY, t0 + 400 * DAY, NULL, 0,
                                &F.batch_crl) == TC_OK;
    EXPECT(ok);
    ok = ok && card_make(&F.c1, "890490321234000000000000000001", true) &&
         card_make(&F.c2, "890490321234000000000000000002", true) &&
         card_make(&F.bare, "890490321234000000000000000003", false) &&
         card_make(&F.locked, "890490321234000000000000000004", true) && card_lock(&F.locked);
    EXPECT(ok);
    /* A batch CRL that revokes card 2. */
    struct tc_pki_revoked rv = {
        .serial_len = TC_PKI_SERIAL_LEN, .revoked_at = t0 + 5 * DAY, .reason = 1};
    memcpy(rv.serial, F.c2.serial, TC_PKI_SERIAL_LEN);
    ok = ok &&
         tc_pki_crl_create(F.pki.batch_iss, 2, t0 + 5 * DAY, t0 + 400 * DAY, &rv, 1,
                           &F.batch_crl_rev) == TC_OK &&
         self_signed("DNS:localhost,IP:127.0.0.1", &F.srv_key, &F.srv_cert) &&
         self_signed("DNS:localhost,IP:127.0.0.1", &F.other_key, &F.other_cert) &&
         self_signed("DNS:ota.example", &F.misname_key, &F.misname_cert);
    (void)snprintf(F.dir, sizeof F.dir, "/tmp/tc-agent-XXXXXX");
    ok = ok && mkdtemp(F.dir) != NULL;
    (void)snprintf(F.pin, sizeof F.pin, "%s/server.pem", F.dir);
    (void)snprintf(F.wrong_pin, sizeof F.wrong_pin, "%s/other.pem", F.dir);
    (void)snprintf(F.misname_pin, sizeof F.misname_pin, "%s/misname.pem", F.dir);
    ok = ok && write_pem(F.pin, F.srv_cert) && write_pem(F.wrong_pin, F.other_cert) &&
         write_pem(F.misname_pin, F.misname_cert);
    EXPECT(ok);
    F.ready = ok;
    return ok;
}

/* ------------------------------------------------------------ a card link wrapper */

/* Passes APDUs to the emulator; counts SIGNs, can fail the link or alter
 * a byte of a wrapped command or of its response. */
struct link {
    struct tc_transport t;
    struct tc_transport *inner;
    unsigned n, signs, fail_after, sign_at; /* sign_at: l->n at the last SIGN */
    uint8_t last_sign[64];
    size_t last_sign_len;
    bool tamper_cmd, tamper_rsp, sign_refuse;
};

static tc_err link_tx(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                      size_t resp_size, size_t *resp_len)
{
    struct link *l = ctx;
    uint8_t c[TC_SE_MAX_RESPONSE];
    if (cmd_len > sizeof c)
        return TC_FAIL(TC_ERR_ARG, "command too long");
    memcpy(c, cmd, cmd_len);
    l->n++;
    if (l->fail_after != 0 && l->n > l->fail_after)
        return TC_FAIL(TC_ERR_IO, "card removed");
    bool sign = cmd_len >= 2 && (c[0] & 0x7C) == 0 && c[1] == TC_SE_ID_INS_SIGN;
    if (sign) {
        l->signs++;
        l->sign_at = l->n;
        l->last_sign_len = cmd_len < sizeof l->last_sign ? cmd_len : 0;
        memcpy(l->last_sign, c, l->last_sign_len);
        if (l->sign_refuse) {
            resp[0] = 0x69;
            resp[1] = 0x82;
            *resp_len = 2;
            return TC_OK;
        }
    }
    /* The wrapped GET DATA (CLA 84, INS CA): its last C-MAC byte. */
    bool wrapped_get = cmd_len > 6 && c[0] == 0x84 && c[1] == 0xCA;
    if (wrapped_get && l->tamper_cmd)
        c[5 + c[4] - 1] ^= 0x01;
    tc_err rc = l->inner->transmit(l->inner->ctx, c, cmd_len, resp, resp_size, resp_len);
    if (rc == TC_OK && wrapped_get && l->tamper_rsp && *resp_len > 2)
        resp[0] ^= 0x01;
    return rc;
}

static void link_init(struct link *l, struct card *c)
{
    memset(l, 0, sizeof *l);
    l->inner = &c->link;
    l->t.ctx = l;
    l->t.name = "test link";
    l->t.transmit = link_tx;
}

/* ------------------------------------------------------------ provider */

static bool pub_point(EVP_PKEY *k, uint8_t out[65])
{
    size_t n = 0;
    return EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, 65, &n) ==
               1 &&
           n == 65;
}

static void test_card_open(void)
{
    struct tc_ota_card card;
    if (!fixture())
        return;
    EXPECT_OK(tc_ota_card_open(&F.c1.link, &card));
    EXPECT_STR(card.eid, F.c1.eid);
    EXPECT_MEM(card.cert_der, card.cert_len, F.c1.cert.data, F.c1.cert.len);
    EXPECT(card.key != NULL && card.cert != NULL);
    /* The card key and the certificate's key are the same key. */
    EXPECT(EVP_PKEY_eq(card.key, X509_get0_pubkey(card.cert)) == 1);
    EXPECT(EVP_PKEY_is_a(card.key, "EC"));
    EXPECT_EQ_U(EVP_PKEY_get_bits(card.key), 256);
    EXPECT_EQ_U(EVP_PKEY_get_security_bits(card.key), 128);
    EXPECT_EQ_U(EVP_PKEY_get_size(card.key), 72);
    char g[32];
    size_t gl = 0;
    EXPECT(EVP_PKEY_get_utf8_string_param(card.key, OSSL_PKEY_PARAM_GROUP_NAME, g, sizeof g, &gl) ==
           1);
    EXPECT_STR(g, "prime256v1");
    char md[32];
    EXPECT(EVP_PKEY_get_default_digest_name(card.key, md, sizeof md) > 0);
    EXPECT_STR(md, "SHA256");
    tc_ota_card_close(&card);

    /* A card without an identity: refused at GET PUBLIC KEY (6A88). */
    EXPECT_ERR(tc_ota_card_open(&F.bare.link, &card), TC_ERR_CARD);
    EXPECT(card.key == NULL && card.cert == NULL);
    /* A link that fails. */
    struct link l;
    link_init(&l, &F.c1);
    l.fail_after = 2;
    EXPECT_ERR(tc_ota_card_open(&l.t, &card), TC_ERR_IO);
}

static void test_provider_signs_on_card(void)
{
    struct tc_ota_card card;
    struct link l;
    OSSL_LIB_CTX *lc = NULL;
    if (!fixture())
        return;
    link_init(&l, &F.c1);
    EXPECT_OK(tc_ota_card_open(&l.t, &card));
    EXPECT_OK(tc_ota_provider_libctx(&lc));
    if (card.key == NULL || lc == NULL)
        return;
    static const uint8_t msg[] = "TLS 1.3, client CertificateVerify";
    uint8_t sig[128], dg[32];
    size_t sl = sizeof sig;
    unsigned dl = 0;
    unsigned before = l.signs;
    /* The digest-sign path libssl uses. */
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EXPECT(EVP_DigestSignInit_ex(m, NULL, "SHA256", lc, NULL, card.key, NULL) == 1);
    EXPECT(EVP_DigestSign(m, NULL, &sl, msg, sizeof msg) == 1);
    EXPECT_EQ_U(sl, 72);
    sl = sizeof sig;
    EXPECT(EVP_DigestSign(m, sig, &sl, msg, sizeof msg) == 1);
    EVP_MD_CTX_free(m);
    /* Exactly one SIGN: 80 2A 9E 9A 20 SHA-256(msg) 00. */
    EXPECT_EQ_U(l.signs, before + 1);
    EXPECT(EVP_Digest(msg, sizeof msg, dg, &dl, EVP_sha256(), NULL) == 1);
    uint8_t want[38] = {0x80, 0x2A, 0x9E, 0x9A, 0x20};
    memcpy(want + 5, dg, 32);
    EXPECT_MEM(l.last_sign, l.last_sign_len, want, sizeof want);
    /* The signature verifies against the certificate's key, in OpenSSL's
     * own default context. */
    m = EVP_MD_CTX_new();
    EXPECT(EVP_DigestVerifyInit_ex(m, NULL, "SHA256", NULL, NULL, X509_get0_pubkey(card.cert),
                                   NULL) == 1);
    EXPECT(EVP_DigestVerify(m, sig, sl, msg, sizeof msg) == 1);
    EVP_MD_CTX_free(m);
    /* Streaming update/final (EVP_DigestSignFinal duplicates the context). */
    m = EVP_MD_CTX_new();
    sl = sizeof sig;
    EXPECT(EVP_DigestSignInit_ex(m, NULL, "SHA256", lc, NULL, card.key, NULL) == 1);
    EXPECT(EVP_DigestSignUpdate(m, msg, 10) == 1);
    EXPECT(EVP_DigestSignUpdate(m, msg + 10, sizeof msg - 10) == 1);
    EXPECT(EVP_DigestSignFinal(m, sig, &sl) == 1);
    EVP_MD_CTX_free(m);
    m = EVP_MD_CTX_new();
    EXPECT(EVP_DigestVerifyInit_ex(m, NULL, "SHA256", NULL, NULL, X509_get0_pubkey(card.cert),
                                   NULL) == 1);
    EXPECT(EVP_DigestVerify(m, sig, sl, msg, sizeof msg) == 1);
    EVP_MD_CTX_free(m);
    /* The plain sign operation takes a 32-byte digest and nothing else. */
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(lc, card.key, NULL);
    EXPECT(pc != NULL && EVP_PKEY_sign_init(pc) == 1);
    sl = sizeof sig;
    EXPECT(EVP_PKEY_sign(pc, sig, &sl, dg, sizeof dg) == 1);
    sl = sizeof sig;
    EXPECT(EVP_PKEY_sign(pc, sig, &sl, dg, 20) != 1);
    EVP_PKEY_CTX_free(pc);
    /* Another digest is refused before the card is asked. */
    before = l.signs;
    m = EVP_MD_CTX_new();
    EXPECT(EVP_DigestSignInit_ex(m, NULL, "SHA384", lc, NULL, card.key, NULL) != 1);
    EVP_MD_CTX_free(m);
    EXPECT_EQ_U(l.signs, before);
    /* The card refusing SIGN fails the signature. */
    l.sign_refuse = true;
    m = EVP_MD_CTX_new();
    sl = sizeof sig;
    EXPECT(EVP_DigestSignInit_ex(m, NULL, "SHA256", lc, NULL, card.key, NULL) == 1);
    EXPECT(EVP_DigestSign(m, sig, &sl, msg, sizeof msg) != 1);
    EVP_MD_CTX_free(m);
    ERR_clear_error();
    tc_ota_card_close(&card);
}

static void test_provider_has_no_private_key(void)
{
    struct tc_ota_card card;
    OSSL_LIB_CTX *lc = NULL;
    if (!fixture())
        return;
    EXPECT_OK(tc_ota_card_open(&F.c1.link, &card));
    EXPECT_OK(tc_ota_provider_libctx(&lc));
    if (card.key == NULL || lc == NULL)
        return;
    EVP_PKEY *k = card.key;
    BIGNUM *bn = NULL;
    /* No parameter names a private scalar. */
    EXPECT(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &bn) != 1);
    EXPECT(bn == NULL);
    /* Export of the key pair fails; the public half exports without it. */
    OSSL_PARAM *pp = NULL;
    EXPECT(EVP_PKEY_todata(k, EVP_PKEY_KEYPAIR, &pp) != 1);
    EXPECT(pp == NULL);
    EXPECT(EVP_PKEY_todata(k, EVP_PKEY_PUBLIC_KEY, &pp) == 1);
    EXPECT(pp != NULL && OSSL_PARAM_locate(pp, OSSL_PKEY_PARAM_PRIV_KEY) == NULL);
    OSSL_PARAM_free(pp);
    /* Duplication needs an export of everything: refused. */
    EVP_PKEY *d = EVP_PKEY_dup(k);
    EXPECT(d == NULL);
    EVP_PKEY_free(d);
    /* No encoder can write a private key: DER, PEM, PKCS#8. */
    unsigned char *der = NULL;
    EXPECT(i2d_PrivateKey(k, &der) <= 0);
    OPENSSL_free(der);
    BIO *b = BIO_new(BIO_s_mem());
    EXPECT(b != NULL && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1);
    EXPECT(BIO_ctrl_pending(b) == 0);
    BIO_free(b);
    OSSL_ENCODER_CTX *ec =
        OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
    unsigned char *out = NULL;
    size_t outl = 0;
    EXPECT(ec == NULL || OSSL_ENCODER_to_data(ec, &out, &outl) != 1);
    OPENSSL_free(out);
    OSSL_ENCODER_CTX_free(ec);
    /* The public half does encode: it is the certificate's key. */
    unsigned char *spki = NULL;
    int sl = i2d_PUBKEY(k, &spki);
    uint8_t want_spki[91], pt[65];
    EXPECT(pub_point(k, pt));
    ota_fx_spki_of(pt, want_spki);
    EXPECT_MEM(spki, (size_t)(sl > 0 ? sl : 0), want_spki, sizeof want_spki);
    OPENSSL_free(spki);
    /* The card keymgmt takes no private key in, not even a made-up one. */
    uint8_t point[65], priv[32];
    EXPECT(pub_point(k, point));
    memset(priv, 0x11, sizeof priv);
    OSSL_PARAM in[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                        (char *)(uintptr_t) "prime256v1", 0),
                       OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 65),
                       OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, priv, sizeof priv),
                       OSSL_PARAM_construct_end()};
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(lc, "EC", "provider=tc-card");
    EVP_PKEY *imp = NULL;
    EXPECT(pc != NULL && EVP_PKEY_fromdata_init(pc) == 1);
    EXPECT(EVP_PKEY_fromdata(pc, &imp, EVP_PKEY_KEYPAIR, in) != 1);
    EXPECT(imp == NULL);
    EVP_PKEY_free(imp);
    /* Key generation does not exist in the card keymgmt. */
    EVP_PKEY_CTX_free(pc);
    pc = EVP_PKEY_CTX_new_from_name(lc, "EC", "provider=tc-card");
    EXPECT(pc == NULL || EVP_PKEY_keygen_init(pc) != 1);
    EVP_PKEY_CTX_free(pc);
    /* A point that is not on the curve is refused when the key is made. */
    EVP_PKEY *bad = NULL;
    point[64] ^= 0x01;
    EXPECT_ERR(tc_ota_card_key_new(&F.c1.link, point, &bad), TC_ERR_FORMAT);
    EXPECT(bad == NULL);
    ERR_clear_error();
    tc_ota_card_close(&card);
}

/* A card that answers SELECT with 9000 and SIGN with fixed bytes. */
struct fake_card {
    struct tc_transport t;
    const uint8_t *sig;
    size_t sig_len;
};

static tc_err fake_tx(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                      size_t resp_size, size_t *resp_len)
{
    struct fake_card *f = ctx;
    size_t n = cmd_len >= 2 && cmd[1] == TC_SE_ID_INS_SIGN ? f->sig_len : 0;
    if (n + 2 > resp_size)
        return TC_FAIL(TC_ERR_SPACE, "response");
    if (n > 0)
        memcpy(resp, f->sig, n);
    resp[n] = 0x90;
    resp[n + 1] = 0x00;
    *resp_len = n + 2;
    return TC_OK;
}

/* Strict DER by OpenSSL's own decoder and encoder: decodes whole and
 * re-encodes to the same bytes. */
static bool strict_der(const uint8_t *sig, size_t len)
{
    const unsigned char *p = sig;
    ECDSA_SIG *e = d2i_ECDSA_SIG(NULL, &p, (long)len);
    unsigned char *der = NULL;
    int n = e != NULL && p == sig + len ? i2d_ECDSA_SIG(e, &der) : -1;
    bool ok = n > 0 && (size_t)n == len && memcmp(der, sig, len) == 0;
    OPENSSL_free(der);
    ECDSA_SIG_free(e);
    ERR_clear_error();
    return ok;
}

static bool verify_point(const uint8_t *point, const uint8_t *dg, const uint8_t *sig, size_t sl)
{
    EVP_PKEY *pub = NULL;
    OSSL_PARAM pp[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                         (char *)(uintptr_t) "prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)point, 65),
        OSSL_PARAM_construct_end()};
    EVP_PKEY_CTX *fc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    bool ok = fc != NULL && EVP_PKEY_fromdata_init(fc) == 1 &&
              EVP_PKEY_fromdata(fc, &pub, EVP_PKEY_PUBLIC_KEY, pp) == 1;
    EVP_PKEY_CTX_free(fc);
    EVP_PKEY_CTX *vc = ok ? EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL) : NULL;
    ok = vc != NULL && EVP_PKEY_verify_init(vc) == 1 && EVP_PKEY_verify(vc, sig, sl, dg, 32) == 1;
    EVP_PKEY_CTX_free(vc);
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return ok;
}

/* Wycheproof's DER signature cases (tests/vectors/pki/, source in the
 * file) as the card's SIGN answer: the provider passes on exactly the
 * strict-DER answers, byte for byte, and what it passes on verifies only
 * for the valid ones. */
static void test_provider_sign_answers(void)
{
    struct tc_vec v;
    OSSL_LIB_CTX *lc = NULL;
    size_t n = 0, refused = 0;
    EXPECT_OK(tc_ota_provider_libctx(&lc));
    if (lc == NULL || !tc_vec_open(&v, "pki/ecdsa_p256_wycheproof.txt"))
        return;
    while (tc_vec_next(&v)) {
        size_t pl = 0, ml = 0, sl = 0;
        uint8_t *point = tc_vec_hex(&v, "POINT", &pl), *msg = tc_vec_hex(&v, "MSG", &ml);
        uint8_t *sig = tc_vec_hex(&v, "SIG", &sl);
        const char *result = tc_vec_get(&v, "RESULT");
        struct fake_card f = {
            .t = {.transmit = fake_tx, .name = "fake"}, .sig = sig, .sig_len = sl};
        f.t.ctx = &f;
        EVP_PKEY *k = NULL;
        uint8_t dg[32], out[128];
        unsigned dl = 0;
        size_t ol = sizeof out;
        if (point == NULL || msg == NULL || sig == NULL || result == NULL || pl != 65)
            goto next;
        n++;
        EXPECT_OK(tc_ota_card_key_new(&f.t, point, &k));
        EXPECT(EVP_Digest(msg, ml, dg, &dl, EVP_sha256(), NULL) == 1);
        EVP_PKEY_CTX *pc = k != NULL ? EVP_PKEY_CTX_new_from_pkey(lc, k, NULL) : NULL;
        bool signed_ok =
            pc != NULL && EVP_PKEY_sign_init(pc) == 1 && EVP_PKEY_sign(pc, out, &ol, dg, 32) == 1;
        EVP_PKEY_CTX_free(pc);
        ERR_clear_error();
        if (signed_ok != strict_der(sig, sl))
            tc_test_fail_at(__FILE__, __LINE__, "record at line %d: provider %s a %s answer",
                            v.record_line, signed_ok ? "accepted" : "refused",
                            signed_ok ? "non-DER" : "strict-DER");
        refused += !signed_ok;
        if (signed_ok) {
            EXPECT_MEM(out, ol, sig, sl);
            /* What is passed on verifies iff Wycheproof says valid. */
            EXPECT_EQ_U(verify_point(point, dg, out, ol), strcmp(result, "valid") == 0);
        }
    next:
        EVP_PKEY_free(k);
        free(point);
        free(msg);
        free(sig);
    }
    tc_vec_close(&v);
    /* 29 records: the 13 Wycheproof encoding cases (tcId 2 to 39) and
     * the file's negative r and superfluous leading zero are not DER. */
    EXPECT_EQ_U(n, 29);
    EXPECT_EQ_U(refused, 15);
}

/* ------------------------------------------------------------ TLS 1.3, plain OpenSSL server */

struct plain_srv {
    int fd;
    bool ok;
    int sig_type;
    int sig_md;
    X509 *peer;
};

static int accept_any(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1; /* the test checks the presented certificate itself */
}

static void *plain_server(void *arg)
{
    struct plain_srv *p = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL *ssl = NULL;
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_use_certificate(ctx, F.srv_cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, F.srv_key) != 1)
        goto out;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, p->fd) != 1 || SSL_accept(ssl) != 1)
        goto out;
    char buf[8];
    /* The client's CertificateVerify has been checked by OpenSSL once the
     * handshake completes and data flows. */
    if (SSL_read(ssl, buf, 5) != 5 || memcmp(buf, "hello", 5) != 0 || SSL_write(ssl, "ok", 2) != 2)
        goto out;
    p->peer = SSL_get1_peer_certificate(ssl);
    p->ok = SSL_version(ssl) == TLS1_3_VERSION;
    (void)SSL_get_peer_signature_type_nid(ssl, &p->sig_type);
    (void)SSL_get_peer_signature_nid(ssl, &p->sig_md);
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

static bool plain_handshake(struct tc_ota_card *card, struct plain_srv *p)
{
    int sv[2];
    pthread_t th;
    OSSL_LIB_CTX *lc = NULL;
    bool ok = false;
    memset(p, 0, sizeof *p);
    if (tc_ota_provider_libctx(&lc) != TC_OK || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return false;
    p->fd = sv[0];
    struct timeval tv = {.tv_sec = 5};
    (void)setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (pthread_create(&th, NULL, plain_server, p) != 0) {
        close(sv[0]);
        close(sv[1]);
        return false;
    }
    SSL_CTX *ctx = SSL_CTX_new_ex(lc, NULL, TLS_client_method());
    SSL *ssl = NULL;
    char buf[4];
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1)
        goto out;
    ssl = SSL_new(ctx);
    ok = ssl != NULL && SSL_use_certificate(ssl, card->cert) == 1 &&
         SSL_use_PrivateKey(ssl, card->key) == 1 && SSL_set_fd(ssl, sv[1]) == 1 &&
         SSL_connect(ssl) == 1 && SSL_write(ssl, "hello", 5) == 5 && SSL_read(ssl, buf, 2) == 2;
out:
    shutdown(sv[1], SHUT_RDWR);
    (void)pthread_join(th, NULL);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(sv[0]);
    close(sv[1]);
    ERR_clear_error();
    return ok;
}

static void test_tls13_client_auth(void)
{
    struct tc_ota_card card;
    struct link l;
    struct plain_srv p;
    if (!fixture())
        return;
    link_init(&l, &F.c1);
    EXPECT_OK(tc_ota_card_open(&l.t, &card));
    if (card.key == NULL)
        return;
    unsigned before = l.signs;
    EXPECT(plain_handshake(&card, &p));
    EXPECT(p.ok);
    /* The server saw the card's certificate, signed with
     * ecdsa_secp256r1_sha256 (RFC 8446 §4.2.3) — by the card: one SIGN. */
    EXPECT(p.peer != NULL && X509_cmp(p.peer, card.cert) == 0);
    EXPECT_EQ_U(p.sig_type, EVP_PKEY_EC);
    EXPECT_EQ_U(p.sig_md, NID_sha256);
    EXPECT_EQ_U(l.signs, before + 1);
    X509_free(p.peer);
    /* The card refusing SIGN: no handshake. */
    l.sign_refuse = true;
    EXPECT(!plain_handshake(&card, &p));
    EXPECT(!p.ok);
    X509_free(p.peer);
    l.sign_refuse = false;
    tc_ota_card_close(&card);

    /* Card 2's key with card 1's certificate is refused by libssl. */
    struct tc_ota_card c1, c2;
    EXPECT_OK(tc_ota_card_open(&F.c1.link, &c1));
    EXPECT_OK(tc_ota_card_open(&F.c2.link, &c2));
    OSSL_LIB_CTX *lc = NULL;
    EXPECT_OK(tc_ota_provider_libctx(&lc));
    SSL_CTX *ctx = SSL_CTX_new_ex(lc, NULL, TLS_client_method());
    SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
    EXPECT(ssl != NULL && SSL_use_certificate(ssl, c1.cert) == 1);
    EXPECT(ssl != NULL && SSL_use_PrivateKey(ssl, c2.key) != 1);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    tc_ota_card_close(&c1);
    tc_ota_card_close(&c2);
}

/* ------------------------------------------------------------ the trustchain server */

struct srv {
    struct ota_fx_server fx;
    struct tc_ota_trust *t;
    struct tc_ota_scp03_app *a;
    struct tc_ota_app app;
    char url[64];
};

static struct rec {
    pthread_mutex_t mu;
    struct tc_scp03_mem_provider mp[4];
    bool used[4];
    int keys, releases, done, ok;
    tc_err rc;
    uint16_t sw;
    uint8_t data[8];
    size_t data_len;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static tc_err app_keys(void *ctx, const char *eid, struct tc_scp03_key_provider *p, void **token)
{
    struct tc_scp03_keyset ks;
    (void)ctx;
    (void)eid;
    pthread_mutex_lock(&R.mu);
    R.keys++;
    size_t i = 0;
    while (i < 4 && R.used[i])
        i++;
    if (i == 4) {
        pthread_mutex_unlock(&R.mu);
        return TC_FAIL(TC_ERR_NOMEM, "no key slot");
    }
    R.used[i] = true;
    pthread_mutex_unlock(&R.mu);
    tc_scp03_mem_provider_init(&R.mp[i], p);
    tc_err rc = tc_scp03_keyset_set(&ks, 0x30, GP_KEY, GP_KEY, GP_KEY, 16);
    if (rc == TC_OK)
        rc = tc_scp03_mem_provider_add(&R.mp[i], &ks);
    tc_scp03_keyset_wipe(&ks);
    *token = &R.mp[i];
    return rc;
}

static void app_release(void *ctx, void *token)
{
    (void)ctx;
    tc_scp03_mem_provider_wipe(token);
    pthread_mutex_lock(&R.mu);
    R.releases++;
    R.used[(struct tc_scp03_mem_provider *)token - R.mp] = false;
    pthread_mutex_unlock(&R.mu);
}

static void app_done(void *ctx, const char *eid, const struct tc_ota_remote *r, tc_err rc)
{
    (void)ctx;
    (void)eid;
    pthread_mutex_lock(&R.mu);
    R.done++;
    R.rc = rc;
    if (rc == TC_OK) {
        R.ok++;
        R.sw = r->sw[0];
        R.data_len = r->data_len[0] <= sizeof R.data ? r->data_len[0] : 0;
        memcpy(R.data, r->data[0], R.data_len);
    }
    pthread_mutex_unlock(&R.mu);
}

/* app NULL: the SCP03 application (SELECT + INITIALIZE UPDATE, EXTERNAL
 * AUTHENTICATE, GET DATA 9F70 under C-MAC/C-DEC/R-MAC/R-ENC). */
static bool srv_start(struct srv *v, const struct tc_buf *batch_crl, const struct tc_ota_app *app)
{
    static const struct tc_apdu cmds[] = {
        {.cla = 0x80, .ins = 0xCA, .p1 = 0x9F, .p2 = 0x70, .has_le = true, .le = 256}};
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&R.mu);
    R.keys = R.releases = R.done = R.ok = 0;
    R.rc = TC_ERR_INTERNAL;
    R.sw = 0;
    R.data_len = 0;
    pthread_mutex_unlock(&R.mu);
    if (!fixture())
        return false;
    struct tc_ota_scp03_app_config ac = {
        .keys = app_keys,
        .release = app_release,
        .done = app_done,
        .host = {.kvn = 0x30, .level = TC_SCP03_LEVEL_RENC, .aid = ISD, .aid_len = sizeof ISD},
        .cmds = cmds,
        .ncmds = 1,
        .max_sessions = 4};
    if (app == NULL) {
        EXPECT_OK(tc_ota_scp03_app_new(&ac, &v->a, &v->app));
        if (v->a == NULL)
            return false;
        app = &v->app;
    }
    EXPECT_OK(
        tc_ota_trust_new(F.pki.root.data, F.pki.root.len, F.root_crl.data, F.root_crl.len, &v->t));
    if (v->t == NULL)
        return false;
    EXPECT_OK(tc_ota_trust_add_batch(v->t, F.pki.batch.data, F.pki.batch.len, batch_crl->data,
                                     batch_crl->len));
    struct tc_ota_server_config cfg = {.host = "127.0.0.1",
                                       .cert = F.serve_misname ? F.misname_cert : F.srv_cert,
                                       .key = F.serve_misname ? F.misname_key : F.srv_key,
                                       .trust = v->t,
                                       .timeout_ms = 3000,
                                       .app = app,
                                       .threads = OTA_TEST_THREADS};
    if (!ota_fx_server_start(&v->fx, &cfg))
        return false;
    (void)snprintf(v->url, sizeof v->url, "https://127.0.0.1:%u", (unsigned)v->fx.port);
    return true;
}

static void srv_stop(struct srv *v)
{
    ota_fx_server_stop(&v->fx);
    tc_ota_trust_free(v->t);
    tc_ota_scp03_app_free(v->a);
}

/* Waits (bounded) for the server application's end of session. */
static int done_wait(int n)
{
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&R.mu);
        int d = R.done, rel = R.releases;
        pthread_mutex_unlock(&R.mu);
        if (d >= n && rel >= n)
            return d;
        (void)usleep(10000);
    }
    return R.done;
}

static tc_err agent_run(const char *url, const char *pin, unsigned max_steps,
                        struct tc_transport *t, struct tc_ota_agent_result *res)
{
    struct tc_ota_agent_config cfg = {
        .url = url, .trust_file = pin, .timeout_ms = 3000, .max_steps = max_steps};
    struct tc_ota_agent *a = NULL;
    struct tc_ota_card card;
    memset(res, 0, sizeof *res);
    tc_err rc = tc_ota_agent_new(&cfg, &a);
    if (rc == TC_OK)
        rc = tc_ota_card_open(t, &card);
    if (rc == TC_OK) {
        rc = tc_ota_agent_run(a, &card, res);
        tc_ota_card_close(&card);
    }
    tc_ota_agent_free(a);
    return rc;
}

static void test_dialog_complete(void)
{
    struct srv v;
    struct tc_ota_agent_result res;
    struct link l;
    if (!srv_start(&v, &F.batch_crl, NULL))
        goto out;
    link_init(&l, &F.c1);
    EXPECT_OK(agent_run(v.url, F.pin, 0, &l.t, &res));
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_DONE);
    EXPECT_EQ_U(res.http_status, 204);
    /* SELECT + INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, GET DATA. */
    EXPECT_EQ_U(res.scripts, 3);
    EXPECT_EQ_U(res.apdus, 4);
    EXPECT_EQ_U(res.last_sw, 0x9000);
    EXPECT_EQ_U(l.signs, 1); /* one handshake, one card signature */
    EXPECT_EQ_U(done_wait(1), 1);
    EXPECT_ERR(R.rc, TC_OK);
    EXPECT_EQ_U(R.sw, 0x9000);
    /* GET DATA 9F70: the card life cycle, answered under R-MAC/R-ENC. */
    EXPECT(R.data_len == 4 && R.data[0] == 0x9F && R.data[1] == 0x70 && R.data[2] == 1);
    /* A hostname works too (the certificate names localhost). */
    char url[64];
    (void)snprintf(url, sizeof url, "https://localhost:%u/", (unsigned)v.fx.port);
    EXPECT_OK(agent_run(url, F.pin, 0, &F.c1.link, &res));
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_DONE);
out:
    srv_stop(&v);
}

/* A link that alters the wrapped GET DATA (cmd) or the card's answer to
 * it: the server ends the session with 500 and the application sees
 * server_rc. */
static void tamper_run(bool cmd, tc_err server_rc, uint16_t last_sw)
{
    struct srv v;
    struct tc_ota_agent_result res;
    struct link l;
    if (srv_start(&v, &F.batch_crl, NULL)) {
        link_init(&l, &F.c1);
        l.tamper_cmd = cmd;
        l.tamper_rsp = !cmd;
        EXPECT_ERR(agent_run(v.url, F.pin, 0, &l.t, &res), TC_ERR_AUTH);
        EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_HTTP);
        EXPECT_EQ_U(res.http_status, 500);
        EXPECT_EQ_U(res.last_sw, last_sw);
        EXPECT_EQ_U(done_wait(1), 1);
        EXPECT_ERR(R.rc, server_rc);
        EXPECT_EQ_U(R.ok, 0);
    }
    srv_stop(&v);
}

static void test_tampering_agent(void)
{
    /* The C-MAC altered: the card refuses the command (6982). */
    tamper_run(true, TC_ERR_AUTH, 0x6982);
    /* The answer altered (its SW stays 9000): the server's R-MAC check
     * fails. */
    tamper_run(false, TC_ERR_VERIFY, 0x9000);
}

static void test_refusals(void)
{
    struct srv v;
    struct tc_ota_agent_result res;
    if (!srv_start(&v, &F.batch_crl_rev, NULL))
        goto out;
    /* A revoked device: the server's alert during the handshake. */
    EXPECT_ERR(agent_run(v.url, F.pin, 0, &F.c2.link, &res), TC_ERR_AUTH);
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_REFUSED);
    EXPECT(strstr(res.detail, "TLS alert certificate revoked") != NULL ||
           strstr(res.detail, "refuses this device's certificate") != NULL);
    EXPECT_EQ_U(R.keys, 0);
    /* Card 1 is still served by the same server. */
    EXPECT_OK(agent_run(v.url, F.pin, 0, &F.c1.link, &res));
    /* The wrong server pin: the agent refuses the server. */
    EXPECT_ERR(agent_run(v.url, F.wrong_pin, 0, &F.c1.link, &res), TC_ERR_VERIFY);
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_SERVER_UNTRUSTED);
    EXPECT(strstr(res.detail, "server certificate not trusted") != NULL);
    /* Too many steps for the bound. */
    EXPECT_ERR(agent_run(v.url, F.pin, 2, &F.c1.link, &res), TC_ERR_RANGE);
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_BOUNDS);
    EXPECT_EQ_U(res.scripts, 2);
    /* The card goes away in the middle of the dialog. */
    struct link l;
    struct tc_ota_card card;
    link_init(&l, &F.c1);
    EXPECT_OK(tc_ota_card_open(&l.t, &card));
    tc_ota_card_close(&card);
    unsigned opening = l.n;
    link_init(&l, &F.c1);
    l.fail_after = opening + 2; /* card open, SIGN (SELECT + SIGN), then the first script */
    EXPECT_ERR(agent_run(v.url, F.pin, 0, &l.t, &res), TC_ERR_IO);
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_CARD);
    EXPECT_EQ_U(res.scripts, 0);
    /* Bad URLs and a missing pin file. */
    EXPECT_ERR(agent_run("http://127.0.0.1:1", F.pin, 0, &F.c1.link, &res), TC_ERR_FORMAT);
    EXPECT_ERR(agent_run("https://", F.pin, 0, &F.c1.link, &res), TC_ERR_FORMAT);
    EXPECT_ERR(agent_run("https://127.0.0.1:1/other", F.pin, 0, &F.c1.link, &res), TC_ERR_FORMAT);
    EXPECT_ERR(agent_run("https://127.0.0.1:99999", F.pin, 0, &F.c1.link, &res), TC_ERR_FORMAT);
    EXPECT_ERR(agent_run(v.url, "/nonexistent/server.pem", 0, &F.c1.link, &res), TC_ERR_IO);
out:
    srv_stop(&v);
    /* A server whose certificate is pinned but names another host. */
    F.serve_misname = true;
    if (srv_start(&v, &F.batch_crl, NULL)) {
        EXPECT_ERR(agent_run(v.url, F.misname_pin, 0, &F.c1.link, &res), TC_ERR_VERIFY);
        EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_SERVER_UNTRUSTED);
        EXPECT(strstr(res.detail, "IP address mismatch") != NULL);
    }
    srv_stop(&v);
    F.serve_misname = false;
    /* Nobody listening. */
    char url[64];
    struct tc_ota_agent_result r2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    EXPECT(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
           getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    (void)snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    EXPECT_ERR(agent_run(url, F.pin, 0, &F.c1.link, &r2), TC_ERR_IO);
    EXPECT_EQ_U(r2.outcome, TC_OTA_AGENT_UNREACHABLE);
}

/* A server application that answers with a malformed command script. */
static tc_err bad_next(void *ctx, const struct tc_ota_admin_in *in, struct tc_buf *script)
{
    static const uint8_t bad[] = {0xAE, 0x80, 0x22, 0x03, 0x00, 0xA4, 0x00, 0x00};
    (void)ctx;
    if (in->step == 0)
        tc_buf_put(script, bad, sizeof bad);
    return TC_OK;
}

static void test_malformed_script(void)
{
    static const struct tc_ota_app bad_app = {.next = bad_next};
    struct srv v;
    struct tc_ota_agent_result res;
    struct link l;
    if (!srv_start(&v, &F.batch_crl, &bad_app))
        goto out;
    link_init(&l, &F.c1);
    EXPECT_ERR(agent_run(v.url, F.pin, 0, &l.t, &res), TC_ERR_FORMAT);
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_PROTOCOL);
    EXPECT(strstr(res.detail, "script 1") != NULL);
    /* Nothing of it reached the card: the last APDU was the handshake's
     * SIGN. */
    EXPECT_EQ_U(l.signs, 1);
    EXPECT_EQ_U(l.n, l.sign_at);
out:
    srv_stop(&v);
}

/* A TLS 1.3 server that answers the agent's first request with fixed
 * bytes: the agent's checks on what comes back. */
struct fake_https {
    int lfd;
    uint16_t port;
    pthread_t th;
    const char *head; /* status line and headers, up to the blank line */
    size_t body_len;  /* then this many bytes of 0x22 */
};

/* One TLS connection of a fake server. */
struct fake_conn {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

/* Accepts the agent's connection on lfd, completes the TLS handshake and
 * reads its first request up to the blank line (the first POST has no
 * body) into req. False on any failure; fake_close frees what was made. */
static bool fake_accept(int lfd, struct fake_conn *c, char *req, size_t size)
{
    c->ctx = SSL_CTX_new(TLS_server_method());
    c->ssl = NULL;
    c->fd = accept(lfd, NULL, NULL);
    struct timeval tv = {.tv_sec = 5};
    if (c->fd < 0 || c->ctx == NULL || SSL_CTX_use_certificate(c->ctx, F.srv_cert) != 1 ||
        SSL_CTX_use_PrivateKey(c->ctx, F.srv_key) != 1)
        return false;
    (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, accept_any);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_accept(c->ssl) != 1)
        return false;
    size_t n = 0;
    while (n + 1 < size) {
        int r = SSL_read(c->ssl, req + n, (int)(size - 1 - n));
        if (r <= 0)
            return false;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            return true;
    }
    return false;
}

/* Reads until the agent closes, then frees the connection. */
static void fake_close(struct fake_conn *c, char *buf, size_t size)
{
    while (c->ssl != NULL && SSL_read(c->ssl, buf, (int)size) > 0)
        ;
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    ERR_clear_error();
}

static void *fake_https_run(void *arg)
{
    struct fake_https *h = arg;
    struct fake_conn c;
    char req[4096];
    if (!fake_accept(h->lfd, &c, req, sizeof req))
        goto out;
    SSL *ssl = c.ssl;
    if (SSL_write(ssl, h->head, (int)strlen(h->head)) <= 0)
        goto out;
    static uint8_t body[16384];
    memset(body, 0x22, sizeof body);
    if (h->body_len > 0 && SSL_write(ssl, body, (int)h->body_len) <= 0)
        goto out;
out:
    fake_close(&c, req, sizeof req);
    return NULL;
}

/* Listens on an ephemeral loopback port and runs `run(arg)` on a thread. */
static bool fake_listen(struct fake_https *h, void *(*run)(void *), void *arg)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    h->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(h->lfd, 4) != 0 || getsockname(h->lfd, (struct sockaddr *)&sa, &sl) != 0)
        return false;
    h->port = ntohs(sa.sin_port);
    return pthread_create(&h->th, NULL, run, arg) == 0;
}

static bool fake_https_start(struct fake_https *h, const char *head, size_t body_len)
{
    h->head = head;
    h->body_len = body_len;
    return fake_listen(h, fake_https_run, h);
}

static void fake_reply(const char *head, size_t body_len, enum tc_ota_agent_outcome want,
                       const char *detail)
{
    struct fake_https h;
    struct tc_ota_agent_result res;
    struct link l;
    char url[64];
    if (!fake_https_start(&h, head, body_len)) {
        EXPECT(false);
        return;
    }
    (void)snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)h.port);
    link_init(&l, &F.c1);
    EXPECT(agent_run(url, F.pin, 0, &l.t, &res) != TC_OK);
    EXPECT_EQ_U(res.outcome, want);
    if (strstr(res.detail, detail) == NULL)
        tc_test_fail_at(__FILE__, __LINE__, "detail \"%s\" lacks \"%s\"", res.detail, detail);
    /* Nothing reached the card after the handshake's SIGN. */
    EXPECT_EQ_U(l.signs, 1);
    EXPECT_EQ_U(l.n, l.sign_at);
    EXPECT_EQ_U(res.scripts, 0);
    EXPECT(pthread_join(h.th, NULL) == 0);
    close(h.lfd);
}

#define CT_SCRIPT "Content-Type: " TC_OTA_CT_SCRIPT "\r\n"
#define NEXT_OK   "X-Admin-Next-URI: /ota/v1/admin/0123abcd/1\r\n"

static void test_reply_checks(void)
{
    if (!fixture())
        return;
    fake_reply("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" NEXT_OK
               "Content-Length: 4\r\n\r\n",
               4, TC_OTA_AGENT_PROTOCOL, "media type text/plain");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT "Content-Length: 4\r\n\r\n", 4,
               TC_OTA_AGENT_PROTOCOL, "X-Admin-Next-URI");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT "X-Admin-Next-URI: /elsewhere/1\r\n"
               "Content-Length: 4\r\n\r\n",
               4, TC_OTA_AGENT_PROTOCOL, "X-Admin-Next-URI");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT
               "X-Admin-Next-URI: /ota/v1/admin/../../etc\r\nContent-Length: 4\r\n\r\n",
               4, TC_OTA_AGENT_PROTOCOL, "X-Admin-Next-URI");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT NEXT_OK "Content-Length: 4\r\n\r\n", 4,
               TC_OTA_AGENT_PROTOCOL, "script 1");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT NEXT_OK "Connection: close\r\n"
               "Content-Length: 4\r\n\r\n",
               4, TC_OTA_AGENT_PROTOCOL, "closed the connection");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT NEXT_OK "Content-Length: 0\r\n\r\n", 0,
               TC_OTA_AGENT_PROTOCOL, "script of 0 bytes");
    fake_reply("HTTP/1.1 200 OK\r\n" CT_SCRIPT NEXT_OK "Content-Length: 8521\r\n\r\n", 8521,
               TC_OTA_AGENT_BOUNDS, "caps");
    fake_reply("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 0, TC_OTA_AGENT_HTTP, "403");
    fake_reply("SSH-2.0-OpenSSH_9.2\r\n\r\n", 0, TC_OTA_AGENT_PROTOCOL, "malformed HTTP");
}

/* A TLS 1.3 server that answers the first POST with a one-APDU script and
 * takes the agent's response with a single SSL_read (one TLS record at
 * most): the agent sends a request as one record. */
struct one_record {
    struct fake_https h;
    bool whole;  /* the one SSL_read held the head and all of its body */
    size_t body; /* the body's Content-Length */
};

static void *one_record_run(void *arg)
{
    struct one_record *o = arg;
    struct fake_conn c;
    struct tc_buf script;
    tc_buf_init_heap(&script, 1024);
    char req[4096];
    if (!fake_accept(o->h.lfd, &c, req, sizeof req))
        goto out;
    SSL *ssl = c.ssl;
    /* SELECT the ISD (GP CS 2.3 §11.9), answered 9000 by the card. */
    static const uint8_t select_isd[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    const struct tc_ota_bytes cmd = {select_isd, sizeof select_isd};
    if (tc_ota_script_encode(&cmd, 1, &script) != TC_OK)
        goto out;
    char head[300];
    int hl =
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\n" CT_SCRIPT NEXT_OK "Content-Length: %zu\r\n\r\n", script.len);
    if (hl <= 0 || SSL_write(ssl, head, hl) <= 0 ||
        SSL_write(ssl, script.data, (int)script.len) <= 0)
        goto out;
    /* Give a second record time to arrive, then read once. */
    (void)usleep(200000);
    int r = SSL_read(ssl, req, (int)sizeof req - 1);
    if (r <= 0)
        goto out;
    req[r] = '\0';
    const char *end = strstr(req, "\r\n\r\n");
    const char *cl = strstr(req, "Content-Length: ");
    uint64_t len = 0;
    if (end != NULL && cl != NULL && cl < end) {
        char num[16] = "";
        size_t k = 0;
        for (cl += 16; *cl >= '0' && *cl <= '9' && k + 1 < sizeof num; cl++)
            num[k++] = *cl;
        if (tc_parse_uint(num, 65536, &len) == TC_OK) {
            o->body = (size_t)len;
            o->whole = len > 0 && (size_t)r == (size_t)(end + 4 - req) + (size_t)len;
        }
    }
    static const char done[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    if (SSL_write(ssl, done, (int)strlen(done)) <= 0)
        goto out;
out:
    tc_buf_free(&script);
    fake_close(&c, req, sizeof req);
    return NULL;
}

static void test_request_one_record(void)
{
    struct one_record o = {0};
    struct tc_ota_agent_result res;
    struct link l;
    char url[64];
    if (!fixture())
        return;
    if (!fake_listen(&o.h, one_record_run, &o)) {
        EXPECT(false);
        return;
    }
    (void)snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)o.h.port);
    link_init(&l, &F.c1);
    EXPECT_OK(agent_run(url, F.pin, 0, &l.t, &res));
    EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_DONE);
    EXPECT_EQ_U(res.scripts, 1);
    EXPECT(pthread_join(o.h.th, NULL) == 0);
    close(o.h.lfd);
    /* The response to the script: head and body in one record. */
    EXPECT(o.body > 0);
    EXPECT(o.whole);
}

static void test_bounds_and_timeouts(void)
{
    struct tc_ota_agent_result res;
    if (!fixture())
        return;
    /* A peer that takes the connection and never answers: the agent gives
     * up after its timeout (300 ms here). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    EXPECT(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 4) == 0 &&
           getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    char url[64];
    (void)snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    struct tc_ota_agent_config cfg = {.url = url, .trust_file = F.pin, .timeout_ms = 300};
    struct tc_ota_agent *a = NULL;
    struct tc_ota_card card;
    EXPECT_OK(tc_ota_agent_new(&cfg, &a));
    EXPECT_OK(tc_ota_card_open(&F.c1.link, &card));
    struct timespec t0, t1;
    (void)clock_gettime(CLOCK_MONOTONIC, &t0);
    if (a != NULL && card.key != NULL) {
        EXPECT_ERR(tc_ota_agent_run(a, &card, &res), TC_ERR_IO);
        EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_TIMEOUT);
    }
    (void)clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    EXPECT(s >= 0.25 && s < 5.0);
    /* The whole-dialog deadline (200 ms) cuts it shorter than the timeout. */
    tc_ota_agent_free(a);
    a = NULL;
    cfg.timeout_ms = 5000;
    cfg.deadline_ms = 200;
    EXPECT_OK(tc_ota_agent_new(&cfg, &a));
    if (a != NULL && card.key != NULL) {
        EXPECT_ERR(tc_ota_agent_run(a, &card, &res), TC_ERR_RANGE);
        EXPECT_EQ_U(res.outcome, TC_OTA_AGENT_BOUNDS);
        EXPECT(strstr(res.detail, "200 ms") != NULL);
    }
    tc_ota_card_close(&card);
    tc_ota_agent_free(a);
    if (fd >= 0)
        close(fd);
}

/* A CARD_LOCKED card: the applet is out of reach, the ISD signs; the
 * certificate comes from the device's copy. */
static void test_card_locked(void)
{
    struct srv v;
    struct tc_ota_card card;
    struct tc_ota_agent *a = NULL;
    struct tc_ota_agent_result res;
    struct link l;
    if (!fixture())
        return;
    EXPECT_ERR(tc_ota_card_open(&F.locked.link, &card), TC_ERR_CARD);
    /* Another device's certificate: the card does not hold its key. */
    EXPECT_ERR(tc_ota_card_open_ex(&F.locked.link, F.c1.cert.data, F.c1.cert.len, &card),
               TC_ERR_VERIFY);
    EXPECT(card.key == NULL);
    /* A card that is not locked ignores the copy. */
    EXPECT_OK(tc_ota_card_open_ex(&F.c1.link, F.c2.cert.data, F.c2.cert.len, &card));
    EXPECT(!card.locked);
    EXPECT_STR(card.eid, F.c1.eid);
    tc_ota_card_close(&card);
    if (!srv_start(&v, &F.batch_crl, NULL))
        goto out;
    link_init(&l, &F.locked);
    EXPECT_OK(tc_ota_card_open_ex(&l.t, F.locked.cert.data, F.locked.cert.len, &card));
    EXPECT(card.locked);
    EXPECT_STR(card.eid, F.locked.eid);
    struct tc_ota_agent_config cfg = {.url = v.url, .trust_file = F.pin};
    EXPECT_OK(tc_ota_agent_new(&cfg, &a));
    unsigned before = l.signs;
    /* TLS 1.3 client authentication signed by the ISD. */
    struct plain_srv p;
    if (card.key != NULL) {
        EXPECT(plain_handshake(&card, &p));
        EXPECT(p.ok && p.peer != NULL && X509_cmp(p.peer, card.cert) == 0);
        X509_free(p.peer);
        EXPECT_EQ_U(l.signs, before + 1);
    }
    /* The trustchain server verifies the locked device and opens its
     * dialog (the application asks for its keys). */
    if (a != NULL && card.key != NULL) {
        tc_err rc = tc_ota_agent_run(a, &card, &res);
        (void)rc; /* how the SCP03 session fares with a locked card is the server's */
        EXPECT_EQ_U(l.signs, before + 2);
        EXPECT(res.http_status != 0);
        EXPECT(res.scripts >= 1);
        pthread_mutex_lock(&R.mu);
        EXPECT_EQ_U(R.keys, 1);
        pthread_mutex_unlock(&R.mu);
    }
    tc_ota_card_close(&card);
out:
    tc_ota_agent_free(a);
    srv_stop(&v);
}

/* ------------------------------------------------------------ libevent-driven */

struct many {
    struct event_base *base;
    int done;
    struct tc_ota_agent_result res[2];
};

static void many_done(void *arg, const struct tc_ota_agent_result *r)
{
    struct many *m = arg;
    m->res[m->done++] = *r;
    if (m->done == 2)
        event_base_loopbreak(m->base);
}

static void test_event_driven(void)
{
    struct srv v;
    struct tc_ota_agent *a = NULL;
    struct tc_ota_card c1, c2;
    struct tc_ota_agent_session *s1 = NULL, *s2 = NULL;
    struct many m = {0};
    if (!srv_start(&v, &F.batch_crl, NULL))
        goto out;
    struct tc_ota_agent_config cfg = {.url = v.url, .trust_file = F.pin};
    EXPECT_OK(tc_ota_agent_new(&cfg, &a));
    EXPECT_OK(tc_ota_card_open(&F.c1.link, &c1));
    EXPECT_OK(tc_ota_card_open(&F.c2.link, &c2));
    m.base = event_base_new();
    if (a == NULL || m.base == NULL)
        goto out;
    /* Two devices in one loop, one thread. */
    EXPECT_OK(tc_ota_agent_start(a, m.base, &c1, many_done, &m, &s1));
    EXPECT_OK(tc_ota_agent_start(a, m.base, &c2, many_done, &m, &s2));
    for (int i = 0; i < 100 && m.done < 2; i++)
        (void)event_base_loop(m.base, EVLOOP_ONCE);
    EXPECT_EQ_U(m.done, 2);
    EXPECT_EQ_U(m.res[0].outcome, TC_OTA_AGENT_DONE);
    EXPECT_EQ_U(m.res[1].outcome, TC_OTA_AGENT_DONE);
    EXPECT_EQ_U(m.res[0].scripts + m.res[1].scripts, 6);
    EXPECT_EQ_U(done_wait(2), 2);
    EXPECT_EQ_U(R.ok, 2);
    /* A session freed before it ends: nothing is called. */
    struct tc_ota_agent_session *s3 = NULL;
    int before = m.done;
    EXPECT_OK(tc_ota_agent_start(a, m.base, &c1, many_done, &m, &s3));
    tc_ota_agent_session_free(s3);
    (void)event_base_loop(m.base, EVLOOP_NONBLOCK);
    EXPECT_EQ_U(m.done, before);
    /* One card's key with another card's certificate: refused before a
     * connection is made (libssl compares the two keys). */
    struct tc_ota_card mixed = c1;
    mixed.cert = c2.cert;
    struct tc_ota_agent_session *s4 = NULL;
    EXPECT_ERR(tc_ota_agent_start(a, m.base, &mixed, many_done, &m, &s4), TC_ERR_CRYPTO);
    EXPECT(s4 == NULL);
    (void)event_base_loop(m.base, EVLOOP_NONBLOCK);
    EXPECT_EQ_U(m.done, before);
    tc_ota_card_close(&c1);
    tc_ota_card_close(&c2);
out:
    tc_ota_agent_session_free(s1);
    tc_ota_agent_session_free(s2);
    if (m.base != NULL)
        event_base_free(m.base);
    tc_ota_agent_free(a);
    srv_stop(&v);
}

/* ------------------------------------------------------------ cleanup */

static void card_free(struct card *c)
{
    tc_transport_close(&c->link);
    tc_se_close(c->se);
    tc_buf_free(&c->cert);
}

static void test_zz_cleanup(void)
{
    card_free(&F.c1);
    card_free(&F.c2);
    card_free(&F.bare);
    card_free(&F.locked);
    ota_fx_pki_free(&F.pki);
    struct tc_buf *bufs[] = {&F.root_crl, &F.batch_crl, &F.batch_crl_rev};
    for (size_t i = 0; i < TC_ARRAY_LEN(bufs); i++)
        tc_buf_free(bufs[i]);
    EVP_PKEY_free(F.srv_key);
    EVP_PKEY_free(F.other_key);
    EVP_PKEY_free(F.misname_key);
    X509_free(F.srv_cert);
    X509_free(F.other_cert);
    X509_free(F.misname_cert);
    if (F.dir[0] != '\0') {
        (void)unlink(F.misname_pin);
        (void)unlink(F.pin);
        (void)unlink(F.wrong_pin);
        (void)rmdir(F.dir);
    }
    libevent_global_shutdown();
}

static const struct tc_test_case cases[] = {
    {"card_open", test_card_open},
    {"provider_signs_on_card", test_provider_signs_on_card},
    {"provider_has_no_private_key", test_provider_has_no_private_key},
    {"provider_sign_answers", test_provider_sign_answers},
    {"tls13_client_auth", test_tls13_client_auth},
    {"dialog_complete", test_dialog_complete},
    {"tampering_agent", test_tampering_agent},
    {"refusals", test_refusals},
    {"malformed_script", test_malformed_script},
    {"reply_checks", test_reply_checks},
    {"request_one_record", test_request_one_record},
    {"bounds_and_timeouts", test_bounds_and_timeouts},
    {"card_locked", test_card_locked},
    {"event_driven", test_event_driven},
    {"zz_cleanup", test_zz_cleanup},
};

TC_TEST_MAIN("ota_agent", cases)
