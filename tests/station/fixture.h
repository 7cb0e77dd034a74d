/*
 * A line in a temporary directory for the station tests: a SoftHSM2 token
 * with the master key, the batch's transport keyset and the batch CA key;
 * a software root CA; the batch CA certificate; a registry; emulated cards.
 */
#ifndef TC_TESTS_STATION_FIXTURE_H
#define TC_TESTS_STATION_FIXTURE_H

#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/se.h>
#include <trustchain/station.h>

#define FX_BATCH  "B-TEST-1"
#define FX_PREFIX "89049032"
#define FX_MASTER "line"
#define FX_PIN    "fixture-user-pin"

struct fx {
    char dir[200];
    char ws[260];
    char cards[260];
    char reg_path[260];
    struct tc_hsm_workspace hw;
    struct tc_hsm *hsm;
    struct tc_signer batch_signer;
    bool have_signer;
    struct tc_signer root_signer;
    uint8_t root[TC_PKI_CERT_MAX], ca[TC_PKI_CERT_MAX];
    size_t root_len, ca_len;
    uint8_t tk[3][32];
    size_t tk_len;
    struct tc_registry *reg;
    struct tc_station *st;
    struct tc_station_config cfg;
};

/* Everything up to the batch CA; the HSM stays open. false on failure
 * (already reported). */
bool fx_setup(struct fx *f);
/* Open (or reopen) the HSM with a PIN; NULL pin = FX_PIN. */
tc_err fx_hsm_open(struct fx *f, const char *pin);
void fx_hsm_close(struct fx *f);
/* Registry at f->reg_path and a station over it with these hooks. */
bool fx_station(struct fx *f, const struct tc_station_hooks *hooks);
void fx_station_close(struct fx *f);
void fx_free(struct fx *f);
/* Card parameters as the vendor ships card `index` of the batch (the
 * transport keys, or random other keys when wrong_keys). */
bool fx_card_params(const struct fx *f, size_t index, bool wrong_keys, struct tc_se_params *p);
/* Events of one type for a device in the registry. */
size_t fx_count(struct fx *f, const char *eid, enum tc_audit_event_type type);
/* CERT_ISSUED serials not matched by a CERT_REVOKED of the same serial. */
size_t fx_unrevoked(struct fx *f, const char *eid);

#endif
