/*
 * The OTA server's channel: evhttp on OpenSSL bufferevents, TLS 1.3 only,
 * mutual authentication with the device certificate verified (chain, root
 * CRL, batch CRL, profile) inside the handshake, so no HTTP byte of an
 * unverified peer is ever parsed. Per-connection bounds: header and body
 * caps and read/write timeouts in evhttp, a connection cap that pauses the
 * listener (excess connections wait in the kernel backlog).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <trustchain/ota.h>

struct ota_counters {
    _Atomic uint64_t accepted, open, handshakes, cert_rejected, handshake_failed, requests,
        closed_no_request, paused, admin_refused, sessions_done;
};

/*
 * A refused peer's socket kept open after its connection is freed: the
 * TLS alert that says why (e.g. certificate_revoked, RFC 8446 §6.2) is
 * already in the send queue, but a TLS 1.3 client sends its first request
 * right after its Finished, so closing with those bytes unread would make
 * the kernel answer RST and the client could lose the alert. The socket is
 * shut for writing (FIN after the alert) and drained until the peer closes
 * or the linger time passes.
 */
#define OTA_LINGER_MAX 256u
#define OTA_LINGER_MS  1000u

struct ota_linger {
    struct tc_ota_server *s;
    struct ota_linger *prev, *next;
    struct event *ev;
    struct timeval until; /* the peer gets this long, however it drips */
    int fd;
};

struct tc_ota_server {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    SSL_CTX *ctx;
    const struct tc_ota_trust *trust;
    const struct tc_ota_app *app;
    unsigned max_conns;
    bool listener_paused;
    uint16_t port;
    struct ota_counters c;
    struct ota_conn *conns; /* live connections, detached on free */
    struct ota_linger *lingers;
    unsigned nlingers;
};

struct ota_conn;
/* A request held until an asynchronous application answers. */
struct ota_pending {
    struct tc_ota_server *s;
    struct ota_conn *c; /* NULL once the connection is gone */
    struct evhttp_request *req;
};

/* Per-connection state, hung on the SSL object so that it is freed (and the
 * connection counted out) exactly when libevent frees the connection. */
struct ota_conn {
    struct tc_ota_server *srv; /* NULL once the server is gone */
    struct ota_conn *prev, *next;
    bool verified;
    bool handshake_done;
    bool cert_rejected;
    bool requested;
    int linger_fd; /* a dup of the socket of a refused peer, or -1 */
    char eid[TC_PKI_EID_DIGITS + 1];
    struct ota_pending *pending; /* a request the application answers later */
    /* The Amendment B session on this connection. */
    bool session;
    uint32_t step;
    char token[33]; /* 128 random bits, hex */
};

static void linger_end(struct ota_linger *l)
{
    struct tc_ota_server *s = l->s;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        s->lingers = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    s->nlingers--;
    event_free(l->ev);
    (void)close(l->fd);
    free(l);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_linger *l = arg;
    struct timeval now;
    if ((what & EV_READ) != 0 && event_base_gettimeofday_cached(l->s->base, &now) == 0 &&
        evutil_timercmp(&now, &l->until, <)) {
        uint8_t sink[4096];
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0)
            return; /* discarded; wait for the peer's FIN */
        /* A readiness report with nothing to read (EAGAIN) or a signal is
         * not the end of the linger: only EOF, a real error or the time. */
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
    }
    linger_end(l); /* EOF, error or the linger time is over */
}

/* Takes fd (always: it is closed on every path). */
static void linger_start(struct tc_ota_server *s, int fd)
{
    struct ota_linger *l = NULL;
    if (s->nlingers >= OTA_LINGER_MAX || shutdown(fd, SHUT_WR) != 0 ||
        (l = calloc(1, sizeof *l)) == NULL)
        goto fail;
    l->ev = event_new(s->base, fd, EV_READ | EV_PERSIST, linger_cb, l);
    const struct timeval tv = {.tv_sec = OTA_LINGER_MS / 1000u,
                               .tv_usec = (OTA_LINGER_MS % 1000u) * 1000};
    struct timeval now;
    if (l->ev == NULL || event_base_gettimeofday_cached(s->base, &now) != 0 ||
        event_add(l->ev, &tv) != 0)
        goto fail;
    evutil_timeradd(&now, &tv, &l->until);
    l->s = s;
    l->fd = fd;
    l->next = s->lingers;
    if (s->lingers != NULL)
        s->lingers->prev = l;
    s->lingers = l;
    s->nlingers++;
    return;
fail:
    if (l != NULL && l->ev != NULL)
        event_free(l->ev);
    free(l);
    (void)close(fd);
}

static int conn_idx = -1;
static pthread_once_t conn_idx_once = PTHREAD_ONCE_INIT;

static void conn_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct ota_conn *c = ptr;
    if (c == NULL)
        return;
    struct tc_ota_server *s = c->srv;
    if (c->pending != NULL)
        c->pending->c = NULL; /* its request was detached by evhttp */
    if (s == NULL) {          /* libevent finalised it after tc_ota_server_free */
        if (c->linger_fd >= 0)
            (void)close(c->linger_fd);
        free(c);
        return;
    }
    if (c->linger_fd >= 0)
        linger_start(s, c->linger_fd);
    if (c->session && s->app != NULL && s->app->end != NULL)
        s->app->end(s->app->ctx, c->eid, false);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->cert_rejected) {
        atomic_fetch_add(&s->c.cert_rejected, 1);
    } else if (!c->handshake_done) {
        atomic_fetch_add(&s->c.handshake_failed, 1);
        TC_LOG_WARNING("ota: connection closed before a TLS 1.3 handshake with a verified "
                       "client certificate completed (no certificate, not TLS 1.3, garbage "
                       "or timeout)");
    } else if (!c->requested) {
        atomic_fetch_add(&s->c.closed_no_request, 1);
        TC_LOG_WARNING("ota: device %s closed or timed out without a complete request", c->eid);
    }
    atomic_fetch_sub(&s->c.open, 1);
    if (s->listener_paused && atomic_load(&s->c.open) < s->max_conns && s->bound != NULL) {
        s->listener_paused = false;
        (void)evconnlistener_enable(evhttp_bound_socket_get_listener(s->bound));
    }
    free(c);
}

static void conn_idx_init(void)
{
    conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_free_cb);
}

static void peer_name(SSL *ssl, char *out, size_t out_size)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    int fd = SSL_get_fd(ssl);
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            (void)inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            (void)inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    (void)snprintf(out, out_size, "%s:%u", host, (unsigned)port);
}

/*
 * Replaces OpenSSL's own chain building: the device certificate libssl
 * parsed is verified by the trust's prepared verifier (tc_ota_trust,
 * tc_pki_verify's checks) against the trusted root, the batch CA that issued
 * it and both current CRLs (RFC 5280 §6 with §6.3 CRL processing for the
 * batch CA and the device), then the device profile and the batch fence.
 * Intermediates the client sends are ignored; only the workspace's batch
 * CAs are trusted.
 */
static int verify_cb(X509_STORE_CTX *xs, void *arg)
{
    struct tc_ota_server *s = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct ota_conn *c = ssl != NULL ? SSL_get_ex_data(ssl, conn_idx) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    char reason[TC_OTA_REASON_MAX] = "no certificate";
    char peer[64] = "?";
    struct tc_pki_device_info info;
    int ok = 0;
    if (ssl != NULL)
        peer_name(ssl, peer, sizeof peer);
    if (c == NULL || leaf == NULL)
        goto out;
    /* libssl's parse of the peer's certificate is the only one. */
    if (tc_ota_trust_verify_x509(s->trust, leaf, 0, &info, reason, sizeof reason) != TC_OK)
        goto out;
    memcpy(c->eid, info.eid, sizeof c->eid);
    c->verified = true;
    ok = 1;
out:
    if (!ok) {
        if (c != NULL) {
            c->cert_rejected = true;
            int fd = ssl != NULL ? SSL_get_fd(ssl) : -1;
            if (fd >= 0 && c->linger_fd < 0)
                c->linger_fd = dup(fd); /* -1 on failure: a plain close then */
        }
        X509_STORE_CTX_set_error(xs, strstr(reason, "revoked") != NULL ? X509_V_ERR_CERT_REVOKED
                                                                       : X509_V_ERR_CERT_REJECTED);
        TC_LOG_WARNING("ota: %s: client certificate refused: %s", peer, reason);
    } else {
        TC_LOG_DBG("ota: %s: device %s verified", peer, c->eid);
    }
    return ok;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_DONE) == 0)
        return;
    struct ota_conn *c = SSL_get_ex_data(ssl, conn_idx);
    if (c == NULL || c->handshake_done || !c->verified)
        return;
    c->handshake_done = true;
    atomic_fetch_add(&c->srv->c.handshakes, 1);
}

static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    struct tc_ota_server *s = arg;
    atomic_fetch_add(&s->c.accepted, 1);
    atomic_fetch_add(&s->c.open, 1);
    if (atomic_load(&s->c.open) >= s->max_conns && !s->listener_paused) {
        s->listener_paused = true;
        atomic_fetch_add(&s->c.paused, 1);
        (void)evconnlistener_disable(evhttp_bound_socket_get_listener(s->bound));
        TC_LOG_WARNING("ota: %u connections open, accepting paused", s->max_conns);
    }
    struct ota_conn *c = calloc(1, sizeof *c);
    SSL *ssl = SSL_new(s->ctx);
    if (c == NULL || ssl == NULL || SSL_set_ex_data(ssl, conn_idx, c) != 1) {
        /* evhttp then makes a plain bufferevent; the request handler refuses
         * every request on a connection without a verified TLS peer. */
        free(c);
        SSL_free(ssl);
        atomic_fetch_sub(&s->c.open, 1);
        TC_LOG_ERR("ota: out of memory for a TLS connection");
        return NULL;
    }
    c->srv = s;
    c->linger_fd = -1;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl); /* frees c and counts the connection out */
        return NULL;
    }
    return bev;
}

static struct ota_conn *request_conn(struct evhttp_request *req)
{
    struct evhttp_connection *evc = evhttp_request_get_connection(req);
    struct bufferevent *bev = evc != NULL ? evhttp_connection_get_bufferevent(evc) : NULL;
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    struct ota_conn *c = ssl != NULL ? SSL_get_ex_data(ssl, conn_idx) : NULL;
    return c != NULL && c->verified && c->handshake_done ? c : NULL;
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b != NULL && text != NULL)
        (void)evbuffer_add(b, text, strlen(text));
    (void)evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                            "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, b);
    if (b != NULL)
        evbuffer_free(b);
}

static void session_end(struct tc_ota_server *s, struct ota_conn *c, bool completed)
{
    if (!c->session)
        return;
    c->session = false;
    tc_memzero(c->token, sizeof c->token);
    if (completed)
        atomic_fetch_add(&s->c.sessions_done, 1);
    if (s->app != NULL && s->app->end != NULL)
        s->app->end(s->app->ctx, c->eid, completed);
}

/* Refuses an Amendment B request: logged, counted, the session (if any)
 * aborted and the connection closed after the reply. */
static void admin_refuse(struct tc_ota_server *s, struct ota_conn *c, struct evhttp_request *req,
                         int code, const char *reason, const char *why)
{
    atomic_fetch_add(&s->c.admin_refused, 1);
    TC_LOG_WARNING("ota: device %s: admin request refused (%d): %s", c->eid, code, why);
    session_end(s, c, false);
    evhttp_connection_free_on_completion(evhttp_request_get_connection(req));
    (void)evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    char text[TC_OTA_REASON_MAX + 2];
    (void)snprintf(text, sizeof text, "%s\n", why);
    reply_text(req, code, reason, text);
}

static const char *header(struct evhttp_request *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

/* GP Amendment B: X-Admin-Script-Status values the agent reports. */
static bool parse_status(const char *v, enum tc_ota_script_status *st)
{
    static const struct {
        const char *name;
        enum tc_ota_script_status st;
    } map[] = {{"ok", TC_OTA_STATUS_OK},
               {"unknown-application", TC_OTA_STATUS_UNKNOWN_APPLICATION},
               {"not-a-security-domain", TC_OTA_STATUS_NOT_A_SECURITY_DOMAIN},
               {"security-error", TC_OTA_STATUS_SECURITY_ERROR}};
    for (size_t i = 0; v != NULL && i < TC_ARRAY_LEN(map); i++) {
        if (strcmp(v, map[i].name) == 0) {
            *st = map[i].st;
            return true;
        }
    }
    return false;
}

/* Media types compare case-insensitively, parameters as written (RFC 9110
 * §8.3.1); optional whitespace before ';' is not accepted. */
static bool is_type(const char *v, const char *want)
{
    return v != NULL && strcasecmp(v, want) == 0;
}

/* The Next URI of the current step: /ota/v1/admin/<token>/<step>. */
static void next_uri(const struct ota_conn *c, char *out, size_t size)
{
    (void)snprintf(out, size, "%s/%s/%u", TC_OTA_ADMIN_PATH, c->token, (unsigned)c->step);
}

/* The answer to a step: the next script (200 with the Next URI), the end
 * of the session (204) or the application's failure (500). */
static void admin_answer(struct tc_ota_server *s, struct ota_conn *c, struct evhttp_request *req,
                         tc_err rc, const uint8_t *script, size_t len)
{
    char uri[128];
    if (rc != TC_OK) {
        char m[TC_OTA_REASON_MAX];
        tc_error_format(m, sizeof m);
        admin_refuse(s, c, req, 500, "Internal Server Error", m);
        return;
    }
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    if (len == 0) {
        /* Amendment B: 204 without X-Admin-Next-URI ends the session. */
        session_end(s, c, true);
        evhttp_send_reply(req, 204, "No Content", NULL);
        return;
    }
    c->step++;
    next_uri(c, uri, sizeof uri);
    struct evbuffer *ob = evbuffer_new();
    if (ob == NULL || evbuffer_add(ob, script, len) != 0) {
        if (ob != NULL)
            evbuffer_free(ob);
        admin_refuse(s, c, req, 500, "Internal Server Error", "out of memory");
        return;
    }
    (void)evhttp_add_header(oh, "Content-Type", TC_OTA_CT_SCRIPT);
    (void)evhttp_add_header(oh, "X-Admin-Next-URI", uri);
    evhttp_send_reply(req, 200, "OK", ob);
    evbuffer_free(ob);
}

/* The connection of a held request goes down: a request evhttp detached
 * (peer gone, timeout) survives until it is answered; one still attached
 * is freed with the connection. */
static void pending_closed(struct evhttp_connection *evc, void *arg)
{
    struct ota_pending *p = arg;
    (void)evc;
    if (p->req != NULL && evhttp_request_get_connection(p->req) != NULL)
        p->req = NULL;
    p->c = NULL;
}

/* An asynchronous application's answer. */
static void pending_reply(void *arg, tc_err rc, const uint8_t *script, size_t len)
{
    struct ota_pending *p = arg;
    struct ota_conn *c = p->c;
    if (c == NULL) {
        if (p->req != NULL)
            evhttp_send_reply(p->req, 500, "Internal Server Error", NULL); /* frees it */
        free(p);
        return;
    }
    c->pending = NULL;
    evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
    admin_answer(p->s, c, p->req, rc, script, len);
    free(p);
}

static void admin_cb(struct tc_ota_server *s, struct ota_conn *c, struct evhttp_request *req,
                     const char *path)
{
    struct tc_ota_admin_in in = {.eid = c->eid};
    struct tc_buf script;
    uint8_t rnd[16];
    char from[64], uri[128];
    tc_buf_init_heap(&script, TC_OTA_SCRIPT_BYTES_MAX);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        admin_refuse(s, c, req, 405, "Method Not Allowed", "administration uses POST");
        goto out;
    }
    /* GP Amendment B: every agent POST names the protocol version and the
     * agent (X-Admin-Protocol, X-Admin-From). */
    const char *proto = header(req, "X-Admin-Protocol");
    if (proto == NULL || strcmp(proto, TC_OTA_ADMIN_PROTOCOL) != 0) {
        admin_refuse(s, c, req, 400, "Bad Request",
                     "X-Admin-Protocol is not " TC_OTA_ADMIN_PROTOCOL);
        goto out;
    }
    (void)snprintf(from, sizeof from, "//se-id/eid/%s", c->eid);
    const char *agent = header(req, "X-Admin-From");
    size_t fl = strlen(from);
    if (agent == NULL || strncmp(agent, from, fl) != 0 || (agent[fl] != '\0' && agent[fl] != ';')) {
        admin_refuse(s, c, req, 403, "Forbidden",
                     "X-Admin-From does not name the EID of the client certificate");
        goto out;
    }
    const char *resume = header(req, "X-Admin-Resume");
    in.resume = resume != NULL && strcmp(resume, "true") == 0;

    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(body);
    const uint8_t *bp = blen > 0 ? evbuffer_pullup(body, -1) : NULL;
    if (blen > 0) {
        struct tc_ota_bytes r[TC_OTA_SCRIPT_MAX];
        size_t n = 0, executed = 0;
        if (!is_type(header(req, "Content-Type"), TC_OTA_CT_RESPONSE)) {
            admin_refuse(s, c, req, 415, "Unsupported Media Type",
                         "a response script needs Content-Type " TC_OTA_CT_RESPONSE);
            goto out;
        }
        if (!parse_status(header(req, "X-Admin-Script-Status"), &in.status)) {
            admin_refuse(s, c, req, 400, "Bad Request", "missing or unknown X-Admin-Script-Status");
            goto out;
        }
        if (bp == NULL || tc_ota_response_decode(bp, blen, r, &n, &executed) != TC_OK) {
            admin_refuse(s, c, req, 400, "Bad Request", "malformed response script");
            goto out;
        }
        in.response = bp;
        in.response_len = blen;
    } else if (header(req, "X-Admin-Script-Status") != NULL) {
        /* A status without a script: the agent could not run it. */
        if (!parse_status(header(req, "X-Admin-Script-Status"), &in.status)) {
            admin_refuse(s, c, req, 400, "Bad Request", "unknown X-Admin-Script-Status");
            goto out;
        }
    }

    if (strcmp(path, TC_OTA_ADMIN_PATH) == 0) {
        if (c->session || blen > 0) {
            admin_refuse(s, c, req, 409, "Conflict",
                         c->session ? "a session is already open on this connection"
                                    : "the first POST carries no response script");
            goto out;
        }
        if (tc_random(rnd, sizeof rnd) != TC_OK ||
            tc_hex_encode(rnd, sizeof rnd, c->token, sizeof c->token) != TC_OK) {
            admin_refuse(s, c, req, 500, "Internal Server Error", "no randomness");
            goto out;
        }
        c->session = true;
        c->step = 0;
    } else {
        /* Only the Next URI of the current step is accepted: an earlier step
         * (a replay), a later one or another session's token is refused. */
        next_uri(c, uri, sizeof uri);
        size_t ul = strlen(uri);
        if (!c->session || strlen(path) != ul || !tc_ct_equal(path, uri, ul)) {
            admin_refuse(s, c, req, 409, "Conflict",
                         "not the current X-Admin-Next-URI (replayed or out of order)");
            goto out;
        }
        if (blen == 0 && in.status == TC_OTA_STATUS_NONE) {
            admin_refuse(s, c, req, 400, "Bad Request", "no response script and no status");
            goto out;
        }
    }
    in.step = c->step;
    if (s->app != NULL && s->app->next_async != NULL) {
        struct ota_pending *p = calloc(1, sizeof *p);
        if (p == NULL) {
            admin_refuse(s, c, req, 500, "Internal Server Error", "out of memory");
            goto out;
        }
        p->s = s;
        p->c = c;
        p->req = req;
        c->pending = p;
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), pending_closed, p);
        tc_err rc = s->app->next_async(s->app->ctx, &in, pending_reply, p);
        if (rc != TC_OK) {
            evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
            c->pending = NULL;
            free(p);
            char m[TC_OTA_REASON_MAX];
            tc_error_format(m, sizeof m);
            admin_refuse(s, c, req, 500, "Internal Server Error", m);
        }
        goto out;
    }
    tc_err rc = TC_OK;
    if (s->app != NULL && s->app->next != NULL) {
        rc = s->app->next(s->app->ctx, &in, &script);
        if (rc == TC_OK)
            rc = tc_buf_status(&script);
    }
    admin_answer(s, c, req, rc, script.data, script.len);
out:
    tc_memzero(rnd, sizeof rnd);
    tc_buf_free(&script);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct tc_ota_server *s = arg;
    struct ota_conn *c = request_conn(req);
    if (c == NULL) {
        TC_LOG_ERR("ota: request on a connection without a verified device; closed");
        evhttp_connection_free_on_completion(evhttp_request_get_connection(req));
        reply_text(req, 403, "Forbidden", "no verified device\n");
        return;
    }
    c->requested = true;
    atomic_fetch_add(&s->c.requests, 1);
    const char *path = evhttp_request_get_uri(req);
    if (path != NULL && strncmp(path, TC_OTA_ADMIN_PATH, sizeof TC_OTA_ADMIN_PATH - 1) == 0 &&
        (path[sizeof TC_OTA_ADMIN_PATH - 1] == '\0' || path[sizeof TC_OTA_ADMIN_PATH - 1] == '/')) {
        admin_cb(s, c, req, path);
        return;
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET && path != NULL &&
        strcmp(path, "/ota/v1/identity") == 0) {
        char text[TC_PKI_EID_DIGITS + 2];
        (void)snprintf(text, sizeof text, "%s\n", c->eid);
        reply_text(req, 200, "OK", text);
        return;
    }
    reply_text(req, 404, "Not Found", "unknown resource\n");
}

static tc_err ctx_new(const struct tc_ota_server_config *cfg, struct tc_ota_server *s)
{
    s->ctx = SSL_CTX_new(TLS_server_method());
    TC_ENSURE(s->ctx != NULL, TC_ERR_CRYPTO);
    /* RFC 8446: TLS 1.3 only; no resumption, so every connection presents
     * and verifies the device certificate against the current CRLs. */
    TC_GUARD_OSSL(SSL_CTX_set_min_proto_version(s->ctx, TLS1_3_VERSION));
    TC_GUARD_OSSL(SSL_CTX_set_max_proto_version(s->ctx, TLS1_3_VERSION));
    TC_GUARD_OSSL(SSL_CTX_set_num_tickets(s->ctx, 0));
    (void)SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
    (void)SSL_CTX_set_options(s->ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    TC_GUARD_OSSL(SSL_CTX_use_certificate(s->ctx, cfg->cert));
    TC_GUARD_OSSL(SSL_CTX_use_PrivateKey(s->ctx, cfg->key));
    TC_GUARD_OSSL(SSL_CTX_check_private_key(s->ctx));
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(s->ctx, verify_cb, s);
    SSL_CTX_set_info_callback(s->ctx, info_cb);
    /* An idle connection gives its record buffers back (about 13 KiB of
     * the 37 KiB an idle device costs; measured by bench_ota). */
    (void)SSL_CTX_set_mode(s->ctx, SSL_MODE_RELEASE_BUFFERS);
    return TC_OK;
}

tc_err tc_ota_server_new(struct event_base *base, const struct tc_ota_server_config *cfg,
                         struct tc_ota_server **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(base != NULL && cfg != NULL && out != NULL && cfg->trust != NULL &&
                  cfg->cert != NULL && cfg->key != NULL && cfg->host != NULL,
              TC_ERR_ARG);
    *out = NULL;
    TC_ENSURE(pthread_once(&conn_idx_once, conn_idx_init) == 0 && conn_idx >= 0, TC_ERR_CRYPTO);
    struct tc_ota_server *s = calloc(1, sizeof *s);
    TC_ENSURE(s != NULL, TC_ERR_NOMEM);
    s->base = base;
    s->trust = cfg->trust;
    s->app = cfg->app;
    s->max_conns = cfg->max_connections ? cfg->max_connections : TC_OTA_CONNECTIONS_MAX;
    TC_TRY(ctx_new(cfg, s));
    s->http = evhttp_new(base);
    TC_CHECK(s->http != NULL, TC_ERR_NOMEM);
    size_t mh = cfg->max_headers ? cfg->max_headers : TC_OTA_HEADERS_MAX;
    size_t mb = cfg->max_body ? cfg->max_body : TC_OTA_BODY_MAX;
    unsigned to = cfg->timeout_ms ? cfg->timeout_ms : TC_OTA_TIMEOUT_MS;
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)mh);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)mb);
    struct timeval tv = {.tv_sec = (time_t)(to / 1000u),
                         .tv_usec = (suseconds_t)(to % 1000u) * 1000};
    evhttp_set_timeout_tv(s->http, &tv);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_bevcb(s->http, bev_cb, s);
    evhttp_set_gencb(s->http, request_cb, s);
    s->bound = evhttp_bind_socket_with_handle(s->http, cfg->host, cfg->port);
    TC_CHECK_MSG(s->bound != NULL, TC_ERR_IO, "cannot listen on %s port %u", cfg->host,
                 (unsigned)cfg->port);
    /* evhttp writes a reply's headers and body as two TLS records: without
     * TCP_NODELAY the second waits for the device's delayed ACK (~40 ms per
     * script). Accepted sockets inherit it from the listener on Linux. */
    int one = 1;
    (void)setsockopt(evhttp_bound_socket_get_fd(s->bound), IPPROTO_TCP, TCP_NODELAY, &one,
                     sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    TC_CHECK(getsockname(evhttp_bound_socket_get_fd(s->bound), (struct sockaddr *)&ss, &sl) == 0,
             TC_ERR_IO);
    s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *out = s;
    s = NULL;
    ret = TC_OK;
out:
    tc_ota_server_free(s);
    return ret;
}

uint16_t tc_ota_server_port(const struct tc_ota_server *s)
{
    return s != NULL ? s->port : 0;
}

const struct tc_ota_trust *tc_ota_server_set_trust(struct tc_ota_server *s,
                                                   const struct tc_ota_trust *t)
{
    if (s == NULL || t == NULL)
        return NULL;
    const struct tc_ota_trust *old = s->trust;
    s->trust = t;
    return old;
}

void tc_ota_server_stats(const struct tc_ota_server *s, struct tc_ota_stats *o)
{
    memset(o, 0, sizeof *o);
    if (s == NULL)
        return;
    o->accepted = atomic_load(&s->c.accepted);
    o->open = atomic_load(&s->c.open);
    o->handshakes = atomic_load(&s->c.handshakes);
    o->cert_rejected = atomic_load(&s->c.cert_rejected);
    o->handshake_failed = atomic_load(&s->c.handshake_failed);
    o->requests = atomic_load(&s->c.requests);
    o->closed_no_request = atomic_load(&s->c.closed_no_request);
    o->paused = atomic_load(&s->c.paused);
    o->admin_refused = atomic_load(&s->c.admin_refused);
    o->sessions_done = atomic_load(&s->c.sessions_done);
}

void tc_ota_server_free(struct tc_ota_server *s)
{
    if (s == NULL)
        return;
    if (s->http != NULL) {
        s->bound = NULL; /* connections counted out below must not re-enable it */
        evhttp_free(s->http);
        /* Let libevent run the deferred frees of the connections just
         * closed (bufferevent finalisers need one pass of the loop). */
        (void)event_base_loop(s->base, EVLOOP_NONBLOCK);
    }
    /* Bufferevents libevent has not finalised yet outlive the server. */
    for (struct ota_conn *c = s->conns; c != NULL; c = c->next)
        c->srv = NULL;
    while (s->lingers != NULL)
        linger_end(s->lingers);
    SSL_CTX_free(s->ctx);
    free(s);
}
