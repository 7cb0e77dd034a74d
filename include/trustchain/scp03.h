/*
 * trustchain scp03: GlobalPlatform Secure Channel Protocol '03'
 * (GlobalPlatform Card Specification 2.3, Amendment D v1.2), both ends:
 * the off-card entity ("host") and the card, over one shared session core.
 *
 *   - explicit initiation: INITIALIZE UPDATE / EXTERNAL AUTHENTICATE, S8 and
 *     S16 modes, random or pseudo-random card challenge (i-parameter);
 *   - AES-128/192/256 static keys, S-ENC / S-MAC / S-RMAC session keys;
 *   - security levels 00, 01, 03, 11, 13, 33 and BEGIN / END R-MAC SESSION;
 *   - logical channels 0-19, extended-length APDUs, command chaining;
 *   - PUT KEY (AES keysets, KCVs checked both ways) and DELETE KEY.
 *
 * The host reaches its static keys only through a key provider
 * (struct tc_scp03_key_provider), so an HSM can hold them; session keys live
 * in host memory for the length of one session.
 *
 * The card side allocates nothing: every structure is fixed-size and
 * caller-owned, key material and counters come from the card OS through a
 * small callback table (struct tc_scp03_card_store).
 *
 * Must never: accept a command or response whose MAC, padding or cryptogram
 * did not verify; compare secrets other than in constant time; keep session
 * keys after a session ends; print, log or trace key material.
 */
#ifndef TRUSTCHAIN_SCP03_H
#define TRUSTCHAIN_SCP03_H

#include <trustchain/codec.h>
#include <trustchain/core.h>
#include <trustchain/crypto.h>
#include <trustchain/transport.h>

/* ------------------------------------------------------------------ constants */

#define TC_SCP03_ID                                                                                \
    0x03u /* SCP identifier in the key information (Amendment D §7.1.1.6, table 7-3) */

/* i-parameter (Amendment D §5.1, table 5-1). */
#define TC_SCP03_I_S16           0x01u /* b1: S16 mode (16-byte challenges, cryptograms, MACs) */
#define TC_SCP03_I_PSEUDO_RANDOM 0x10u /* b5: pseudo-random card challenge */
#define TC_SCP03_I_RMAC          0x20u /* b6: R-MAC support */
#define TC_SCP03_I_RENC          0x40u /* b7: R-ENCRYPTION support (with R-MAC) */
#define TC_SCP03_I_KNOWN         0x71u /* all defined bits; others are RFU and must be 0 */

/* Security level (Amendment D §5.1, EXTERNAL AUTHENTICATE P1 §7.1.2). */
#define TC_SCP03_SL_NONE 0x00u
#define TC_SCP03_SL_CMAC 0x01u
#define TC_SCP03_SL_CDEC 0x02u /* always with C-MAC */
#define TC_SCP03_SL_RMAC 0x10u
#define TC_SCP03_SL_RENC 0x20u /* always with R-MAC and C-DEC */
/* The only levels EXTERNAL AUTHENTICATE may request: 00 01 03 11 13 33. */
#define TC_SCP03_LEVEL_CLEAR    0x00u
#define TC_SCP03_LEVEL_MAC      0x01u
#define TC_SCP03_LEVEL_ENC      0x03u
#define TC_SCP03_LEVEL_RMAC     0x11u
#define TC_SCP03_LEVEL_ENC_RMAC 0x13u
#define TC_SCP03_LEVEL_RENC     0x33u

/* Instructions (GP Card Specification 2.3 §11, Amendment D §7). */
#define TC_SCP03_INS_INITIALIZE_UPDATE     0x50u
#define TC_SCP03_INS_EXTERNAL_AUTHENTICATE 0x82u
#define TC_SCP03_INS_BEGIN_RMAC_SESSION    0x7Au
#define TC_SCP03_INS_END_RMAC_SESSION      0x78u
#define TC_SCP03_INS_PUT_KEY               0xD8u
#define TC_SCP03_INS_DELETE                0xE4u

/* Sizes and caps. */
#define TC_SCP03_KEY_MAX       32u /* AES-256 */
#define TC_SCP03_S8            8u  /* challenge / cryptogram / MAC length in S8 mode */
#define TC_SCP03_S16           16u /* ... in S16 mode */
#define TC_SCP03_CHALLENGE_MAX 16u
#define TC_SCP03_MAC_MAX       16u
#define TC_SCP03_DIV_DATA_LEN  10u /* key diversification data */
#define TC_SCP03_SEQ_LEN       3u  /* sequence counter */
#define TC_SCP03_SEQ_MAX       0xFFFFFFu
#define TC_SCP03_AID_MIN       5u
#define TC_SCP03_AID_MAX       16u
#define TC_SCP03_IU_RESP_MAX   (10u + 3u + 16u + 16u + 3u)          /* INITIALIZE UPDATE response */
#define TC_SCP03_KEYS_PER_SET  3u                                   /* Key-ENC, Key-MAC, Key-DEK */
#define TC_SCP03_KCVS_LEN      (TC_SCP03_KEYS_PER_SET * TC_KCV_LEN) /* the three KCVs */
/* Largest growth of a command's data field by wrapping: padding + C-MAC. */
#define TC_SCP03_WRAP_OVERHEAD (TC_AES_BLOCK + TC_SCP03_MAC_MAX)
/* Largest growth of a response's data by wrapping: padding + R-MAC. */
#define TC_SCP03_RESP_OVERHEAD (TC_AES_BLOCK + TC_SCP03_MAC_MAX)
/* Largest plain command data field that can still be wrapped (extended
 * length): 65535 - 16 (C-MAC) rounded down to a block, minus one pad byte. */
#define TC_SCP03_MAX_PLAIN_DATA 65503u
/* Key data block per key in PUT KEY (Amd D table 7-10): 88 LL KL <32> 03 KCV */
#define TC_SCP03_KEY_BLOCK_MAX (1u + 1u + 1u + 32u + 1u + TC_KCV_LEN)
/* PUT KEY data field: new KVN + three key blocks. */
#define TC_SCP03_PUT_KEY_DATA_MAX (1u + TC_SCP03_KEYS_PER_SET * TC_SCP03_KEY_BLOCK_MAX)

/* Key identifiers within an SCP03 keyset (GP Card Specification 2.3 §11.8.2:
 * the three keys of a keyset are numbered 1, 2, 3). */
enum tc_scp03_key_id { TC_SCP03_KEY_ENC = 1, TC_SCP03_KEY_MAC = 2, TC_SCP03_KEY_DEK = 3 };

/* ------------------------------------------------------------------ keysets */

/* One static AES keyset. Plain key material: wipe with tc_scp03_keyset_wipe. */
struct tc_scp03_keyset {
    uint8_t kvn;     /* key version number 0x01..0x7F (0xFF: initial ISD keyset) */
    uint8_t key_len; /* 16, 24 or 32 */
    uint8_t enc[TC_SCP03_KEY_MAX];
    uint8_t mac[TC_SCP03_KEY_MAX];
    uint8_t dek[TC_SCP03_KEY_MAX];
};

void tc_scp03_keyset_wipe(struct tc_scp03_keyset *ks);
/* Fill a keyset; every key of key_len bytes (16/24/32). */
TC_MUST_CHECK tc_err tc_scp03_keyset_set(struct tc_scp03_keyset *ks, uint8_t kvn,
                                         const uint8_t *enc, const uint8_t *mac, const uint8_t *dek,
                                         size_t key_len);

/* The three session keys of one session (Amendment D §6.2.1). */
struct tc_scp03_session_keys {
    uint8_t key_len;
    uint8_t s_enc[TC_SCP03_KEY_MAX];
    uint8_t s_mac[TC_SCP03_KEY_MAX];
    uint8_t s_rmac[TC_SCP03_KEY_MAX];
};

/* ------------------------------------------------------------------ key provider */

/*
 * Where the host's static keys live. A keyset is named by its KVN as the card
 * reported it in the INITIALIZE UPDATE response. An implementation over an HSM
 * computes everything that needs a static key inside the HSM; only session
 * keys and wrapped (DEK-encrypted) key blocks leave it.
 *
 * Every operation returns TC_ERR_NOT_FOUND when it holds no keyset for kvn.
 */
struct tc_scp03_key_provider {
    void *ctx;
    /* Length (16/24/32) of the static keys of keyset kvn. */
    tc_err (*key_len)(void *ctx, uint8_t kvn, size_t *key_len);
    /* Amendment D §6.2.1: S-ENC = KDF(Key-ENC, 04, context), S-MAC =
     * KDF(Key-MAC, 06, context), S-RMAC = KDF(Key-MAC, 07, context), each
     * of the static key length; context = host challenge || card challenge. */
    tc_err (*session_keys)(void *ctx, uint8_t kvn, const uint8_t *context, size_t context_len,
                           struct tc_scp03_session_keys *out);
    /* Amendment D §6.2.2.1: pseudo-random card challenge =
     * KDF(Key-ENC, 02, sequence counter (3) || SD AID), out_len 8 or 16. */
    tc_err (*card_challenge)(void *ctx, uint8_t kvn, const uint8_t seq[TC_SCP03_SEQ_LEN],
                             const uint8_t *aid, size_t aid_len, uint8_t *out, size_t out_len);
    /* PUT KEY: encrypt key `id` of keyset `src_kvn` held by provider `src`
     * (which may be this provider) under this provider's Key-DEK of keyset
     * `dek_kvn`: AES-CBC, zero ICV, the key right-padded with zeros to a
     * multiple of 16 (GP CS 2.3 §11.8, Amendment D §7.2). *out_len is 16 or 32.
     * Returns TC_ERR_UNSUPPORTED when it cannot reach src's key. */
    tc_err (*wrap_key)(void *ctx, uint8_t dek_kvn, const struct tc_scp03_key_provider *src,
                       uint8_t src_kvn, enum tc_scp03_key_id id, uint8_t *out, size_t out_size,
                       size_t *out_len);
    /* Key check value of key `id` of keyset kvn (Amendment D §7.2: first 3
     * bytes of AES(key, 16 bytes '01')). */
    tc_err (*kcv)(void *ctx, uint8_t kvn, enum tc_scp03_key_id id, uint8_t kcv[TC_KCV_LEN]);
};

/* An in-memory provider for tests and the CLI. A keyset stored with KVN 0
 * answers for any KVN that has no exact match (the GP "default keys"). */
#define TC_SCP03_MEM_KEYSETS 4u
struct tc_scp03_mem_provider {
    struct tc_scp03_keyset sets[TC_SCP03_MEM_KEYSETS];
    size_t n;
};
/* Empties m and points p at it (p->ctx = m). */
void tc_scp03_mem_provider_init(struct tc_scp03_mem_provider *m, struct tc_scp03_key_provider *p);
/* Add (or replace, same KVN) a keyset; TC_ERR_NOMEM when full. */
TC_MUST_CHECK tc_err tc_scp03_mem_provider_add(struct tc_scp03_mem_provider *m,
                                               const struct tc_scp03_keyset *ks);
void tc_scp03_mem_provider_wipe(struct tc_scp03_mem_provider *m);

/* ------------------------------------------------------------------ session core */

enum tc_scp03_state {
    TC_SCP03_STATE_IDLE = 0,      /* no session */
    TC_SCP03_STATE_INITIALIZED,   /* INITIALIZE UPDATE done, awaiting EXTERNAL AUTHENTICATE */
    TC_SCP03_STATE_AUTHENTICATED, /* secure channel open */
    TC_SCP03_STATE_ABORTED,       /* card: a verification failed; everything but a new
                                     INITIALIZE UPDATE is refused (6982) */
};

/*
 * The state both ends share. Fields are read-only for users; functions of
 * this module change them. Wiped entirely (keys, chaining value, ICVs) when
 * the session ends or is aborted.
 */
struct tc_scp03_session {
    enum tc_scp03_state state;
    uint8_t kvn;
    uint8_t i_param;
    uint8_t level;        /* current security level (R-MAC bits follow BEGIN/END R-MAC) */
    uint8_t auth_level;   /* level requested in EXTERNAL AUTHENTICATE */
    uint8_t s_len;        /* 8 (S8) or 16 (S16): challenge, cryptogram and MAC length */
    uint8_t channel;      /* logical channel the session was opened on, 0..19 */
    uint32_t enc_counter; /* C-DEC / R-ENC counter: 1 for the first command after EA */
    uint8_t mac_chain[TC_AES_BLOCK];
    uint8_t host_challenge[TC_SCP03_CHALLENGE_MAX];
    uint8_t card_challenge[TC_SCP03_CHALLENGE_MAX];
    uint8_t host_cryptogram[TC_SCP03_CHALLENGE_MAX];
    uint8_t card_cryptogram[TC_SCP03_CHALLENGE_MAX];
    struct tc_scp03_session_keys keys;
    /* A command was wrapped (host) or unwrapped (card) and its response
     * is not yet handled; the R-MAC covers that command's chaining value. */
    bool cmd_pending;
    /* The command and response ICVs for icv_counter, computed together
     * (one AES call for both); wiped with the session. */
    bool icv_valid;
    uint32_t icv_counter;
    uint8_t icv_cache[2 * TC_AES_BLOCK]; /* command ICV, then response ICV */
};

/* Wipe keys, chaining value and counters; state back to IDLE. */
void tc_scp03_session_wipe(struct tc_scp03_session *s);

/* ------------------------------------------------------------------ card side */

/*
 * Card-side status word mapping (each card function sets *sw):
 *   9000  success
 *   6300  EXTERNAL AUTHENTICATE: host cryptogram did not verify (Amendment D §7.1.2)
 *   6700  wrong length (Lc of INITIALIZE UPDATE / EXTERNAL AUTHENTICATE,
 *         C-MAC missing or truncated command)
 *   6982  security status not satisfied: C-MAC, padding or decryption failure
 *         (the session is aborted), or a command arrives that the current
 *         level requires to be protected and is not
 *   6983  authentication method blocked (failure counter at its limit)
 *   6985  conditions of use not satisfied: sequence counter exhausted,
 *         EXTERNAL AUTHENTICATE without INITIALIZE UPDATE, BEGIN/END R-MAC
 *         out of order
 *   6A80  incorrect data (PUT KEY block malformed, KCV mismatch)
 *   6A86  incorrect P1 P2 (security level unknown or not allowed by i,
 *         BEGIN/END R-MAC P1/P2)
 *   6A88  referenced data not found (no keyset with that KVN)
 *   6884  a chained segment reached unwrap (reassemble first)
 *   6D00  instruction not supported by this function
 *   6E00  class not supported (not a GlobalPlatform CLA, wrong channel)
 *   6F00  internal failure (crypto library)
 */
#define TC_SCP03_SW_OK                0x9000u
#define TC_SCP03_SW_AUTH_FAILED       0x6300u
#define TC_SCP03_SW_WRONG_LENGTH      0x6700u
#define TC_SCP03_SW_SECURITY          0x6982u
#define TC_SCP03_SW_BLOCKED           0x6983u
#define TC_SCP03_SW_CONDITIONS        0x6985u
#define TC_SCP03_SW_WRONG_DATA        0x6A80u
#define TC_SCP03_SW_WRONG_P1P2        0x6A86u
#define TC_SCP03_SW_NOT_FOUND         0x6A88u
#define TC_SCP03_SW_INS_NOT_SUPPORTED 0x6D00u
#define TC_SCP03_SW_CLA_NOT_SUPPORTED 0x6E00u
#define TC_SCP03_SW_CHAINING          0x6884u
#define TC_SCP03_SW_INTERNAL          0x6F00u

/*
 * Persistent card state, owned by the card OS (it keeps these in NVM).
 * Every callback must be atomic with respect to power loss.
 */
struct tc_scp03_card_store {
    void *ctx;
    /* Copy the keyset with KVN kvn (0: the security domain's default, the
     * first available keyset) into *out. TC_ERR_NOT_FOUND if none. */
    tc_err (*load_keyset)(void *ctx, uint8_t kvn, struct tc_scp03_keyset *out);
    /* Amendment D §6.2.2.1: increment the sequence counter of keyset kvn and
     * return the new value. TC_ERR_RANGE when it is already at
     * TC_SCP03_SEQ_MAX (the card answers 6985, nothing changes). */
    tc_err (*next_sequence)(void *ctx, uint8_t kvn, uint32_t *seq);
    /* Read the number of failed EXTERNAL AUTHENTICATEs for keyset kvn. */
    tc_err (*auth_failures)(void *ctx, uint8_t kvn, uint32_t *count);
    /* Record an EXTERNAL AUTHENTICATE result: a failure increments the
     * counter, a success resets it to zero. */
    tc_err (*auth_record)(void *ctx, uint8_t kvn, bool success);
};

struct tc_scp03_card_config {
    uint8_t i_param; /* what the card advertises and enforces */
    uint8_t aid[TC_SCP03_AID_MAX];
    uint8_t aid_len; /* SD AID (input to the pseudo-random challenge) */
    uint8_t div_data[TC_SCP03_DIV_DATA_LEN];
    /* EXTERNAL AUTHENTICATE failures after which INITIALIZE UPDATE answers
     * 6983; 0 = no limit. */
    uint32_t max_auth_failures;
    /* Random card challenge source when i says random; NULL = tc_random.
     * Tests and fuzzers plug a deterministic one here. */
    tc_err (*random)(void *ctx, uint8_t *out, size_t n);
    void *random_ctx;
};

/* One secure-channel session on one logical channel (the card OS keeps one
 * per channel). Fixed size; holds the session keys and the static DEK of the
 * keyset that opened it (PUT KEY decryption). */
struct tc_scp03_card {
    const struct tc_scp03_card_config *cfg;
    const struct tc_scp03_card_store *store;
    struct tc_scp03_session s;
    uint8_t dek[TC_SCP03_KEY_MAX];
    uint32_t seq;   /* sequence counter used by the last INITIALIZE UPDATE */
    bool rmac_stop; /* END R-MAC SESSION: drop R-MAC/R-ENC after this response */
};

/* A command the card received, once unwrapped. data points into the
 * caller's plain buffer. */
struct tc_scp03_card_cmd {
    struct tc_apdu apdu; /* CLA without the SM bit, plain data, Le as sent */
    bool was_secured;    /* arrived with secure messaging */
};

/* Bind a card session to its configuration and store; state IDLE. Never fails. */
void tc_scp03_card_init(struct tc_scp03_card *c, const struct tc_scp03_card_config *cfg,
                        const struct tc_scp03_card_store *store);
/* End the session (SELECT, channel close, reset, error): wipe keys, IDLE. */
void tc_scp03_card_reset(struct tc_scp03_card *c);
/* Current security level (0 when no session is authenticated). */
uint8_t tc_scp03_card_level(const struct tc_scp03_card *c);
bool tc_scp03_card_authenticated(const struct tc_scp03_card *c);

/*
 * Amendment D §7.1.1 INITIALIZE UPDATE. `apdu` is the raw command (CLA 80..83
 * or C0..CF, INS 50, P1 = KVN or 0, P2 = 00, Lc = 8 in S8 / 16 in S16 mode).
 * Any previous session on this channel ends first. On success writes the
 * response data (diversification data, key information, card challenge,
 * card cryptogram, sequence counter when pseudo-random) to resp.
 */
TC_MUST_CHECK tc_err tc_scp03_card_initialize_update(struct tc_scp03_card *c, const uint8_t *apdu,
                                                     size_t len, uint8_t *resp, size_t resp_size,
                                                     size_t *resp_len, uint16_t *sw);
/* Amendment D §7.1.2 EXTERNAL AUTHENTICATE (raw command, CLA with SM bit).
 * No response data. */
TC_MUST_CHECK tc_err tc_scp03_card_external_authenticate(struct tc_scp03_card *c,
                                                         const uint8_t *apdu, size_t len,
                                                         uint16_t *sw);
/*
 * Amendment D §6.2.4-6.2.6: verify and strip the C-MAC, decrypt the data
 * field, remove the padding; writes the plain command encoded as an APDU into
 * `plain` and decodes it into *cmd (pointing into plain). Without an
 * authenticated session, or at level 00, commands pass through unchanged
 * (a command with the SM bit set is then refused, 6982). Any failure inside
 * a session aborts it (level reset, keys wiped) and sets *sw = 6982 (6700
 * for a malformed APDU); after an abort every command is refused with 6982
 * until a new INITIALIZE UPDATE. A command arriving between INITIALIZE
 * UPDATE and EXTERNAL AUTHENTICATE abandons the handshake. A chained
 * command must be reassembled first (tc_scp03_chain_*; a segment with the
 * chaining bit answers 6884). plain_size >= len always suffices.
 */
TC_MUST_CHECK tc_err tc_scp03_card_unwrap(struct tc_scp03_card *c, const uint8_t *apdu, size_t len,
                                          uint8_t *plain, size_t plain_size, size_t *plain_len,
                                          struct tc_scp03_card_cmd *cmd, uint16_t *sw);
/*
 * Amendment D §6.2.5, §6.2.7: protect the response to the last unwrapped
 * command. Writes data' || SW1 SW2 into out: R-ENC (when the level has it and
 * data is non-empty), then R-MAC (when the level has it) over the command's
 * chaining value || data' || SW; responses whose SW is not 9000/62xx/63xx go
 * out as the bare SW. out needs len + TC_SCP03_RESP_OVERHEAD + 2 bytes.
 */
TC_MUST_CHECK tc_err tc_scp03_card_wrap(struct tc_scp03_card *c, const uint8_t *data, size_t len,
                                        uint16_t sw, uint8_t *out, size_t out_size,
                                        size_t *out_len);
/*
 * BEGIN R-MAC SESSION (INS 7A, P1 = 10
 * R-MAC or 30 R-MAC+R-ENC, P2 = 01, data empty or one length-prefixed
 * field) and END R-MAC SESSION (INS 78, P1 = 00, P2 = 03, no data), given
 * as unwrapped commands; the level bits must be supported by i. Both
 * responses carry an R-MAC: BEGIN raises the level at once, END lowers it
 * after its own response is wrapped. The caller wraps the (empty)
 * response as usual.
 */
TC_MUST_CHECK tc_err tc_scp03_card_begin_rmac(struct tc_scp03_card *c,
                                              const struct tc_scp03_card_cmd *cmd, uint16_t *sw);
TC_MUST_CHECK tc_err tc_scp03_card_end_rmac(struct tc_scp03_card *c,
                                            const struct tc_scp03_card_cmd *cmd, uint16_t *sw);

/* PUT KEY decoded (Amendment D §7.2, GP CS 2.3 §11.8). */
struct tc_scp03_put_key {
    uint8_t old_kvn;                /* P1: 0 = add a new keyset, else the KVN to replace */
    uint8_t first_id;               /* P2 b7-b1: key identifier of the first key (1) */
    struct tc_scp03_keyset keys;    /* the new keyset (keys.kvn = new KVN) */
    uint8_t kcv[TC_SCP03_KCVS_LEN]; /* KCVs of ENC, MAC, DEK as sent (and verified) */
};

/*
 * Decode an unwrapped PUT KEY command: P1 = old KVN (0 = new keyset), P2 =
 * 81 (several keys, first key identifier 1); data = new KVN then three key
 * data blocks 88 LL [KL] <key encrypted with the session's static Key-DEK,
 * AES-CBC, zero ICV> 03 <KCV>. The block with the key length byte KL
 * (Amendment D table 7-10) and without it (as GPShell and yubikit send) are
 * both accepted. Every KCV is recomputed and must match. Requires an
 * authenticated session with at least C-MAC (the key data itself is always
 * encrypted under Key-DEK). P1 != 0 must name an existing keyset (6A88); a
 * new keyset (P1 = 0) must not reuse an existing KVN (6A80). The caller
 * stores out->keys and answers tc_scp03_put_key_response(). Wipe *out
 * afterwards (tc_memzero).
 */
TC_MUST_CHECK tc_err tc_scp03_card_put_key(struct tc_scp03_card *c,
                                           const struct tc_scp03_card_cmd *cmd,
                                           struct tc_scp03_put_key *out, uint16_t *sw);
/* Response data to PUT KEY: new KVN || KCV1 || KCV2 || KCV3 (10 bytes). */
TC_MUST_CHECK tc_err tc_scp03_put_key_response(const struct tc_scp03_put_key *pk, uint8_t *out,
                                               size_t out_size, size_t *out_len);

/*
 * ISO/IEC 7816-4 §5.3.3 command chaining on the card side: segments arrive
 * with the chaining bit set in the CLA except the last; the reassembled
 * logical command (what the host wrapped once) goes to tc_scp03_card_unwrap.
 * Fixed caller memory, no allocation.
 */
struct tc_scp03_chain {
    uint8_t *buf; /* caller memory for the reassembled command */
    size_t cap;
    size_t data_len; /* data collected so far */
    uint8_t hdr[4];  /* CLA (chaining bit cleared) INS P1 P2 of the chain */
    bool active;
};
void tc_scp03_chain_init(struct tc_scp03_chain *ch, uint8_t *buf, size_t cap);
/* Feed one received APDU. *complete = false: answer 9000 and wait for the
 * next segment. *complete = true: *out (*out_len bytes) is the whole logical command
 * (a single unchained APDU comes straight through). A segment whose INS P1 P2
 * or channel differs from the chain's, or that overflows cap, fails and
 * resets the chain (answer 6A80 / 6700). */
TC_MUST_CHECK tc_err tc_scp03_chain_feed(struct tc_scp03_chain *ch, const uint8_t *apdu, size_t len,
                                         bool *complete, const uint8_t **out, size_t *out_len);

/* ------------------------------------------------------------------ host side, pure */

/* What the trace callback is shown (never keys). */
enum tc_scp03_trace_kind {
    TC_SCP03_TRACE_CMD_PLAIN = 1, /* command before wrapping */
    TC_SCP03_TRACE_CMD_WRAPPED,   /* command as sent (each chained segment) */
    TC_SCP03_TRACE_RESP_RAW,      /* response as received */
    TC_SCP03_TRACE_RESP_PLAIN,    /* response after unwrapping */
};
typedef void (*tc_scp03_trace_fn)(void *ctx, enum tc_scp03_trace_kind kind, const uint8_t *p,
                                  size_t len);

struct tc_scp03_host_config {
    uint8_t kvn;     /* INITIALIZE UPDATE P1: 0 = the card's default keyset */
    uint8_t level;   /* security level for EXTERNAL AUTHENTICATE (00 01 03 11 13 33) */
    bool s16;        /* S16 mode: 16-byte host challenge; the card must agree */
    uint8_t channel; /* logical channel 0..19 (opened by the caller) */
    /* SD AID: SELECTed first when select is true; needed for the check of a
     * pseudo-random card challenge (without it such a card is refused). */
    const uint8_t *aid;
    size_t aid_len;
    bool select;
    /* A fixed host challenge (tests, vectors); NULL = fresh random. */
    const uint8_t *host_challenge;
    /* Commands larger than a short APDU: extended length when true, else
     * command chaining in segments of at most 255 bytes. */
    bool extended;
    tc_scp03_trace_fn trace;
    void *trace_ctx;
};

/*
 * What the last host operation over a transport came to
 * (tc_scp03_host_open, _transmit, _put_keys, _begin_rmac, _end_rmac,
 * _delete_key; also the pure handshake functions), beside its tc_err: a
 * caller decides on these, never on message text (docs/scp03.md, "Host
 * outcomes").
 */
enum tc_scp03_host_outcome {
    TC_SCP03_HOST_OK = 0,
    TC_SCP03_HOST_LINK = 1,        /* the transport failed (TC_ERR_IO): card or reader gone */
    TC_SCP03_HOST_CARD_STATUS = 2, /* the card answered an error status word (last_sw) */
    /* INITIALIZE UPDATE answered 6A88 (GP CS 2.3 §11.1.4 "referenced data
     * not found"): the card holds no keyset with that KVN. */
    TC_SCP03_HOST_NO_KEYSET = 3,
    /* The card did not authenticate (Amendment D §6.2.2.1-2): its
     * cryptogram or pseudo-random challenge does not match our keys. */
    TC_SCP03_HOST_CARD_AUTH = 4,
    /* EXTERNAL AUTHENTICATE answered 6300 (Amendment D §7.1.2): the card
     * refused the host cryptogram. */
    TC_SCP03_HOST_HOST_AUTH = 5,
    /* PUT KEY answered a KVN or key check values other than the new keys'
     * (GP CS 2.3 §11.8.3). */
    TC_SCP03_HOST_KCV_MISMATCH = 6,
    /* A response failed its R-MAC, R-ENC padding or format (or the card
     * answered for another keyset than asked). */
    TC_SCP03_HOST_RESPONSE = 7,
    TC_SCP03_HOST_KEYS = 8,  /* the key provider failed (an HSM error, a missing key) */
    TC_SCP03_HOST_OTHER = 9, /* bad arguments, state, resources */
    TC_SCP03_HOST_OUTCOME_MAX_ = 9
};
/* "ok", "link", "card-status", ...; "unknown" otherwise. */
const char *tc_scp03_host_outcome_name(enum tc_scp03_host_outcome o);

struct tc_scp03_host {
    struct tc_scp03_session s;
    const struct tc_scp03_key_provider *keys;
    struct tc_scp03_host_config cfg;
    struct tc_transport *t; /* NULL for the pure functions */
    uint8_t div_data[TC_SCP03_DIV_DATA_LEN];
    uint32_t seq; /* card's sequence counter (pseudo-random mode) */
    bool have_seq;
    /* The last operation's outcome and the last status word the card
     * answered (0 if none); kept across wipe and close. */
    enum tc_scp03_host_outcome outcome;
    uint16_t last_sw;
};

/* The last operation's outcome and last status word (see above). */
enum tc_scp03_host_outcome tc_scp03_host_outcome(const struct tc_scp03_host *h);
uint16_t tc_scp03_host_last_sw(const struct tc_scp03_host *h);

/* Prepare a host session (no I/O). cfg is copied; keys must outlive h. */
TC_MUST_CHECK tc_err tc_scp03_host_init(struct tc_scp03_host *h,
                                        const struct tc_scp03_key_provider *keys,
                                        const struct tc_scp03_host_config *cfg);
/* INITIALIZE UPDATE command into out (short APDU, Le 00). */
TC_MUST_CHECK tc_err tc_scp03_host_initialize_update(struct tc_scp03_host *h, struct tc_buf *out);
/*
 * Parse the INITIALIZE UPDATE response data (without SW): checks the SCP
 * identifier, the i-parameter against cfg (S8/S16, R-MAC/R-ENC support for
 * cfg.level), the pseudo-random card challenge (mismatch = TC_ERR_VERIFY),
 * derives the session keys through the provider and verifies the card
 * cryptogram (TC_ERR_VERIFY). Then builds EXTERNAL AUTHENTICATE into out.
 */
TC_MUST_CHECK tc_err tc_scp03_host_external_authenticate(struct tc_scp03_host *h,
                                                         const uint8_t *resp, size_t resp_len,
                                                         struct tc_buf *out);
/* The card answered EXTERNAL AUTHENTICATE with sw: 9000 opens the channel. */
TC_MUST_CHECK tc_err tc_scp03_host_authenticated(struct tc_scp03_host *h, uint16_t sw);
/*
 * Amendment D §6.2.4-6.2.6: wrap one plain command (its CLA without SM bit,
 * on the session's channel) into out as one APDU (extended form when the
 * wrapped data exceeds 255 bytes or cmd->extended). Advances the counter and
 * the MAC chaining value.
 */
TC_MUST_CHECK tc_err tc_scp03_host_wrap(struct tc_scp03_host *h, const struct tc_apdu *cmd,
                                        struct tc_buf *out);
/*
 * Amendment D §6.2.5, §6.2.7: unwrap a response (data || SW1 SW2) to the last
 * wrapped command: verify the R-MAC (a 9000/62xx/63xx response without it
 * is TC_ERR_VERIFY), decrypt R-ENC data, strip padding. Writes the plain data
 * into out and the SW into *sw. A response that fails verification
 * (TC_ERR_VERIFY, or TC_ERR_FORMAT for bad R-ENC padding) ends the session:
 * keys wiped, state IDLE.
 */
TC_MUST_CHECK tc_err tc_scp03_host_unwrap(struct tc_scp03_host *h, const uint8_t *resp,
                                          size_t resp_len, uint8_t *out, size_t out_size,
                                          size_t *out_len, uint16_t *sw);
/* Wipe session keys, state IDLE (the provider is not touched). */
void tc_scp03_host_wipe(struct tc_scp03_host *h);

/* PUT KEY data field for a whole AES keyset (Amendment D §7.2, table 7-10):
 * new KVN || three blocks 88 LL KL <wrapped key> 03 <KCV>. Wrapping happens
 * in `cur` (its keyset dek_kvn); the new keys and KCVs (ENC, MAC, DEK, 3
 * bytes each) come from `src`. */
TC_MUST_CHECK tc_err tc_scp03_put_key_data(const struct tc_scp03_key_provider *cur, uint8_t dek_kvn,
                                           const struct tc_scp03_key_provider *src, uint8_t new_kvn,
                                           struct tc_buf *out, uint8_t kcvs[TC_SCP03_KCVS_LEN]);
/* Check a PUT KEY response (KVN || 3 KCVs) against the expected KCVs. */
TC_MUST_CHECK tc_err tc_scp03_put_key_check(const uint8_t *resp, size_t len, uint8_t new_kvn,
                                            const uint8_t kcvs[TC_SCP03_KCVS_LEN]);

/* ------------------------------------------------------------------ host side, transport */

/*
 * Open a secure channel over t: SELECT the SD when cfg->select, INITIALIZE
 * UPDATE, EXTERNAL AUTHENTICATE. On failure nothing stays open and keys are
 * wiped. TC_ERR_CARD carries the SW in the error message.
 */
TC_MUST_CHECK tc_err tc_scp03_host_open(struct tc_scp03_host *h, struct tc_transport *t,
                                        const struct tc_scp03_key_provider *keys,
                                        const struct tc_scp03_host_config *cfg);
/*
 * Send one plain command through the channel: wrap, split into chained
 * segments or use extended length as configured, follow 61xx with GET
 * RESPONSE and 6Cxx by re-sending with the right Le, unwrap. The plain
 * response data goes to resp; *sw is the final status word (the function
 * succeeds for any SW; the caller judges it). A transport failure or a
 * response that does not verify ends the session (keys wiped).
 */
TC_MUST_CHECK tc_err tc_scp03_host_transmit(struct tc_scp03_host *h, const struct tc_apdu *cmd,
                                            uint8_t *resp, size_t resp_size, size_t *resp_len,
                                            uint16_t *sw);
/* BEGIN R-MAC SESSION (level R-MAC, or R-MAC + R-ENC when renc) and END
 * R-MAC SESSION through the channel; the card must answer 9000. */
TC_MUST_CHECK tc_err tc_scp03_host_begin_rmac(struct tc_scp03_host *h, bool renc);
TC_MUST_CHECK tc_err tc_scp03_host_end_rmac(struct tc_scp03_host *h);
/*
 * PUT KEY through the channel: replace keyset old_kvn (0 = add) with keyset
 * new_kvn of provider src, wrapped under the session keyset's DEK by the
 * session's provider; the KCVs the card returns must match src's.
 */
TC_MUST_CHECK tc_err tc_scp03_host_put_keys(struct tc_scp03_host *h,
                                            const struct tc_scp03_key_provider *src,
                                            uint8_t new_kvn, uint8_t old_kvn);
/* DELETE KEY (GP CS 2.3 §11.2): tag D2 key version number (and D0 key
 * identifier when key_id != 0). */
TC_MUST_CHECK tc_err tc_scp03_host_delete_key(struct tc_scp03_host *h, uint8_t kvn, uint8_t key_id);
/* Wipe the session (the transport stays open: it belongs to the caller). */
void tc_scp03_host_close(struct tc_scp03_host *h);

/* ------------------------------------------------------------------ helpers */

/* Security level allowed as EXTERNAL AUTHENTICATE P1 and supported by i? */
bool tc_scp03_level_valid(uint8_t level);
TC_MUST_CHECK tc_err tc_scp03_level_check(uint8_t level, uint8_t i_param);
/* "C-MAC+C-DEC+R-MAC" etc. for a level; never NULL. */
const char *tc_scp03_level_name(uint8_t level);
/* Parse clr|mac|enc|rmac|renc (CLI --mode) into a level. */
TC_MUST_CHECK tc_err tc_scp03_level_parse(const char *mode, uint8_t *level);

#endif
