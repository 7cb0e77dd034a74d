/*
 * Internals of the transport module: host:port parsing, sockets with
 * deadlines, and the 2-byte big-endian length framing both wire protocols
 * (our TCP card protocol and vsmartcard's vpcd protocol) share.
 *
 * Must never: log or keep the bytes it moves (they may be wrapped keys).
 */
#ifndef TC_TRANSPORT_NET_H
#define TC_TRANSPORT_NET_H

#include <trustchain/transport.h>

#define TC_NET_HOST_MAX 256u

struct tc_hostport {
    char host[TC_NET_HOST_MAX];
    uint16_t port;
};

/* "HOST:PORT", "[v6]:PORT" or, when default_host is not NULL, "PORT" alone.
 * Port 0 only when allow_zero. */
TC_MUST_CHECK tc_err tc_net_parse_hostport(const char *s, const char *default_host, bool allow_zero,
                                           struct tc_hostport *out);
TC_MUST_CHECK tc_err tc_net_connect(const struct tc_hostport *hp, int timeout_ms, int *fd);
TC_MUST_CHECK tc_err tc_net_listen(const struct tc_hostport *hp, int *fd, uint16_t *bound_port);

/* How long a frame may take to arrive once its first byte did, so that a
 * stalled peer cannot hold a server forever. */
#define TC_NET_FRAME_TIMEOUT_MS 5000
/* How often a blocked server looks at its stop flag. */
#define TC_NET_STOP_POLL_MS 200

enum tc_frame_event {
    TC_FRAME_OK = 0, /* a whole frame arrived */
    TC_FRAME_EOF,    /* the peer closed the link between frames */
    TC_FRAME_STOP,   /* *stop became non-zero while waiting for a frame */
    TC_FRAME_IDLE    /* idle_ms passed without the first byte of a frame */
};

/*
 * Read one frame (u16be length + payload) into buf. Waits for the first byte
 * at most idle_ms (-1: without limit), then TC_NET_FRAME_TIMEOUT_MS for the
 * rest. A length above cap is TC_ERR_RANGE (the link cannot be resynced: the
 * caller drops it); EOF inside a frame is TC_ERR_TRUNCATED; a timeout inside
 * a frame or a socket error TC_ERR_IO. Reads loop until the full length is in.
 */
TC_MUST_CHECK tc_err tc_frame_read(int fd, uint8_t *buf, size_t cap, size_t *len, int idle_ms,
                                   const volatile sig_atomic_t *stop, enum tc_frame_event *ev);
/* Write one frame; len <= TC_TRANSPORT_MAX_FRAME. */
TC_MUST_CHECK tc_err tc_frame_write(int fd, const uint8_t *p, size_t len, int timeout_ms);

/* Per-connection protocol engines, exposed for the tests: serve one link on
 * fd until EOF, *stop, or a protocol error; the card sees power events as the
 * protocol defines them. `cap` bounds an incoming frame. */
TC_MUST_CHECK tc_err tc_serve_tcp_conn(const struct tc_card_ops *card, int fd, size_t cap,
                                       const volatile sig_atomic_t *stop);
TC_MUST_CHECK tc_err tc_serve_vpcd_conn(const struct tc_card_ops *card, int fd, size_t cap,
                                        const volatile sig_atomic_t *stop);

#endif
