/* SPDX-License-Identifier: MIT */
/*
 * The event loop behind loop.h, on epoll.  This is the only file that knows
 * about epoll.  io handles sit in a list (for duplicate detection and
 * loop_free); timers sit in a list sorted by deadline, which is plenty for
 * the handful of timers mfud arms.  A handle deleted while callbacks are
 * being dispatched goes onto a zombie list and is freed when the dispatch
 * round ends, because the epoll batch or the timer pass may still hold a
 * pointer to it.
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 64
#define NS_PER_MS 1000000ull

struct loop_io {
	struct loop *l;
	int fd;
	uint32_t events;
	int registered;
	int dead;
	loop_io_fn fn;
	void *arg;
	struct loop_io *prev, *next;
};

struct loop_timer {
	struct loop *l;
	uint64_t deadline_ns;
	uint64_t repeat_ns;
	uint64_t seq;
	int armed;
	int dead;
	loop_timer_fn fn;
	void *arg;
	struct loop_timer *prev, *next;
};

struct loop {
	int epfd;
	int stop;
	int dispatching;
	uint64_t next_seq;
	struct loop_io *ios;
	struct loop_io *dead_ios;
	struct loop_timer *timers;
	struct loop_timer *dead_timers;
};

uint64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t ms_to_ns(uint64_t ms)
{
	return ms > UINT64_MAX / NS_PER_MS ? UINT64_MAX : ms * NS_PER_MS;
}

int loop_new(struct loop **out)
{
	struct loop *l;
	int err = 0;

	l = calloc(1, sizeof(*l));
	if (!l) {
		err = -ENOMEM;
		goto out;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		err = -errno;
		free(l);
		goto out;
	}
	*out = l;
out:
	return err;
}

void loop_free(struct loop *l)
{
	struct loop_io *io, *io_next;
	struct loop_timer *t, *t_next;

	if (!l)
		return;
	for (io = l->ios; io; io = io_next) {
		io_next = io->next;
		free(io);
	}
	for (io = l->dead_ios; io; io = io_next) {
		io_next = io->next;
		free(io);
	}
	for (t = l->timers; t; t = t_next) {
		t_next = t->next;
		free(t);
	}
	for (t = l->dead_timers; t; t = t_next) {
		t_next = t->next;
		free(t);
	}
	close(l->epfd);
	free(l);
}

static uint32_t to_epoll(uint32_t events)
{
	uint32_t e = 0;

	if (events & LOOP_READ)
		e |= EPOLLIN;
	if (events & LOOP_WRITE)
		e |= EPOLLOUT;
	return e;
}

/* Brings the epoll registration in line with io->events. */
static int io_sync(struct loop_io *io)
{
	struct epoll_event ev = { .events = to_epoll(io->events), .data.ptr = io };
	int err = 0;

	if (!ev.events) {
		if (io->registered) {
			/* ENOENT/EBADF: the kernel already dropped it; the goal is met. */
			epoll_ctl(io->l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
			io->registered = 0;
		}
		goto out;
	}
	if (epoll_ctl(io->l->epfd, io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &ev) < 0) {
		err = -errno;
		goto out;
	}
	io->registered = 1;
out:
	return err;
}

int loop_io_add(struct loop *l, int fd, uint32_t events, loop_io_fn fn, void *arg, struct loop_io **out)
{
	struct loop_io *io = NULL, *it;
	int err = 0;

	if (!l || !fn || !out || (events & ~(LOOP_READ | LOOP_WRITE | LOOP_ERROR))) {
		err = -EINVAL;
		goto out;
	}
	if (fd < 0) {
		err = -EBADF;
		goto out;
	}
	for (it = l->ios; it; it = it->next) {
		if (it->fd == fd) {
			err = -EEXIST;
			goto out;
		}
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		err = -ENOMEM;
		goto out;
	}
	io->l = l;
	io->fd = fd;
	io->events = events & (LOOP_READ | LOOP_WRITE);
	io->fn = fn;
	io->arg = arg;
	err = io_sync(io);
	if (err)
		goto out;
	io->next = l->ios;
	if (l->ios)
		l->ios->prev = io;
	l->ios = io;
	*out = io;
	io = NULL;
out:
	free(io);
	return err;
}

int loop_io_set(struct loop_io *io, uint32_t events)
{
	uint32_t old;
	int err = 0;

	if (!io || io->dead || (events & ~(LOOP_READ | LOOP_WRITE | LOOP_ERROR))) {
		err = -EINVAL;
		goto out;
	}
	old = io->events;
	io->events = events & (LOOP_READ | LOOP_WRITE);
	err = io_sync(io);
	if (err)
		io->events = old;
out:
	return err;
}

void loop_io_del(struct loop_io *io)
{
	struct loop *l;

	if (!io || io->dead)
		return;
	l = io->l;
	io->events = 0;
	io_sync(io);
	io->dead = 1;
	if (io->prev)
		io->prev->next = io->next;
	else
		l->ios = io->next;
	if (io->next)
		io->next->prev = io->prev;
	if (l->dispatching) {
		io->prev = NULL;
		io->next = l->dead_ios;
		l->dead_ios = io;
	} else {
		free(io);
	}
}

static void timer_unlink(struct loop_timer *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		t->l->timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->armed = 0;
}

/* Sorted by deadline, ties by seq; a fresh seq puts it after its equals. */
static void timer_link(struct loop_timer *t)
{
	struct loop *l = t->l;
	struct loop_timer *prev = NULL, *it = l->timers;

	t->seq = l->next_seq++;
	while (it && it->deadline_ns <= t->deadline_ns) {
		prev = it;
		it = it->next;
	}
	t->prev = prev;
	t->next = it;
	if (prev)
		prev->next = t;
	else
		l->timers = t;
	if (it)
		it->prev = t;
	t->armed = 1;
}

int loop_timer_add(struct loop *l, uint64_t after_ms, uint64_t repeat_ms, loop_timer_fn fn, void *arg,
		   struct loop_timer **out)
{
	struct loop_timer *t;
	int err = 0;

	if (!l || !fn) {
		err = -EINVAL;
		goto out;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		err = -ENOMEM;
		goto out;
	}
	t->l = l;
	t->deadline_ns = add_sat(loop_now_ns(), ms_to_ns(after_ms));
	t->repeat_ns = ms_to_ns(repeat_ms);
	t->fn = fn;
	t->arg = arg;
	timer_link(t);
	if (out)
		*out = t;
out:
	return err;
}

void loop_timer_del(struct loop_timer *t)
{
	struct loop *l;

	if (!t || t->dead)
		return;
	l = t->l;
	if (t->armed)
		timer_unlink(t);
	t->dead = 1;
	if (l->dispatching) {
		t->next = l->dead_timers;
		l->dead_timers = t;
	} else {
		free(t);
	}
}

void loop_stop(struct loop *l)
{
	l->stop = 1;
}

static int next_timeout_ms(struct loop *l, int timeout_ms)
{
	uint64_t now, wait_ms;
	int t;

	if (!l->timers)
		return timeout_ms;
	now = loop_now_ns();
	if (l->timers->deadline_ns <= now)
		return 0;
	/* Round up: waking a little early would only spin until the deadline. */
	wait_ms = (l->timers->deadline_ns - now + NS_PER_MS - 1) / NS_PER_MS;
	t = wait_ms > INT_MAX ? INT_MAX : (int)wait_ms;
	if (timeout_ms >= 0 && timeout_ms < t)
		t = timeout_ms;
	return t;
}

static void dispatch_io(struct epoll_event *ev)
{
	struct loop_io *io = ev->data.ptr;
	uint32_t got = 0;

	/* An earlier callback in this batch may have deleted or paused it. */
	if (io->dead || !io->events)
		return;
	if (ev->events & EPOLLIN)
		got |= LOOP_READ;
	if (ev->events & EPOLLOUT)
		got |= LOOP_WRITE;
	if (ev->events & (EPOLLERR | EPOLLHUP))
		got |= LOOP_ERROR | io->events;
	got &= io->events | LOOP_ERROR;
	if (got)
		io->fn(io->l, io, io->fd, got, io->arg);
}

static void run_timers(struct loop *l)
{
	/* Timers armed or re-armed during this pass wait for the next one, so a
	 * callback that re-arms itself with 0 ms cannot starve the loop. */
	uint64_t first_new = l->next_seq;
	uint64_t now = loop_now_ns();
	struct loop_timer *t;

	for (;;) {
		for (t = l->timers; t && t->deadline_ns <= now; t = t->next) {
			if (t->seq < first_new)
				break;
		}
		if (!t || t->deadline_ns > now)
			break;
		timer_unlink(t);
		if (t->repeat_ns) {
			t->deadline_ns = add_sat(t->deadline_ns, t->repeat_ns);
			if (t->deadline_ns <= now)
				t->deadline_ns = add_sat(now, t->repeat_ns);
			timer_link(t);
		}
		t->fn(l, t, t->arg);
		if (!t->repeat_ns)
			loop_timer_del(t);
	}
}

static void reap(struct loop *l)
{
	struct loop_io *io;
	struct loop_timer *t;

	while ((io = l->dead_ios)) {
		l->dead_ios = io->next;
		free(io);
	}
	while ((t = l->dead_timers)) {
		l->dead_timers = t->next;
		free(t);
	}
}

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event ev[LOOP_MAX_EVENTS];
	int n, i, err = 0;

	n = epoll_wait(l->epfd, ev, LOOP_MAX_EVENTS, next_timeout_ms(l, timeout_ms));
	if (n < 0) {
		if (errno != EINTR)
			err = -errno;
		n = 0;
	}
	l->dispatching++;
	for (i = 0; i < n; i++)
		dispatch_io(&ev[i]);
	run_timers(l);
	l->dispatching--;
	if (!l->dispatching)
		reap(l);
	return err;
}

int loop_run(struct loop *l)
{
	int err = 0;

	l->stop = 0;
	while (!l->stop) {
		err = loop_run_once(l, -1);
		if (err)
			goto out;
	}
out:
	return err;
}
