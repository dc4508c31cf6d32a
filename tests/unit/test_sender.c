/* SPDX-License-Identifier: MIT */
/*
 * The sender against an absent, a stalled, a live and a restarting
 * collector: puts never block and drops are counted, shutdown is bounded
 * even when nobody reads, records arrive exactly when someone does, and a
 * new connection starts with its own hello.  With acknowledgements, a
 * connection cut mid-stream loses and doubles nothing; with a spool, an
 * absent collector loses nothing, and a spool that cannot be written or is
 * full degrades to drop-and-count.  alarm() turns a hang into a failure; no
 * assertion depends on how fast this machine is.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "agg.h"
#include "ingest.h"
#include "net.h"
#include "sender.h"

/* Now, since the sender stamps status and goodbye with the real clock and
 * the collector drops records far from their source's hello. */
static uint64_t T0;

static char dir[64], sock_path[100], target[160];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mfu-sender-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/s.sock", dir);
	snprintf(target, sizeof(target), "unix:%s", sock_path);
	signal(SIGPIPE, SIG_IGN);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	T0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	alarm(60); /* a hang fails the test instead of the CI run */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	alarm(0);
	unlink(sock_path);
	/* spool files a failed test left behind */
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[400];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

static int listen_unix(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static void hello(struct mfu_rec_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->time_ns = T0;
	h->pid = 4321;
	h->rank = 0;
	h->local_rank = 0;
	h->host = "testhost";
	h->host_len = 8;
}

static struct mfu_record kernel(uint64_t i)
{
	struct mfu_record r = {.type = MFU_REC_KERNEL};
	r.u.kernel.start_ns = T0 + i * 3000;
	r.u.kernel.end_ns = T0 + i * 3000 + 2000;
	r.u.kernel.corr = i;
	r.u.kernel.flags = MFU_CLASS_BF16;
	r.u.kernel.flops = 1000 + i % 7;
	return r;
}

static void test_absent_collector_never_blocks_and_counts_drops(void **state)
{
	struct mfu_sender_config cfg = {.target = "unix:/nonexistent-dir/mfud.sock", .buffer_bytes = 2 << 20};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct mfu_sender_stats st;
	enum { N = 1000000 };
	(void)state;

	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	unsigned refused = 0;
	for (uint64_t i = 0; i < N; i++) {
		struct mfu_record r = kernel(i);
		r.u.kernel.flops = i * 2654435761u; /* ~10 MB compressed: 5x the budget */
		int rc = mfu_sender_put(s, &r);
		assert_true(rc == 0 || rc == -ENOBUFS);
		refused += rc == -ENOBUFS;
	}
	mfu_sender_flush(s, 5000); /* let the thread catch up; nobody to wait for */
	mfu_sender_stats(s, &st);
	/* with nobody to send to, the oldest frames go first (counted as
	 * disconnected); puts are refused (buffer full) only if that lags */
	uint64_t dropped = st.dropped[MFU_DROP_BUFFER_FULL] + st.dropped[MFU_DROP_DISCONNECTED];
	assert_true(dropped > 0);
	assert_int_equal(st.dropped[MFU_DROP_BUFFER_FULL], refused);
	assert_int_equal(st.records + refused, N);
	mfu_sender_free(s, 0, 200);
}

static void test_stalled_collector_does_not_hold_exit(void **state)
{
	struct mfu_sender_config cfg = {.target = target, .buffer_bytes = 8 << 20};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	(void)state;

	int lfd = listen_unix(); /* connections queue in the backlog; nobody reads */
	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < 400000; i++) {
		struct mfu_record r = kernel(i);
		r.u.kernel.flops = i * 2654435761u; /* less compressible: fills the socket */
		int rc = mfu_sender_put(s, &r);
		assert_true(rc == 0 || rc == -ENOBUFS);
	}
	mfu_sender_free(s, 0, 300); /* must return; alarm() fails the test if not */
	close(lfd);
}

struct reader {
	int lfd;
	int connections; /* to accept, in turn */
	size_t close_after; /* first connection: close after this many bytes (0: read to EOF) */
	struct agg *agg;
	struct mfu_codec *codec;
	int ack; /* acknowledge like mfud */
	int rc[2];
	uint64_t kernels[2];
	uint64_t gemm_calls[2], gemm_flops[2];
};

static void send_ack(int fd, struct ingest *in)
{
	int have;
	uint32_t next;
	uint8_t a[MFU_ACK_LEN];
	if (ingest_ack(in, &have, &next))
		return;
	mfu_ack_encode(a, have, next);
	if (write(fd, a, sizeof(a)) != (ssize_t)sizeof(a)) {
		/* the sender went away; its reconnect tells */
	}
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[65536];

	for (int c = 0; c < r->connections; c++) {
		int fd = accept(r->lfd, NULL, NULL);
		struct ingest *in;
		size_t got = 0;
		if (fd < 0 || ingest_new(r->agg, r->codec, "test", &in)) {
			r->rc[c] = -1;
			return NULL;
		}
		for (;;) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			got += (size_t)n;
			if (c == 0 && r->close_after && got >= r->close_after)
				break;
			int rc = ingest_feed(in, buf, (size_t)n, 0);
			if (rc) {
				r->rc[c] = rc;
				break;
			}
			if (r->ack)
				send_ack(fd, in);
		}
		struct agg_source *src = ingest_source(in);
		if (src && src->ndev) {
			r->kernels[c] = src->dev[0]->tot.kernels;
			r->gemm_calls[c] = src->dev[0]->tot.gemm_calls;
			r->gemm_flops[c] = (uint64_t)src->dev[0]->tot.gemm_flops;
		}
		if (!src && !r->rc[c])
			r->rc[c] = -INGEST_E_NO_HELLO;
		ingest_free(in);
		close(fd);
	}
	return NULL;
}

/* Listens, and runs reader_main on a thread over an offline model. */
static void reader_start(struct reader *r, pthread_t *t)
{
	struct agg_config acfg = {.offline = 1};

	r->lfd = listen_unix();
	assert_int_equal(agg_new(&acfg, &r->agg), 0);
	r->codec = mfu_codec_new(1);
	assert_int_equal(pthread_create(t, NULL, reader_main, r), 0);
}

static void reader_free(struct reader *r)
{
	agg_free(r->agg);
	mfu_codec_free(r->codec);
	close(r->lfd);
}

static void test_records_arrive_exactly_through_a_live_collector(void **state)
{
	struct mfu_sender_config cfg = {.target = target};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct mfu_sender_stats st;
	struct reader r = {.connections = 1};
	pthread_t t;
	enum { N = 100000 };
	(void)state;

	reader_start(&r, &t);
	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < N; i++) {
		struct mfu_record k = kernel(i);
		assert_int_equal(mfu_sender_put(s, &k), 0);
		if (i % 5000 == 0) /* a lossless producer lets the sender catch up */
			assert_int_equal(mfu_sender_flush(s, 10000), 0);
	}
	assert_int_equal(mfu_sender_flush(s, 10000), 0);
	mfu_sender_stats(s, &st);
	mfu_sender_free(s, 0, 5000);
	pthread_join(t, NULL);
	assert_int_equal(r.rc[0], 0);
	assert_int_equal(r.kernels[0], N);
	assert_int_equal(st.dropped[MFU_DROP_BUFFER_FULL] + st.dropped[MFU_DROP_DISCONNECTED], 0);
	assert_int_equal(r.agg->nsrc, 1);
	assert_int_equal(r.agg->src[0]->pid, 4321);
	assert_true(r.agg->src[0]->goodbye_ns >= T0); /* the goodbye made it too */
	reader_free(&r);
}

/* The shim's converter stands in: a tick is a microsecond after T0. */
static uint64_t ticks_to_ns(uint64_t ticks, void *arg)
{
	return *(const uint64_t *)arg + ticks * 1000;
}

static void put_packed(struct mfu_sender *s, uint64_t i)
{
	struct mfu_sender_gemm *p;
	/* a lossless producer: a full ring waits for the sender */
	while (!(p = mfu_sender_gemm_reserve(s)))
		assert_int_equal(mfu_sender_flush(s, 10000), 0);
	*p = (struct mfu_sender_gemm){
		/* every tenth stamped in ns already */
		.when = i % 10 ? i : T0 + i * 1000,
		.clock = i % 10 ? MFU_SENDER_GEMM_TICKS : 0,
		.call = i + 1,
		.flops = 2 * i + 1,
		.m = 1, .n = 1, .k = 1, .batch = 1,
		.a_type = 1, .b_type = 1, .c_type = 1, .compute_type = 0,
		.api = 1,
		.flags = MFU_CLASS_FP32,
		.tid = 7,
	};
	mfu_sender_gemm_commit(s);
}

static void test_packed_gemm_records_arrive_widened_with_their_ticks_converted(void **state)
{
	uint64_t t0 = T0;
	struct mfu_sender_config cfg = {.target = target, .ticks_ns = ticks_to_ns, .ticks_arg = &t0};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct mfu_sender_stats st;
	struct reader r = {.connections = 1};
	pthread_t t;
	enum { N = 60000 }; /* more than the gemm ring holds */
	uint64_t flops = 0;
	(void)state;

	reader_start(&r, &t);
	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < N; i++) {
		put_packed(s, i);
		flops += 2 * i + 1;
	}
	assert_int_equal(mfu_sender_flush(s, 10000), 0);
	mfu_sender_stats(s, &st);
	mfu_sender_free(s, 0, 5000);
	pthread_join(t, NULL);
	assert_int_equal(r.rc[0], 0);
	assert_int_equal(st.records, N);
	assert_int_equal(st.dropped[MFU_DROP_ENCODE], 0);
	/* unconverted ticks (microseconds after 1970) would be implausibly far
	 * from the hello, and not counted */
	assert_int_equal(r.gemm_calls[0], N);
	assert_int_equal(r.gemm_flops[0], flops);
	reader_free(&r);
}

static void test_ticks_without_a_converter_are_dropped_and_counted(void **state)
{
	struct mfu_sender_config cfg = {.target = "unix:/nonexistent-dir/mfud.sock"};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct mfu_sender_stats st;
	(void)state;

	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < 20; i++)
		put_packed(s, i);
	mfu_sender_flush(s, 2000); /* nobody to send to: it only drains the ring */
	mfu_sender_stats(s, &st);
	assert_int_equal(st.dropped[MFU_DROP_ENCODE], 18); /* the two in ns are fine */
	mfu_sender_free(s, 0, 200);
}

static void test_a_new_connection_starts_with_its_own_hello(void **state)
{
	struct mfu_sender_config cfg = {.target = target};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct reader r = {.connections = 2, .close_after = 200000};
	pthread_t t;
	enum { N = 400000 };
	(void)state;

	reader_start(&r, &t);
	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < N; i++) {
		struct mfu_record k = kernel(i);
		k.u.kernel.flops = i * 2654435761u;
		mfu_sender_put(s, &k);
		if (i % 5000 == 0)
			mfu_sender_flush(s, 10000);
	}
	mfu_sender_free(s, 0, 5000);
	pthread_join(t, NULL);
	/* the second connection parsed cleanly from its first byte: a hello */
	assert_int_equal(r.rc[1], 0);
	/* kernels[1] is the source's running total over both connections */
	assert_true(r.kernels[1] > r.kernels[0]);
	assert_true(r.kernels[1] <= N);
	/* both connections belong to one source: the hello re-attached it */
	assert_int_equal(r.agg->nsrc, 1);
	reader_free(&r);
}

static void test_a_cut_connection_loses_and_doubles_nothing_with_acks(void **state)
{
	struct mfu_sender_config cfg = {.target = target};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct mfu_sender_stats st;
	struct reader r = {.connections = 2, .close_after = 200000, .ack = 1};
	pthread_t t;
	enum { N = 400000 };
	(void)state;

	reader_start(&r, &t);
	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < N; i++) {
		struct mfu_record k = kernel(i);
		k.u.kernel.flops = i * 2654435761u;
		assert_int_equal(mfu_sender_put(s, &k), 0);
		if (i % 5000 == 0)
			mfu_sender_flush(s, 10000);
	}
	assert_int_equal(mfu_sender_flush(s, 20000), 0);
	mfu_sender_stats(s, &st);
	mfu_sender_free(s, 0, 5000);
	pthread_join(t, NULL);
	assert_int_equal(r.rc[1], 0);
	assert_true(r.kernels[0] < N); /* the cut came mid-stream */
	assert_true(st.replays >= 1);
	/* what the first connection took but did not acknowledge came again,
	 * and what it had applied was skipped, not counted twice */
	assert_int_equal(r.kernels[1], N);
	assert_int_equal(r.agg->nsrc, 1);
	assert_int_equal(r.agg->src[0]->seq_gaps, 0);
	for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
		assert_int_equal(st.dropped[i], 0);
	reader_free(&r);
}

/* Files in dir other than the socket. */
static int spool_files(mode_t *mode)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d))) {
		char p[400];
		struct stat sb;
		if (e->d_name[0] == '.' || !strcmp(e->d_name, "s.sock"))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (!stat(p, &sb) && mode)
			*mode = sb.st_mode & 07777;
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

static void test_spool_keeps_everything_while_the_collector_is_away(void **state)
{
	struct mfu_sender_config cfg = {.target = target, .buffer_bytes = 2 << 20, .spool_dir = dir};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct mfu_sender_stats st;
	struct reader r = {.connections = 1, .ack = 1};
	pthread_t t;
	enum { N = 300000 };
	(void)state;

	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	for (uint64_t i = 0; i < N; i++) {
		struct mfu_record k = kernel(i);
		k.u.kernel.flops = i * 2654435761u; /* ~3 MB compressed: over the budget */
		assert_int_equal(mfu_sender_put(s, &k), 0);
		if (i % 5000 == 0) /* lets the thread spool as it goes; returns at once */
			mfu_sender_flush(s, 10000);
	}
	mfu_sender_flush(s, 10000);
	mfu_sender_stats(s, &st);
	assert_true(st.spooled > 0);
	mode_t mode = 0;
	assert_int_equal(spool_files(&mode), 1);
	assert_int_equal(mode, 0600);

	/* the collector comes; everything goes to it, oldest first */
	reader_start(&r, &t);
	do {
		usleep(20000);
		mfu_sender_stats(s, &st);
	} while (!st.connects);
	assert_int_equal(mfu_sender_flush(s, 30000), 0);
	assert_int_equal(spool_files(NULL), 0); /* replayed, then deleted */
	mfu_sender_stats(s, &st);
	mfu_sender_free(s, 0, 5000);
	pthread_join(t, NULL);
	assert_int_equal(r.rc[0], 0);
	assert_int_equal(r.kernels[0], N);
	assert_int_equal(r.agg->src[0]->seq_gaps, 0);
	for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
		assert_int_equal(st.dropped[i], 0);
	reader_free(&r);
}

static void test_full_or_broken_spool_degrades_to_drop_and_count(void **state)
{
	char notadir[200];
	enum { N = 300000 };
	(void)state;

	for (int broken = 0; broken < 2; broken++) {
		struct mfu_sender_config cfg = {.target = "unix:/nonexistent-dir/mfud.sock", .buffer_bytes = 2 << 20};
		struct mfu_rec_hello h;
		struct mfu_sender *s;
		struct mfu_sender_stats st;
		unsigned refused = 0;
		if (broken) {
			/* a "directory" that is a file: the spool cannot be created */
			snprintf(notadir, sizeof(notadir), "%s/file", dir);
			FILE *f = fopen(notadir, "w");
			assert_non_null(f);
			fclose(f);
			cfg.spool_dir = notadir;
		} else {
			cfg.spool_dir = dir;
			cfg.spool_bytes = 256 << 10;
		}
		hello(&h);
		assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
		for (uint64_t i = 0; i < N; i++) {
			struct mfu_record k = kernel(i);
			k.u.kernel.flops = i * 2654435761u;
			int rc = mfu_sender_put(s, &k);
			assert_true(rc == 0 || rc == -ENOBUFS);
			refused += rc == -ENOBUFS;
			if (i % 5000 == 0)
				mfu_sender_flush(s, 10000);
		}
		mfu_sender_flush(s, 10000);
		mfu_sender_shutdown(s, 0, 200);
		mfu_sender_stats(s, &st);
		uint64_t lost = 0;
		for (unsigned i = 0; i < MFU_DROP__COUNT; i++)
			lost += st.dropped[i];
		if (broken) {
			assert_int_equal(st.spooled, 0);
			assert_int_equal(st.dropped[MFU_DROP_SPOOL_FULL], 0);
			assert_true(st.dropped[MFU_DROP_DISCONNECTED] > 0);
			unlink(notadir);
		} else {
			assert_true(st.spooled > 0);
			assert_true(st.dropped[MFU_DROP_SPOOL_FULL] > 0);
		}
		assert_int_equal(st.dropped[MFU_DROP_BUFFER_FULL], refused);
		/* nobody received anything: every record is counted lost, once:
		 * the puts, the final status and goodbye, and the few status
		 * records the thread adds once a second while it loses some */
		assert_int_equal(st.records + refused, N + 2);
		assert_true(lost >= N + 2 && lost <= N + 2 + 30);
		mfu_sender_free(s, 0, 200);
		assert_int_equal(spool_files(NULL), 0); /* no spool file left behind */
	}
}

/* Reads from fd into in until the source has `want` kernels or 10 s pass. */
static uint64_t read_until_kernels(int fd, struct ingest *in, uint64_t want)
{
	uint8_t buf[65536];
	for (int i = 0; i < 100; i++) {
		struct agg_source *src = ingest_source(in);
		if (src && src->ndev && src->dev[0]->tot.kernels >= want)
			return src->dev[0]->tot.kernels;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		assert_int_equal(ingest_feed(in, buf, (size_t)n, 0), 0);
	}
	struct agg_source *src = ingest_source(in);
	return src && src->ndev ? src->dev[0]->tot.kernels : 0;
}

/* A collector closes an idle producer's connection (mfud --idle-timeout).
 * Over TCP the producer's next send() would still succeed and its frame
 * vanish; the sender must see the close and send on a new connection. */
static void test_frame_after_the_collector_closed_an_idle_tcp_connection_is_not_lost(void **state)
{
	struct mfu_sender_config cfg = {0};
	struct mfu_rec_hello h;
	struct mfu_sender *s;
	struct agg_config acfg = {.offline = 1};
	struct agg *agg;
	struct mfu_codec *codec = mfu_codec_new(1);
	struct ingest *in1, *in2;
	char tcp[64];
	uint16_t port;
	int lfd, c1, c2;
	(void)state;

	assert_int_equal(net_listen_tcp("127.0.0.1", 0, &lfd, &port), 0);
	fcntl(lfd, F_SETFL, 0);
	snprintf(tcp, sizeof(tcp), "tcp:127.0.0.1:%u", port);
	cfg.target = tcp;
	assert_int_equal(agg_new(&acfg, &agg), 0);
	hello(&h);
	assert_int_equal(mfu_sender_new(&cfg, &h, &s), 0);
	struct mfu_record k = kernel(0);
	assert_int_equal(mfu_sender_put(s, &k), 0);
	assert_int_equal(mfu_sender_flush(s, 10000), 0);
	c1 = accept(lfd, NULL, NULL);
	assert_true(c1 >= 0);
	assert_int_equal(ingest_new(agg, codec, "c1", &in1), 0);
	assert_int_equal(read_until_kernels(c1, in1, 1), 1);
	ingest_free(in1);
	close(c1); /* the idle timeout */
	usleep(200000); /* the FIN reaches the producer */
	k = kernel(1);
	assert_int_equal(mfu_sender_put(s, &k), 0);
	mfu_sender_flush(s, 10000);
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1); /* it reconnected */
	c2 = accept(lfd, NULL, NULL);
	assert_true(c2 >= 0);
	assert_int_equal(ingest_new(agg, codec, "c2", &in2), 0);
	assert_int_equal(read_until_kernels(c2, in2, 2), 2); /* the kernel after the close arrived */
	assert_int_equal(agg->nsrc, 1);
	mfu_sender_free(s, 0, 2000);
	ingest_free(in2);
	close(c2);
	close(lfd);
	agg_free(agg);
	mfu_codec_free(codec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_absent_collector_never_blocks_and_counts_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_collector_does_not_hold_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_arrive_exactly_through_a_live_collector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_gemm_records_arrive_widened_with_their_ticks_converted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ticks_without_a_converter_are_dropped_and_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_new_connection_starts_with_its_own_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_cut_connection_loses_and_doubles_nothing_with_acks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_keeps_everything_while_the_collector_is_away, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_or_broken_spool_degrades_to_drop_and_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frame_after_the_collector_closed_an_idle_tcp_connection_is_not_lost,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
