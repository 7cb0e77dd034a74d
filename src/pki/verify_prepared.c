/*
 * The prepared verifier: tc_pki_verify's checks split into the part that
 * depends only on the trust (root, batch CAs, CRLs: parsed, profile-checked
 * and signature-checked once, when the verifier is built) and the part that
 * depends on the device certificate (parsed and profile-checked once per
 * call, its path validated by OpenSSL against the prepared store with the
 * prepared CRLs, the batch fence).
 *
 * Threads: once the batches are added the verifier is only read, and every
 * call works on its own X509_STORE_CTX, so verifications may run
 * concurrently on one verifier. What a call shares are the root, batch CA
 * and CRL objects and the store. OpenSSL 3.0 fills some caches of those
 * objects on first use, without a lock on the reader's side: the policy
 * cache of a certificate (published before it is filled) and the sort of a
 * CRL's revoked list. prime() fills them when a batch is added, on one
 * thread, so verifications only read them. The rest of what a verification
 * touches on the shared objects is read under OpenSSL's own locks (the
 * extension cache, the store's object list, a key's provider export), and
 * the error state (OpenSSL's queue, tc_error) is per thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "pki_int.h"

struct pv_batch {
    struct tc_pki_batch_info info;
    int64_t from, until; /* root, root CRL, batch CA, batch CRL windows intersected */
    X509 *ca;
    X509_CRL *crl;
    STACK_OF(X509) * untrusted; /* the batch CA */
    STACK_OF(X509_CRL) * crls;  /* root CRL, batch CRL */
};

struct tc_pki_verifier {
    X509 *root;
    X509_CRL *root_crl;
    X509_STORE *store; /* the root, the only trust anchor */
    struct pv_batch *batches;
    size_t nbatches, cap;
};

/* RFC 5280 §6.3.3 (f), (g): the CRL is issued by the certificate's issuer
 * and its signature verifies with that issuer's key, once, here. The
 * validity window (§6.3.3 (a)) is not checked here: the CRL may go stale
 * while the verifier lives, so prepared_check_crl checks it at every
 * verification against the time given. */
static tc_err crl_prepare(const uint8_t *der, size_t len, X509 *issuer, const char *what,
                          X509_CRL **out)
{
    const char *why = NULL;
    X509_CRL *crl = tc_pki_parse_crl(der, len);
    TC_ENSURE_MSG(crl != NULL, TC_ERR_FORMAT, "%s missing or does not parse", what);
    tc_err ret = TC_ERR_INTERNAL;
    TC_CHECK_MSG(tc_pki_crl_profile_ok(crl, &why), TC_ERR_VERIFY, "%s %s", what, why);
    /* Full CRLs for the whole scope of their issuer only (the project
     * writes no other kind): no issuingDistributionPoint (§5.2.5), no
     * deltaCRLIndicator (§5.2.4), so check_crl below has no scope to judge. */
    TC_CHECK_MSG(X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) < 0 &&
                     X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) < 0,
                 TC_ERR_VERIFY, "%s is a partial or delta CRL", what);
    TC_CHECK_MSG(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) == 0,
                 TC_ERR_VERIFY, "%s is not issued by its CA", what);
    EVP_PKEY *k = X509_get0_pubkey(issuer);
    TC_CHECK_MSG(k != NULL && X509_CRL_verify(crl, k) == 1, TC_ERR_VERIFY,
                 "%s: CRL signature failure", what);
    *out = crl;
    crl = NULL;
    ret = TC_OK;
out:
    X509_CRL_free(crl);
    return ret;
}

/*
 * OpenSSL's CRL check for the verifier's store. The only CRLs a
 * verification sees are the verifier's own (the store has no CRL lookup;
 * each call passes its batch's prepared pair), whose issuer, signature and
 * profile were checked once by crl_prepare against the very CA objects the
 * path is built from, and whose issuers' keyUsage (cRLSign) the CA profile
 * requires. What can change between calls is the time: RFC 5280 §6.3.3 (a)
 * (thisUpdate not in the future, nextUpdate not passed), with OpenSSL's
 * error codes so the reasons are tc_pki_verify's.
 */
static int prepared_check_crl(X509_STORE_CTX *ctx, X509_CRL *crl)
{
    const X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    time_t at = X509_VERIFY_PARAM_get_time(vp);
    time_t *pt = (X509_VERIFY_PARAM_get_flags(vp) & X509_V_FLAG_USE_CHECK_TIME) ? &at : NULL;
    int err = X509_V_OK;
    int c = X509_cmp_time(X509_CRL_get0_lastUpdate(crl), pt);
    if (c == 0)
        err = X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD;
    else if (c > 0)
        err = X509_V_ERR_CRL_NOT_YET_VALID;
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    if (err == X509_V_OK && next != NULL) {
        c = X509_cmp_time(next, pt);
        if (c == 0)
            err = X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD;
        else if (c < 0)
            err = X509_V_ERR_CRL_HAS_EXPIRED;
    }
    if (err == X509_V_OK)
        return 1;
    X509_STORE_CTX_set_error(ctx, err);
    return X509_STORE_CTX_get_verify_cb(ctx)(0, ctx);
}

/* The verifier behind a store (for prepared_verify). */
static int store_idx = -1;
static pthread_once_t store_idx_once = PTHREAD_ONCE_INIT;

static void store_idx_init(void)
{
    store_idx = X509_STORE_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* OpenSSL's verify_cb_cert: the error at (cert, depth), the callback's say. */
static int verify_fail(X509_STORE_CTX *ctx, X509 *x, int depth, int err)
{
    X509_STORE_CTX_set_error_depth(ctx, depth);
    X509_STORE_CTX_set_current_cert(ctx, x);
    X509_STORE_CTX_set_error(ctx, err);
    return X509_STORE_CTX_get_verify_cb(ctx)(0, ctx);
}

/* RFC 5280 §6.1.3 (a)(2): notBefore <= time <= notAfter, with OpenSSL's
 * error codes (ossl_x509_check_cert_time). */
static int cert_time_ok(X509_STORE_CTX *ctx, X509 *x, int depth)
{
    const X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    unsigned long flags = X509_VERIFY_PARAM_get_flags(vp);
    time_t at = X509_VERIFY_PARAM_get_time(vp);
    time_t *pt = (flags & X509_V_FLAG_USE_CHECK_TIME) != 0 ? &at : NULL;
    if (pt == NULL && (flags & X509_V_FLAG_NO_CHECK_TIME) != 0)
        return 1;
    int c = X509_cmp_time(X509_get0_notBefore(x), pt);
    if (c == 0 && !verify_fail(ctx, x, depth, X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD))
        return 0;
    if (c > 0 && !verify_fail(ctx, x, depth, X509_V_ERR_CERT_NOT_YET_VALID))
        return 0;
    c = X509_cmp_time(X509_get0_notAfter(x), pt);
    if (c == 0 && !verify_fail(ctx, x, depth, X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD))
        return 0;
    if (c < 0 && !verify_fail(ctx, x, depth, X509_V_ERR_CERT_HAS_EXPIRED))
        return 0;
    return 1;
}

/* A batch CA of the verifier issued by its root, whose signature
 * tc_pki_verifier_add_batch verified on these very objects. */
static bool prepared_pair(const struct tc_pki_verifier *v, const X509 *xs, const X509 *xi)
{
    if (v == NULL || xi != v->root)
        return false;
    for (size_t i = 0; i < v->nbatches; i++)
        if (v->batches[i].ca == xs)
            return true;
    return false;
}

/*
 * OpenSSL's signature-and-time step of path validation (internal_verify;
 * RFC 5280 §6.1.3 (a)(1), (a)(2)) for the verifier's store, from the trust
 * anchor down: each certificate's signature verified with its issuer's key
 * (whose keyUsage must allow keyCertSign, §4.2.1.3), each one's validity
 * period checked against the verification time. The one signature not
 * verified again is a prepared batch CA's by the root: checked once, when
 * the batch was added, on the same immutable objects the chain holds. The
 * device's signature is verified at every call. Building the chain,
 * revocation, name constraints and policy stay OpenSSL's, in its order.
 */
static int prepared_verify(X509_STORE_CTX *ctx)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    const struct tc_pki_verifier *v =
        X509_STORE_get_ex_data(X509_STORE_CTX_get0_store(ctx), store_idx);
    int n = sk_X509_num(chain) - 1;
    if (n < 0)
        return 0;
    X509 *xi = sk_X509_value(chain, n), *xs = xi;
    X509_STORE_CTX_set_error_depth(ctx, n);
    /* The top is the trust anchor: self-issued (no signature check, as
     * OpenSSL without X509_V_FLAG_CHECK_SS_SIGNATURE) or, with a partial
     * chain, taken as it is; otherwise its issuer is missing. */
    unsigned long flags = X509_VERIFY_PARAM_get_flags(X509_STORE_CTX_get0_param(ctx));
    if (X509_NAME_cmp(X509_get_subject_name(xi), X509_get_issuer_name(xi)) != 0 &&
        (flags & X509_V_FLAG_PARTIAL_CHAIN) == 0) {
        if (n == 0)
            return verify_fail(ctx, xi, 0, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE);
        n--;
        xs = sk_X509_value(chain, n);
    }
    while (n >= 0) {
        if (xs != xi && !prepared_pair(v, xs, xi)) {
            EVP_PKEY *k = X509_get0_pubkey(xi);
            if ((X509_get_key_usage(xi) & KU_KEY_CERT_SIGN) == 0 &&
                !verify_fail(ctx, xi, n + 1, X509_V_ERR_KEYUSAGE_NO_CERTSIGN))
                return 0;
            if (k == NULL) {
                if (!verify_fail(ctx, xi, n + 1, X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY))
                    return 0;
            } else if (X509_verify(xs, k) <= 0 &&
                       !verify_fail(ctx, xs, n, X509_V_ERR_CERT_SIGNATURE_FAILURE)) {
                return 0;
            }
        }
        if (!cert_time_ok(ctx, xs, n))
            return 0;
        X509_STORE_CTX_set_current_cert(ctx, xs);
        X509_STORE_CTX_set_error_depth(ctx, n);
        if (!X509_STORE_CTX_get_verify_cb(ctx)(1, ctx))
            return 0;
        if (--n >= 0) {
            xi = xs;
            xs = sk_X509_value(chain, n);
        }
    }
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* An ASN1_TIME (UTCTime or GeneralizedTime) as Unix seconds. */
static bool unix_of(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = days_from_civil((int64_t)tm.tm_year + 1900, (int64_t)tm.tm_mon + 1, tm.tm_mday) * 86400 +
           (int64_t)tm.tm_hour * 3600 + (int64_t)tm.tm_min * 60 + tm.tm_sec;
    return true;
}

/*
 * Narrow [w->from, w->until) to the times at which `lo` and `hi` hold as
 * OpenSSL compares them (X509_cmp_time: a time equal to the one checked
 * counts as not after it): lo <= at (notBefore, thisUpdate) and at < hi
 * (notAfter, nextUpdate; NULL: no bound). A time that does not convert
 * empties the window.
 */
static void window_narrow(struct tc_pki_window *w, const ASN1_TIME *lo, const ASN1_TIME *hi)
{
    int64_t a = 0, b = INT64_MAX;
    if (!unix_of(lo, &a) || (hi != NULL && !unix_of(hi, &b))) {
        w->from = INT64_MAX;
        w->until = INT64_MIN;
        return;
    }
    if (a > w->from)
        w->from = a;
    if (b < w->until)
        w->until = b;
}

static int accept_all(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1;
}

/*
 * Fill, on the building thread, the caches OpenSSL 3.0 fills on first use
 * of the shared objects without a lock on the reader's side (see the top
 * of this file): a path check of the batch CA under the root with every
 * error let through (so it runs every step a device's path runs on these
 * objects, the policy tree included: RFC 5280 §6.1.3 (d)), and one lookup
 * in each CRL (which sorts its revoked list). Its verdict is not used.
 */
static tc_err prime(const struct tc_pki_verifier *v, const struct pv_batch *b)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509_REVOKED *rev = NULL;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    TC_ENSURE_MSG(ctx != NULL, TC_ERR_NOMEM, "X509_STORE_CTX");
    TC_CHECK_MSG(X509_STORE_CTX_init(ctx, v->store, b->ca, NULL) == 1, TC_ERR_CRYPTO,
                 "X509_STORE_CTX_init");
    X509_STORE_CTX_set0_crls(ctx, b->crls);
    TC_CHECK_MSG(X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx),
                                             X509_V_FLAG_X509_STRICT | X509_V_FLAG_POLICY_CHECK |
                                                 X509_V_FLAG_CRL_CHECK |
                                                 X509_V_FLAG_CRL_CHECK_ALL) == 1,
                 TC_ERR_CRYPTO, "X509_VERIFY_PARAM_set_flags");
    X509_STORE_CTX_set_verify_cb(ctx, accept_all);
    (void)X509_verify_cert(ctx);
    (void)X509_CRL_get0_by_serial(v->root_crl, &rev, X509_get0_serialNumber(b->ca));
    (void)X509_CRL_get0_by_serial(b->crl, &rev, X509_get0_serialNumber(b->ca));
    ERR_clear_error();
    ret = TC_OK;
out:
    X509_STORE_CTX_free(ctx);
    return ret;
}

tc_err tc_pki_verifier_new(const uint8_t *root, size_t root_len, const uint8_t *root_crl,
                           size_t root_crl_len, struct tc_pki_verifier **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    *out = NULL;
    struct tc_pki_verifier *v = calloc(1, sizeof *v);
    TC_ENSURE(v != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_pki_check_root(root, root_len));
    v->root = tc_pki_parse_cert(root, root_len);
    TC_CHECK_MSG(v->root != NULL, TC_ERR_FORMAT, "root certificate does not parse");
    /* RFC 5280 §6.1: the trust anchor's own signature is not part of the
     * path, but a root that does not verify under its own key is no root. */
    EVP_PKEY *rk = X509_get0_pubkey(v->root);
    TC_CHECK_MSG(rk != NULL && X509_verify(v->root, rk) == 1, TC_ERR_VERIFY,
                 "root certificate: self-signature does not verify");
    TC_TRY(crl_prepare(root_crl, root_crl_len, v->root, "root CRL", &v->root_crl));
    v->store = X509_STORE_new();
    TC_CHECK_MSG(v->store != NULL, TC_ERR_NOMEM, "X509_STORE");
    TC_TRY_OSSL(X509_STORE_add_cert(v->store, v->root));
    X509_STORE_set_check_crl(v->store, prepared_check_crl);
    TC_CHECK_MSG(pthread_once(&store_idx_once, store_idx_init) == 0 && store_idx >= 0,
                 TC_ERR_CRYPTO, "X509_STORE ex_data index");
    TC_TRY_OSSL(X509_STORE_set_ex_data(v->store, store_idx, v));
    X509_STORE_set_verify(v->store, prepared_verify);
    *out = v;
    v = NULL;
    ret = TC_OK;
out:
    tc_pki_verifier_free(v);
    return ret;
}

static void batch_clear(struct pv_batch *b)
{
    sk_X509_free(b->untrusted);
    sk_X509_CRL_free(b->crls);
    X509_free(b->ca);
    X509_CRL_free(b->crl);
    memset(b, 0, sizeof *b);
}

tc_err tc_pki_verifier_add_batch(struct tc_pki_verifier *v, const uint8_t *ca, size_t ca_len,
                                 const uint8_t *crl, size_t crl_len, struct tc_pki_batch_info *info)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct pv_batch b;
    memset(&b, 0, sizeof b);
    TC_ENSURE(v != NULL, TC_ERR_ARG);
    TC_GUARD(tc_pki_check_batch(ca, ca_len, &b.info));
    for (size_t i = 0; i < v->nbatches; i++)
        TC_ENSURE_MSG(strcmp(v->batches[i].info.batch_id, b.info.batch_id) != 0, TC_ERR_STATE,
                      "batch %s is already trusted", b.info.batch_id);
    b.ca = tc_pki_parse_cert(ca, ca_len);
    TC_CHECK_MSG(b.ca != NULL, TC_ERR_FORMAT, "batch CA certificate does not parse");
    /* RFC 5280 §6.1.3 (a)(1): the batch CA's signature by the root, once
     * here so a batch of another root is refused when it is added. */
    TC_CHECK_MSG(X509_check_issued(v->root, b.ca) == X509_V_OK &&
                     X509_verify(b.ca, X509_get0_pubkey(v->root)) == 1,
                 TC_ERR_VERIFY, "batch CA certificate %s is not issued by the root",
                 b.info.batch_id);
    TC_TRY(crl_prepare(crl, crl_len, b.ca, "batch CRL", &b.crl));
    b.untrusted = sk_X509_new_null();
    b.crls = sk_X509_CRL_new_null();
    TC_CHECK_MSG(b.untrusted != NULL && b.crls != NULL, TC_ERR_NOMEM, "stack");
    TC_CHECK_MSG(sk_X509_push(b.untrusted, b.ca) > 0 && sk_X509_CRL_push(b.crls, v->root_crl) > 0 &&
                     sk_X509_CRL_push(b.crls, b.crl) > 0,
                 TC_ERR_NOMEM, "stack");
    if (v->nbatches == v->cap) {
        size_t cap = v->cap == 0 ? 8 : v->cap * 2;
        struct pv_batch *nb = realloc(v->batches, cap * sizeof *nb);
        TC_CHECK(nb != NULL, TC_ERR_NOMEM);
        v->batches = nb;
        v->cap = cap;
    }
    /* The times every verification through this batch checks besides the
     * device's own (RFC 5280 §6.1.3 (a)(2) for the root and the batch CA,
     * §6.3.3 (a) for both CRLs). */
    struct tc_pki_window w = {INT64_MIN, INT64_MAX};
    window_narrow(&w, X509_get0_notBefore(v->root), X509_get0_notAfter(v->root));
    window_narrow(&w, X509_get0_notBefore(b.ca), X509_get0_notAfter(b.ca));
    window_narrow(&w, X509_CRL_get0_lastUpdate(v->root_crl), X509_CRL_get0_nextUpdate(v->root_crl));
    window_narrow(&w, X509_CRL_get0_lastUpdate(b.crl), X509_CRL_get0_nextUpdate(b.crl));
    b.from = w.from;
    b.until = w.until;
    TC_TRY(prime(v, &b));
    if (info != NULL)
        *info = b.info;
    v->batches[v->nbatches++] = b;
    memset(&b, 0, sizeof b);
    ret = TC_OK;
out:
    batch_clear(&b);
    return ret;
}

void tc_pki_verifier_free(struct tc_pki_verifier *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->nbatches; i++)
        batch_clear(&v->batches[i]);
    free(v->batches);
    X509_STORE_free(v->store);
    X509_CRL_free(v->root_crl);
    X509_free(v->root);
    free(v);
}

size_t tc_pki_verifier_batches(const struct tc_pki_verifier *v)
{
    return v == NULL ? 0 : v->nbatches;
}

/* The batch CA that issued dev: by issuer name and key identifier
 * (RFC 5280 §4.2.1.1), else by issuer name alone (the path then fails with
 * OpenSSL's reason, as tc_pki_verify's would for that batch CA), else none. */
static const struct pv_batch *issuing_batch(const struct tc_pki_verifier *v, X509 *dev)
{
    for (size_t i = 0; i < v->nbatches; i++)
        if (X509_check_issued(v->batches[i].ca, dev) == X509_V_OK)
            return &v->batches[i];
    for (size_t i = 0; i < v->nbatches; i++)
        if (X509_NAME_cmp(X509_get_issuer_name(dev), X509_get_subject_name(v->batches[i].ca)) == 0)
            return &v->batches[i];
    return NULL;
}

/* Both entry points: dev is the parsed device certificate, der its DER. */
static tc_err verify_parsed(const struct tc_pki_verifier *v, X509 *dev, const uint8_t *der,
                            size_t der_len, int64_t at, struct tc_pki_device_info *info,
                            struct tc_pki_window *window, enum tc_pki_refusal *refusal,
                            char *reason, size_t reason_size)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509_STORE_CTX *ctx = NULL;
    struct tc_pki_device_info di;
    enum tc_pki_refusal why = TC_PKI_REFUSED_CHAIN;

    /* The device profile (docs/cert-profile.md) on OpenSSL's parse (dev),
     * which also feeds the path check; NULL: the DER did not parse, and the
     * profile check on the DER says why. */
    tc_err prc = dev != NULL ? tc_pki_check_device_x509(dev, der, der_len, &di)
                             : tc_pki_check_device(der, der_len, &di);
    if (prc != TC_OK) {
        why = TC_PKI_REFUSED_PROFILE;
        ret = tc_pki_reject(reason, reason_size, "device certificate: %s", tc_error_last()->msg);
        goto out;
    }
    const struct pv_batch *b = issuing_batch(v, dev);
    if (b == NULL) {
        why = TC_PKI_REFUSED_BATCH;
        ret = tc_pki_reject(reason, reason_size,
                            "unknown batch %s: no trusted batch CA issued the device certificate",
                            di.batch_id);
        goto out;
    }

    /* RFC 5280 §6.1 path validation against the prepared store, revocation
     * checked for every certificate with the prepared CRLs (§6.3, CRL
     * validity window against `at`), the policy tree built (§6.1.3 (d)). */
    ctx = X509_STORE_CTX_new();
    TC_CHECK_MSG(ctx != NULL, TC_ERR_NOMEM, "X509_STORE_CTX");
    TC_TRY(tc_pki_path_verify(ctx, v->store, dev, b->untrusted, b->crls, at, true, reason,
                              reason_size));
    why = TC_PKI_REFUSED_FENCE;
    TC_TRY(tc_pki_batch_fence(&di, &b->info, reason, reason_size));
    if (info != NULL)
        *info = di;
    if (window != NULL) {
        /* The batch's times and the device's own validity. */
        window->from = b->from;
        window->until = b->until;
        window_narrow(window, X509_get0_notBefore(dev), X509_get0_notAfter(dev));
    }
    why = TC_PKI_REFUSED_NONE;
    ret = TC_OK;
out:
    if (refusal != NULL)
        *refusal = ret == TC_OK ? TC_PKI_REFUSED_NONE : why;
    if (ret != TC_OK && window != NULL) {
        window->from = INT64_MAX;
        window->until = INT64_MIN;
    }
    X509_STORE_CTX_free(ctx); /* the stacks belong to the verifier */
    return ret;
}

tc_err tc_pki_verifier_verify_window(const struct tc_pki_verifier *v, const uint8_t *device,
                                     size_t device_len, int64_t at, struct tc_pki_device_info *info,
                                     struct tc_pki_window *window, enum tc_pki_refusal *refusal,
                                     char *reason, size_t reason_size)
{
    if (window != NULL) {
        window->from = INT64_MAX;
        window->until = INT64_MIN;
    }
    if (reason != NULL && reason_size > 0)
        reason[0] = '\0';
    if (refusal != NULL)
        *refusal = TC_PKI_REFUSED_CHAIN;
    TC_ENSURE(v != NULL && device != NULL, TC_ERR_ARG);
    /* NULL when it does not parse: the profile check (first, and by the
     * same DER parse) then refuses it for that. */
    X509 *dev = tc_pki_parse_cert(device, device_len);
    tc_err rc =
        verify_parsed(v, dev, device, device_len, at, info, window, refusal, reason, reason_size);
    X509_free(dev);
    return rc;
}

tc_err tc_pki_verifier_verify(const struct tc_pki_verifier *v, const uint8_t *device,
                              size_t device_len, int64_t at, struct tc_pki_device_info *info,
                              enum tc_pki_refusal *refusal, char *reason, size_t reason_size)
{
    return tc_pki_verifier_verify_window(v, device, device_len, at, info, NULL, refusal, reason,
                                         reason_size);
}

tc_err tc_pki_verifier_verify_x509_window(const struct tc_pki_verifier *v, struct x509_st *device,
                                          int64_t at, struct tc_pki_device_info *info,
                                          struct tc_pki_window *window,
                                          enum tc_pki_refusal *refusal, char *reason,
                                          size_t reason_size)
{
    uint8_t *der = NULL;
    if (window != NULL) {
        window->from = INT64_MAX;
        window->until = INT64_MIN;
    }
    if (reason != NULL && reason_size > 0)
        reason[0] = '\0';
    if (refusal != NULL)
        *refusal = TC_PKI_REFUSED_CHAIN;
    TC_ENSURE(v != NULL && device != NULL, TC_ERR_ARG);
    /* The DER the profile is checked on is the certificate's own encoding
     * (what the peer sent, as OpenSSL kept it). */
    int n = i2d_X509(device, &der);
    TC_ENSURE_MSG(n > 0, TC_ERR_FORMAT, "device certificate does not encode");
    tc_err rc =
        verify_parsed(v, device, der, (size_t)n, at, info, window, refusal, reason, reason_size);
    OPENSSL_free(der);
    return rc;
}

tc_err tc_pki_verifier_verify_x509(const struct tc_pki_verifier *v, struct x509_st *device,
                                   int64_t at, struct tc_pki_device_info *info,
                                   enum tc_pki_refusal *refusal, char *reason, size_t reason_size)
{
    return tc_pki_verifier_verify_x509_window(v, device, at, info, NULL, refusal, reason,
                                              reason_size);
}
