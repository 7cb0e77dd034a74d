/*
 * The server's trust store: the fleet root and its CRL, each batch CA with
 * its CRL. It is a prepared pki verifier (tc_pki_verifier): root, batch CAs
 * and CRLs are parsed, profile-checked and signature-checked once, when the
 * trust is built; each handshake only checks the device certificate (its
 * profile, RFC 5280 path validation with both CRLs, the batch fence).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <trustchain/ota.h>

struct tc_ota_trust {
    struct tc_pki_verifier *v;
};

tc_err tc_ota_trust_new(const uint8_t *root, size_t root_len, const uint8_t *root_crl,
                        size_t root_crl_len, struct tc_ota_trust **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    *out = NULL;
    struct tc_ota_trust *t = calloc(1, sizeof *t);
    TC_ENSURE(t != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_pki_verifier_new(root, root_len, root_crl, root_crl_len, &t->v));
    *out = t;
    t = NULL;
    ret = TC_OK;
out:
    tc_ota_trust_free(t);
    return ret;
}

tc_err tc_ota_trust_add_batch(struct tc_ota_trust *t, const uint8_t *ca, size_t ca_len,
                              const uint8_t *crl, size_t crl_len)
{
    TC_ENSURE(t != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(tc_pki_verifier_batches(t->v) < TC_OTA_BATCHES_MAX, TC_ERR_NOMEM,
                  "more than %u batches", TC_OTA_BATCHES_MAX);
    return tc_pki_verifier_add_batch(t->v, ca, ca_len, crl, crl_len, NULL);
}

void tc_ota_trust_free(struct tc_ota_trust *t)
{
    if (t == NULL)
        return;
    tc_pki_verifier_free(t->v);
    free(t);
}

/* The verifier's verdict as the server logs it. */
static tc_err verdict(tc_err rc, enum tc_pki_refusal refusal, const char *why, char *reason,
                      size_t reason_size)
{
    if (rc == TC_OK)
        return TC_OK;
    if (rc != TC_ERR_VERIFY)
        return rc;
    /* The verifier says "device certificate: <rule>" for a profile failure;
     * the server's log says what the peer presented. */
    (void)snprintf(reason, reason_size, "%s%s", refusal == TC_PKI_REFUSED_PROFILE ? "not a " : "",
                   why);
    return TC_FAIL(TC_ERR_VERIFY, "%s", reason);
}

tc_err tc_ota_trust_verify(const struct tc_ota_trust *t, const uint8_t *device, size_t device_len,
                           int64_t at, struct tc_pki_device_info *info, char *reason,
                           size_t reason_size)
{
    char why[TC_OTA_REASON_MAX];
    enum tc_pki_refusal refusal = TC_PKI_REFUSED_NONE;
    TC_ENSURE(t != NULL && device != NULL && reason != NULL && reason_size > 0, TC_ERR_ARG);
    reason[0] = '\0';
    tc_err rc =
        tc_pki_verifier_verify(t->v, device, device_len, at, info, &refusal, why, sizeof why);
    return verdict(rc, refusal, why, reason, reason_size);
}

tc_err tc_ota_trust_verify_x509(const struct tc_ota_trust *t, struct x509_st *device, int64_t at,
                                struct tc_pki_device_info *info, char *reason, size_t reason_size)
{
    char why[TC_OTA_REASON_MAX];
    enum tc_pki_refusal refusal = TC_PKI_REFUSED_NONE;
    TC_ENSURE(t != NULL && device != NULL && reason != NULL && reason_size > 0, TC_ERR_ARG);
    reason[0] = '\0';
    tc_err rc = tc_pki_verifier_verify_x509(t->v, device, at, info, &refusal, why, sizeof why);
    return verdict(rc, refusal, why, reason, reason_size);
}

/* ------------------------------------------------------------------ load */

static tc_err read_der(const char *path, size_t max, struct tc_buf *der)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_buf raw;
    tc_buf_init_heap(&raw, max * 2 + 4096);
    FILE *f = fopen(path, "rb");
    TC_CHECK_MSG(f != NULL, TC_ERR_IO, "cannot open %s", path);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        tc_buf_put(&raw, chunk, n);
    TC_CHECK_MSG(!ferror(f), TC_ERR_IO, "cannot read %s", path);
    TC_TRY(tc_buf_status(&raw));
    tc_buf_init_heap(der, max);
    TC_TRY(tc_pki_der_from_pem(raw.data, raw.len, der));
    ret = TC_OK;
out:
    if (f != NULL)
        (void)fclose(f);
    tc_buf_free(&raw);
    return ret;
}

static bool path_of(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    return n > 0 && (size_t)n < size;
}

tc_err tc_ota_trust_load(const char *ws, struct tc_ota_trust **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    char path[1024], dirp[1024];
    struct tc_buf a = {0}, b = {0};
    struct tc_ota_trust *t = NULL;
    DIR *d = NULL;
    TC_ENSURE(ws != NULL && out != NULL, TC_ERR_ARG);
    *out = NULL;
    TC_CHECK(path_of(path, sizeof path, ws, "pki/root.pem"), TC_ERR_RANGE);
    TC_TRY(read_der(path, TC_PKI_CERT_MAX, &a));
    TC_CHECK(path_of(path, sizeof path, ws, "pki/root-crl.pem"), TC_ERR_RANGE);
    TC_TRY(read_der(path, TC_PKI_CRL_MAX, &b));
    TC_TRY(tc_ota_trust_new(a.data, a.len, b.data, b.len, &t));
    tc_buf_free(&a);
    tc_buf_free(&b);
    TC_CHECK(path_of(dirp, sizeof dirp, ws, "pki/batches"), TC_ERR_RANGE);
    d = opendir(dirp);
    if (d != NULL) {
        const struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            struct stat st;
            char sub[512];
            TC_CHECK(path_of(sub, sizeof sub, e->d_name, "ca.pem") &&
                         path_of(path, sizeof path, dirp, sub),
                     TC_ERR_RANGE);
            if (stat(path, &st) != 0)
                continue; /* a batch whose CA was never written */
            TC_TRY(read_der(path, TC_PKI_CERT_MAX, &a));
            TC_CHECK(path_of(sub, sizeof sub, e->d_name, "crl.pem") &&
                         path_of(path, sizeof path, dirp, sub),
                     TC_ERR_RANGE);
            TC_TRY(read_der(path, TC_PKI_CRL_MAX, &b));
            TC_TRY(tc_ota_trust_add_batch(t, a.data, a.len, b.data, b.len));
            tc_buf_free(&a);
            tc_buf_free(&b);
        }
    }
    *out = t;
    t = NULL;
    ret = TC_OK;
out:
    if (d != NULL)
        (void)closedir(d);
    tc_buf_free(&a);
    tc_buf_free(&b);
    tc_ota_trust_free(t);
    return ret;
}
