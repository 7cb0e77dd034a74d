/*
 * What is safe to print about a card: identifiers, life cycle, keyset
 * versions with their key check values, counters, and the identity applet's
 * public key and certificate. Never a key.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "se_internal.h"

const char *tc_se_life_cycle_name(uint8_t lc)
{
    switch (lc) {
    case TC_SE_LC_OP_READY:
        return "OP_READY";
    case TC_SE_LC_INITIALIZED:
        return "INITIALIZED";
    case TC_SE_LC_SECURED:
        return "SECURED";
    case TC_SE_LC_CARD_LOCKED:
        return "CARD_LOCKED";
    case TC_SE_LC_TERMINATED:
        return "TERMINATED";
    default:
        return "UNKNOWN";
    }
}

static tc_err describe_nvm(const struct se_nvm *n, uint64_t generation, struct tc_se_info *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->eid, n->eid, TC_SE_EID_LEN);
    memcpy(out->isd_aid, n->isd_aid, n->isd_aid_len);
    out->isd_aid_len = n->isd_aid_len;
    out->life_cycle = n->life_cycle;
    out->i_param = n->i_param;
    memcpy(out->kdd, n->kdd, TC_SE_KDD_LEN);
    out->seq = n->seq;
    memcpy(out->iin, n->iin, n->iin_len);
    out->iin_len = n->iin_len;
    memcpy(out->cin, n->cin, n->cin_len);
    out->cin_len = n->cin_len;
    for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++) {
        const struct se_keyset *k = &n->keysets[i];
        if (k->kvn == 0)
            continue;
        struct tc_se_keyset_info *ki = &out->keysets[out->nkeysets++];
        ki->kvn = k->kvn;
        ki->key_type = SE_KEY_TYPE_AES;
        ki->key_len = k->key_len;
        TC_GUARD(tc_kcv_aes(k->enc, k->key_len, ki->kcv[0]));
        TC_GUARD(tc_kcv_aes(k->mac, k->key_len, ki->kcv[1]));
        TC_GUARD(tc_kcv_aes(k->dek, k->key_len, ki->kcv[2]));
    }
    out->profile_len = n->profile_len;
    const struct se_applet *a = &n->app;
    out->applet_present = a->present != 0;
    memcpy(out->applet_aid, a->aid, a->aid_len);
    out->applet_aid_len = a->aid_len;
    out->applet_state = a->state;
    out->has_key = a->has_key != 0;
    if (a->has_key)
        memcpy(out->public_key, a->pub, TC_SE_EC_PUB_LEN);
    out->has_pending = a->has_pending != 0;
    if (a->has_pending)
        memcpy(out->pending_public_key, a->pending_pub, TC_SE_EC_PUB_LEN);
    out->has_cert = a->cert_len > 0;
    out->cert_len = a->cert_len;
    if (a->cert_len > 0) {
        const uint8_t *parts[] = {a->cert};
        size_t lens[] = {a->cert_len};
        TC_GUARD(se_sha256(parts, lens, 1, out->cert_sha256));
        const uint8_t *serial, *pub;
        size_t serial_len, pub_len;
        if (se_cert_fields(a->cert, a->cert_len, &serial, &serial_len, &pub, &pub_len) == TC_OK) {
            /* DER INTEGER: drop the leading 00 that keeps it positive. */
            if (serial_len > 1 && serial[0] == 0x00) {
                serial++;
                serial_len--;
            }
            if (serial_len <= sizeof out->cert_serial) {
                memcpy(out->cert_serial, serial, serial_len);
                out->cert_serial_len = serial_len;
            }
        }
        tc_error_clear();
    }
    out->nvm_generation = generation;
    return TC_OK;
}

tc_err tc_se_card_describe(const struct tc_se_card *card, struct tc_se_info *out)
{
    TC_ENSURE(card != NULL && out != NULL, TC_ERR_ARG);
    return describe_nvm(&card->nvm, card->generation, out);
}

tc_err tc_se_describe(const char *path, struct tc_se_info *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    static _Thread_local struct se_nvm n;
    uint8_t slot = 0;
    uint64_t gen = 0;
    TC_CHECK(path != NULL && out != NULL, TC_ERR_ARG);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    TC_CHECK_MSG(fd >= 0, TC_ERR_IO, "cannot open card image %s", path);
    ret = se_image_read(fd, &n, &slot, &gen);
    (void)close(fd);
    if (ret != TC_OK)
        goto out;
    ret = describe_nvm(&n, gen, out);
out:
    tc_memzero(&n, sizeof n);
    return ret;
}
