/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: http_request_parse(), the metrics endpoint's request
 * head parser, on arbitrary bytes.  Beyond memory safety it checks what the
 * server relies on:
 *   - a complete head is consumed through its blank line and no further,
 *     and the request it yields obeys the documented alphabet (method a
 *     token of 1..7 bytes, target starting with '/', bytes 0x21..0x7e, no
 *     '#', path and query NUL-terminated in their arrays);
 *   - the answer does not change when more bytes arrive: the server parses
 *     a connection's buffer again as it grows, so a prefix that already
 *     gave a complete head or an error must give the same with the rest
 *     appended (except the size limit, which depends on the length);
 *   - only the documented error codes come back.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "http.h"

static int tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_field(const char *s, size_t cap, int is_path)
{
	size_t n = strnlen(s, cap);

	FUZZ_CHECK(n < cap, "field not NUL-terminated");
	if (is_path)
		FUZZ_CHECK(n >= 1 && s[0] == '/', "path '%s' does not start with '/'", s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		FUZZ_CHECK(c >= 0x21 && c <= 0x7e && c != '#', "byte 0x%02x in the target", c);
		if (is_path)
			FUZZ_CHECK(c != '?', "'?' in the path");
	}
}

static void check_request(const struct http_request *r)
{
	size_t m = strnlen(r->method, sizeof(r->method));

	FUZZ_CHECK(m >= 1 && m < sizeof(r->method), "method length %zu", m);
	for (size_t i = 0; i < m; i++)
		FUZZ_CHECK(tchar((unsigned char)r->method[i]), "method byte 0x%02x", (unsigned char)r->method[i]);
	check_field(r->path, sizeof(r->path), 1);
	check_field(r->query, sizeof(r->query), 0);
}

static int parse(const uint8_t *data, size_t n, struct http_request *req)
{
	/* A copy of exactly n bytes, so ASan sees any read past the length. */
	char *buf = malloc(n ? n : 1);
	int rc;

	FUZZ_CHECK(buf, "malloc");
	if (n)
		memcpy(buf, data, n);
	memset(req, 0xa5, sizeof(*req)); /* "written only on success" */
	rc = http_request_parse(buf, n, req);
	free(buf);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request full, part, untouched;
	int rc = parse(data, size, &full);

	memset(&untouched, 0xa5, sizeof(untouched));
	FUZZ_CHECK(rc >= 0 || rc == -EMSGSIZE || rc == -EBADMSG || rc == -ENOTSUP, "undocumented error %d", rc);
	if (rc > 0) {
		FUZZ_CHECK((size_t)rc <= size && rc <= HTTP_HEAD_MAX, "consumed %d of %zu bytes", rc, size);
		FUZZ_CHECK(data[rc - 1] == '\n', "head does not end at a line feed");
		check_request(&full);
	} else {
		FUZZ_CHECK(!memcmp(&full, &untouched, sizeof(full)), "request written on failure (%d)", rc);
		if (rc == 0)
			FUZZ_CHECK(size < HTTP_HEAD_MAX, "wants more bytes past the head limit");
		if (rc == -EMSGSIZE)
			FUZZ_CHECK(size >= HTTP_HEAD_MAX, "head too large at %zu bytes", size);
	}

	/* Earlier views of the same connection: after every line feed, and at
	 * a few arbitrary cut points. */
	size_t cuts[8], ncut = 0;
	const uint8_t *nl = data;
	while (ncut < 5 && nl < data + size && (nl = memchr(nl, '\n', (size_t)(data + size - nl)))) {
		cuts[ncut++] = (size_t)(nl - data) + 1;
		nl++;
	}
	cuts[ncut++] = size / 2;
	cuts[ncut++] = size / 3;
	for (size_t i = 0; i < ncut; i++) {
		size_t k = cuts[i];
		if (k >= size)
			continue;
		int pr = parse(data, k, &part);
		if (pr == 0 || pr == -EMSGSIZE)
			continue;
		FUZZ_CHECK(pr == rc, "%zu bytes give %d, %zu bytes give %d", k, pr, size, rc);
		if (pr > 0)
			/* fields compared as strings: bytes after the NULs are not defined */
			FUZZ_CHECK(!strcmp(part.method, full.method) && !strcmp(part.path, full.path) &&
					   !strcmp(part.query, full.query),
				   "a longer buffer changes the request");
	}
	return 0;
}
