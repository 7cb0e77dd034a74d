/*
 * Per-device SCP03 keys for an OTA session, derived in the HSM from the
 * master and the EID each time a device connects (docs/hsm.md
 * diversification); only session objects exist, destroyed with the session.
 */
#include <string.h>

#include <trustchain/ota.h>

tc_err tc_ota_device_keys(struct tc_hsm *h, tc_hsm_obj master, const char *eid, uint8_t kvn,
                          size_t key_len, struct tc_hsm_scp03_provider *m, struct tc_hsm_keyset *ks)
{
    uint8_t bcd[TC_PKI_EID_BCD_LEN];
    TC_ENSURE(h != NULL && eid != NULL && m != NULL && ks != NULL, TC_ERR_ARG);
    memset(ks, 0, sizeof *ks);
    TC_GUARD(tc_pki_eid_to_bcd(eid, bcd));
    TC_GUARD(tc_hsm_diversify(h, master, bcd, key_len, ks));
    tc_err rc = tc_hsm_scp03_provider_add(m, kvn, ks);
    if (rc != TC_OK)
        tc_hsm_keyset_destroy(h, ks);
    return rc;
}
