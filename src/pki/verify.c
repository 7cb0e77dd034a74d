/*
 * Verification: RFC 5280 path validation by OpenSSL (strict mode, policy
 * checking, a CRL for every certificate in the path), then the CRL profile,
 * every certificate profile rule, and the batch fence. One reason on
 * failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "pki_int.h"

tc_err tc_pki_reject(char *reason, size_t size, const char *fmt, ...)
{
    char msg[sizeof(((struct tc_error *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (reason != NULL && size > 0)
        (void)snprintf(reason, size, "%s", msg);
    return TC_FAIL(TC_ERR_VERIFY, "%s", msg);
}

X509_CRL *tc_pki_parse_crl(const uint8_t *der, size_t len)
{
    if (der == NULL || len == 0 || len > TC_PKI_CRL_MAX)
        return NULL;
    const uint8_t *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl != NULL && p != der + len) {
        X509_CRL_free(crl);
        return NULL;
    }
    return crl;
}

X509 *tc_pki_parse_cert(const uint8_t *der, size_t len)
{
    if (der == NULL || len == 0 || len > TC_PKI_CERT_MAX)
        return NULL;
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL && p != der + len) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* RFC 5280 §5: v2, AKI and CRL number present, nextUpdate present. */
bool tc_pki_crl_profile_ok(const X509_CRL *crl, const char **why)
{
    if (X509_CRL_get_version(crl) != X509_CRL_VERSION_2) {
        *why = "is not a v2 CRL";
        return false;
    }
    if (X509_CRL_get0_nextUpdate(crl) == NULL) {
        *why = "has no nextUpdate";
        return false;
    }
    if (X509_CRL_get_ext_by_NID(crl, NID_crl_number, -1) < 0) {
        *why = "has no CRL number";
        return false;
    }
    if (X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) < 0) {
        *why = "has no authorityKeyIdentifier";
        return false;
    }
    return true;
}

const char *tc_pki_depth_name(int depth, bool with_device)
{
    if (!with_device)
        depth++;
    switch (depth) {
    case 0:
        return "device certificate";
    case 1:
        return "batch CA certificate";
    case 2:
        return "root certificate";
    default:
        return "certificate";
    }
}

tc_err tc_pki_path_verify(X509_STORE_CTX *ctx, X509_STORE *store, X509 *leaf,
                          STACK_OF(X509) * untrusted, STACK_OF(X509_CRL) * crls, int64_t at,
                          bool with_device, char *reason, size_t reason_size)
{
    if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "X509_STORE_CTX_init");
    X509_STORE_CTX_set0_crls(ctx, crls);
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
    if (X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_X509_STRICT | X509_V_FLAG_POLICY_CHECK |
                                            X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "X509_VERIFY_PARAM_set_flags");
    if (at != 0)
        X509_VERIFY_PARAM_set_time(vp, (time_t)at);
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        int depth = X509_STORE_CTX_get_error_depth(ctx);
        return tc_pki_reject(reason, reason_size, "%s: %s", tc_pki_depth_name(depth, with_device),
                             X509_verify_cert_error_string(err));
    }
    return TC_OK;
}

tc_err tc_pki_batch_fence(const struct tc_pki_device_info *di, const struct tc_pki_batch_info *bi,
                          char *reason, size_t reason_size)
{
    /* The batch fence that X.509 name constraints cannot express: the
     * EID prefix of the batch (docs/pki.md). */
    if (strncmp(di->eid, bi->eid_prefix, strlen(bi->eid_prefix)) != 0)
        return tc_pki_reject(reason, reason_size,
                             "device certificate: EID %s is outside batch %s (EID prefix %s)",
                             di->eid, bi->batch_id, bi->eid_prefix);
    if (strcmp(di->manufacturer, bi->manufacturer) != 0 || strcmp(di->batch_id, bi->batch_id))
        return tc_pki_reject(
            reason, reason_size,
            "device certificate: manufacturer or batch ID differs from its batch CA");
    return TC_OK;
}

tc_err tc_pki_verify(const struct tc_pki_chain *c, char *reason, size_t reason_size)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509 *root = NULL, *batch = NULL, *dev = NULL;
    X509_CRL *rcrl = NULL, *bcrl = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *untrusted = NULL;
    STACK_OF(X509_CRL) *crls = NULL;
    struct tc_pki_batch_info bi;
    struct tc_pki_device_info di;
    const char *why = NULL;
    if (reason != NULL && reason_size > 0)
        reason[0] = '\0';
    TC_CHECK(c != NULL, TC_ERR_ARG);
    bool with_device = c->device != NULL;

    root = tc_pki_parse_cert(c->root, c->root_len);
    batch = tc_pki_parse_cert(c->batch, c->batch_len);
    TC_CHECK_MSG(root != NULL, TC_ERR_FORMAT, "root certificate does not parse");
    TC_CHECK_MSG(batch != NULL, TC_ERR_FORMAT, "batch CA certificate does not parse");
    if (with_device) {
        dev = tc_pki_parse_cert(c->device, c->device_len);
        TC_CHECK_MSG(dev != NULL, TC_ERR_FORMAT, "device certificate does not parse");
    }
    rcrl = tc_pki_parse_crl(c->root_crl, c->root_crl_len);
    TC_CHECK_MSG(rcrl != NULL, TC_ERR_FORMAT, "root CRL missing or does not parse");
    if (with_device) {
        bcrl = tc_pki_parse_crl(c->batch_crl, c->batch_crl_len);
        TC_CHECK_MSG(bcrl != NULL, TC_ERR_FORMAT, "batch CRL missing or does not parse");
    }

    /* Path validation, RFC 5280 §6.1, with revocation checked for every
     * certificate (§6.3) and the policy tree built (§6.1.3 (d)). */
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    untrusted = sk_X509_new_null();
    crls = sk_X509_CRL_new_null();
    TC_CHECK_MSG(store && ctx && untrusted && crls, TC_ERR_NOMEM, "X509_STORE");
    TC_TRY_OSSL(X509_STORE_add_cert(store, root));
    if (with_device)
        TC_CHECK_MSG(sk_X509_push(untrusted, batch) > 0, TC_ERR_NOMEM, "stack");
    TC_CHECK_MSG(sk_X509_CRL_push(crls, rcrl) > 0, TC_ERR_NOMEM, "stack");
    if (bcrl != NULL)
        TC_CHECK_MSG(sk_X509_CRL_push(crls, bcrl) > 0, TC_ERR_NOMEM, "stack");
    TC_TRY(tc_pki_path_verify(ctx, store, with_device ? dev : batch, untrusted, crls, c->at,
                              with_device, reason, reason_size));

    if (!tc_pki_crl_profile_ok(rcrl, &why)) {
        ret = tc_pki_reject(reason, reason_size, "root CRL %s", why);
        goto out;
    }
    if (bcrl != NULL && !tc_pki_crl_profile_ok(bcrl, &why)) {
        ret = tc_pki_reject(reason, reason_size, "batch CRL %s", why);
        goto out;
    }

    /* The profiles, certificate by certificate. */
    if (tc_pki_check_root(c->root, c->root_len) != TC_OK) {
        ret = tc_pki_reject(reason, reason_size, "root certificate: %s", tc_error_last()->msg);
        goto out;
    }
    if (tc_pki_check_batch(c->batch, c->batch_len, &bi) != TC_OK) {
        ret = tc_pki_reject(reason, reason_size, "batch CA certificate: %s", tc_error_last()->msg);
        goto out;
    }
    if (with_device) {
        if (tc_pki_check_device(c->device, c->device_len, &di) != TC_OK) {
            ret =
                tc_pki_reject(reason, reason_size, "device certificate: %s", tc_error_last()->msg);
            goto out;
        }
        ret = tc_pki_batch_fence(&di, &bi, reason, reason_size);
        if (ret != TC_OK)
            goto out;
    }
    ret = TC_OK;
out:
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx); /* crls are owned by the stack below, not the ctx */
    sk_X509_CRL_free(crls);
    X509_STORE_free(store);
    X509_CRL_free(rcrl);
    X509_CRL_free(bcrl);
    X509_free(root);
    X509_free(batch);
    X509_free(dev);
    return ret;
}

/* ----------------------------------------------------------- PEM */

tc_err tc_pki_pem_encode(const char *label, const uint8_t *der, size_t len, struct tc_buf *pem)
{
    TC_ENSURE(label != NULL && der != NULL && pem != NULL, TC_ERR_ARG);
    BIO *b = BIO_new(BIO_s_mem());
    TC_ENSURE_MSG(b != NULL, TC_ERR_NOMEM, "BIO");
    tc_err ret = TC_ERR_INTERNAL;
    char *p = NULL;
    if (PEM_write_bio(b, label, "", der, (long)len) <= 0) {
        ret = tc_fail_ossl(__FILE__, __LINE__, "PEM_write_bio");
        goto out;
    }
    long n = BIO_get_mem_data(b, &p);
    TC_CHECK_MSG(n > 0, TC_ERR_CRYPTO, "PEM");
    tc_buf_put(pem, p, (size_t)n);
    ret = tc_buf_status(pem);
out:
    BIO_free(b);
    return ret;
}

tc_err tc_pki_der_from_pem(const uint8_t *in, size_t len, struct tc_buf *der)
{
    TC_ENSURE(in != NULL && der != NULL, TC_ERR_ARG);
    if (len > 0 && in[0] == DER_SEQUENCE) {
        tc_buf_put(der, in, len);
        return tc_buf_status(der);
    }
    TC_ENSURE_MSG(len <= TC_PKI_CRL_MAX * 2, TC_ERR_FORMAT, "PEM input too large");
    BIO *b = BIO_new_mem_buf(in, (int)len);
    TC_ENSURE_MSG(b != NULL, TC_ERR_NOMEM, "BIO");
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dl = 0;
    tc_err ret = TC_ERR_INTERNAL;
    if (PEM_read_bio(b, &name, &header, &data, &dl) != 1) {
        ret = TC_FAIL(TC_ERR_FORMAT, "neither DER nor PEM");
        goto out;
    }
    TC_CHECK_MSG(strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CRL") == 0, TC_ERR_FORMAT,
                 "PEM label %s is not CERTIFICATE or X509 CRL", name);
    tc_buf_put(der, data, (size_t)dl);
    ret = tc_buf_status(der);
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    return ret;
}
