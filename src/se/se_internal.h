/*
 * The secure element emulator's internals: the NVM image layout, the RAM
 * context, the status words and the pieces the card OS, the ISD and the
 * identity applet share. Nothing here allocates.
 */
#ifndef TC_SE_INTERNAL_H
#define TC_SE_INTERNAL_H

#include <trustchain/codec.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>

/* ------------------------------------------------------------------ status words */

#define SW_OK                0x9000u
#define SW_MORE_DATA         0x6310u /* GP 2.3 §11.4.3: more data available */
#define SW_EOF_BEFORE_LE     0x6282u /* ISO 7816-4: end of data before Ne bytes */
#define SW_CARD_LOCKED       0x6283u /* GP 2.3 §11.9.3: selected, card CARD_LOCKED */
#define SW_MEMORY_FAILURE    0x6581u
#define SW_WRONG_LENGTH      0x6700u
#define SW_CHANNEL_NOT_SUPP  0x6881u /* ISO 7816-4: logical channel not supported */
#define SW_SM_NOT_SUPPORTED  0x6882u
#define SW_LAST_CMD_EXPECTED 0x6883u
#define SW_CHAINING_NOT_SUPP 0x6884u
#define SW_SECURITY          0x6982u
#define SW_AUTH_BLOCKED      0x6983u
#define SW_CONDITIONS        0x6985u
#define SW_WRONG_DATA        0x6A80u
#define SW_FUNC_NOT_SUPP     0x6A81u
#define SW_NOT_FOUND         0x6A82u
#define SW_NO_SPACE          0x6A84u
#define SW_WRONG_P1P2        0x6A86u
#define SW_OFFSET_OUTSIDE    0x6B00u
#define SW_REF_NOT_FOUND     0x6A88u
#define SW_INS_NOT_SUPPORTED 0x6D00u
#define SW_CLA_NOT_SUPPORTED 0x6E00u
#define SW_UNKNOWN           0x6F00u

/* ------------------------------------------------------------------ NVM layout */

#define SE_KEY_TYPE_AES 0x88u /* GP 2.3 Table 11-16 */

struct se_keyset {
    uint8_t kvn; /* 0 = empty slot (GP reserves KVN 00 for "first available") */
    uint8_t key_len;
    uint8_t enc[TC_SE_MAX_KEY];
    uint8_t mac[TC_SE_MAX_KEY];
    uint8_t dek[TC_SE_MAX_KEY];
};

/* The identity applet instance (and the ROM load file it comes from). */
struct se_applet {
    uint8_t present; /* instance installed */
    uint8_t state;   /* GP application life cycle */
    uint8_t aid_len;
    uint8_t aid[TC_SE_AID_MAX];
    uint8_t has_key;
    uint8_t priv[32]; /* P-256 private scalar, big-endian */
    uint8_t pub[TC_SE_EC_PUB_LEN];
    uint8_t pad_[1];
    uint16_t cert_len;
    uint8_t cert[TC_SE_MAX_CERT];
    /* The renewal key pair (GENERATE KEY P1 02): waits for a certificate
     * while the key pair above keeps signing. */
    uint8_t has_pending;
    uint8_t pending_priv[32];
    uint8_t pending_pub[TC_SE_EC_PUB_LEN];
};

struct se_nvm {
    uint8_t life_cycle;
    uint8_t i_param;
    uint8_t isd_aid_len;
    uint8_t isd_aid[TC_SE_AID_MAX];
    uint8_t eid[TC_SE_EID_LEN];
    uint8_t kdd[TC_SE_KDD_LEN];
    uint8_t iin_len;
    uint8_t iin[TC_SE_MAX_IIN];
    uint8_t cin_len;
    uint8_t cin[TC_SE_MAX_CIN];
    uint8_t cplc[TC_SE_CPLC_LEN];
    uint8_t pad_[2];
    uint32_t seq;
    uint32_t auth_failures; /* failed EXTERNAL AUTHENTICATE since the last success */
    struct se_keyset keysets[TC_SE_MAX_KEYSETS];
    uint16_t profile_len;
    uint8_t profile[TC_SE_MAX_PROFILE]; /* BER-TLV objects from STORE DATA */
    struct se_applet app;
};

/* After this many failed EXTERNAL AUTHENTICATE in a row the ISD refuses
 * INITIALIZE UPDATE with 6983 until the card is re-created. */
#define SE_AUTH_FAIL_LIMIT 255u

/* Image file: two slots (double buffering), each a header, the NVM and a
 * SHA-256 over both; the valid slot with the higher generation is current. */
#define SE_IMG_MAGIC   "TCSEIMG1"
#define SE_IMG_VERSION 2u   /* 2: the identity applet's renewal key pair */
#define SE_IMG_CHUNK   512u /* one write point per chunk written */

struct se_slot_header {
    uint8_t magic[8];
    uint32_t version;
    uint32_t nvm_size;
    uint64_t generation;
};

#define SE_SLOT_RAW   (sizeof(struct se_slot_header) + sizeof(struct se_nvm) + 32u)
#define SE_SLOT_SIZE  ((SE_SLOT_RAW + SE_IMG_CHUNK - 1u) / SE_IMG_CHUNK * SE_IMG_CHUNK)
#define SE_IMAGE_SIZE (2u * SE_SLOT_SIZE)

/* ------------------------------------------------------------------ RAM */

enum se_obj { SE_OBJ_NONE = 0, SE_OBJ_ISD = 1, SE_OBJ_APPLET = 2 };

struct se_channel {
    uint8_t open;
    uint8_t selected; /* enum se_obj */
    /* STORE DATA sequence (GP 2.3 §11.11): next block number expected. */
    uint8_t store_active;
    uint8_t store_next;
    uint8_t perso_target; /* INSTALL [for personalization]: enum se_obj */
    /* GET STATUS continuation (P2 b1 = next occurrence). */
    uint8_t status_p1;
    uint8_t status_next;
    uint8_t status_tlv;
    /* STORE CERTIFICATE blocks. */
    uint8_t cert_active;
    uint8_t cert_next;
    /* ISO 7816-4 §5.1.1.1 command chaining: the header of the chain. */
    uint8_t chain_active;
    uint8_t chain_ins, chain_p1, chain_p2;
    int8_t session; /* index into card->sessions, -1 none */
};

#define SE_MAX_SESSIONS 8u

struct se_session_slot {
    uint8_t in_use;
    uint8_t channel;
    struct tc_scp03_card session;
};

/*
 * The identity key as OpenSSL objects, kept in the card's RAM between SIGNs
 * (building them is most of a SIGN's cost). priv/pub are the key pair they
 * were built from: a SIGN with any other pair rebuilds them. Only the
 * card's own thread uses them; se_ec_key_forget() frees them and wipes the
 * whole struct (ram_clear: power off, reset, close).
 */
struct se_ec_key {
    struct evp_pkey_st *pkey;
    struct evp_pkey_ctx_st *sctx; /* signing context on pkey */
    uint8_t priv[32];
    uint8_t pub[TC_SE_EC_PUB_LEN];
};

struct se_ram {
    uint8_t powered;
    uint8_t mute; /* lost power in an NVM write: answers nothing */
    struct tc_scp03_card_config cfg;
    struct tc_scp03_card_store store;
    struct tc_scp03_chain chain;
    struct se_channel ch[TC_SE_MAX_CHANNELS];
    struct se_session_slot sessions[SE_MAX_SESSIONS];
    /* Chaining/assembly buffer for the current command. */
    uint8_t chain_buf[TC_SE_MAX_COMMAND];
    /* Unwrapped (plain) command data. */
    uint8_t plain[TC_SE_MAX_COMMAND];
    /* STORE CERTIFICATE staging (the applet is not multi-selectable). */
    uint16_t cert_len;
    uint8_t cert_buf[TC_SE_MAX_CERT];
    /* The identity SIGN's key objects (ec.c). */
    struct se_ec_key sign_key;
};

struct tc_se_card {
    struct se_nvm nvm;
    struct se_ram ram;
    int fd;                                              /* -1: NVM in memory only */
    tc_err (*random)(void *ctx, uint8_t *out, size_t n); /* card challenge source */
    void *random_ctx;
    unsigned flags;   /* TC_SE_OPEN_* */
    uint8_t cur_slot; /* slot holding the current state */
    uint64_t generation;
    /* Tearing test hook: count of write points so far and the one to tear
     * (UINT64_MAX: never). */
    uint64_t write_points;
    uint64_t tear_at;
};

_Static_assert(sizeof(struct tc_se_card) <= TC_SE_CARD_MAX_SIZE,
               "one card must fit in TC_SE_CARD_MAX_SIZE");

/* ------------------------------------------------------------------ command context */

struct se_cmd {
    struct tc_se_card *card;
    struct se_channel *ch;
    uint8_t channel;
    uint8_t cla, ins, p1, p2;
    const uint8_t *data; /* plain data (after SCP03 unwrap) */
    size_t lc;
    uint32_t ne; /* 0 when no Le */
    bool has_le;
    bool proprietary;   /* CLA b8 set (GlobalPlatform class) */
    bool secured;       /* arrived with secure messaging */
    bool authenticated; /* an SCP03 session is open on this channel */
    uint8_t level;      /* the session's current security level, 0 without */
    struct tc_scp03_card *session;
    /* Response data is written here. */
    struct tc_buf *out;
};

/* Security levels (GP Amendment D §5.1 Table 5-2 bits). */
#define SE_LVL_CMAC 0x01u
#define SE_LVL_CDEC 0x02u
#define SE_LVL_RMAC 0x10u
#define SE_LVL_RENC 0x20u

/* ------------------------------------------------------------------ nvm.c */

void se_nvm_init(struct se_nvm *n, const struct tc_se_params *p);
TC_MUST_CHECK tc_err se_nvm_validate(const struct se_nvm *n);
/* Commit the NVM mirror atomically (no-op for memory cards). On failure the
 * card is mute until power-on reloads the image. */
TC_MUST_CHECK tc_err se_nvm_commit(struct tc_se_card *card);
/* Reload the mirror from the image (power-on after a failed commit). */
TC_MUST_CHECK tc_err se_nvm_load(struct tc_se_card *card);
TC_MUST_CHECK tc_err se_image_read(int fd, struct se_nvm *out, uint8_t *slot, uint64_t *generation);

/* ------------------------------------------------------------------ card.c */

struct se_keyset *se_keyset_find(struct se_nvm *n, uint8_t kvn);
/* Close the session on a channel (wipes its keys). */
void se_session_end(struct tc_se_card *card, struct se_channel *ch);
/* Commit; SW 6581 and mute on failure. */
uint16_t se_commit_sw(struct tc_se_card *card);

/* ------------------------------------------------------------------ isd.c / applet.c */

uint16_t se_isd_dispatch(struct se_cmd *c);
uint16_t se_applet_dispatch(struct se_cmd *c);
/* Selectable registry (GP 2.3 §11.9): AIDs in order. */
bool se_applet_selectable(const struct se_nvm *n);
void se_applet_reset_ram(struct tc_se_card *card);
/* PSO COMPUTE DIGITAL SIGNATURE with the identity key (the applet's SIGN;
 * the ISD answers it too while the card is CARD_LOCKED). */
uint16_t se_applet_sign(struct se_cmd *c);
/* STORE DATA forwarded after INSTALL [for personalization]: the certificate. */
uint16_t se_applet_store_data(struct se_cmd *c, bool dgi, bool first, bool last);
bool se_level_ok_cmac(const struct se_cmd *c);
bool se_level_ok_cdec(const struct se_cmd *c);
/* Registry entries for GET STATUS; returns the FCI proprietary data etc. */
void se_isd_fci(const struct tc_se_card *card, struct tc_buf *out);

/* ------------------------------------------------------------------ ec.c */

/* P-256 on OpenSSL; the private scalar is passed in and out as 32 bytes. */
TC_MUST_CHECK tc_err se_ec_generate(uint8_t priv[static 32], uint8_t pub[static TC_SE_EC_PUB_LEN]);
/* ECDSA over a SHA-256 digest; DER signature. */
TC_MUST_CHECK tc_err se_ec_sign_digest(const uint8_t priv[static 32],
                                       const uint8_t pub[static TC_SE_EC_PUB_LEN],
                                       const uint8_t digest[static 32], uint8_t *sig,
                                       size_t sig_size, size_t *sig_len);
/* se_ec_sign_digest() through the kept key `k` (built or rebuilt as needed;
 * forgotten on failure). */
TC_MUST_CHECK tc_err se_ec_sign_digest_kept(struct se_ec_key *k, const uint8_t priv[static 32],
                                            const uint8_t pub[static TC_SE_EC_PUB_LEN],
                                            const uint8_t digest[static 32], uint8_t *sig,
                                            size_t sig_size, size_t *sig_len);
void se_ec_key_forget(struct se_ec_key *k);
/* Frees the calling thread's P-256 contexts now (they hold no key; a
 * pthread key destructor frees them at thread exit anyway). */
void se_ec_thread_cleanup(void);
/* The subjectPublicKeyInfo BIT STRING content and the serialNumber of a DER
 * X.509 certificate, found by walking the TLVs (no allocation). */
TC_MUST_CHECK tc_err se_cert_fields(const uint8_t *cert, size_t len, const uint8_t **serial,
                                    size_t *serial_len, const uint8_t **pub, size_t *pub_len);
#define SE_SHA256_MAX_PARTS 4u
TC_MUST_CHECK tc_err se_sha256(const uint8_t *const *parts, const size_t *lens, size_t n,
                               uint8_t out[static 32]);

/* ------------------------------------------------------------------ test hooks */

/* Tear the write point with this absolute index (UINT64_MAX: none). */
void se_test_set_tear(struct tc_se_card *card, uint64_t point);
uint64_t se_test_write_points(const struct tc_se_card *card);
/* Read-only view of the NVM mirror (the no-export test scans it for keys). */
const struct se_nvm *se_test_nvm(const struct tc_se_card *card);
/* A deterministic card challenge source (fuzzing, tests). */
void se_test_set_random(struct tc_se_card *card, tc_err (*fn)(void *, uint8_t *, size_t),
                        void *ctx);

#endif
