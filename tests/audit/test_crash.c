/*
 * Crash test: a child process appends from several threads and is killed
 * (SIGKILL) at every step of an append batch in turn, then at random
 * moments. After each kill the log reopens, every append the child saw
 * acknowledged is there with its exact bytes, and full verification passes.
 */
#include "audit_testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

struct ack {
    uint64_t index;
    uint32_t a, b;
};

static int ack_fd = -1;
static unsigned kill_at; /* 0: run until killed from outside */
static unsigned hook_calls;
static struct tc_signer signer;

static void hook(void *arg, enum tc_audit_step step)
{
    (void)arg;
    (void)step;
    if (kill_at != 0 && __atomic_add_fetch(&hook_calls, 1, __ATOMIC_SEQ_CST) == kill_at)
        raise(SIGKILL);
}

struct child_thread {
    struct tc_audit_log *log;
    unsigned a;
};

static void *child_work(void *arg)
{
    struct child_thread *c = arg;
    for (uint32_t b = 0; b < 5000; b++) {
        uint8_t ev[TC_AUDIT_EVENT_MAX];
        size_t len = test_event(ev, c->a, b, b);
        const uint8_t *p[1] = {ev};
        uint64_t idx = 0;
        if (tc_audit_log_append(c->log, p, &len, 1, &idx) != TC_OK)
            _exit(3);
        struct ack r = {idx, c->a, b};
        if (write(ack_fd, &r, sizeof r) != (ssize_t)sizeof r)
            _exit(4);
        if (c->a % 4 == 0 && b % 16 == 15) {
            uint8_t note[TC_NOTE_MAX];
            size_t nl = 0;
            if (tc_audit_log_checkpoint(c->log, &signer, note, sizeof note, &nl) != TC_OK)
                _exit(5);
        }
    }
    return NULL;
}

static void child(const char *db, unsigned round)
{
    struct tc_audit_store s;
    struct tc_audit_log *log = NULL;
    if (tc_audit_store_sqlite_open(db, &s) != TC_OK || tc_audit_log_open(s, TEST_ORIGIN, &log))
        _exit(2);
    tc_audit_log_set_fault_hook(log, hook, NULL);
    enum { T = 4 };
    pthread_t th[T];
    struct child_thread ct[T];
    for (unsigned i = 0; i < T; i++) {
        ct[i].log = log;
        ct[i].a = round * 10 + i;
        if (pthread_create(&th[i], NULL, child_work, &ct[i]) != 0)
            _exit(6);
    }
    for (unsigned i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    _exit(0);
}

static struct ack *acks;
static size_t nacks, cap_acks;

static bool run_round(const char *db, unsigned round, unsigned at, unsigned delay_us)
{
    int fds[2];
    if (pipe(fds) != 0) {
        tc_test_fail_at(__FILE__, __LINE__, "pipe");
        return false;
    }
    kill_at = at;
    hook_calls = 0;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ack_fd = fds[1];
        child(db, round);
    }
    close(fds[1]);
    if (at == 0) {
        struct timespec ts = {0, (long)delay_us * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    struct ack r;
    ssize_t got;
    while ((got = read(fds[0], &r, sizeof r)) == (ssize_t)sizeof r) {
        if (nacks == cap_acks) {
            cap_acks = cap_acks ? cap_acks * 2 : 1024;
            acks = realloc(acks, cap_acks * sizeof *acks);
        }
        acks[nacks++] = r;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (!killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        tc_test_fail_at(__FILE__, __LINE__, "round %u: child status 0x%x", round, status);
    return killed;
}

static void check_log(const char *db, const struct tc_note_verifier *v)
{
    struct tc_audit_log *log = test_open_log(db);
    if (!log)
        return;
    uint64_t size = tc_audit_log_size(log);
    for (size_t i = 0; i < nacks; i++) {
        uint8_t buf[TC_AUDIT_EVENT_MAX], ev[TC_AUDIT_EVENT_MAX];
        size_t n = 0, len = test_event(ev, acks[i].a, acks[i].b, acks[i].b);
        if (acks[i].index >= size) {
            tc_test_fail_at(__FILE__, __LINE__, "acknowledged event %llu lost (size %llu)",
                            (unsigned long long)acks[i].index, (unsigned long long)size);
            continue;
        }
        EXPECT_OK(tc_audit_log_event(log, acks[i].index, buf, sizeof buf, &n));
        EXPECT_MEM(buf, n, ev, len);
    }
    tc_audit_log_close(log);
    struct tc_audit_store s;
    struct tc_audit_verify_report rep;
    EXPECT_OK(tc_audit_store_sqlite_open(db, &s));
    EXPECT_OK(tc_audit_verify_store(&s, TEST_ORIGIN, v, false, &rep));
    EXPECT_EQ_U(rep.size, size);
    tc_audit_store_close(&s);
}

static void test_crash_every_step_then_random(void)
{
    char dir[64], db[128];
    if (!test_tmpdir(dir))
        return;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &signer));
    struct tc_note_verifier v;
    test_verifier(&signer, &v);
    unsigned round = 0, kills = 0;
    /* Kill at the k-th hook call: BEGIN, each EVENT, TREE, COMMIT,
     * COMMITTED and ACKNOWLEDGED of the first batches in turn. */
    for (unsigned k = 1; k <= 30; k++, round++) {
        kills += run_round(db, round, k, 0);
        check_log(db, &v);
    }
    /* Then from outside, at random moments. */
    srand((unsigned)time(NULL));
    for (unsigned i = 0; i < 12; i++, round++) {
        kills += run_round(db, round, 0, (unsigned)(20000 + rand() % 150000));
        check_log(db, &v);
    }
    printf("     %u rounds, %u killed, %zu acknowledged appends all present\n", round, kills,
           nacks);
    EXPECT(kills >= 30);
    EXPECT(nacks > 0);
    free(acks);
    tc_signer_soft_free(&signer);
    test_rmtree(dir);
}

static const struct tc_test_case cases[] = {
    {"crash at every step, then at random", test_crash_every_step_then_random},
};

TC_TEST_MAIN("audit-crash", cases)
