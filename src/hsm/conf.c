/*
 * Small "NAME = value" files read through the cursor: the workspace's
 * hsm.conf and the SE vendor's transport key file. Both are read whole
 * (with a cap) and parsed line by line; nothing is accepted that is not
 * understood.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hsm/hsm_int.h"

tc_err tc_hsm_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    tc_err ret = TC_ERR_INTERNAL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    TC_ENSURE_MSG(fd >= 0, errno == ENOENT ? TC_ERR_NOT_FOUND : TC_ERR_IO, "cannot read '%s': %s",
                  path, strerror(errno));
    for (;;) {
        TC_CHECK_MSG(*len < cap, TC_ERR_RANGE, "'%s' is larger than %zu bytes", path, cap - 1);
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        TC_CHECK_MSG(n >= 0, TC_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    ret = TC_OK;
out:
    (void)close(fd);
    if (ret != TC_OK) {
        tc_memzero(buf, cap);
        *len = 0;
    }
    return ret;
}

static bool is_space(uint8_t b)
{
    return b == ' ' || b == '\t';
}

tc_err tc_hsm_setting_next(struct tc_cursor *c, struct tc_hsm_setting *s)
{
    memset(s, 0, sizeof *s);
    while (tc_cursor_remaining(c) > 0) {
        s->line++;
        /* One line: up to '\n' (a last line may lack it), '\r' dropped. */
        struct tc_cursor probe = *c;
        uint8_t b = 0;
        size_t n = 0;
        while (tc_cursor_u8(&probe, &b) == TC_OK && b != '\n')
            n++;
        const uint8_t *line = NULL;
        TC_GUARD(tc_cursor_view(c, n, &line));
        if (tc_cursor_remaining(c) > 0)
            TC_GUARD(tc_cursor_skip(c, 1));
        if (n > 0 && line[n - 1] == '\r')
            n--;
        while (n > 0 && is_space(line[n - 1]))
            n--;
        size_t i = 0;
        while (i < n && is_space(line[i]))
            i++;
        if (i == n || line[i] == '#')
            continue;
        size_t name = i;
        while (i < n && ((line[i] >= 'A' && line[i] <= 'Z') || (line[i] >= 'a' && line[i] <= 'z') ||
                         (line[i] >= '0' && line[i] <= '9') || line[i] == '_'))
            i++;
        TC_ENSURE_MSG(i > name, TC_ERR_FORMAT, "line %u: expected NAME = value", s->line);
        s->name = (const char *)line + name;
        s->name_len = i - name;
        while (i < n && is_space(line[i]))
            i++;
        TC_ENSURE_MSG(i < n && line[i] == '=', TC_ERR_FORMAT, "line %u: expected '=' after %.*s",
                      s->line, (int)s->name_len, s->name);
        i++;
        while (i < n && is_space(line[i]))
            i++;
        for (size_t k = i; k < n; k++)
            TC_ENSURE_MSG(line[k] >= 0x20 && line[k] != 0x7f, TC_ERR_FORMAT,
                          "line %u: control character in the value", s->line);
        s->value = (const char *)line + i;
        s->value_len = n - i;
        return TC_OK;
    }
    return TC_ERR_NOT_FOUND; /* end of input: not recorded, not a failure */
}

bool tc_hsm_setting_is(const struct tc_hsm_setting *s, const char *name)
{
    size_t n = strlen(name);
    return s->name_len == n && strncmp(s->name, name, n) == 0;
}

tc_err tc_hsm_transport_keyfile_parse(const uint8_t *data, size_t len,
                                      uint8_t enc[static TC_AES_MAX_KEY],
                                      uint8_t mac[static TC_AES_MAX_KEY],
                                      uint8_t dek[static TC_AES_MAX_KEY], size_t *key_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(data != NULL && key_len != NULL, TC_ERR_ARG);
    *key_len = 0;
    uint8_t *keys[3] = {enc, mac, dek};
    static const char *const names[3] = {"ENC", "MAC", "DEK"};
    bool have[3] = {false, false, false};
    struct tc_cursor c;
    struct tc_hsm_setting s;
    unsigned line = 0;
    tc_cursor_init(&c, data, len);
    for (;;) {
        tc_err rc = tc_hsm_setting_next(&c, &s);
        line += s.line;
        if (rc == TC_ERR_NOT_FOUND)
            break;
        TC_TRY(rc);
        size_t which = 3;
        for (size_t i = 0; i < 3; i++)
            if (tc_hsm_setting_is(&s, names[i]))
                which = i;
        TC_CHECK_MSG(which < 3, TC_ERR_FORMAT, "key file line %u: '%.*s' is not ENC, MAC or DEK",
                     line, (int)s.name_len, s.name);
        TC_CHECK_MSG(!have[which], TC_ERR_FORMAT, "key file line %u: %s given twice", line,
                     names[which]);
        size_t n = 0;
        rc = tc_hex_decode(s.value, s.value_len, 0, keys[which], TC_AES_MAX_KEY, &n);
        TC_CHECK_MSG(rc == TC_OK && (n == 16 || n == 32), TC_ERR_FORMAT,
                     "key file line %u: %s must be 16 or 32 bytes of hex", line, names[which]);
        TC_CHECK_MSG(*key_len == 0 || n == *key_len, TC_ERR_FORMAT,
                     "key file line %u: ENC, MAC and DEK must have the same length", line);
        *key_len = n;
        have[which] = true;
    }
    TC_CHECK_MSG(have[0] && have[1] && have[2], TC_ERR_FORMAT,
                 "the key file must give ENC, MAC and DEK");
    ret = TC_OK;
out:
    if (ret != TC_OK) {
        for (size_t i = 0; i < 3; i++)
            tc_memzero(keys[i], TC_AES_MAX_KEY);
        *key_len = 0;
    }
    return ret;
}

tc_err tc_hsm_transport_keyfile_read(const char *path, uint8_t enc[static TC_AES_MAX_KEY],
                                     uint8_t mac[static TC_AES_MAX_KEY],
                                     uint8_t dek[static TC_AES_MAX_KEY], size_t *key_len)
{
    TC_ENSURE(path != NULL, TC_ERR_ARG);
    uint8_t buf[4096];
    size_t len = 0;
    tc_err rc = tc_hsm_file_read(path, buf, sizeof buf, &len);
    if (rc == TC_OK)
        rc = tc_hsm_transport_keyfile_parse(buf, len, enc, mac, dek, key_len);
    tc_memzero(buf, sizeof buf);
    if (rc != TC_OK && tc_error_last()->code == rc) {
        char msg[sizeof tc_error_last()->msg];
        (void)snprintf(msg, sizeof msg, "%s", tc_error_last()->msg);
        return TC_FAIL(rc, "%s: %s", path, msg);
    }
    return rc;
}
