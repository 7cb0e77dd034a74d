/*
 * Sockets with deadlines and the shared 2-byte length framing. Every wait is
 * a poll() with a bounded timeout, so nothing here blocks forever and a
 * server notices its stop flag within TC_NET_STOP_POLL_MS.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

tc_err tc_net_parse_hostport(const char *s, const char *default_host, bool allow_zero,
                             struct tc_hostport *out)
{
    TC_ENSURE(s != NULL && out != NULL, TC_ERR_ARG);
    memset(out, 0, sizeof *out);
    const char *host = NULL;
    size_t host_len = 0;
    const char *port;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        TC_ENSURE_MSG(end != NULL && end[1] == ':', TC_ERR_FORMAT, "'%s': expected [ADDRESS]:PORT",
                      s);
        host = s + 1;
        host_len = (size_t)(end - host);
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            TC_ENSURE_MSG(default_host != NULL, TC_ERR_FORMAT, "'%s': expected HOST:PORT", s);
            host = default_host;
            host_len = strlen(default_host);
            port = s;
        } else {
            host = s;
            host_len = (size_t)(colon - s);
            port = colon + 1;
            TC_ENSURE_MSG(memchr(s, ':', host_len) == NULL, TC_ERR_FORMAT,
                          "'%s': an IPv6 address goes in brackets: [ADDRESS]:PORT", s);
        }
    }
    TC_ENSURE_MSG(host_len > 0 && host_len < sizeof out->host, TC_ERR_FORMAT,
                  "'%s': missing or overlong host", s);
    uint64_t v = 0;
    /* Decimal only: a port is never written in hex by anyone. */
    TC_ENSURE_MSG(port[0] >= '0' && port[0] <= '9' && strlen(port) <= 5, TC_ERR_FORMAT,
                  "'%s': port must be a decimal number", s);
    for (const char *p = port; *p != '\0'; p++) {
        TC_ENSURE_MSG(*p >= '0' && *p <= '9', TC_ERR_FORMAT, "'%s': port must be a decimal number",
                      s);
        v = v * 10u + (uint64_t)(*p - '0');
    }
    TC_ENSURE_MSG(v <= 65535u && (v != 0 || allow_zero), TC_ERR_RANGE,
                  "'%s': port must be 1..65535", s);
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (uint16_t)v;
    return TC_OK;
}

static tc_err resolve(const struct tc_hostport *hp, bool passive, struct addrinfo **res)
{
    char port[8];
    (void)snprintf(port, sizeof port, "%u", (unsigned)hp->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(hp->host, port, &hints, res);
    TC_ENSURE_MSG(rc == 0, TC_ERR_IO, "cannot resolve '%s': %s", hp->host, gai_strerror(rc));
    return TC_OK;
}

static void no_sigpipe_nodelay(int fd)
{
    int one = 1;
    /* Frames are small request/response pairs: send each at once. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static tc_err connect_one(const struct addrinfo *ai, int timeout_ms, int *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    TC_CHECK_MSG(fd >= 0, TC_ERR_IO, "socket: %s", strerror(errno));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        TC_CHECK_MSG(errno == EINPROGRESS, TC_ERR_IO, "connect: %s", strerror(errno));
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n;
        do {
            n = poll(&pfd, 1, timeout_ms);
        } while (n < 0 && errno == EINTR);
        TC_CHECK_MSG(n > 0, TC_ERR_IO, "connect: %s", n == 0 ? "timed out" : strerror(errno));
        int err = 0;
        socklen_t len = sizeof err;
        TC_CHECK_MSG(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0, TC_ERR_IO,
                     "connect: %s", strerror(err != 0 ? err : errno));
    }
    no_sigpipe_nodelay(fd);
    *out = fd;
    fd = -1;
    ret = TC_OK;
out:
    if (fd >= 0)
        (void)close(fd);
    return ret;
}

tc_err tc_net_connect(const struct tc_hostport *hp, int timeout_ms, int *fd)
{
    struct addrinfo *res = NULL;
    TC_GUARD(resolve(hp, false, &res));
    tc_err ret = TC_ERR_IO;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        ret = connect_one(ai, timeout_ms, fd);
        if (ret == TC_OK)
            break;
    }
    freeaddrinfo(res);
    if (ret != TC_OK)
        return TC_FAIL(ret, "cannot connect to %s port %u: %s", hp->host, (unsigned)hp->port,
                       tc_error_last()->msg);
    return TC_OK;
}

tc_err tc_net_listen(const struct tc_hostport *hp, int *out, uint16_t *bound_port)
{
    struct addrinfo *res = NULL;
    TC_GUARD(resolve(hp, true, &res));
    tc_err ret = TC_ERR_INTERNAL;
    int fd = -1;
    const struct addrinfo *ai = res;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    TC_CHECK_MSG(fd >= 0, TC_ERR_IO, "socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    TC_CHECK_MSG(bind(fd, ai->ai_addr, ai->ai_addrlen) == 0, TC_ERR_IO,
                 "cannot listen on %s port %u: %s", hp->host, (unsigned)hp->port, strerror(errno));
    TC_CHECK_MSG(listen(fd, 4) == 0, TC_ERR_IO, "listen: %s", strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    TC_CHECK_MSG(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0, TC_ERR_IO, "getsockname: %s",
                 strerror(errno));
    uint16_t port = 0;
    if (ss.ss_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    if (bound_port != NULL)
        *bound_port = port;
    *out = fd;
    fd = -1;
    ret = TC_OK;
out:
    if (fd >= 0)
        (void)close(fd);
    freeaddrinfo(res);
    return ret;
}

/* Wait until fd is readable. 1 readable, 0 deadline passed or stop set. */
static tc_err wait_readable(int fd, int64_t deadline, const volatile sig_atomic_t *stop,
                            bool *ready)
{
    *ready = false;
    for (;;) {
        if (stop != NULL && *stop != 0)
            return TC_OK;
        int slice = TC_NET_STOP_POLL_MS;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return TC_OK;
            if (left < slice)
                slice = (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, stop != NULL || deadline >= 0 ? slice : -1);
        if (n < 0 && errno == EINTR)
            continue;
        TC_ENSURE_MSG(n >= 0, TC_ERR_IO, "poll: %s", strerror(errno));
        if (n > 0) {
            *ready = true;
            return TC_OK;
        }
    }
}

tc_err tc_frame_read(int fd, uint8_t *buf, size_t cap, size_t *len, int idle_ms,
                     const volatile sig_atomic_t *stop, enum tc_frame_event *ev)
{
    uint8_t hdr[2];
    size_t got = 0;
    size_t want = 0;
    bool ready = false;
    *len = 0;
    *ev = TC_FRAME_OK;

    /* Between frames: wait for the first byte, watching the stop flag. */
    int64_t deadline = idle_ms < 0 ? -1 : now_ms() + idle_ms;
    TC_GUARD(wait_readable(fd, deadline, stop, &ready));
    if (!ready) {
        *ev = (stop != NULL && *stop != 0) ? TC_FRAME_STOP : TC_FRAME_IDLE;
        return TC_OK;
    }
    deadline = now_ms() + TC_NET_FRAME_TIMEOUT_MS;
    /* The header, then the payload: read until the full length is in, however
     * the stream split it. */
    for (int part = 0; part < 2; part++) {
        uint8_t *dst = part == 0 ? hdr : buf;
        size_t need = part == 0 ? sizeof hdr : want;
        got = 0;
        while (got < need) {
            TC_GUARD(wait_readable(fd, deadline, NULL, &ready));
            TC_ENSURE_MSG(ready, TC_ERR_IO, "link stalled inside a frame");
            ssize_t n = recv(fd, dst + got, need - got, 0);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            TC_ENSURE_MSG(n >= 0, TC_ERR_IO, "recv: %s", strerror(errno));
            if (n == 0) {
                if (part == 0 && got == 0) {
                    *ev = TC_FRAME_EOF;
                    return TC_OK;
                }
                return TC_FAIL(TC_ERR_TRUNCATED, "link closed inside a frame");
            }
            got += (size_t)n;
        }
        if (part == 0) {
            want = (size_t)hdr[0] << 8 | hdr[1];
            TC_ENSURE_MSG(want <= cap, TC_ERR_RANGE, "frame of %zu bytes exceeds the %zu-byte cap",
                          want, cap);
        }
    }
    *len = want;
    return TC_OK;
}

static tc_err write_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            int64_t left = deadline - now_ms();
            TC_ENSURE_MSG(left > 0, TC_ERR_IO, "send timed out");
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            (void)poll(&pfd, 1, (int)left);
            continue;
        }
        TC_ENSURE_MSG(w > 0, TC_ERR_IO, "send: %s", strerror(errno));
        done += (size_t)w;
    }
    return TC_OK;
}

tc_err tc_frame_write(int fd, const uint8_t *p, size_t len, int timeout_ms)
{
    TC_ENSURE(len <= TC_TRANSPORT_MAX_FRAME, TC_ERR_RANGE);
    int64_t deadline = now_ms() + timeout_ms;
    uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    TC_GUARD(write_all(fd, hdr, sizeof hdr, deadline));
    if (len > 0)
        TC_GUARD(write_all(fd, p, len, deadline));
    return TC_OK;
}
