/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for collector/net.c: HOST:PORT parsing, TCP and unix
 * listeners (directory and socket modes, refusing a live socket, replacing
 * a stale one), connecting to both kinds, and the default socket path.
 * Everything happens under a fresh mkdtemp directory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "net.h"

struct tmp {
	char dir[64];
	char sub[96];
	char sock[128];
};

static int tmp_setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/mfu-test-net-XXXXXX");
	if (!mkdtemp(t->dir))
		return -1;
	snprintf(t->sub, sizeof(t->sub), "%s/run", t->dir);
	snprintf(t->sock, sizeof(t->sock), "%s/mfud.sock", t->sub);
	*state = t;
	return 0;
}

static int tmp_teardown(void **state)
{
	struct tmp *t = *state;
	char p[160];

	unlink(t->sock);
	snprintf(p, sizeof(p), "%s/file", t->sub);
	unlink(p);
	rmdir(t->sub);
	rmdir(t->dir);
	free(t);
	return 0;
}

/* ---- net_parse_hostport ---- */

static void test_hostport_accepts_v4_name_v6_and_empty_host(void **state)
{
	char host[64];
	uint16_t port;

	(void)state;
	assert_int_equal(net_parse_hostport("127.0.0.1:9400", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 9400);
	assert_int_equal(net_parse_hostport("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
	assert_int_equal(net_parse_hostport("[fe80::1:2]:65535", host, sizeof(host), &port), 0);
	assert_string_equal(host, "fe80::1:2");
	assert_int_equal(port, 65535);
	assert_int_equal(net_parse_hostport("localhost:0", host, sizeof(host), &port), 0);
	assert_string_equal(host, "localhost");
	assert_int_equal(port, 0);
	assert_int_equal(net_parse_hostport("gpu-node_7.example.com:00080", host, sizeof(host), &port), 0);
	assert_string_equal(host, "gpu-node_7.example.com");
	assert_int_equal(port, 80);
	assert_int_equal(net_parse_hostport(":9400", host, sizeof(host), &port), 0);
	assert_string_equal(host, "");
	assert_int_equal(port, 9400);
}

static void test_hostport_rejects_junk(void **state)
{
	static const char *const junk[] = {
		"", ":", "127.0.0.1", "127.0.0.1:", "host:65536", "host:99999", "host:123456", "host:-1",
		"host:+80", "host:80x", "host: 80", " host:80", "a b:80", "::1:80", "[::1]80", "[::1]:",
		"[::1", "[]:80", "[zz::1]:80", "[127.0.0.1]:80", "[::1%eth0]:80", "host:80\n", "h\xc3\xa9:80",
		"[::1]:80]", "ho/st:80",
	};
	char host[64];
	uint16_t port = 7;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		if (net_parse_hostport(junk[i], host, sizeof(host), &port) != -EINVAL)
			fail_msg("accepted junk \"%s\"", junk[i]);
	}
	assert_int_equal(port, 7);
}

static void test_hostport_reports_small_host_buffer(void **state)
{
	char host[5];
	uint16_t port;

	(void)state;
	assert_int_equal(net_parse_hostport("abcde:1", host, sizeof(host), &port), -ENAMETOOLONG);
	assert_int_equal(net_parse_hostport("abcd:1", host, sizeof(host), &port), 0);
	assert_string_equal(host, "abcd");
}

/* ---- TCP ---- */

static void test_listen_tcp_port_zero_reports_port_and_accepts_connect(void **state)
{
	char target[64];
	uint16_t port = 0;
	int lfd, cfd, afd = -1, inprog, i;

	(void)state;
	assert_int_equal(net_listen_tcp("127.0.0.1", 0, &lfd, &port), 0);
	assert_int_not_equal(port, 0);
	assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
	snprintf(target, sizeof(target), "tcp:127.0.0.1:%u", port);
	assert_int_equal(net_connect(target, 0, &cfd, NULL), 0);
	assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
	assert_false(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	for (i = 0; i < 100 && afd < 0; i++) {
		afd = accept(lfd, NULL, NULL);
		if (afd < 0)
			usleep(1000);
	}
	assert_true(afd >= 0);
	close(afd);
	close(cfd);
	assert_int_equal(net_connect(target, 1, &cfd, &inprog), 0);
	assert_true(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	close(cfd);
	close(lfd);
}

static void test_listen_tcp_localhost_is_reachable_on_127_0_0_1(void **state)
{
	char target[64];
	uint16_t port = 0;
	int lfd, cfd;

	(void)state;
	assert_int_equal(net_listen_tcp("localhost", 0, &lfd, &port), 0);
	snprintf(target, sizeof(target), "tcp:127.0.0.1:%u", port);
	assert_int_equal(net_connect(target, 0, &cfd, NULL), 0);
	close(cfd);
	close(lfd);
}

static void test_listen_tcp_busy_port_fails(void **state)
{
	uint16_t port = 0;
	int lfd, lfd2 = -1;

	(void)state;
	assert_int_equal(net_listen_tcp("127.0.0.1", 0, &lfd, &port), 0);
	assert_int_equal(net_listen_tcp("127.0.0.1", port, &lfd2, NULL), -EADDRINUSE);
	assert_int_equal(lfd2, -1);
	close(lfd);
}

static void test_connect_rejects_malformed_targets(void **state)
{
	int fd = -1, inprog;

	(void)state;
	assert_int_equal(net_connect("", 0, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("unix:", 0, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("tcp:", 0, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("tcp::80", 0, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("udp:1.2.3.4:5", 0, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("relative/path", 0, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("/x", 1, &fd, NULL), -EINVAL);
	assert_int_equal(net_connect("tcp:localhost:1x", 1, &fd, &inprog), -EINVAL);
	assert_int_equal(fd, -1);
}

static void test_parse_target_reads_each_form_without_connecting(void **state)
{
	struct net_target t;
	char longpath[200];

	(void)state;
	assert_int_equal(net_parse_target("unix:/run/mfu/mfud.sock", &t), 0);
	assert_true(t.is_unix);
	assert_string_equal(t.path, "/run/mfu/mfud.sock");
	assert_int_equal(net_parse_target("/tmp/x.sock", &t), 0);
	assert_true(t.is_unix);
	assert_string_equal(t.path, "/tmp/x.sock");
	assert_int_equal(net_parse_target("tcp:[::1]:7300", &t), 0);
	assert_false(t.is_unix);
	assert_string_equal(t.host, "::1");
	assert_int_equal(t.port, 7300);
	assert_int_equal(net_parse_target("tcp:no-such-host.invalid:9", &t), 0);
	assert_string_equal(t.host, "no-such-host.invalid");
	assert_int_equal(net_parse_target("tcp::80", &t), -EINVAL);
	assert_int_equal(net_parse_target("unix:", &t), -EINVAL);
	assert_int_equal(net_parse_target("udp:1.2.3.4:5", &t), -EINVAL);
	assert_int_equal(net_parse_target(NULL, &t), -EINVAL);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(net_parse_target(longpath, &t), -ENAMETOOLONG);
}

/* ---- unix ---- */

static void test_listen_unix_creates_0700_dir_and_socket_with_mode(void **state)
{
	struct tmp *t = *state;
	mode_t old = umask(022);
	struct stat st;
	int fd;

	assert_int_equal(net_listen_unix(t->sock, 0660, &fd), 0);
	umask(old);
	assert_int_equal(stat(t->sub, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(lstat(t->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

static void test_listen_unix_dir_mode_ignores_umask(void **state)
{
	struct tmp *t = *state;
	mode_t old = umask(0777);
	struct stat st;
	int fd, err;

	err = net_listen_unix(t->sock, 0600, &fd);
	umask(old);
	assert_int_equal(err, 0);
	assert_int_equal(stat(t->sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(lstat(t->sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	close(fd);
}

static void test_listen_unix_refuses_when_live_listener_exists(void **state)
{
	struct tmp *t = *state;
	struct stat st1, st2;
	int fd, fd2 = -1, cfd;
	char target[160];

	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), 0);
	assert_int_equal(lstat(t->sock, &st1), 0);
	assert_int_equal(net_listen_unix(t->sock, 0600, &fd2), -EADDRINUSE);
	assert_int_equal(fd2, -1);
	/* The live daemon's socket is untouched: same inode, still reachable. */
	assert_int_equal(lstat(t->sock, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	snprintf(target, sizeof(target), "unix:%s", t->sock);
	assert_int_equal(net_connect(target, 0, &cfd, NULL), 0);
	close(cfd);
	assert_int_equal(net_connect(t->sock, 0, &cfd, NULL), 0);
	close(cfd);
	close(fd);
}

static void test_listen_unix_replaces_stale_socket(void **state)
{
	struct tmp *t = *state;
	struct stat st;
	int fd, fd2, cfd, rc;

	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), 0);
	close(fd); /* the file stays: a crashed daemon's leftover */
	assert_int_equal(lstat(t->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(net_connect(t->sock, 0, &cfd, NULL), -ECONNREFUSED);
	rc = net_listen_unix(t->sock, 0600, &fd2);
	assert_int_equal(rc, 0);
	assert_int_equal(net_connect(t->sock, 0, &cfd, NULL), 0);
	close(cfd);
	close(fd2);
}

static void test_listen_unix_leaves_non_socket_alone(void **state)
{
	struct tmp *t = *state;
	char p[160];
	struct stat st;
	int fd, fd2 = -1;

	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), 0);
	close(fd);
	unlink(t->sock);
	snprintf(p, sizeof(p), "%s/file", t->sub);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(net_listen_unix(p, 0600, &fd2), -EEXIST);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
}

static void test_listen_unix_refuses_parent_owned_by_someone_else(void **state)
{
	struct tmp *t = *state;
	int fd = -1;

	if (geteuid() != 0)
		skip(); /* only root can hand a directory to another uid */
	assert_int_equal(mkdir(t->sub, 0700), 0);
	assert_int_equal(chown(t->sub, 4242, 4242), 0);
	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), -EPERM);
	assert_int_equal(fd, -1);
}

static void test_listen_unix_refuses_parent_others_may_write_unless_sticky(void **state)
{
	struct tmp *t = *state;
	int fd = -1;

	assert_int_equal(mkdir(t->sub, 0700), 0);
	assert_int_equal(chmod(t->sub, 0770), 0);
	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), -EPERM);
	assert_int_equal(chmod(t->sub, 0702), 0);
	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), -EPERM);
	assert_int_equal(fd, -1);
	/* never "fixed": the mode is left as found */
	struct stat st;
	assert_int_equal(stat(t->sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0702);
	/* readable by others is fine (the socket's own mode guards it), and so
	 * is a sticky shared directory like /tmp */
	assert_int_equal(chmod(t->sub, 0755), 0);
	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), 0);
	close(fd);
	unlink(t->sock);
	assert_int_equal(chmod(t->sub, 01777), 0);
	assert_int_equal(net_listen_unix(t->sock, 0600, &fd), 0);
	close(fd);
}

static void test_listen_unix_group_mode_gives_dir_and_socket_to_the_group(void **state)
{
	struct tmp *t = *state;
	/* root may hand files to any group; others only to their own */
	gid_t gid = geteuid() == 0 ? 4242 : getegid();
	mode_t old = umask(077);
	struct stat st;
	int fd = -1, err;

	err = net_listen_unix_group(t->sock, 0750, 0660, gid, &fd);
	umask(old);
	assert_int_equal(err, 0);
	assert_int_equal(stat(t->sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_gid, gid);
	assert_int_equal(lstat(t->sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, gid);
	close(fd);
}

static void test_token_load_prefers_file_then_env_then_env_file(void **state)
{
	struct tmp *t = *state;
	char p[160], buf[64];
	const char *origin;
	size_t len;
	FILE *f;

	snprintf(p, sizeof(p), "%s/tok", t->dir);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs("from-file\n", f);
	fclose(f);
	unsetenv("MFU_TOKEN");
	unsetenv("MFU_TOKEN_FILE");
	assert_int_equal(net_token_load(NULL, buf, sizeof(buf), &len, &origin), 0);
	assert_int_equal(len, 0);
	assert_null(origin);
	setenv("MFU_TOKEN", "from-env", 1);
	assert_int_equal(net_token_load(NULL, buf, sizeof(buf), &len, &origin), 0);
	assert_string_equal(buf, "from-env");
	assert_int_equal(len, 8);
	assert_int_equal(net_token_load(p, buf, sizeof(buf), &len, &origin), 0);
	assert_string_equal(buf, "from-file"); /* newline gone */
	assert_string_equal(origin, p);
	unsetenv("MFU_TOKEN");
	setenv("MFU_TOKEN_FILE", p, 1);
	assert_int_equal(net_token_load(NULL, buf, sizeof(buf), &len, &origin), 0);
	assert_string_equal(buf, "from-file");
	assert_int_equal(net_token_load(NULL, buf, 5, &len, &origin), -E2BIG);
	f = fopen(p, "w");
	fputs("\n", f);
	fclose(f);
	assert_int_equal(net_token_load(NULL, buf, sizeof(buf), &len, &origin), -ENODATA);
	unlink(p);
	assert_int_equal(net_token_load(NULL, buf, sizeof(buf), &len, &origin), -ENOENT);
	unsetenv("MFU_TOKEN_FILE");
}

static void test_token_equal_needs_every_byte_and_the_length(void **state)
{
	(void)state;
	assert_true(net_token_equal("secret", 6, "secret", 6));
	assert_false(net_token_equal("secret", 6, "secreT", 6));
	assert_false(net_token_equal("secret", 6, "secre", 5));
	assert_false(net_token_equal("secret", 6, "secret!", 7));
	assert_false(net_token_equal("secret", 6, NULL, 0));
	assert_false(net_token_equal("", 0, "", 0)); /* no token configured never matches */
}

static void test_listen_unix_does_not_create_grandparents(void **state)
{
	struct tmp *t = *state;
	char p[160];
	int fd = -1;

	snprintf(p, sizeof(p), "%s/a/b/mfud.sock", t->dir);
	assert_int_equal(net_listen_unix(p, 0600, &fd), -ENOENT);
	assert_int_equal(fd, -1);
}

static void test_listen_unix_rejects_too_long_path(void **state)
{
	char p[200];
	int fd = -1;

	(void)state;
	memset(p, 'a', sizeof(p) - 1);
	p[0] = '/';
	p[sizeof(p) - 1] = '\0';
	assert_int_equal(net_listen_unix(p, 0600, &fd), -ENAMETOOLONG);
	assert_int_equal(fd, -1);
}

/* ---- default path ---- */

static void test_default_socket_prefers_xdg_runtime_dir(void **state)
{
	char *saved = getenv("XDG_RUNTIME_DIR");
	char buf[128], want[64];

	(void)state;
	saved = saved ? strdup(saved) : NULL;
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	assert_int_equal(net_default_socket(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/run/user/4242/mfu/mfud.sock");

	assert_int_equal(net_default_socket(buf, 10), -ENAMETOOLONG);

	/* Relative values are invalid per the XDG spec and ignored. */
	setenv("XDG_RUNTIME_DIR", "relative", 1);
	assert_int_equal(net_default_socket(buf, sizeof(buf)), 0);
	unsetenv("XDG_RUNTIME_DIR");
	assert_int_equal(net_default_socket(want, sizeof(want)), 0);
	assert_string_equal(buf, want);

	if (geteuid() == 0)
		assert_string_equal(want, "/run/mfu/mfud.sock");
	else {
		char expect[64];

		snprintf(expect, sizeof(expect), "/tmp/mfu-%u/mfud.sock", (unsigned)geteuid());
		assert_string_equal(want, expect);
	}
	if (saved) {
		setenv("XDG_RUNTIME_DIR", saved, 1);
		free(saved);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostport_accepts_v4_name_v6_and_empty_host),
		cmocka_unit_test(test_hostport_rejects_junk),
		cmocka_unit_test(test_hostport_reports_small_host_buffer),
		cmocka_unit_test(test_listen_tcp_port_zero_reports_port_and_accepts_connect),
		cmocka_unit_test(test_listen_tcp_localhost_is_reachable_on_127_0_0_1),
		cmocka_unit_test(test_listen_tcp_busy_port_fails),
		cmocka_unit_test(test_connect_rejects_malformed_targets),
		cmocka_unit_test_setup_teardown(test_listen_unix_creates_0700_dir_and_socket_with_mode, tmp_setup,
						tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_dir_mode_ignores_umask, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_refuses_when_live_listener_exists, tmp_setup,
						tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_replaces_stale_socket, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_leaves_non_socket_alone, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_refuses_parent_owned_by_someone_else, tmp_setup,
						tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_does_not_create_grandparents, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_refuses_parent_others_may_write_unless_sticky,
						tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_listen_unix_group_mode_gives_dir_and_socket_to_the_group,
						tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_token_load_prefers_file_then_env_then_env_file, tmp_setup,
						tmp_teardown),
		cmocka_unit_test(test_token_equal_needs_every_byte_and_the_length),
		cmocka_unit_test(test_listen_unix_rejects_too_long_path),
		cmocka_unit_test(test_parse_target_reads_each_form_without_connecting),
		cmocka_unit_test(test_default_socket_prefers_xdg_runtime_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
