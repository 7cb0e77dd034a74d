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

/* The script of n APDUs laid out one after the other in cmds (lens[i]
 * bytes each; n <= 3). */
TC_MUST_CHECK tc_err ota_script_of(const struct tc_buf *cmds, const size_t *lens, size_t n,
                                   struct tc_buf *script);
/* SELECT aid + INITIALIZE UPDATE of host h as one script (GP CS 2.3
 * §11.9, Amendment D §7.1). */
TC_MUST_CHECK tc_err ota_select_iu_script(struct tc_scp03_host *h, const uint8_t *aid,
                                          size_t aid_len, struct tc_buf *script);

/* store-data's file: BER-TLV objects with one- or two-byte tags, each
 * whole in one STORE DATA block, no tag twice (TC_ERR_ARG / TC_ERR_FORMAT). */
TC_MUST_CHECK tc_err ota_store_data_check(const uint8_t *data, size_t len);

/* GP Card Specification 2.3 §11.1.1, Table 11-3: card life cycle coding. */
#define OTA_LC_SECURED     0x0Fu
#define OTA_LC_CARD_LOCKED 0x7Fu
#define OTA_LC_TERMINATED  0xFFu

#endif
