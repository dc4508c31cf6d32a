/* SPDX-License-Identifier: MIT */
/*
 * The collector as a component: listeners, producer connections, the HTTP
 * endpoints and the archive, all on one caller-owned loop.  mfud runs it as
 * a daemon; `mfu run` embeds it on a private socket.
 */
#ifndef MFU_SERVER_H
#define MFU_SERVER_H

#include <stdint.h>
#include <sys/types.h>

#include "agg.h"
#include "export.h"
#include "loop.h"

struct server_config {
	const char *socket_path; /* NULL: no Unix listener */
	const char *tcp_listen;  /* "HOST:PORT" or NULL */
	const char *http_listen; /* "HOST:PORT" or NULL (off) */
	const char *archive_dir; /* NULL: no archive */
	uint64_t archive_max_bytes;
	struct agg_config agg;
	int quiet; /* no per-connection log lines */
	uint64_t retain_ns; /* free sources gone this long; 0 keeps them all */

	/* Access rules (doc/security.md). */
	int socket_group;         /* 1: dir 0750, socket 0660, both owned by socket_gid */
	gid_t socket_gid;
	const uint32_t *allow_uids; /* unix peers' uids accepted besides ours and root's */
	unsigned n_allow_uids;
	int any_uid;              /* no uid check: the socket's group is the gate */
	const char *token;        /* shared secret TCP hellos must carry; required with tcp_listen */
	size_t token_len;
	uint64_t hello_timeout_ns; /* close a connection without a hello by then; 0: never */
	uint64_t idle_timeout_ns;  /* close a connection silent this long; 0: never */
	int bpf_mode;       /* enum offcpu_feed_mode; 0: off (mfu run) */
	int bpf_stacks;     /* kernel stack ids on off-CPU records */
};

struct server;

int server_new(struct loop *l, const struct server_config *cfg, struct server **out);
/* Before server_free at shutdown: accepts the connections waiting and reads
 * what every connection's socket holds now. */
void server_drain(struct server *s);
void server_free(struct server *s);
struct agg *server_agg(struct server *s);
uint16_t server_http_port(const struct server *s);
unsigned server_connections(const struct server *s);
/* Loop time of the newest byte read from any producer (0: none yet). */
uint64_t server_last_rx_ns(const struct server *s);
uint64_t server_stream_errors(const struct server *s);
/* The counters /metrics shows (export_extra's). */
void server_counters(const struct server *s, struct export_extra *x);
/* 1 if the eBPF scheduler tracer runs; *reason gets why not ("" when on). */
int server_bpf_enabled(const struct server *s, const char **reason);
/* The off-CPU feed (always there; it may be off). */
struct offcpu_feed *server_offcpu(struct server *s);

#endif
