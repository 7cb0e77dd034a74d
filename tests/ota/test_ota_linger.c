/*
 * The lingering close of a refused client (src/ota/server.c): after the
 * server refuses a client certificate it shuts the socket for writing and
 * drains what the client still sends until the client's EOF or the linger
 * time, so the TLS alert is not lost to a TCP reset. A readiness report
 * whose recv finds nothing (EAGAIN, e.g. a spurious wake-up) must not end
 * the linger. This test runs the real server and a real OpenSSL client;
 * recv is interposed (the server's drain is its only MSG_DONTWAIT caller) to
 * answer EAGAIN once to the drain, then to watch it reach the client's EOF.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <trustchain/ota.h>

#include "harness.h"
#include "ota_fixture.h"

#define DAY INT64_C(86400)

/* What the server's drain saw: calls, the injected EAGAIN, EOF. */
static atomic_int drain_calls, drain_injected, drain_eof;
static atomic_bool inject_once;

/* Interposes the C library's recv for this program (the server library is
 * linked in statically); recvfrom with no address is the same call. */
ssize_t recv(int fd, void *buf, size_t len, int flags);
ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    if ((flags & MSG_DONTWAIT) != 0) {
        atomic_fetch_add(&drain_calls, 1);
        bool want = true;
        if (atomic_compare_exchange_strong(&inject_once, &want, false)) {
            atomic_fetch_add(&drain_injected, 1);
            errno = EAGAIN; /* readable, but this call finds nothing */
            return -1;
        }
    }
    ssize_t n = recvfrom(fd, buf, len, flags, NULL, NULL);
    if ((flags & MSG_DONTWAIT) != 0 && n == 0)
        atomic_fetch_add(&drain_eof, 1);
    return n;
}

static EVP_PKEY *key;
static X509 *cert; /* self-signed: the server's, and the refused client's */

static bool self_signed(void)
{
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    if (key == NULL || cert == NULL)
        return false;
    X509_NAME *n = X509_get_subject_name(cert);
    return X509_set_version(cert, 2) == 1 &&
           ASN1_INTEGER_set(X509_get_serialNumber(cert), 7) == 1 &&
           X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                                      -1, 0) == 1 &&
           X509_set_issuer_name(cert, n) == 1 && X509_gmtime_adj(X509_getm_notBefore(cert), 0) &&
           X509_gmtime_adj(X509_getm_notAfter(cert), 86400) && X509_set_pubkey(cert, key) == 1 &&
           X509_sign(cert, key, EVP_sha256()) > 0;
}

/* The server trusts p's root (and no batch): every client is refused. */
static bool srv_start(struct ota_fx_server *v, struct tc_ota_trust **t, struct ota_fx_pki *p)
{
    struct tc_buf crl;
    tc_buf_init_heap(&crl, 1u << 16);
    EXPECT_OK(tc_pki_crl_create(p->root_iss, 1, p->t0 + DAY, p->t0 + 400 * DAY, NULL, 0, &crl));
    EXPECT_OK(tc_ota_trust_new(p->root.data, p->root.len, crl.data, crl.len, t));
    tc_buf_free(&crl);
    if (*t == NULL)
        return false;
    /* The fixture stops the loop from this thread. */
    EXPECT(evthread_use_pthreads() == 0);
    struct tc_ota_server_config cfg = {
        .host = "127.0.0.1", .cert = cert, .key = key, .trust = *t, .timeout_ms = 5000};
    return ota_fx_server_start(v, &cfg);
}

/* Waits (bounded, 3 s) until *v >= want. */
static int wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 300 && atomic_load(v) < want; i++)
        (void)usleep(10000);
    return atomic_load(v);
}

/*
 * A client the server refuses sends its request after its Finished, as
 * TLS 1.3 clients do, and closes only after reading the alert. The first
 * drain call finds nothing (EAGAIN): the server must keep lingering, drain
 * the request and see the client's EOF; the alert reaches the client.
 */
static void test_spurious_eagain_keeps_lingering(void)
{
    struct ota_fx_pki p;
    struct ota_fx_server v;
    struct tc_ota_trust *t = NULL;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1;
    memset(&v, 0, sizeof v);
    EXPECT(ota_fx_pki_setup(&p, "B-LINGER", "8904903299"));
    if (!self_signed() || !srv_start(&v, &t, &p))
        goto out;
    atomic_store(&inject_once, true);
    ctx = SSL_CTX_new(TLS_client_method());
    EXPECT(ctx != NULL && SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 &&
           SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1);
    char host[32];
    (void)snprintf(host, sizeof host, "127.0.0.1:%u", (unsigned)v.port);
    BIO *b = BIO_new_connect(host);
    EXPECT(b != NULL && BIO_do_connect(b) == 1);
    fd = b != NULL ? (int)BIO_get_fd(b, NULL) : -1;
    if (ctx == NULL || fd < 0 || (ssl = SSL_new(ctx)) == NULL) {
        BIO_free(b);
        goto out;
    }
    SSL_set_bio(ssl, b, b);            /* the SSL owns the connection now */
    struct timeval tv = {.tv_sec = 5}; /* a failing server cannot hang the test */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* TLS 1.3: the client's handshake is over before the server's verdict. */
    EXPECT(SSL_connect(ssl) == 1);
    static const char req[] = "GET /ota/v1/identity HTTP/1.1\r\nHost: localhost\r\n\r\n";
    EXPECT(SSL_write(ssl, req, sizeof req - 1) == (int)(sizeof req - 1));
    /* The drain has run once and found "nothing". */
    EXPECT_EQ_U(wait_for(&drain_injected, 1), 1);
    (void)usleep(100 * 1000);
    char buf[64];
    ERR_clear_error();
    EXPECT(SSL_read(ssl, buf, sizeof buf) <= 0);
    /* The server's alert for a certificate it does not accept. */
    EXPECT_EQ_U(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_SSLV3_ALERT_BAD_CERTIFICATE);
    EXPECT_EQ_U(atomic_load(&drain_eof), 0);
    (void)shutdown(fd, SHUT_WR);
    /* Still lingering: the drain reads on to the client's EOF. */
    EXPECT_EQ_U(wait_for(&drain_eof, 1), 1);
    EXPECT(atomic_load(&drain_calls) >= 2);
out:
    SSL_free(ssl); /* closes the socket */
    SSL_CTX_free(ctx);
    ota_fx_server_stop(&v);
    tc_ota_trust_free(t);
    ota_fx_pki_free(&p);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static const struct tc_test_case cases[] = {
    {"spurious_eagain_keeps_lingering", test_spurious_eagain_keeps_lingering},
};

TC_TEST_MAIN("ota_linger", cases)
