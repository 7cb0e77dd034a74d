/*
 * scp03 internals: the session core both ends share (MAC chaining, the
 * C-DEC / R-ENC counter, the class byte rules) and small helpers.
 */
#ifndef TC_SCP03_INTERNAL_H
#define TC_SCP03_INTERNAL_H

#include <trustchain/scp03.h>

/* Amendment D §6.2.1: session keys from a plain static keyset (card side and
 * the in-memory provider). */
TC_MUST_CHECK tc_err tc_scp03_derive_session_keys(const struct tc_scp03_keyset *ks,
                                                  const uint8_t *context, size_t context_len,
                                                  struct tc_scp03_session_keys *out);

/* Amendment D §6.2.2.2/§6.2.2.3: card (constant 00) and host (01)
 * cryptograms from S-MAC over host challenge || card challenge, s_len bytes. */
TC_MUST_CHECK tc_err tc_scp03_cryptograms(struct tc_scp03_session *s);

/* Amendment D §6.2.4: the class byte as it enters the C-MAC (logical channel
 * number zero, chaining cleared, GlobalPlatform SM indicated) and as it is
 * sent (the caller's CLA with the SM indication). */
TC_MUST_CHECK tc_err tc_scp03_cla_for_mac(uint8_t cla, uint8_t *mac_cla);
TC_MUST_CHECK tc_err tc_scp03_cla_secure(uint8_t cla, uint8_t *sm_cla);
/* The caller's CLA with the SM indication removed. */
uint8_t tc_scp03_cla_plain(uint8_t cla);

/*
 * C-MAC over chaining value || mac_cla || INS P1 P2 || Lc' || data', where
 * Lc' = data_len + s_len is one byte (short) or 00 Lc1 Lc2 (extended).
 * Writes the full 16-byte MAC; does not touch the chaining value.
 */
TC_MUST_CHECK tc_err tc_scp03_cmac(const struct tc_scp03_session *s, uint8_t mac_cla, uint8_t ins,
                                   uint8_t p1, uint8_t p2, bool extended, const uint8_t *data,
                                   size_t data_len, uint8_t mac[TC_AES_BLOCK]);
/* R-MAC over chaining value || data' || SW1 SW2 with S-RMAC (full 16 bytes). */
TC_MUST_CHECK tc_err tc_scp03_rmac(const struct tc_scp03_session *s, const uint8_t *data,
                                   size_t len, uint16_t sw, uint8_t mac[TC_AES_BLOCK]);
/* Amendment D §6.2.6/§6.2.7: ICV = AES(S-ENC, counter as 16 bytes), with the
 * first byte set to 80 for responses. Both ICVs of a counter value come
 * from one AES call and are kept in the session until the counter moves. */
TC_MUST_CHECK tc_err tc_scp03_icv(struct tc_scp03_session *s, bool response,
                                  uint8_t icv[TC_AES_BLOCK]);
/* Pad (method 2, always) and encrypt in place: buf holds len plain bytes and
 * has room for cap; *out_len is the ciphertext length. */
TC_MUST_CHECK tc_err tc_scp03_encrypt(struct tc_scp03_session *s, bool response, uint8_t *buf,
                                      size_t len, size_t cap, size_t *out_len);
/* Decrypt (len a non-zero multiple of 16) from in to out and strip the
 * padding strictly; *out_len is the plain length. */
TC_MUST_CHECK tc_err tc_scp03_decrypt(struct tc_scp03_session *s, bool response, const uint8_t *in,
                                      size_t len, uint8_t *out, size_t *out_len);

/* Amendment D §6.2.5: only 9000 and warnings 62xx / 63xx are protected. */
bool tc_scp03_sw_protected(uint16_t sw);

/* Lc' encoding needs the extended form. */
bool tc_scp03_need_extended(size_t lc, bool has_le, uint32_t le);

#endif
