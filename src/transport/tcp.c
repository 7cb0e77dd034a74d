/*
 * Host side of the TCP card protocol (docs/transports.md): one request frame,
 * one reply frame. Requests of one byte are control (00 power off, 01 power
 * on, 02 warm reset, 04 ATR); the reply to 01, 02 and 04 is the ATR, to 00 an
 * empty frame. Anything longer is a command APDU answered with data + SW.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

struct tcp_link {
    int fd;
    int timeout_ms;
    char name[TC_NET_HOST_MAX + 32];
};

static tc_err tcp_exchange(struct tcp_link *l, const uint8_t *req, size_t req_len, uint8_t *resp,
                           size_t resp_size, size_t *resp_len)
{
    TC_ENSURE_MSG(l->fd >= 0, TC_ERR_IO, "%s: link closed after an earlier error", l->name);
    tc_err rc = tc_frame_write(l->fd, req, req_len, l->timeout_ms);
    enum tc_frame_event ev = TC_FRAME_OK;
    if (rc == TC_OK)
        rc = tc_frame_read(l->fd, resp, resp_size, resp_len, l->timeout_ms, NULL, &ev);
    if (rc == TC_OK && ev != TC_FRAME_OK)
        rc = TC_FAIL(TC_ERR_IO, "%s: %s", l->name,
                     ev == TC_FRAME_EOF ? "card server closed the link" : "no reply in time");
    if (rc != TC_OK) {
        /* A half-read stream cannot be resynchronised: drop it. */
        (void)close(l->fd);
        l->fd = -1;
        if (rc == TC_ERR_RANGE)
            rc = TC_FAIL(TC_ERR_SPACE, "%s: reply larger than the %zu-byte buffer", l->name,
                         resp_size);
        return rc;
    }
    return TC_OK;
}

static tc_err tcp_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                           size_t resp_size, size_t *resp_len)
{
    struct tcp_link *l = ctx;
    /* One-byte payloads are control messages: a command APDU has 4 or more. */
    TC_ENSURE_MSG(cmd_len >= 4 && cmd_len <= TC_TRANSPORT_MAX_FRAME, TC_ERR_RANGE,
                  "command APDU of %zu bytes cannot be sent over TCP (4..%u)", cmd_len,
                  TC_TRANSPORT_MAX_FRAME);
    TC_GUARD(tcp_exchange(l, cmd, cmd_len, resp, resp_size, resp_len));
    TC_ENSURE_MSG(*resp_len >= 2, TC_ERR_FORMAT, "%s: reply of %zu bytes has no status word",
                  l->name, *resp_len);
    return TC_OK;
}

static tc_err tcp_reset(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    struct tcp_link *l = ctx;
    const uint8_t ctl = 0x02;
    uint8_t buf[TC_TRANSPORT_MAX_ATR];
    size_t n = 0;
    TC_GUARD(tcp_exchange(l, &ctl, 1, buf, sizeof buf, &n));
    TC_ENSURE_MSG(n >= 2, TC_ERR_FORMAT, "%s: ATR of %zu bytes", l->name, n);
    TC_ENSURE(n <= atr_size, TC_ERR_SPACE);
    memcpy(atr, buf, n);
    *atr_len = n;
    return TC_OK;
}

static void tcp_close(void *ctx)
{
    struct tcp_link *l = ctx;
    if (l == NULL)
        return;
    if (l->fd >= 0)
        (void)close(l->fd);
    free(l);
}

tc_err tc_transport_tcp_open(struct tc_transport *t, const char *hostport, int timeout_ms)
{
    TC_ENSURE(t != NULL && hostport != NULL && timeout_ms >= 0, TC_ERR_ARG);
    memset(t, 0, sizeof *t);
    struct tc_hostport hp;
    TC_GUARD(tc_net_parse_hostport(hostport, NULL, false, &hp));
    struct tcp_link *l = calloc(1, sizeof *l);
    TC_ENSURE(l != NULL, TC_ERR_NOMEM);
    l->fd = -1;
    l->timeout_ms = timeout_ms == 0 ? TC_TRANSPORT_TIMEOUT_MS : timeout_ms;
    (void)snprintf(l->name, sizeof l->name, "TCP card %s", hostport);
    tc_err rc = tc_net_connect(&hp, l->timeout_ms, &l->fd);
    if (rc != TC_OK) {
        free(l);
        return rc;
    }
    t->ctx = l;
    t->name = l->name;
    t->transmit = tcp_transmit;
    t->reset = tcp_reset;
    t->close = tcp_close;
    return TC_OK;
}
