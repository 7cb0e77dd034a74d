/*
 * libFuzzer target for the pki parsers and profile checker. The first byte
 * picks one:
 *   0: a certificate through tc_pki_kind_of and the root, batch and device
 *      profile checks; a device certificate that passes must carry an EID
 *      with valid check digits in its BCD form too
 *   1: the HardwareModuleName subjectAltName value
 *   2: the manufacturing info extension value (re-encodes identically)
 *   3: the batch info extension value
 *   4: PEM or DER input to tc_pki_der_from_pem
 *   5: 16 bytes as a BCD EID
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/pki.h>

#include "pki/pki_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: {
        enum tc_pki_kind kind;
        struct tc_pki_batch_info bi;
        struct tc_pki_device_info di;
        if (n == 0 || tc_pki_kind_of(in, n, &kind) != TC_OK)
            break;
        (void)tc_pki_check_root(in, n);
        (void)tc_pki_check_batch(in, n, &bi);
        if (tc_pki_check_device(in, n, &di) == TC_OK) {
            uint8_t bcd[TC_PKI_EID_BCD_LEN];
            if (tc_pki_eid_check(di.eid) != TC_OK || tc_pki_eid_to_bcd(di.eid, bcd) != TC_OK ||
                di.serial_len == 0 || di.serial_len > TC_PKI_SERIAL_MAX)
                abort();
        }
        break;
    }
    case 1: {
        uint8_t bcd[TC_PKI_EID_BCD_LEN], again[128];
        if (tc_pki_parse_hmn(in, n, bcd) == TC_OK) {
            /* What parses re-encodes to the same bytes. */
            struct tc_buf b;
            tc_buf_init_fixed(&b, again, sizeof again);
            if (tc_pki_ext_hmn(bcd, &b) != TC_OK || b.len != n || memcmp(b.data, in, n) != 0)
                abort();
        }
        break;
    }
    case 2: {
        char bid[TC_PKI_ID_MAX + 1], sid[TC_PKI_ID_MAX + 1];
        int64_t t;
        if (tc_pki_parse_mfg(in, n, bid, sid, &t) == TC_OK) {
            uint8_t again[256];
            struct tc_buf b;
            tc_buf_init_fixed(&b, again, sizeof again);
            /* Times before 1970 parse but are never issued. */
            if (tc_pki_ext_mfg(bid, sid, t, &b) == TC_OK &&
                (b.len != n || memcmp(b.data, in, n) != 0))
                abort();
        }
        break;
    }
    case 3: {
        char bid[TC_PKI_ID_MAX + 1], pfx[TC_PKI_EID_DIGITS + 1];
        (void)tc_pki_parse_batch(in, n, bid, pfx);
        break;
    }
    case 4: {
        struct tc_buf b;
        tc_buf_init_heap(&b, 1u << 20);
        (void)tc_pki_der_from_pem(in, n, &b);
        tc_buf_free(&b);
        break;
    }
    case 5: {
        char eid[33];
        if (n == TC_PKI_EID_BCD_LEN && tc_pki_eid_from_bcd(in, eid) == TC_OK &&
            tc_pki_eid_check(eid) != TC_OK)
            abort();
        break;
    }
    default:
        break;
    }
    tc_error_clear();
    return 0;
}
