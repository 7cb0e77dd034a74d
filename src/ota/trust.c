/*
 * The server's trust store: the fleet root and its CRL, each batch CA with
 * its CRL, all DER. Verification is the pki module's tc_pki_verify (RFC 5280
 * path validation with CRLs for every certificate, then the profile), with
 * the batch chosen by the device certificate's batch ID.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <trustchain/ota.h>

struct ota_batch {
    char id[TC_PKI_ID_MAX + 1];
    struct tc_buf ca, crl;
};

struct tc_ota_trust {
    struct tc_buf root, root_crl;
    struct ota_batch *batches;
    size_t nbatches;
};

static tc_err copy_into(struct tc_buf *b, const uint8_t *p, size_t n, size_t max)
{
    TC_ENSURE(p != NULL && n > 0, TC_ERR_ARG);
    tc_buf_init_heap(b, max);
    tc_buf_put(b, p, n);
    return tc_buf_status(b);
}

tc_err tc_ota_trust_new(const uint8_t *root, size_t root_len, const uint8_t *root_crl,
                        size_t root_crl_len, struct tc_ota_trust **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    *out = NULL;
    struct tc_ota_trust *t = calloc(1, sizeof *t);
    TC_ENSURE(t != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_pki_check_root(root, root_len));
    TC_TRY(copy_into(&t->root, root, root_len, TC_PKI_CERT_MAX));
    TC_TRY(copy_into(&t->root_crl, root_crl, root_crl_len, TC_PKI_CRL_MAX));
    t->batches = calloc(TC_OTA_BATCHES_MAX, sizeof *t->batches);
    TC_CHECK(t->batches != NULL, TC_ERR_NOMEM);
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
    struct tc_pki_batch_info info;
    TC_ENSURE(t != NULL, TC_ERR_ARG);
    TC_GUARD(tc_pki_check_batch(ca, ca_len, &info));
    for (size_t i = 0; i < t->nbatches; i++)
        TC_ENSURE_MSG(strcmp(t->batches[i].id, info.batch_id) != 0, TC_ERR_STATE,
                      "batch %s is already trusted", info.batch_id);
    TC_ENSURE_MSG(t->nbatches < TC_OTA_BATCHES_MAX, TC_ERR_NOMEM, "more than %u batches",
                  TC_OTA_BATCHES_MAX);
    struct ota_batch *b = &t->batches[t->nbatches];
    memcpy(b->id, info.batch_id, sizeof b->id);
    tc_err rc = copy_into(&b->ca, ca, ca_len, TC_PKI_CERT_MAX);
    if (rc == TC_OK)
        rc = copy_into(&b->crl, crl, crl_len, TC_PKI_CRL_MAX);
    if (rc != TC_OK) {
        tc_buf_free(&b->ca);
        tc_buf_free(&b->crl);
        memset(b, 0, sizeof *b);
        return rc;
    }
    t->nbatches++;
    return TC_OK;
}

void tc_ota_trust_free(struct tc_ota_trust *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbatches; i++) {
        tc_buf_free(&t->batches[i].ca);
        tc_buf_free(&t->batches[i].crl);
    }
    free(t->batches);
    tc_buf_free(&t->root);
    tc_buf_free(&t->root_crl);
    free(t);
}

tc_err tc_ota_trust_verify(const struct tc_ota_trust *t, const uint8_t *device, size_t device_len,
                           int64_t at, struct tc_pki_device_info *info, char *reason,
                           size_t reason_size)
{
    struct tc_pki_device_info di;
    TC_ENSURE(t != NULL && device != NULL && reason != NULL && reason_size > 0, TC_ERR_ARG);
    reason[0] = '\0';
    tc_err rc = tc_pki_check_device(device, device_len, &di);
    if (rc != TC_OK) {
        char msg[TC_OTA_REASON_MAX];
        tc_error_format(msg, sizeof msg);
        (void)snprintf(reason, reason_size, "not a device certificate: %s", msg);
        return TC_FAIL(TC_ERR_VERIFY, "%s", reason);
    }
    const struct ota_batch *b = NULL;
    for (size_t i = 0; i < t->nbatches && b == NULL; i++)
        if (strcmp(t->batches[i].id, di.batch_id) == 0)
            b = &t->batches[i];
    if (b == NULL) {
        (void)snprintf(reason, reason_size, "unknown batch %s", di.batch_id);
        return TC_FAIL(TC_ERR_VERIFY, "%s", reason);
    }
    struct tc_pki_chain c = {.root = t->root.data,
                             .root_len = t->root.len,
                             .batch = b->ca.data,
                             .batch_len = b->ca.len,
                             .device = device,
                             .device_len = device_len,
                             .root_crl = t->root_crl.data,
                             .root_crl_len = t->root_crl.len,
                             .batch_crl = b->crl.data,
                             .batch_crl_len = b->crl.len,
                             .at = at};
    TC_GUARD(tc_pki_verify(&c, reason, reason_size));
    if (info != NULL)
        *info = di;
    return TC_OK;
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
