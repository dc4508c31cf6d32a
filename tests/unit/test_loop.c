/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for collector/loop.c: io callbacks on pipes, pausing and
 * hangups, timer ordering for one-shot and repeating timers, and deleting
 * handles (its own or another's) from inside callbacks.  Run under valgrind
 * these also check that deferred frees neither leak nor touch freed memory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"

struct fixture {
	struct loop *l;
	int p[2];
	int q[2];
};

static int fx_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx || loop_new(&fx->l) != 0)
		return -1;
	if (pipe2(fx->p, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(fx->q, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fixture *fx = *state;
	int i;

	loop_free(fx->l);
	for (i = 0; i < 2; i++) {
		if (fx->p[i] >= 0)
			close(fx->p[i]);
		if (fx->q[i] >= 0)
			close(fx->q[i]);
	}
	free(fx);
	return 0;
}

/* ---- io ---- */

struct io_rec {
	int calls;
	uint32_t last_events;
	int last_fd;
	char data[16];
	ssize_t nread;
	int del_self;
	struct loop_io *other;  /* deleted by whichever callback runs first */
	int *shared_calls;
};

static void on_io(struct loop *l, struct loop_io *io, int fd, uint32_t events, void *arg)
{
	struct io_rec *r = arg;

	(void)l;
	r->calls++;
	r->last_events = events;
	r->last_fd = fd;
	if (events & LOOP_READ)
		r->nread = read(fd, r->data, sizeof(r->data));
	if (r->shared_calls)
		(*r->shared_calls)++;
	if (r->other) {
		loop_io_del(r->other);
		r->other = NULL;
	}
	if (r->del_self)
		loop_io_del(io);
}

static void test_io_read_callback_gets_fd_events_and_data(void **state)
{
	struct fixture *fx = *state;
	struct io_rec r = { 0 };
	struct loop_io *io;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &r, &io), 0);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(r.calls, 0);
	assert_int_equal(write(fx->p[1], "hi", 2), 2);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.last_fd, fx->p[0]);
	assert_int_equal(r.last_events, LOOP_READ);
	assert_int_equal(r.nread, 2);
	assert_memory_equal(r.data, "hi", 2);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(r.calls, 1);
}

static void test_io_write_readiness_reported(void **state)
{
	struct fixture *fx = *state;
	struct io_rec r = { 0 };
	struct loop_io *io;

	assert_int_equal(loop_io_add(fx->l, fx->p[1], LOOP_WRITE, on_io, &r, &io), 0);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.last_events, LOOP_WRITE);
}

static void test_io_set_zero_pauses_and_set_read_resumes(void **state)
{
	struct fixture *fx = *state;
	struct io_rec r = { 0 };
	struct loop_io *io;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &r, &io), 0);
	assert_int_equal(loop_io_set(io, 0), 0);
	assert_int_equal(write(fx->p[1], "x", 1), 1);
	close(fx->p[1]);
	fx->p[1] = -1;
	assert_int_equal(loop_run_once(fx->l, 20), 0);
	assert_int_equal(r.calls, 0);
	assert_int_equal(loop_io_set(io, LOOP_READ), 0);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(r.calls, 1);
	assert_true(r.last_events & LOOP_READ);
	assert_int_equal(r.nread, 1);
}

static void test_io_hangup_reports_error_with_read(void **state)
{
	struct fixture *fx = *state;
	struct io_rec r = { 0 };
	struct loop_io *io;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &r, &io), 0);
	close(fx->p[1]);
	fx->p[1] = -1;
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.last_events, LOOP_READ | LOOP_ERROR);
	assert_int_equal(r.nread, 0);
}

static void test_io_add_rejects_bad_arguments_and_duplicates(void **state)
{
	struct fixture *fx = *state;
	struct io_rec r = { 0 };
	struct loop_io *io, *io2;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], 8, on_io, &r, &io), -EINVAL);
	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, NULL, &r, &io), -EINVAL);
	assert_int_equal(loop_io_add(fx->l, -1, LOOP_READ, on_io, &r, &io), -EBADF);
	assert_int_equal(loop_io_add(fx->l, fx->p[0], 0, on_io, &r, &io), 0);
	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &r, &io2), -EEXIST);
	assert_int_equal(loop_io_set(io, 16), -EINVAL);
	loop_io_del(io);
	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &r, &io2), 0);
}

static void test_io_deleted_in_own_callback_never_fires_again(void **state)
{
	struct fixture *fx = *state;
	struct io_rec r = { .del_self = 1 };
	struct loop_io *io;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &r, &io), 0);
	assert_int_equal(write(fx->p[1], "a", 1), 1);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(write(fx->p[1], "b", 1), 1);
	assert_int_equal(loop_run_once(fx->l, 20), 0);
	assert_int_equal(r.calls, 1);
}

static void test_io_deleted_by_other_callback_in_same_batch_is_skipped(void **state)
{
	struct fixture *fx = *state;
	int shared = 0;
	struct io_rec a = { .shared_calls = &shared }, b = { .shared_calls = &shared };
	struct loop_io *ia, *ib;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &a, &ia), 0);
	assert_int_equal(loop_io_add(fx->l, fx->q[0], LOOP_READ, on_io, &b, &ib), 0);
	a.other = ib;
	b.other = ia;
	/* Both ready before the wait, so both land in one epoll batch. */
	assert_int_equal(write(fx->p[1], "a", 1), 1);
	assert_int_equal(write(fx->q[1], "b", 1), 1);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(shared, 1);
	assert_int_equal(loop_run_once(fx->l, 20), 0);
	assert_int_equal(shared, 1);
}

static void test_io_fd_reused_after_delete_in_same_batch(void **state)
{
	struct fixture *fx = *state;
	struct io_rec a = { .del_self = 1 }, b = { 0 };
	struct loop_io *ia, *ib;

	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &a, &ia), 0);
	assert_int_equal(write(fx->p[1], "a", 1), 1);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(loop_io_add(fx->l, fx->p[0], LOOP_READ, on_io, &b, &ib), 0);
	assert_int_equal(write(fx->p[1], "b", 1), 1);
	assert_int_equal(loop_run_once(fx->l, 1000), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
}

/* ---- timers ---- */

#define LOG_MAX 64

struct tlog {
	char ids[LOG_MAX];
	int n;
};

struct tctx {
	struct tlog *log;
	char id;
	int fires;
	int del_self_after;     /* delete self on this fire (0: never) */
	int stop_after;         /* loop_stop on this fire (0: never) */
	struct loop_timer *victim;
};

static void on_timer(struct loop *l, struct loop_timer *t, void *arg)
{
	struct tctx *c = arg;

	c->fires++;
	if (c->log->n < LOG_MAX)
		c->log->ids[c->log->n++] = c->id;
	if (c->victim) {
		loop_timer_del(c->victim);
		c->victim = NULL;
	}
	if (c->del_self_after && c->fires == c->del_self_after)
		loop_timer_del(t);
	if (c->stop_after && c->fires == c->stop_after)
		loop_stop(l);
}

static void run_for_ms(struct loop *l, uint64_t ms)
{
	uint64_t end = loop_now_ns() + ms * 1000000ull;

	while (loop_now_ns() < end)
		assert_int_equal(loop_run_once(l, 5), 0);
}

static void test_timers_fire_in_deadline_order(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx a = { .log = &log, .id = 'a' }, b = { .log = &log, .id = 'b' }, c = { .log = &log, .id = 'c' };

	assert_int_equal(loop_timer_add(fx->l, 60, 0, on_timer, &a, NULL), 0);
	assert_int_equal(loop_timer_add(fx->l, 20, 0, on_timer, &b, NULL), 0);
	assert_int_equal(loop_timer_add(fx->l, 40, 0, on_timer, &c, NULL), 0);
	run_for_ms(fx->l, 120);
	assert_int_equal(log.n, 3);
	assert_memory_equal(log.ids, "bca", 3);
}

static void test_zero_delay_timers_fire_in_arm_order(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx a = { .log = &log, .id = 'a' }, b = { .log = &log, .id = 'b' }, c = { .log = &log, .id = 'c' };

	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_timer, &a, NULL), 0);
	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_timer, &b, NULL), 0);
	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_timer, &c, NULL), 0);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(log.n, 3);
	assert_memory_equal(log.ids, "abc", 3);
}

static void test_repeating_timer_interleaves_with_one_shot(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx r = { .log = &log, .id = 'r' }, o = { .log = &log, .id = 'o' };
	struct loop_timer *rt;
	int i, before = -1, fired;

	/* r at 20, 40, 60, 80, 100...; o at 50: between the 2nd and 3rd r. */
	assert_int_equal(loop_timer_add(fx->l, 20, 20, on_timer, &r, &rt), 0);
	assert_int_equal(loop_timer_add(fx->l, 50, 0, on_timer, &o, NULL), 0);
	run_for_ms(fx->l, 110);
	loop_timer_del(rt);
	assert_int_equal(o.fires, 1);
	/* 5 when on time; a slow host (valgrind) may skip a missed period. */
	assert_in_range(r.fires, 3, 5);
	fired = r.fires;
	for (i = 0; i < log.n; i++) {
		if (log.ids[i] == 'o')
			before = i;
	}
	/* On time, o is third (r, r, o).  On a loaded machine missed periods
	 * are skipped, but r's first deadline (20 ms) still precedes o's. */
	assert_true(before >= 1);
	run_for_ms(fx->l, 50);
	assert_int_equal(r.fires, fired);
}

static void test_repeating_timer_deleting_itself_stops(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx r = { .log = &log, .id = 'r', .del_self_after = 3 };
	uint64_t give_up = loop_now_ns() + 5000000000ull;

	assert_int_equal(loop_timer_add(fx->l, 1, 1, on_timer, &r, NULL), 0);
	/* no timing assumption: run until it has deleted itself, then longer */
	while (r.fires < 3 && loop_now_ns() < give_up)
		assert_int_equal(loop_run_once(fx->l, 5), 0);
	run_for_ms(fx->l, 30);
	assert_int_equal(r.fires, 3);
}

static void test_one_shot_deleting_itself_in_callback_is_safe(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx o = { .log = &log, .id = 'o', .del_self_after = 1 };

	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_timer, &o, NULL), 0);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(o.fires, 1);
}

static void test_timer_deleted_by_earlier_timer_in_same_pass_never_fires(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx a = { .log = &log, .id = 'a' }, b = { .log = &log, .id = 'b' };
	struct loop_timer *tb;

	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_timer, &a, NULL), 0);
	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_timer, &b, &tb), 0);
	a.victim = tb;
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(a.fires, 1);
	assert_int_equal(b.fires, 0);
}

static void test_timer_deleted_before_deadline_never_fires(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx a = { .log = &log, .id = 'a' };
	struct loop_timer *t;

	assert_int_equal(loop_timer_add(fx->l, 10, 0, on_timer, &a, &t), 0);
	loop_timer_del(t);
	run_for_ms(fx->l, 30);
	assert_int_equal(a.fires, 0);
}

static void on_rearm_zero(struct loop *l, struct loop_timer *t, void *arg)
{
	int *n = arg;

	(void)t;
	(*n)++;
	if (*n < 1000)
		loop_timer_add(l, 0, 0, on_rearm_zero, n, NULL);
}

static void test_timer_armed_in_callback_waits_for_next_pass(void **state)
{
	struct fixture *fx = *state;
	int n = 0;

	assert_int_equal(loop_timer_add(fx->l, 0, 0, on_rearm_zero, &n, NULL), 0);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(n, 1);
	assert_int_equal(loop_run_once(fx->l, 0), 0);
	assert_int_equal(n, 2);
}

static void test_loop_run_returns_after_stop(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx r = { .log = &log, .id = 'r', .stop_after = 3 };
	uint64_t t0 = loop_now_ns();

	assert_int_equal(loop_timer_add(fx->l, 5, 5, on_timer, &r, NULL), 0);
	assert_int_equal(loop_run(fx->l), 0);
	assert_int_equal(r.fires, 3);
	assert_true(loop_now_ns() - t0 >= 15 * 1000000ull);
	/* The remaining repeating timer is freed by loop_free in teardown. */
}

static void test_run_once_waits_for_next_timer(void **state)
{
	struct fixture *fx = *state;
	struct tlog log = { 0 };
	struct tctx a = { .log = &log, .id = 'a' };
	uint64_t t0 = loop_now_ns();

	assert_int_equal(loop_timer_add(fx->l, 30, 0, on_timer, &a, NULL), 0);
	assert_int_equal(loop_run_once(fx->l, -1), 0);
	assert_int_equal(a.fires, 1);
	assert_true(loop_now_ns() - t0 >= 30 * 1000000ull);
}

static void test_free_null_and_free_with_live_handles(void **state)
{
	struct loop *l;
	struct io_rec r = { 0 };
	struct loop_io *io;
	struct loop_timer *t;
	int p[2];

	(void)state;
	loop_free(NULL);
	loop_io_del(NULL);
	loop_timer_del(NULL);
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(loop_io_add(l, p[0], LOOP_READ, on_io, &r, &io), 0);
	assert_int_equal(loop_timer_add(l, 1000, 1000, on_timer, NULL, &t), 0);
	loop_free(l);
	/* loop_free must not close fds. */
	assert_int_equal(write(p[1], "z", 1), 1);
	assert_int_equal(read(p[0], r.data, 1), 1);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_io_read_callback_gets_fd_events_and_data, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_write_readiness_reported, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_set_zero_pauses_and_set_read_resumes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_hangup_reports_error_with_read, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_add_rejects_bad_arguments_and_duplicates, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_deleted_in_own_callback_never_fires_again, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_deleted_by_other_callback_in_same_batch_is_skipped, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_io_fd_reused_after_delete_in_same_batch, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_timers_fire_in_deadline_order, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_zero_delay_timers_fire_in_arm_order, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_repeating_timer_interleaves_with_one_shot, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_repeating_timer_deleting_itself_stops, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_one_shot_deleting_itself_in_callback_is_safe, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_timer_deleted_by_earlier_timer_in_same_pass_never_fires, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_timer_deleted_before_deadline_never_fires, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_timer_armed_in_callback_waits_for_next_pass, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_loop_run_returns_after_stop, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_run_once_waits_for_next_timer, fx_setup, fx_teardown),
		cmocka_unit_test(test_free_null_and_free_with_live_handles),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
