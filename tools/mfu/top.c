/* SPDX-License-Identifier: MIT */
/*
 * mfu top: fetches mfud's /api/v1/top table over HTTP and redraws it in
 * place.  The table is formatted by the collector, so top and /metrics can
 * never disagree on a formula.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "net.h"
#include "options.h"
#include "strbuf.h"

static const char usage[] =
	"usage: mfu top [--connect HOST:PORT] [--interval SEC] [--once]\n"
	"Live per-source HFU/MFU table from a running mfud (default 127.0.0.1:9464).\n";

/* GET path from host:port; body into out.  Returns 0 or -errno. */
static int http_get(const char *hostport, const char *path, struct strbuf *out)
{
	char target[300], req[512], buf[65536];
	int fd, in_progress, rc = 0;

	snprintf(target, sizeof(target), "tcp:%s", hostport);
	if ((rc = net_connect(target, 0, &fd, &in_progress)))
		return rc;
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, hostport);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -EIO;
	}
	struct strbuf resp;
	sb_init(&resp);
	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		sb_append(&resp, buf, (size_t)k);
		if (resp.len > (16u << 20))
			break;
	}
	close(fd);
	const char *body = resp.buf ? strstr(resp.buf, "\r\n\r\n") : NULL;
	if (!body || strncmp(resp.buf, "HTTP/1.1 200", 12)) {
		rc = -EPROTO;
	} else {
		body += 4;
		sb_append(out, body, resp.len - (size_t)(body - resp.buf));
	}
	sb_free(&resp);
	return rc;
}

int cmd_top(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"connect", required_argument, NULL, 'c'}, {"interval", required_argument, NULL, 'i'},
		{"once", no_argument, NULL, '1'},           {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *hostport = "127.0.0.1:9464";
	uint64_t interval = 1;
	int once = 0, c;
	char err[200], host[256];
	uint16_t port;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (net_parse_hostport(optarg, host, sizeof(host), &port) || !port)
				return cli_usage_error("top", "--connect: '%s' is not HOST:PORT", optarg);
			hostport = optarg;
			break;
		case 'i':
			if (opt_uint(optarg, 1, 3600, &interval, err, sizeof(err)))
				return cli_usage_error("top", "--interval: %s", err);
			break;
		case '1': once = 1; break;
		case 'h': fputs(usage, stdout); return 0;
		default: return cli_bad_option("top", argv, optind);
		}
	}
	if (optind < argc)
		return cli_usage_error("top", "unexpected argument '%s'", argv[optind]);

	int tty = isatty(STDOUT_FILENO) && !once;
	for (;;) {
		struct strbuf sb;
		sb_init(&sb);
		int rc = http_get(hostport, "/api/v1/top", &sb);
		if (rc) {
			fprintf(stderr, "mfu top: cannot read http://%s/api/v1/top: %s\n", hostport,
				rc == -EPROTO ? "not an mfud" : strerror(-rc));
			sb_free(&sb);
			return 1;
		}
		if (tty)
			fputs("\033[H\033[2J", stdout); /* home and clear: redraw in place */
		fputs(sb.buf ? sb.buf : "", stdout);
		fflush(stdout);
		sb_free(&sb);
		if (once)
			return 0;
		sleep((unsigned)interval);
	}
}
