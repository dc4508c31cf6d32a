/* SPDX-License-Identifier: MIT */
/*
 * The metrics endpoint's HTTP/1.1 server (see http.h): a request-head
 * parser and a connection state machine on the loop.  A connection reads
 * one head into a fixed HTTP_HEAD_MAX buffer, gets its whole response built
 * by the handler, writes it with nonblocking sendmsg, then half-closes and
 * drains what the client still sends before closing, so that an early
 * error reply (400, 431) is not destroyed by a TCP reset.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net.h"

#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"
#define ACCEPT_BURST 64
#define DRAIN_BURST 16
#define LINGER_MAX_MS 1000
#define ACCEPT_BACKOFF_MS 100

/* ---- parser ---- */

static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int parse_request_line(const char *s, size_t n, struct http_request *r)
{
	const char *sp1, *sp2, *v, *t, *q;
	size_t mlen, tlen, vlen, plen, i;

	sp1 = memchr(s, ' ', n);
	if (!sp1)
		return -EBADMSG;
	sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - s));
	if (!sp2)
		return -EBADMSG;
	v = sp2 + 1;
	vlen = n - (size_t)(v - s);
	/* The version decides first, so the HTTP/2 preface reads as -ENOTSUP. */
	if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
	    v[7] > '9')
		return -EBADMSG;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return -ENOTSUP;

	mlen = (size_t)(sp1 - s);
	if (mlen == 0 || mlen >= sizeof(r->method))
		return -EBADMSG;
	for (i = 0; i < mlen; i++) {
		if (!is_tchar((unsigned char)s[i]))
			return -EBADMSG;
	}

	t = sp1 + 1;
	tlen = (size_t)(sp2 - t);
	if (tlen == 0 || t[0] != '/')
		return -EBADMSG;
	for (i = 0; i < tlen; i++) {
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e || t[i] == '#')
			return -EBADMSG;
	}
	q = memchr(t, '?', tlen);
	plen = q ? (size_t)(q - t) : tlen;
	if (plen >= sizeof(r->path) || (q && tlen - plen - 1 >= sizeof(r->query)))
		return -EBADMSG;

	memcpy(r->method, s, mlen);
	r->method[mlen] = '\0';
	memcpy(r->path, t, plen);
	r->path[plen] = '\0';
	if (q) {
		memcpy(r->query, q + 1, tlen - plen - 1);
		r->query[tlen - plen - 1] = '\0';
	} else {
		r->query[0] = '\0';
	}
	return 0;
}

static int parse_header_line(const char *s, size_t n)
{
	const char *colon, *v, *end;
	size_t nlen, i;

	colon = memchr(s, ':', n);
	if (!colon)
		return -EBADMSG;
	nlen = (size_t)(colon - s);
	/* A non-token name also catches obs-fold (leading SP/HT) and "Name :". */
	if (nlen == 0)
		return -EBADMSG;
	for (i = 0; i < nlen; i++) {
		if (!is_tchar((unsigned char)s[i]))
			return -EBADMSG;
	}
	v = colon + 1;
	end = s + n;
	/* This is also where a bare CR in a header line is caught. */
	for (i = 0; v + i < end; i++) {
		unsigned char c = (unsigned char)v[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -EBADMSG;
	}
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;

	if (nlen == 17 && strncasecmp(s, "transfer-encoding", 17) == 0)
		return -ENOTSUP;
	if (nlen == 14 && strncasecmp(s, "content-length", 14) == 0) {
		int nonzero = 0;

		if (v == end)
			return -EBADMSG;
		for (; v < end; v++) {
			if (*v < '0' || *v > '9')
				return -EBADMSG;
			nonzero |= *v != '0';
		}
		if (nonzero)
			return -ENOTSUP;
	}
	return 0;
}

int http_request_parse(const char *buf, size_t len, struct http_request *req)
{
	size_t limit = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	struct http_request r;
	size_t pos = 0, end;
	const char *nl;
	int first = 1, err;

	for (;;) {
		nl = memchr(buf + pos, '\n', limit - pos);
		if (!nl)
			return len >= HTTP_HEAD_MAX ? -EMSGSIZE : 0;
		end = (size_t)(nl - buf);
		if (end > pos && buf[end - 1] == '\r')
			end--;
		if (first) {
			/* Byte checks in the line parsers reject any CR left inside. */
			err = parse_request_line(buf + pos, end - pos, &r);
			if (err)
				return err;
			first = 0;
		} else if (end == pos) {
			*req = r;
			return (int)(nl - buf) + 1;
		} else {
			err = parse_header_line(buf + pos, end - pos);
			if (err)
				return err;
		}
		pos = (size_t)(nl - buf) + 1;
	}
}

/* ---- server ---- */

enum conn_state { CONN_READ, CONN_WRITE, CONN_LINGER };

struct http_conn {
	struct http_server *s;
	struct http_conn *prev, *next;
	int fd;
	struct loop_io *io;
	struct loop_timer *timer;
	enum conn_state state;
	size_t inlen;
	size_t scanned;
	int got_first_line;
	struct strbuf head;
	struct strbuf body;
	size_t body_send; /* body bytes to send: 0 for HEAD */
	size_t off;       /* bytes of head, then body, already sent */
	char in[HTTP_HEAD_MAX];
};

struct http_server {
	struct loop *l;
	int fd;
	struct loop_io *io;
	struct loop_timer *backoff;
	http_handler_fn fn;
	void *arg;
	uint64_t timeout_ms;
	uint16_t port;
	unsigned nconns;
	struct http_conn *conns;
};

static const char *reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	}
	if (code < 300)
		return "OK";
	if (code < 400)
		return "Redirection";
	if (code < 500)
		return "Client Error";
	return "Server Error";
}

static void conn_free(struct http_conn *c)
{
	struct http_server *s = c->s;

	loop_io_del(c->io);
	loop_timer_del(c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	sb_free(&c->head);
	sb_free(&c->body);
	free(c);
}

static void on_conn_timeout(struct loop *l, struct loop_timer *t, void *arg)
{
	struct http_conn *c = arg;
	struct linger abort_close = { .l_onoff = 1, .l_linger = 0 };

	(void)l;
	(void)t;
	c->timer = NULL; /* one-shot: the loop frees it */
	/* A client that stopped reading would otherwise leave megabytes of
	 * response in an orphaned kernel socket: reset instead of FIN. */
	if (c->state == CONN_WRITE)
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
	conn_free(c);
}

static int conn_arm(struct http_conn *c, uint64_t ms)
{
	loop_timer_del(c->timer);
	c->timer = NULL;
	return loop_timer_add(c->s->l, ms, 0, on_conn_timeout, c, &c->timer);
}

static void conn_drain(struct http_conn *c)
{
	ssize_t n;
	int i;

	for (i = 0; i < DRAIN_BURST; i++) {
		n = read(c->fd, c->in, sizeof(c->in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_free(c);
			return;
		}
	}
}

static void conn_done_writing(struct http_conn *c)
{
	uint64_t linger = c->s->timeout_ms < LINGER_MAX_MS ? c->s->timeout_ms : LINGER_MAX_MS;

	sb_free(&c->head);
	sb_free(&c->body);
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	if (loop_io_set(c->io, LOOP_READ) || conn_arm(c, linger)) {
		conn_free(c);
		return;
	}
	conn_drain(c);
}

static void conn_write(struct http_conn *c)
{
	size_t total = c->head.len + c->body_send;
	struct iovec iov[2];
	struct msghdr msg;
	int progressed = 0;
	ssize_t n;

	while (c->off < total) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		if (c->off < c->head.len) {
			iov[0].iov_base = c->head.buf + c->off;
			iov[0].iov_len = c->head.len - c->off;
			iov[1].iov_base = c->body.buf;
			iov[1].iov_len = c->body_send;
			msg.msg_iovlen = c->body_send ? 2 : 1;
		} else {
			iov[0].iov_base = c->body.buf + (c->off - c->head.len);
			iov[0].iov_len = total - c->off;
			msg.msg_iovlen = 1;
		}
		/* MSG_NOSIGNAL: a client that hangs up must not SIGPIPE the daemon. */
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (progressed && conn_arm(c, c->s->timeout_ms))
				conn_free(c);
			return;
		}
		if (n < 0) {
			conn_free(c);
			return;
		}
		c->off += (size_t)n;
		progressed = 1;
	}
	conn_done_writing(c);
}

static int content_type_ok(const char *ct)
{
	if (!ct || !*ct)
		return 0;
	for (; *ct; ct++) {
		if ((unsigned char)*ct < 0x20 || (unsigned char)*ct > 0x7e)
			return 0;
	}
	return 1;
}

/* Sends status with the body already in c->body; takes over c. */
static void conn_respond(struct http_conn *c, int status, const char *ct, int head_only)
{
	sb_printf(&c->head,
		  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
		  reason(status), ct, c->body.len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (c->head.oom) {
		conn_free(c);
		return;
	}
	c->body_send = head_only ? 0 : c->body.len;
	c->off = 0;
	c->state = CONN_WRITE;
	if (loop_io_set(c->io, LOOP_WRITE) || conn_arm(c, c->s->timeout_ms)) {
		conn_free(c);
		return;
	}
	conn_write(c);
}

static void conn_respond_text(struct http_conn *c, int status, const char *text)
{
	sb_reset(&c->body);
	sb_puts(&c->body, text);
	conn_respond(c, status, DEFAULT_CONTENT_TYPE, 0);
}

static void conn_handle(struct http_conn *c, const struct http_request *req)
{
	const char *ct = DEFAULT_CONTENT_TYPE;
	int head_only = strcmp(req->method, "HEAD") == 0;
	int status;

	if (!head_only && strcmp(req->method, "GET") != 0) {
		conn_respond_text(c, 405, "method not allowed\n");
		return;
	}
	status = c->s->fn(c->s->arg, req, &c->body, &ct);
	if (status < 200 || status > 599 || c->body.oom || !content_type_ok(ct)) {
		conn_respond_text(c, 500, "internal server error\n");
		return;
	}
	conn_respond(c, status, ct, head_only);
}

/* Whether the bytes read since the last call end the request line or the head. */
static int conn_head_may_be_done(struct http_conn *c)
{
	int found = 0;
	size_t p;

	for (p = c->scanned; p < c->inlen; p++) {
		if (c->in[p] != '\n')
			continue;
		if (!c->got_first_line) {
			c->got_first_line = 1;
			found = 1;
		} else if ((p >= 1 && c->in[p - 1] == '\n') || (p >= 2 && c->in[p - 1] == '\r' && c->in[p - 2] == '\n')) {
			found = 1;
		}
	}
	c->scanned = c->inlen;
	return found;
}

static void conn_read(struct http_conn *c)
{
	struct http_request req;
	ssize_t n;
	int rc;

	for (;;) {
		n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_free(c); /* gone before finishing its request: nobody to answer */
			return;
		}
		c->inlen += (size_t)n;
		/* Parsing only at line ends that matter keeps a byte-at-a-time
		 * client from making us rescan the head quadratically. */
		if (!conn_head_may_be_done(c) && c->inlen < sizeof(c->in))
			continue;
		rc = http_request_parse(c->in, c->inlen, &req);
		if (rc > 0) {
			conn_handle(c, &req);
			return;
		}
		if (rc == -EMSGSIZE) {
			conn_respond_text(c, 431, "request header too large\n");
			return;
		}
		if (rc < 0) {
			conn_respond_text(c, 400, "bad request\n");
			return;
		}
	}
}

static void on_conn_io(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct http_conn *c = arg;

	(void)l;
	(void)io;
	(void)fd;
	(void)events;
	switch (c->state) {
	case CONN_READ:
		conn_read(c);
		break;
	case CONN_WRITE:
		conn_write(c);
		break;
	case CONN_LINGER:
		conn_drain(c);
		break;
	}
}

static int conn_new(struct http_server *s, int fd)
{
	struct http_conn *c;
	int err = 0;

	c = calloc(1, sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto out;
	}
	c->s = s;
	c->fd = fd;
	sb_init(&c->head);
	sb_init(&c->body);
	err = loop_io_add(s->l, fd, LOOP_READ, on_conn_io, c, &c->io);
	if (err)
		goto out;
	/* The head deadline runs from accept and is never extended, so a client
	 * trickling bytes cannot hold a slot longer than the timeout. */
	err = conn_arm(c, s->timeout_ms);
	if (err)
		goto out;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	c = NULL;
out:
	if (c) {
		loop_io_del(c->io);
		free(c);
	}
	return err;
}

static void on_backoff(struct loop *l, struct loop_timer *t, void *arg)
{
	struct http_server *s = arg;

	(void)l;
	(void)t;
	s->backoff = NULL;
	loop_io_set(s->io, LOOP_READ);
}

static void on_accept(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct http_server *s = arg;
	int cfd, i;

	(void)io;
	(void)events;
	for (i = 0; i < ACCEPT_BURST; i++) {
		cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE and the like leave the connection queued, and
			 * level-triggered epoll would report it in a busy loop:
			 * stop accepting for a moment instead. */
			if (!s->backoff && loop_timer_add(l, ACCEPT_BACKOFF_MS, 0, on_backoff, s, &s->backoff) == 0)
				loop_io_set(s->io, 0);
			return;
		}
		if (s->nconns >= HTTP_MAX_CONNS || conn_new(s, cfd) != 0)
			close(cfd);
	}
}

static int host_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}

int http_server_new(struct loop *l, const char *hostport, http_handler_fn fn, void *arg, struct http_server **out)
{
	struct http_server *s = NULL;
	char host[256];
	uint16_t port;
	int err;

	if (!l || !hostport || !fn || !out) {
		err = -EINVAL;
		goto out;
	}
	err = net_parse_hostport(hostport, host, sizeof(host), &port);
	if (err)
		goto out;
	s = calloc(1, sizeof(*s));
	if (!s) {
		err = -ENOMEM;
		goto out;
	}
	s->l = l;
	s->fd = -1;
	s->fn = fn;
	s->arg = arg;
	s->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
	err = net_listen_tcp(host, port, &s->fd, &s->port);
	if (err)
		goto out;
	err = loop_io_add(l, s->fd, LOOP_READ, on_accept, s, &s->io);
	if (err)
		goto out;
	if (!host_is_loopback(host))
		fprintf(stderr, "mfud: warning: metrics endpoint %s is not loopback-only; it is exposed to the network\n",
			hostport);
	*out = s;
	s = NULL;
out:
	http_server_free(s);
	return err;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_free(s->conns);
	loop_io_del(s->io);
	loop_timer_del(s->backoff);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

uint16_t http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_set_timeout_ms(struct http_server *s, uint64_t ms)
{
	s->timeout_ms = ms ? ms : 1;
}
