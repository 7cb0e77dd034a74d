/*
 * station internals: the shared station object, the record layer (every
 * registry call of the module lives in record.c) and the card APDU helpers.
 */
#ifndef TC_STATION_INTERNAL_H
#define TC_STATION_INTERNAL_H

#include <pthread.h>

#include <trustchain/audit.h>
#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/station.h>

#define ST_ISSUERS_MAX TC_STATION_MAX_JOBS

struct tc_station {
    struct tc_station_config cfg;
    char batch_id[TC_AUDIT_ID_MAX + 1];
    char station_id[TC_AUDIT_ID_MAX + 1];
    char actor[TC_AUDIT_ID_MAX + 1];
    char hsm_error[TC_STATION_DETAIL_MAX];
    char eid_prefix[TC_PKI_EID_DIGITS + 1];
    uint8_t isd_aid[16];
    size_t isd_aid_len;
    uint8_t transport_kvn, device_kvn;
    size_t key_len;
    /* HSM objects (shared; PKCS#11 handles are valid in every session). */
    bool hsm_ok;
    tc_hsm_obj master;
    struct tc_hsm_keyset transport;
    uint8_t *ca;
    size_t ca_len;
    /* Issuers are single-threaded: a pool, one per concurrent device. */
    pthread_mutex_t lock;
    struct tc_pki_issuer *issuers[ST_ISSUERS_MAX];
    size_t n_issuers;
};

/* record.c: the device's line fields and one event appended durably. */
struct st_dev_id {
    uint8_t eid[TC_PKI_EID_BCD_LEN];
    char eid_text[TC_PKI_EID_DIGITS + 1];
};
void st_event_init(const struct tc_station *st, const struct st_dev_id *id,
                   enum tc_audit_event_type type, struct tc_audit_event *ev);
TC_MUST_CHECK tc_err st_record(struct tc_station *st, struct tc_audit_event *ev,
                               struct tc_station_result *res);
/* Several events in one durable append (one transaction, log order kept);
 * cert (DER, may be NULL) goes to the registry's side table in the same
 * transaction, named by the certificate-issued event among evs. */
TC_MUST_CHECK tc_err st_record_n(struct tc_station *st, const struct tc_audit_event *evs, size_t n,
                                 const uint8_t *cert, size_t cert_len,
                                 struct tc_station_result *res);
/* The device as the registry knows it: *found false for an unknown EID. */
TC_MUST_CHECK tc_err st_prior(struct tc_station *st, const struct st_dev_id *id,
                              struct tc_registry_device *d, bool *found);

#endif
