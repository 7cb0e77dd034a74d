/*
 * Transport module: host:port parsing, the shared 2-byte framing, the vpcd
 * and TCP card-server engines against a fake card, the TCP host link end to
 * end, and the PC/SC link's error when no PC/SC service runs. The pcscd +
 * vpcd path with the real daemon is tests/integration/pcscd_vpcd.sh.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include "transport/net.h"

/* ------------------------------------------------------------------ fake card */

struct fake_card {
    char events[256];
    uint8_t atr[TC_TRANSPORT_MAX_ATR];
    size_t atr_len;
    size_t big_len; /* response data length for INS BB */
};

static void fake_event(struct fake_card *f, const char *ev)
{
    size_t n = strlen(f->events);
    (void)snprintf(f->events + n, sizeof f->events - n, "%s%s", n > 0 ? "," : "", ev);
}

static tc_err fake_atr(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    struct fake_card *f = ctx;
    TC_ENSURE(f->atr_len <= atr_size, TC_ERR_SPACE);
    memcpy(atr, f->atr, f->atr_len);
    *atr_len = f->atr_len;
    return TC_OK;
}

static tc_err fake_power(void *ctx, enum tc_card_power ev)
{
    struct fake_card *f = ctx;
    switch (ev) {
    case TC_CARD_POWER_OFF:
        fake_event(f, "off");
        break;
    case TC_CARD_POWER_ON:
        fake_event(f, "on");
        break;
    case TC_CARD_RESET:
        fake_event(f, "reset");
        break;
    default:
        return TC_FAIL(TC_ERR_ARG, "bad power event");
    }
    return TC_OK;
}

/* Answers INS || 9000; INS EE fails inside the card; INS BB answers
 * big_len bytes of data. */
static tc_err fake_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                            size_t resp_size, size_t *resp_len)
{
    struct fake_card *f = ctx;
    TC_ENSURE(cmd_len >= 2, TC_ERR_ARG);
    uint8_t ins = cmd[1];
    if (ins == 0xEE)
        return TC_FAIL(TC_ERR_INTERNAL, "fake card failure");
    size_t data = ins == 0xBB ? f->big_len : 1;
    TC_ENSURE(data + 2 <= resp_size, TC_ERR_SPACE);
    memset(resp, 0x5A, data);
    resp[0] = ins;
    resp[data] = 0x90;
    resp[data + 1] = 0x00;
    *resp_len = data + 2;
    return TC_OK;
}

static void fake_init(struct fake_card *f, struct tc_card_ops *ops)
{
    memset(f, 0, sizeof *f);
    const uint8_t atr[] = {0x3B, 0x80, 0x80, 0x01, 0x01};
    memcpy(f->atr, atr, sizeof atr);
    f->atr_len = sizeof atr;
    ops->ctx = f;
    ops->atr = fake_atr;
    ops->power = fake_power;
    ops->transmit = fake_transmit;
}

/* ------------------------------------------------------------------ helpers */

enum { PROTO_TCP, PROTO_VPCD };

struct conn_srv {
    int fd;
    int proto;
    size_t cap;
    struct tc_card_ops ops;
    volatile sig_atomic_t stop;
    tc_err rc;
    pthread_t th;
};

static void *conn_main(void *arg)
{
    struct conn_srv *s = arg;
    s->rc = s->proto == PROTO_VPCD ? tc_serve_vpcd_conn(&s->ops, s->fd, s->cap, &s->stop)
                                   : tc_serve_tcp_conn(&s->ops, s->fd, s->cap, &s->stop);
    (void)close(s->fd);
    return NULL;
}

/* Start a per-connection engine on one end of a socketpair; returns the
 * other end (the reader's side). */
static int conn_start(struct conn_srv *s, int proto, size_t cap, const struct tc_card_ops *ops)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -1;
    memset(s, 0, sizeof *s);
    s->fd = sv[0];
    s->proto = proto;
    s->cap = cap;
    s->ops = *ops;
    s->rc = TC_ERR_INTERNAL;
    if (pthread_create(&s->th, NULL, conn_main, s) != 0)
        return -1;
    return sv[1];
}

static void write_bytes(int fd, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    EXPECT_EQ_U(done, n);
}

/* Read until EOF (or 10 s); returns how many bytes arrived. */
static size_t read_all(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            break;
        ssize_t n = read(fd, buf + got, cap - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == cap)
            break;
    }
    return got;
}

/* Read exactly n bytes (10 s at most). */
static bool read_exact(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            return false;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* Send `send`, half-close, collect the reply, join the engine. */
static size_t conn_run(struct conn_srv *s, int peer, const uint8_t *send, size_t send_len,
                       uint8_t *reply, size_t reply_cap)
{
    write_bytes(peer, send, send_len);
    (void)shutdown(peer, SHUT_WR);
    size_t n = read_all(peer, reply, reply_cap);
    (void)pthread_join(s->th, NULL);
    (void)close(peer);
    return n;
}

/* ------------------------------------------------------------------ host:port */

static void test_hostport_accepts(void)
{
    struct tc_hostport hp;
    EXPECT_OK(tc_net_parse_hostport("127.0.0.1:35963", NULL, false, &hp));
    EXPECT_STR(hp.host, "127.0.0.1");
    EXPECT_EQ_U(hp.port, 35963);
    EXPECT_OK(tc_net_parse_hostport("[::1]:80", NULL, false, &hp));
    EXPECT_STR(hp.host, "::1");
    EXPECT_EQ_U(hp.port, 80);
    EXPECT_OK(tc_net_parse_hostport("localhost:65535", NULL, false, &hp));
    EXPECT_STR(hp.host, "localhost");
    EXPECT_EQ_U(hp.port, 65535);
    EXPECT_OK(tc_net_parse_hostport("9000", "127.0.0.1", false, &hp));
    EXPECT_STR(hp.host, "127.0.0.1");
    EXPECT_EQ_U(hp.port, 9000);
    EXPECT_OK(tc_net_parse_hostport("0", "127.0.0.1", true, &hp));
    EXPECT_EQ_U(hp.port, 0);
}

static void test_hostport_rejects(void)
{
    struct tc_hostport hp;
    EXPECT_ERR(tc_net_parse_hostport("localhost", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport(":80", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("h:", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("h:0", NULL, false, &hp), TC_ERR_RANGE);
    EXPECT_ERR(tc_net_parse_hostport("h:65536", NULL, false, &hp), TC_ERR_RANGE);
    EXPECT_ERR(tc_net_parse_hostport("h:123456", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("h:12a", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("h:+1", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("h:0x10", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("::1:80", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("[::1]80", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("[::1", NULL, false, &hp), TC_ERR_FORMAT);
    EXPECT_ERR(tc_net_parse_hostport("[]:80", NULL, false, &hp), TC_ERR_FORMAT);
    char longhost[TC_NET_HOST_MAX + 8];
    memset(longhost, 'a', sizeof longhost);
    memcpy(longhost + TC_NET_HOST_MAX, ":1", 3);
    EXPECT_ERR(tc_net_parse_hostport(longhost, NULL, false, &hp), TC_ERR_FORMAT);
}

/* ------------------------------------------------------------------ framing */

static void test_frame_roundtrip_and_eof(void)
{
    int sv[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    const uint8_t msg[] = {0x00, 0xA4, 0x04, 0x00};
    EXPECT_OK(tc_frame_write(sv[0], msg, sizeof msg, 1000));
    EXPECT_OK(tc_frame_write(sv[0], NULL, 0, 1000));
    uint8_t buf[16];
    size_t len = 99;
    enum tc_frame_event ev;
    EXPECT_OK(tc_frame_read(sv[1], buf, sizeof buf, &len, 1000, NULL, &ev));
    EXPECT_EQ_U(ev, TC_FRAME_OK);
    EXPECT_MEM(buf, len, msg, sizeof msg);
    EXPECT_OK(tc_frame_read(sv[1], buf, sizeof buf, &len, 1000, NULL, &ev));
    EXPECT_EQ_U(ev, TC_FRAME_OK);
    EXPECT_EQ_U(len, 0);
    /* Nothing more: the idle wait ends without a frame. */
    EXPECT_OK(tc_frame_read(sv[1], buf, sizeof buf, &len, 50, NULL, &ev));
    EXPECT_EQ_U(ev, TC_FRAME_IDLE);
    /* The stop flag ends a wait for the next frame. */
    volatile sig_atomic_t stop = 1;
    EXPECT_OK(tc_frame_read(sv[1], buf, sizeof buf, &len, -1, &stop, &ev));
    EXPECT_EQ_U(ev, TC_FRAME_STOP);
    (void)close(sv[0]);
    EXPECT_OK(tc_frame_read(sv[1], buf, sizeof buf, &len, 1000, NULL, &ev));
    EXPECT_EQ_U(ev, TC_FRAME_EOF);
    (void)close(sv[1]);
    /* Frames longer than the 2-byte length can carry are refused. */
    uint8_t *big = calloc(1, TC_TRANSPORT_MAX_FRAME + 1u);
    EXPECT_ERR(tc_frame_write(3, big, TC_TRANSPORT_MAX_FRAME + 1u, 10), TC_ERR_RANGE);
    free(big);
}

static void test_frame_rejects(void)
{
    uint8_t buf[8];
    size_t len = 0;
    enum tc_frame_event ev;
    struct {
        const char *what;
        uint8_t bytes[8];
        size_t n;
        tc_err want;
    } cases[] = {
        {"oversize", {0x00, 0x09}, 2, TC_ERR_RANGE},
        {"oversize, high byte", {0x01, 0x00}, 2, TC_ERR_RANGE},
        {"EOF inside the header", {0x00}, 1, TC_ERR_TRUNCATED},
        {"EOF inside the payload", {0x00, 0x04, 0x00, 0xA4}, 4, TC_ERR_TRUNCATED},
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(cases); i++) {
        int sv[2];
        EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        write_bytes(sv[0], cases[i].bytes, cases[i].n);
        (void)close(sv[0]);
        tc_err rc = tc_frame_read(sv[1], buf, sizeof buf, &len, 1000, NULL, &ev);
        if (rc != cases[i].want)
            tc_test_fail_at(__FILE__, __LINE__, "%s: got '%s'", cases[i].what, tc_err_name(rc));
        (void)close(sv[1]);
    }
}

/* A peer that sends half a frame and then nothing: the read gives up after
 * TC_NET_FRAME_TIMEOUT_MS instead of waiting forever. */
static void test_frame_stall_times_out(void)
{
    int sv[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    const uint8_t half[] = {0x00, 0x05, 0x00};
    write_bytes(sv[0], half, sizeof half);
    uint8_t buf[16];
    size_t len = 0;
    enum tc_frame_event ev;
    EXPECT_ERR(tc_frame_read(sv[1], buf, sizeof buf, &len, 1000, NULL, &ev), TC_ERR_IO);
    EXPECT(strstr(tc_error_last()->msg, "stalled") != NULL);
    (void)close(sv[0]);
    (void)close(sv[1]);
}

/* ------------------------------------------------------------------ vpcd engine */

static void test_vpcd_wire_vectors(void)
{
    struct tc_vec v;
    if (!tc_vec_open(&v, "transport/vpcd_wire.txt"))
        return;
    size_t records = 0;
    while (tc_vec_next(&v)) {
        size_t send_len = 0, recv_len = 0, atr_len = 0;
        uint8_t *send = tc_vec_hex(&v, "SEND", &send_len);
        uint8_t *want = tc_vec_hex(&v, "RECV", &recv_len);
        uint8_t *atr = tc_vec_hex(&v, "ATR", &atr_len);
        const char *events = tc_vec_get(&v, "EVENTS");
        if (send == NULL || want == NULL || atr == NULL || events == NULL) {
            tc_test_fail_at(__FILE__, __LINE__, "record at line %d incomplete", v.record_line);
        } else {
            struct fake_card f;
            struct tc_card_ops ops;
            fake_init(&f, &ops);
            memcpy(f.atr, atr, atr_len);
            f.atr_len = atr_len;
            struct conn_srv s;
            int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
            uint8_t got[512];
            size_t n = conn_run(&s, peer, send, send_len, got, sizeof got);
            if (s.rc != TC_OK)
                tc_test_fail_at(__FILE__, __LINE__, "line %d: engine returned '%s'", v.record_line,
                                tc_err_name(s.rc));
            EXPECT_MEM(got, n, want, recv_len);
            if (strcmp(f.events, events) != 0)
                tc_test_fail_at(__FILE__, __LINE__, "line %d: events '%s', expected '%s'",
                                v.record_line, f.events, events);
            records++;
        }
        free(send);
        free(want);
        free(atr);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(records, 6);
}

/* Reads must loop until the whole length arrived, however the stream is cut. */
static void test_vpcd_partial_frames(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
    const uint8_t msg[] = {0x00, 0x01, 0x04, 0x00, 0x05, 0x00, 0xA4, 0x04, 0x00, 0x00};
    for (size_t i = 0; i < sizeof msg; i++) {
        write_bytes(peer, msg + i, 1);
        sleep_ms(15);
    }
    uint8_t got[64];
    size_t n = conn_run(&s, peer, NULL, 0, got, sizeof got);
    const uint8_t want[] = {0x00, 0x05, 0x3B, 0x80, 0x80, 0x01, 0x01, 0x00, 0x03, 0xA4, 0x90, 0x00};
    EXPECT_OK(s.rc);
    EXPECT_MEM(got, n, want, sizeof want);
}

static void test_vpcd_large_apdu_and_response(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    f.big_len = 4000;
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
    /* An extended case 4 command with 3000 data bytes. */
    size_t dl = 3000;
    size_t clen = 4 + 3 + dl + 2;
    uint8_t *send = calloc(1, 2 + clen);
    send[0] = (uint8_t)(clen >> 8);
    send[1] = (uint8_t)clen;
    send[2] = 0x80;
    send[3] = 0xBB;
    send[6] = 0x00;
    send[7] = (uint8_t)(dl >> 8);
    send[8] = (uint8_t)dl;
    uint8_t *got = calloc(1, 8192);
    size_t n = conn_run(&s, peer, send, 2 + clen, got, 8192);
    EXPECT_OK(s.rc);
    EXPECT_EQ_U(n, 2 + 4000 + 2);
    EXPECT_EQ_U(got[0], (4002 >> 8));
    EXPECT_EQ_U(got[1], (4002 & 0xFF));
    EXPECT_EQ_U(got[2], 0xBB);
    EXPECT_EQ_U(got[n - 2], 0x90);
    free(send);
    free(got);
}

static void test_vpcd_oversize_frame_drops_link(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, 16, &ops);
    uint8_t send[2 + 17] = {0x00, 17, 0x80, 0x10};
    uint8_t got[16];
    size_t n = conn_run(&s, peer, send, sizeof send, got, sizeof got);
    EXPECT_ERR(s.rc, TC_ERR_RANGE);
    EXPECT_EQ_U(n, 0);
    EXPECT_STR(f.events, "off");
}

static void test_vpcd_unknown_control_drops_link(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
    const uint8_t send[] = {0x00, 0x01, 0x07, 0x00, 0x01, 0x04};
    uint8_t got[16];
    size_t n = conn_run(&s, peer, send, sizeof send, got, sizeof got);
    EXPECT_ERR(s.rc, TC_ERR_FORMAT);
    EXPECT_EQ_U(n, 0);
}

static void test_vpcd_truncated_frame(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
    const uint8_t send[] = {0x00, 0x05, 0x00, 0xA4};
    uint8_t got[16];
    size_t n = conn_run(&s, peer, send, sizeof send, got, sizeof got);
    EXPECT_ERR(s.rc, TC_ERR_TRUNCATED);
    EXPECT_EQ_U(n, 0);
    EXPECT_STR(f.events, "off");
}

/* The card failing internally still answers (6F00): vpcd would give the
 * card up on a missing reply. An empty frame is ignored. */
static void test_vpcd_card_failure_answers(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
    const uint8_t send[] = {0x00, 0x00, 0x00, 0x04, 0x80, 0xEE, 0x00,
                            0x00, 0x00, 0x04, 0x80, 0x10, 0x00, 0x00};
    uint8_t got[16];
    size_t n = conn_run(&s, peer, send, sizeof send, got, sizeof got);
    const uint8_t want[] = {0x00, 0x02, 0x6F, 0x00, 0x00, 0x03, 0x10, 0x90, 0x00};
    EXPECT_OK(s.rc);
    EXPECT_MEM(got, n, want, sizeof want);
}

static void test_vpcd_stop_flag(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_VPCD, TC_TRANSPORT_MAX_FRAME, &ops);
    const uint8_t poll_atr[] = {0x00, 0x01, 0x04};
    write_bytes(peer, poll_atr, sizeof poll_atr);
    uint8_t got[7];
    EXPECT(read_exact(peer, got, sizeof got));
    s.stop = 1;
    (void)pthread_join(s.th, NULL);
    EXPECT_OK(s.rc);
    EXPECT_STR(f.events, "off");
    (void)close(peer);
}

/* ------------------------------------------------------------------ TCP engine */

static void test_tcp_conn_control(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct conn_srv s;
    int peer = conn_start(&s, PROTO_TCP, TC_TRANSPORT_MAX_FRAME, &ops);
    /* 00 off -> empty frame; 01 on, 02 reset, 04 -> ATR; an APDU. */
    const uint8_t send[] = {0x00, 0x01, 0x00, 0x00, 0x01, 0x01, 0x00, 0x01, 0x02,
                            0x00, 0x01, 0x04, 0x00, 0x04, 0x80, 0xCA, 0x00, 0x66};
    uint8_t got[64];
    size_t n = conn_run(&s, peer, send, sizeof send, got, sizeof got);
    const uint8_t want[] = {0x00, 0x00, 0x00, 0x05, 0x3B, 0x80, 0x80, 0x01, 0x01, 0x00,
                            0x05, 0x3B, 0x80, 0x80, 0x01, 0x01, 0x00, 0x05, 0x3B, 0x80,
                            0x80, 0x01, 0x01, 0x00, 0x03, 0xCA, 0x90, 0x00};
    EXPECT_OK(s.rc);
    EXPECT_MEM(got, n, want, sizeof want);
    /* The connection is the insertion (cold power on), its end the removal. */
    EXPECT_STR(f.events, "on,off,on,reset,off");
}

static void test_tcp_conn_rejects(void)
{
    const struct {
        const char *what;
        uint8_t bytes[4];
        size_t n;
        tc_err want;
    } cases[] = {
        {"empty frame", {0x00, 0x00}, 2, TC_ERR_FORMAT},
        {"unknown control", {0x00, 0x01, 0x03}, 3, TC_ERR_FORMAT},
        {"oversize", {0x00, 0x11}, 2, TC_ERR_RANGE},
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(cases); i++) {
        struct fake_card f;
        struct tc_card_ops ops;
        fake_init(&f, &ops);
        struct conn_srv s;
        int peer = conn_start(&s, PROTO_TCP, 16, &ops);
        uint8_t got[16];
        size_t n = conn_run(&s, peer, cases[i].bytes, cases[i].n, got, sizeof got);
        if (s.rc != cases[i].want)
            tc_test_fail_at(__FILE__, __LINE__, "%s: got '%s'", cases[i].what, tc_err_name(s.rc));
        EXPECT_EQ_U(n, 0);
        EXPECT_STR(f.events, "on,off");
    }
}

/* ------------------------------------------------------------------ TCP end to end */

struct tcp_srv {
    struct tc_card_ops ops;
    volatile sig_atomic_t stop;
    volatile uint16_t port;
    tc_err rc;
    pthread_t th;
};

static void on_listen(void *arg, uint16_t port)
{
    struct tcp_srv *s = arg;
    s->port = port;
}

static void *tcp_srv_main(void *arg)
{
    struct tcp_srv *s = arg;
    s->rc = tc_transport_serve_tcp(&s->ops, "127.0.0.1:0", &s->stop, on_listen, s);
    return NULL;
}

static bool tcp_srv_start(struct tcp_srv *s, const struct tc_card_ops *ops)
{
    memset(s, 0, sizeof *s);
    s->ops = *ops;
    if (pthread_create(&s->th, NULL, tcp_srv_main, s) != 0)
        return false;
    for (int i = 0; i < 500 && s->port == 0; i++)
        sleep_ms(10);
    return s->port != 0;
}

static void tcp_srv_stop(struct tcp_srv *s)
{
    s->stop = 1;
    (void)pthread_join(s->th, NULL);
}

static void test_tcp_end_to_end(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    struct tcp_srv s;
    EXPECT(tcp_srv_start(&s, &ops));
    char hp[32];
    (void)snprintf(hp, sizeof hp, "127.0.0.1:%u", (unsigned)s.port);
    struct tc_transport t;
    EXPECT_OK(tc_transport_tcp_open(&t, hp, 5000));
    EXPECT(strstr(t.name, hp) != NULL);
    const uint8_t cmd[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    uint8_t resp[16];
    size_t rlen = 0;
    EXPECT_OK(t.transmit(t.ctx, cmd, sizeof cmd, resp, sizeof resp, &rlen));
    const uint8_t want[] = {0xA4, 0x90, 0x00};
    EXPECT_MEM(resp, rlen, want, sizeof want);
    uint8_t atr[TC_TRANSPORT_MAX_ATR];
    size_t alen = 0;
    EXPECT_OK(t.reset(t.ctx, atr, sizeof atr, &alen));
    EXPECT_MEM(atr, alen, f.atr, f.atr_len);
    /* Short commands cannot be told from control messages: refused. */
    EXPECT_ERR(t.transmit(t.ctx, cmd, 3, resp, sizeof resp, &rlen), TC_ERR_RANGE);
    /* A reply larger than the caller's buffer: refused, the link dropped. */
    f.big_len = 100;
    const uint8_t big[] = {0x80, 0xBB, 0x00, 0x00};
    EXPECT_ERR(t.transmit(t.ctx, big, sizeof big, resp, sizeof resp, &rlen), TC_ERR_SPACE);
    EXPECT_ERR(t.transmit(t.ctx, cmd, sizeof cmd, resp, sizeof resp, &rlen), TC_ERR_IO);
    tc_transport_close(&t);
    EXPECT(t.ctx == NULL);
    /* A second host: a new insertion. */
    EXPECT_OK(tc_transport_tcp_open(&t, hp, 5000));
    EXPECT_OK(t.transmit(t.ctx, cmd, sizeof cmd, resp, sizeof resp, &rlen));
    tc_transport_close(&t);
    sleep_ms(300);
    tcp_srv_stop(&s);
    EXPECT_OK(s.rc);
    EXPECT_STR(f.events, "on,reset,off,on,off");
}

/* A scripted card server that answers the first frame with fixed bytes. */
struct script_srv {
    int lfd;
    uint8_t reply[8];
    size_t reply_len;
    pthread_t th;
};

static void *script_main(void *arg)
{
    struct script_srv *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd >= 0) {
        uint8_t buf[300];
        size_t len = 0;
        enum tc_frame_event ev;
        if (tc_frame_read(fd, buf, sizeof buf, &len, 5000, NULL, &ev) == TC_OK)
            write_bytes(fd, s->reply, s->reply_len);
        (void)close(fd);
    }
    return NULL;
}

static uint16_t listen_any(int *lfd)
{
    struct tc_hostport hp;
    uint16_t port = 0;
    if (tc_net_parse_hostport("127.0.0.1:0", NULL, true, &hp) != TC_OK ||
        tc_net_listen(&hp, lfd, &port) != TC_OK)
        return 0;
    return port;
}

static void test_tcp_client_rejects(void)
{
    const struct {
        const char *what;
        uint8_t reply[8];
        size_t n;
        tc_err want;
    } cases[] = {
        {"reply without status word", {0x00, 0x01, 0x90}, 3, TC_ERR_FORMAT},
        {"empty reply", {0x00, 0x00}, 2, TC_ERR_FORMAT},
        {"server closes without reply", {0}, 0, TC_ERR_IO},
        {"reply cut short", {0x00, 0x05, 0x90, 0x00}, 4, TC_ERR_TRUNCATED},
    };
    for (size_t i = 0; i < TC_ARRAY_LEN(cases); i++) {
        struct script_srv s;
        memset(&s, 0, sizeof s);
        uint16_t port = listen_any(&s.lfd);
        EXPECT(port != 0);
        memcpy(s.reply, cases[i].reply, cases[i].n);
        s.reply_len = cases[i].n;
        EXPECT(pthread_create(&s.th, NULL, script_main, &s) == 0);
        char hp[32];
        (void)snprintf(hp, sizeof hp, "127.0.0.1:%u", (unsigned)port);
        struct tc_transport t;
        EXPECT_OK(tc_transport_tcp_open(&t, hp, 5000));
        const uint8_t cmd[] = {0x00, 0xA4, 0x04, 0x00};
        uint8_t resp[16];
        size_t rlen = 0;
        tc_err rc = t.transmit(t.ctx, cmd, sizeof cmd, resp, sizeof resp, &rlen);
        if (rc != cases[i].want)
            tc_test_fail_at(__FILE__, __LINE__, "%s: got '%s'", cases[i].what, tc_err_name(rc));
        tc_transport_close(&t);
        (void)pthread_join(s.th, NULL);
        (void)close(s.lfd);
    }
    /* Nobody listening: a clear I/O error, no hang. */
    int lfd = -1;
    uint16_t port = listen_any(&lfd);
    (void)close(lfd);
    char hp[32];
    (void)snprintf(hp, sizeof hp, "127.0.0.1:%u", (unsigned)port);
    struct tc_transport t;
    EXPECT_ERR(tc_transport_tcp_open(&t, hp, 2000), TC_ERR_IO);
    EXPECT(strstr(tc_error_last()->msg, "cannot connect") != NULL);
    EXPECT_ERR(tc_transport_tcp_open(&t, "127.0.0.1", 2000), TC_ERR_FORMAT);
}

/* ------------------------------------------------------------------ vpcd end to end */

struct vpcd_srv {
    struct tc_card_ops ops;
    char hostport[32];
    volatile sig_atomic_t stop;
    tc_err rc;
    pthread_t th;
};

static void *vpcd_main(void *arg)
{
    struct vpcd_srv *s = arg;
    s->rc = tc_transport_serve_vpcd(&s->ops, s->hostport, &s->stop);
    return NULL;
}

static int accept_within(int lfd, int ms)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    if (poll(&pfd, 1, ms) <= 0)
        return -1;
    return accept(lfd, NULL, NULL);
}

/* The test plays vpcd: it listens, the card connects; dropping the link and
 * accepting again is a removal and a new insertion. */
static void test_vpcd_reconnects(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    int lfd = -1;
    uint16_t port = listen_any(&lfd);
    EXPECT(port != 0);
    struct vpcd_srv s;
    memset(&s, 0, sizeof s);
    s.ops = ops;
    (void)snprintf(s.hostport, sizeof s.hostport, "%u", (unsigned)port);
    EXPECT(pthread_create(&s.th, NULL, vpcd_main, &s) == 0);
    for (int round = 0; round < 2; round++) {
        int fd = accept_within(lfd, 5000);
        EXPECT(fd >= 0);
        if (fd < 0)
            break;
        const uint8_t msgs[] = {0x00, 0x01, 0x01, 0x00, 0x01, 0x04,
                                0x00, 0x04, 0x80, 0x10, 0x00, 0x00};
        write_bytes(fd, msgs, sizeof msgs);
        uint8_t got[12];
        EXPECT(read_exact(fd, got, sizeof got));
        const uint8_t want[] = {0x00, 0x05, 0x3B, 0x80, 0x80, 0x01,
                                0x01, 0x00, 0x03, 0x10, 0x90, 0x00};
        EXPECT_MEM(got, sizeof got, want, sizeof want);
        (void)close(fd);
    }
    /* Stop while it waits to reconnect. */
    sleep_ms(100);
    s.stop = 1;
    (void)pthread_join(s.th, NULL);
    (void)close(lfd);
    EXPECT_OK(s.rc);
    EXPECT(strncmp(f.events, "on,off,on,off", 13) == 0);
}

/* With no vpcd listening the card keeps trying, and stops when told. */
static void test_vpcd_waits_for_driver(void)
{
    struct fake_card f;
    struct tc_card_ops ops;
    fake_init(&f, &ops);
    int lfd = -1;
    uint16_t port = listen_any(&lfd);
    (void)close(lfd);
    struct vpcd_srv s;
    memset(&s, 0, sizeof s);
    s.ops = ops;
    (void)snprintf(s.hostport, sizeof s.hostport, "127.0.0.1:%u", (unsigned)port);
    EXPECT(pthread_create(&s.th, NULL, vpcd_main, &s) == 0);
    sleep_ms(700);
    s.stop = 1;
    (void)pthread_join(s.th, NULL);
    EXPECT_OK(s.rc);
    EXPECT_STR(f.events, "");
    EXPECT_ERR(tc_transport_serve_vpcd(&ops, "127.0.0.1:0", &s.stop), TC_ERR_RANGE);
}

/* ------------------------------------------------------------------ PC/SC */

/* pcsc-lite's client honours PCSCLITE_CSOCK_NAME: pointing it at nothing
 * shows the error a user sees when pcscd is not running. */
static void test_pcsc_no_service(void)
{
    EXPECT(setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/trustchain-test/pcscd.comm", 1) == 0);
    struct tc_transport t;
    EXPECT_ERR(tc_transport_pcsc_open(&t, "any"), TC_ERR_IO);
    EXPECT(strstr(tc_error_last()->msg, "pcscd") != NULL);
    struct tc_pcsc_reader r[2];
    size_t n = 9;
    EXPECT_ERR(tc_transport_pcsc_list(r, TC_ARRAY_LEN(r), &n), TC_ERR_IO);
    EXPECT_EQ_U(n, 0);
    (void)unsetenv("PCSCLITE_CSOCK_NAME");
}

static const struct tc_test_case cases[] = {
    {"hostport_accepts", test_hostport_accepts},
    {"hostport_rejects", test_hostport_rejects},
    {"frame_roundtrip_and_eof", test_frame_roundtrip_and_eof},
    {"frame_rejects", test_frame_rejects},
    {"frame_stall_times_out", test_frame_stall_times_out},
    {"vpcd_wire_vectors", test_vpcd_wire_vectors},
    {"vpcd_partial_frames", test_vpcd_partial_frames},
    {"vpcd_large_apdu_and_response", test_vpcd_large_apdu_and_response},
    {"vpcd_oversize_frame_drops_link", test_vpcd_oversize_frame_drops_link},
    {"vpcd_unknown_control_drops_link", test_vpcd_unknown_control_drops_link},
    {"vpcd_truncated_frame", test_vpcd_truncated_frame},
    {"vpcd_card_failure_answers", test_vpcd_card_failure_answers},
    {"vpcd_stop_flag", test_vpcd_stop_flag},
    {"tcp_conn_control", test_tcp_conn_control},
    {"tcp_conn_rejects", test_tcp_conn_rejects},
    {"tcp_end_to_end", test_tcp_end_to_end},
    {"tcp_client_rejects", test_tcp_client_rejects},
    {"vpcd_reconnects", test_vpcd_reconnects},
    {"vpcd_waits_for_driver", test_vpcd_waits_for_driver},
    {"pcsc_no_service", test_pcsc_no_service},
};

TC_TEST_MAIN("transport", cases)
