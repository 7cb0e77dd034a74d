/* Shared helpers of the audit tests: deterministic events, scratch
 * directories, opening a log over a fresh SQLite store. */
#ifndef TC_TESTS_AUDIT_UTIL_H
#define TC_TESTS_AUDIT_UTIL_H

#include "harness.h"

#include <dirent.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <trustchain/audit.h>

#define TEST_ORIGIN "trustchain.test/audit"

/* A keys-injected event whose actor names (a, b) and time is t. */
static inline size_t test_event(uint8_t out[TC_AUDIT_EVENT_MAX], unsigned a, unsigned b, uint64_t t)
{
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_KEYS_INJECTED;
    ev.time_ms = 1764201600000ull + t;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR |
                TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
    ev.eid_len = 16;
    for (unsigned i = 0; i < 16; i++)
        ev.eid[i] = (uint8_t)(a * 31 + b + i);
    (void)snprintf(ev.batch, sizeof ev.batch, "B2026-%03u", a % 1000);
    (void)snprintf(ev.station, sizeof ev.station, "line1-st3");
    (void)snprintf(ev.actor, sizeof ev.actor, "t%u-s%u", a, b);
    ev.kvn = 0x30;
    for (unsigned i = 0; i < 9; i++)
        ev.kcv[i / 3][i % 3] = (uint8_t)(b + i);
    size_t n = 0;
    if (tc_audit_event_encode(&ev, out, TC_AUDIT_EVENT_MAX, &n) != TC_OK)
        tc_test_fail_at(__FILE__, __LINE__, "test event did not encode");
    return n;
}

static inline void test_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[8192];
            struct stat st;
            int n = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (n <= 0 || (size_t)n >= sizeof p)
                continue;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                test_rmtree(p);
            else
                (void)unlink(p);
        }
        closedir(d);
    }
    (void)rmdir(dir);
}

static inline bool test_tmpdir(char dir[64])
{
    memcpy(dir, "/tmp/tc-audit-XXXXXX", 21);
    if (mkdtemp(dir) == NULL) {
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp failed");
        return false;
    }
    return true;
}

static inline struct tc_audit_log *test_open_log(const char *db)
{
    struct tc_audit_store s;
    struct tc_audit_log *log = NULL;
    tc_err rc = tc_audit_store_sqlite_open(db, &s);
    if (rc == TC_OK)
        rc = tc_audit_log_open(s, TEST_ORIGIN, &log);
    if (rc != TC_OK) {
        char msg[400];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(__FILE__, __LINE__, "open log %s: %s", db, msg);
        return NULL;
    }
    return log;
}

static inline void test_verifier(const struct tc_signer *s, struct tc_note_verifier *v)
{
    char vk[TC_NOTE_VKEY_MAX + 1];
    if (tc_note_verifier_key(s, TEST_ORIGIN, vk, sizeof vk) != TC_OK ||
        tc_note_verifier_parse(vk, v) != TC_OK)
        tc_test_fail_at(__FILE__, __LINE__, "verifier key");
}

#endif
