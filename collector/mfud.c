/* SPDX-License-Identifier: MIT */
/*
 * mfud: the collector daemon.  Parses flags, runs the server on a loop until
 * SIGINT or SIGTERM, then takes in what producers have already written and
 * closes archives cleanly.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "loop.h"
#include "net.h"
#include "offcpu_feed.h"
#include "options.h"
#include "server.h"

static const char usage[] =
	"usage: mfud [OPTIONS]\n"
	"Collects mfushim records from many processes and serves rolling HFU/MFU.\n"
	"\n"
	"  --socket PATH         Unix socket (default $XDG_RUNTIME_DIR/mfu/mfud.sock,\n"
	"                        /run/mfu/mfud.sock as root); a missing directory is made\n"
	"                        0700 and the socket 0600; an existing directory must be\n"
	"                        ours (or root's) and not writable by group or others\n"
	"  --socket-group GROUP  system daemon: directory 0750 and socket 0660, owned by\n"
	"                        GROUP, whose members may then connect (any uid, unless\n"
	"                        --allow-uid is given too)\n"
	"  --allow-uid LIST      uids or user names (comma-separated) accepted on the\n"
	"                        socket besides mfud's own uid and root (SO_PEERCRED)\n"
	"  --listen HOST:PORT    also accept producers over TCP (off by default); needs a\n"
	"                        shared token in each hello: MFU_TOKEN, or the file that\n"
	"                        --token-file or MFU_TOKEN_FILE names (never a flag value)\n"
	"  --token-file FILE     read the TCP token from FILE\n"
	"  --hello-timeout SEC   close connections that send no hello by then (default 5;\n"
	"                        0: never)\n"
	"  --idle-timeout SEC    close connections silent this long (default 600; 0: never)\n"
	"  --http HOST:PORT|off  metrics endpoint (default 127.0.0.1:9464; a non-loopback\n"
	"                        address gets a warning: it has no authentication)\n"
	"  --archive DIR         keep every received frame, per source, in DIR\n"
	"  --archive-max-mb N    rotate archive files past N MiB (default 64)\n"
	"  --peak-tflops SPEC    peak override: '989.4' or 'bf16=989.4,fp8=1979'\n"
	"                        (else MFU_PEAK_TFLOPS, else the built-in table)\n"
	"  --model-dtype DTYPE   dtype MFU is measured against when steps declare none\n"
	"  --settle-ms N         live windows end N ms behind the newest data (default 1000)\n"
	"  --gap-wait-us N       idle gaps shorter than N us after the next kernel was\n"
	"                        launched are kernel_wait (default 10)\n"
	"  --no-gaps             no gap analysis: idle time is not split by cause and there\n"
	"                        are no launch latencies or short-kernel counts (HFU, MFU,\n"
	"                        busy and idle ratios stay); ingest is faster and each\n"
	"                        device holds no reorder buffer; the eBPF tracer (which\n"
	"                        only feeds gap analysis) is then off unless --bpf on,\n"
	"                        which is refused\n"
	"  --retain SEC          forget a source SEC s after it disconnects (default 300;\n"
	"                        0 keeps every source until mfud exits)\n"
	"  --bpf auto|on|off     trace the scheduler (off-CPU time) of local sources with\n"
	"                        eBPF; auto (default) runs it when privileged (root, or\n"
	"                        CAP_BPF and CAP_PERFMON), on fails without it\n"
	"  --bpf-stacks          record a kernel stack id with each off-CPU interval\n"
	"  --quiet               no per-connection log lines\n"
	"  --help, --version\n";

static void on_signal(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	loop_stop(l);
}

static int bad(const char *msg)
{
	fprintf(stderr, "mfud: %s\n", msg);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"socket", required_argument, NULL, 's'},   {"listen", required_argument, NULL, 'l'},
		{"http", required_argument, NULL, 'H'},     {"archive", required_argument, NULL, 'a'},
		{"archive-max-mb", required_argument, NULL, 'm'},
		{"peak-tflops", required_argument, NULL, 'p'},
		{"model-dtype", required_argument, NULL, 'd'},
		{"settle-ms", required_argument, NULL, 'S'}, {"quiet", no_argument, NULL, 'q'},
		{"retain", required_argument, NULL, 'r'},  {"gap-wait-us", required_argument, NULL, 'W'},
		{"socket-group", required_argument, NULL, 'g'}, {"allow-uid", required_argument, NULL, 'u'},
		{"token-file", required_argument, NULL, 't'}, {"hello-timeout", required_argument, NULL, 'T'},
		{"idle-timeout", required_argument, NULL, 'I'},
		{"bpf", required_argument, NULL, 'B'},      {"bpf-stacks", no_argument, NULL, 'K'},
		{"no-gaps", no_argument, NULL, 'G'},
		{"help", no_argument, NULL, 'h'},           {"version", no_argument, NULL, 'V'},
		{0},
	};
	struct server_config cfg = {.http_listen = "127.0.0.1:9464", .bpf_mode = OFFCPU_FEED_AUTO};
	char sock[4096], err[256];
	const char *peak = NULL, *token_file = NULL, *token_origin;
	static char token[NET_TOKEN_MAX + 1];
	static uint32_t uids[64];
	uint64_t v;
	int c;

	cfg.agg.settle_ns = 1000000000u;
	cfg.retain_ns = UINT64_C(300) * 1000000000u;
	cfg.hello_timeout_ns = UINT64_C(5) * 1000000000u;
	cfg.idle_timeout_ns = UINT64_C(600) * 1000000000u;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's': cfg.socket_path = optarg; break;
		case 'l': cfg.tcp_listen = optarg; break;
		case 'H': cfg.http_listen = strcmp(optarg, "off") ? optarg : NULL; break;
		case 'a': cfg.archive_dir = optarg; break;
		case 'm':
			if (opt_uint(optarg, 1, 1 << 20, &v, err, sizeof(err)))
				return bad(err);
			cfg.archive_max_bytes = v << 20;
			break;
		case 'p': peak = optarg; break;
		case 'd':
			if (opt_class(optarg, &cfg.agg.model_class, err, sizeof(err)))
				return bad(err);
			break;
		case 'S':
			if (opt_uint(optarg, 0, 600000, &v, err, sizeof(err)))
				return bad(err);
			cfg.agg.settle_ns = v * 1000000u;
			break;
		case 'W':
			if (opt_gap_wait(optarg, &cfg.agg, err, sizeof(err)))
				return bad(err);
			break;
		case 'q': cfg.quiet = 1; break;
		case 'B': {
			enum offcpu_feed_mode m;
			if (offcpu_feed_mode_parse(optarg, &m, err, sizeof(err)))
				return bad(err);
			cfg.bpf_mode = (int)m;
			break;
		}
		case 'K': cfg.bpf_stacks = 1; break;
		case 'G': cfg.agg.no_gaps = 1; break;
		case 'r':
			if (opt_uint(optarg, 0, 30 * 86400, &v, err, sizeof(err)))
				return bad(err);
			cfg.retain_ns = v * 1000000000u;
			break;
		case 'g':
			if (opt_group(optarg, &cfg.socket_gid, err, sizeof(err)))
				return bad(err);
			cfg.socket_group = 1;
			break;
		case 'u':
			if (opt_uid_list(optarg, uids, sizeof(uids) / sizeof(uids[0]), &cfg.n_allow_uids, err,
					 sizeof(err)))
				return bad(err);
			cfg.allow_uids = uids;
			break;
		case 't': token_file = optarg; break;
		case 'T':
			if (opt_uint(optarg, 0, 3600, &v, err, sizeof(err)))
				return bad(err);
			cfg.hello_timeout_ns = v * 1000000000u;
			break;
		case 'I':
			if (opt_uint(optarg, 0, 30 * 86400, &v, err, sizeof(err)))
				return bad(err);
			cfg.idle_timeout_ns = v * 1000000000u;
			break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("mfud %s\n", MFU_VERSION); return 0;
		default:
			snprintf(err, sizeof(err), "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
			return bad(err);
		}
	}
	if (optind < argc) {
		snprintf(err, sizeof(err), "unexpected argument '%s' (see --help)", argv[optind]);
		return bad(err);
	}
	if (opt_peak(&cfg.agg, peak, err, sizeof(err)))
		return bad(err);
	if (cfg.agg.no_gaps) {
		/* Off-CPU intervals only feed gap analysis. */
		if (cfg.bpf_mode == OFFCPU_FEED_ON)
			return bad("--bpf on feeds gap analysis, which --no-gaps turns off");
		cfg.bpf_mode = OFFCPU_FEED_OFF;
	}
	cfg.any_uid = cfg.socket_group && !cfg.allow_uids;
	int trc = net_token_load(token_file, token, sizeof(token), &cfg.token_len, &token_origin);
	if (trc) {
		/* the origin is a variable name or a path, never the token */
		snprintf(err, sizeof(err), "token from %s: %s", token_origin,
			 trc == -E2BIG	  ? "longer than " NET_TOKEN_MAX_TEXT " bytes"
			 : trc == -ENODATA ? "empty"
					   : strerror(-trc));
		return bad(err);
	}
	cfg.token = token;
	if (cfg.token_len && !cfg.tcp_listen)
		fprintf(stderr, "mfud: a token is set but --listen is not: unix producers are checked by uid, not token\n");
	if (!cfg.socket_path) {
		if (net_default_socket(sock, sizeof(sock)))
			return bad("cannot work out the default socket path; use --socket");
		cfg.socket_path = sock;
	}

	struct loop *l = NULL;
	struct server *s = NULL;
	struct loop_io *sig_io = NULL;
	int rc = 1, sfd = -1;
	sigset_t mask;

	/* Blocks of 128 KiB and more (reorder rings, join tables, frame
	 * buffers, devices) come from mmap and go back to the kernel when freed.
	 * glibc would otherwise raise this threshold at the first such free and
	 * carve them from the heap, where hundreds of sources growing and
	 * shrinking their rings left it in pieces: peak RSS 410-500 MiB for 256
	 * sources in tools/bench/load_sources.sh, 281 MiB with the threshold
	 * fixed. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if (loop_new(&l) || (sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    loop_io_add(l, sfd, LOOP_READ, on_signal, NULL, &sig_io))
		goto out;
	if (server_new(l, &cfg, &s))
		goto out;
	fprintf(stderr, "mfud %s: producers on unix:%s%s%s, metrics on %s%s%s\n", MFU_VERSION, cfg.socket_path,
		cfg.tcp_listen ? " and tcp:" : "", cfg.tcp_listen ? cfg.tcp_listen : "",
		cfg.http_listen ? "http://" : "", cfg.http_listen ? cfg.http_listen : "off",
		cfg.http_listen ? "/metrics" : "");
	if (cfg.http_listen && strstr(cfg.http_listen, ":0") == cfg.http_listen + strlen(cfg.http_listen) - 2)
		fprintf(stderr, "mfud: http port %u\n", server_http_port(s));
	if (cfg.agg.have_override)
		fprintf(stderr, "mfud: peak override from %s\n", cfg.agg.override_origin);
	if (cfg.agg.no_gaps)
		fprintf(stderr, "mfud: gap analysis off (--no-gaps)\n");
	const char *bpf_why;
	if (server_bpf_enabled(s, &bpf_why))
		fprintf(stderr, "mfud: eBPF scheduler tracing on (off-CPU time of local sources%s)\n",
			cfg.bpf_stacks ? ", with kernel stacks" : "");
	else
		fprintf(stderr, "mfud: eBPF scheduler tracing off: %s\n", bpf_why);
	rc = loop_run(l) ? 1 : 0;
	server_drain(s);
out:
	server_free(s);
	if (sig_io)
		loop_io_del(sig_io);
	if (sfd >= 0)
		close(sfd);
	loop_free(l);
	return rc;
}
