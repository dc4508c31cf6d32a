/* SPDX-License-Identifier: MIT */
/*
 * Listeners and producer connections on the event loop.  Each connection is
 * read until EAGAIN straight into its ingest buffer; a stream error closes
 * that connection alone, with one log line naming the source.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "export.h"
#include "http.h"
#include "ingest.h"
#include "net.h"
#include "offcpu_feed.h"
#include "server.h"

struct conn {
	struct server *srv;
	struct loop_io *io;
	int fd;
	int is_tcp;
	int denied;            /* the hello hook refused it and logged why */
	pid_t peer_pid;        /* SO_PEERCRED; 0 for TCP */
	uint64_t accepted_ns, last_rx_ns; /* loop clock */
	struct ingest *in;
	struct conn *next, **pprev;
	uint32_t bpf_pid;   /* attached to the off-CPU feed, 0: not */
	int bpf_failed;     /* attaching failed once: do not retry on every read */
	/* the acknowledgement being written, and what was acknowledged last */
	uint8_t ack[MFU_ACK_LEN];
	size_t ack_off;
	int acked, acked_have;
	uint32_t acked_seq;
};

struct server {
	struct loop *loop;
	struct server_config cfg;
	struct agg *agg;
	struct mfu_codec *codec;
	struct archive *archive;
	struct http_server *http;
	int unix_fd, tcp_fd;
	struct loop_io *unix_io, *tcp_io;
	struct loop_timer *evict_timer, *sweep_timer;
	struct conn *conns;
	unsigned nconns;
	uint64_t stream_errors;
	uint64_t rejected[4], timed_out[2], pid_mismatches;
	uint64_t last_rx_ns; /* loop time of the newest byte from any producer */
	char *socket_path;
	struct offcpu_feed *offcpu;
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void conn_close(struct conn *c)
{
	struct server *s = c->srv;
	struct agg_source *src = ingest_source(c->in);

	/* The feed's last off-CPU frame goes into the archive before it closes. */
	if (c->bpf_pid)
		offcpu_feed_detach(s->offcpu, c->bpf_pid);
	if (s->archive && src)
		archive_close_source(s->archive, src);
	loop_io_del(c->io);
	close(c->fd);
	ingest_free(c->in);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	s->nconns--;
	free(c);
}

static void source_name(const struct conn *c, char *buf, size_t cap)
{
	const struct agg_source *src = ingest_source(c->in);
	if (src) {
		/* The host name is the producer's text: a newline would forge log
		 * lines and an escape sequence would reach the terminal, so only
		 * printable ASCII is logged as is (the mfu top rule). */
		char host[AGG_NAME_MAX];
		size_t i;
		for (i = 0; src->host[i] && i + 1 < sizeof(host); i++) {
			unsigned char ch = (unsigned char)src->host[i];
			host[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
		host[i] = '\0';
		snprintf(buf, cap, "%s (host %s pid %llu rank %lld)", ingest_peer(c->in), host,
			 (unsigned long long)src->pid, (long long)src->rank);
	} else {
		snprintf(buf, cap, "%s (before hello)", ingest_peer(c->in));
	}
}

static void on_frame(void *arg, struct agg_source *src, const uint8_t *frame, size_t len)
{
	struct server *s = arg;
	int rc = archive_write(s->archive, src, realtime_ns(), frame, len);
	if (rc)
		fprintf(stderr, "mfud: archive write failed for pid %llu: %s\n", (unsigned long long)src->pid,
			strerror(-rc));
}

/*
 * A local source is traced from its hello on.  The pid to trace is the
 * socket peer's: the kernel gives it in mfud's PID namespace, which is the
 * one BPF's tgids are in when mfud runs in the host's; the hello's pid is
 * the producer's own view (and mfu-synth can fake it).  Without a peer pid,
 * the hello's.
 */
static void conn_watch(struct conn *c)
{
	struct agg_source *src = ingest_source(c->in);
	uint32_t pid;
	int rc;

	if (c->bpf_pid || c->bpf_failed || c->is_tcp || !src || !offcpu_feed_enabled(c->srv->offcpu, NULL))
		return;
	pid = c->peer_pid > 0 ? (uint32_t)c->peer_pid : (uint32_t)src->pid;
	if ((rc = offcpu_feed_attach(c->srv->offcpu, src, pid))) {
		if (!c->srv->cfg.quiet)
			fprintf(stderr, "mfud: cannot trace pid %u off-CPU: %s\n", pid, strerror(-rc));
		c->bpf_failed = 1;
		return;
	}
	c->bpf_pid = pid;
}

/* Tells the producer how far its frames are applied and archived, so it
 * can let them go (doc/wire-format.md, "Acknowledgements").  Never waits: a
 * producer that does not read gets fewer acknowledgements, not a stalled
 * collector; a newer one supersedes an unwritten one, but a half-written
 * one is finished first so the byte stream stays whole. */
static void conn_ack(struct conn *c)
{
	int have;
	uint32_t next;

	if (ingest_ack(c->in, &have, &next))
		return;
	if (!c->ack_off && (!c->acked || have != c->acked_have || next != c->acked_seq)) {
		mfu_ack_encode(c->ack, have, next);
		c->acked = 1;
		c->acked_have = have;
		c->acked_seq = next;
		c->ack_off = MFU_ACK_LEN;
	}
	while (c->ack_off) {
		ssize_t n = send(c->fd, c->ack + MFU_ACK_LEN - c->ack_off, c->ack_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->ack_off -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			c->ack_off = 0; /* the read side sees the producer go */
		} else if (c->ack_off == MFU_ACK_LEN) {
			c->ack_off = 0; /* nothing written: try again after the next read */
			c->acked = 0;
		}
		return;
	}
}

/* Log line and counter for a refused connection; nothing else is kept. */
static int conn_reject(struct conn *c, unsigned reason, const char *why)
{
	fprintf(stderr, "mfud: rejected %s: %s\n", ingest_peer(c->in), why);
	c->srv->rejected[reason]++;
	c->denied = 1;
	return -INGEST_E_DENIED;
}

static int on_hello(void *arg, const struct mfu_rec_hello *h)
{
	struct conn *c = arg;
	struct server *s = c->srv;

	/* The token guards TCP only: a unix peer was vouched for by the kernel
	 * (uid at accept), and a unix producer may carry a token meant for a
	 * TCP collector elsewhere. */
	if (!c->is_tcp)
		return 0;
	if (!h->token_len)
		return conn_reject(c, 1, "no token in its hello (set MFU_TOKEN or MFU_TOKEN_FILE for the producer)");
	if (!net_token_equal(s->cfg.token, s->cfg.token_len, h->token, h->token_len))
		return conn_reject(c, 2, "wrong token");
	return 0;
}

static void conn_hello_accepted(struct conn *c)
{
	struct agg_source *src = ingest_source(c->in);
	char name[640];

	src->peer_pid_mismatch = 0;
	if (!c->peer_pid || src->pid == (uint64_t)c->peer_pid)
		return;
	src->peer_pid_mismatch = (uint64_t)c->peer_pid;
	c->srv->pid_mismatches++;
	source_name(c, name, sizeof(name));
	fprintf(stderr, "mfud: %s claims pid %llu but the kernel says %d (another pid namespace, or a false claim)\n",
		name, (unsigned long long)src->pid, (int)c->peer_pid);
}

static void conn_readable(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct conn *c = arg;
	char name[640];

	for (;;) {
		uint8_t *p;
		size_t n;
		if (ingest_space(c->in, &p, &n)) {
			source_name(c, name, sizeof(name));
			fprintf(stderr, "mfud: dropping %s: out of memory\n", name);
			conn_close(c);
			return;
		}
		ssize_t got = read(fd, p, n);
		if (got > 0) {
			int had_source = ingest_source(c->in) != NULL;
			c->last_rx_ns = loop_now_ns();
			c->srv->last_rx_ns = c->last_rx_ns;
			int rc = ingest_commit(c->in, (size_t)got, c->last_rx_ns);
			if (!had_source && ingest_source(c->in)) {
				conn_hello_accepted(c);
				conn_watch(c);
			}
			if (rc && c->denied) {
				conn_close(c);
				return;
			}
			if (rc == -INGEST_E_HELLO_SIZE) {
				/* one line, no source: the same as a refused hello */
				fprintf(stderr, "mfud: rejected %s: %s\n", ingest_peer(c->in), ingest_strerror(rc));
				c->srv->rejected[3]++;
				conn_close(c);
				return;
			}
			if (rc) {
				source_name(c, name, sizeof(name));
				fprintf(stderr, "mfud: dropping %s: %s (code %d)\n", name, ingest_strerror(rc), -rc);
				c->srv->stream_errors++;
				conn_close(c);
				return;
			}
			continue;
		}
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_ack(c);
			return;
		}
		/* EOF or error: the producer went away. */
		if (ingest_pending(c->in) && !c->srv->cfg.quiet) {
			source_name(c, name, sizeof(name));
			fprintf(stderr, "mfud: %s closed inside a frame; partial frame discarded\n", name);
		}
		if (!c->srv->cfg.quiet && ingest_source(c->in)) {
			source_name(c, name, sizeof(name));
			fprintf(stderr, "mfud: %s disconnected\n", name);
		}
		conn_close(c);
		return;
	}
}

static void peer_describe(int fd, int is_unix, const struct ucred *cred, char *buf, size_t cap)
{
	if (is_unix) {
		if (cred)
			snprintf(buf, cap, "unix:pid=%d,uid=%u", cred->pid, cred->uid);
		else
			snprintf(buf, cap, "unix");
		return;
	}
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[64] = "?";
	unsigned port = 0;
	if (!getpeername(fd, (struct sockaddr *)&ss, &len)) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
			port = ntohs(in4->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
			port = ntohs(in6->sin6_port);
		}
	}
	snprintf(buf, cap, "tcp:%s:%u", host, port);
}

static int uid_allowed(const struct server *s, const struct ucred *cred)
{
	if (s->cfg.any_uid)
		return 1;
	if (!cred)
		return 0; /* no word from the kernel: no way to tell */
	if (cred->uid == geteuid() || cred->uid == 0)
		return 1;
	for (unsigned i = 0; i < s->cfg.n_allow_uids; i++)
		if (cred->uid == s->cfg.allow_uids[i])
			return 1;
	return 0;
}

static void accept_ready(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct server *s = arg;
	int is_unix = io == s->unix_io;

	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fprintf(stderr, "mfud: accept: %s\n", strerror(errno));
			return;
		}
		char peer[128];
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		int have_cred = is_unix && !getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &clen);
		peer_describe(cfd, is_unix, have_cred ? &cred : NULL, peer, sizeof(peer));
		if (is_unix && !uid_allowed(s, have_cred ? &cred : NULL)) {
			/* Before any state: a refused peer costs one log line. */
			fprintf(stderr, "mfud: rejected %s: uid not allowed (see --allow-uid)\n", peer);
			s->rejected[0]++;
			close(cfd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c || ingest_new(s->agg, s->codec, peer, &c->in) ||
		    loop_io_add(l, cfd, LOOP_READ, conn_readable, c, &c->io)) {
			fprintf(stderr, "mfud: cannot take connection from %s: out of memory\n", peer);
			if (c)
				ingest_free(c->in);
			free(c);
			close(cfd);
			continue;
		}
		c->srv = s;
		c->fd = cfd;
		c->is_tcp = !is_unix;
		c->peer_pid = have_cred ? cred.pid : 0;
		c->accepted_ns = c->last_rx_ns = loop_now_ns();
		ingest_on_hello(c->in, on_hello, c);
		if (s->archive)
			ingest_on_frame(c->in, on_frame, s);
		c->next = s->conns;
		if (c->next)
			c->next->pprev = &c->next;
		c->pprev = &s->conns;
		s->conns = c;
		s->nconns++;
	}
}

static int http_handler(void *arg, const struct http_request *req, struct strbuf *body,
			const char **content_type)
{
	struct server *s = arg;

	if (!strcmp(req->path, "/metrics")) {
		struct export_extra x;
		server_counters(s, &x);
		export_prometheus(s->agg, loop_now_ns(), &x, body);
		*content_type = "text/plain; version=0.0.4; charset=utf-8";
		return 200;
	}
	if (!strcmp(req->path, "/api/v1/summary")) {
		export_json_summary(s->agg, loop_now_ns(), body);
		*content_type = "application/json";
		return 200;
	}
	if (!strcmp(req->path, "/api/v1/top")) {
		export_top_table(s->agg, loop_now_ns(), body);
		*content_type = "text/plain; charset=utf-8";
		return 200;
	}
	if (!strcmp(req->path, "/")) {
		sb_puts(body, "mfud: see /metrics and /api/v1/summary\n");
		*content_type = "text/plain; charset=utf-8";
		return 200;
	}
	sb_puts(body, "not found\n");
	*content_type = "text/plain; charset=utf-8";
	return 404;
}

static void on_evict(struct loop *l, struct loop_timer *t, void *arg)
{
	struct server *s = arg;
	unsigned n = 0;

	/* Data time moves on between records: sweep gap analysis up to it. */
	agg_advance(s->agg, loop_now_ns());
	if (s->cfg.retain_ns)
		n = agg_evict(s->agg, loop_now_ns(), s->cfg.retain_ns);

	if (n && !s->cfg.quiet)
		fprintf(stderr, "mfud: forgot %u source%s gone for over %llu s\n", n, n == 1 ? "" : "s",
			(unsigned long long)(s->cfg.retain_ns / 1000000000u));
}

/* Connections that never say hello, or go silent, are closed: each holds a
 * buffer and an fd, and a peer should not keep them for nothing. */
static void on_sweep(struct loop *l, struct loop_timer *t, void *arg)
{
	struct server *s = arg;
	uint64_t now = loop_now_ns();
	struct conn *c = s->conns, *next;
	char name[640];

	for (; c; c = next) {
		next = c->next;
		int hello = ingest_source(c->in) != NULL;
		if (!hello && s->cfg.hello_timeout_ns && now - c->accepted_ns >= s->cfg.hello_timeout_ns) {
			source_name(c, name, sizeof(name));
			fprintf(stderr, "mfud: closing %s: no hello within %llu ms\n", name,
				(unsigned long long)(s->cfg.hello_timeout_ns / 1000000u));
			s->timed_out[0]++;
			conn_close(c);
		} else if (s->cfg.idle_timeout_ns && now - c->last_rx_ns >= s->cfg.idle_timeout_ns) {
			source_name(c, name, sizeof(name));
			fprintf(stderr, "mfud: closing %s: nothing received for %llu s\n", name,
				(unsigned long long)(s->cfg.idle_timeout_ns / 1000000000u));
			s->timed_out[1]++;
			conn_close(c);
		}
	}
}

int server_new(struct loop *l, const struct server_config *cfg, struct server **out)
{
	struct server *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->cfg = *cfg;
	s->unix_fd = s->tcp_fd = -1;
	if ((rc = agg_new(&cfg->agg, &s->agg)))
		goto fail;
	if (!(s->codec = mfu_codec_new(1))) {
		rc = -ENOMEM;
		goto fail;
	}
	if (cfg->archive_dir && (rc = archive_new(cfg->archive_dir, cfg->archive_max_bytes, &s->archive))) {
		fprintf(stderr, "mfud: archive directory %s: %s\n", cfg->archive_dir, strerror(-rc));
		goto fail;
	}
	if (cfg->tcp_listen && !cfg->token_len) {
		fprintf(stderr, "mfud: --listen needs a shared token: set MFU_TOKEN, MFU_TOKEN_FILE or --token-file\n");
		rc = -EINVAL;
		goto fail;
	}
	if (cfg->socket_path) {
		int grp = cfg->socket_group;
		rc = net_listen_unix_group(cfg->socket_path, grp ? 0750 : 0700, grp ? 0660 : 0600,
					   grp ? cfg->socket_gid : (gid_t)-1, &s->unix_fd);
		if (rc) {
			fprintf(stderr, "mfud: cannot listen on %s: %s\n", cfg->socket_path,
				rc == -EADDRINUSE ? "another collector is running there"
				: rc == -EPERM	  ? "its directory must belong to this user or root and not be writable "
						    "by group or others (see doc/security.md)"
						  : strerror(-rc));
			goto fail;
		}
		s->socket_path = strdup(cfg->socket_path);
		if ((rc = loop_io_add(l, s->unix_fd, LOOP_READ, accept_ready, s, &s->unix_io)))
			goto fail;
	}
	if (cfg->tcp_listen) {
		char host[256];
		uint16_t port;
		if ((rc = net_parse_hostport(cfg->tcp_listen, host, sizeof(host), &port)) ||
		    (rc = net_listen_tcp(host, port, &s->tcp_fd, NULL))) {
			fprintf(stderr, "mfud: cannot listen on %s: %s\n", cfg->tcp_listen, strerror(-rc));
			goto fail;
		}
		if ((rc = loop_io_add(l, s->tcp_fd, LOOP_READ, accept_ready, s, &s->tcp_io)))
			goto fail;
	}
	if (cfg->http_listen && (rc = http_server_new(l, cfg->http_listen, http_handler, s, &s->http))) {
		fprintf(stderr, "mfud: cannot serve HTTP on %s: %s\n", cfg->http_listen, strerror(-rc));
		goto fail;
	}
	if ((rc = loop_timer_add(l, 1000, 1000, on_evict, s, &s->evict_timer)))
		goto fail;
	if ((cfg->hello_timeout_ns || cfg->idle_timeout_ns) &&
	    (rc = loop_timer_add(l, 250, 250, on_sweep, s, &s->sweep_timer)))
		goto fail;
	{
		struct offcpu_tracer_opts bo = {.stacks = cfg->bpf_stacks};
		char why[256];
		if ((rc = offcpu_feed_new(l, (enum offcpu_feed_mode)cfg->bpf_mode, &bo, &s->offcpu, why, sizeof(why)))) {
			fprintf(stderr, "mfud: --bpf=on: cannot start the eBPF scheduler tracer: %s\n", why);
			goto fail;
		}
		if (cfg->agg.no_gaps) /* mfud turned the tracer off for it */
			offcpu_feed_set_off_reason(s->offcpu, "--no-gaps");
		offcpu_feed_set_sink(s->offcpu, agg_source_offcpu);
		if (s->archive && (rc = offcpu_feed_set_archive(s->offcpu, on_frame, s)))
			goto fail;
	}
	*out = s;
	return 0;
fail:
	server_free(s);
	return rc;
}

void server_drain(struct server *s)
{
	/* Producers that already connected and wrote are part of the run, even
	 * those still in the listen backlog: take in what the sockets hold now
	 * (one read pass each: a producer that keeps writing cannot hold the
	 * exit), so it reaches the totals and the archive before they close. */
	if (s->unix_io)
		accept_ready(s->loop, s->unix_io, s->unix_fd, LOOP_READ, s);
	if (s->tcp_io)
		accept_ready(s->loop, s->tcp_io, s->tcp_fd, LOOP_READ, s);
	for (struct conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		conn_readable(s->loop, c->io, c->fd, LOOP_READ, c);
	}
}

void server_free(struct server *s)
{
	if (!s)
		return;
	if (s->evict_timer)
		loop_timer_del(s->evict_timer);
	if (s->sweep_timer)
		loop_timer_del(s->sweep_timer);
	while (s->conns)
		conn_close(s->conns);
	offcpu_feed_free(s->offcpu);
	http_server_free(s->http);
	if (s->unix_io)
		loop_io_del(s->unix_io);
	if (s->tcp_io)
		loop_io_del(s->tcp_io);
	if (s->unix_fd >= 0) {
		close(s->unix_fd);
		unlink(s->socket_path);
	}
	if (s->tcp_fd >= 0)
		close(s->tcp_fd);
	archive_free(s->archive);
	mfu_codec_free(s->codec);
	agg_free(s->agg);
	free(s->socket_path);
	free(s);
}

struct agg *server_agg(struct server *s)
{
	return s->agg;
}

uint16_t server_http_port(const struct server *s)
{
	return s->http ? http_server_port(s->http) : 0;
}

unsigned server_connections(const struct server *s)
{
	return s->nconns;
}

uint64_t server_last_rx_ns(const struct server *s)
{
	return s->last_rx_ns;
}

uint64_t server_stream_errors(const struct server *s)
{
	return s->stream_errors;
}

void server_counters(const struct server *s, struct export_extra *x)
{
	memset(x, 0, sizeof(*x));
	x->stream_errors = s->stream_errors;
	memcpy(x->rejected, s->rejected, sizeof(x->rejected));
	memcpy(x->timed_out, s->timed_out, sizeof(x->timed_out));
	x->pid_mismatches = s->pid_mismatches;
	x->bpf_on = offcpu_feed_enabled(s->offcpu, &x->bpf_reason);
	if (x->bpf_on) {
		struct offcpu_feed_stats st;
		offcpu_feed_stats(s->offcpu, &st);
		x->bpf_sources = st.sources;
		x->bpf_switches = st.tracer.switches;
		x->bpf_events = st.tracer.events;
		x->bpf_drops = st.tracer.drops;
		x->bpf_missed_in = st.tracer.missed_in;
		memcpy(x->bpf_offcpu_ns, st.ns, sizeof(x->bpf_offcpu_ns));
	}
}

int server_bpf_enabled(const struct server *s, const char **reason)
{
	return offcpu_feed_enabled(s->offcpu, reason);
}

struct offcpu_feed *server_offcpu(struct server *s)
{
	return s->offcpu;
}
