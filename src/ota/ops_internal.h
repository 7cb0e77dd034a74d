/*
 * Shared by the OTA operations engine files (src/ota/ops*.c, op_*.c).
 */
#ifndef TC_OTA_OPS_INTERNAL_H
#define TC_OTA_OPS_INTERNAL_H

#include <trustchain/ota_ops.h>

uint64_t ota_now_ms(void);
TC_MUST_CHECK tc_err ota_sha256(const uint8_t *p, size_t n, uint8_t out[TC_AUDIT_HASH_LEN]);
/* <workspace>/ota/blobs/<sha256 hex>, rehashed: TC_ERR_VERIFY on mismatch. */
TC_MUST_CHECK tc_err tc_ota_blob_get(const char *ws, const uint8_t sha[TC_AUDIT_HASH_LEN],
                                     uint8_t *out, size_t out_size, size_t *out_len);

/* GP Card Specification 2.3 §11.1.1, Table 11-3: card life cycle coding. */
#define OTA_LC_SECURED     0x0Fu
#define OTA_LC_CARD_LOCKED 0x7Fu
#define OTA_LC_TERMINATED  0xFFu

#endif
