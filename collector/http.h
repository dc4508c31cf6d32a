/* SPDX-License-Identifier: MIT */
/*
 * A tiny HTTP/1.1 server for the metrics endpoint, driven by the collector's
 * loop: one GET or HEAD per connection, answered in full from a body the
 * handler builds, then the connection is closed.  Formatting the metrics is
 * the handler's business, not this module's.  Every byte from the network
 * is hostile: heads are capped, slow clients time out, and nothing blocks
 * the loop.
 *
 * Not thread-safe: a server belongs to its loop's thread.  Nothing here is
 * async-signal-safe.
 */
#ifndef MFU_COLLECTOR_HTTP_H
#define MFU_COLLECTOR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "strbuf.h"

#define HTTP_HEAD_MAX 8192
#define HTTP_MAX_CONNS 256
#define HTTP_DEFAULT_TIMEOUT_MS 10000

struct http_request {
	char method[8];   /* token as sent, e.g. "GET" */
	char path[256];   /* request target up to '?', not percent-decoded */
	char query[256];  /* after the first '?', without it; "" when none */
};

/*
 * Parses one request head from buf[0..len).  Returns > 0, the bytes
 * consumed through the blank line, when complete; 0 when more bytes are
 * needed; or a negative error:
 *   -EMSGSIZE  the head is longer than HTTP_HEAD_MAX bytes;
 *   -EBADMSG   malformed request line or header line: not exactly
 *              "METHOD SP TARGET SP HTTP/d.d", a method longer than 7
 *              bytes, a target that does not start with '/' or holds
 *              bytes outside 0x21..0x7e or '#', a path or query that does
 *              not fit in struct http_request, a header line without ':',
 *              an empty or non-token field name (so whitespace before ':'
 *              and obsolete line folding are rejected), control bytes in a
 *              field value, a bare CR, or a non-numeric Content-Length;
 *   -ENOTSUP   a version other than HTTP/1.0 and HTTP/1.1 (this covers the
 *              HTTP/2 preface "PRI * HTTP/2.0"), or a request body
 *              (Content-Length > 0, any Transfer-Encoding).
 * Lines end in CRLF or a bare LF (RFC 9112 section 2.2 lets a recipient
 * accept LF alone, and curl-by-hand and netcat users send it); a CR that is
 * not followed by LF is an error, since CR-as-terminator disagreements are a
 * request smuggling vector.  An error is reported as soon as the line
 * holding it is complete, before the rest of the head arrives.
 * req is written only on success.  Thread-safe, no allocation.
 */
int http_request_parse(const char *buf, size_t len, struct http_request *req);

/*
 * Builds the response body for req into body and returns the HTTP status
 * code (200..599; anything else is answered 500).  *content_type starts
 * as "text/plain; charset=utf-8"; point it at a static string to change
 * it (a value with control bytes is answered 500).  If body->oom is set on
 * return the answer is 500.  Called for GET and HEAD (for HEAD the body is
 * measured, not sent).
 */
typedef int (*http_handler_fn)(void *arg, const struct http_request *req, struct strbuf *body,
			       const char **content_type);

struct http_server;

/*
 * Listens on hostport (as net_parse_hostport; ":PORT" means every IPv4
 * address) and serves requests on loop l until freed.  Each connection
 * must deliver its head within the timeout (HTTP_DEFAULT_TIMEOUT_MS unless
 * set) of being accepted, and while the response is written it is closed
 * if no byte can be written for the timeout.  Malformed heads get 400,
 * methods other than GET and HEAD get 405, heads over HTTP_HEAD_MAX get
 * 431, each with a short text body.  Beyond HTTP_MAX_CONNS open
 * connections, new ones are accepted and closed at once.  If host is not a
 * loopback name or address, one warning line goes to stderr.  Returns 0
 * with the server in *out, -EINVAL for a bad hostport, -ENOMEM, or an
 * error from net_listen_tcp or loop_io_add.
 */
int http_server_new(struct loop *l, const char *hostport, http_handler_fn fn, void *arg, struct http_server **out);

/*
 * Closes the listener and every connection.  Not from inside the server's
 * own handler.  http_server_free(NULL) is a no-op.
 */
void http_server_free(struct http_server *s);

/* The bound port (useful after asking for port 0). */
uint16_t http_server_port(const struct http_server *s);

/*
 * Sets the timeout used by connections accepted, and responses started,
 * after the call (0 counts as 1 ms).
 */
void http_server_set_timeout_ms(struct http_server *s, uint64_t ms);

#endif
