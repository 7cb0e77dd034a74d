#define _GNU_SOURCE
#include "fixture.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"

#define SO_PIN "fixture-so-pin"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

tc_err fx_hsm_open(struct fx *f, const char *pin)
{
    const char *p = pin != NULL ? pin : FX_PIN;
    struct tc_hsm_config c = {.module_path = f->hw.module_path,
                              .softhsm_conf = f->hw.softhsm_conf,
                              .token_label = f->hw.token_label,
                              .pin = p,
                              .pin_len = strlen(p),
                              .pool_size = 8};
    TC_GUARD(tc_hsm_open(&c, &f->hsm));
    char label[TC_HSM_LABEL_MAX + 1];
    (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_BATCH_CA, FX_BATCH);
    tc_err rc = tc_hsm_signer(f->hsm, label, &f->batch_signer);
    f->have_signer = rc == TC_OK;
    return rc;
}

void fx_hsm_close(struct fx *f)
{
    if (f->have_signer)
        tc_hsm_signer_free(&f->batch_signer);
    f->have_signer = false;
    tc_hsm_close(f->hsm);
    f->hsm = NULL;
}

bool fx_setup(struct fx *f)
{
    memset(f, 0, sizeof *f);
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    (void)snprintf(f->dir, sizeof f->dir, "%s/tc-station-XXXXXX", base);
    if (mkdtemp(f->dir) == NULL) {
        f->dir[0] = '\0';
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp failed");
        return false;
    }
    (void)snprintf(f->ws, sizeof f->ws, "%s/ws", f->dir);
    (void)snprintf(f->cards, sizeof f->cards, "%s/cards", f->dir);
    (void)snprintf(f->reg_path, sizeof f->reg_path, "%s/registry.db", f->dir);
    bool ok = false;
    struct tc_buf der;
    tc_buf_init_heap(&der, TC_PKI_CERT_MAX);
    struct tc_pki_issuer *root = NULL;
    tc_err rc = tc_hsm_workspace_create(f->ws, NULL, "station-test", &f->hw);
    if (rc == TC_OK)
        rc = tc_hsm_init_token(f->hw.module_path, f->hw.softhsm_conf, "station-test", SO_PIN,
                               strlen(SO_PIN), FX_PIN, strlen(FX_PIN));
    struct tc_hsm_config c = {.module_path = f->hw.module_path,
                              .softhsm_conf = f->hw.softhsm_conf,
                              .token_label = "station-test",
                              .pin = FX_PIN,
                              .pin_len = strlen(FX_PIN),
                              .pool_size = 8};
    if (rc == TC_OK)
        rc = tc_hsm_open(&c, &f->hsm);
    tc_hsm_obj obj, pub;
    if (rc == TC_OK)
        rc = tc_hsm_master_generate(f->hsm, FX_MASTER, 16, &obj);
    f->tk_len = 16;
    for (size_t i = 0; rc == TC_OK && i < 3; i++)
        rc = tc_random(f->tk[i], f->tk_len);
    struct tc_hsm_keyset ks;
    if (rc == TC_OK)
        rc = tc_hsm_transport_import(f->hsm, FX_BATCH, TC_STATION_TRANSPORT_KVN, f->tk[0], f->tk[1],
                                     f->tk[2], f->tk_len, &ks);
    char label[TC_HSM_LABEL_MAX + 1];
    (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_BATCH_CA, FX_BATCH);
    if (rc == TC_OK)
        rc = tc_hsm_keypair_generate(f->hsm, TC_SIG_ECDSA_P256_SHA256, label, &obj, &pub);
    if (rc == TC_OK) {
        rc = tc_hsm_signer(f->hsm, label, &f->batch_signer);
        f->have_signer = rc == TC_OK;
    }
    if (rc == TC_OK)
        rc = tc_signer_soft_generate(TC_SIG_ECDSA_P256_SHA256, &f->root_signer);
    int64_t now = (int64_t)time(NULL);
    struct tc_pki_root_params rp = {.common_name = "Station Test Root",
                                    .organization = "Station Test",
                                    .not_before = now - 3600,
                                    .not_after = now + 86400 * 365};
    if (rc == TC_OK)
        rc = tc_pki_root_create(&f->root_signer, &rp, &der);
    if (rc == TC_OK && der.len <= sizeof f->root) {
        memcpy(f->root, der.data, der.len);
        f->root_len = der.len;
        rc = tc_pki_issuer_new(&f->root_signer, f->root, f->root_len, &root);
    }
    uint8_t spki[TC_SPKI_MAX];
    size_t sl = 0;
    if (rc == TC_OK)
        rc = f->batch_signer.public_key(f->batch_signer.ctx, spki, sizeof spki, &sl);
    struct tc_pki_batch_params bp = {.batch_id = FX_BATCH,
                                     .eid_prefix = FX_PREFIX,
                                     .manufacturer = "Station Test",
                                     .not_before = now - 3600,
                                     .not_after = now + 86400 * 365};
    tc_buf_reset(&der);
    if (rc == TC_OK)
        rc = tc_pki_batch_ca_create(root, spki, sl, &bp, &der);
    if (rc == TC_OK && der.len <= sizeof f->ca) {
        memcpy(f->ca, der.data, der.len);
        f->ca_len = der.len;
        ok = true;
    }
    if (!ok) {
        char msg[400];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(__FILE__, __LINE__, "fixture setup: %s", msg);
    }
    tc_pki_issuer_free(root);
    tc_buf_free(&der);
    return ok;
}

bool fx_station(struct fx *f, const struct tc_station_hooks *hooks)
{
    tc_err rc = TC_OK;
    if (f->reg == NULL)
        rc = tc_registry_open(f->reg_path, NULL, &f->reg);
    struct tc_station_config c = {.batch_id = FX_BATCH,
                                  .station_id = "ST-01",
                                  .actor = "test",
                                  .hsm = f->hsm,
                                  .hsm_error =
                                      f->hsm == NULL ? "wrong PIN (CKR_PIN_INCORRECT)" : NULL,
                                  .master_name = FX_MASTER,
                                  .batch_signer = f->have_signer ? &f->batch_signer : NULL,
                                  .batch_ca = f->ca,
                                  .batch_ca_len = f->ca_len,
                                  .registry = f->reg};
    if (hooks != NULL)
        c.hooks = *hooks;
    f->cfg = c;
    if (rc == TC_OK)
        rc = tc_station_new(&c, &f->st);
    if (rc != TC_OK) {
        char msg[400];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(__FILE__, __LINE__, "station: %s", msg);
        return false;
    }
    return true;
}

void fx_station_close(struct fx *f)
{
    tc_station_free(f->st);
    f->st = NULL;
    tc_registry_close(f->reg);
    f->reg = NULL;
}

void fx_free(struct fx *f)
{
    fx_station_close(f);
    fx_hsm_close(f);
    tc_signer_soft_free(&f->root_signer);
    tc_memzero(f->tk, sizeof f->tk);
    if (f->dir[0] != '\0' && getenv("TC_KEEP") == NULL)
        (void)nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool fx_card_params(const struct fx *f, size_t index, bool wrong_keys, struct tc_se_params *p)
{
    tc_se_params_default(p);
    char eid[33];
    if (tc_station_emulated_eid(FX_PREFIX, index, eid) != TC_OK ||
        tc_pki_eid_to_bcd(eid, p->eid) != TC_OK)
        return false;
    memcpy(p->kdd, p->eid + 6, TC_SE_KDD_LEN);
    p->kvn = TC_STATION_TRANSPORT_KVN;
    p->key_len = f->tk_len;
    memcpy(p->key_enc, f->tk[0], f->tk_len);
    memcpy(p->key_mac, f->tk[1], f->tk_len);
    memcpy(p->key_dek, f->tk[2], f->tk_len);
    if (wrong_keys)
        return tc_random(p->key_enc, f->tk_len) == TC_OK;
    return true;
}

struct count_arg {
    enum tc_audit_event_type type;
    size_t n;
    uint8_t issued[16][20];
    size_t issued_len[16];
    size_t ni;
    uint8_t revoked[16][20];
    size_t revoked_len[16];
    size_t nr;
};

static tc_err count_fn(void *arg, uint64_t index, const struct tc_audit_event *ev,
                       const uint8_t *event, size_t len)
{
    (void)index;
    (void)event;
    (void)len;
    struct count_arg *a = arg;
    if (ev->type == a->type)
        a->n++;
    if (ev->type == TC_AUDIT_CERT_ISSUED && a->ni < 16) {
        memcpy(a->issued[a->ni], ev->cert_serial, ev->cert_serial_len);
        a->issued_len[a->ni++] = ev->cert_serial_len;
    }
    if (ev->type == TC_AUDIT_CERT_REVOKED && a->nr < 16) {
        memcpy(a->revoked[a->nr], ev->cert_serial, ev->cert_serial_len);
        a->revoked_len[a->nr++] = ev->cert_serial_len;
    }
    return TC_OK;
}

static bool history(struct fx *f, const char *eid, struct count_arg *a)
{
    uint8_t bcd[16];
    if (tc_pki_eid_to_bcd(eid, bcd) != TC_OK)
        return false;
    tc_err rc = tc_registry_device_history(f->reg, bcd, sizeof bcd, count_fn, a);
    return rc == TC_OK || rc == TC_ERR_NOT_FOUND;
}

size_t fx_count(struct fx *f, const char *eid, enum tc_audit_event_type type)
{
    struct count_arg a = {.type = type};
    return history(f, eid, &a) ? a.n : (size_t)-1;
}

size_t fx_unrevoked(struct fx *f, const char *eid)
{
    struct count_arg a = {.type = TC_AUDIT_CERT_ISSUED};
    if (!history(f, eid, &a))
        return (size_t)-1;
    size_t open = 0;
    for (size_t i = 0; i < a.ni; i++) {
        bool rev = false;
        for (size_t j = 0; j < a.nr; j++)
            rev = rev || (a.revoked_len[j] == a.issued_len[i] &&
                          memcmp(a.revoked[j], a.issued[i], a.issued_len[i]) == 0);
        open += rev ? 0u : 1u;
    }
    return open;
}
