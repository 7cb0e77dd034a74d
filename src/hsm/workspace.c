/*
 * The HSM's place in a workspace: SoftHSM2's own config and token
 * directory (never /etc/softhsm), token initialisation over PKCS#11, and
 * PIN sources (environment or file, never argv).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsm/hsm_int.h"

static tc_err path_join(char *out, size_t size, const char *a, const char *b)
{
    int w = snprintf(out, size, "%s/%s", a, b);
    TC_ENSURE_MSG(w > 0 && (size_t)w < size, TC_ERR_RANGE, "path too long: %s/%s", a, b);
    return TC_OK;
}

static tc_err mkdir_private(const char *path)
{
    if (mkdir(path, 0700) == 0)
        return TC_OK;
    TC_ENSURE_MSG(errno == EEXIST, TC_ERR_IO, "cannot create directory '%s': %s", path,
                  strerror(errno));
    struct stat st;
    TC_ENSURE_MSG(stat(path, &st) == 0 && S_ISDIR(st.st_mode), TC_ERR_IO,
                  "'%s' exists and is not a directory", path);
    return TC_OK;
}

static tc_err write_file(const char *path, const char *text)
{
    tc_err ret = TC_ERR_INTERNAL;
    char tmp[TC_HSM_PATH_MAX];
    int w = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    TC_ENSURE(w > 0 && (size_t)w < sizeof tmp, TC_ERR_RANGE);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    TC_CHECK_MSG(n >= 0 && (size_t)n == len, TC_ERR_IO, "cannot write '%s'", tmp);
    TC_CHECK_MSG(fsync(fd) == 0, TC_ERR_IO, "cannot sync '%s'", tmp);
    TC_CHECK_MSG(close(fd) == 0, TC_ERR_IO, "cannot close '%s'", tmp);
    fd = -1;
    TC_CHECK_MSG(rename(tmp, path) == 0, TC_ERR_IO, "cannot rename '%s': %s", tmp, strerror(errno));
    ret = TC_OK;
out:
    if (fd >= 0) {
        (void)close(fd);
        (void)unlink(tmp);
    }
    return ret;
}

static tc_err label_ok(const char *label)
{
    size_t n = strlen(label);
    /* PKCS#11 2.40 §3.2 CK_TOKEN_INFO: the label is 32 blank-padded chars. */
    TC_ENSURE_MSG(n > 0 && n <= 32, TC_ERR_RANGE, "token label must be 1 to 32 characters");
    for (size_t i = 0; i < n; i++)
        TC_ENSURE_MSG(label[i] > 0x20 && label[i] < 0x7f, TC_ERR_FORMAT,
                      "token label must be printable ASCII without spaces");
    return TC_OK;
}

static tc_err ws_paths(const char *abs_ws, struct tc_hsm_workspace *ws)
{
    TC_GUARD(path_join(ws->dir, sizeof ws->dir, abs_ws, "hsm"));
    TC_GUARD(path_join(ws->softhsm_conf, sizeof ws->softhsm_conf, ws->dir, "softhsm2.conf"));
    TC_GUARD(path_join(ws->token_dir, sizeof ws->token_dir, ws->dir, "tokens"));
    return TC_OK;
}

tc_err tc_hsm_workspace_create(const char *workspace, const char *module_path,
                               const char *token_label, struct tc_hsm_workspace *ws)
{
    TC_ENSURE(workspace != NULL && ws != NULL, TC_ERR_ARG);
    memset(ws, 0, sizeof *ws);
    const char *module = module_path != NULL ? module_path : TC_HSM_DEFAULT_MODULE;
    const char *label = token_label != NULL ? token_label : TC_HSM_DEFAULT_TOKEN;
    TC_GUARD(label_ok(label));
    TC_ENSURE_MSG(strlen(module) < sizeof ws->module_path && strchr(module, '\n') == NULL,
                  TC_ERR_RANGE, "module path is too long or has a newline");
    TC_GUARD(mkdir_private(workspace));
    char abs_ws[PATH_MAX];
    TC_ENSURE_MSG(realpath(workspace, abs_ws) != NULL, TC_ERR_IO, "cannot resolve '%s': %s",
                  workspace, strerror(errno));
    TC_GUARD(ws_paths(abs_ws, ws));
    TC_ENSURE_MSG(strchr(ws->dir, '\n') == NULL, TC_ERR_FORMAT, "workspace path has a newline");
    TC_GUARD(mkdir_private(ws->dir));
    TC_GUARD(mkdir_private(ws->token_dir));
    (void)snprintf(ws->module_path, sizeof ws->module_path, "%s", module);
    (void)snprintf(ws->token_label, sizeof ws->token_label, "%s", label);

    /* SoftHSM2 softhsm2.conf(5): its own token directory, file backend. */
    char text[3 * TC_HSM_PATH_MAX];
    int w = snprintf(text, sizeof text,
                     "# SoftHSM2 configuration of this trustchain workspace.\n"
                     "directories.tokendir = %s\n"
                     "objectstore.backend = file\n"
                     "log.level = ERROR\n"
                     "slots.removable = false\n",
                     ws->token_dir);
    TC_ENSURE(w > 0 && (size_t)w < sizeof text, TC_ERR_RANGE);
    TC_GUARD(write_file(ws->softhsm_conf, text));
    char hsmconf[TC_HSM_PATH_MAX];
    TC_GUARD(path_join(hsmconf, sizeof hsmconf, ws->dir, "hsm.conf"));
    w = snprintf(text, sizeof text,
                 "# trustchain HSM of this workspace.\n"
                 "module = %s\n"
                 "token = %s\n",
                 ws->module_path, ws->token_label);
    TC_ENSURE(w > 0 && (size_t)w < sizeof text, TC_ERR_RANGE);
    TC_GUARD(write_file(hsmconf, text));
    return TC_OK;
}

tc_err tc_hsm_workspace_load(const char *workspace, struct tc_hsm_workspace *ws)
{
    TC_ENSURE(workspace != NULL && ws != NULL, TC_ERR_ARG);
    memset(ws, 0, sizeof *ws);
    char abs_ws[PATH_MAX];
    TC_ENSURE_MSG(realpath(workspace, abs_ws) != NULL, TC_ERR_NOT_FOUND,
                  "workspace '%s' does not exist (run 'trustchain hsm init')", workspace);
    TC_GUARD(ws_paths(abs_ws, ws));
    char hsmconf[TC_HSM_PATH_MAX];
    TC_GUARD(path_join(hsmconf, sizeof hsmconf, ws->dir, "hsm.conf"));
    uint8_t buf[2 * TC_HSM_PATH_MAX];
    size_t len = 0;
    tc_err rc = tc_hsm_file_read(hsmconf, buf, sizeof buf, &len);
    TC_ENSURE_MSG(rc != TC_ERR_NOT_FOUND, TC_ERR_NOT_FOUND,
                  "workspace '%s' has no HSM (run 'trustchain hsm init')", workspace);
    TC_GUARD(rc);
    struct tc_cursor c;
    struct tc_hsm_setting st;
    unsigned line = 0;
    tc_cursor_init(&c, buf, len);
    for (;;) {
        rc = tc_hsm_setting_next(&c, &st);
        line += st.line;
        if (rc == TC_ERR_NOT_FOUND)
            break;
        TC_ENSURE_MSG(rc == TC_OK, rc, "%s: %s", hsmconf, tc_error_last()->msg);
        char *dst = NULL;
        size_t cap = 0;
        if (tc_hsm_setting_is(&st, "module")) {
            dst = ws->module_path;
            cap = sizeof ws->module_path;
        } else if (tc_hsm_setting_is(&st, "token")) {
            dst = ws->token_label;
            cap = sizeof ws->token_label;
        }
        TC_ENSURE_MSG(dst != NULL, TC_ERR_FORMAT, "%s:%u: unknown setting '%.*s'", hsmconf, line,
                      (int)st.name_len, st.name);
        TC_ENSURE_MSG(st.value_len > 0 && st.value_len < cap, TC_ERR_FORMAT,
                      "%s:%u: '%.*s' is empty or too long", hsmconf, line, (int)st.name_len,
                      st.name);
        memcpy(dst, st.value, st.value_len);
        dst[st.value_len] = '\0';
    }
    TC_ENSURE_MSG(ws->module_path[0] != '\0' && ws->token_label[0] != '\0', TC_ERR_FORMAT,
                  "%s: module and token must both be set", hsmconf);
    return TC_OK;
}

static void pad_label(CK_UTF8CHAR out[32], const char *label)
{
    memset(out, ' ', 32);
    memcpy(out, label, strlen(label));
}

tc_err tc_hsm_init_token(const char *module_path, const char *softhsm_conf, const char *label,
                         const char *so_pin, size_t so_pin_len, const char *pin, size_t pin_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(label != NULL && so_pin != NULL && pin != NULL, TC_ERR_ARG);
    TC_GUARD(label_ok(label));
    TC_ENSURE_MSG(so_pin_len >= 4 && so_pin_len <= TC_HSM_PIN_MAX && pin_len >= 4 &&
                      pin_len <= TC_HSM_PIN_MAX,
                  TC_ERR_RANGE, "PINs must be 4 to %u characters", TC_HSM_PIN_MAX);
    struct tc_hsm_module *mod = NULL;
    CK_FUNCTION_LIST_PTR f = NULL;
    CK_SLOT_ID *slots = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_SLOT_ID slot = 0;
    TC_GUARD(tc_hsm_module_acquire(module_path != NULL ? module_path : TC_HSM_DEFAULT_MODULE,
                                   softhsm_conf, &mod, &f));
    tc_err rc = tc_hsm_slot_by_label(f, label, &slot);
    if (rc == TC_OK) {
        ret = TC_FAIL(TC_ERR_STATE, "a token labelled '%s' already exists", label);
        goto out;
    }
    if (rc != TC_ERR_NOT_FOUND) {
        ret = rc;
        goto out;
    }
    CK_ULONG n = 0;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_GetSlotList");
        goto out;
    }
    slots = calloc(n + 1, sizeof *slots);
    TC_CHECK(slots != NULL, TC_ERR_NOMEM);
    rv = f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_GetSlotList");
        goto out;
    }
    bool found = false;
    for (CK_ULONG i = 0; i < n && !found; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED) == 0) {
            slot = slots[i];
            found = true;
        }
    }
    TC_CHECK_MSG(found, TC_ERR_NOT_FOUND, "the PKCS#11 module has no free slot for a new token");
    CK_UTF8CHAR padded[32];
    pad_label(padded, label);
    /* PKCS#11 2.40 §5.6 C_InitToken: the SO PIN and the 32-byte label. */
    rv = f->C_InitToken(slot, (CK_UTF8CHAR_PTR)(uintptr_t)so_pin, (CK_ULONG)so_pin_len, padded);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_InitToken");
        goto out;
    }
    /* SoftHSM2 may renumber the slot of a freshly initialised token: find
     * it again by label. */
    extern tc_err tc_hsm_slot_by_label(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot);
    TC_TRY(tc_hsm_slot_by_label(f, label, &slot));
    rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_OpenSession");
        goto out;
    }
    rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)(uintptr_t)so_pin, (CK_ULONG)so_pin_len);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_Login(CKU_SO)");
        goto out;
    }
    /* §5.6 C_InitPIN: the SO sets the normal user's PIN. */
    rv = f->C_InitPIN(s, (CK_UTF8CHAR_PTR)(uintptr_t)pin, (CK_ULONG)pin_len);
    (void)f->C_Logout(s);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_InitPIN");
        goto out;
    }
    ret = TC_OK;
out:
    if (s != CK_INVALID_HANDLE)
        (void)f->C_CloseSession(s);
    free(slots);
    tc_hsm_module_release(mod);
    return ret;
}

tc_err tc_hsm_pin_read(const char *env_name, const char *file, char *pin, size_t pin_size,
                       size_t *pin_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(pin != NULL && pin_len != NULL && pin_size > 1, TC_ERR_ARG);
    *pin_len = 0;
    if (file != NULL) {
        FILE *f = fopen(file, "re");
        TC_ENSURE_MSG(f != NULL, TC_ERR_IO, "cannot read PIN file '%s': %s", file, strerror(errno));
        size_t n = fread(pin, 1, pin_size, f);
        bool err = ferror(f) != 0;
        (void)fclose(f);
        TC_CHECK_MSG(!err, TC_ERR_IO, "cannot read PIN file '%s'", file);
        size_t end = 0;
        while (end < n && pin[end] != '\n' && pin[end] != '\r')
            end++;
        TC_CHECK_MSG(end < pin_size, TC_ERR_RANGE, "PIN in '%s' is longer than %zu characters",
                     file, pin_size - 1);
        TC_CHECK_MSG(end > 0, TC_ERR_FORMAT, "PIN file '%s' is empty", file);
        pin[end] = '\0';
        tc_memzero(pin + end + 1, pin_size - end - 1);
        *pin_len = end;
        return TC_OK;
    }
    const char *env = env_name != NULL ? getenv(env_name) : NULL;
    TC_ENSURE_MSG(env != NULL && env[0] != '\0', TC_ERR_NOT_FOUND,
                  "no PIN given: set %s or pass a PIN file", env_name != NULL ? env_name : "it");
    size_t n = strlen(env);
    TC_ENSURE_MSG(n < pin_size, TC_ERR_RANGE, "PIN in %s is longer than %zu characters", env_name,
                  pin_size - 1);
    memcpy(pin, env, n + 1);
    *pin_len = n;
    return TC_OK;
out:
    tc_memzero(pin, pin_size);
    return ret;
}
