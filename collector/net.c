/* SPDX-License-Identifier: MIT */
/*
 * Listening and connecting sockets, TCP and unix (see net.h).  The unix
 * listener is careful about what it deletes: a daemon that starts twice must
 * fail rather than steal the socket of the one already running, and a file
 * that is not a socket is never removed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* secure_getenv, EAI_NODATA */
#endif
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define NET_BACKLOG 128

static int host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
	       c == '_';
}

int net_parse_hostport(const char *text, char *host, size_t hostcap, uint16_t *port)
{
	const char *h, *hend, *p;
	char v6[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	unsigned long val = 0;
	size_t hlen, i;
	int err = -EINVAL;

	if (!text || !host || !port)
		goto out;
	if (text[0] == '[') {
		h = text + 1;
		hend = strchr(h, ']');
		if (!hend || hend[1] != ':')
			goto out;
		p = hend + 2;
		hlen = (size_t)(hend - h);
		if (hlen == 0 || hlen >= sizeof(v6))
			goto out;
		memcpy(v6, h, hlen);
		v6[hlen] = '\0';
		/* A zone ("%eth0") is rejected here: the metrics port has no use for one. */
		if (inet_pton(AF_INET6, v6, &a6) != 1)
			goto out;
	} else {
		h = text;
		hend = strrchr(text, ':');
		if (!hend)
			goto out;
		p = hend + 1;
		hlen = (size_t)(hend - h);
		for (i = 0; i < hlen; i++) {
			if (!host_char_ok(h[i]))
				goto out;
		}
	}
	for (i = 0; p[i]; i++) {
		if (p[i] < '0' || p[i] > '9' || i >= 5)
			goto out;
		val = val * 10 + (unsigned long)(p[i] - '0');
	}
	if (i == 0 || val > 65535)
		goto out;
	if (hlen >= hostcap) {
		err = -ENAMETOOLONG;
		goto out;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)val;
	err = 0;
out:
	return err;
}

static int gai_errno(int rc)
{
	switch (rc) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
		return -ENOENT;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	default:
		return -EINVAL;
	}
}

static int resolve(const char *host, uint16_t port, int passive, struct addrinfo **res)
{
	struct addrinfo hints = { 0 };
	char service[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	rc = getaddrinfo(host[0] ? host : NULL, service, &hints, res);
	return rc ? gai_errno(rc) : 0;
}

/* IPv4 first, then the rest: pass 0 takes AF_INET only, pass 1 the others. */
static int ai_in_pass(const struct addrinfo *ai, int pass)
{
	return (ai->ai_family == AF_INET) == (pass == 0);
}

int net_listen_tcp(const char *host, uint16_t port, int *fd_out, uint16_t *bound_port_out)
{
	struct addrinfo *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int fd = -1, one = 1, pass, err;

	err = resolve(host, port, 1, &res);
	if (err)
		goto out;
	err = -EADDRNOTAVAIL;
	for (pass = 0; pass < 2 && fd < 0; pass++) {
		for (ai = res; ai && fd < 0; ai = ai->ai_next) {
			if (!ai_in_pass(ai, pass))
				continue;
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0) {
				err = -errno;
				continue;
			}
			if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
			    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, NET_BACKLOG) < 0) {
				err = -errno;
				close(fd);
				fd = -1;
			}
		}
	}
	if (fd < 0)
		goto out;
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		err = -errno;
		goto out;
	}
	if (bound_port_out) {
		if (ss.ss_family == AF_INET6)
			*bound_port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		else
			*bound_port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	*fd_out = fd;
	fd = -1;
	err = 0;
out:
	if (fd >= 0)
		close(fd);
	if (res)
		freeaddrinfo(res);
	return err;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	size_t n = strlen(path);

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

static int ensure_parent(const char *path, mode_t dir_mode, gid_t gid)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	char *slash;
	int err = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		goto out; /* "." or "/": they exist */
	*slash = '\0';
	if (mkdir(dir, 0700) == 0) {
		/* Made 0700 first and opened up only after the chown, so nobody
		 * outside the group ever sees it open; mkdir's mode also passes
		 * through the umask, and the contract is dir_mode exactly. */
		if ((gid != (gid_t)-1 && chown(dir, (uid_t)-1, gid) < 0) || chmod(dir, dir_mode) < 0)
			err = -errno;
		goto out;
	}
	if (errno != EEXIST) {
		err = -errno;
		goto out;
	}
	if (stat(dir, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		err = -ENOTDIR;
		goto out;
	}
	/* Someone else's directory, or one others may write to (they could
	 * swap the socket for their own), is refused, never "fixed": we did not
	 * make it and do not know who relies on its mode.  A sticky directory
	 * (/tmp) only lets its owners remove entries, and clear_stale checks
	 * the socket itself. */
	if (st.st_uid != geteuid() && st.st_uid != 0)
		err = -EPERM;
	else if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
		err = -EPERM;
out:
	return err;
}

/* Removes path if it is a socket nobody listens on. */
static int clear_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd = -1, err = 0;

	if (lstat(sa->sun_path, &st) < 0) {
		if (errno != ENOENT)
			err = -errno;
		goto out;
	}
	if (!S_ISSOCK(st.st_mode)) {
		err = -EEXIST;
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
		err = -EADDRINUSE;
		goto out;
	}
	switch (errno) {
	case ECONNREFUSED:
		if (unlink(sa->sun_path) < 0 && errno != ENOENT)
			err = -errno;
		break;
	case ENOENT:
		break;
	case EAGAIN:      /* backlog full: very much alive */
	case EPROTOTYPE:  /* a bound datagram socket: someone's, alive */
		err = -EADDRINUSE;
		break;
	default:
		err = -errno;
		break;
	}
out:
	if (fd >= 0)
		close(fd);
	return err;
}

int net_listen_unix(const char *path, mode_t sock_mode, int *fd_out)
{
	return net_listen_unix_group(path, 0700, sock_mode, (gid_t)-1, fd_out);
}

int net_listen_unix_group(const char *path, mode_t dir_mode, mode_t sock_mode, gid_t gid, int *fd_out)
{
	struct sockaddr_un sa;
	int fd = -1, bound = 0, err;

	if (!path || !fd_out) {
		err = -EINVAL;
		goto out;
	}
	err = unix_addr(path, &sa);
	if (err)
		goto out;
	err = ensure_parent(path, dir_mode, gid);
	if (err)
		goto out;
	err = clear_stale(&sa);
	if (err)
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno; /* EADDRINUSE: another daemon won the race */
		goto out;
	}
	bound = 1;
	/* Before listen(): until then every connect is refused, so no client
	 * gets in while the mode is still the umask's. */
	if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) || chmod(path, sock_mode) < 0 ||
	    listen(fd, NET_BACKLOG) < 0) {
		err = -errno;
		goto out;
	}
	*fd_out = fd;
	fd = -1;
	bound = 0;
out:
	if (bound)
		unlink(path);
	if (fd >= 0)
		close(fd);
	return err;
}

/* A blocking connect interrupted by a signal goes on in the background. */
static int wait_connected(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int rc, soerr = 0;

	do {
		rc = poll(&pfd, 1, -1);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

static int connect_one(int family, int proto, const struct sockaddr *sa, socklen_t salen, int nonblock, int *fd_out,
		       int *in_progress)
{
	int fd, err = 0;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), proto);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (connect(fd, sa, salen) < 0) {
		if (nonblock && errno == EINPROGRESS)
			*in_progress = 1;
		else if (!nonblock && errno == EINTR)
			err = wait_connected(fd);
		else
			err = -errno;
	}
	if (err) {
		close(fd);
		goto out;
	}
	*fd_out = fd;
out:
	return err;
}

int net_parse_target(const char *target, struct net_target *out)
{
	const char *path = NULL;
	struct sockaddr_un sa;
	int err = -EINVAL;

	if (!target || !out)
		goto out;
	memset(out, 0, sizeof(*out));
	if (strncmp(target, "unix:", 5) == 0)
		path = target + 5;
	else if (target[0] == '/')
		path = target;
	if (path) {
		/* unix_addr's checks: the same errors as a connect would give */
		err = unix_addr(path, &sa);
		if (!err) {
			memcpy(out->path, sa.sun_path, sizeof(out->path));
			out->is_unix = 1;
		}
		goto out;
	}
	if (strncmp(target, "tcp:", 4) != 0)
		goto out;
	err = net_parse_hostport(target + 4, out->host, sizeof(out->host), &out->port);
	if (err)
		goto out;
	if (!out->host[0])
		err = -EINVAL;
out:
	return err;
}

int net_connect(const char *target, int nonblock, int *fd_out, int *in_progress)
{
	struct addrinfo *res = NULL, *ai;
	struct net_target t;
	struct sockaddr_un sa;
	int pass, err = -EINVAL;

	if (in_progress)
		*in_progress = 0;
	if (!target || !fd_out || (nonblock && !in_progress))
		goto out;
	err = net_parse_target(target, &t);
	if (err)
		goto out;
	if (t.is_unix) {
		err = unix_addr(t.path, &sa);
		if (!err)
			err = connect_one(AF_UNIX, 0, (struct sockaddr *)&sa, sizeof(sa), nonblock, fd_out,
					  in_progress);
		goto out;
	}
	err = resolve(t.host, t.port, 0, &res);
	if (err)
		goto out;
	err = -EADDRNOTAVAIL;
	for (pass = 0; pass < 2; pass++) {
		for (ai = res; ai; ai = ai->ai_next) {
			if (!ai_in_pass(ai, pass))
				continue;
			err = connect_one(ai->ai_family, ai->ai_protocol, ai->ai_addr, ai->ai_addrlen, nonblock, fd_out,
					  in_progress);
			if (!err)
				goto out;
		}
	}
out:
	if (res)
		freeaddrinfo(res);
	return err;
}

int net_default_socket(char *buf, size_t cap)
{
	const char *xdg = secure_getenv("XDG_RUNTIME_DIR");
	uid_t euid = geteuid();
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, cap, "%s/mfu/mfud.sock", xdg);
	else if (euid == 0)
		n = snprintf(buf, cap, "/run/mfu/mfud.sock");
	else
		n = snprintf(buf, cap, "/tmp/mfu-%u/mfud.sock", (unsigned)euid);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

int net_token_load(const char *file, char *buf, size_t cap, size_t *len, const char **origin)
{
	const char *env = secure_getenv("MFU_TOKEN");
	FILE *f = NULL;
	size_t n = 0;
	int err = 0;

	*len = 0;
	*origin = NULL;
	if (!file && env && *env) {
		*origin = "MFU_TOKEN";
		n = strlen(env);
		if (n >= cap) {
			err = -E2BIG;
			goto out;
		}
		memcpy(buf, env, n);
		goto done;
	}
	if (!file)
		file = secure_getenv("MFU_TOKEN_FILE");
	if (!file || !*file)
		goto out;
	*origin = file;
	f = fopen(file, "re");
	if (!f) {
		err = -errno;
		goto out;
	}
	n = fread(buf, 1, cap, f);
	if (ferror(f)) {
		err = -EIO;
		goto out;
	}
	if (n == cap) {
		err = -E2BIG;
		goto out;
	}
	/* `echo secret > file` is how token files get written */
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
done:
	if (n == 0) {
		err = -ENODATA;
		goto out;
	}
	buf[n] = '\0';
	*len = n;
out:
	if (f)
		fclose(f);
	return err;
}

int net_token_equal(const char *want, size_t want_len, const char *got, size_t got_len)
{
	/* Runs over want's length whatever got is, so the time says nothing
	 * about how many leading bytes matched. */
	volatile unsigned char diff = want_len != got_len;

	for (size_t i = 0; i < want_len; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < got_len ? got[i] : ~want[i]);
	return want_len > 0 && diff == 0;
}
