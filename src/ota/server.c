/*
 * The OTA server's channel: evhttp on OpenSSL bufferevents, TLS 1.3 only,
 * mutual authentication with the device certificate verified (chain, root
 * CRL, batch CRL, profile) inside the handshake, so no HTTP byte of an
 * unverified peer is ever parsed. Per-connection bounds: header and body
 * caps and read/write timeouts in evhttp, a connection cap that pauses the
 * listener (excess connections wait in the kernel backlog).
 *
 * Threads. Connections are carried by "loops": with cfg->threads 0 the
 * one loop is the caller's event base; with N > 0 there are N loop
 * threads, each with its own event base and evhttp accepting on the same
 * listening socket (whichever loop is free accepts), each carrying its
 * share of the connection cap. The application (struct tc_ota_app) always
 * runs on the caller's loop thread: a loop thread hands each admin request
 * to it as a call through a mailbox (a locked list and a pipe that wakes
 * the reader's loop) and gets the answer back the same way. The only
 * state the loop threads share is read-only (SSL_CTX, the trust, swapped
 * under a lock), the counters (atomics) and the mailboxes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

struct ota_worker;
struct ota_call;

struct ota_linger {
    struct ota_worker *w;
    struct ota_linger *prev, *next;
    struct event *ev;
    struct timeval until; /* the peer gets this long, however it drips */
    int fd;
};

/* Calls handed between threads: a locked list, and a pipe that wakes the
 * reader's loop when the list stops being empty (one byte per wake). */
struct ota_mailbox {
    pthread_mutex_t mu;
    bool mu_ok;
    struct ota_call *head, *tail;
    int fd[2];
    struct event *ev;
    bool stop; /* a loop thread's mailbox: leave the loop */
};

/* One loop carrying connections. */
struct ota_worker {
    struct tc_ota_server *s;
    unsigned idx;
    struct event_base *base; /* its own, or the caller's (threads 0) */
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    unsigned cap;  /* its share of the connection cap */
    unsigned open; /* connections it carries now */
    bool paused;
    struct ota_conn *conns; /* live connections, detached on free */
    struct ota_linger *lingers;
    unsigned nlingers;
    pthread_t thread;
    bool started;
    struct ota_mailbox box; /* the application's answers (threads > 0) */
};

struct tc_ota_server {
    struct event_base *base; /* the caller's loop: the application runs on it */
    SSL_CTX *ctx;
    pthread_rwlock_t trust_lock; /* read by handshakes, written by set_trust */
    bool trust_lock_ok;
    const struct tc_ota_trust *trust;
    const struct tc_ota_app *app;
    uint16_t port;
    struct ota_counters c;
    bool threaded;
    struct ota_worker *w;
    unsigned nw;
    struct ota_mailbox inbox; /* calls to the application (threads > 0) */
    struct ota_call *held;    /* calls the application holds (its thread only) */
};

/*
 * A call to the application: the next script of a session (NEXT) or the
 * end of one (END). Made on the connection's loop thread; `in`, `eid` and
 * `body` are then read by the application's thread, which writes rc, msg
 * and the script; `c` and `req` are only ever touched on the loop thread.
 * It goes back to its loop and is freed there, or where the application
 * answers it after the server is gone (w NULL).
 */
enum ota_call_kind { OTA_CALL_NEXT = 1, OTA_CALL_END };

struct ota_call {
    struct ota_call *next;          /* in a mailbox */
    struct ota_call *hprev, *hnext; /* in the server's held list */
    struct ota_worker *w;           /* NULL once the server is gone */
    enum ota_call_kind kind;
    struct ota_conn *c;         /* NULL once the connection is gone */
    struct evhttp_request *req; /* NULL once freed with its connection */
    char eid[TC_PKI_EID_DIGITS + 1];
    bool completed; /* END: the session ended with 204 */
    struct tc_ota_admin_in in;
    uint8_t *body; /* the response script in.response points at */
    tc_err rc;
    char msg[TC_OTA_REASON_MAX]; /* the application's error, formatted on its thread */
    uint8_t *script;
    size_t len;
};

/* Per-connection state, hung on the SSL object so that it is freed (and the
 * connection counted out) exactly when libevent frees the connection. */
struct ota_conn {
    struct ota_worker *w; /* NULL once the server is gone */
    struct ota_conn *prev, *next;
    bool verified;
    bool handshake_done;
    bool cert_rejected;
    bool requested;
    int linger_fd; /* a dup of the socket of a refused peer, or -1 */
    char eid[TC_PKI_EID_DIGITS + 1];
    struct ota_call *pending; /* a request the application answers later */
    /* The Amendment B session on this connection. */
    bool session;
    uint32_t step;
    char token[33]; /* 128 random bits, hex */
};

static void linger_end(struct ota_linger *l)
{
    struct ota_worker *w = l->w;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        w->lingers = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    w->nlingers--;
    event_free(l->ev);
    (void)close(l->fd);
    free(l);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_linger *l = arg;
    struct timeval now;
    if ((what & EV_READ) != 0 && event_base_gettimeofday_cached(l->w->base, &now) == 0 &&
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
static void linger_start(struct ota_worker *w, int fd)
{
    struct ota_linger *l = NULL;
    if (w->nlingers >= OTA_LINGER_MAX || shutdown(fd, SHUT_WR) != 0 ||
        (l = calloc(1, sizeof *l)) == NULL)
        goto fail;
    l->ev = event_new(w->base, fd, EV_READ | EV_PERSIST, linger_cb, l);
    const struct timeval tv = {.tv_sec = OTA_LINGER_MS / 1000u,
                               .tv_usec = (OTA_LINGER_MS % 1000u) * 1000};
    struct timeval now;
    if (l->ev == NULL || event_base_gettimeofday_cached(w->base, &now) != 0 ||
        event_add(l->ev, &tv) != 0)
        goto fail;
    evutil_timeradd(&now, &tv, &l->until);
    l->w = w;
    l->fd = fd;
    l->next = w->lingers;
    if (w->lingers != NULL)
        w->lingers->prev = l;
    w->lingers = l;
    w->nlingers++;
    return;
fail:
    if (l != NULL && l->ev != NULL)
        event_free(l->ev);
    free(l);
    (void)close(fd);
}

/* ------------------------------------------------------------------ mailboxes */

static tc_err box_init(struct ota_mailbox *b, struct event_base *base, event_callback_fn cb,
                       void *arg)
{
    b->fd[0] = b->fd[1] = -1;
    TC_ENSURE(pthread_mutex_init(&b->mu, NULL) == 0, TC_ERR_INTERNAL);
    b->mu_ok = true;
    TC_ENSURE_MSG(pipe(b->fd) == 0, TC_ERR_IO, "pipe: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        TC_ENSURE_MSG(fcntl(b->fd[i], F_SETFL, fcntl(b->fd[i], F_GETFL) | O_NONBLOCK) == 0 &&
                          fcntl(b->fd[i], F_SETFD, FD_CLOEXEC) == 0,
                      TC_ERR_IO, "pipe flags: %s", strerror(errno));
    b->ev = event_new(base, b->fd[0], EV_READ | EV_PERSIST, cb, arg);
    TC_ENSURE_MSG(b->ev != NULL && event_add(b->ev, NULL) == 0, TC_ERR_IO,
                  "cannot watch a mailbox pipe");
    return TC_OK;
}

static void box_wake(struct ota_mailbox *b)
{
    uint8_t one = 1;
    /* Never full: one byte per wake, and the reader drains before it
     * takes the list. */
    while (write(b->fd[1], &one, 1) < 0 && errno == EINTR)
        continue;
}

static void box_put(struct ota_mailbox *b, struct ota_call *p)
{
    p->next = NULL;
    pthread_mutex_lock(&b->mu);
    bool wake = b->head == NULL;
    if (b->tail != NULL)
        b->tail->next = p;
    else
        b->head = p;
    b->tail = p;
    pthread_mutex_unlock(&b->mu);
    if (wake)
        box_wake(b);
}

/* Drains the pipe, then takes every call in order: a call put after the
 * take finds the list empty and wakes the reader again. */
static struct ota_call *box_take(struct ota_mailbox *b, bool *stop)
{
    uint8_t sink[64];
    while (read(b->fd[0], sink, sizeof sink) > 0)
        continue;
    pthread_mutex_lock(&b->mu);
    struct ota_call *l = b->head;
    b->head = b->tail = NULL;
    if (stop != NULL)
        *stop = b->stop;
    pthread_mutex_unlock(&b->mu);
    return l;
}

static void box_stop(struct ota_mailbox *b)
{
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_mutex_unlock(&b->mu);
    box_wake(b);
}

static void box_free(struct ota_mailbox *b)
{
    if (b->ev != NULL)
        event_free(b->ev);
    b->ev = NULL;
    for (int i = 0; i < 2; i++)
        if (b->fd[i] >= 0)
            (void)close(b->fd[i]);
    b->fd[0] = b->fd[1] = -1;
    if (b->mu_ok)
        pthread_mutex_destroy(&b->mu);
    b->mu_ok = false;
}

/* ------------------------------------------------------------------ calls */

static struct ota_call *call_new(struct ota_worker *w, enum ota_call_kind kind, const char *eid)
{
    struct ota_call *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->w = w;
    p->kind = kind;
    (void)snprintf(p->eid, sizeof p->eid, "%s", eid);
    return p;
}

static void call_free(struct ota_call *p)
{
    if (p == NULL)
        return;
    free(p->body);
    free(p->script);
    free(p);
}

static void held_add(struct tc_ota_server *s, struct ota_call *p)
{
    p->hprev = NULL;
    p->hnext = s->held;
    if (s->held != NULL)
        s->held->hprev = p;
    s->held = p;
}

static void held_del(struct tc_ota_server *s, struct ota_call *p)
{
    if (p->hprev != NULL)
        p->hprev->hnext = p->hnext;
    else
        s->held = p->hnext;
    if (p->hnext != NULL)
        p->hnext->hprev = p->hprev;
    p->hprev = p->hnext = NULL;
}

static void admin_answer(struct ota_worker *w, struct ota_conn *c, struct evhttp_request *req,
                         tc_err rc, const char *msg, const uint8_t *script, size_t len);

/* On the loop thread: the application's answer goes to its request. */
static void call_finish(struct ota_call *p, const uint8_t *script, size_t len)
{
    struct ota_conn *c = p->c;
    if (c == NULL) {
        /* The connection is gone; a request evhttp detached waits for a
         * reply that frees it. */
        if (p->req != NULL)
            evhttp_send_reply(p->req, 500, "Internal Server Error", NULL);
    } else {
        c->pending = NULL;
        evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
        admin_answer(p->w, c, p->req, p->rc, p->msg, script, len);
    }
    call_free(p);
}

/* On the application's thread: the answer to a NEXT call goes back to the
 * connection's loop (at once when that is this thread). */
static void app_answer(struct tc_ota_server *s, struct ota_call *p, tc_err rc,
                       const uint8_t *script, size_t len)
{
    p->rc = rc;
    if (rc != TC_OK) {
        tc_error_format(p->msg, sizeof p->msg);
        len = 0;
    }
    if (!s->threaded || s->app == NULL) { /* on the connection's loop already */
        call_finish(p, script, len);
        return;
    }
    if (len > 0) {
        p->script = malloc(len);
        if (p->script == NULL) {
            p->rc = TC_ERR_NOMEM;
            (void)snprintf(p->msg, sizeof p->msg, "out of memory");
            len = 0;
        } else {
            memcpy(p->script, script, len);
        }
    }
    p->len = len;
    box_put(&p->w->box, p);
}

/* The application's asynchronous reply (struct tc_ota_app.next_async). */
static void app_reply(void *arg, tc_err rc, const uint8_t *script, size_t len)
{
    struct ota_call *p = arg;
    if (p->w == NULL) {
        /* The server is gone: its loops are stopped, so a detached
         * request is freed here. */
        if (p->req != NULL)
            evhttp_send_reply(p->req, 500, "Internal Server Error", NULL);
        call_free(p);
        return;
    }
    struct tc_ota_server *s = p->w->s;
    held_del(s, p);
    app_answer(s, p, rc, script, len);
}

/* On the application's thread: runs one call. */
static void app_run(struct tc_ota_server *s, struct ota_call *p)
{
    const struct tc_ota_app *a = s->app;
    if (p->kind == OTA_CALL_END) {
        if (a != NULL && a->end != NULL)
            a->end(a->ctx, p->eid, p->completed);
        call_free(p);
        return;
    }
    if (a != NULL && a->next_async != NULL) {
        held_add(s, p);
        tc_err rc = a->next_async(a->ctx, &p->in, app_reply, p);
        if (rc != TC_OK) { /* reply is never called then */
            held_del(s, p);
            app_answer(s, p, rc, NULL, 0);
        }
        return;
    }
    struct tc_buf script;
    tc_buf_init_heap(&script, TC_OTA_SCRIPT_BYTES_MAX);
    tc_err rc = TC_OK;
    if (a != NULL && a->next != NULL) {
        rc = a->next(a->ctx, &p->in, &script);
        if (rc == TC_OK)
            rc = tc_buf_status(&script);
    }
    app_answer(s, p, rc, script.data, script.len);
    tc_buf_free(&script);
}

/* From a loop: a call to the application. */
static void to_app(struct tc_ota_server *s, struct ota_call *p)
{
    /* Without an application every session ends at once, on the loop. */
    if (s->threaded && s->app != NULL)
        box_put(&s->inbox, p);
    else
        app_run(s, p);
}

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tc_ota_server *s = arg;
    (void)fd;
    (void)what;
    struct ota_call *l = box_take(&s->inbox, NULL);
    while (l != NULL) {
        struct ota_call *p = l;
        l = p->next;
        app_run(s, p);
    }
}

static void worker_box_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_worker *w = arg;
    bool stop = false;
    (void)fd;
    (void)what;
    struct ota_call *l = box_take(&w->box, &stop);
    while (l != NULL) {
        struct ota_call *p = l;
        l = p->next;
        call_finish(p, p->script, p->len);
    }
    if (stop)
        (void)event_base_loopbreak(w->base);
}

/* The application hears that a session ended (on its thread). */
static void app_end(struct ota_worker *w, const char *eid, bool completed)
{
    struct tc_ota_server *s = w->s;
    if (s->app == NULL || s->app->end == NULL)
        return;
    struct ota_call *p = call_new(w, OTA_CALL_END, eid);
    if (p == NULL) {
        TC_LOG_ERR("ota: device %s: out of memory telling the application its session ended", eid);
        return;
    }
    p->completed = completed;
    to_app(s, p);
}

/* ------------------------------------------------------------------ connections */

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
    struct ota_worker *w = c->w;
    if (c->pending != NULL) {
        /* Freed without evhttp's close callback: its request went with
         * the connection. */
        c->pending->c = NULL;
        c->pending->req = NULL;
    }
    if (w == NULL) { /* libevent finalised it after tc_ota_server_free */
        if (c->linger_fd >= 0)
            (void)close(c->linger_fd);
        free(c);
        return;
    }
    struct tc_ota_server *s = w->s;
    if (c->linger_fd >= 0)
        linger_start(w, c->linger_fd);
    if (c->session)
        app_end(w, c->eid, false);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
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
    w->open--;
    if (w->paused && w->open < w->cap && w->bound != NULL) {
        w->paused = false;
        (void)evconnlistener_enable(evhttp_bound_socket_get_listener(w->bound));
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
 * CAs are trusted. Runs on the connection's loop thread, concurrently with
 * the other loops' handshakes on the same trust (read-only); the lock only
 * keeps set_trust from swapping it mid-check.
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
    pthread_rwlock_rdlock(&s->trust_lock);
    tc_err rc = tc_ota_trust_verify_x509(s->trust, leaf, 0, &info, reason, sizeof reason);
    pthread_rwlock_unlock(&s->trust_lock);
    if (rc != TC_OK)
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
    if (c == NULL || c->handshake_done || !c->verified || c->w == NULL)
        return;
    c->handshake_done = true;
    atomic_fetch_add(&c->w->s->c.handshakes, 1);
}

static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    struct ota_worker *w = arg;
    struct tc_ota_server *s = w->s;
    atomic_fetch_add(&s->c.accepted, 1);
    atomic_fetch_add(&s->c.open, 1);
    w->open++;
    if (w->open >= w->cap && !w->paused) {
        w->paused = true;
        atomic_fetch_add(&s->c.paused, 1);
        (void)evconnlistener_disable(evhttp_bound_socket_get_listener(w->bound));
        if (s->nw > 1)
            TC_LOG_WARNING("ota: loop %u: %u connections open (its share of the cap), accepting "
                           "paused there",
                           w->idx, w->cap);
        else
            TC_LOG_WARNING("ota: %u connections open, accepting paused", w->cap);
    }
    struct ota_conn *c = calloc(1, sizeof *c);
    SSL *ssl = SSL_new(s->ctx);
    if (c == NULL || ssl == NULL || SSL_set_ex_data(ssl, conn_idx, c) != 1) {
        /* evhttp then makes a plain bufferevent; the request handler refuses
         * every request on a connection without a verified TLS peer. The
         * connection stays counted until it is freed (conn_free_cb is not
         * called for it): counted out here, and accepting resumes. */
        free(c);
        SSL_free(ssl);
        atomic_fetch_sub(&s->c.open, 1);
        w->open--;
        if (w->paused && w->open < w->cap) {
            w->paused = false;
            (void)evconnlistener_enable(evhttp_bound_socket_get_listener(w->bound));
        }
        TC_LOG_ERR("ota: out of memory for a TLS connection");
        return NULL;
    }
    c->w = w;
    c->linger_fd = -1;
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
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

/*
 * evhttp_send_reply with the reply in one TLS record: evhttp queues the
 * status line and headers and the body as separate buffer chains, and the
 * OpenSSL bufferevent makes one SSL_write (a record and a socket write)
 * per chain when the loop next writes; joined here first, a reply costs
 * one record and one write on the server and one read on the device.
 */
static void send_reply(struct evhttp_request *req, int code, const char *reason,
                       struct evbuffer *body)
{
    struct evhttp_connection *evc = evhttp_request_get_connection(req);
    struct bufferevent *bev = evc != NULL ? evhttp_connection_get_bufferevent(evc) : NULL;
    evhttp_send_reply(req, code, reason, body);
    if (bev != NULL)
        (void)evbuffer_pullup(bufferevent_get_output(bev), -1);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b != NULL && text != NULL)
        (void)evbuffer_add(b, text, strlen(text));
    (void)evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                            "text/plain; charset=utf-8");
    send_reply(req, code, reason, b);
    if (b != NULL)
        evbuffer_free(b);
}

static void session_end(struct ota_worker *w, struct ota_conn *c, bool completed)
{
    if (!c->session)
        return;
    c->session = false;
    tc_memzero(c->token, sizeof c->token);
    if (completed)
        atomic_fetch_add(&w->s->c.sessions_done, 1);
    app_end(w, c->eid, completed);
}

/* Refuses an Amendment B request: logged, counted, the session (if any)
 * aborted and the connection closed after the reply. */
static void admin_refuse(struct ota_worker *w, struct ota_conn *c, struct evhttp_request *req,
                         int code, const char *reason, const char *why)
{
    atomic_fetch_add(&w->s->c.admin_refused, 1);
    TC_LOG_WARNING("ota: device %s: admin request refused (%d): %s", c->eid, code, why);
    session_end(w, c, false);
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
 * of the session (204) or the application's failure (500, with the
 * message it gave). */
static void admin_answer(struct ota_worker *w, struct ota_conn *c, struct evhttp_request *req,
                         tc_err rc, const char *msg, const uint8_t *script, size_t len)
{
    char uri[128];
    if (rc != TC_OK) {
        admin_refuse(w, c, req, 500, "Internal Server Error", msg);
        return;
    }
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    if (len == 0) {
        /* Amendment B: 204 without X-Admin-Next-URI ends the session. */
        session_end(w, c, true);
        send_reply(req, 204, "No Content", NULL);
        return;
    }
    c->step++;
    next_uri(c, uri, sizeof uri);
    struct evbuffer *ob = evbuffer_new();
    if (ob == NULL || evbuffer_add(ob, script, len) != 0) {
        if (ob != NULL)
            evbuffer_free(ob);
        admin_refuse(w, c, req, 500, "Internal Server Error", "out of memory");
        return;
    }
    (void)evhttp_add_header(oh, "Content-Type", TC_OTA_CT_SCRIPT);
    (void)evhttp_add_header(oh, "X-Admin-Next-URI", uri);
    send_reply(req, 200, "OK", ob);
    evbuffer_free(ob);
}

/* The connection of a held request goes down: a request evhttp detached
 * (peer gone, timeout) survives until it is answered; one still attached
 * is freed with the connection. */
static void pending_closed(struct evhttp_connection *evc, void *arg)
{
    struct ota_call *p = arg;
    (void)evc;
    if (p->req != NULL && evhttp_request_get_connection(p->req) != NULL)
        p->req = NULL;
    /* Both links go: the connection's state may be finalised after the
     * call is answered and freed. */
    if (p->c != NULL)
        p->c->pending = NULL;
    p->c = NULL;
}

static void admin_cb(struct ota_worker *w, struct ota_conn *c, struct evhttp_request *req,
                     const char *path)
{
    struct tc_ota_admin_in in = {.eid = c->eid};
    uint8_t rnd[16];
    char from[64], uri[128];
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        admin_refuse(w, c, req, 405, "Method Not Allowed", "administration uses POST");
        goto out;
    }
    /* GP Amendment B: every agent POST names the protocol version and the
     * agent (X-Admin-Protocol, X-Admin-From). */
    const char *proto = header(req, "X-Admin-Protocol");
    if (proto == NULL || strcmp(proto, TC_OTA_ADMIN_PROTOCOL) != 0) {
        admin_refuse(w, c, req, 400, "Bad Request",
                     "X-Admin-Protocol is not " TC_OTA_ADMIN_PROTOCOL);
        goto out;
    }
    (void)snprintf(from, sizeof from, "//se-id/eid/%s", c->eid);
    const char *agent = header(req, "X-Admin-From");
    size_t fl = strlen(from);
    if (agent == NULL || strncmp(agent, from, fl) != 0 || (agent[fl] != '\0' && agent[fl] != ';')) {
        admin_refuse(w, c, req, 403, "Forbidden",
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
            admin_refuse(w, c, req, 415, "Unsupported Media Type",
                         "a response script needs Content-Type " TC_OTA_CT_RESPONSE);
            goto out;
        }
        if (!parse_status(header(req, "X-Admin-Script-Status"), &in.status)) {
            admin_refuse(w, c, req, 400, "Bad Request", "missing or unknown X-Admin-Script-Status");
            goto out;
        }
        if (bp == NULL || tc_ota_response_decode(bp, blen, r, &n, &executed) != TC_OK) {
            admin_refuse(w, c, req, 400, "Bad Request", "malformed response script");
            goto out;
        }
    } else if (header(req, "X-Admin-Script-Status") != NULL) {
        /* A status without a script: the agent could not run it. */
        if (!parse_status(header(req, "X-Admin-Script-Status"), &in.status)) {
            admin_refuse(w, c, req, 400, "Bad Request", "unknown X-Admin-Script-Status");
            goto out;
        }
    }

    if (strcmp(path, TC_OTA_ADMIN_PATH) == 0) {
        if (c->session || blen > 0) {
            admin_refuse(w, c, req, 409, "Conflict",
                         c->session ? "a session is already open on this connection"
                                    : "the first POST carries no response script");
            goto out;
        }
        if (tc_random(rnd, sizeof rnd) != TC_OK ||
            tc_hex_encode(rnd, sizeof rnd, c->token, sizeof c->token) != TC_OK) {
            admin_refuse(w, c, req, 500, "Internal Server Error", "no randomness");
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
            admin_refuse(w, c, req, 409, "Conflict",
                         "not the current X-Admin-Next-URI (replayed or out of order)");
            goto out;
        }
        if (blen == 0 && in.status == TC_OTA_STATUS_NONE) {
            admin_refuse(w, c, req, 400, "Bad Request", "no response script and no status");
            goto out;
        }
    }
    in.step = c->step;
    /* The call owns a copy of everything the application reads: it may
     * run on another thread, after this request's buffers are gone. */
    struct ota_call *p = call_new(w, OTA_CALL_NEXT, c->eid);
    if (p == NULL || (blen > 0 && (p->body = malloc(blen)) == NULL)) {
        call_free(p);
        admin_refuse(w, c, req, 500, "Internal Server Error", "out of memory");
        goto out;
    }
    p->in = in;
    p->in.eid = p->eid;
    if (blen > 0) {
        memcpy(p->body, bp, blen);
        p->in.response = p->body;
        p->in.response_len = blen;
    }
    p->c = c;
    p->req = req;
    c->pending = p;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), pending_closed, p);
    to_app(w->s, p);
out:
    tc_memzero(rnd, sizeof rnd);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct ota_worker *w = arg;
    struct ota_conn *c = request_conn(req);
    if (c == NULL) {
        TC_LOG_ERR("ota: request on a connection without a verified device; closed");
        evhttp_connection_free_on_completion(evhttp_request_get_connection(req));
        reply_text(req, 403, "Forbidden", "no verified device\n");
        return;
    }
    c->requested = true;
    atomic_fetch_add(&w->s->c.requests, 1);
    const char *path = evhttp_request_get_uri(req);
    if (path != NULL && strncmp(path, TC_OTA_ADMIN_PATH, sizeof TC_OTA_ADMIN_PATH - 1) == 0 &&
        (path[sizeof TC_OTA_ADMIN_PATH - 1] == '\0' || path[sizeof TC_OTA_ADMIN_PATH - 1] == '/')) {
        admin_cb(w, c, req, path);
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

/* ------------------------------------------------------------------ setup */

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

/* A loop's evhttp with the server's bounds and callbacks. */
static tc_err worker_http(const struct tc_ota_server_config *cfg, struct ota_worker *w)
{
    w->http = evhttp_new(w->base);
    TC_ENSURE(w->http != NULL, TC_ERR_NOMEM);
    size_t mh = cfg->max_headers ? cfg->max_headers : TC_OTA_HEADERS_MAX;
    size_t mb = cfg->max_body ? cfg->max_body : TC_OTA_BODY_MAX;
    unsigned to = cfg->timeout_ms ? cfg->timeout_ms : TC_OTA_TIMEOUT_MS;
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)mh);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)mb);
    struct timeval tv = {.tv_sec = (time_t)(to / 1000u),
                         .tv_usec = (suseconds_t)(to % 1000u) * 1000};
    evhttp_set_timeout_tv(w->http, &tv);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_bevcb(w->http, bev_cb, w);
    evhttp_set_gencb(w->http, request_cb, w);
    return TC_OK;
}

static void *worker_main(void *arg)
{
    struct ota_worker *w = arg;
    (void)event_base_dispatch(w->base); /* until its mailbox says stop */
    return NULL;
}

/* Every loop listens on one socket: the first binds it, the others accept
 * on duplicates of it, so whichever loop is free takes the next device. */
static tc_err listen_all(const struct tc_ota_server_config *cfg, struct tc_ota_server *s)
{
    struct ota_worker *w0 = &s->w[0];
    w0->bound = evhttp_bind_socket_with_handle(w0->http, cfg->host, cfg->port);
    TC_ENSURE_MSG(w0->bound != NULL, TC_ERR_IO, "cannot listen on %s port %u", cfg->host,
                  (unsigned)cfg->port);
    int fd = evhttp_bound_socket_get_fd(w0->bound);
    /* evhttp writes a reply's headers and body as two TLS records: without
     * TCP_NODELAY the second waits for the device's delayed ACK (~40 ms per
     * script). Accepted sockets inherit it from the listener on Linux. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (unsigned i = 1; i < s->nw; i++) {
        int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        TC_ENSURE_MSG(d >= 0, TC_ERR_IO, "dup of the listening socket: %s", strerror(errno));
        s->w[i].bound = evhttp_accept_socket_with_handle(s->w[i].http, d);
        if (s->w[i].bound == NULL) {
            (void)close(d);
            return TC_FAIL(TC_ERR_IO, "loop %u cannot accept on the listening socket", i);
        }
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    TC_ENSURE(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0, TC_ERR_IO);
    s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    /* The cap is shared out: loop i carries max/n connections, the first
     * max%n one more; a loop with no share never accepts. */
    unsigned max = cfg->max_connections ? cfg->max_connections : TC_OTA_CONNECTIONS_MAX;
    for (unsigned i = 0; i < s->nw; i++) {
        struct ota_worker *w = &s->w[i];
        w->cap = max / s->nw + (i < max % s->nw ? 1u : 0u);
        if (w->cap == 0) {
            w->paused = true;
            (void)evconnlistener_disable(evhttp_bound_socket_get_listener(w->bound));
        }
    }
    return TC_OK;
}

static tc_err workers_start(struct tc_ota_server *s)
{
    /* Signals are the caller's loop's business: the loop threads start
     * with every signal blocked. */
    sigset_t all, old;
    (void)sigfillset(&all);
    TC_ENSURE(pthread_sigmask(SIG_BLOCK, &all, &old) == 0, TC_ERR_INTERNAL);
    tc_err ret = TC_OK;
    for (unsigned i = 0; i < s->nw && ret == TC_OK; i++) {
        if (pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]) != 0)
            ret = TC_FAIL(TC_ERR_IO, "cannot start loop thread %u", i);
        else
            s->w[i].started = true;
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

tc_err tc_ota_server_new(struct event_base *base, const struct tc_ota_server_config *cfg,
                         struct tc_ota_server **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(base != NULL && cfg != NULL && out != NULL && cfg->trust != NULL &&
                  cfg->cert != NULL && cfg->key != NULL && cfg->host != NULL,
              TC_ERR_ARG);
    TC_ENSURE_MSG(cfg->threads <= TC_OTA_THREADS_MAX, TC_ERR_ARG, "%u loop threads (at most %u)",
                  cfg->threads, TC_OTA_THREADS_MAX);
    *out = NULL;
    TC_ENSURE(pthread_once(&conn_idx_once, conn_idx_init) == 0 && conn_idx >= 0, TC_ERR_CRYPTO);
    struct tc_ota_server *s = calloc(1, sizeof *s);
    TC_ENSURE(s != NULL, TC_ERR_NOMEM);
    s->base = base;
    s->trust = cfg->trust;
    s->app = cfg->app;
    s->threaded = cfg->threads > 0;
    s->nw = s->threaded ? cfg->threads : 1;
    s->inbox.fd[0] = s->inbox.fd[1] = -1;
    TC_CHECK(pthread_rwlock_init(&s->trust_lock, NULL) == 0, TC_ERR_INTERNAL);
    s->trust_lock_ok = true;
    s->w = calloc(s->nw, sizeof *s->w);
    TC_CHECK(s->w != NULL, TC_ERR_NOMEM);
    for (unsigned i = 0; i < s->nw; i++)
        s->w[i].box.fd[0] = s->w[i].box.fd[1] = -1;
    TC_TRY(ctx_new(cfg, s));
    for (unsigned i = 0; i < s->nw; i++) {
        struct ota_worker *w = &s->w[i];
        w->s = s;
        w->idx = i;
        w->base = s->threaded ? event_base_new() : base;
        TC_CHECK(w->base != NULL, TC_ERR_NOMEM);
        TC_TRY(worker_http(cfg, w));
        if (s->threaded)
            TC_TRY(box_init(&w->box, w->base, worker_box_cb, w));
    }
    TC_TRY(listen_all(cfg, s));
    if (s->threaded) {
        TC_TRY(box_init(&s->inbox, base, inbox_cb, s));
        TC_TRY(workers_start(s));
    }
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
    /* Once the write lock is held no handshake is using the old trust. */
    pthread_rwlock_wrlock(&s->trust_lock);
    const struct tc_ota_trust *old = s->trust;
    s->trust = t;
    pthread_rwlock_unlock(&s->trust_lock);
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

/* Drains a mailbox at shutdown: ends reach the application, requests that
 * never reached it are dropped, answers are finished (their connections
 * are gone). */
static void box_drain(struct tc_ota_server *s, struct ota_mailbox *b)
{
    if (!b->mu_ok)
        return;
    struct ota_call *l = box_take(b, NULL);
    while (l != NULL) {
        struct ota_call *p = l;
        l = p->next;
        if (b == &s->inbox && p->kind == OTA_CALL_END)
            app_run(s, p);
        else
            call_finish(p, p->script, p->len);
    }
}

void tc_ota_server_free(struct tc_ota_server *s)
{
    if (s == NULL)
        return;
    /* 1. The loop threads stop; from here on everything runs on this one. */
    for (unsigned i = 0; s->w != NULL && i < s->nw; i++) {
        if (s->w[i].started) {
            box_stop(&s->w[i].box);
            (void)pthread_join(s->w[i].thread, NULL);
            s->w[i].started = false;
        }
    }
    /* 2. Every connection closes; the sessions' ends are told (at once, or
     * through the inbox below). */
    for (unsigned i = 0; s->w != NULL && i < s->nw; i++) {
        struct ota_worker *w = &s->w[i];
        if (w->http != NULL) {
            w->bound = NULL; /* connections counted out must not re-enable it */
            evhttp_free(w->http);
            w->http = NULL;
            /* Let libevent run the deferred frees of the connections just
             * closed (bufferevent finalisers need one pass of the loop). */
            (void)event_base_loop(w->base, EVLOOP_NONBLOCK);
        }
        /* Bufferevents libevent has not finalised yet outlive the server. */
        for (struct ota_conn *c = w->conns; c != NULL; c = c->next)
            c->w = NULL;
        while (w->lingers != NULL)
            linger_end(w->lingers);
    }
    /* 3. Calls in flight: ends delivered, answers finished; what the
     * application still holds is freed when it answers. */
    box_drain(s, &s->inbox);
    for (unsigned i = 0; s->w != NULL && i < s->nw; i++)
        box_drain(s, &s->w[i].box);
    for (struct ota_call *p = s->held; p != NULL; p = p->hnext)
        p->w = NULL;
    s->held = NULL;
    box_free(&s->inbox);
    for (unsigned i = 0; s->w != NULL && i < s->nw; i++) {
        struct ota_worker *w = &s->w[i];
        box_free(&w->box);
        if (s->threaded && w->base != NULL)
            event_base_free(w->base);
    }
    free(s->w);
    if (s->trust_lock_ok)
        pthread_rwlock_destroy(&s->trust_lock);
    SSL_CTX_free(s->ctx);
    free(s);
}
