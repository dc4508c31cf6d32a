/* SPDX-License-Identifier: MIT */
/*
 * mfu run: starts an embedded collector on a private socket, runs the
 * command with the shim preloaded and MFU_COLLECTOR pointing at that socket,
 * prints a live status line, and at the end a summary.  The command's exit
 * status is mfu's.  With MFU_COLLECTOR already set, the command reports to
 * that collector instead and mfu only preloads and waits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "export.h"
#include "loop.h"
#include "options.h"
#include "server.h"

static const char usage[] =
	"usage: mfu run [OPTIONS] -- CMD [ARGS...]\n"
	"Runs CMD with libmfushim.so preloaded and shows rolling HFU/MFU.\n"
	"\n"
	"  --json FILE          write the final summary as JSON\n"
	"  --interval SEC       status line period (default 2; 0 turns it off)\n"
	"  --archive DIR        also keep the received frames in DIR\n"
	"  --http HOST:PORT     also serve /metrics while CMD runs\n"
	"  --peak-tflops SPEC   peak override ('989.4' or 'bf16=989.4,fp8=1979')\n"
	"  --model-dtype DTYPE  dtype MFU is measured against when steps declare none\n"
	"  --gap-wait-us N      idle gaps shorter than N us after the next launch are\n"
	"                       kernel_wait (default 10)\n"
	"  --no-shim            do not preload the shim (CMD reports by itself)\n"
	"\n"
	"Environment: MFU_COLLECTOR=unix:PATH|tcp:HOST:PORT reports to a running mfud\n"
	"instead of an embedded one; MFU_SHIM overrides the shim's path.\n";

struct run {
	struct loop *loop;
	struct server *srv;
	pid_t child;
	int status, exited;
	uint64_t exit_ns;
	unsigned interval_s;
	int tty;
	int line_shown;
};

static int find_shim(char *out, size_t cap)
{
	const char *env = getenv("MFU_SHIM");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		snprintf(out, cap, "%s", env);
		return access(out, R_OK) ? -ENOENT : 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -ENOENT;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	/* build tree (build/tools/mfu), then installed layouts */
	static const char *const rel[] = {"/../shim/libmfushim.so", "/../lib/libmfushim.so",
					  "/../lib/x86_64-linux-gnu/libmfushim.so", "/../lib64/libmfushim.so"};
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(out, cap, "%s%s", exe, rel[i]);
		char real[PATH_MAX];
		if (!access(out, R_OK) && realpath(out, real)) {
			snprintf(out, cap, "%s", real);
			return 0;
		}
	}
	return -ENOENT;
}

static void show_status(struct run *r, int final)
{
	struct strbuf sb;
	uint64_t w = r->interval_s <= 1 ? 1000000000ull : r->interval_s <= 10 ? 10000000000ull : 60000000000ull;
	const char *label = w == 1000000000ull ? "1s" : w == 10000000000ull ? "10s" : "60s";

	sb_init(&sb);
	export_status_line(server_agg(r->srv), w, label, loop_now_ns(), &sb);
	if (r->tty)
		fprintf(stderr, "\r\033[K%s%s", sb.buf ? sb.buf : "", final ? "\n" : "");
	else
		fprintf(stderr, "%s\n", sb.buf ? sb.buf : "");
	fflush(stderr);
	r->line_shown = r->tty && !final;
	sb_free(&sb);
}

static void on_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	show_status(arg, 0);
}

static void on_signal(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct run *r = arg;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			int st;
			if (waitpid(r->child, &st, WNOHANG) == r->child) {
				r->status = st;
				r->exited = 1;
				r->exit_ns = loop_now_ns();
			}
		} else if (r->child > 0 && !r->exited) {
			kill(r->child, (int)si.ssi_signo); /* the command decides how to stop */
		}
	}
}

static int exit_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 1;
}

static pid_t spawn(char **cmd, const sigset_t *oldmask)
{
	pid_t pid = fork();
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, oldmask, NULL);
		execvp(cmd[0], cmd);
		fprintf(stderr, "mfu run: cannot run '%s': %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", required_argument, NULL, 'j'},     {"interval", required_argument, NULL, 'i'},
		{"archive", required_argument, NULL, 'a'},  {"http", required_argument, NULL, 'H'},
		{"peak-tflops", required_argument, NULL, 'p'}, {"model-dtype", required_argument, NULL, 'd'},
		{"no-shim", no_argument, NULL, 'n'},        {"gap-wait-us", required_argument, NULL, 'W'},        {"help", no_argument, NULL, 'h'},
		{0},
	};
	struct server_config cfg = {.quiet = 1};
	const char *json = NULL, *peak = NULL;
	int no_shim = 0, c;
	uint64_t v = 2;
	char err[256];
	struct run r = {.interval_s = 2};

	cfg.agg.settle_ns = 1000000000u;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = optarg; break;
		case 'i':
			if (opt_uint(optarg, 0, 3600, &v, err, sizeof(err)))
				return cli_usage_error("run", "--interval: %s", err);
			r.interval_s = (unsigned)v;
			break;
		case 'a': cfg.archive_dir = optarg; break;
		case 'H': cfg.http_listen = optarg; break;
		case 'p': peak = optarg; break;
		case 'd':
			if (opt_class(optarg, &cfg.agg.model_class, err, sizeof(err)))
				return cli_usage_error("run", "--model-dtype: %s", err);
			break;
		case 'n': no_shim = 1; break;
		case 'W':
			if (opt_gap_wait(optarg, &cfg.agg, err, sizeof(err)))
				return cli_usage_error("run", "--gap-wait-us: %s", err);
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: return cli_bad_option("run", argv, optind);
		}
	}
	if (optind >= argc)
		return cli_usage_error("run", "no command given (usage: mfu run [OPTIONS] -- CMD ARGS...)");
	if (opt_peak(&cfg.agg, peak, err, sizeof(err)))
		return cli_usage_error("run", "%s", err);

	char shim[PATH_MAX];
	if (!no_shim) {
		if (find_shim(shim, sizeof(shim)) == 0) {
			const char *old = getenv("LD_PRELOAD");
			char *pre;
			if (asprintf(&pre, "%s%s%s", shim, old && *old ? " " : "", old ? old : "") < 0)
				return 1;
			setenv("LD_PRELOAD", pre, 1);
			free(pre);
		} else {
			fprintf(stderr, "mfu run: libmfushim.so not found (set MFU_SHIM); running without it\n");
		}
	}

	const char *external = getenv("MFU_COLLECTOR");
	char dir[] = "/tmp/mfu-run.XXXXXX", sock[sizeof(dir) + 16], target[sizeof(sock) + 8];
	sigset_t mask, oldmask;
	struct loop_io *sig_io = NULL;
	struct loop_timer *tick = NULL;
	int sfd = -1, rc = 1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &oldmask);
	signal(SIGPIPE, SIG_IGN);

	if (external && *external) {
		/* A running collector owns the numbers; just run and wait. */
		fprintf(stderr, "mfu run: reporting to %s (watch it with mfu top)\n", external);
		r.child = spawn(argv + optind, &oldmask);
		if (r.child < 0)
			return 1;
		int st;
		while (waitpid(r.child, &st, 0) < 0 && errno == EINTR)
			;
		return exit_code(st);
	}

	if (!mkdtemp(dir)) {
		fprintf(stderr, "mfu run: cannot create a private socket directory: %s\n", strerror(errno));
		return 1;
	}
	snprintf(sock, sizeof(sock), "%s/mfud.sock", dir);
	snprintf(target, sizeof(target), "unix:%s", sock);
	cfg.socket_path = sock;
	r.tty = isatty(STDERR_FILENO);

	if (loop_new(&r.loop) || (sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    loop_io_add(r.loop, sfd, LOOP_READ, on_signal, &r, &sig_io) || server_new(r.loop, &cfg, &r.srv))
		goto out;
	setenv("MFU_COLLECTOR", target, 1);
	r.child = spawn(argv + optind, &oldmask);
	if (r.child < 0) {
		fprintf(stderr, "mfu run: fork: %s\n", strerror(errno));
		goto out;
	}
	if (r.interval_s)
		loop_timer_add(r.loop, r.interval_s * 1000ull, r.interval_s * 1000ull, on_tick, &r, &tick);

	/* Run until the command exits, then read on while its producers still
	 * have data coming: a loaded machine can leave this loop far behind a
	 * producer that has already exited, and what is still in the socket is
	 * part of the run.  A producer silent for 2 s (a grandchild that
	 * outlives the command, say) does not hold the summary back; nor does
	 * one that keeps sending, after 60 s. */
	for (;;) {
		if (r.exited) {
			uint64_t now = loop_now_ns(), last = server_last_rx_ns(r.srv);
			uint64_t quiet_since = last > r.exit_ns ? last : r.exit_ns;
			if (!server_connections(r.srv))
				break;
			if (now - quiet_since >= 2000000000ull || now - r.exit_ns >= 60000000000ull) {
				fprintf(stderr, "mfu run: %u producer(s) still connected %.1f s after the command exited; "
						"the summary leaves out what they send from now on\n",
					server_connections(r.srv), (double)(now - r.exit_ns) / 1e9);
				break;
			}
		}
		loop_run_once(r.loop, 100);
	}

	if (r.interval_s)
		show_status(&r, 1);
	struct strbuf sb;
	sb_init(&sb);
	export_summary_table(server_agg(r.srv), loop_now_ns(), &sb);
	fputs(sb.buf ? sb.buf : "", stderr);
	if (json) {
		sb_reset(&sb);
		export_json_summary(server_agg(r.srv), loop_now_ns(), &sb);
		FILE *f = fopen(json, "w");
		if (!f || fputs(sb.buf ? sb.buf : "", f) < 0 || fclose(f)) {
			fprintf(stderr, "mfu run: cannot write %s: %s\n", json, strerror(errno));
			sb_free(&sb);
			rc = 1;
			goto out;
		}
	}
	sb_free(&sb);
	rc = exit_code(r.status);
out:
	if (tick)
		loop_timer_del(tick);
	server_free(r.srv);
	if (sig_io)
		loop_io_del(sig_io);
	if (sfd >= 0)
		close(sfd);
	loop_free(r.loop);
	rmdir(dir);
	return rc;
}
