/* http.c - asynchronous HTTP(S) over libcurl's multi socket interface (see http.h).
 *
 * Provides: http_client (one CURLM per client) and http_request. Uses: loop
 * (fd watches for curl's sockets and one timer for curl's timeouts), buf,
 * err, libcurl.
 *
 * How it is driven: curl tells us through CURLMOPT_SOCKETFUNCTION which
 * sockets to watch for what, and through CURLMOPT_TIMERFUNCTION when it next
 * needs a call; the loop calls back into curl_multi_socket_action when a
 * socket is ready or the timer fires; then finished transfers are read with
 * curl_multi_info_read and their on_done runs.
 *
 * Re-entrancy: libcurl refuses most multi calls (add/remove handle) from
 * inside its own callbacks, and user code runs inside them (on_data is
 * called from curl's write callback). So while a dispatch is in progress
 * (c->busy > 0) http_start only queues the new easy handle on c->pending and
 * http_cancel only marks the request dead and queues it on c->zombies;
 * settle() does the real add/remove/free once the dispatch is over. A dead
 * request never sees another callback. The same path is used outside a
 * dispatch (settle runs at once), so there is one way things happen.
 *
 * Ownership: the client owns every request from http_start until it is
 * freed in settle(); the caller's handle is valid until on_done returns or
 * http_cancel is called.
 */
#include "http.h"

#include <curl/curl.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_request {
    http_client *c;
    CURL *easy;
    struct curl_slist *headers;     /* request headers; owned */
    struct curl_slist *connect_to;  /* tls server_name mapping; owned */
    char *body;                     /* copy of opts->body; owned */
    int (*on_data)(void *ud, long status, const char *data, size_t len);
    int stream_all;                 /* on_data gets every status's body */
    void (*on_done)(void *ud, http_response *resp);
    void *ud;

    http_response resp;             /* headers and body owned until free */
    size_t headers_cap;
    char errbuf[CURL_ERROR_SIZE];

    int dead;                       /* finished or cancelled: no more callbacks */
    int in_multi;                   /* added to c->multi */
    int queued;                     /* on c->pending */
    http_request *prev, *next;      /* c->live, while not dead */
    http_request *next_pending;     /* c->pending: waiting for curl_multi_add_handle */
    http_request *next_zombie;      /* c->zombies: waiting to be freed */
    http_request *next_finished;    /* a local list in drive() */
};

struct http_client {
    loop *l;
    CURLM *multi;
    CURLSH *share;                  /* TLS session cache shared by all handles */
    loop_timer_id timer;            /* curl's timeout, 0 if none */
    int busy;                       /* dispatch depth; defer multi calls while > 0 */
    size_t in_flight;
    http_request *live;
    http_request *pending, *pending_tail;
    http_request *zombies;
    int *socks;                     /* fds we watch for curl; owned */
    size_t nsocks, socks_cap;
};

static void settle(http_client *c);

/* ---- response headers -------------------------------------------------- */

static void headers_clear(http_request *r)
{
    /* name and value share one allocation that starts at name. */
    for (size_t i = 0; i < r->resp.nheaders; i++)
        free(r->resp.headers[i].name);
    r->resp.nheaders = 0;
}

static char *trim(char *s, size_t *len)
{
    while (*len && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        (*len)--;
    }
    while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t' || s[*len - 1] == '\r' ||
                    s[*len - 1] == '\n'))
        (*len)--;
    return s;
}

/* Returns 0, or -1 when out of memory (curl then aborts the transfer). */
static int header_add(http_request *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (r->resp.nheaders == r->headers_cap) {
        size_t ncap = r->headers_cap ? r->headers_cap * 2 : 16;
        http_header *nh = realloc(r->resp.headers, ncap * sizeof *nh);
        if (!nh)
            return -1;
        r->resp.headers = nh;
        r->headers_cap = ncap;
    }
    char *block = malloc(nlen + 1 + vlen + 1);
    if (!block)
        return -1;
    for (size_t i = 0; i < nlen; i++)
        block[i] = (char)tolower((unsigned char)name[i]);
    block[nlen] = '\0';
    memcpy(block + nlen + 1, value, vlen);
    block[nlen + 1 + vlen] = '\0';
    r->resp.headers[r->resp.nheaders++] = (http_header){block, block + nlen + 1};
    return 0;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    http_request *r = ud;
    size_t n = size * nitems;
    if (r->dead)
        return 0;
    /* Every status line starts a new header block (1xx, redirects, proxy
     * CONNECT); only the final response's block must survive. */
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        headers_clear(r);
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return n;   /* the blank line ending the block, or junk */
    size_t nlen = (size_t)(colon - line), vlen = n - nlen - 1;
    char *value = trim((char *)colon + 1, &vlen);
    size_t tl = nlen;
    trim(line, &tl);
    if (tl != nlen)
        return n;   /* whitespace inside a name: not a header */
    return header_add(r, line, nlen, value, vlen) < 0 ? 0 : n;
}

const char *http_response_header(const http_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

/* ---- body --------------------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    http_request *r = ud;
    size_t n = size * nmemb;
    if (r->dead)
        return 0;   /* cancelled from some callback: stop the transfer */
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (r->on_data && (r->stream_all || (status >= 200 && status < 300))) {
        int rc = r->on_data(r->ud, status, data, n);
        /* on_data may have cancelled this very request. */
        return rc != 0 || r->dead ? 0 : n;
    }
    return kl_buf_append(&r->resp.body, data, n) < 0 ? 0 : n;
}

/* ---- requests ------------------------------------------------------------ */

static void request_free(http_request *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->connect_to);
    free(r->body);
    headers_clear(r);
    free(r->resp.headers);
    kl_buf_free(&r->resp.body);
    free(r);
}

static void live_unlink(http_request *r)
{
    http_client *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->in_flight--;
}

static void pending_unlink(http_request *r)
{
    http_client *c = r->c;
    http_request **pp = &c->pending, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next_pending;
    }
    if (*pp) {
        *pp = r->next_pending;
        if (c->pending_tail == r)
            c->pending_tail = prev;
    }
    r->next_pending = NULL;
    r->queued = 0;
}

/* Mark dead and hand to settle() for freeing. */
static void request_bury(http_request *r)
{
    http_client *c = r->c;
    if (!r->dead) {
        r->dead = 1;
        live_unlink(r);
    }
    if (r->queued)
        pending_unlink(r);
    r->next_zombie = c->zombies;
    c->zombies = r;
}

/* Fill the response and run on_done; the caller holds c->busy. */
static void request_finish(http_request *r, CURLcode code)
{
    http_response *resp = &r->resp;
    resp->curl_code = (int)code;
    if (code != CURLE_OK) {
        const char *msg = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
        snprintf(resp->error, sizeof resp->error, "%s", msg);
    }
    if (r->easy) {
        curl_off_t us = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp->status);
        curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
        resp->total_s = (double)us / 1e6;
    }
    r->dead = 1;
    live_unlink(r);
    if (r->on_done)
        r->on_done(r->ud, resp);
    r->next_zombie = r->c->zombies;
    r->c->zombies = r;
}

/* ---- curl <-> loop -------------------------------------------------------- */

/* Run one curl step, then deliver what finished; settle when outermost. */
static void drive(http_client *c, curl_socket_t fd, int flags)
{
    int running = 0;
    c->busy++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    /* Collect first, call back later: on_done may cancel or start requests,
     * which must not disturb curl's message queue while we read it. */
    http_request *done = NULL, **tail = &done;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        http_request *r = (http_request *)priv;
        if (!r)
            continue;
        r->resp.curl_code = (int)m->data.result;
        r->next_finished = NULL;
        *tail = r;
        tail = &r->next_finished;
    }
    for (http_request *r = done, *next; r; r = next) {
        next = r->next_finished;
        if (!r->dead)   /* not cancelled by an earlier on_done */
            request_finish(r, (CURLcode)r->resp.curl_code);
    }
    c->busy--;
    if (!c->busy)
        settle(c);
}

static void on_sock_ready(loop *l, int fd, int events, void *ud)
{
    int flags = 0;
    if (events & LOOP_READ)
        flags |= CURL_CSELECT_IN;
    if (events & LOOP_WRITE)
        flags |= CURL_CSELECT_OUT;
    if (events & LOOP_ERROR)
        flags |= CURL_CSELECT_ERR;
    drive(ud, fd, flags);
}

static void on_curl_timer(loop *l, void *ud)
{
    http_client *c = ud;
    c->timer = 0;
    drive(c, CURL_SOCKET_TIMEOUT, 0);
}

static int socks_add(http_client *c, int fd)
{
    if (c->nsocks == c->socks_cap) {
        size_t ncap = c->socks_cap ? c->socks_cap * 2 : 16;
        int *ns = realloc(c->socks, ncap * sizeof *ns);
        if (!ns)
            return -1;
        c->socks = ns;
        c->socks_cap = ncap;
    }
    c->socks[c->nsocks++] = fd;
    return 0;
}

static void socks_del(http_client *c, int fd)
{
    for (size_t i = 0; i < c->nsocks; i++)
        if (c->socks[i] == fd) {
            c->socks[i] = c->socks[--c->nsocks];
            return;
        }
}

/* CURLMOPT_SOCKETFUNCTION. socketp is non-NULL once the fd is watched. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    http_client *c = userp;
    if (what == CURL_POLL_REMOVE) {
        if (socketp) {
            loop_fd_del(c->l, s);
            socks_del(c, s);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= LOOP_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= LOOP_WRITE;
    if (socketp) {
        if (loop_fd_mod(c->l, s, events) == 0)
            return 0;
        /* The fd number was closed and reused before curl said REMOVE
         * (epoll dropped it on close): register it afresh. */
        loop_fd_del(c->l, s);
        socks_del(c, s);
    }
    if (socks_add(c, s) < 0)
        return -1;
    if (loop_fd_add(c->l, s, events, on_sock_ready, c) < 0) {
        socks_del(c, s);
        return -1;
    }
    /* Any non-NULL marker will do: it only says "watched". */
    curl_multi_assign(c->multi, s, c);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one loop timer stands for curl's next deadline. */
static int on_curl_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    http_client *c = userp;
    if (c->timer) {
        loop_timer_cancel(c->l, c->timer);
        c->timer = 0;
    }
    if (timeout_ms >= 0) {
        /* 0 becomes a deferred call: curl must not be re-entered from here. */
        c->timer = loop_timer_add(c->l, (uint64_t)timeout_ms, on_curl_timer, c);
        if (!c->timer)
            return -1;
    }
    return 0;
}

/* Do the multi calls deferred while busy: add queued handles, free the dead.
 * A failed add is reported through on_done, which may queue more work, so
 * repeat until both queues are empty. */
static void settle(http_client *c)
{
    c->busy++;
    while (c->pending || c->zombies) {
        /* Pop one at a time: an on_done run below may cancel (unlink) any
         * request still queued, so the queue must always be current. */
        http_request *r;
        while ((r = c->pending)) {
            pending_unlink(r);
            if (r->dead)
                continue;
            CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
            if (mc != CURLM_OK) {
                snprintf(r->errbuf, sizeof r->errbuf, "cannot start the transfer: %s",
                         curl_multi_strerror(mc));
                request_finish(r, CURLE_FAILED_INIT);
            } else {
                r->in_multi = 1;
            }
        }
        http_request *z = c->zombies;
        c->zombies = NULL;
        for (http_request *next; (r = z); z = next) {
            next = r->next_zombie;
            if (r->in_multi)
                curl_multi_remove_handle(c->multi, r->easy);
            request_free(r);
        }
    }
    c->busy--;
}

/* ---- client ---------------------------------------------------------------- */

http_client *http_client_new(loop *l, kl_err *err)
{
    http_client *c = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        kl_err_set(err, KL_EIO, "http: libcurl failed to initialise");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        kl_err_set(err, KL_ENOMEM, "http: out of memory");
        goto fail;
    }
    c->l = l;
    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (!c->multi || !c->share) {
        kl_err_set(err, KL_ENOMEM, "http: cannot create the libcurl multi handle");
        goto fail;
    }
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_change);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* HTTP/1.1 only for now: never wait on a connection hoping to multiplex. */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    return c;
fail:
    if (c) {
        if (c->multi)
            curl_multi_cleanup(c->multi);
        if (c->share)
            curl_share_cleanup(c->share);
        free(c);
    }
    curl_global_cleanup();
    return NULL;
}

void http_client_free(http_client *c)
{
    if (!c)
        return;
    while (c->live)
        request_bury(c->live);
    settle(c);
    /* Closes cached connections; curl reports their sockets as removed. */
    curl_multi_cleanup(c->multi);
    for (size_t i = 0; i < c->nsocks; i++)
        loop_fd_del(c->l, c->socks[i]);
    if (c->timer)
        loop_timer_cancel(c->l, c->timer);
    curl_share_cleanup(c->share);
    free(c->socks);
    free(c);
    curl_global_cleanup();
}

size_t http_in_flight(const http_client *c) { return c->in_flight; }

void http_cancel(http_request *r)
{
    if (!r || r->dead)
        return;   /* already finished (e.g. inside its own on_done) */
    http_client *c = r->c;
    request_bury(r);
    if (!c->busy)
        settle(c);
}

/* ---- starting a request ------------------------------------------------------ */

static int has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (; headers && *headers; headers++)
        if (strncasecmp(*headers, name, n) == 0 && (*headers)[n] == ':')
            return 1;
    return 0;
}

static int slist_add(struct curl_slist **list, const char *s)
{
    struct curl_slist *n = curl_slist_append(*list, s);
    if (!n)
        return -1;
    *list = n;
    return 0;
}

/* tls-server-name: verify the certificate against server_name while
 * connecting to the URL's real host. curl verifies against the URL's host,
 * so the URL names server_name and CURLOPT_CONNECT_TO sends the connection
 * to the real host; the Host header keeps the real authority, as client-go
 * does. */
static int set_server_name(http_request *r, const char *url, const char *server_name, int add_host,
                           kl_err *err)
{
    int rc = -1;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *eport = NULL, *nurl = NULL;
    char sn[300], line[700];
    if (!u) {
        kl_err_set(err, KL_ENOMEM, "http: out of memory");
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        kl_err_set(err, KL_EINVAL, "http: cannot parse the URL %s", url);
        goto out;
    }
    /* An IPv6 literal needs brackets in a URL and in a CONNECT_TO entry;
     * curl already returns the URL's host with them. */
    int v6 = strchr(server_name, ':') != NULL && server_name[0] != '[';
    if (snprintf(sn, sizeof sn, "%s%s%s", v6 ? "[" : "", server_name, v6 ? "]" : "") >= (int)sizeof sn) {
        kl_err_set(err, KL_EINVAL, "http: TLS server name is too long");
        goto out;
    }
    if (curl_url_set(u, CURLUPART_HOST, sn, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &nurl, 0) != CURLUE_OK) {
        kl_err_set(err, KL_EINVAL, "http: TLS server name %s is not a valid host name", server_name);
        goto out;
    }
    snprintf(line, sizeof line, "%s:%s:%s:%s", sn, port, host, port);
    if (slist_add(&r->connect_to, line) < 0)
        goto oom;
    if (add_host) {
        curl_url_get(u, CURLUPART_PORT, &eport, 0);   /* NULL when not in the URL */
        snprintf(line, sizeof line, "Host: %s%s%s", host, eport ? ":" : "", eport ? eport : "");
        if (slist_add(&r->headers, line) < 0)
            goto oom;
    }
    curl_easy_setopt(r->easy, CURLOPT_URL, nurl);
    curl_easy_setopt(r->easy, CURLOPT_CONNECT_TO, r->connect_to);
    rc = 0;
    goto out;
oom:
    kl_err_set(err, KL_ENOMEM, "http: out of memory");
out:
    curl_free(host);
    curl_free(port);
    curl_free(eport);
    curl_free(nurl);
    curl_url_cleanup(u);
    return rc;
}

static void set_blob(CURL *easy, CURLoption opt, const char *data, size_t len)
{
    struct curl_blob b = {(void *)data, len, CURL_BLOB_COPY};
    curl_easy_setopt(easy, opt, &b);
}

static int set_tls(http_request *r, const http_request_opts *o, kl_err *err)
{
    const http_tls *t = o->tls;
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!t)
        return 0;
    if (t->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    /* A given CA replaces the system store, as client-go does: a cluster CA
     * must not also let every public CA vouch for the API server. */
    if (t->ca_file || t->ca_pem) {
        curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL);
        curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
    }
    if (t->ca_pem)
        set_blob(e, CURLOPT_CAINFO_BLOB, t->ca_pem, t->ca_pem_len);
    if (t->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert_file);
    if (t->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, t->key_file);
    if (t->cert_pem) {
        set_blob(e, CURLOPT_SSLCERT_BLOB, t->cert_pem, t->cert_pem_len);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (t->key_pem) {
        set_blob(e, CURLOPT_SSLKEY_BLOB, t->key_pem, t->key_pem_len);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (t->server_name && t->server_name[0])
        return set_server_name(r, o->url, t->server_name, !has_header(o->headers, "Host"), err);
    return 0;
}

static int set_method(http_request *r, const http_request_opts *o)
{
    CURL *e = r->easy;
    const char *m = o->method ? o->method : "GET";
    if (strcmp(m, "GET") == 0 && !o->body)
        return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK ? 0 : -1;
    if (strcmp(m, "HEAD") == 0) {
        /* NOBODY, not a custom "HEAD": curl must not wait for a body. */
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return 0;
    }
    int with_body = o->body != NULL || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
                    strcmp(m, "PATCH") == 0;
    if (with_body) {
        /* An empty POST/PUT/PATCH still says Content-Length: 0. */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    }
    if (strcmp(m, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    else
        /* libcurl re-sends a request when a reused keep-alive connection
         * dies before the first response byte. For POST that can create
         * twice (a GitHub comment posted twice, an Event with a generated
         * name). A fresh connection has no such retry; TLS sessions are
         * still resumed from the share handle, so the cost is one TCP and
         * TLS resumption round trip. */
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    return 0;
}

static int build_headers(http_request *r, const http_request_opts *o)
{
    for (const char *const *h = o->headers; h && *h; h++)
        if (slist_add(&r->headers, *h) < 0)
            return -1;
    /* libcurl would send "Expect: 100-continue" for large bodies and then
     * wait for a 100 some servers never send. */
    if (!has_header(o->headers, "Expect") && slist_add(&r->headers, "Expect:") < 0)
        return -1;
    return 0;
}

static int setup_easy(http_request *r, const http_request_opts *o, kl_err *err)
{
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_SHARE, r->c->share);
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    /* Bodies are gzip'd when the server likes; streams are not: the API
     * server breaks a gzip'd watch that began with initial events (a
     * streaming list) at its next event, and a stream's frames are small. */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, o->on_data ? NULL : "");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);   /* callers see 3xx */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
    if (o->low_speed_time_s > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_time_s);
    }
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (o->username) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, o->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, o->password ? o->password : "");
    }
    if (build_headers(r, o) < 0)
        return kl_err_set(err, KL_ENOMEM, "http: out of memory");
    if (set_method(r, o) < 0)
        return kl_err_set(err, KL_EINVAL, "http: cannot set method for %s", o->url);
    if (set_tls(r, o, err) < 0)
        return -1;
    /* After set_tls: server_name may have added a Host header. */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    return 0;
}

http_request *http_start(http_client *c, const http_request_opts *o, kl_err *err)
{
    http_request *r = NULL;
    if (!o || !o->url || !o->on_done) {
        kl_err_set(err, KL_EINVAL, "http: a request needs a URL and an on_done callback");
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->c = c;
    r->on_data = o->on_data;
    r->stream_all = o->stream_all;
    r->on_done = o->on_done;
    r->ud = o->ud;
    if (o->body) {
        r->body = malloc(o->body_len + 1);
        if (!r->body)
            goto oom;
        memcpy(r->body, o->body, o->body_len);
        r->body[o->body_len] = '\0';
    }
    r->easy = curl_easy_init();
    if (!r->easy)
        goto oom;
    if (setup_easy(r, o, err) < 0)
        goto fail;
    /* Live from here: counted, cancellable, queued for the multi. */
    r->next = c->live;
    if (c->live)
        c->live->prev = r;
    c->live = r;
    c->in_flight++;
    if (c->busy) {
        /* Inside a callback: curl_multi_add_handle would be refused. */
        r->queued = 1;
        if (c->pending_tail)
            c->pending_tail->next_pending = r;
        else
            c->pending = r;
        c->pending_tail = r;
        return r;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
    if (mc != CURLM_OK) {
        live_unlink(r);
        kl_err_set(err, KL_EIO, "http: cannot start the request to %s: %s", o->url,
                   curl_multi_strerror(mc));
        goto fail;
    }
    r->in_multi = 1;
    return r;
oom:
    kl_err_set(err, KL_ENOMEM, "http: out of memory");
fail:
    if (r)
        request_free(r);
    return NULL;
}
