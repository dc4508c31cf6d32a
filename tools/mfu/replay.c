/* SPDX-License-Identifier: MIT */
/*
 * mfu replay: streams archived frames into a collector, one connection per
 * source, frames in the order they were received, paced by their receive
 * times (--speed) or as fast as the collector reads (--max).  Frames are sent
 * byte for byte as archived, so the collector sees what the producer sent.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "archive_files.h"
#include "cli.h"
#include "net.h"
#include "options.h"

#define GAP_MAX_NS 10e9

static const char usage[] =
	"usage: mfu replay [--speed X | --max] [--target unix:PATH|tcp:HOST:PORT] FILE...\n"
	"Streams archived frames to a collector (default: $MFU_COLLECTOR, else mfud's socket).\n"
	"Files of one source (name.0.mfa, name.1.mfa, ...) go over one connection, in order.\n"
	"Frames are paced by their receive times divided by X (default 1); a pause longer\n"
	"than 10 s is cut to 10 s.\n";

struct stream {
	char **files;
	int nfiles, next_file;
	struct archive_reader rd;
	int open, fd, done;
	uint64_t recv;
	const uint8_t *frame;
	size_t len;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Loads the next frame of s; marks it done at the end of its last file. */
static void advance(struct stream *s)
{
	for (;;) {
		if (!s->open) {
			if (s->next_file >= s->nfiles) {
				s->done = 1;
				return;
			}
			const char *path = s->files[s->next_file++];
			int rc = archive_reader_open(path, &s->rd);
			if (rc) {
				fprintf(stderr, "mfu replay: %s: %s\n", path,
					rc == -EBADMSG ? "not an mfu archive" : strerror(-rc));
				continue;
			}
			s->open = 1;
		}
		size_t bad;
		int rc = archive_reader_next(&s->rd, &s->recv, &s->frame, &s->len, &bad);
		if (rc == 1)
			return;
		if (rc < 0) {
			fprintf(stderr, "mfu replay: %s: skipped a bad entry at offset %zu (%s)\n",
				s->files[s->next_file - 1], bad, mfu_wire_strerror(rc));
			continue;
		}
		archive_reader_close(&s->rd);
		s->open = 0;
	}
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"speed", required_argument, NULL, 's'}, {"max", no_argument, NULL, 'm'},
		{"target", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
		{0},
	};
	double speed = 1;
	int max = 0, c;
	const char *target = getenv("MFU_COLLECTOR");
	char err[200], deftarget[4200];

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (opt_positive(optarg, &speed, err, sizeof(err)))
				return cli_usage_error("replay", "--speed: %s", err);
			break;
		case 'm': max = 1; break;
		case 't': target = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		default: return cli_bad_option("replay", argv, optind);
		}
	}
	if (optind >= argc)
		return cli_usage_error("replay", "no archive files given");
	if (!target || !*target) {
		char path[4096];
		if (net_default_socket(path, sizeof(path)))
			return cli_usage_error("replay", "no collector: use --target");
		snprintf(deftarget, sizeof(deftarget), "unix:%s", path);
		target = deftarget;
	}
	signal(SIGPIPE, SIG_IGN);

	int n = argc - optind, ns = 0, rc = 0;
	char **files = malloc((size_t)n * sizeof(*files));
	struct stream *st = calloc((size_t)n, sizeof(*st));
	if (!files || !st)
		return 1;
	memcpy(files, argv + optind, (size_t)n * sizeof(*files));
	archive_files_sort(files, (size_t)n);
	for (int i = 0; i < n;) {
		int j = i + 1;
		while (j < n && archive_same_group(files[i], files[j]))
			j++;
		st[ns].files = files + i;
		st[ns].nfiles = j - i;
		st[ns].fd = -1;
		advance(&st[ns]);
		if (!st[ns].done) {
			int in_progress;
			int e = net_connect(target, 0, &st[ns].fd, &in_progress);
			if (e) {
				fprintf(stderr, "mfu replay: cannot connect to %s: %s\n", target, strerror(-e));
				rc = 1;
				goto out;
			}
		}
		ns++;
		i = j;
	}

	uint64_t first = UINT64_MAX, t0 = mono_ns(), sent = 0;
	for (int i = 0; i < ns; i++)
		if (!st[i].done && st[i].recv < first)
			first = st[i].recv;
	uint64_t last = first;
	for (;;) {
		int best = -1;
		for (int i = 0; i < ns; i++)
			if (!st[i].done && (best < 0 || st[i].recv < st[best].recv))
				best = i;
		if (best < 0)
			break;
		struct stream *s = &st[best];
		/* An archive can hold hours of idle time (or a bogus stamp): no
		 * single wait is longer than GAP_MAX, the rest is skipped. */
		if (!max && s->recv > last && (double)(s->recv - last) / speed > GAP_MAX_NS) {
			uint64_t skip = (s->recv - last) - (uint64_t)(GAP_MAX_NS * speed);
			first += skip;
		}
		if (s->recv > last)
			last = s->recv;
		if (!max && s->recv > first) {
			uint64_t due = t0 + (uint64_t)((double)(s->recv - first) / speed), now = mono_ns();
			if (due > now) {
				struct timespec ts = {(time_t)((due - now) / 1000000000u), (long)((due - now) % 1000000000u)};
				nanosleep(&ts, NULL);
			}
		}
		if (write_all(s->fd, s->frame, s->len)) {
			fprintf(stderr, "mfu replay: collector closed the connection: %s\n", strerror(errno));
			rc = 1;
			goto out;
		}
		sent++;
		advance(s);
	}
	fprintf(stderr, "mfu replay: sent %llu frames from %d source%s\n", (unsigned long long)sent, ns,
		ns == 1 ? "" : "s");
out:
	for (int i = 0; i < ns; i++) {
		if (st[i].open)
			archive_reader_close(&st[i].rd);
		if (st[i].fd >= 0)
			close(st[i].fd);
	}
	free(st);
	free(files);
	return rc;
}
