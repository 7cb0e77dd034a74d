/*
 * hsm internals: the loaded module, the token and the session pool.
 */
#ifndef TC_HSM_INT_H
#define TC_HSM_INT_H

#include <pthread.h>

#include <p11-kit/pkcs11.h>

#include <trustchain/hsm.h>

struct tc_hsm_module; /* one per loaded module path, shared and refcounted */

#define TC_HSM_WORK_MAX 32u /* token keys with a working copy per handle */

struct tc_hsm {
    struct tc_hsm_module *mod;
    CK_FUNCTION_LIST_PTR f;
    CK_SLOT_ID slot;
    bool logged_in;
    bool login_claimed; /* this handle holds the process's login to slot */
    /* The pool: `n` read-write sessions opened once; `free_stack` holds the
     * idle ones. Acquire blocks on `cv` while all are in use. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n;
    unsigned n_free;
    CK_SESSION_HANDLE sessions[TC_HSM_MAX_POOL];
    CK_SESSION_HANDLE free_stack[TC_HSM_MAX_POOL];
    /* Mechanism info read once at open. */
    struct {
        CK_MECHANISM_TYPE mech;
        bool known;
        CK_MECHANISM_INFO info;
    } mech_cache[16];
    size_t n_mech_cache;
    pthread_mutex_t mech_mu;
    /* Working copies: a session copy of each token key this handle has
     * found (tc_hsm_find), made once and computed with instead of the token
     * object, so that a module which reloads token objects from storage on
     * every use (SoftHSM2's file store) does not do it per operation. */
    struct {
        CK_OBJECT_HANDLE token;
        CK_OBJECT_HANDLE copy;
        CK_ULONG value_len; /* secret keys: CKA_VALUE_LEN once read, else 0 */
    } work[TC_HSM_WORK_MAX];
    unsigned n_work;
    pthread_mutex_t work_mu;
};

/* The process-wide module list (PKCS#11 2.40 §5.4: one C_Initialize per
 * application): the first user loads and initialises, the last finalises. */
TC_MUST_CHECK tc_err tc_hsm_module_acquire(const char *path, const char *conf,
                                           struct tc_hsm_module **out, CK_FUNCTION_LIST_PTR *f);
void tc_hsm_module_release(struct tc_hsm_module *m);
/* The slot of the initialised token with this label; TC_ERR_NOT_FOUND. */
TC_MUST_CHECK tc_err tc_hsm_slot_by_label(CK_FUNCTION_LIST_PTR f, const char *label,
                                          CK_SLOT_ID *slot);

/* The object to compute with for `o`: its working copy if it has one,
 * else `o` itself. */
CK_OBJECT_HANDLE tc_hsm_work_obj(struct tc_hsm *h, CK_OBJECT_HANDLE o);
/* CKA_VALUE_LEN of secret key `o`: read from the token once for a key with
 * a working copy (a key's length never changes), every time otherwise. */
CK_RV tc_hsm_value_len(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG *len);

CK_SESSION_HANDLE tc_hsm_session_acquire(struct tc_hsm *h);
void tc_hsm_session_release(struct tc_hsm *h, CK_SESSION_HANDLE s);

/* Records TC_ERR_HSM (or a mapped code) naming the call and CKR_ value. */
tc_err tc_hsm_fail_rv(const char *file, int line, CK_RV rv, const char *what);
#define TC_HSM_FAIL_RV(rv, what) tc_hsm_fail_rv(__FILE__, __LINE__, (rv), (what))

/* SHA-256 or SHA-384, fetched once per process (never freed: it lives as
 * long as the process). NULL if OpenSSL lacks it. */
typedef struct evp_md_st EVP_MD;
const EVP_MD *tc_hsm_md(bool sha384);

/* CKA_ID for a label: SHA-256(label)[0..7]. */
TC_MUST_CHECK tc_err tc_hsm_label_id(const char *label, uint8_t id[static TC_HSM_ID_LEN]);
/* Printable ASCII, 1..TC_HSM_LABEL_MAX bytes. */
TC_MUST_CHECK tc_err tc_hsm_label_check(const char *label);

/* Find objects with `label` and class; *count is how many (up to max). */
TC_MUST_CHECK tc_err tc_hsm_find_all(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                                     const char *label, CK_OBJECT_HANDLE *out, CK_ULONG max,
                                     CK_ULONG *count);

/* Read a whole file into buf (at most cap - 1 bytes; TC_ERR_RANGE if
 * larger, TC_ERR_NOT_FOUND if missing). */
TC_MUST_CHECK tc_err tc_hsm_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len);

/* One "NAME = value" line of a settings file; views into the input. */
struct tc_hsm_setting {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    unsigned line; /* lines consumed by this call */
};
/* Next setting, skipping blank and '#' lines; TC_ERR_NOT_FOUND (not
 * recorded) at the end; TC_ERR_FORMAT for a line that is not NAME = value. */
TC_MUST_CHECK tc_err tc_hsm_setting_next(struct tc_cursor *c, struct tc_hsm_setting *s);
bool tc_hsm_setting_is(const struct tc_hsm_setting *s, const char *name);

/* The point inside CKA_EC_POINT: DER OCTET STRING or bare, point_len
 * bytes; Weierstrass points must be uncompressed (04 || X || Y). */
TC_MUST_CHECK tc_err tc_hsm_ec_point(const uint8_t *p, size_t len, size_t point_len,
                                     bool weierstrass, const uint8_t **key);

/* ECDSA r || s (field bytes each) to DER Ecdsa-Sig-Value. */
TC_MUST_CHECK tc_err tc_hsm_ecdsa_der(const uint8_t *rs, size_t field, uint8_t *out,
                                      size_t out_size, size_t *out_len);

#endif
