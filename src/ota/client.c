/*
 * The device agent's HTTPS client: HTTP/1.1 over TLS 1.3 to the OTA server
 * with the card's certificate and card-held key, running the GP Amendment
 * B dialog (docs/ota.md, docs/ota-agent.md). HTTP is libevent's evhttp on
 * an OpenSSL bufferevent: no hand-written HTTP parser. One implementation
 * serves the blocking call (a private event loop) and the event-driven one
 * (the caller's loop, many devices in one thread).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <trustchain/ota.h>
#include <trustchain/ota_agent.h>

#define HOST_MAX     256u
#define URI_MAX      200u
#define RESPONSE_MAX TC_OTA_BODY_MAX /* the server's default cap on a request body */

struct tc_ota_agent {
    SSL_CTX *ssl_ctx;
    char host[HOST_MAX];
    bool host_is_ip;
    uint16_t port;
    unsigned timeout_ms, deadline_ms, max_steps;
    bool resume;
    void (*on_script)(void *arg, const char *eid, unsigned step, unsigned apdus, uint16_t last_sw);
    void *arg;
};

struct tc_ota_agent_session {
    struct tc_ota_agent *a;
    struct event_base *base;
    struct tc_ota_card *card;
    tc_ota_agent_done_fn done;
    void *arg;
    struct evhttp_connection *evcon;
    SSL *ssl; /* owned by the bufferevent, which evcon owns */
    struct event *deadline, *finish;
    unsigned step;
    bool finished;
    /* What the TLS layer saw, to say why a connection failed. */
    bool tcp_connected, handshake_done, verify_failed;
    int verify_error;
    int alert;      /* fatal alert received from the server, -1: none */
    int http_error; /* enum evhttp_request_error, -1: none */
    unsigned long ssl_error;
    struct timespec started;
    struct tc_ota_agent_result res;
};

const char *tc_ota_agent_outcome_name(enum tc_ota_agent_outcome o)
{
    switch (o) {
    case TC_OTA_AGENT_DONE:
        return "done";
    case TC_OTA_AGENT_UNREACHABLE:
        return "unreachable";
    case TC_OTA_AGENT_SERVER_UNTRUSTED:
        return "server-untrusted";
    case TC_OTA_AGENT_REFUSED:
        return "refused";
    case TC_OTA_AGENT_TLS:
        return "tls";
    case TC_OTA_AGENT_HTTP:
        return "http";
    case TC_OTA_AGENT_PROTOCOL:
        return "protocol";
    case TC_OTA_AGENT_CARD:
        return "card";
    case TC_OTA_AGENT_BOUNDS:
        return "bounds";
    case TC_OTA_AGENT_TIMEOUT:
        return "timeout";
    case TC_OTA_AGENT_INTERNAL:
        return "internal";
    default:
        return "unknown";
    }
}

static int sess_index = -1;
static pthread_once_t sess_once = PTHREAD_ONCE_INIT;

static void sess_index_init(void)
{
    sess_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ shared context */

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tc_ota_agent_session *s = ssl != NULL ? SSL_get_ex_data(ssl, sess_index) : NULL;
    if (!ok && s != NULL && !s->verify_failed) {
        s->verify_failed = true;
        s->verify_error = X509_STORE_CTX_get_error(x);
    }
    return ok;
}

static tc_err parse_url(struct tc_ota_agent *a, const char *url)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    TC_CHECK_MSG(u != NULL, TC_ERR_FORMAT, "bad URL \"%s\"", url);
    const char *scheme = evhttp_uri_get_scheme(u), *host = evhttp_uri_get_host(u);
    TC_CHECK_MSG(scheme != NULL && strcasecmp(scheme, "https") == 0, TC_ERR_FORMAT,
                 "bad URL \"%s\": the scheme must be https", url);
    TC_CHECK_MSG(host != NULL && host[0] != '\0', TC_ERR_FORMAT, "bad URL \"%s\": no host", url);
    TC_CHECK_MSG(evhttp_uri_get_userinfo(u) == NULL && evhttp_uri_get_query(u) == NULL &&
                     evhttp_uri_get_fragment(u) == NULL,
                 TC_ERR_FORMAT, "bad URL \"%s\": only https://HOST:PORT[/]", url);
    const char *path = evhttp_uri_get_path(u);
    TC_CHECK_MSG(path == NULL || path[0] == '\0' || strcmp(path, "/") == 0, TC_ERR_FORMAT,
                 "bad URL \"%s\": the path is fixed (%s)", url, TC_OTA_ADMIN_PATH);
    int port = evhttp_uri_get_port(u);
    TC_CHECK_MSG(port == -1 || (port > 0 && port <= 65535), TC_ERR_FORMAT, "bad URL \"%s\": port",
                 url);
    a->port = port == -1 ? 443 : (uint16_t)port;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* RFC 3986 IP-literal */
        host++;
        hl -= 2;
    }
    TC_CHECK_MSG(hl > 0 && hl < sizeof a->host, TC_ERR_FORMAT, "bad URL \"%s\": host", url);
    memcpy(a->host, host, hl);
    a->host[hl] = '\0';
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(a->host);
    a->host_is_ip = ip != NULL;
    ASN1_OCTET_STRING_free(ip);
    ret = TC_OK;
out:
    if (u != NULL) /* libevent 2.1's evhttp_uri_free is not NULL-safe */
        evhttp_uri_free(u);
    return ret;
}

tc_err tc_ota_agent_new(const struct tc_ota_agent_config *cfg, struct tc_ota_agent **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_agent *a = NULL;
    OSSL_LIB_CTX *l = NULL;
    TC_ENSURE(cfg != NULL && cfg->url != NULL && cfg->trust_file != NULL && out != NULL,
              TC_ERR_ARG);
    *out = NULL;
    TC_ENSURE_MSG(pthread_once(&sess_once, sess_index_init) == 0 && sess_index >= 0, TC_ERR_CRYPTO,
                  "SSL ex_data index");
    TC_GUARD(tc_ota_provider_libctx(&l));
    a = calloc(1, sizeof *a);
    TC_CHECK(a != NULL, TC_ERR_NOMEM);
    TC_TRY(parse_url(a, cfg->url));
    a->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : TC_OTA_AGENT_TIMEOUT_MS;
    a->deadline_ms = cfg->deadline_ms != 0 ? cfg->deadline_ms : TC_OTA_AGENT_DEADLINE_MS;
    a->max_steps = cfg->max_steps != 0 ? cfg->max_steps : TC_OTA_AGENT_STEPS_MAX;
    a->resume = cfg->resume;
    a->on_script = cfg->on_script;
    a->arg = cfg->arg;
    a->ssl_ctx = SSL_CTX_new_ex(l, NULL, TLS_client_method());
    TC_CHECK_MSG(a->ssl_ctx != NULL, TC_ERR_CRYPTO, "SSL_CTX_new_ex failed");
    /* RFC 8446 only, as the server. */
    TC_CHECK(SSL_CTX_set_min_proto_version(a->ssl_ctx, TLS1_3_VERSION) == 1, TC_ERR_CRYPTO);
    TC_CHECK(SSL_CTX_set_max_proto_version(a->ssl_ctx, TLS1_3_VERSION) == 1, TC_ERR_CRYPTO);
    /* The card signs ecdsa_secp256r1_sha256 (RFC 8446 §4.2.3) only. */
    static char sigalgs[] = "ECDSA+SHA256"; /* the macro casts away const */
    TC_CHECK(SSL_CTX_set1_client_sigalgs_list(a->ssl_ctx, sigalgs) == 1, TC_ERR_CRYPTO);
    /* Every dialog authenticates afresh: no resumption. */
    SSL_CTX_set_session_cache_mode(a->ssl_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(a->ssl_ctx, SSL_OP_NO_TICKET);
    /* Trust anchors: the pinned server certificate or its CA(s). A pinned
     * self-signed leaf is an anchor by itself (partial chain). */
    ERR_clear_error();
    TC_CHECK_MSG(SSL_CTX_load_verify_locations(a->ssl_ctx, cfg->trust_file, NULL) == 1, TC_ERR_IO,
                 "cannot load the server certificate %s (PEM)", cfg->trust_file);
    X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(a->ssl_ctx);
    TC_CHECK(X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN) == 1, TC_ERR_CRYPTO);
    SSL_CTX_set_verify(a->ssl_ctx, SSL_VERIFY_PEER, verify_cb);
    *out = a;
    a = NULL;
    ret = TC_OK;
out:
    ERR_clear_error();
    tc_ota_agent_free(a);
    return ret;
}

void tc_ota_agent_free(struct tc_ota_agent *a)
{
    if (a == NULL)
        return;
    SSL_CTX_free(a->ssl_ctx);
    free(a);
}

/* ------------------------------------------------------------------ one dialog */

static void result(struct tc_ota_agent_session *s, enum tc_ota_agent_outcome o, const char *fmt,
                   ...) TC_PRINTF(3, 4);

static void result(struct tc_ota_agent_session *s, enum tc_ota_agent_outcome o, const char *fmt,
                   ...)
{
    if (s->finished)
        return;
    s->finished = true;
    s->res.outcome = o;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(s->res.detail, sizeof s->res.detail, fmt, ap);
    va_end(ap);
    /* The callbacks run inside evhttp: the connection is freed from a
     * fresh callback. */
    event_active(s->finish, EV_TIMEOUT, 1);
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tc_ota_agent_session *s = arg;
    (void)fd;
    (void)what;
    if (s->evcon != NULL) {
        evhttp_connection_free(s->evcon);
        s->evcon = NULL;
        s->ssl = NULL;
    }
    event_del(s->deadline);
    if (s->done != NULL)
        s->done(s->arg, &s->res); /* may free s */
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tc_ota_agent_session *s = arg;
    (void)fd;
    (void)what;
    result(s, TC_OTA_AGENT_BOUNDS, "dialog not finished within %u ms", s->a->deadline_ms);
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    struct tc_ota_agent_session *s = SSL_get_ex_data(ssl, sess_index);
    if (s == NULL)
        return;
    /* Connected once the socket has a peer (a refused connect reaches the
     * handshake too: the ClientHello write is what fails). */
    if (!s->tcp_connected) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = SSL_get_fd(ssl);
        if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
            s->tcp_connected = true;
            /* evhttp writes headers and body as separate records: without
             * this the second waits for the server's delayed ACK. */
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
    }
    if ((where & SSL_CB_HANDSHAKE_DONE) != 0)
        s->handshake_done = true;
    /* RFC 8446 §6: the alert the server sent (level in the high byte). */
    if ((where & SSL_CB_READ_ALERT) != 0 && (ret >> 8) == SSL3_AL_FATAL && s->alert < 0)
        s->alert = ret & 0xff;
}

static uint64_t elapsed_ms(const struct tc_ota_agent_session *s)
{
    struct timespec now;
    (void)clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(now.tv_sec - s->started.tv_sec) * 1000 +
                 (int64_t)(now.tv_nsec - s->started.tv_nsec) / 1000000;
    return ms > 0 ? (uint64_t)ms : 0;
}

/* Why a request got no HTTP answer: in the order the layers fail. */
static void connection_failed(struct tc_ota_agent_session *s)
{
    char e[160] = "";
    if (s->ssl_error != 0)
        ERR_error_string_n(s->ssl_error, e, sizeof e);
    /* evhttp reports a timeout while connecting (TCP and TLS) as a plain
     * failure: a silent peer is told by the time spent. */
    bool silent = s->http_error == EVREQ_HTTP_TIMEOUT ||
                  (s->ssl_error == 0 && elapsed_ms(s) >= s->a->timeout_ms);
    if (s->verify_failed)
        result(s, TC_OTA_AGENT_SERVER_UNTRUSTED, "server certificate not trusted: %s",
               X509_verify_cert_error_string(s->verify_error));
    else if (s->alert >= 0)
        result(s, TC_OTA_AGENT_REFUSED, "server refused the connection: TLS alert %s (%d)",
               SSL_alert_desc_string_long(s->alert), s->alert);
    else if (!s->tcp_connected)
        result(s, silent ? TC_OTA_AGENT_TIMEOUT : TC_OTA_AGENT_UNREACHABLE,
               "server %s port %u unreachable%s", s->a->host, (unsigned)s->a->port,
               silent ? " (timeout)" : "");
    else if (!s->handshake_done && silent)
        result(s, TC_OTA_AGENT_TIMEOUT, "no TLS answer from the server within %u ms",
               s->a->timeout_ms);
    else if (!s->handshake_done)
        result(s, TC_OTA_AGENT_TLS, "TLS handshake failed%s%s", e[0] != '\0' ? ": " : "", e);
    else if (s->http_error == EVREQ_HTTP_TIMEOUT)
        result(s, TC_OTA_AGENT_TIMEOUT, "no answer within %u ms", s->a->timeout_ms);
    else if (s->http_error == EVREQ_HTTP_DATA_TOO_LONG)
        result(s, TC_OTA_AGENT_BOUNDS,
               "server reply over the agent's caps (headers %u bytes, script %u bytes)",
               TC_OTA_AGENT_HEADERS_MAX, TC_OTA_SCRIPT_BYTES_MAX);
    else if (s->http_error == EVREQ_HTTP_INVALID_HEADER)
        result(s, TC_OTA_AGENT_PROTOCOL, "malformed HTTP reply");
    else if (s->step == 0)
        /* TLS 1.3 (RFC 8446 §4.4.2): the server judges the client
         * certificate after the client has finished, so a refusal can
         * arrive after the first request was sent; if the server closes
         * with that request unread, its alert may be lost to the reset. */
        result(s, TC_OTA_AGENT_REFUSED,
               "server closed the connection after the handshake without answering (it "
               "refuses this device's certificate: revoked, unknown or expired)%s%s",
               e[0] != '\0' ? ": " : "", e);
    else
        result(s, TC_OTA_AGENT_TLS, "connection closed by the server%s%s", e[0] != '\0' ? ": " : "",
               e);
}

static void error_cb(enum evhttp_request_error err, void *arg)
{
    struct tc_ota_agent_session *s = arg;
    s->http_error = (int)err;
    if (s->evcon != NULL) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);
        unsigned long e = bev != NULL ? bufferevent_get_openssl_error(bev) : 0;
        if (e != 0)
            s->ssl_error = e;
    }
}

static void request_cb(struct evhttp_request *req, void *arg);

static tc_err post(struct tc_ota_agent_session *s, const char *uri, const uint8_t *body,
                   size_t body_len)
{
    char from[64];
    struct evhttp_request *req = evhttp_request_new(request_cb, s);
    TC_ENSURE(req != NULL, TC_ERR_NOMEM);
    evhttp_request_set_error_cb(req, error_cb);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    (void)snprintf(from, sizeof from, "//se-id/eid/%s", s->card->eid);
    /* GP Amendment B §3.3: the agent names the protocol and the card on
     * every request; responses carry the script status. */
    bool ok = evhttp_add_header(h, "Host", s->a->host) == 0 &&
              evhttp_add_header(h, "X-Admin-Protocol", TC_OTA_ADMIN_PROTOCOL) == 0 &&
              evhttp_add_header(h, "X-Admin-From", from) == 0 &&
              (!s->a->resume || s->step > 0 || evhttp_add_header(h, "X-Admin-Resume", "true") == 0);
    if (ok && body != NULL)
        ok = evhttp_add_header(h, "Content-Type", TC_OTA_CT_RESPONSE) == 0 &&
             evhttp_add_header(h, "X-Admin-Script-Status", "ok") == 0 &&
             evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len) == 0;
    if (!ok) {
        evhttp_request_free(req);
        return TC_FAIL(TC_ERR_NOMEM, "request headers");
    }
    /* evhttp_make_request frees req on failure. */
    TC_ENSURE_MSG(evhttp_make_request(s->evcon, req, EVHTTP_REQ_POST, uri) == 0, TC_ERR_IO,
                  "request not sent");
    /* On an open connection evhttp has queued the request line and headers
     * and the body as separate buffer chains, which the OpenSSL bufferevent
     * writes as separate TLS records (a socket write each here, a read each
     * at the server) when the loop next writes: joined now, a request is one
     * record. The first request waits for the connection and goes out as
     * evhttp writes it. */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);
    struct evbuffer *o = bev != NULL ? bufferevent_get_output(bev) : NULL;
    if (o != NULL && evbuffer_get_length(o) > 0)
        (void)evbuffer_pullup(o, -1);
    return TC_OK;
}

static bool next_uri_ok(const char *u)
{
    /* What the server issues: /ota/v1/admin/<token>/<step> (docs/ota.md):
     * a token of letters, digits, '-' or '_', then a decimal step. */
    size_t n = strlen(u), pl = strlen(TC_OTA_ADMIN_PATH), i = pl + 1, t = 0, d = 0;
    if (n >= URI_MAX || n <= pl + 1 || strncmp(u, TC_OTA_ADMIN_PATH, pl) != 0 || u[pl] != '/')
        return false;
    for (; i < n && u[i] != '/'; i++, t++) {
        char c = u[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    for (i++; i < n; i++, d++)
        if (u[i] < '0' || u[i] > '9')
            return false;
    return t > 0 && d > 0 && d <= 10;
}

static void script_received(struct tc_ota_agent_session *s, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    const char *next = evhttp_find_header(h, "X-Admin-Next-URI");
    const char *conn = evhttp_find_header(h, "Connection");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    uint8_t *script = NULL;
    struct tc_buf resp;
    char uri[URI_MAX];
    tc_buf_init_heap(&resp, RESPONSE_MAX);
    if (ct == NULL || strcasecmp(ct, TC_OTA_CT_SCRIPT) != 0) {
        result(s, TC_OTA_AGENT_PROTOCOL, "script with media type %s", ct != NULL ? ct : "(none)");
        goto out;
    }
    if (next == NULL || !next_uri_ok(next)) {
        result(s, TC_OTA_AGENT_PROTOCOL, "script without a valid X-Admin-Next-URI");
        goto out;
    }
    /* A session lives on one connection (docs/ota.md): a server that
     * closes it cannot take the answer. */
    if (conn != NULL && strcasecmp(conn, "close") == 0) {
        result(s, TC_OTA_AGENT_PROTOCOL, "server closed the connection inside the dialog");
        goto out;
    }
    if (++s->step > s->a->max_steps) {
        result(s, TC_OTA_AGENT_BOUNDS, "more than %u scripts in one dialog", s->a->max_steps);
        goto out;
    }
    if (len == 0 || len > TC_OTA_SCRIPT_BYTES_MAX || (script = malloc(len)) == NULL ||
        evbuffer_copyout(in, script, len) != (ev_ssize_t)len) {
        result(s, len > TC_OTA_SCRIPT_BYTES_MAX ? TC_OTA_AGENT_BOUNDS : TC_OTA_AGENT_PROTOCOL,
               "script of %zu bytes", len);
        goto out;
    }
    memcpy(uri, next, strlen(next) + 1);
    tc_err rc = tc_ota_agent_run_script(s->card->t, script, len, &resp);
    if (rc != TC_OK) {
        char m[200];
        tc_error_format(m, sizeof m);
        result(s,
               rc == TC_ERR_IO                            ? TC_OTA_AGENT_CARD
               : rc == TC_ERR_NOMEM || rc == TC_ERR_SPACE ? TC_OTA_AGENT_BOUNDS
                                                          : TC_OTA_AGENT_PROTOCOL,
               "%s %u: %s", rc == TC_ERR_IO ? "card link failed at script" : "script", s->step, m);
        goto out;
    }
    /* Count what went back: the R-APDUs and the last status word. */
    struct tc_ota_bytes r[TC_OTA_SCRIPT_MAX];
    size_t n = 0, executed = 0;
    if (tc_ota_response_decode(resp.data, resp.len, r, &n, &executed) == TC_OK && n > 0) {
        s->res.apdus += (unsigned)n;
        s->res.last_sw =
            (uint16_t)((unsigned)r[n - 1].p[r[n - 1].len - 2] << 8 | r[n - 1].p[r[n - 1].len - 1]);
    }
    s->res.scripts++;
    if (s->a->on_script != NULL)
        s->a->on_script(s->a->arg, s->card->eid, s->step, (unsigned)n, n > 0 ? s->res.last_sw : 0);
    if (post(s, uri, resp.data, resp.len) != TC_OK)
        result(s, TC_OTA_AGENT_INTERNAL, "could not send the response to script %u", s->step);
out:
    if (script != NULL) {
        tc_memzero(script, len);
        free(script);
    }
    tc_buf_free(&resp);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct tc_ota_agent_session *s = arg;
    if (s->finished)
        return;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) {
        connection_failed(s);
        return;
    }
    s->res.http_status = code;
    if (code == HTTP_NOCONTENT) { /* Amendment B: the session is over */
        result(s, TC_OTA_AGENT_DONE, "dialog complete: %u script(s), %u response APDU(s)",
               s->res.scripts, s->res.apdus);
        return;
    }
    if (code == HTTP_OK) {
        script_received(s, req);
        return;
    }
    const char *line = evhttp_request_get_response_code_line(req);
    result(s, s->alert >= 0 ? TC_OTA_AGENT_REFUSED : TC_OTA_AGENT_HTTP,
           "server answered %d %s at step %u", code, line != NULL ? line : "", s->step);
}

tc_err tc_ota_agent_start(struct tc_ota_agent *a, struct event_base *base, struct tc_ota_card *card,
                          tc_ota_agent_done_fn done, void *arg, struct tc_ota_agent_session **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_agent_session *s = NULL;
    SSL *ssl = NULL;
    struct bufferevent *bev = NULL;
    TC_ENSURE(a != NULL && base != NULL && card != NULL && card->cert != NULL &&
                  card->key != NULL && out != NULL,
              TC_ERR_ARG);
    *out = NULL;
    s = calloc(1, sizeof *s);
    TC_CHECK(s != NULL, TC_ERR_NOMEM);
    s->a = a;
    s->base = base;
    s->card = card;
    s->done = done;
    s->arg = arg;
    s->alert = -1;
    s->http_error = -1;
    (void)clock_gettime(CLOCK_MONOTONIC, &s->started);
    s->deadline = evtimer_new(base, deadline_cb, s);
    s->finish = evtimer_new(base, finish_cb, s);
    TC_CHECK(s->deadline != NULL && s->finish != NULL, TC_ERR_NOMEM);
    ssl = SSL_new(a->ssl_ctx);
    TC_CHECK_MSG(ssl != NULL, TC_ERR_CRYPTO, "SSL_new failed");
    TC_CHECK(SSL_set_ex_data(ssl, sess_index, s) == 1, TC_ERR_CRYPTO);
    SSL_set_info_callback(ssl, info_cb);
    /* The server's name or address must be in its certificate (RFC 6125). */
    if (a->host_is_ip) {
        TC_CHECK(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), a->host) == 1, TC_ERR_CRYPTO);
    } else {
        TC_CHECK(SSL_set1_host(ssl, a->host) == 1, TC_ERR_CRYPTO);
        TC_CHECK(SSL_set_tlsext_host_name(ssl, a->host) == 1, TC_ERR_CRYPTO);
    }
    /* The card's certificate and its card-held key (the provider). */
    TC_CHECK_MSG(SSL_use_certificate(ssl, card->cert) == 1, TC_ERR_CRYPTO,
                 "card certificate not usable for TLS");
    TC_CHECK_MSG(SSL_use_PrivateKey(ssl, card->key) == 1, TC_ERR_CRYPTO,
                 "card key does not match its certificate");
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    TC_CHECK(bev != NULL, TC_ERR_NOMEM);
    s->ssl = ssl;
    ssl = NULL; /* owned by bev */
    /* A server may close without close_notify after its last answer. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    s->evcon = evhttp_connection_base_bufferevent_new(base, NULL, bev, a->host, a->port);
    TC_CHECK(s->evcon != NULL, TC_ERR_NOMEM);
    bev = NULL; /* owned by evcon */
    struct timeval tv = {.tv_sec = a->timeout_ms / 1000,
                         .tv_usec = (suseconds_t)(a->timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(s->evcon, &tv);
    evhttp_connection_set_retries(s->evcon, 0);
    evhttp_connection_set_max_headers_size(s->evcon, TC_OTA_AGENT_HEADERS_MAX);
    evhttp_connection_set_max_body_size(s->evcon, TC_OTA_SCRIPT_BYTES_MAX);
    struct timeval dl = {.tv_sec = a->deadline_ms / 1000,
                         .tv_usec = (suseconds_t)(a->deadline_ms % 1000) * 1000};
    TC_CHECK(evtimer_add(s->deadline, &dl) == 0, TC_ERR_INTERNAL);
    /* Amendment B: the first POST carries no body. */
    TC_TRY(post(s, TC_OTA_ADMIN_PATH, NULL, 0));
    *out = s;
    s = NULL;
    ret = TC_OK;
out:
    SSL_free(ssl);
    if (bev != NULL)
        bufferevent_free(bev);
    if (s != NULL)
        s->done = NULL;
    tc_ota_agent_session_free(s);
    return ret;
}

void tc_ota_agent_session_free(struct tc_ota_agent_session *s)
{
    if (s == NULL)
        return;
    if (s->evcon != NULL)
        evhttp_connection_free(s->evcon);
    if (s->deadline != NULL)
        event_free(s->deadline);
    if (s->finish != NULL)
        event_free(s->finish);
    free(s);
}

struct blocking {
    struct event_base *base;
    struct tc_ota_agent_result res;
    bool done;
};

static void blocking_done(void *arg, const struct tc_ota_agent_result *res)
{
    struct blocking *b = arg;
    b->res = *res;
    b->done = true;
    event_base_loopbreak(b->base);
}

static tc_err outcome_err(enum tc_ota_agent_outcome o)
{
    switch (o) {
    case TC_OTA_AGENT_DONE:
        return TC_OK;
    case TC_OTA_AGENT_UNREACHABLE:
    case TC_OTA_AGENT_TIMEOUT:
    case TC_OTA_AGENT_TLS:
    case TC_OTA_AGENT_CARD:
        return TC_ERR_IO;
    case TC_OTA_AGENT_SERVER_UNTRUSTED:
        return TC_ERR_VERIFY;
    case TC_OTA_AGENT_REFUSED:
    case TC_OTA_AGENT_HTTP:
        return TC_ERR_AUTH;
    case TC_OTA_AGENT_PROTOCOL:
        return TC_ERR_FORMAT;
    case TC_OTA_AGENT_BOUNDS:
        return TC_ERR_RANGE;
    case TC_OTA_AGENT_INTERNAL:
    default:
        return TC_ERR_INTERNAL;
    }
}

tc_err tc_ota_agent_run(struct tc_ota_agent *a, struct tc_ota_card *card,
                        struct tc_ota_agent_result *res)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct blocking b = {0};
    struct tc_ota_agent_session *s = NULL;
    TC_ENSURE(res != NULL, TC_ERR_ARG);
    memset(res, 0, sizeof *res);
    res->outcome = TC_OTA_AGENT_INTERNAL;
    b.base = event_base_new();
    TC_CHECK(b.base != NULL, TC_ERR_NOMEM);
    ret = tc_ota_agent_start(a, b.base, card, blocking_done, &b, &s);
    if (ret != TC_OK) {
        tc_error_format(res->detail, sizeof res->detail);
        goto out;
    }
    while (!b.done)
        if (event_base_dispatch(b.base) < 0)
            break;
    *res = b.res;
    if (!b.done) {
        res->outcome = TC_OTA_AGENT_INTERNAL;
        (void)snprintf(res->detail, sizeof res->detail, "event loop failed");
    }
    ret = outcome_err(res->outcome);
    if (ret != TC_OK)
        (void)TC_FAIL(ret, "%s", res->detail);
out:
    tc_ota_agent_session_free(s);
    if (b.base != NULL)
        event_base_free(b.base);
    return ret;
}
