/*
 * trustchain hsm: the manufacturing HSM over PKCS#11 2.40. Any module is
 * loaded by path (SoftHSM2 by default, always with its own config file and
 * token directory inside the workspace). One login, a pool of read-write
 * sessions shared by all threads, keys addressed by a documented label
 * scheme, per-device keysets diversified inside the HSM with C_DeriveKey,
 * CMAC / SCP03 KDF / PUT KEY wrapping / KCVs computed by the HSM, and ECDSA /
 * Ed25519 signing behind struct tc_signer.
 *
 * Must never: read a key value out of the HSM, create a master or CA key that
 * is extractable, print or log a PIN, or open and log in a session per
 * operation.
 */
#ifndef TRUSTCHAIN_HSM_H
#define TRUSTCHAIN_HSM_H

#include <trustchain/core.h>
#include <trustchain/crypto.h>

#define TC_HSM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TC_HSM_DEFAULT_TOKEN  "trustchain"
#define TC_HSM_DEFAULT_POOL   4u
#define TC_HSM_MAX_POOL       64u
#define TC_HSM_LABEL_MAX      64u  /* bytes of CKA_LABEL we create */
#define TC_HSM_PIN_MAX        255u /* SoftHSM2's own limit */
#define TC_HSM_PATH_MAX       4096u
#define TC_HSM_EID_LEN        16u /* 32 decimal digits as BCD */
#define TC_HSM_ID_LEN         8u  /* CKA_ID = SHA-256(label)[0..7] */

/* Environment variables the CLI and tools read PINs from (never argv). */
#define TC_HSM_ENV_PIN    "TRUSTCHAIN_HSM_PIN"
#define TC_HSM_ENV_SO_PIN "TRUSTCHAIN_HSM_SO_PIN"

/*
 * Label scheme (CKA_LABEL; docs/hsm.md). Token objects unless noted.
 *   tc:master:<name>                       AES master diversification key
 *   tc:root-ca:<name>                      root CA key pair (its own token)
 *   tc:batch-ca:<batch>                    batch CA key pair
 *   tc:transport:<batch>:<KVN hex>:enc|mac|dek SE vendor transport keyset
 *   tc:audit:checkpoint                    Ed25519 checkpoint key pair
 *   tc:device:<32 EID digits>:enc|mac|dek  derived keyset (session objects)
 */
#define TC_HSM_LABEL_MASTER    "tc:master:"
#define TC_HSM_LABEL_ROOT_CA   "tc:root-ca:"
#define TC_HSM_LABEL_BATCH_CA  "tc:batch-ca:"
#define TC_HSM_LABEL_TRANSPORT "tc:transport:"
#define TC_HSM_LABEL_AUDIT     "tc:audit:checkpoint"
#define TC_HSM_LABEL_DEVICE    "tc:device:"

/* A PKCS#11 object handle (valid in every session of this process). */
typedef unsigned long tc_hsm_obj;

struct tc_hsm; /* module + token + session pool */

struct tc_hsm_config {
    const char *module_path;  /* NULL: TC_HSM_DEFAULT_MODULE */
    const char *softhsm_conf; /* set as SOFTHSM2_CONF before C_Initialize; NULL: leave */
    const char *token_label;  /* NULL: TC_HSM_DEFAULT_TOKEN */
    const char *pin;          /* user PIN; NULL: open without login (info only) */
    size_t pin_len;
    unsigned pool_size; /* read-write sessions; 0: TC_HSM_DEFAULT_POOL */
};

/*
 * Loads the module (dlopen + C_GetFunctionList; C_Initialize with
 * CKF_OS_LOCKING_OK once per process and module), finds the token by label,
 * opens the pool's sessions and logs the user in once.
 * Errors: module missing (TC_ERR_IO), token missing (TC_ERR_NOT_FOUND),
 * wrong PIN (TC_ERR_AUTH), PIN locked (TC_ERR_AUTH), a second handle with
 * a PIN on a token this process is already logged in to (TC_ERR_STATE:
 * share the first handle, it is thread-safe).
 */
TC_MUST_CHECK tc_err tc_hsm_open(const struct tc_hsm_config *cfg, struct tc_hsm **out);
/* Logs out, closes the sessions (destroying session objects), finalises the
 * module when its last user closes. NULL is fine. */
void tc_hsm_close(struct tc_hsm *h);

/* ------------------------------------------------------------ workspace */

/* Where a workspace keeps its HSM: <ws>/hsm/softhsm2.conf, <ws>/hsm/tokens/,
 * and <ws>/hsm/hsm.conf (module path and token label, written by init). */
struct tc_hsm_workspace {
    char dir[TC_HSM_PATH_MAX];          /* absolute <ws>/hsm */
    char softhsm_conf[TC_HSM_PATH_MAX]; /* <ws>/hsm/softhsm2.conf */
    char token_dir[TC_HSM_PATH_MAX];    /* <ws>/hsm/tokens */
    char module_path[TC_HSM_PATH_MAX];
    char token_label[33];
};

/* Creates <ws>/hsm/, <ws>/hsm/tokens/ (mode 0700) and softhsm2.conf and
 * hsm.conf; fills *ws. Existing files are rewritten with the same content;
 * an initialised token directory is left alone. */
TC_MUST_CHECK tc_err tc_hsm_workspace_create(const char *workspace, const char *module_path,
                                             const char *token_label, struct tc_hsm_workspace *ws);
/* Reads <ws>/hsm/hsm.conf; TC_ERR_NOT_FOUND if the workspace has no HSM. */
TC_MUST_CHECK tc_err tc_hsm_workspace_load(const char *workspace, struct tc_hsm_workspace *ws);

/*
 * PKCS#11 §5.6 C_InitToken + C_InitPIN: initialises the first slot whose
 * token is not yet initialised with the SO PIN and label, then sets the user
 * PIN. TC_ERR_STATE if a token with this label already exists.
 */
TC_MUST_CHECK tc_err tc_hsm_init_token(const char *module_path, const char *softhsm_conf,
                                       const char *label, const char *so_pin, size_t so_pin_len,
                                       const char *pin, size_t pin_len);

/* PIN from an environment variable, else from a file (first line, without
 * the newline). TC_ERR_NOT_FOUND if neither gives one. Wipe with
 * tc_memzero. */
TC_MUST_CHECK tc_err tc_hsm_pin_read(const char *env_name, const char *file, char *pin,
                                     size_t pin_size, size_t *pin_len);

/* ------------------------------------------------------------ info */

struct tc_hsm_mech_status {
    const char *name; /* "CKM_AES_CMAC" */
    const char *purpose;
    unsigned long mech;
    bool supported;
};

#define TC_HSM_MECH_COUNT 10u
#define TC_HSM_INFO_SLOTS 8u

struct tc_hsm_info {
    char module_path[TC_HSM_PATH_MAX];
    char manufacturer[33];
    char library[33];
    unsigned version_major, version_minor; /* cryptoki version */
    unsigned long slot_id;
    char token_label[33];
    char token_model[17];
    char token_serial[17];
    bool logged_in;
    unsigned pool_size;
    /* Every slot the module reports (up to TC_HSM_INFO_SLOTS; n_slots is
     * the full count). */
    size_t n_slots;
    struct {
        unsigned long id;
        bool token_present;
        bool initialized;
        char label[33];
    } slots[TC_HSM_INFO_SLOTS];
    struct tc_hsm_mech_status mech[TC_HSM_MECH_COUNT];
};

TC_MUST_CHECK tc_err tc_hsm_info(struct tc_hsm *h, struct tc_hsm_info *info);

/* TC_ERR_UNSUPPORTED ("the PKCS#11 module does not support CKM_x for ...")
 * unless the token offers `mech` (a CKM_ value) with all of `flags` (CKF_).
 * Every operation below checks its mechanism this way first. */
TC_MUST_CHECK tc_err tc_hsm_require_mech(struct tc_hsm *h, unsigned long mech, unsigned long flags,
                                         const char *purpose);

/* ------------------------------------------------------------ objects */

enum tc_hsm_kind {
    TC_HSM_KIND_SECRET = 1,
    TC_HSM_KIND_PRIVATE = 2,
    TC_HSM_KIND_PUBLIC = 3,
    TC_HSM_KIND_OTHER = 4
};

struct tc_hsm_obj_info {
    tc_hsm_obj handle;
    enum tc_hsm_kind kind;
    char label[TC_HSM_LABEL_MAX + 1];
    uint8_t id[32];
    size_t id_len;
    char key_type[24];       /* "AES", "EC", "EC_EDWARDS" ... */
    unsigned long value_len; /* secret keys: bytes; else 0 */
    char curve[16];          /* "P-256", "P-384", "Ed25519", "" */
    bool token, sensitive, extractable, always_sensitive, never_extractable;
    bool encrypt, decrypt, sign, verify, wrap, unwrap, derive;
};

/* The token's objects whose label starts with "tc:" (values never read).
 * Returns how many were found in *n (at most max; TC_ERR_SPACE beyond). */
TC_MUST_CHECK tc_err tc_hsm_list(struct tc_hsm *h, struct tc_hsm_obj_info *out, size_t max,
                                 size_t *n);

/* Exactly one object of the class implied by kind with this label, else
 * TC_ERR_NOT_FOUND ("key 'x' not found") or TC_ERR_STATE (duplicates). */
TC_MUST_CHECK tc_err tc_hsm_find(struct tc_hsm *h, enum tc_hsm_kind kind, const char *label,
                                 tc_hsm_obj *obj);
TC_MUST_CHECK tc_err tc_hsm_destroy(struct tc_hsm *h, tc_hsm_obj obj);

/* ------------------------------------------------------------ symmetric */

/*
 * The master diversification key "tc:master:<name>": a token object,
 * CKA_SENSITIVE, never extractable, usable only for CKA_DERIVE.
 * key_len 16 or 32. Generate inside the HSM, or import once (key ceremony,
 * test vectors) with C_CreateObject; either way it can never be read back.
 */
TC_MUST_CHECK tc_err tc_hsm_master_generate(struct tc_hsm *h, const char *name, size_t key_len,
                                            tc_hsm_obj *obj);
TC_MUST_CHECK tc_err tc_hsm_master_import(struct tc_hsm *h, const char *name, const uint8_t *value,
                                          size_t key_len, tc_hsm_obj *obj);

/* An SCP03 static keyset in the HSM. */
struct tc_hsm_keyset {
    tc_hsm_obj enc, mac, dek;
    size_t key_len;
    bool session; /* derived session objects: destroy with tc_hsm_keyset_destroy */
    /* Derived keysets: the master and EID they come from, to derive the
     * one-off copy that PUT KEY wraps (tc_hsm_wrap_keyset_key). */
    tc_hsm_obj master;
    uint8_t eid[TC_HSM_EID_LEN];
};

/*
 * The SE vendor's per-batch transport keyset, imported once from clear
 * values (the vendor's key file) as token objects
 * "tc:transport:<batch>:<kvn>:enc|mac|dek", non-extractable.
 */
TC_MUST_CHECK tc_err tc_hsm_transport_import(struct tc_hsm *h, const char *batch, uint8_t kvn,
                                             const uint8_t *enc, const uint8_t *mac,
                                             const uint8_t *dek, size_t key_len,
                                             struct tc_hsm_keyset *out);
/* The vendor's key file: lines "ENC = hex", "MAC = hex", "DEK = hex" (each
 * once, 16 or 32 bytes, all the same length; blank lines and '#' comments
 * allowed). TC_ERR_FORMAT names the line. Outputs are wiped on failure;
 * the caller wipes them after import. */
TC_MUST_CHECK tc_err tc_hsm_transport_keyfile_parse(const uint8_t *data, size_t len,
                                                    uint8_t enc[static TC_AES_MAX_KEY],
                                                    uint8_t mac[static TC_AES_MAX_KEY],
                                                    uint8_t dek[static TC_AES_MAX_KEY],
                                                    size_t *key_len);
TC_MUST_CHECK tc_err tc_hsm_transport_keyfile_read(const char *path,
                                                   uint8_t enc[static TC_AES_MAX_KEY],
                                                   uint8_t mac[static TC_AES_MAX_KEY],
                                                   uint8_t dek[static TC_AES_MAX_KEY],
                                                   size_t *key_len);
TC_MUST_CHECK tc_err tc_hsm_transport_find(struct tc_hsm *h, const char *batch, uint8_t kvn,
                                           struct tc_hsm_keyset *out);

/*
 * Per-device diversification (docs/hsm.md): for key type t (1 ENC, 2 MAC,
 * 3 DEK) and n = key_len/16 blocks, block i (1..n) is
 *     D(t, i) = t || (n << 4 | i) || EID as a 14-byte big-endian integer
 * and the key is the whole of AES-ECB(master, D(t,1) || ... || D(t,n)),
 * computed by C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA) so the key is born in
 * the HSM as a session object, sensitive and not extractable: it can be
 * used (CMAC, KCV, the DEK wraps) but never read or wrapped out. PUT KEY
 * carries it with tc_hsm_wrap_keyset_key. eid is the 32-digit EID as 16
 * BCD bytes; a nibble above 9 is TC_ERR_FORMAT. The master must be at
 * least key_len bytes and stay in the token while the keyset is used.
 */
TC_MUST_CHECK tc_err tc_hsm_diversify(struct tc_hsm *h, tc_hsm_obj master,
                                      const uint8_t eid[static TC_HSM_EID_LEN], size_t key_len,
                                      struct tc_hsm_keyset *out);
/*
 * The same keyset with no key derived yet: each key is derived (as by
 * tc_hsm_diversify) the first time tc_hsm_keyset_key asks for it, so a
 * session that never uses a key never makes it. The checks of
 * tc_hsm_diversify (mechanism, EID digits, master length) run now.
 * Destroy with tc_hsm_keyset_destroy, which destroys the keys made.
 */
TC_MUST_CHECK tc_err tc_hsm_diversify_deferred(struct tc_hsm *h, tc_hsm_obj master,
                                               const uint8_t eid[static TC_HSM_EID_LEN],
                                               size_t key_len, struct tc_hsm_keyset *out);
/* Key `type` (TC_HSM_KEY_ENC/MAC/DEK) of a keyset: a deferred key is
 * derived now and kept in ks (ks must be the copy that is destroyed). */
TC_MUST_CHECK tc_err tc_hsm_keyset_key(struct tc_hsm *h, struct tc_hsm_keyset *ks, unsigned type,
                                       tc_hsm_obj *out);
/* The 16-byte derivation data block D(t, i) above (used by the tests'
 * software reference and the docs). */
TC_MUST_CHECK tc_err tc_hsm_diversify_block(const uint8_t eid[static TC_HSM_EID_LEN], uint8_t type,
                                            size_t key_len, size_t index,
                                            uint8_t out[static TC_AES_BLOCK]);
#define TC_HSM_KEY_ENC 1u
#define TC_HSM_KEY_MAC 2u
#define TC_HSM_KEY_DEK 3u

/* The PUT KEY key block (AES-CBC, zero ICV, under `dek`; GP Amendment D
 * §7.2) of one key of a keyset, type TC_HSM_KEY_ENC/MAC/DEK. For a derived
 * keyset the key is derived once more from its master as a session object
 * that is sensitive, extractable and good for nothing else, wrapped and
 * destroyed before this returns; the keyset's own key is never wrapped.
 * A token keyset's key is wrapped as it is (TC_ERR_STATE when it is not
 * extractable, like every key trustchain imports). */
TC_MUST_CHECK tc_err tc_hsm_wrap_keyset_key(struct tc_hsm *h, tc_hsm_obj dek,
                                            const struct tc_hsm_keyset *ks, unsigned type,
                                            uint8_t *out, size_t out_size, size_t *out_len);

/* tc_hsm_wrap_keyset_key, and the KCV (as tc_hsm_kcv) of the key wrapped.
 * For a derived keyset the KCV is computed on the one-off copy, which for
 * this is also allowed to encrypt (the usage the keyset's own key has for
 * its KCV; still no decrypt, sign, wrap or derive), so the keyset's own
 * key need not exist for PUT KEY (docs/hsm.md). */
TC_MUST_CHECK tc_err tc_hsm_wrap_keyset_key_kcv(struct tc_hsm *h, tc_hsm_obj dek,
                                                const struct tc_hsm_keyset *ks, unsigned type,
                                                uint8_t *out, size_t out_size, size_t *out_len,
                                                uint8_t kcv[static TC_KCV_LEN]);

/* Destroys a derived (session) keyset; token keysets are left alone. */
void tc_hsm_keyset_destroy(struct tc_hsm *h, struct tc_hsm_keyset *ks);

/* KCV: first 3 bytes of C_Encrypt(CKM_AES_ECB, key, 16 x 0x01)
 * (GP Card Specification 2.3 §11.8.2.3 / Amendment D §7.2). */
TC_MUST_CHECK tc_err tc_hsm_kcv(struct tc_hsm *h, tc_hsm_obj key, uint8_t kcv[static TC_KCV_LEN]);

/* AES-CMAC by C_Sign(CKM_AES_CMAC) over the concatenated parts. */
TC_MUST_CHECK tc_err tc_hsm_cmac(struct tc_hsm *h, tc_hsm_obj key, const struct tc_iov *parts,
                                 size_t n, uint8_t mac[static TC_CMAC_LEN]);

/* GP Amendment D §6.2.2 data derivation with the PRF computed in the HSM
 * (same layout as tc_scp03_kdf); out_len 8, 16, 24 or 32. The output (session keys,
 * cryptograms) is host memory: wipe it. */
TC_MUST_CHECK tc_err tc_hsm_scp03_kdf(struct tc_hsm *h, tc_hsm_obj key, uint8_t constant,
                                      const uint8_t *context, size_t context_len, uint8_t *out,
                                      size_t out_len);

/*
 * PUT KEY key data: C_WrapKey(CKM_AES_CBC, IV = 16 zero bytes) of `key`
 * under `dek` (GP Amendment D §7.2: AES keys are encrypted with the DEK in
 * CBC mode with a zero ICV). The key must be 16 or 32 bytes (no padding)
 * and extractable: the keys trustchain creates are not (TC_ERR_STATE), so
 * PUT KEY of a derived keyset goes through tc_hsm_wrap_keyset_key.
 */
TC_MUST_CHECK tc_err tc_hsm_wrap(struct tc_hsm *h, tc_hsm_obj dek, tc_hsm_obj key, uint8_t *out,
                                 size_t out_size, size_t *out_len);

/* ------------------------------------------------------------ signing */

/*
 * Generates a signature key pair as token objects under `label` (both
 * halves share CKA_LABEL and CKA_ID): private half CKA_SENSITIVE, never
 * extractable, CKA_SIGN only. P-256/P-384 by CKM_EC_KEY_PAIR_GEN, Ed25519 by
 * CKM_EC_EDWARDS_KEY_PAIR_GEN. TC_ERR_STATE if the label is taken.
 */
TC_MUST_CHECK tc_err tc_hsm_keypair_generate(struct tc_hsm *h, enum tc_sig_alg alg,
                                             const char *label, tc_hsm_obj *priv, tc_hsm_obj *pub);

/* The public half as SubjectPublicKeyInfo DER (RFC 5480 / RFC 8410). */
TC_MUST_CHECK tc_err tc_hsm_public_key(struct tc_hsm *h, tc_hsm_obj pub, uint8_t *out,
                                       size_t out_size, size_t *out_len);

/*
 * A struct tc_signer over the key pair with this label. ECDSA hashes on the
 * host (the hash is public) and signs with CKM_ECDSA, returning DER; Ed25519
 * signs the whole message with CKM_EDDSA. Free with tc_hsm_signer_free
 * before closing the HSM.
 */
TC_MUST_CHECK tc_err tc_hsm_signer(struct tc_hsm *h, const char *label, struct tc_signer *out);
void tc_hsm_signer_free(struct tc_signer *s);

/* ------------------------------------------------------------ SCP03 */

/*
 * The SCP03 host's key provider (struct tc_scp03_key_provider, scp03.h)
 * over HSM keysets: session keys and pseudo-random card challenges by
 * tc_hsm_scp03_kdf, KCVs by tc_hsm_kcv (or, for a key it wraps, with its
 * block: tc_hsm_wrap_keyset_key_kcv), PUT KEY blocks by C_WrapKey under
 * this provider's DEK of a key held by another HSM provider on the same
 * token. Static keys never leave the HSM. Keysets are named by KVN; a KVN
 * without a keyset is TC_ERR_NOT_FOUND.
 */
#define TC_HSM_SCP03_KEYSETS 4u
struct tc_scp03_key_provider;
struct tc_hsm_scp03_provider {
    struct tc_hsm *h;
    struct {
        uint8_t kvn;
        struct tc_hsm_keyset ks;
        /* KCVs the provider has computed (bit id-1 set), by kcv() or with
         * the key's PUT KEY block: a key's KCV is computed once per keyset,
         * however often it is asked for. */
        uint8_t kcv[3][TC_KCV_LEN];
        unsigned kcv_known;
    } sets[TC_HSM_SCP03_KEYSETS];
    size_t n;
};
/* Empties m and points p at it (p->ctx = m). The keysets stay owned by the
 * caller (destroy derived ones with tc_hsm_keyset_destroy). */
void tc_hsm_scp03_provider_init(struct tc_hsm_scp03_provider *m, struct tc_hsm *h,
                                struct tc_scp03_key_provider *p);
/* Add (or replace, same KVN) a keyset; TC_ERR_NOMEM when full. */
TC_MUST_CHECK tc_err tc_hsm_scp03_provider_add(struct tc_hsm_scp03_provider *m, uint8_t kvn,
                                               const struct tc_hsm_keyset *ks);
/* The provider's own copy of keyset `kvn` (NULL if none). A deferred
 * keyset (tc_hsm_diversify_deferred) gets its keys in this copy as they
 * are used: destroy this one, not the one given to _add. */
struct tc_hsm_keyset *tc_hsm_scp03_provider_keyset(struct tc_hsm_scp03_provider *m, uint8_t kvn);

/* ------------------------------------------------------------ errors */

/* A PKCS#11 return value's name ("CKR_PIN_INCORRECT"). */
const char *tc_hsm_rv_name(unsigned long rv);

#endif
