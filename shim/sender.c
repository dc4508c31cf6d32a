/* SPDX-License-Identifier: MIT */
/*
 * Sender: callers encode records into the open raw buffer under a mutex held
 * only for the copy; full buffers move to a queue that the sender thread
 * compresses and writes.  Compression and every socket call happen on the
 * sender thread, so a slow or absent collector costs callers nothing but
 * dropped records once the byte budget is spent.
 *
 * Every connection starts with a preamble frame (hello, devices, interned
 * strings, status) so the collector can read whatever follows even when
 * earlier frames were dropped.
 *
 * Data frames are numbered when sealed and keep their number for good.  A
 * collector that acknowledges (doc/wire-format.md, "Acknowledgements") gets
 * every frame it has not acknowledged again after a reconnect; sent frames
 * wait for that in memory.  With a spool directory, the oldest frames that
 * do not fit the memory budget go to a spool file instead of being dropped,
 * and are sent again, oldest first, before anything newer.  Only this
 * thread touches the spool file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "sender.h"

struct rawbuf {
	struct rawbuf *next;
	uint32_t records;
	size_t len;
	uint8_t data[];
};

struct frame {
	struct frame *next;
	int preamble; /* belongs to one connection: dropped when it fails */
	uint32_t records;
	uint32_t seq; /* data frames: given when queued, kept through replays */
	size_t len, off;
	uint8_t data[];
};

/* One calling thread's records, single producer (that thread), single
 * consumer (the sender thread): a put is a struct copy and a release store,
 * with no lock and no cache line shared with other callers. */
#define RING_SIZE 4096u

/* Beside it, the thread's packed gemm records, a cache line each: the one
 * record a GEMM call makes then costs one line, not three.  The producer
 * keeps its own copy of the consumer's index and reads the consumer's line
 * only every quarter ring, or when the ring looks full. */
#define GEMM_RING_SIZE 16384u

struct gemm_ring {
	struct {
		_Atomic uint32_t head; /* records ever put */
		uint32_t tail_seen;    /* tail, as this thread last read it */
		uint32_t check_at;     /* head at which to read it again */
	} __attribute__((aligned(64))) p;
	_Atomic uint32_t tail __attribute__((aligned(64))); /* consumer: records ever taken */
	struct mfu_sender_gemm slot[GEMM_RING_SIZE] __attribute__((aligned(64)));
};

struct ring {
	struct ring *next;      /* in the sender's list, under its lock */
	void *mem;              /* what calloc returned: the ring is aligned in it */
	_Atomic uint32_t head;  /* producer: records ever put */
	_Atomic uint32_t tail;  /* consumer: records ever taken */
	_Atomic int dead;       /* the thread exited; freed once drained */
	struct mfu_record slot[RING_SIZE];
	struct gemm_ring g;
};

static uint64_t ring_records(struct ring *q)
{
	return (uint64_t)atomic_load_explicit(&q->head, memory_order_acquire) +
	       atomic_load_explicit(&q->g.p.head, memory_order_acquire);
}

static uint64_t ring_unsent(struct ring *q)
{
	return (uint64_t)(atomic_load_explicit(&q->head, memory_order_acquire) - atomic_load(&q->tail)) +
	       (atomic_load_explicit(&q->g.p.head, memory_order_acquire) - atomic_load(&q->g.tail));
}

struct mfu_sender {
	/* Unique per sender: a new one at a freed one's address must not reuse
	 * a thread's old ring.  Every put reads it: it shares its cache line
	 * with nothing the sender thread writes. */
	uint64_t id;
	char target[4200];
	size_t budget, frame_raw;
	uint32_t flush_ms;
	uint64_t (*clock_ns)(void *arg);
	void *clock_arg;
	uint64_t (*ticks_ns)(uint64_t ticks, void *arg);
	void *ticks_arg;

	pthread_mutex_t mu;
	pthread_cond_t wake, drained;
	struct mfu_enc enc; /* open raw buffer */
	struct rawbuf *open;
	uint64_t open_since_ns;
	struct rawbuf *raw_head, **raw_tail; /* sealed, not yet compressed */
	size_t held;                         /* bytes in rawbufs and frames */
	int stop, flush_req, shut;
	int connect_now; /* at shutdown: one more connect, backoff or not */
	uint64_t stop_deadline_ns; /* mono: give up on undelivered frames then */
	uint64_t flush_gen, done_gen;
	uint64_t status_flags;
	struct mfu_sender_stats st;

	struct ring *rings;
	uint64_t rings_retired; /* records put through rings since freed */

	/* preamble: hello + devices + strings, re-encoded on every connection */
	uint8_t *pre;
	size_t pre_len, pre_cap;
	uint32_t pre_records;

	/* sender thread only */
	pthread_t thread;
	int thread_ok;
	struct mfu_codec *codec;
	struct frame *q_head, **q_tail;
	int fd;
	uint64_t next_connect_ns, backoff_ns;
	uint32_t seq;
	uint64_t last_status_ns;
	uint64_t sent_dropped[MFU_DROP__COUNT];
	uint64_t sent_status_flags;
	struct rawbuf *tbuf; /* the thread's own raw buffer for ring records */
	struct mfu_enc tenc;
	uint64_t tbuf_since_ns;

	/* Acknowledgements: sent frames wait in u_* until acknowledged, once the
	 * collector has shown it acknowledges at all (acking, sticky). */
	int acking, ack_ignored;
	uint8_t abuf[MFU_ACK_LEN];
	size_t alen;
	struct frame *u_head, **u_tail;

	/* Spool file: entries [sp_ack, sp_send) were sent and await an ack,
	 * [sp_send, sp_end) wait to be sent; every spooled frame is older than
	 * every frame in memory. */
	char sp_path[4200];
	int sp_fd, sp_broken;
	uint64_t sp_max, sp_ack, sp_send, sp_end;
	struct frame *sp_cur; /* the spooled frame being sent */
};

/* Spool entry: records, seq, frame length (u32 each, host order: the file
 * never leaves this process), then the frame. */
#define SPOOL_ENTRY 12u

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void *unused)
{
	(void)unused;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A raw buffer holds a frame's worth plus one record of any size, so a put
 * that starts below frame_raw always fits. */
static size_t rawbuf_cap(const struct mfu_sender *s)
{
	return s->frame_raw + MFU_RECORD_FIXED_MAX + 4 * (MFU_STRING_MAX + 8);
}

static struct rawbuf *rawbuf_new(size_t cap)
{
	struct rawbuf *b = malloc(sizeof(*b) + cap);
	if (b) {
		b->next = NULL;
		b->records = 0;
		b->len = 0;
	}
	return b;
}

/* Appends an encoded record to the preamble; caller holds mu. */
static int preamble_put(struct mfu_sender *s, const struct mfu_record *r)
{
	struct mfu_enc e;
	size_t need = MFU_RECORD_FIXED_MAX + 4 * (MFU_STRING_MAX + 8);

	if (s->pre_cap - s->pre_len < need) {
		size_t cap = s->pre_cap ? s->pre_cap * 2 : 64 * 1024;
		while (cap - s->pre_len < need)
			cap *= 2;
		if (cap > MFU_FRAME_RAW_MAX)
			return -ENOBUFS; /* more names than one frame holds: stop keeping them */
		uint8_t *p = realloc(s->pre, cap);
		if (!p)
			return -ENOMEM;
		s->pre = p;
		s->pre_cap = cap;
	}
	mfu_enc_init(&e, s->pre + s->pre_len, s->pre_cap - s->pre_len);
	int rc = mfu_enc_put(&e, r);
	if (rc)
		return rc == -MFU_WIRE_E_NOMEM ? -ENOBUFS : -EINVAL;
	s->pre_len += e.len;
	s->pre_records++;
	return 0;
}

/* Moves the open raw buffer to the queue; caller holds mu. */
static void seal_open(struct mfu_sender *s)
{
	if (!s->open || !s->enc.len)
		return;
	s->open->len = s->enc.len;
	s->open->records = s->enc.records;
	*s->raw_tail = s->open;
	s->raw_tail = &s->open->next;
	s->open = NULL;
	pthread_cond_signal(&s->wake);
}

static int open_buffer(struct mfu_sender *s)
{
	size_t cap = rawbuf_cap(s);

	if (s->held + cap > s->budget)
		return -ENOBUFS;
	s->open = rawbuf_new(cap);
	if (!s->open)
		return -ENOBUFS;
	s->held += cap;
	mfu_enc_init(&s->enc, s->open->data, cap);
	s->open_since_ns = mono_ns();
	return 0;
}

static int is_fixed(uint32_t type)
{
	return type == MFU_REC_KERNEL || type == MFU_REC_GEMM || type == MFU_REC_API || type == MFU_REC_COPY ||
	       type == MFU_REC_STEP || type == MFU_REC_STATUS || type == MFU_REC_GOODBYE;
}

#define TLS static __thread __attribute__((tls_model("initial-exec")))
TLS struct ring *my_ring;
TLS uint64_t my_sender;
static _Atomic uint64_t next_sender_id = 1;
static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;

static void ring_orphan(void *arg)
{
	atomic_store_explicit(&((struct ring *)arg)->dead, 1, memory_order_release);
}

static void ring_key_make(void)
{
	pthread_key_create(&ring_key, ring_orphan);
}

/* The calling thread's ring for s, made on its first put; NULL if memory
 * is short (the caller then takes the locked path). */
static struct ring *ring_attach(struct mfu_sender *s)
{
	/* calloc: a large block comes zeroed from mmap, and pages the thread
	 * never reaches are never touched */
	void *mem = calloc(1, sizeof(struct ring) + 64);
	struct ring *q = mem ? (struct ring *)(((uintptr_t)mem + 63) & ~(uintptr_t)63) : NULL;

	my_sender = s->id;
	my_ring = q;
	if (!q)
		return NULL;
	q->mem = mem;
	q->g.p.check_at = GEMM_RING_SIZE / 4;
	pthread_once(&ring_key_once, ring_key_make);
	pthread_setspecific(ring_key, q);
	pthread_mutex_lock(&s->mu);
	q->next = s->rings;
	s->rings = q;
	pthread_mutex_unlock(&s->mu);
	return q;
}

struct mfu_sender_gemm *mfu_sender_gemm_reserve(struct mfu_sender *s)
{
	struct ring *q = my_ring;
	if (__builtin_expect(my_sender != s->id, 0))
		q = ring_attach(s);
	if (!q)
		return NULL;
	struct gemm_ring *g = &q->g;
	uint32_t h = atomic_load_explicit(&g->p.head, memory_order_relaxed);
	if (__builtin_expect(h - g->p.tail_seen >= GEMM_RING_SIZE, 0)) {
		g->p.tail_seen = atomic_load_explicit(&g->tail, memory_order_acquire);
		if (h - g->p.tail_seen >= GEMM_RING_SIZE)
			return NULL;
	}
	return &g->slot[h & (GEMM_RING_SIZE - 1)];
}

void mfu_sender_gemm_commit(struct mfu_sender *s)
{
	struct gemm_ring *g = &my_ring->g;
	uint32_t h = atomic_load_explicit(&g->p.head, memory_order_relaxed) + 1;
	atomic_store_explicit(&g->p.head, h, memory_order_release);
	if (__builtin_expect(h == g->p.check_at, 0)) {
		/* a quarter ring since the last look: wake the sender thread if
		 * it has not taken them meanwhile (a hint; it also polls) */
		uint32_t t = atomic_load_explicit(&g->tail, memory_order_acquire);
		g->p.tail_seen = t;
		if (h - t >= GEMM_RING_SIZE / 4) {
			pthread_cond_signal(&s->wake);
			g->p.check_at = h + GEMM_RING_SIZE / 4;
		} else {
			g->p.check_at = t + GEMM_RING_SIZE / 4;
		}
	}
}

int mfu_sender_put(struct mfu_sender *s, const struct mfu_record *r)
{
	int rc = 0;

	if (is_fixed(r->type)) {
		struct ring *q = my_ring;
		if (__builtin_expect(my_sender != s->id, 0))
			q = ring_attach(s);
		if (q) {
			uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
			uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
			if (h - t < RING_SIZE) {
				q->slot[h & (RING_SIZE - 1)] = *r;
				atomic_store_explicit(&q->head, h + 1, memory_order_release);
				if (h - t == RING_SIZE / 4)
					pthread_cond_signal(&s->wake); /* a hint; the thread also polls */
				return 0;
			}
		}
	}
	pthread_mutex_lock(&s->mu);
	/* Text records, and a full ring (a burst faster than the sender thread
	 * drains): encoded here, into the byte budget.  Still no I/O, and
	 * nothing is dropped until the budget itself is spent. */
	if (r->type == MFU_REC_DEVICE || r->type == MFU_REC_STRING) {
		rc = preamble_put(s, r);
		if (rc == -EINVAL)
			goto out;
	}
	if (!s->open && (rc = open_buffer(s))) {
		s->st.dropped[MFU_DROP_BUFFER_FULL]++;
		goto out;
	}
	rc = mfu_enc_put(&s->enc, r);
	if (rc == -MFU_WIRE_E_NOMEM) { /* cannot happen below frame_raw; be safe */
		seal_open(s);
		if ((rc = open_buffer(s)) == 0)
			rc = mfu_enc_put(&s->enc, r);
	}
	if (rc) {
		s->st.dropped[rc == -MFU_WIRE_E_FIELD ? MFU_DROP_ENCODE : MFU_DROP_BUFFER_FULL]++;
		rc = rc == -MFU_WIRE_E_FIELD ? -EINVAL : -ENOBUFS;
		goto out;
	}
	s->st.records++;
	if (s->enc.len >= s->frame_raw)
		seal_open(s);
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void mfu_sender_count_drops(struct mfu_sender *s, enum mfu_drop_reason why, uint64_t n)
{
	pthread_mutex_lock(&s->mu);
	s->st.dropped[why] += n;
	pthread_mutex_unlock(&s->mu);
}

void mfu_sender_set_status(struct mfu_sender *s, uint64_t flags)
{
	pthread_mutex_lock(&s->mu);
	s->status_flags = flags;
	pthread_mutex_unlock(&s->mu);
}

void mfu_sender_stats(struct mfu_sender *s, struct mfu_sender_stats *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	out->records += s->rings_retired;
	for (struct ring *q = s->rings; q; q = q->next)
		out->records += ring_records(q);
	pthread_mutex_unlock(&s->mu);
}

/* ---- sender thread ---- */

static struct frame *compress(struct mfu_sender *s, const uint8_t *raw, size_t len, uint32_t records)
{
	size_t cap = mfu_frame_bound(len);
	struct frame *f = malloc(sizeof(*f) + cap);

	if (!f)
		return NULL;
	if (mfu_frame_seal(s->codec, raw, len, 0, f->data, cap, &f->len)) {
		free(f);
		return NULL;
	}
	f->next = NULL;
	f->preamble = 0;
	f->off = 0;
	f->records = records;
	return f;
}

static void queue_frame(struct mfu_sender *s, struct frame *f, int front)
{
	if (front) {
		f->next = s->q_head;
		if (!s->q_head)
			s->q_tail = &f->next;
		s->q_head = f;
	} else {
		f->seq = s->seq++;
		mfu_frame_set_seq(f->data, f->len, f->seq);
		*s->q_tail = f;
		s->q_tail = &f->next;
	}
}

/* Frees a frame that left memory; counts its records as lost for why
 * (MFU_DROP__COUNT: not lost, e.g. sent). */
static void frame_release(struct mfu_sender *s, struct frame *f, unsigned why)
{
	pthread_mutex_lock(&s->mu);
	s->held -= f->len;
	if (why < MFU_DROP__COUNT)
		s->st.dropped[why] += f->records;
	pthread_mutex_unlock(&s->mu);
	free(f);
}

static void status_record(struct mfu_sender *s, struct mfu_record *r)
{
	memset(r, 0, sizeof(*r));
	r->type = MFU_REC_STATUS;
	r->u.status.time_ns = s->clock_ns(s->clock_arg);
	r->u.status.flags = s->status_flags;
	memcpy(r->u.status.dropped, s->st.dropped, sizeof(r->u.status.dropped));
}

/* ---- spool file (sender thread only) ---- */

static void spool_close(struct mfu_sender *s)
{
	if (s->sp_fd >= 0) {
		close(s->sp_fd);
		unlink(s->sp_path);
	}
	s->sp_fd = -1;
	s->sp_ack = s->sp_send = s->sp_end = 0;
	free(s->sp_cur);
	s->sp_cur = NULL;
}

/* A disk error turns the spool off for good: one line, then drop-and-count. */
static void spool_fail(struct mfu_sender *s, const char *what, int err)
{
	if (!s->sp_broken)
		fprintf(stderr, "mfushim: spool %s: %s: %s; dropping records instead of spooling them\n", s->sp_path,
			what, strerror(err));
	s->sp_broken = 1;
}

static int spool_usable(const struct mfu_sender *s)
{
	return s->sp_path[0] && !s->sp_broken;
}

static int spool_entry(struct mfu_sender *s, uint64_t off, uint32_t *records, uint32_t *seq, uint32_t *len)
{
	uint32_t e[3];

	if (pread(s->sp_fd, e, sizeof(e), (off_t)off) != (ssize_t)sizeof(e))
		return -EIO;
	*records = e[0];
	*seq = e[1];
	*len = e[2];
	return 0;
}

/* Appends f (sent: already sent on this connection).  Returns 0, -EFBIG when
 * the spool is at its bound, or another -errno when it cannot be used. */
static int spool_append(struct mfu_sender *s, const struct frame *f, int sent)
{
	uint32_t e[3] = {f->records, f->seq, (uint32_t)f->len};

	if (!spool_usable(s))
		return -ENOENT;
	if (s->sp_end + SPOOL_ENTRY + f->len > s->sp_max)
		return -EFBIG;
	if (s->sp_fd < 0) {
		s->sp_fd = open(s->sp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (s->sp_fd < 0) {
			spool_fail(s, "cannot create", errno);
			return -EIO;
		}
	}
	struct iovec iov[2] = {{e, sizeof(e)}, {(void *)f->data, f->len}};
	ssize_t n = pwritev(s->sp_fd, iov, 2, (off_t)s->sp_end);
	if (n != (ssize_t)(sizeof(e) + f->len)) {
		spool_fail(s, "cannot write", n < 0 ? errno : ENOSPC);
		if (ftruncate(s->sp_fd, (off_t)s->sp_end)) {
			/* the entry past sp_end is never read */
		}
		return -EIO;
	}
	int in_order = s->sp_send == s->sp_end;
	s->sp_end += (uint64_t)n;
	if (sent && in_order)
		s->sp_send = s->sp_end;
	pthread_mutex_lock(&s->mu);
	s->st.spooled++;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* Reads the next unsent spooled frame into sp_cur.  A read error loses the
 * spool (its frames show up as a sequence gap). */
static int spool_load(struct mfu_sender *s)
{
	uint32_t records, seq, len;
	struct frame *f = NULL;

	if (spool_entry(s, s->sp_send, &records, &seq, &len) || len > MFU_FRAME_PAYLOAD_MAX + 64 ||
	    !(f = malloc(sizeof(*f) + len)) ||
	    pread(s->sp_fd, f->data, len, (off_t)(s->sp_send + SPOOL_ENTRY)) != (ssize_t)len) {
		free(f);
		spool_fail(s, "cannot read back", EIO);
		spool_close(s);
		return -EIO;
	}
	f->next = NULL;
	f->preamble = 0;
	f->records = records;
	f->seq = seq;
	f->len = len;
	f->off = 0;
	s->sp_cur = f;
	return 0;
}

/* Deletes the spool once nothing in it waits for a send or an ack. */
static void spool_trim(struct mfu_sender *s)
{
	if (s->sp_fd >= 0 && s->sp_ack == s->sp_end && !s->sp_cur)
		spool_close(s);
}

/* Records in the spool's unsent entries. */
static uint64_t spool_unsent_records(struct mfu_sender *s)
{
	uint64_t n = 0;
	for (uint64_t off = s->sp_send; s->sp_fd >= 0 && off < s->sp_end;) {
		uint32_t records, seq, len;
		if (spool_entry(s, off, &records, &seq, &len))
			break;
		n += records;
		off += SPOOL_ENTRY + len;
	}
	return n;
}

/* Keeps memory within half the budget: the oldest frames go to the spool,
 * or, without one, sent-but-unacknowledged frames are let go (assumed
 * delivered; the sequence shows it if not) and, while no collector is
 * connected, the oldest unsent frames are dropped and counted.  Connected
 * without a spool, unsent frames stay and callers' puts are refused once
 * the budget is spent, as before. */
static void evict(struct mfu_sender *s)
{
	for (;;) {
		pthread_mutex_lock(&s->mu);
		size_t held = s->held;
		pthread_mutex_unlock(&s->mu);
		if (held <= s->budget / 2)
			return;
		struct frame *f, **pp;
		int sent = s->u_head != NULL;
		if (sent) {
			pp = &s->u_head;
		} else {
			pp = &s->q_head;
			if (*pp && (*pp)->preamble)
				pp = &(*pp)->next;
			/* A frame half sent is on its way; one behind it must not
			 * overtake it through the spool. */
			if (!*pp || (*pp)->off || (pp != &s->q_head && s->q_head->off))
				return;
			if (s->fd >= 0 && !spool_usable(s))
				return;
		}
		f = *pp;
		int rc = spool_append(s, f, sent);
		*pp = f->next;
		if (sent && !s->u_head)
			s->u_tail = &s->u_head;
		if (!sent && !*pp)
			s->q_tail = pp;
		frame_release(s, f, !rc || sent ? MFU_DROP__COUNT : rc == -EFBIG ? MFU_DROP_SPOOL_FULL : MFU_DROP_DISCONNECTED);
	}
}

/* ---- acknowledgements ---- */

static void on_ack(struct mfu_sender *s, int have, uint32_t next)
{
	s->acking = 1;
	if (!have)
		return;
	while (s->sp_ack < s->sp_send) {
		uint32_t records, seq, len;
		if (spool_entry(s, s->sp_ack, &records, &seq, &len) || (int32_t)(seq - next) >= 0)
			break;
		s->sp_ack += SPOOL_ENTRY + len;
	}
	while (s->u_head && (int32_t)(s->u_head->seq - next) < 0) {
		struct frame *f = s->u_head;
		s->u_head = f->next;
		if (!s->u_head)
			s->u_tail = &s->u_head;
		frame_release(s, f, MFU_DROP__COUNT);
	}
	spool_trim(s);
}

/* Reads what the collector sent.  Returns 0, or -1 when the connection is
 * gone.  Bytes that are no ack (a peer of another kind) are ignored for the
 * rest of the connection. */
static int read_acks(struct mfu_sender *s)
{
	for (;;) {
		uint8_t junk[256];
		uint8_t *p = s->ack_ignored ? junk : s->abuf + s->alen;
		size_t want = s->ack_ignored ? sizeof(junk) : MFU_ACK_LEN - s->alen;
		ssize_t n = recv(s->fd, p, want, MSG_DONTWAIT);
		if (n > 0) {
			if (s->ack_ignored)
				continue;
			s->alen += (size_t)n;
			if (s->alen < MFU_ACK_LEN)
				continue;
			s->alen = 0;
			int have;
			uint32_t next;
			if (mfu_ack_parse(s->abuf, &have, &next))
				s->ack_ignored = 1;
			else
				on_ack(s, have, next);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
}

/* The collector went away.  A partly sent frame is sent whole again (the
 * collector discarded its torn bytes); an unsent preamble belongs to the
 * dead connection (the next one gets its own, and two hellos would get it
 * refused); with acknowledgements, what was sent and not acknowledged is
 * sent again, oldest first. */
static void conn_lost(struct mfu_sender *s)
{
	close(s->fd);
	s->fd = -1;
	s->alen = 0;
	s->ack_ignored = 0;
	free(s->sp_cur);
	s->sp_cur = NULL;
	if (s->q_head && s->q_head->preamble) {
		struct frame *f = s->q_head;
		s->q_head = f->next;
		if (!s->q_head)
			s->q_tail = &s->q_head;
		frame_release(s, f, MFU_DROP__COUNT);
	}
	if (s->q_head)
		s->q_head->off = 0;
	if (!s->acking)
		return;
	s->sp_send = s->sp_ack;
	if (s->u_head) {
		for (struct frame *f = s->u_head; f; f = f->next)
			f->off = 0;
		*s->u_tail = s->q_head;
		if (!s->q_head)
			s->q_tail = s->u_tail;
		s->q_head = s->u_head;
		s->u_head = NULL;
		s->u_tail = &s->u_head;
	}
	pthread_mutex_lock(&s->mu);
	s->st.replays++;
	pthread_mutex_unlock(&s->mu);
}

/* Connects and queues the preamble in front.  Returns 0 when connected. */
#define CONNECT_TIMEOUT_MS 500

static int try_connect(struct mfu_sender *s)
{
	uint64_t now = mono_ns();
	int fd, in_progress;

	if (now < s->next_connect_ns)
		return -EAGAIN;
	/* Non-blocking with a bound, so shutdown never waits on a dead host. */
	int rc = net_connect(s->target, 1, &fd, &in_progress);
	if (!rc && in_progress) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t len = sizeof(err);
		if (poll(&p, 1, CONNECT_TIMEOUT_MS) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
			close(fd);
			rc = -ECONNREFUSED;
		}
	}
	if (rc) {
		s->backoff_ns = s->backoff_ns ? s->backoff_ns * 2 : 100000000u;
		if (s->backoff_ns > 5000000000u)
			s->backoff_ns = 5000000000u;
		s->next_connect_ns = now + s->backoff_ns;
		return -ECONNREFUSED;
	}
	s->backoff_ns = 0;
	s->fd = fd;

	pthread_mutex_lock(&s->mu);
	struct mfu_record st;
	size_t len = s->pre_len;
	uint8_t *raw = malloc(len + MFU_RECORD_FIXED_MAX);
	struct frame *f = NULL;
	if (raw) {
		memcpy(raw, s->pre, len);
		status_record(s, &st);
		struct mfu_enc e;
		mfu_enc_init(&e, raw + len, MFU_RECORD_FIXED_MAX);
		if (!mfu_enc_put(&e, &st))
			len += e.len;
		s->st.connects++;
	}
	pthread_mutex_unlock(&s->mu);
	if (raw) {
		f = compress(s, raw, len, 0);
		free(raw);
	}
	if (!f) {
		close(s->fd);
		s->fd = -1;
		return -ENOMEM;
	}
	/* Outside the sequence: its number is the next data frame's, and a
	 * collector neither counts nor deduplicates it. */
	f->preamble = 1;
	f->seq = s->seq;
	mfu_frame_set_seq(f->data, f->len, f->seq);
	pthread_mutex_lock(&s->mu);
	s->held += f->len;
	pthread_mutex_unlock(&s->mu);
	queue_frame(s, f, 1);
	return 0;
}

/* What goes out next: the preamble, then spooled frames, then memory's. */
static struct frame *next_frame(struct mfu_sender *s)
{
	if (s->q_head && s->q_head->preamble)
		return s->q_head;
	if (s->sp_cur)
		return s->sp_cur;
	if (s->sp_fd >= 0 && s->sp_send < s->sp_end && !spool_load(s))
		return s->sp_cur;
	return s->q_head;
}

static void frame_sent(struct mfu_sender *s, struct frame *f)
{
	pthread_mutex_lock(&s->mu);
	s->st.frames++;
	s->st.bytes += f->len;
	pthread_mutex_unlock(&s->mu);
	if (f == s->sp_cur) {
		s->sp_cur = NULL;
		s->sp_send += SPOOL_ENTRY + f->len;
		if (!s->acking)
			s->sp_ack = s->sp_send;
		free(f);
		spool_trim(s);
		return;
	}
	s->q_head = f->next;
	if (!s->q_head)
		s->q_tail = &s->q_head;
	if (f->preamble || !s->acking) {
		frame_release(s, f, MFU_DROP__COUNT);
		return;
	}
	f->next = NULL;
	*s->u_tail = f;
	s->u_tail = &f->next;
}

/* 1 while sent frames wait for their acknowledgement. */
static int awaiting_acks(const struct mfu_sender *s)
{
	return s->acking && (s->u_head || s->sp_ack < s->sp_send);
}

/* Writes frames until done or the socket would block for wait_ms; reads
 * acknowledgements meanwhile (and, with nothing left to send, waits up to
 * wait_ms for them).  Reading before every send also notices a collector
 * that closed the connection (its idle timeout, a restart): over TCP the
 * first send() after the close still succeeds and the frame would vanish,
 * while this way it goes out on the next connection. */
static void pump(struct mfu_sender *s, int wait_ms, int wait_acks)
{
	uint64_t deadline = mono_ns() + (uint64_t)wait_ms * 1000000u;

	while (s->fd >= 0) {
		if (read_acks(s)) {
			conn_lost(s);
			return;
		}
		struct frame *f = next_frame(s);
		short ev = POLLOUT | POLLIN;
		if (f) {
			ssize_t n = send(s->fd, f->data + f->off, f->len - f->off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				f->off += (size_t)n;
				if (f->off == f->len)
					frame_sent(s, f);
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				conn_lost(s);
				return;
			}
		} else if (wait_acks && awaiting_acks(s)) {
			ev = POLLIN;
		} else {
			return;
		}
		uint64_t now = mono_ns();
		if (now >= deadline)
			return;
		struct pollfd p = {.fd = s->fd, .events = ev};
		int r = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
		if (r > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) && !(p.revents & POLLIN)) {
			conn_lost(s);
			return;
		}
		if (r <= 0)
			return;
	}
}

/* The thread's own encoder, for ring records: sealed into a frame when
 * full or old.  Thread-only state, so no lock but for the accounting. */
static void seal_private(struct mfu_sender *s)
{
	struct frame *f = compress(s, s->tbuf->data, s->tenc.len, s->tenc.records);

	pthread_mutex_lock(&s->mu);
	if (f)
		s->held += f->len;
	else
		s->st.dropped[MFU_DROP_ENCODE] += s->tenc.records;
	pthread_mutex_unlock(&s->mu);
	if (f)
		queue_frame(s, f, 0);
	mfu_enc_reset(&s->tenc);
}

/* Returns 1 if the record could not be encoded. */
static int encode_ring_record(struct mfu_sender *s, const struct mfu_record *r)
{
	if (!s->tenc.len)
		s->tbuf_since_ns = mono_ns();
	int rc = mfu_enc_put(&s->tenc, r);
	if (rc == -MFU_WIRE_E_NOMEM || s->tenc.len >= s->frame_raw) {
		seal_private(s);
		if (rc == -MFU_WIRE_E_NOMEM)
			rc = mfu_enc_put(&s->tenc, r);
	}
	return rc != 0;
}

static void count_bad(struct mfu_sender *s, uint64_t bad)
{
	if (bad) {
		pthread_mutex_lock(&s->mu);
		s->st.dropped[MFU_DROP_ENCODE] += bad;
		s->st.records -= bad;
		pthread_mutex_unlock(&s->mu);
	}
}

static void encode_ring_records(struct mfu_sender *s, const struct mfu_record *recs, uint32_t n)
{
	uint64_t bad = 0;

	for (uint32_t i = 0; i < n; i++)
		bad += encode_ring_record(s, &recs[i]);
	count_bad(s, bad);
}

/* Widens packed gemm records into the records they stand for; returns 0,
 * or -EINVAL for ticks no converter can read. */
static int gemm_widen(const struct mfu_sender *s, const struct mfu_sender_gemm *g, struct mfu_record *r)
{
	uint64_t when = g->when;

	if (g->clock == MFU_SENDER_GEMM_TICKS) {
		if (!s->ticks_ns)
			return -EINVAL;
		when = s->ticks_ns(when, s->ticks_arg);
	}
	r->type = MFU_REC_GEMM;
	r->u.gemm = (struct mfu_rec_gemm){
		.start_ns = when,
		.end_ns = when,
		.tid = g->tid,
		.device = g->device,
		.api = g->api,
		.m = g->m,
		.n = g->n,
		.k = g->k,
		.batch = g->batch,
		.a_type = (uint32_t)(g->a_type - 1u),
		.b_type = (uint32_t)(g->b_type - 1u),
		.c_type = (uint32_t)(g->c_type - 1u),
		.compute_type = (uint32_t)(g->compute_type - 1u),
		.ops = g->ops,
		.flags = g->flags,
		.flops = g->flops,
		.call = g->call,
	};
	return 0;
}

static void encode_gemm_records(struct mfu_sender *s, const struct mfu_sender_gemm *recs, uint32_t n)
{
	uint64_t bad = 0;
	struct mfu_record r;

	for (uint32_t i = 0; i < n; i++)
		bad += gemm_widen(s, &recs[i], &r) || encode_ring_record(s, &r);
	count_bad(s, bad);
}

/* Takes what every ring holds and encodes it; frees rings whose thread
 * exited once they are empty.  Returns 1 if anything was taken. */
static int drain_rings(struct mfu_sender *s)
{
	struct ring *list[256];
	unsigned n = 0;
	int any = 0;

	pthread_mutex_lock(&s->mu);
	for (struct ring **pp = &s->rings; *pp;) {
		struct ring *q = *pp;
		if (atomic_load_explicit(&q->dead, memory_order_acquire) && !ring_unsent(q)) {
			*pp = q->next;
			s->rings_retired += ring_records(q);
			free(q->mem);
			continue;
		}
		if (n < sizeof(list) / sizeof(list[0]))
			list[n++] = q;
		pp = &q->next;
	}
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < n; i++) {
		struct ring *q = list[i];
		uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
		uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
		while (t != h) {
			/* up to the end of the array, then from its start */
			uint32_t at = t & (RING_SIZE - 1), k = h - t;
			if (k > RING_SIZE - at)
				k = RING_SIZE - at;
			encode_ring_records(s, &q->slot[at], k);
			t += k;
			atomic_store_explicit(&q->tail, t, memory_order_release);
			any = 1;
		}
		t = atomic_load_explicit(&q->g.tail, memory_order_relaxed);
		h = atomic_load_explicit(&q->g.p.head, memory_order_acquire);
		while (t != h) {
			uint32_t at = t & (GEMM_RING_SIZE - 1), k = h - t;
			if (k > GEMM_RING_SIZE - at)
				k = GEMM_RING_SIZE - at;
			encode_gemm_records(s, &q->g.slot[at], k);
			t += k;
			atomic_store_explicit(&q->g.tail, t, memory_order_release);
			any = 1;
		}
	}
	return any;
}

/* Records in the fullest ring; caller holds s->mu. */
static uint32_t ring_fill(struct mfu_sender *s)
{
	uint32_t most = 0;
	for (struct ring *q = s->rings; q; q = q->next) {
		uint32_t n = atomic_load_explicit(&q->head, memory_order_acquire) - atomic_load(&q->tail);
		uint32_t g = atomic_load_explicit(&q->g.p.head, memory_order_acquire) - atomic_load(&q->g.tail);
		most = n > most ? n : most;
		most = g > most ? g : most;
	}
	return most;
}

static int rings_empty(struct mfu_sender *s)
{
	return ring_fill(s) == 0;
}

/* Everything sent, and acknowledged where the collector acknowledges. */
static int all_sent(const struct mfu_sender *s)
{
	return !s->q_head && !s->sp_cur && s->sp_send == s->sp_end && !awaiting_acks(s);
}

static void *sender_main(void *arg)
{
	struct mfu_sender *s = arg;

	for (;;) {
		pthread_mutex_lock(&s->mu);
		if (s->connect_now) {
			s->connect_now = 0;
			s->next_connect_ns = 0;
		}
		while (!s->stop && !s->raw_head && !s->flush_req &&
		       !(s->tenc.len && mono_ns() - s->tbuf_since_ns >= s->flush_ms * 1000000ull) &&
		       !(s->open && s->enc.len && mono_ns() - s->open_since_ns >= s->flush_ms * 1000000ull) &&
		       !((s->q_head || s->sp_send < s->sp_end) && (s->fd >= 0 || mono_ns() >= s->next_connect_ns))) {
			/* The rings fill without a lock, and a caller's wake-up can
			 * come between this check and the wait: a ring a quarter full
			 * is drained now, one with anything in it within 5 ms, and
			 * every 50 ms a pass regardless.  Otherwise a missed wake-up
			 * let a ring sit full for 50 ms, and every call meanwhile took
			 * the slow, locked path. */
			uint32_t fill = ring_fill(s);
			if (fill >= RING_SIZE / 4)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (fill ? 5 : 50) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (pthread_cond_timedwait(&s->wake, &s->mu, &ts) == ETIMEDOUT)
				break;
		}
		if (s->open && s->enc.len &&
		    (s->flush_req || s->stop || mono_ns() - s->open_since_ns >= s->flush_ms * 1000000ull))
			seal_open(s);
		/* Status rides along once a second when something was lost, and
		 * at once when the flags change (the record's time dates it). */
		int flags_changed = s->status_flags != s->sent_status_flags;
		if ((flags_changed || (memcmp(s->sent_dropped, s->st.dropped, sizeof(s->sent_dropped)) &&
				       mono_ns() - s->last_status_ns > 1000000000u)) &&
		    (s->open || !open_buffer(s))) {
			struct mfu_record st;
			status_record(s, &st);
			if (!mfu_enc_put(&s->enc, &st)) {
				memcpy(s->sent_dropped, s->st.dropped, sizeof(s->sent_dropped));
				s->sent_status_flags = st.u.status.flags;
				s->last_status_ns = mono_ns();
			}
			seal_open(s);
		}
		struct rawbuf *raw = s->raw_head;
		s->raw_head = NULL;
		s->raw_tail = &s->raw_head;
		int stop = s->stop, flushing = s->flush_req;
		uint64_t gen = s->flush_gen;
		pthread_mutex_unlock(&s->mu);

		drain_rings(s);
		if (s->tenc.len && (stop || flushing || s->tenc.len >= s->frame_raw ||
				    mono_ns() - s->tbuf_since_ns >= s->flush_ms * 1000000ull))
			seal_private(s);

		while (raw) {
			struct rawbuf *next = raw->next;
			size_t cap = rawbuf_cap(s);
			struct frame *f = compress(s, raw->data, raw->len, raw->records);
			pthread_mutex_lock(&s->mu);
			s->held -= cap;
			if (f)
				s->held += f->len;
			else
				s->st.dropped[MFU_DROP_ENCODE] += raw->records;
			pthread_mutex_unlock(&s->mu);
			if (f)
				queue_frame(s, f, 0);
			free(raw);
			raw = next;
		}
		if (s->fd < 0 && (s->q_head || s->sp_send < s->sp_end))
			try_connect(s);
		/* Waiting here, on the sender thread, is what paces a slow collector. */
		pump(s, stop || flushing ? 100 : 50, stop || flushing);
		evict(s);

		pthread_mutex_lock(&s->mu);
		if (flushing && (s->fd < 0 || all_sent(s)) && !s->raw_head && !(s->open && s->enc.len) &&
		    rings_empty(s) &&
		    !s->tenc.len) {
			s->done_gen = gen;
			if (s->flush_gen == gen) /* a flush asked for meanwhile stays asked */
				s->flush_req = 0;
			pthread_cond_broadcast(&s->drained);
		}
		int quit = stop && ((all_sent(s) && !s->raw_head && !s->tenc.len && rings_empty(s)) ||
				    mono_ns() >= s->stop_deadline_ns);
		pthread_mutex_unlock(&s->mu);
		if (quit || (stop && s->fd < 0))
			break;
	}
	return NULL;
}

static void resolve_target(const struct mfu_sender_config *cfg, char *buf, size_t cap)
{
	const char *t = cfg->target ? cfg->target : getenv("MFU_COLLECTOR");
	char path[4096];

	if (t && *t) {
		snprintf(buf, cap, "%s", t);
		return;
	}
	if (net_default_socket(path, sizeof(path)) == 0)
		snprintf(buf, cap, "unix:%s", path);
	else
		snprintf(buf, cap, "unix:/run/mfu/mfud.sock");
}

/* A TCP collector wants MFU_TOKEN (or MFU_TOKEN_FILE's contents) in the
 * hello; a unix one ignores it.  Said once, at start, when it cannot be read. */
static void hello_token(struct mfu_rec_hello *h, char *buf, size_t cap)
{
	const char *origin;
	size_t len;
	int rc = net_token_load(NULL, buf, cap, &len, &origin);

	if (rc)
		fprintf(stderr, "mfushim: cannot use the collector token from %s: %s; sending none\n", origin,
			rc == -E2BIG ? "too long" : rc == -ENODATA ? "empty" : strerror(-rc));
	else if (len) {
		h->token = buf;
		h->token_len = (uint32_t)len;
	}
}

int mfu_sender_new(const struct mfu_sender_config *cfg, const struct mfu_rec_hello *hello,
		   struct mfu_sender **out)
{
	struct mfu_sender *s = calloc(1, sizeof(*s));
	int rc = -ENOMEM;

	if (!s)
		return -ENOMEM;
	resolve_target(cfg, s->target, sizeof(s->target));
	s->budget = cfg->buffer_bytes;
	if (!s->budget) {
		const char *mb = getenv("MFU_BUFFER_MB");
		long v = mb ? strtol(mb, NULL, 10) : 0;
		s->budget = (v > 0 && v <= 65536 ? (size_t)v : 16) << 20;
	}
	s->frame_raw = cfg->frame_raw_bytes ? cfg->frame_raw_bytes : 256 * 1024;
	if (s->frame_raw > MFU_FRAME_RAW_MAX / 2)
		s->frame_raw = MFU_FRAME_RAW_MAX / 2;
	/* One open buffer and one in flight must fit, or nothing ever moves. */
	if (s->budget < 3 * rawbuf_cap(s))
		s->budget = 3 * rawbuf_cap(s);
	s->flush_ms = cfg->flush_ms ? cfg->flush_ms : 200;
	s->clock_ns = cfg->clock_ns ? cfg->clock_ns : real_ns;
	s->clock_arg = cfg->clock_arg;
	s->ticks_ns = cfg->ticks_ns;
	s->ticks_arg = cfg->ticks_arg;
	if (hello->flags & MFU_HELLO_DEGRADED)
		s->status_flags = s->sent_status_flags = MFU_STATUS_DEGRADED;
	s->id = atomic_fetch_add(&next_sender_id, 1);
	s->fd = -1;
	s->raw_tail = &s->raw_head;
	s->q_tail = &s->q_head;
	s->u_tail = &s->u_head;
	s->sp_fd = -1;
	const char *sd = cfg->spool_dir ? cfg->spool_dir : getenv("MFU_SPOOL_DIR");
	if (sd && *sd)
		snprintf(s->sp_path, sizeof(s->sp_path), "%.4000s/mfu-spool-%llu-%llu.bin", sd,
			 (unsigned long long)hello->pid, (unsigned long long)hello->time_ns);
	s->sp_max = cfg->spool_bytes;
	if (!s->sp_max) {
		const char *mb = getenv("MFU_SPOOL_MB");
		long v = mb ? strtol(mb, NULL, 10) : 0;
		s->sp_max = (uint64_t)(v > 0 && v <= (1 << 20) ? v : 256) << 20;
	}
	size_t raw_cap = rawbuf_cap(s);
	s->tbuf = rawbuf_new(raw_cap);
	if (!s->tbuf)
		goto fail;
	mfu_enc_init(&s->tenc, s->tbuf->data, raw_cap);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->wake, NULL);
	pthread_cond_init(&s->drained, NULL);
	if (!(s->codec = mfu_codec_new(cfg->level ? cfg->level : 3)))
		goto fail;
	struct mfu_record h = {.type = MFU_REC_HELLO, .u.hello = *hello};
	char token[NET_TOKEN_MAX + 1];
	if (!h.u.hello.token_len)
		hello_token(&h.u.hello, token, sizeof(token));
	rc = preamble_put(s, &h);
	explicit_bzero(token, sizeof(token));
	if (rc)
		goto fail;

	/* The thread must not take signals meant for the application. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&s->thread, NULL, sender_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		goto fail;
	s->thread_ok = 1;
	*out = s;
	return 0;
fail:
	mfu_codec_free(s->codec);
	free(s->pre);
	free(s->tbuf);
	free(s);
	return rc;
}

int mfu_sender_flush(struct mfu_sender *s, unsigned timeout_ms)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->mu);
	uint64_t gen = ++s->flush_gen;
	s->flush_req = 1;
	pthread_cond_signal(&s->wake);
	while (s->done_gen < gen && rc == 0)
		rc = pthread_cond_timedwait(&s->drained, &s->mu, &ts);
	pthread_mutex_unlock(&s->mu);
	return rc ? -ETIMEDOUT : 0;
}

void mfu_sender_shutdown(struct mfu_sender *s, int64_t exit_code, unsigned timeout_ms)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	int done = s->shut;
	s->shut = 1;
	pthread_mutex_unlock(&s->mu);
	if (done)
		return;
	struct mfu_record bye = {.type = MFU_REC_GOODBYE};
	bye.u.goodbye.time_ns = s->clock_ns(s->clock_arg);
	bye.u.goodbye.exit_code = exit_code;
	/* Final status first, so the collector has the final drop counts. */
	pthread_mutex_lock(&s->mu);
	struct mfu_record st;
	status_record(s, &st);
	pthread_mutex_unlock(&s->mu);
	mfu_sender_put(s, &st);
	mfu_sender_put(s, &bye);
	/* A collector back from a restart may be waiting out the backoff:
	 * what is spooled gets one more chance to reach it. */
	pthread_mutex_lock(&s->mu);
	s->connect_now = 1;
	pthread_mutex_unlock(&s->mu);
	mfu_sender_flush(s, timeout_ms);
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	/* A collector that accepts but never reads must not hold the process at
	 * exit: after the flush's time, what is left is dropped. */
	s->stop_deadline_ns = mono_ns() + 100000000u;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
	if (s->thread_ok)
		pthread_join(s->thread, NULL);
	s->thread_ok = 0;
	pthread_mutex_lock(&s->mu);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	/* What never left is lost, and says so.  Sent frames still waiting for
	 * an acknowledgement may well have arrived: the collector's sequence
	 * tells. */
	for (struct frame *f = s->q_head; f; f = f->next)
		s->st.dropped[MFU_DROP_DISCONNECTED] += f->records;
	s->st.dropped[MFU_DROP_DISCONNECTED] += spool_unsent_records(s);
	for (struct rawbuf *r = s->raw_head; r; r = r->next)
		s->st.dropped[MFU_DROP_DISCONNECTED] += r->records;
	if (s->open)
		s->st.dropped[MFU_DROP_DISCONNECTED] += s->enc.records;
	s->st.dropped[MFU_DROP_DISCONNECTED] += s->tenc.records;
	for (struct ring *q = s->rings; q; q = q->next)
		s->st.dropped[MFU_DROP_DISCONNECTED] += ring_unsent(q);
	pthread_mutex_unlock(&s->mu);
	spool_close(s);
}

void mfu_sender_free(struct mfu_sender *s, int64_t exit_code, unsigned timeout_ms)
{
	if (!s)
		return;
	mfu_sender_shutdown(s, exit_code, timeout_ms);
	while (s->q_head) {
		struct frame *f = s->q_head;
		s->q_head = f->next;
		free(f);
	}
	while (s->u_head) {
		struct frame *f = s->u_head;
		s->u_head = f->next;
		free(f);
	}
	while (s->raw_head) {
		struct rawbuf *r = s->raw_head;
		s->raw_head = r->next;
		free(r);
	}
	free(s->open);
	free(s->tbuf);
	while (s->rings) {
		struct ring *q = s->rings;
		s->rings = q->next;
		free(q->mem);
	}
	mfu_codec_free(s->codec);
	free(s->pre);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->drained);
	free(s);
}
