/*
 * PKCS#11 module loading, the token, the session pool, mechanism checks and
 * object lookup.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "hsm/hsm_int.h"

/* ------------------------------------------------------------ rv names */

struct rv_name {
    CK_RV rv;
    const char *name;
};

static const struct rv_name rv_names[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_CANCEL, "CKR_CANCEL"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_DATA_INVALID, "CKR_DATA_INVALID"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE"},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
    {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID"},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID"},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID"},
    {CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
    {CKR_CANT_LOCK, "CKR_CANT_LOCK"},
};

const char *tc_hsm_rv_name(unsigned long rv)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(rv_names); i++)
        if (rv_names[i].rv == rv)
            return rv_names[i].name;
    return "CKR_(vendor or unknown)";
}

tc_err tc_hsm_fail_rv(const char *file, int line, CK_RV rv, const char *what)
{
    tc_err code = TC_ERR_HSM;
    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
    case CKR_USER_NOT_LOGGED_IN:
        code = TC_ERR_AUTH;
        break;
    case CKR_MECHANISM_INVALID:
    case CKR_FUNCTION_NOT_SUPPORTED:
        code = TC_ERR_UNSUPPORTED;
        break;
    case CKR_KEY_UNEXTRACTABLE:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_ATTRIBUTE_SENSITIVE:
    case CKR_KEY_NOT_WRAPPABLE:
        code = TC_ERR_STATE;
        break;
    case CKR_BUFFER_TOO_SMALL:
        code = TC_ERR_SPACE;
        break;
    default:
        break;
    }
    return tc_fail(code, file, line, "%s failed: %s (0x%lx)", what, tc_hsm_rv_name(rv),
                   (unsigned long)rv);
}

/* ------------------------------------------------------------ modules */

/*
 * PKCS#11 2.40 §5.4: C_Initialize may be called once per application; a
 * module loaded twice by dlopen is the same library. Modules are therefore
 * kept in a process-wide list, initialised by the first user and finalised
 * by the last.
 */
struct tc_hsm_module {
    struct tc_hsm_module *next;
    char path[TC_HSM_PATH_MAX];
    char conf[TC_HSM_PATH_MAX];
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    unsigned refs;
    /* Slots this process is logged in to through a tc_hsm. PKCS#11 2.40
     * §5.6: login state belongs to the application, so a second handle
     * could neither verify its PIN (C_Login answers
     * CKR_USER_ALREADY_LOGGED_IN) nor log out without logging out the
     * first. One logged-in handle per token, then. */
    CK_SLOT_ID login_slots[16];
    size_t n_login;
};

static pthread_mutex_t modules_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tc_hsm_module *modules;

static tc_err login_claim(struct tc_hsm_module *m, CK_SLOT_ID slot, const char *label)
{
    tc_err ret = TC_OK;
    (void)pthread_mutex_lock(&modules_mu);
    for (size_t i = 0; i < m->n_login; i++) {
        if (m->login_slots[i] == slot) {
            ret = TC_FAIL(TC_ERR_STATE,
                          "token '%s' is already open with a login in this process; share "
                          "that handle",
                          label);
            goto out;
        }
    }
    if (m->n_login >= TC_ARRAY_LEN(m->login_slots)) {
        ret = TC_FAIL(TC_ERR_NOMEM, "too many tokens logged in at once");
        goto out;
    }
    m->login_slots[m->n_login++] = slot;
out:
    (void)pthread_mutex_unlock(&modules_mu);
    return ret;
}

static void login_release(struct tc_hsm_module *m, CK_SLOT_ID slot)
{
    (void)pthread_mutex_lock(&modules_mu);
    for (size_t i = 0; i < m->n_login; i++) {
        if (m->login_slots[i] == slot) {
            m->login_slots[i] = m->login_slots[--m->n_login];
            break;
        }
    }
    (void)pthread_mutex_unlock(&modules_mu);
}

tc_err tc_hsm_module_acquire(const char *path, const char *conf, struct tc_hsm_module **out,
                             CK_FUNCTION_LIST_PTR *f)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_hsm_module *m = NULL;
    const char *want_conf = conf != NULL ? conf : "";
    TC_ENSURE(strlen(path) < TC_HSM_PATH_MAX && strlen(want_conf) < TC_HSM_PATH_MAX, TC_ERR_RANGE);
    (void)pthread_mutex_lock(&modules_mu);
    for (m = modules; m != NULL; m = m->next) {
        if (strcmp(m->path, path) == 0)
            break;
    }
    if (m != NULL) {
        /* A module in use is shared, never freed here. SOFTHSM2_CONF is
         * read once, at C_Initialize. */
        struct tc_hsm_module *shared = m;
        m = NULL;
        TC_CHECK_MSG(conf == NULL || strcmp(shared->conf, want_conf) == 0, TC_ERR_STATE,
                     "PKCS#11 module '%s' is already in use with another configuration", path);
        shared->refs++;
        *out = shared;
        *f = shared->f;
        ret = TC_OK;
        goto out;
    }
    m = calloc(1, sizeof *m);
    TC_CHECK(m != NULL, TC_ERR_NOMEM);
    (void)snprintf(m->path, sizeof m->path, "%s", path);
    (void)snprintf(m->conf, sizeof m->conf, "%s", want_conf);
    /* RTLD_NODELETE: the module stays mapped after the last dlclose, so
     * that its own exit-time code and any diagnostics of memory it
     * allocated (valgrind, LeakSanitizer) still find it. */
    m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (m->dl == NULL) {
        const char *why = dlerror();
        ret = TC_FAIL(TC_ERR_IO, "cannot load PKCS#11 module '%s': %s", path,
                      why != NULL ? why : "dlopen failed");
        goto out;
    }
    /* PKCS#11 2.40 §5.2: C_GetFunctionList is the one exported entry. */
    CK_C_GetFunctionList get = NULL;
    void *sym = dlsym(m->dl, "C_GetFunctionList");
    TC_CHECK_MSG(sym != NULL, TC_ERR_IO, "'%s' is not a PKCS#11 module (no C_GetFunctionList)",
                 path);
    memcpy(&get, &sym, sizeof get);
    CK_RV rv = get(&m->f);
    if (rv != CKR_OK || m->f == NULL) {
        ret = TC_HSM_FAIL_RV(rv, "C_GetFunctionList");
        goto out;
    }
    if (conf != NULL && setenv("SOFTHSM2_CONF", conf, 1) != 0) {
        ret = TC_FAIL(TC_ERR_IO, "cannot set SOFTHSM2_CONF");
        goto out;
    }
    /* §5.4 C_Initialize: CKF_OS_LOCKING_OK lets the module use native locks
     * because the pool calls it from several threads. */
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    rv = m->f->C_Initialize(&args);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_Initialize");
        goto out;
    }
    m->refs = 1;
    m->next = modules;
    modules = m;
    *out = m;
    *f = m->f;
    m = NULL;
    ret = TC_OK;
out:
    if (m != NULL) {
        if (m->dl != NULL)
            (void)dlclose(m->dl);
        free(m);
    }
    (void)pthread_mutex_unlock(&modules_mu);
    return ret;
}

void tc_hsm_module_release(struct tc_hsm_module *m)
{
    if (m == NULL)
        return;
    (void)pthread_mutex_lock(&modules_mu);
    if (--m->refs == 0) {
        for (struct tc_hsm_module **p = &modules; *p != NULL; p = &(*p)->next) {
            if (*p == m) {
                *p = m->next;
                break;
            }
        }
        (void)m->f->C_Finalize(NULL);
        (void)dlclose(m->dl);
        free(m);
    }
    (void)pthread_mutex_unlock(&modules_mu);
}

/* ------------------------------------------------------------ token */

static void pad_copy(char *dst, size_t dst_size, const CK_UTF8CHAR *src, size_t src_len)
{
    /* PKCS#11 strings are blank-padded, not NUL-terminated. */
    size_t n = src_len < dst_size - 1 ? src_len : dst_size - 1;
    memcpy(dst, src, n);
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

tc_err tc_hsm_slot_by_label(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot)
{
    tc_err ret = TC_ERR_INTERNAL;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetSlotList");
    slots = calloc(n + 1, sizeof *slots);
    TC_CHECK(slots != NULL, TC_ERR_NOMEM);
    rv = f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_GetSlotList");
        goto out;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0)
            continue;
        char have[33];
        pad_copy(have, sizeof have, ti.label, sizeof ti.label);
        if (strcmp(have, label) == 0) {
            *slot = slots[i];
            ret = TC_OK;
            goto out;
        }
    }
    ret = TC_FAIL(TC_ERR_NOT_FOUND, "no initialised token labelled '%s' in the PKCS#11 module",
                  label);
out:
    free(slots);
    return ret;
}

tc_err tc_hsm_open(const struct tc_hsm_config *cfg, struct tc_hsm **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_hsm *h = NULL;
    TC_ENSURE(cfg != NULL && out != NULL, TC_ERR_ARG);
    *out = NULL;
    const char *path = cfg->module_path != NULL ? cfg->module_path : TC_HSM_DEFAULT_MODULE;
    const char *label = cfg->token_label != NULL ? cfg->token_label : TC_HSM_DEFAULT_TOKEN;
    unsigned pool = cfg->pool_size != 0 ? cfg->pool_size : TC_HSM_DEFAULT_POOL;
    TC_ENSURE_MSG(pool <= TC_HSM_MAX_POOL, TC_ERR_RANGE, "session pool of %u exceeds %u", pool,
                  TC_HSM_MAX_POOL);
    TC_ENSURE(cfg->pin == NULL || (cfg->pin_len > 0 && cfg->pin_len <= TC_HSM_PIN_MAX), TC_ERR_ARG);

    h = calloc(1, sizeof *h);
    TC_CHECK(h != NULL, TC_ERR_NOMEM);
    (void)pthread_mutex_init(&h->mu, NULL);
    (void)pthread_cond_init(&h->cv, NULL);
    (void)pthread_mutex_init(&h->mech_mu, NULL);
    (void)pthread_mutex_init(&h->work_mu, NULL);
    TC_TRY(tc_hsm_module_acquire(path, cfg->softhsm_conf, &h->mod, &h->f));
    TC_TRY(tc_hsm_slot_by_label(h->f, label, &h->slot));

    /* PKCS#11 2.40 §5.6: sessions of one application share the login
     * state, so the pool logs in once on its first session. */
    for (unsigned i = 0; i < pool; i++) {
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        CK_RV rv =
            h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_OpenSession");
            goto out;
        }
        h->sessions[h->n++] = s;
        h->free_stack[h->n_free++] = s;
    }
    if (cfg->pin != NULL) {
        TC_TRY(login_claim(h->mod, h->slot, label));
        h->login_claimed = true;
        CK_RV rv = h->f->C_Login(h->sessions[0], CKU_USER, (CK_UTF8CHAR_PTR)(uintptr_t)cfg->pin,
                                 (CK_ULONG)cfg->pin_len);
        if (rv == CKR_PIN_INCORRECT) {
            ret = TC_FAIL(TC_ERR_AUTH, "wrong user PIN for token '%s' (CKR_PIN_INCORRECT)", label);
            goto out;
        }
        if (rv == CKR_PIN_LOCKED) {
            ret = TC_FAIL(TC_ERR_AUTH, "the user PIN of token '%s' is locked (CKR_PIN_LOCKED)",
                          label);
            goto out;
        }
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_Login");
            goto out;
        }
        h->logged_in = true;
    }
    *out = h;
    h = NULL;
    ret = TC_OK;
out:
    tc_hsm_close(h);
    return ret;
}

void tc_hsm_close(struct tc_hsm *h)
{
    if (h == NULL)
        return;
    if (h->f != NULL) {
        /* Working copies are session objects: closing the sessions below
         * destroys them too (PKCS#11 2.40 §4.4); destroyed first anyway,
         * while the login that made them still holds. */
        for (unsigned i = 0; i < h->n_work && h->n > 0; i++)
            if (h->work[i].copy != h->work[i].token)
                (void)h->f->C_DestroyObject(h->sessions[0], h->work[i].copy);
        if (h->logged_in && h->n > 0)
            (void)h->f->C_Logout(h->sessions[0]);
        for (unsigned i = 0; i < h->n; i++)
            (void)h->f->C_CloseSession(h->sessions[i]);
    }
    if (h->login_claimed)
        login_release(h->mod, h->slot);
    tc_hsm_module_release(h->mod);
    (void)pthread_mutex_destroy(&h->mu);
    (void)pthread_cond_destroy(&h->cv);
    (void)pthread_mutex_destroy(&h->mech_mu);
    (void)pthread_mutex_destroy(&h->work_mu);
    free(h);
}

CK_SESSION_HANDLE tc_hsm_session_acquire(struct tc_hsm *h)
{
    (void)pthread_mutex_lock(&h->mu);
    while (h->n_free == 0)
        (void)pthread_cond_wait(&h->cv, &h->mu);
    CK_SESSION_HANDLE s = h->free_stack[--h->n_free];
    (void)pthread_mutex_unlock(&h->mu);
    return s;
}

void tc_hsm_session_release(struct tc_hsm *h, CK_SESSION_HANDLE s)
{
    (void)pthread_mutex_lock(&h->mu);
    h->free_stack[h->n_free++] = s;
    (void)pthread_cond_signal(&h->cv);
    (void)pthread_mutex_unlock(&h->mu);
}

/* ------------------------------------------------------------ mechanisms */

struct mech_want {
    CK_MECHANISM_TYPE mech;
    const char *name;
    CK_FLAGS flags;
    const char *purpose;
};

static const struct mech_want mechs_needed[TC_HSM_MECH_COUNT] = {
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", CKF_GENERATE, "master key generation"},
    {CKM_AES_ECB_ENCRYPT_DATA, "CKM_AES_ECB_ENCRYPT_DATA", CKF_DERIVE, "keyset diversification"},
    {CKM_AES_ECB, "CKM_AES_ECB", CKF_ENCRYPT, "key check values"},
    {CKM_AES_CMAC, "CKM_AES_CMAC", CKF_SIGN, "SCP03 session keys"},
    {CKM_AES_CBC, "CKM_AES_CBC", CKF_WRAP, "PUT KEY key blocks"},
    {CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN", CKF_GENERATE_KEY_PAIR, "CA key generation"},
    {CKM_ECDSA, "CKM_ECDSA", CKF_SIGN, "certificate and CRL signatures"},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, "CKM_EC_EDWARDS_KEY_PAIR_GEN", CKF_GENERATE_KEY_PAIR,
     "checkpoint key generation"},
    {CKM_EDDSA, "CKM_EDDSA", CKF_SIGN, "checkpoint signatures"},
    {CKM_SHA256, "CKM_SHA256", CKF_DIGEST, "(optional) digests"},
};

static const char *mech_name(CK_MECHANISM_TYPE m)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(mechs_needed); i++)
        if (mechs_needed[i].mech == m)
            return mechs_needed[i].name;
    return NULL;
}

static tc_err mech_info(struct tc_hsm *h, CK_MECHANISM_TYPE mech, bool *known,
                        CK_MECHANISM_INFO *info)
{
    tc_err ret = TC_OK;
    (void)pthread_mutex_lock(&h->mech_mu);
    for (size_t i = 0; i < h->n_mech_cache; i++) {
        if (h->mech_cache[i].mech == mech) {
            *known = h->mech_cache[i].known;
            *info = h->mech_cache[i].info;
            goto out;
        }
    }
    memset(info, 0, sizeof *info);
    CK_RV rv = h->f->C_GetMechanismInfo(h->slot, mech, info);
    if (rv == CKR_OK)
        *known = true;
    else if (rv == CKR_MECHANISM_INVALID)
        *known = false;
    else {
        ret = TC_HSM_FAIL_RV(rv, "C_GetMechanismInfo");
        goto out;
    }
    if (h->n_mech_cache < TC_ARRAY_LEN(h->mech_cache)) {
        h->mech_cache[h->n_mech_cache].mech = mech;
        h->mech_cache[h->n_mech_cache].known = *known;
        h->mech_cache[h->n_mech_cache].info = *info;
        h->n_mech_cache++;
    }
out:
    (void)pthread_mutex_unlock(&h->mech_mu);
    return ret;
}

tc_err tc_hsm_require_mech(struct tc_hsm *h, unsigned long mech, unsigned long flags,
                           const char *purpose)
{
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    bool known = false;
    CK_MECHANISM_INFO info;
    TC_GUARD(mech_info(h, mech, &known, &info));
    if (known && (info.flags & flags) == flags)
        return TC_OK;
    const char *name = mech_name(mech);
    if (name != NULL)
        return TC_FAIL(TC_ERR_UNSUPPORTED, "the PKCS#11 module does not support %s for %s", name,
                       purpose != NULL ? purpose : "this operation");
    return TC_FAIL(TC_ERR_UNSUPPORTED, "the PKCS#11 module does not support mechanism 0x%lx for %s",
                   mech, purpose != NULL ? purpose : "this operation");
}

tc_err tc_hsm_info(struct tc_hsm *h, struct tc_hsm_info *info)
{
    TC_ENSURE(h != NULL && info != NULL, TC_ERR_ARG);
    memset(info, 0, sizeof *info);
    CK_INFO ci;
    CK_RV rv = h->f->C_GetInfo(&ci);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetInfo");
    (void)snprintf(info->module_path, sizeof info->module_path, "%s", h->mod->path);
    pad_copy(info->manufacturer, sizeof info->manufacturer, ci.manufacturerID,
             sizeof ci.manufacturerID);
    pad_copy(info->library, sizeof info->library, ci.libraryDescription,
             sizeof ci.libraryDescription);
    info->version_major = ci.cryptokiVersion.major;
    info->version_minor = ci.cryptokiVersion.minor;
    CK_TOKEN_INFO ti;
    rv = h->f->C_GetTokenInfo(h->slot, &ti);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetTokenInfo");
    info->slot_id = h->slot;
    pad_copy(info->token_label, sizeof info->token_label, ti.label, sizeof ti.label);
    pad_copy(info->token_model, sizeof info->token_model, ti.model, sizeof ti.model);
    pad_copy(info->token_serial, sizeof info->token_serial, ti.serialNumber,
             sizeof ti.serialNumber);
    info->logged_in = h->logged_in;
    info->pool_size = h->n;
    CK_SLOT_ID ids[TC_HSM_INFO_SLOTS];
    CK_ULONG nslots = TC_HSM_INFO_SLOTS;
    rv = h->f->C_GetSlotList(CK_FALSE, ids, &nslots);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        /* §5.5: nslots now holds the full count; list the first ones. */
        CK_ULONG all = nslots;
        CK_SLOT_ID *tmp = calloc(all + 1, sizeof *tmp);
        TC_ENSURE(tmp != NULL, TC_ERR_NOMEM);
        rv = h->f->C_GetSlotList(CK_FALSE, tmp, &all);
        if (rv == CKR_OK)
            memcpy(ids, tmp, TC_HSM_INFO_SLOTS * sizeof *ids);
        free(tmp);
        nslots = all;
    }
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetSlotList");
    info->n_slots = nslots;
    for (CK_ULONG i = 0; i < nslots && i < TC_HSM_INFO_SLOTS; i++) {
        CK_SLOT_INFO si;
        CK_TOKEN_INFO sti;
        info->slots[i].id = ids[i];
        if (h->f->C_GetSlotInfo(ids[i], &si) == CKR_OK)
            info->slots[i].token_present = (si.flags & CKF_TOKEN_PRESENT) != 0;
        if (info->slots[i].token_present && h->f->C_GetTokenInfo(ids[i], &sti) == CKR_OK) {
            info->slots[i].initialized = (sti.flags & CKF_TOKEN_INITIALIZED) != 0;
            if (info->slots[i].initialized)
                pad_copy(info->slots[i].label, sizeof info->slots[i].label, sti.label,
                         sizeof sti.label);
        }
    }
    for (size_t i = 0; i < TC_ARRAY_LEN(mechs_needed); i++) {
        bool known = false;
        CK_MECHANISM_INFO mi;
        TC_GUARD(mech_info(h, mechs_needed[i].mech, &known, &mi));
        info->mech[i].name = mechs_needed[i].name;
        info->mech[i].purpose = mechs_needed[i].purpose;
        info->mech[i].mech = mechs_needed[i].mech;
        info->mech[i].supported =
            known && (mi.flags & mechs_needed[i].flags) == mechs_needed[i].flags;
    }
    return TC_OK;
}

/* ------------------------------------------------------------ labels */

tc_err tc_hsm_label_check(const char *label)
{
    TC_ENSURE(label != NULL, TC_ERR_ARG);
    size_t n = strlen(label);
    TC_ENSURE_MSG(n > 0 && n <= TC_HSM_LABEL_MAX, TC_ERR_RANGE, "key label must be 1 to %u bytes",
                  TC_HSM_LABEL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];
        TC_ENSURE_MSG(c > 0x20 && c < 0x7f, TC_ERR_FORMAT,
                      "key label has a character outside printable ASCII at %zu", i);
    }
    return TC_OK;
}

/* Digests fetched once per process (OpenSSL 3: an implicit fetch per
 * EVP_Digest call costs more than hashing a certificate). */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_sha256, *md_sha384;

static void md_fetch(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    md_sha384 = EVP_MD_fetch(NULL, "SHA384", NULL);
}

const EVP_MD *tc_hsm_md(bool sha384)
{
    (void)pthread_once(&md_once, md_fetch);
    return sha384 ? md_sha384 : md_sha256;
}

tc_err tc_hsm_label_id(const char *label, uint8_t id[static TC_HSM_ID_LEN])
{
    uint8_t md[32];
    unsigned int md_len = 0;
    const EVP_MD *sha256 = tc_hsm_md(false);
    TC_ENSURE_MSG(sha256 != NULL, TC_ERR_CRYPTO, "OpenSSL has no SHA-256");
    TC_GUARD_OSSL(EVP_Digest(label, strlen(label), md, &md_len, sha256, NULL));
    memcpy(id, md, TC_HSM_ID_LEN);
    return TC_OK;
}

/* ------------------------------------------------------------ objects */

tc_err tc_hsm_find_all(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                       const char *label, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, (void *)(uintptr_t)label, (CK_ULONG)strlen(label)},
    };
    *count = 0;
    CK_RV rv = h->f->C_FindObjectsInit(s, tmpl, TC_ARRAY_LEN(tmpl));
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_FindObjectsInit");
    rv = h->f->C_FindObjects(s, out, max, count);
    CK_RV rv2 = h->f->C_FindObjectsFinal(s);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_FindObjects");
    if (rv2 != CKR_OK)
        return TC_HSM_FAIL_RV(rv2, "C_FindObjectsFinal");
    return TC_OK;
}

static CK_OBJECT_CLASS kind_class(enum tc_hsm_kind kind)
{
    switch (kind) {
    case TC_HSM_KIND_SECRET:
        return CKO_SECRET_KEY;
    case TC_HSM_KIND_PRIVATE:
        return CKO_PRIVATE_KEY;
    case TC_HSM_KIND_PUBLIC:
        return CKO_PUBLIC_KEY;
    case TC_HSM_KIND_OTHER:
    default:
        return CKO_DATA;
    }
}

/* ------------------------------------------------------------ working copies */

/* The working-copy entry of token key `o`, or n_work; work_mu held. */
static unsigned work_index(const struct tc_hsm *h, CK_OBJECT_HANDLE o)
{
    unsigned i = 0;
    while (i < h->n_work && h->work[i].token != o)
        i++;
    return i;
}

CK_OBJECT_HANDLE tc_hsm_work_obj(struct tc_hsm *h, CK_OBJECT_HANDLE o)
{
    (void)pthread_mutex_lock(&h->work_mu);
    unsigned i = work_index(h, o);
    CK_OBJECT_HANDLE use = i < h->n_work ? h->work[i].copy : o;
    (void)pthread_mutex_unlock(&h->work_mu);
    return use;
}

CK_RV tc_hsm_value_len(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG *len)
{
    (void)pthread_mutex_lock(&h->work_mu);
    unsigned i = work_index(h, o);
    CK_ULONG known = i < h->n_work ? h->work[i].value_len : 0;
    (void)pthread_mutex_unlock(&h->work_mu);
    if (known != 0) {
        *len = known;
        return CKR_OK;
    }
    CK_ATTRIBUTE a = {CKA_VALUE_LEN, len, sizeof *len};
    CK_RV rv = h->f->C_GetAttributeValue(s, o, &a, 1);
    if (rv != CKR_OK)
        return rv;
    (void)pthread_mutex_lock(&h->work_mu);
    i = work_index(h, o);
    if (i < h->n_work)
        h->work[i].value_len = *len;
    (void)pthread_mutex_unlock(&h->work_mu);
    return CKR_OK;
}

/* Give token key `o` a working copy, once. PKCS#11 2.40 §5.7 C_CopyObject:
 * the copy keeps every attribute the template does not name, and it cannot
 * be less protected than its source (§4.10 Table 31: CKA_SENSITIVE cannot
 * go back to FALSE, nor CKA_EXTRACTABLE to TRUE), so the copy is exactly as
 * unreadable and unwrappable as the key. The template names only CKA_TOKEN
 * FALSE (a session object: gone when this handle's sessions close, never
 * written to the token) and an empty CKA_LABEL, so no lookup by label ever
 * finds the copy. A token that refuses (CKA_COPYABLE FALSE, no
 * C_CopyObject) is remembered and its key used as it is. */
static void work_copy(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    static char empty[] = "";
    CK_ATTRIBUTE t[] = {
        {CKA_TOKEN, &(CK_BBOOL){CK_FALSE}, sizeof(CK_BBOOL)},
        {CKA_LABEL, empty, 0},
    };
    (void)pthread_mutex_lock(&h->work_mu);
    if (work_index(h, o) == h->n_work && h->n_work < TC_HSM_WORK_MAX) {
        CK_OBJECT_HANDLE c = CK_INVALID_HANDLE;
        if (h->f->C_CopyObject(s, o, t, TC_ARRAY_LEN(t), &c) != CKR_OK)
            c = o;
        h->work[h->n_work].token = o;
        h->work[h->n_work].copy = c;
        h->work[h->n_work].value_len = 0;
        h->n_work++;
    }
    (void)pthread_mutex_unlock(&h->work_mu);
}

/* Drop the working copy of `o` (it is being destroyed). */
static void work_forget(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    (void)pthread_mutex_lock(&h->work_mu);
    unsigned i = work_index(h, o);
    if (i < h->n_work) {
        if (h->work[i].copy != o)
            (void)h->f->C_DestroyObject(s, h->work[i].copy);
        h->work[i] = h->work[--h->n_work];
    }
    (void)pthread_mutex_unlock(&h->work_mu);
}

tc_err tc_hsm_find(struct tc_hsm *h, enum tc_hsm_kind kind, const char *label, tc_hsm_obj *obj)
{
    TC_ENSURE(h != NULL && obj != NULL, TC_ERR_ARG);
    TC_GUARD(tc_hsm_label_check(label));
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    tc_err rc = tc_hsm_find_all(h, s, kind_class(kind), label, found, 2, &n);
    if (rc == TC_OK && n == 1 && (kind == TC_HSM_KIND_SECRET || kind == TC_HSM_KIND_PRIVATE))
        work_copy(h, s, found[0]);
    tc_hsm_session_release(h, s);
    TC_GUARD(rc);
    TC_ENSURE_MSG(n > 0, TC_ERR_NOT_FOUND, "key '%s' not found in the HSM token", label);
    TC_ENSURE_MSG(n == 1, TC_ERR_STATE, "more than one HSM object is labelled '%s'", label);
    *obj = found[0];
    return TC_OK;
}

tc_err tc_hsm_destroy(struct tc_hsm *h, tc_hsm_obj obj)
{
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    work_forget(h, s, obj);
    CK_RV rv = h->f->C_DestroyObject(s, obj);
    tc_hsm_session_release(h, s);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_DestroyObject");
    return TC_OK;
}

static const char *key_type_name(CK_KEY_TYPE t)
{
    switch (t) {
    case CKK_AES:
        return "AES";
    case CKK_EC:
        return "EC";
    case CKK_EC_EDWARDS:
        return "EC_EDWARDS";
    case CKK_RSA:
        return "RSA";
    case CKK_GENERIC_SECRET:
        return "GENERIC_SECRET";
    case CKK_DES3:
        return "DES3";
    default:
        return "other";
    }
}

/* DER OIDs of the curves we create (CKA_EC_PARAMS). */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
/* PKCS#11 3.0 §2.3.10 also allows the curve name as a PrintableString;
 * SoftHSM2 2.6.1 stores an Ed25519 private key's CKA_EC_PARAMS that way. */
static const uint8_t name_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                       'd',  's',  '2', '5', '5', '1', '9'};

static const char *curve_name(const uint8_t *p, size_t n)
{
    /* Public OIDs, not secrets: a plain comparison through tc_ct_equal
     * keeps checksrc's rule uniform. */
    if (n == sizeof oid_p256 && tc_ct_equal(p, oid_p256, n))
        return "P-256";
    if (n == sizeof oid_p384 && tc_ct_equal(p, oid_p384, n))
        return "P-384";
    if ((n == sizeof oid_ed25519 && tc_ct_equal(p, oid_ed25519, n)) ||
        (n == sizeof name_ed25519 && tc_ct_equal(p, name_ed25519, n)))
        return "Ed25519";
    return "other";
}

static bool get_bool(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {t, &v, sizeof v};
    if (h->f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return false;
    return v == CK_TRUE;
}

static tc_err describe(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                       struct tc_hsm_obj_info *oi)
{
    memset(oi, 0, sizeof *oi);
    oi->handle = o;
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = 0;
    char label[256] = {0};
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, label, sizeof label - 1},
    };
    CK_RV rv = h->f->C_GetAttributeValue(s, o, a, TC_ARRAY_LEN(a));
    /* Objects that are not ours (no label, a label too long for us, or
     * attributes this token hides) are skipped, never an error. */
    if (rv != CKR_OK || a[1].ulValueLen > TC_HSM_LABEL_MAX || a[1].ulValueLen < 3 ||
        strncmp(label, "tc:", 3) != 0)
        return TC_ERR_NOT_FOUND;
    (void)snprintf(oi->label, sizeof oi->label, "%.*s", (int)a[1].ulValueLen, label);
    CK_ATTRIBUTE ida = {CKA_ID, oi->id, sizeof oi->id};
    if (h->f->C_GetAttributeValue(s, o, &ida, 1) == CKR_OK)
        oi->id_len = ida.ulValueLen;
    oi->kind = cls == CKO_SECRET_KEY    ? TC_HSM_KIND_SECRET
               : cls == CKO_PRIVATE_KEY ? TC_HSM_KIND_PRIVATE
               : cls == CKO_PUBLIC_KEY  ? TC_HSM_KIND_PUBLIC
                                        : TC_HSM_KIND_OTHER;
    oi->token = get_bool(h, s, o, CKA_TOKEN);
    if (oi->kind == TC_HSM_KIND_OTHER)
        return TC_OK;
    CK_ATTRIBUTE kta = {CKA_KEY_TYPE, &kt, sizeof kt};
    if (h->f->C_GetAttributeValue(s, o, &kta, 1) == CKR_OK)
        (void)snprintf(oi->key_type, sizeof oi->key_type, "%s", key_type_name(kt));
    if (oi->kind == TC_HSM_KIND_SECRET) {
        CK_ULONG vl = 0;
        CK_ATTRIBUTE vla = {CKA_VALUE_LEN, &vl, sizeof vl};
        if (h->f->C_GetAttributeValue(s, o, &vla, 1) == CKR_OK)
            oi->value_len = vl;
    } else {
        uint8_t params[32];
        CK_ATTRIBUTE pa = {CKA_EC_PARAMS, params, sizeof params};
        if (h->f->C_GetAttributeValue(s, o, &pa, 1) == CKR_OK)
            (void)snprintf(oi->curve, sizeof oi->curve, "%s", curve_name(params, pa.ulValueLen));
    }
    if (oi->kind != TC_HSM_KIND_PUBLIC) {
        oi->sensitive = get_bool(h, s, o, CKA_SENSITIVE);
        oi->extractable = get_bool(h, s, o, CKA_EXTRACTABLE);
        oi->always_sensitive = get_bool(h, s, o, CKA_ALWAYS_SENSITIVE);
        oi->never_extractable = get_bool(h, s, o, CKA_NEVER_EXTRACTABLE);
    }
    oi->encrypt = get_bool(h, s, o, CKA_ENCRYPT);
    oi->decrypt = get_bool(h, s, o, CKA_DECRYPT);
    oi->sign = get_bool(h, s, o, CKA_SIGN);
    oi->verify = get_bool(h, s, o, CKA_VERIFY);
    oi->wrap = get_bool(h, s, o, CKA_WRAP);
    oi->unwrap = get_bool(h, s, o, CKA_UNWRAP);
    oi->derive = get_bool(h, s, o, CKA_DERIVE);
    return TC_OK;
}

static int by_label(const void *a, const void *b)
{
    const struct tc_hsm_obj_info *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    if (c != 0)
        return c;
    return (int)x->kind - (int)y->kind;
}

tc_err tc_hsm_list(struct tc_hsm *h, struct tc_hsm_obj_info *out, size_t max, size_t *n)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(h != NULL && n != NULL && (out != NULL || max == 0), TC_ERR_ARG);
    *n = 0;
    CK_OBJECT_HANDLE batch[32];
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    bool active = false;
    CK_RV rv = h->f->C_FindObjectsInit(s, NULL, 0);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_FindObjectsInit");
        goto out;
    }
    active = true;
    for (;;) {
        CK_ULONG got = 0;
        rv = h->f->C_FindObjects(s, batch, TC_ARRAY_LEN(batch), &got);
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_FindObjects");
            goto out;
        }
        if (got == 0)
            break;
        /* Collect first, describe after C_FindObjectsFinal: no other
         * call is made on a session while its search is active. */
        for (CK_ULONG i = 0; i < got; i++) {
            if (*n >= max) {
                ret = TC_FAIL(TC_ERR_SPACE, "more than %zu objects in the HSM token", max);
                goto out;
            }
            out[(*n)++].handle = batch[i];
        }
    }
    (void)h->f->C_FindObjectsFinal(s);
    active = false;
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        struct tc_hsm_obj_info oi;
        tc_err rc = describe(h, s, out[i].handle, &oi);
        if (rc == TC_ERR_NOT_FOUND)
            continue;
        TC_TRY(rc);
        out[kept++] = oi;
    }
    *n = kept;
    qsort(out, kept, sizeof *out, by_label);
    ret = TC_OK;
out:
    if (active)
        (void)h->f->C_FindObjectsFinal(s);
    tc_hsm_session_release(h, s);
    return ret;
}
