/*
 * Emulated card images and their durability: prepared images appear whole
 * (temporary file, fsync, link into place, directory fsync), a crash in the
 * middle of a batch of images leaves no torn image and no temporary file
 * the next run trips on, and the card source commits every NVM write with
 * fdatasync. fsync, fdatasync and link are wrapped at link time
 * (-Wl,--wrap) to watch and to fail them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <trustchain/se.h>
#include <trustchain/station.h>

#include "harness.h"

#define PREFIX "89049032"

int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_link(const char *from, const char *to);

static struct {
    unsigned fsync_file, fsync_dir, fdatasync_img, link_calls;
    unsigned fail_link_at; /* 0: never */
} W;

static void fd_kind(int fd, bool *is_dir, bool *is_img)
{
    struct stat sb;
    char path[512];
    char proc[64];
    *is_dir = fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode);
    (void)snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, path, sizeof path - 1);
    path[n > 0 ? n : 0] = '\0';
    size_t l = strlen(path);
    *is_img = l > 4 && strcmp(path + l - 4, ".img") == 0;
}

int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
    bool dir, img;
    fd_kind(fd, &dir, &img);
    if (dir)
        W.fsync_dir++;
    else
        W.fsync_file++;
    return __real_fsync(fd);
}

int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
    bool dir, img;
    fd_kind(fd, &dir, &img);
    if (img)
        W.fdatasync_img++;
    return __real_fdatasync(fd);
}

/* A crash before the image is in place: link never happens. */
int __wrap_link(const char *from, const char *to);
int __wrap_link(const char *from, const char *to)
{
    W.link_calls++;
    if (W.fail_link_at != 0 && W.link_calls == W.fail_link_at) {
        errno = EIO;
        return -1;
    }
    return __real_link(from, to);
}

static const uint8_t KEY[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};

static bool tmpdir(char *dir, size_t size)
{
    (void)snprintf(dir, size, "/tmp/tc-emulate-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        tc_test_fail_at(__FILE__, __LINE__, "mkdtemp");
        return false;
    }
    return true;
}

static void rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[600];
            (void)snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            (void)unlink(p);
        }
        closedir(d);
    }
    (void)rmdir(dir);
}

/* Entries of dir whose name contains part. */
static unsigned count_named(const char *dir, const char *part)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, part) != NULL)
            n++;
    closedir(d);
    return n;
}

static bool image_ok(const char *dir, unsigned index, struct stat *sb)
{
    char p[600];
    (void)snprintf(p, sizeof p, "%s/card-%06u.img", dir, index);
    if (stat(p, sb) != 0)
        return false;
    struct tc_se_card *card = NULL;
    tc_err rc = tc_se_open(p, 0, &card);
    tc_se_close(card);
    return rc == TC_OK;
}

static void touch(const char *dir, const char *name)
{
    char p[600];
    (void)snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    EXPECT(fd >= 0);
    if (fd >= 0) {
        EXPECT(write(fd, "torn", 4) == 4);
        (void)close(fd);
    }
}

static void test_prepare_durable(void)
{
    char dir[64];
    if (!tmpdir(dir, sizeof dir))
        return;
    /* What a crash inside an earlier image creation leaves behind. */
    touch(dir, "card-000001.img.tmpAbC123");
    touch(dir, "notes.txt");
    memset(&W, 0, sizeof W);
    EXPECT_OK(tc_station_emulate_prepare(dir, 3, PREFIX, 0x30, KEY, KEY, KEY, 16));
    for (unsigned i = 0; i < 3; i++) {
        struct stat sb;
        EXPECT(image_ok(dir, i, &sb));
        EXPECT_EQ_U(sb.st_mode & 0777u, 0600);
        EXPECT_EQ_U(sb.st_nlink, 1);
    }
    /* Each image: its file synced before it is linked into place, then the
     * directory. */
    EXPECT_EQ_U(W.link_calls, 3);
    EXPECT(W.fsync_file >= 3);
    EXPECT(W.fsync_dir >= 3);
    EXPECT_EQ_U(count_named(dir, ".tmp"), 0);
    EXPECT_EQ_U(count_named(dir, "notes.txt"), 1);
    /* Existing images are left alone. */
    memset(&W, 0, sizeof W);
    EXPECT_OK(tc_station_emulate_prepare(dir, 3, PREFIX, 0x30, KEY, KEY, KEY, 16));
    EXPECT_EQ_U(W.link_calls, 0);
    rmtree(dir);
}

static void test_prepare_crash(void)
{
    char dir[64];
    if (!tmpdir(dir, sizeof dir))
        return;
    /* The second image never reaches its place: the run fails, image 0 is
     * whole, image 1 does not exist (never half of it), no temporary is
     * left. */
    memset(&W, 0, sizeof W);
    W.fail_link_at = 2;
    EXPECT_ERR(tc_station_emulate_prepare(dir, 3, PREFIX, 0x30, KEY, KEY, KEY, 16), TC_ERR_IO);
    struct stat sb0, sb;
    EXPECT(image_ok(dir, 0, &sb0));
    EXPECT(!image_ok(dir, 1, &sb));
    EXPECT(!image_ok(dir, 2, &sb));
    EXPECT_EQ_U(count_named(dir, ".tmp"), 0);
    /* The next run completes the set and leaves image 0 as it was. */
    memset(&W, 0, sizeof W);
    EXPECT_OK(tc_station_emulate_prepare(dir, 3, PREFIX, 0x30, KEY, KEY, KEY, 16));
    EXPECT_EQ_U(W.link_calls, 2);
    for (unsigned i = 0; i < 3; i++)
        EXPECT(image_ok(dir, i, &sb));
    EXPECT(image_ok(dir, 0, &sb));
    EXPECT_EQ_U(sb.st_ino, sb0.st_ino);
    rmtree(dir);
}

static uint16_t xmit(struct tc_transport *t, const uint8_t *cmd, size_t len)
{
    uint8_t resp[TC_SE_MAX_RESPONSE];
    size_t n = 0;
    tc_err rc = t->transmit(t->ctx, cmd, len, resp, sizeof resp, &n);
    EXPECT_OK(rc);
    return rc == TC_OK && n >= 2 ? (uint16_t)(resp[n - 2] << 8 | resp[n - 1]) : 0;
}

static void test_cards_sync(void)
{
    char dir[64];
    if (!tmpdir(dir, sizeof dir))
        return;
    EXPECT_OK(tc_station_emulate_prepare(dir, 2, PREFIX, 0x30, KEY, KEY, KEY, 16));
    struct tc_station_cards cards = {0};
    EXPECT_OK(tc_station_emulate_cards(dir, 2, &cards));
    struct tc_transport t = {0};
    EXPECT_OK(cards.open(cards.arg, 1, &t));
    /* INITIALIZE UPDATE: the card moves its sequence counter in NVM
     * (Amendment D §6.2.2.1) before it answers. */
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
                                  0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t iu[] = {0x80, 0x50, 0x30, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00};
    if (t.transmit != NULL) {
        EXPECT_EQ_U(xmit(&t, sel, sizeof sel), 0x9000);
        memset(&W, 0, sizeof W);
        EXPECT_EQ_U(xmit(&t, iu, sizeof iu), 0x9000);
        EXPECT(W.fdatasync_img >= 1);
        tc_transport_close(&t);
    }
    tc_station_emulate_cards_free(&cards);
    rmtree(dir);
}

static const struct tc_test_case cases[] = {
    {"prepared images appear whole and synced", test_prepare_durable},
    {"a crash while preparing leaves no torn image", test_prepare_crash},
    {"the card source syncs every NVM commit", test_cards_sync},
};

TC_TEST_MAIN("station_emulate", cases)
