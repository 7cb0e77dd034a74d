/*
 * trustchain se: the secure element emulator. A GlobalPlatform card (Card
 * Specification 2.3, Issuer Security Domain with SCP03 from the scp03
 * module), the identity applet (on-card ECDSA P-256), and a tearing-safe
 * non-volatile memory kept in one image file.
 *
 * A card is opened on an image, powered on (ATR), fed command APDUs one at a
 * time and powered off. Its RAM state (secure channel sessions, selections,
 * logical channels) is lost on power-off and reset, as on a card; its NVM
 * state is committed atomically by every state-changing command.
 *
 * Must never: return a private key or a static SCP03 key through any command
 * or through tc_se_describe(); allocate on the heap while processing an APDU
 * (only tc_se_open*() and tc_se_close() allocate; OpenSSL's own internals
 * during EC key generation and signing are outside that rule).
 */
#ifndef TRUSTCHAIN_SE_H
#define TRUSTCHAIN_SE_H

#include <trustchain/core.h>
#include <trustchain/transport.h>

/* ------------------------------------------------------------------ sizes */

#define TC_SE_EID_LEN      16u /* GSMA SGP.22 EID: 32 digits as 16 bytes */
#define TC_SE_AID_MIN      5u  /* ISO/IEC 7816-5 */
#define TC_SE_AID_MAX      16u
#define TC_SE_KDD_LEN      10u /* key diversification data (INITIALIZE UPDATE) */
#define TC_SE_MAX_KEY      32u /* AES-256 */
#define TC_SE_MAX_KEYSETS  8u
#define TC_SE_MAX_CERT     2048u /* identity certificate, DER */
#define TC_SE_MAX_PROFILE  1024u /* STORE DATA profile objects, total */
#define TC_SE_MAX_IIN      16u
#define TC_SE_MAX_CIN      16u
#define TC_SE_CPLC_LEN     42u       /* Card Production Life Cycle data, GET DATA 9F7F */
#define TC_SE_MAX_CHANNELS 20u       /* logical channels 0-19 (ISO/IEC 7816-4 §5.4.1) */
#define TC_SE_EC_PUB_LEN   65u       /* uncompressed P-256 point 04 || X || Y */
#define TC_SE_SEQ_MAX      0xFFFFFFu /* SCP03 sequence counter is 3 bytes */
/* Largest command APDU the card accepts (extended form; ISO chaining may
 * assemble up to TC_SE_MAX_CMD_DATA bytes of data). */
#define TC_SE_MAX_CMD_DATA 2304u
#define TC_SE_MAX_COMMAND  (4u + 3u + TC_SE_MAX_CMD_DATA + 2u)
/* tc_se_process() needs a response buffer of at least this many bytes. */
#define TC_SE_MAX_RESPONSE (TC_SE_MAX_CERT + 64u + 2u)
#define TC_SE_ATR_MAX      33u
/* One card's whole memory (NVM mirror + RAM context) is at most this; the
 * implementation asserts it at compile time. */
#define TC_SE_CARD_MAX_SIZE 16384u

/* ------------------------------------------------------------------ life cycle */

/* GP Card Specification 2.3 §5.1.1, Table 11-5: card life cycle coding. */
enum tc_se_life_cycle {
    TC_SE_LC_OP_READY = 0x01,
    TC_SE_LC_INITIALIZED = 0x07,
    TC_SE_LC_SECURED = 0x0F,
    TC_SE_LC_CARD_LOCKED = 0x7F,
    TC_SE_LC_TERMINATED = 0xFF
};
/* "OP_READY", "SECURED", ...; "UNKNOWN" for anything else. */
const char *tc_se_life_cycle_name(uint8_t lc);

/* GP Card Specification 2.3 §5.3.1, Table 11-7: application life cycle. */
#define TC_SE_APP_INSTALLED  0x03u
#define TC_SE_APP_SELECTABLE 0x07u
#define TC_SE_APP_LOCKED     0x80u /* b8, added to the state it locks */
/* Identity applet specific state (GP: b4-b7 application specific): it holds
 * a key pair and a certificate. */
#define TC_SE_APP_PERSONALIZED 0x0Fu

/* ------------------------------------------------------------------ identity applet */

/* The identity applet (docs/identity-applet.md). Proprietary, unregistered
 * AID (ISO/IEC 7816-5 category F): "F0" "trustch" 01 01. */
#define TC_SE_IDENTITY_AID      0xF0, 0x74, 0x72, 0x75, 0x73, 0x74, 0x63, 0x68, 0x01, 0x01
#define TC_SE_IDENTITY_AID_LEN  10u
#define TC_SE_IDENTITY_ELF      0xF0, 0x74, 0x72, 0x75, 0x73, 0x74, 0x63, 0x68, 0x01
#define TC_SE_IDENTITY_ELF_LEN  9u
#define TC_SE_ID_CLA            0x80u /* 0x84 with secure messaging */
#define TC_SE_ID_INS_GENERATE   0x40u /* P1 00 create, 01 replace, 02 pending; data nonce */
#define TC_SE_ID_INS_GET_PUBLIC 0x42u /* P1 00 active, 01 pending */
#define TC_SE_ID_INS_STORE_CERT 0x44u /* P1 b8 last block, P2 block number */
#define TC_SE_ID_INS_GET_CERT   0x46u /* P1 P2 = offset */
#define TC_SE_ID_INS_GET_EID    0x48u
#define TC_SE_ID_INS_SIGN       0x2Au /* P1 9E P2 9A, data = SHA-256 digest */
#define TC_SE_ID_GEN_REPLACE    0x01u
/* GENERATE KEY P1 02: a renewal key pair beside the active one; the
 * certificate for it (STORE CERTIFICATE) promotes it to active. */
#define TC_SE_ID_GEN_PENDING   0x02u
#define TC_SE_ID_PUB_PENDING   0x01u /* GET PUBLIC KEY P1: the pending key */
#define TC_SE_ID_NONCE_MIN     8u
#define TC_SE_ID_NONCE_MAX     64u
#define TC_SE_ID_TAG_PUBLIC    0x86u /* response: 86 41 04||X||Y */
#define TC_SE_ID_TAG_SIGNATURE 0x9Eu /* response: 9E LL DER ECDSA signature */

/* GET DATA tags the ISD answers besides GP's (docs/se.md). */
#define TC_SE_TAG_EID        0x5Au   /* GET DATA 00 5A: 5A 10 EID */
#define TC_SE_TAG_EID_GSMA   0xBF3Eu /* GET DATA BF 3E: BF3E 12 5A 10 EID (SGP.22) */
#define TC_SE_TAG_LIFE_CYCLE 0x9F70u /* GET DATA 9F 70: 9F70 01 card life cycle */

/* ------------------------------------------------------------------ creation */

/* How a card is shipped: what `trustchain se new` writes. */
struct tc_se_params {
    uint8_t eid[TC_SE_EID_LEN];
    uint8_t isd_aid[TC_SE_AID_MAX];
    size_t isd_aid_len;
    /* The factory (transport) keyset: one KVN, three AES keys of one length. */
    uint8_t kvn;
    size_t key_len; /* 16, 24 or 32 */
    uint8_t key_enc[TC_SE_MAX_KEY];
    uint8_t key_mac[TC_SE_MAX_KEY];
    uint8_t key_dek[TC_SE_MAX_KEY];
    uint8_t i_param;            /* SCP03 i (GP Amendment D §5.1) */
    uint8_t kdd[TC_SE_KDD_LEN]; /* key diversification data */
    uint32_t seq;               /* initial sequence counter, <= TC_SE_SEQ_MAX */
};

/*
 * Defaults as SE vendors ship evaluation cards: ISD AID A000000151000000,
 * KVN 0x30 with the GP test keys 404142...4F for ENC, MAC and DEK, i = 0x70
 * (S8, pseudo-random card challenge, R-MAC and R-ENC supported), EID
 * 89049032123451234512345678901235 (the GSMA SGP.02/SGP.22 example), KDD = the last 10
 * bytes of the EID, sequence counter 0. Never fails.
 */
void tc_se_params_default(struct tc_se_params *p);
/* Wipes the keys in p. */
void tc_se_params_wipe(struct tc_se_params *p);

#define TC_SE_CREATE_FORCE 0x1u /* replace an existing file */

/* Write a fresh card image (OP_READY, identity applet SELECTABLE, no key
 * pair). Refuses (TC_ERR_STATE) to replace an existing file unless
 * TC_SE_CREATE_FORCE; the file is created mode 0600 and written through a
 * temporary file and rename, so a crash never leaves half an image. */
TC_MUST_CHECK tc_err tc_se_create(const char *path, const struct tc_se_params *p, unsigned flags);

/* ------------------------------------------------------------------ a card */

struct tc_se_card;

#define TC_SE_OPEN_NO_FSYNC 0x1u /* commit without fsync (benchmarks, load tests) */

/* Open a card on its image; the card starts powered off. The image is
 * validated (checksums, every length and state); TC_ERR_FORMAT if neither
 * copy is intact. The card keeps the file open until tc_se_close(). */
TC_MUST_CHECK tc_err tc_se_open(const char *path, unsigned flags, struct tc_se_card **out);
/* A card whose NVM lives in memory only (nothing is written anywhere): for
 * load tests holding thousands of cards. */
TC_MUST_CHECK tc_err tc_se_open_mem(const struct tc_se_params *p, struct tc_se_card **out);
/* NULL is fine. Wipes the whole card memory. */
void tc_se_close(struct tc_se_card *card);

/* Cold power-on: RAM state cleared, basic channel opened with the default
 * selected application (the ISD). Returns the ATR (T=1 only). */
TC_MUST_CHECK tc_err tc_se_power_on(struct tc_se_card *card, uint8_t *atr, size_t atr_size,
                                    size_t *atr_len);
/* Power off: every session key wiped, channels closed. */
void tc_se_power_off(struct tc_se_card *card);
/* Warm reset: as power off followed by power on. */
TC_MUST_CHECK tc_err tc_se_reset(struct tc_se_card *card, uint8_t *atr, size_t atr_size,
                                 size_t *atr_len);
bool tc_se_powered(const struct tc_se_card *card);

/*
 * Process one command APDU (short or extended) and produce its response
 * (data + SW1 SW2) in resp; resp_size must be >= TC_SE_MAX_RESPONSE. Every
 * malformed or refused command is answered with a status word (TC_OK).
 * TC_ERR_IO when the card is not powered or lost power in an NVM write (it
 * then answers nothing until powered on again, which reloads the NVM).
 * TC_ERR_ARG for NULL arguments or a small resp buffer. No heap allocation.
 */
TC_MUST_CHECK tc_err tc_se_process(struct tc_se_card *card, const uint8_t *cmd, size_t cmd_len,
                                   uint8_t *resp, size_t resp_size, size_t *resp_len);

/* The in-process link: transmit = tc_se_process, reset = tc_se_reset, close
 * powers the card off (the caller still owns the card). Powers the card on
 * if it is off. */
TC_MUST_CHECK tc_err tc_se_transport(struct tc_se_card *card, struct tc_transport *out);
/* Open an image and return a link that owns the card (close closes it). */
TC_MUST_CHECK tc_err tc_se_transport_open(const char *path, unsigned flags,
                                          struct tc_transport *out);

/* ------------------------------------------------------------------ what is safe to print */

struct tc_se_keyset_info {
    uint8_t kvn;
    uint8_t key_type; /* 0x88 AES (GP Card Specification 2.3 Table 11-16) */
    uint8_t key_len;
    uint8_t kcv[3][3]; /* ENC, MAC, DEK key check values */
};

struct tc_se_info {
    uint8_t eid[TC_SE_EID_LEN];
    uint8_t isd_aid[TC_SE_AID_MAX];
    size_t isd_aid_len;
    uint8_t life_cycle;
    uint8_t i_param;
    uint8_t kdd[TC_SE_KDD_LEN];
    uint32_t seq;
    uint8_t iin[TC_SE_MAX_IIN];
    size_t iin_len;
    uint8_t cin[TC_SE_MAX_CIN];
    size_t cin_len;
    size_t nkeysets;
    struct tc_se_keyset_info keysets[TC_SE_MAX_KEYSETS];
    size_t profile_len; /* bytes of STORE DATA profile objects held */
    /* The identity applet. */
    bool applet_present;
    uint8_t applet_aid[TC_SE_AID_MAX];
    size_t applet_aid_len;
    uint8_t applet_state;
    bool has_key;
    uint8_t public_key[TC_SE_EC_PUB_LEN];
    bool has_pending; /* a renewal key pair waits for its certificate */
    uint8_t pending_public_key[TC_SE_EC_PUB_LEN];
    bool has_cert;
    size_t cert_len;
    uint8_t cert_sha256[32];
    uint8_t cert_serial[20]; /* X.509 serialNumber, big-endian, if it parses */
    size_t cert_serial_len;
    uint64_t nvm_generation; /* commits since creation */
};

/* Describe a card image (or an open card) without ever copying a key. */
TC_MUST_CHECK tc_err tc_se_describe(const char *path, struct tc_se_info *out);
TC_MUST_CHECK tc_err tc_se_card_describe(const struct tc_se_card *card, struct tc_se_info *out);

#endif
