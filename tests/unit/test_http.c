/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for collector/http.c.  The parser part feeds it complete,
 * partial, oversized and malformed heads.  The server part runs a real
 * server on 127.0.0.1:0 in a loop that the test drives with loop_run_once,
 * while nonblocking client sockets in the same process talk to it: no
 * threads, no fork, and the loop must never block for the test to finish.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "loop.h"
#include "net.h"
#include "strbuf.h"

#define GET_METRICS "GET /metrics HTTP/1.1\r\nHost: localhost:9400\r\nAccept: */*\r\n\r\n"

static int parse_str(const char *s, struct http_request *req)
{
	return http_request_parse(s, strlen(s), req);
}

/* ---- parser ---- */

static void test_parse_complete_crlf_request(void **state)
{
	struct http_request req;

	(void)state;
	assert_int_equal(parse_str(GET_METRICS, &req), (int)strlen(GET_METRICS));
	assert_string_equal(req.method, "GET");
	assert_string_equal(req.path, "/metrics");
	assert_string_equal(req.query, "");
}

static void test_parse_stops_at_blank_line(void **state)
{
	struct http_request req;
	char buf[256];

	(void)state;
	snprintf(buf, sizeof(buf), "%s%s", GET_METRICS, "GET /other HTTP/1.1\r\n\r\n");
	assert_int_equal(parse_str(buf, &req), (int)strlen(GET_METRICS));
	assert_string_equal(req.path, "/metrics");
}

static void test_parse_every_prefix_needs_more(void **state)
{
	const char *s = GET_METRICS;
	struct http_request req;
	size_t n;

	(void)state;
	memset(&req, 0x5a, sizeof(req));
	for (n = 0; n < strlen(s); n++) {
		if (http_request_parse(s, n, &req) != 0)
			fail_msg("prefix of %zu bytes did not ask for more", n);
	}
	/* req is left alone until a head is complete. */
	assert_int_equal((unsigned char)req.method[0], 0x5a);
}

static void test_parse_accepts_bare_lf_and_mixed_endings(void **state)
{
	struct http_request req;
	const char *lf = "GET /a HTTP/1.0\nHost: x\n\n";
	const char *mixed = "HEAD /b HTTP/1.1\r\nHost: x\nX-Y: z\r\n\n";

	(void)state;
	assert_int_equal(parse_str(lf, &req), (int)strlen(lf));
	assert_string_equal(req.path, "/a");
	assert_int_equal(parse_str(mixed, &req), (int)strlen(mixed));
	assert_string_equal(req.method, "HEAD");
	assert_string_equal(req.path, "/b");
}

static void test_parse_rejects_bare_cr(void **state)
{
	struct http_request req;

	(void)state;
	assert_int_equal(parse_str("GET / HTTP/1.1\rHost: x\r\n\r\n", &req), -EBADMSG);
	assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", &req), -EBADMSG);
	assert_int_equal(parse_str("GET /\r HTTP/1.1\r\n\r\n", &req), -EBADMSG);
	assert_int_equal(parse_str("GET / HTTP/1.1\r\n\r\r\n", &req), -EBADMSG);
}

static void test_parse_splits_query_at_first_question_mark(void **state)
{
	struct http_request req;

	(void)state;
	assert_true(parse_str("GET /api/v1/jobs?job=train&x=?y HTTP/1.1\r\n\r\n", &req) > 0);
	assert_string_equal(req.path, "/api/v1/jobs");
	assert_string_equal(req.query, "job=train&x=?y");
	assert_true(parse_str("GET /m? HTTP/1.1\r\n\r\n", &req) > 0);
	assert_string_equal(req.path, "/m");
	assert_string_equal(req.query, "");
	assert_true(parse_str("GET /a%20b HTTP/1.1\r\n\r\n", &req) > 0);
	assert_string_equal(req.path, "/a%20b");
}

static char *make_head(size_t total, int terminated)
{
	/* "GET / HTTP/1.1\r\nX: aaaa...\r\n\r\n" padded to exactly total bytes */
	static const char start[] = "GET / HTTP/1.1\r\nX: ";
	char *s = malloc(total + 1);
	size_t fill = total - (sizeof(start) - 1) - 4;

	assert_non_null(s);
	memcpy(s, start, sizeof(start) - 1);
	memset(s + sizeof(start) - 1, 'a', fill);
	memcpy(s + sizeof(start) - 1 + fill, terminated ? "\r\n\r\n" : "aaaa", 4);
	s[total] = '\0';
	return s;
}

static void test_parse_head_size_limit(void **state)
{
	struct http_request req;
	char *s;

	(void)state;
	s = make_head(HTTP_HEAD_MAX, 1);
	assert_int_equal(http_request_parse(s, HTTP_HEAD_MAX, &req), HTTP_HEAD_MAX);
	free(s);
	s = make_head(HTTP_HEAD_MAX + 1, 1);
	assert_int_equal(http_request_parse(s, HTTP_HEAD_MAX + 1, &req), -EMSGSIZE);
	free(s);
	s = make_head(3 * HTTP_HEAD_MAX, 0);
	assert_int_equal(http_request_parse(s, HTTP_HEAD_MAX - 1, &req), 0);
	assert_int_equal(http_request_parse(s, HTTP_HEAD_MAX, &req), -EMSGSIZE);
	assert_int_equal(http_request_parse(s, 3 * HTTP_HEAD_MAX, &req), -EMSGSIZE);
	free(s);
}

static void test_parse_rejects_malformed(void **state)
{
	static const char *const bad[] = {
		"\r\n\r\n",                                  /* empty request line */
		"GET\r\n\r\n",                               /* no target, no version */
		"GET /\r\n\r\n",                             /* HTTP/0.9 style */
		"GET  / HTTP/1.1\r\n\r\n",                   /* double space */
		"GET / HTTP/1.1 \r\n\r\n",                   /* trailing space */
		" GET / HTTP/1.1\r\n\r\n",                   /* empty method */
		"GET / http/1.1\r\n\r\n",                    /* lowercase protocol */
		"GET / HTTP/1.10\r\n\r\n",                   /* version too long */
		"GET / HTTP/x.1\r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",                    /* non-token method */
		"PROPFIND / HTTP/1.1\r\n\r\n",               /* method over 7 bytes */
		"GET metrics HTTP/1.1\r\n\r\n",              /* not origin-form */
		"GET http://h/ HTTP/1.1\r\n\r\n",            /* absolute-form unsupported */
		"GET /a\x01 HTTP/1.1\r\n\r\n",               /* control byte in target */
		"GET /a\xff HTTP/1.1\r\n\r\n",               /* non-ASCII in target */
		"GET /a#frag HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
		"GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",        /* space before colon */
		"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",      /* obs-fold */
		"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",        /* control byte in value */
		"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 0, 0\r\n\r\n",
	};
	struct http_request req;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse_str(bad[i], &req);

		if (rc != -EBADMSG)
			fail_msg("case %zu: got %d, want -EBADMSG", i, rc);
	}
	/* NUL inside the head */
	assert_int_equal(http_request_parse("GET / HTTP/1.1\r\nA: \0\r\n\r\n", 24, &req), -EBADMSG);
}

static void test_parse_reports_bad_request_line_before_head_ends(void **state)
{
	struct http_request req;

	(void)state;
	assert_int_equal(parse_str("GARBAGE\r\n", &req), -EBADMSG);
	assert_int_equal(parse_str("GET / HTTP/1.1\r\nBroken\r\nHost: x", &req), -EBADMSG);
	assert_int_equal(parse_str("GARBAGE", &req), 0);
}

static void test_parse_rejects_other_versions_and_http2_preface(void **state)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct http_request req;

	(void)state;
	assert_int_equal(http_request_parse(preface, sizeof(preface) - 1, &req), -ENOTSUP);
	assert_int_equal(parse_str("PRI * HTTP/2.0\r\n", &req), -ENOTSUP);
	assert_int_equal(parse_str("GET / HTTP/2.0\r\n\r\n", &req), -ENOTSUP);
	assert_int_equal(parse_str("GET / HTTP/1.2\r\n\r\n", &req), -ENOTSUP);
	assert_int_equal(parse_str("GET / HTTP/0.9\r\n\r\n", &req), -ENOTSUP);
	assert_int_equal(parse_str("GET / HTTP/3.0\r\n\r\n", &req), -ENOTSUP);
	assert_true(parse_str("GET / HTTP/1.0\r\n\r\n", &req) > 0);
}

static void test_parse_rejects_request_bodies(void **state)
{
	struct http_request req;

	(void)state;
	assert_int_equal(parse_str("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", &req), -ENOTSUP);
	assert_int_equal(parse_str("GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", &req), -ENOTSUP);
	assert_int_equal(parse_str("GET / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", &req), -ENOTSUP);
	assert_true(parse_str("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &req) > 0);
	assert_true(parse_str("GET / HTTP/1.1\r\ncontent-LENGTH: \t00 \r\n\r\n", &req) > 0);
	/* A header merely containing the name is not it. */
	assert_true(parse_str("GET / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n", &req) > 0);
}

static void test_parse_field_limits(void **state)
{
	struct http_request req;
	char buf[1024], path[300], query[300];

	(void)state;
	memset(path, 'p', sizeof(path));
	memset(query, 'q', sizeof(query));
	path[0] = '/';
	snprintf(buf, sizeof(buf), "OPTIONS %.255s?%.255s HTTP/1.1\r\n\r\n", path, query);
	assert_true(parse_str(buf, &req) > 0);
	assert_string_equal(req.method, "OPTIONS");
	assert_int_equal(strlen(req.path), 255);
	assert_int_equal(strlen(req.query), 255);
	snprintf(buf, sizeof(buf), "GET %.256s HTTP/1.1\r\n\r\n", path);
	assert_int_equal(parse_str(buf, &req), -EBADMSG);
	snprintf(buf, sizeof(buf), "GET /?%.256s HTTP/1.1\r\n\r\n", query);
	assert_int_equal(parse_str(buf, &req), -EBADMSG);
}

/* ---- server, end to end ---- */

struct srv {
	struct loop *l;
	struct http_server *s;
	uint16_t port;
	int calls;
	struct http_request last;
	size_t big;
};

static int handler(void *arg, const struct http_request *req, struct strbuf *body, const char **content_type)
{
	struct srv *sv = arg;

	sv->calls++;
	sv->last = *req;
	if (strcmp(req->path, "/metrics") == 0) {
		*content_type = "text/plain; version=0.0.4; charset=utf-8";
		sb_printf(body, "mfu_up 1\nquery %s\n", req->query);
		return 200;
	}
	if (strcmp(req->path, "/big") == 0) {
		size_t i;

		for (i = 0; i < sv->big / 64; i++)
			sb_append(body, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 64);
		return 200;
	}
	if (strcmp(req->path, "/badtype") == 0) {
		*content_type = "text/plain\r\nX-Injected: 1";
		return 200;
	}
	if (strcmp(req->path, "/badstatus") == 0)
		return 42;
	sb_puts(body, "not found\n");
	return 404;
}

static int srv_setup(void **state)
{
	struct srv *sv = calloc(1, sizeof(*sv));

	if (!sv || loop_new(&sv->l) != 0)
		return -1;
	if (http_server_new(sv->l, "127.0.0.1:0", handler, sv, &sv->s) != 0)
		return -1;
	sv->port = http_server_port(sv->s);
	*state = sv;
	return 0;
}

static int srv_teardown(void **state)
{
	struct srv *sv = *state;

	http_server_free(sv->s);
	loop_free(sv->l);
	free(sv);
	return 0;
}

static int client_connect(struct srv *sv)
{
	char target[64];
	int fd, inprog;

	snprintf(target, sizeof(target), "tcp:127.0.0.1:%u", sv->port);
	assert_int_equal(net_connect(target, 1, &fd, &inprog), 0);
	return fd;
}

/* Sends everything while driving the server; the server may stop reading. */
static void client_send(struct srv *sv, int fd, const char *data, size_t len)
{
	uint64_t end = loop_now_ns() + 5000000000ull;
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = send(fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
			return; /* server closed on us: fine for the error cases */
		assert_int_equal(loop_run_once(sv->l, 1), 0);
		assert_true(loop_now_ns() < end);
	}
}

/* Reads until EOF while driving the server; returns 0 on EOF, -errno on reset. */
static int client_read_all(struct srv *sv, int fd, struct strbuf *out, int drive, int timeout_ms)
{
	uint64_t end = loop_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	char buf[4096];
	ssize_t n;

	for (;;) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			sb_append(out, buf, (size_t)n);
			continue;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if (loop_now_ns() > end)
			fail_msg("no EOF within %d ms (got %zu bytes)", timeout_ms, out->len);
		if (drive) {
			assert_int_equal(loop_run_once(sv->l, 5), 0);
		} else {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			poll(&p, 1, 5);
		}
	}
}

static void exchange(struct srv *sv, const char *req, size_t len, struct strbuf *resp)
{
	int fd = client_connect(sv);

	client_send(sv, fd, req, len);
	assert_int_equal(client_read_all(sv, fd, resp, 1, 5000), 0);
	close(fd);
}

static void assert_header(const struct strbuf *resp, const char *line)
{
	const char *end = strstr(resp->buf, "\r\n\r\n");

	assert_non_null(end);
	if (!memmem(resp->buf, (size_t)(end - resp->buf) + 2, line, strlen(line)))
		fail_msg("header \"%s\" missing in:\n%s", line, resp->buf);
}

static const char *body_of(const struct strbuf *resp)
{
	const char *end = strstr(resp->buf, "\r\n\r\n");

	assert_non_null(end);
	return end + 4;
}

static void test_server_get_returns_handler_body(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "GET /metrics?job=a HTTP/1.1\r\nHost: x\r\n\r\n";
	const char *want = "mfu_up 1\nquery job=a\n";
	struct strbuf resp;
	char cl[64];

	sb_init(&resp);
	exchange(sv, req, sizeof(req) - 1, &resp);
	assert_int_equal(sv->calls, 1);
	assert_string_equal(sv->last.method, "GET");
	assert_string_equal(sv->last.path, "/metrics");
	assert_string_equal(sv->last.query, "job=a");
	assert_memory_equal(resp.buf, "HTTP/1.1 200 OK\r\n", 17);
	assert_header(&resp, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
	snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(want));
	assert_header(&resp, cl);
	assert_header(&resp, "\r\nConnection: close\r\n");
	assert_string_equal(body_of(&resp), want);
	sb_free(&resp);
}

static void test_server_head_sends_length_but_no_body(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "HEAD /metrics HTTP/1.0\n\n";
	struct strbuf resp;
	char cl[64];

	sb_init(&resp);
	exchange(sv, req, sizeof(req) - 1, &resp);
	assert_int_equal(sv->calls, 1);
	assert_memory_equal(resp.buf, "HTTP/1.1 200 OK\r\n", 17);
	snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen("mfu_up 1\nquery \n"));
	assert_header(&resp, cl);
	assert_string_equal(body_of(&resp), "");
	sb_free(&resp);
}

static void test_server_handler_status_passes_through(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "GET /nope HTTP/1.1\r\n\r\n";
	struct strbuf resp;

	sb_init(&resp);
	exchange(sv, req, sizeof(req) - 1, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 404 Not Found\r\n", 24);
	assert_string_equal(body_of(&resp), "not found\n");
	sb_free(&resp);
}

static void test_server_post_gets_405_without_calling_handler(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "DELETE /metrics HTTP/1.1\r\n\r\n";
	struct strbuf resp;

	sb_init(&resp);
	exchange(sv, req, sizeof(req) - 1, &resp);
	assert_int_equal(sv->calls, 0);
	assert_memory_equal(resp.buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33);
	assert_header(&resp, "\r\nAllow: GET, HEAD\r\n");
	assert_true(strlen(body_of(&resp)) > 0);
	sb_free(&resp);
}

static void test_server_malformed_and_http2_get_400(void **state)
{
	struct srv *sv = *state;
	static const char garbage[] = "HELLO THERE\r\n\r\n";
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const char body[] = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
	struct strbuf resp;

	sb_init(&resp);
	exchange(sv, garbage, sizeof(garbage) - 1, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 400 Bad Request\r\n", 26);
	sb_reset(&resp);
	exchange(sv, preface, sizeof(preface) - 1, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 400 Bad Request\r\n", 26);
	sb_reset(&resp);
	exchange(sv, body, sizeof(body) - 1, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 400 Bad Request\r\n", 26);
	assert_int_equal(sv->calls, 0);
	sb_free(&resp);
}

static void test_server_oversized_head_gets_431(void **state)
{
	struct srv *sv = *state;
	char *req = make_head(3 * HTTP_HEAD_MAX, 0);
	struct strbuf resp;

	sb_init(&resp);
	exchange(sv, req, 3 * HTTP_HEAD_MAX, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46);
	assert_int_equal(sv->calls, 0);
	sb_free(&resp);
	free(req);
}

static void test_server_bad_handler_output_gets_500(void **state)
{
	struct srv *sv = *state;
	static const char r1[] = "GET /badtype HTTP/1.1\r\n\r\n";
	static const char r2[] = "GET /badstatus HTTP/1.1\r\n\r\n";
	struct strbuf resp;

	sb_init(&resp);
	exchange(sv, r1, sizeof(r1) - 1, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 500 Internal Server Error\r\n", 36);
	assert_null(strstr(resp.buf, "X-Injected"));
	sb_reset(&resp);
	exchange(sv, r2, sizeof(r2) - 1, &resp);
	assert_memory_equal(resp.buf, "HTTP/1.1 500 Internal Server Error\r\n", 36);
	sb_free(&resp);
}

static void test_server_byte_at_a_time_client_is_served(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	struct strbuf resp;
	size_t i;
	int fd = client_connect(sv);

	sb_init(&resp);
	for (i = 0; i < sizeof(req) - 1; i++) {
		client_send(sv, fd, req + i, 1);
		assert_int_equal(loop_run_once(sv->l, 1), 0);
	}
	assert_int_equal(client_read_all(sv, fd, &resp, 1, 5000), 0);
	assert_memory_equal(resp.buf, "HTTP/1.1 200 OK\r\n", 17);
	assert_int_equal(sv->calls, 1);
	close(fd);
	sb_free(&resp);
}

static void test_server_silent_client_times_out(void **state)
{
	struct srv *sv = *state;
	struct strbuf resp;
	uint64_t t0;
	int fd;

	http_server_set_timeout_ms(sv->s, 50);
	fd = client_connect(sv);
	t0 = loop_now_ns();
	sb_init(&resp);
	assert_int_equal(client_read_all(sv, fd, &resp, 1, 3000), 0);
	assert_true(loop_now_ns() - t0 >= 40 * 1000000ull);
	assert_int_equal(resp.len, 0);
	assert_int_equal(sv->calls, 0);
	close(fd);
	sb_free(&resp);
}

/* Progress does not extend the deadline: a client trickling its head a
 * byte at a time (slowloris) is closed at the timeout like a silent one. */
static void test_server_trickling_client_is_closed_at_the_timeout(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: trickle\r\n\r\n";
	uint64_t t0;
	int fd, closed = 0;
	size_t i = 0;

	http_server_set_timeout_ms(sv->s, 200);
	fd = client_connect(sv);
	t0 = loop_now_ns();
	while (!closed && loop_now_ns() - t0 < 3000 * 1000000ull) {
		char b;
		if (i < sizeof(req) - 1 && send(fd, req + i, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
			i++;
		usleep(20000); /* the whole head takes 0.9 s at least, past the 0.2 s timeout */
		for (int k = 0; k < 4; k++)
			assert_int_equal(loop_run_once(sv->l, 10), 0);
		ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
		closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
	}
	assert_true(closed);
	assert_true(i < sizeof(req) - 1); /* closed before the head was complete */
	assert_true(loop_now_ns() - t0 >= 150 * 1000000ull);
	assert_int_equal(sv->calls, 0);
	close(fd);
}

static void test_server_client_that_does_not_read_is_closed_without_blocking(void **state)
{
	struct srv *sv = *state;
	static const char req[] = "GET /big HTTP/1.1\r\n\r\n";
	struct strbuf resp;
	uint64_t t0, t;
	int fd, small = 4096, rc;

	sv->big = 32u << 20;
	http_server_set_timeout_ms(sv->s, 100);
	fd = client_connect(sv);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	client_send(sv, fd, req, sizeof(req) - 1);
	t0 = loop_now_ns();
	while (sv->calls == 0) {
		assert_int_equal(loop_run_once(sv->l, 10), 0);
		assert_true(loop_now_ns() - t0 < 5000 * 1000000ull);
	}
	/* The client reads nothing; each loop turn must still return promptly. */
	t0 = loop_now_ns();
	while (loop_now_ns() - t0 < 400 * 1000000ull) {
		t = loop_now_ns();
		assert_int_equal(loop_run_once(sv->l, 10), 0);
		assert_true(loop_now_ns() - t < 1000 * 1000000ull);
	}
	assert_int_equal(sv->calls, 1);
	/* Without driving the server any more, the client must now reach EOF
	 * (or a reset): the server gave up on it. */
	sb_init(&resp);
	rc = client_read_all(sv, fd, &resp, 0, 5000);
	assert_true(rc == 0 || rc == -ECONNRESET);
	assert_true(resp.len < sv->big);
	close(fd);
	sb_free(&resp);
}

static void test_server_beyond_max_connections_closes_new_ones(void **state)
{
	struct srv *sv = *state;
	enum { N = HTTP_MAX_CONNS + 4 };
	int fds[N], i, closed = 0, first_closed = -1;
	char c;

	for (i = 0; i < N; i++) {
		fds[i] = client_connect(sv);
		assert_int_equal(loop_run_once(sv->l, 0), 0);
		assert_int_equal(loop_run_once(sv->l, 0), 0);
	}
	for (i = 0; i < 20; i++)
		assert_int_equal(loop_run_once(sv->l, 5), 0);
	for (i = 0; i < N; i++) {
		ssize_t n = recv(fds[i], &c, 1, MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			closed++;
			if (first_closed < 0)
				first_closed = i;
		} else {
			assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		}
	}
	assert_int_equal(closed, N - HTTP_MAX_CONNS);
	assert_int_equal(first_closed, HTTP_MAX_CONNS);
	for (i = 0; i < N; i++)
		close(fds[i]);
}

static void test_server_free_with_open_connections(void **state)
{
	struct srv *sv = *state;
	int fd = client_connect(sv), i;
	char c;

	for (i = 0; i < 10; i++)
		assert_int_equal(loop_run_once(sv->l, 1), 0);
	http_server_free(sv->s);
	sv->s = NULL;
	assert_int_equal(recv(fd, &c, 1, 0), 0);
	close(fd);
}

/* Captures what http_server_new writes to stderr. */
static void capture_new_warning(const char *hostport, int expect_ok, char *out, size_t cap)
{
	struct loop *l;
	struct http_server *s = NULL;
	int p[2], saved, rc;
	ssize_t n;

	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	fflush(stderr);
	saved = dup(2);
	dup2(p[1], 2);
	assert_int_equal(loop_new(&l), 0);
	rc = http_server_new(l, hostport, handler, NULL, &s);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(p[1]);
	n = read(p[0], out, cap - 1);
	out[n > 0 ? n : 0] = '\0';
	close(p[0]);
	if (expect_ok)
		assert_int_equal(rc, 0);
	else
		assert_int_not_equal(rc, 0);
	http_server_free(s);
	loop_free(l);
}

static void test_server_warns_only_when_not_loopback(void **state)
{
	char msg[512];

	(void)state;
	capture_new_warning("127.0.0.1:0", 1, msg, sizeof(msg));
	assert_string_equal(msg, "");
	capture_new_warning("localhost:0", 1, msg, sizeof(msg));
	assert_string_equal(msg, "");
	capture_new_warning("127.3.4.5:0", 1, msg, sizeof(msg));
	assert_string_equal(msg, "");
	capture_new_warning("0.0.0.0:0", 1, msg, sizeof(msg));
	assert_non_null(strstr(msg, "exposed"));
	assert_int_equal(strchr(msg, '\n') - msg, (long)strlen(msg) - 1);
	capture_new_warning("not a hostport", 0, msg, sizeof(msg));
	assert_string_equal(msg, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_complete_crlf_request),
		cmocka_unit_test(test_parse_stops_at_blank_line),
		cmocka_unit_test(test_parse_every_prefix_needs_more),
		cmocka_unit_test(test_parse_accepts_bare_lf_and_mixed_endings),
		cmocka_unit_test(test_parse_rejects_bare_cr),
		cmocka_unit_test(test_parse_splits_query_at_first_question_mark),
		cmocka_unit_test(test_parse_head_size_limit),
		cmocka_unit_test(test_parse_rejects_malformed),
		cmocka_unit_test(test_parse_reports_bad_request_line_before_head_ends),
		cmocka_unit_test(test_parse_rejects_other_versions_and_http2_preface),
		cmocka_unit_test(test_parse_rejects_request_bodies),
		cmocka_unit_test(test_parse_field_limits),
		cmocka_unit_test_setup_teardown(test_server_get_returns_handler_body, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_head_sends_length_but_no_body, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_handler_status_passes_through, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_post_gets_405_without_calling_handler, srv_setup,
						srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_malformed_and_http2_get_400, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_oversized_head_gets_431, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_bad_handler_output_gets_500, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_byte_at_a_time_client_is_served, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_trickling_client_is_closed_at_the_timeout, srv_setup,
						srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_silent_client_times_out, srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_client_that_does_not_read_is_closed_without_blocking,
						srv_setup, srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_beyond_max_connections_closes_new_ones, srv_setup,
						srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_free_with_open_connections, srv_setup, srv_teardown),
		cmocka_unit_test(test_server_warns_only_when_not_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
