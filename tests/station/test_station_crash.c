/*
 * Crash safety: the station is killed (SIGKILL) at every point of a batch —
 * each station step (tc_station_hooks.point) and the commit and
 * after-commit steps of every audit append (tc_audit_log_set_fault_hook) —
 * and run again. After the second run, for every kill point:
 *   - every device is provisioned exactly once (one SECURED life cycle
 *     event), and the registry's projection rebuilds to what is stored;
 *   - every device has exactly one unrevoked certificate, and it is the one
 *     on the card;
 *   - no acknowledged event is lost: the log at the size acknowledged
 *     before the kill has the same root after the resume.
 * Each run is a child process; the parent only reads the registry.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define CARDS 2

static struct fx F;
static unsigned kill_at, seen;
static int report_fd = -1;
static uint64_t acked_size;
static uint8_t acked_root[TC_AUDIT_HASH_LEN];

static void die_here(void)
{
    char line[128];
    char hex[2 * TC_AUDIT_HASH_LEN + 1];
    if (tc_hex_encode(acked_root, sizeof acked_root, hex, sizeof hex) != TC_OK)
        hex[0] = '\0';
    int n = snprintf(line, sizeof line, "%llu %s\n", (unsigned long long)acked_size, hex);
    if (n > 0 && write(report_fd, line, (size_t)n) != n)
        _exit(90);
    (void)raise(SIGKILL);
}

static void on_point(void *arg, enum tc_station_point p)
{
    (void)arg;
    (void)p;
    struct tc_audit_log *log = tc_registry_log(F.reg);
    acked_size = tc_audit_log_size(log);
    if (acked_size > 0 && tc_audit_log_root(log, acked_size, acked_root) != TC_OK)
        _exit(91);
    if (++seen == kill_at)
        die_here();
}

static void on_audit(void *arg, enum tc_audit_step step)
{
    (void)arg;
    if (step != TC_AUDIT_STEP_COMMIT && step != TC_AUDIT_STEP_COMMITTED)
        return;
    if (++seen == kill_at)
        die_here();
}

/* One station run in a child: 0 all done, 3 finished without reaching the
 * kill point, 1 otherwise. */
static int child_run(bool hooks)
{
    if (fx_hsm_open(&F, NULL) != TC_OK)
        return 10;
    struct tc_station_hooks h = {.point = on_point};
    if (!fx_station(&F, hooks ? &h : NULL))
        return 11;
    if (hooks)
        tc_audit_log_set_fault_hook(tc_registry_log(F.reg), on_audit, NULL);
    struct tc_station_cards cards;
    if (tc_station_emulate_cards(F.cards, CARDS, &cards) != TC_OK)
        return 12;
    struct tc_station_run_opts o = {.jobs = 1};
    struct tc_station_stats s;
    if (tc_station_run(F.st, &cards, &o, &s) != TC_OK)
        return 13;
    if (s.rejected != 0 || s.provisioned + s.already_done != CARDS)
        return 14;
    return hooks ? 3 : 0;
}

static int spawn(bool hooks, int fd)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        report_fd = fd;
        _exit(child_run(hooks));
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    if (WIFSIGNALED(st))
        return WTERMSIG(st) == SIGKILL ? 100 : -2;
    return WEXITSTATUS(st);
}

static void fresh_line(void)
{
    char cmd[1400];
    (void)snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s-wal' '%s-shm'", F.cards, F.reg_path,
                   F.reg_path, F.reg_path);
    if (system(cmd) != 0)
        tc_test_fail_at(__FILE__, __LINE__, "cleanup failed");
    EXPECT_OK(tc_station_emulate_prepare(F.cards, CARDS, FX_PREFIX, TC_STATION_TRANSPORT_KVN,
                                         F.tk[0], F.tk[1], F.tk[2], F.tk_len));
}

static void check_line(unsigned k, uint64_t size, const char *root_hex)
{
    struct tc_registry *reg = NULL;
    EXPECT_OK(tc_registry_open(F.reg_path, NULL, &reg));
    if (reg == NULL)
        return;
    F.reg = reg;
    uint8_t root[TC_AUDIT_HASH_LEN], want[TC_AUDIT_HASH_LEN];
    size_t wl = 0;
    struct tc_audit_log *log = tc_registry_log(reg);
    if (size > 0) {
        EXPECT(tc_audit_log_size(log) >= size);
        EXPECT_OK(tc_hex_decode(root_hex, strlen(root_hex), 0, want, sizeof want, &wl));
        EXPECT_OK(tc_audit_log_root(log, size, root));
        if (wl != sizeof want || memcmp(root, want, sizeof root) != 0)
            tc_test_fail_at(__FILE__, __LINE__, "kill point %u: acknowledged log prefix changed",
                            k);
    }
    EXPECT_OK(tc_registry_check(reg, NULL, NULL));
    for (size_t i = 0; i < CARDS; i++) {
        char eid[33], path[400];
        uint8_t bcd[16];
        struct tc_registry_device d;
        struct tc_se_info info;
        EXPECT_OK(tc_station_emulated_eid(FX_PREFIX, i, eid));
        EXPECT_OK(tc_pki_eid_to_bcd(eid, bcd));
        EXPECT_OK(tc_registry_device_get(reg, bcd, 16, &d));
        (void)snprintf(path, sizeof path, "%s/card-%06zu.img", F.cards, i);
        EXPECT_OK(tc_se_describe(path, &info));
        size_t secured = fx_count(&F, eid, TC_AUDIT_LIFECYCLE_CHANGED);
        size_t open = fx_unrevoked(&F, eid);
        if (d.state != TC_REG_PROVISIONED || secured != 1 || open != 1 || !info.has_cert ||
            info.life_cycle != TC_SE_LC_SECURED || memcmp(info.cert_sha256, d.cert_sha256, 32) != 0)
            tc_test_fail_at(__FILE__, __LINE__,
                            "kill point %u card %zu: state %s, %zu SECURED events, %zu unrevoked "
                            "certificates, card %s with%s its registry certificate",
                            k, i, tc_registry_state_name(d.state), secured, open,
                            tc_se_life_cycle_name(info.life_cycle),
                            memcmp(info.cert_sha256, d.cert_sha256, 32) == 0 ? "" : "out");
    }
    tc_registry_close(reg);
    F.reg = NULL;
}

static void test_kill_everywhere(void)
{
    if (!fx_setup(&F))
        return;
    fx_hsm_close(&F); /* children open their own */
    unsigned points = 0;
    for (unsigned k = 1; k < 1000; k++) {
        fresh_line();
        int fds[2];
        if (pipe(fds) != 0) {
            tc_test_fail_at(__FILE__, __LINE__, "pipe");
            break;
        }
        kill_at = k;
        seen = 0;
        int a = spawn(true, fds[1]);
        (void)close(fds[1]);
        char line[128] = "";
        ssize_t n = read(fds[0], line, sizeof line - 1);
        (void)close(fds[0]);
        line[n > 0 ? n : 0] = '\0';
        if (a == 3)
            break; /* every point has been killed once */
        if (a != 100) {
            tc_test_fail_at(__FILE__, __LINE__, "kill point %u: first run exited %d", k, a);
            break;
        }
        points++;
        int b = spawn(false, -1);
        if (b != 0) {
            tc_test_fail_at(__FILE__, __LINE__, "kill point %u: resumed run exited %d", k, b);
            continue;
        }
        unsigned long long size = 0;
        char hex[80] = "";
        if (sscanf(line, "%llu %79s", &size, hex) < 1)
            size = 0;
        check_line(k, size, hex);
    }
    (void)printf("     killed at %u points\n", points);
    /* Per card: every station point, and the commit and after-commit steps
     * of its three durable appends (before PUT KEY; the issuance, before
     * STORE CERTIFICATE; provisioned). */
    EXPECT(points >= CARDS * (TC_STATION_PT_MAX_ + 2 * 3));
    fx_free(&F);
}

static const struct tc_test_case cases[] = {
    {"killed at every step and audit commit, resumed", test_kill_everywhere},
};

TC_TEST_MAIN("station_crash", cases)
