/* SPDX-License-Identifier: MIT */
/*
 * Socket plumbing for mfud and the mfu CLI: parsing "HOST:PORT", listening
 * on TCP (the metrics endpoint) and on a unix socket (producers), connecting
 * to either, and the default collector socket path.  Every fd made here is
 * close-on-exec.
 *
 * All functions are thread-safe (no shared state) and none is
 * async-signal-safe (getaddrinfo, getenv).
 */
#ifndef MFU_COLLECTOR_NET_H
#define MFU_COLLECTOR_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

/*
 * Splits "HOST:PORT" or "[V6]:PORT" into host (brackets removed) and port.
 * HOST is a hostname (letters, digits, '.', '-', '_') or an IPv4 literal, or
 * empty (":9400"), which net_listen_tcp takes as every IPv4 address; a
 * bracketed host must be an IPv6 literal.  PORT is 1 to 5 decimal digits,
 * at most 65535.  Returns 0, -EINVAL on anything else (including an
 * unbracketed IPv6 literal), or -ENAMETOOLONG when host does not fit in
 * hostcap bytes with its NUL.
 */
int net_parse_hostport(const char *text, char *host, size_t hostcap, uint16_t *port);

/*
 * Listens on host:port (port 0 picks a free one), nonblocking, with
 * SO_REUSEADDR and a backlog of 128.  host may be a name, a literal, or ""
 * for 0.0.0.0.  When a name resolves to both families, IPv4 addresses are
 * tried first, so "localhost" listens where 127.0.0.1 clients connect.
 * Returns 0 with the fd in *fd_out and the bound port in *bound_port_out
 * (may be NULL), -ENOENT when the name does not resolve, or the -errno of
 * the last failing socket/bind/listen.
 */
int net_listen_tcp(const char *host, uint16_t port, int *fd_out, uint16_t *bound_port_out);

/*
 * Listens on a unix stream socket at path, nonblocking, backlog 128.
 * A missing parent directory is created with mode 0700; only the last
 * component is created (-ENOENT when its own parent is missing), because the
 * default paths need no more and a typo should not grow a tree.  An existing
 * parent must be a directory owned by the effective uid or by root (-EPERM
 * otherwise: in /tmp anyone could have made it first).  An existing socket
 * file is removed only if connecting to it is refused, i.e. nobody listens;
 * anything else at path is left alone (-EEXIST).  The socket's mode is set
 * to sock_mode before listen(), so no client connects under a laxer mode.
 * Returns 0 with the fd in *fd_out, -EADDRINUSE if a live process listens
 * at path, -ENAMETOOLONG if path does not fit in sun_path, or -errno.
 */
int net_listen_unix(const char *path, mode_t sock_mode, int *fd_out);

/*
 * net_listen_unix for a daemon shared with a group: a missing parent
 * directory is created with dir_mode (not 0700) and, when gid is not
 * (gid_t)-1, given to group gid, as is the socket, before its mode is
 * opened up.  An existing parent must also not be writable by group or
 * others unless it is sticky (-EPERM).  net_listen_unix(p, m, fd) is
 * net_listen_unix_group(p, 0700, m, (gid_t)-1, fd).  Same returns.
 */
int net_listen_unix_group(const char *path, mode_t dir_mode, mode_t sock_mode, gid_t gid, int *fd_out);

/*
 * The shared token for TCP collectors: the contents of file when it is not
 * NULL (trailing newlines removed), else $MFU_TOKEN, else the contents of
 * the file $MFU_TOKEN_FILE names.  buf gets the token NUL-terminated and
 * *len its length (0 when none is configured); *origin names where it came
 * from ("MFU_TOKEN" or the file), for error messages.  Returns 0 (also
 * when none is set), -ENODATA for an empty token, -E2BIG when it does not
 * fit in cap - 1 bytes, or the -errno of opening or reading the file.
 * Not thread-safe against setenv; not async-signal-safe.
 */
#define NET_TOKEN_MAX 1024 /* bytes; a hello's token is a str (<= 64 KiB) */
#define NET_TOKEN_MAX_TEXT "1024"
int net_token_load(const char *file, char *buf, size_t cap, size_t *len, const char **origin);

/*
 * 1 when got equals want (and want is not empty), else 0, in a time that
 * depends only on want_len.  Thread-safe and async-signal-safe.
 */
int net_token_equal(const char *want, size_t want_len, const char *got, size_t got_len);

/* A collector address as net_parse_target reads it. */
struct net_target {
	int is_unix;                                            /* 1: path; 0: host and port */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix socket path */
	char host[256];                                         /* TCP host, never empty */
	uint16_t port;
};

/*
 * Parses a collector address ("unix:PATH", "tcp:HOST:PORT" or "/PATH", as
 * net_connect below takes it) without touching the network.  Returns 0
 * with *out filled, -EINVAL for a malformed target (an empty path, an empty
 * or bad host, a bad port, an unknown scheme), or -ENAMETOOLONG when the
 * path does not fit in sun_path or the host in out->host.  Used by
 * net_connect, so producers (MFU_COLLECTOR) and the CLI (--target) read
 * addresses the same way.  Thread-safe, no allocation.
 */
int net_parse_target(const char *target, struct net_target *out);

/*
 * Connects to target: "unix:PATH", "tcp:HOST:PORT" (HOST:PORT as in
 * net_parse_hostport, but HOST may not be empty), or an absolute unix path
 * "/...".  With nonblock the socket is nonblocking and a TCP connect still
 * under way returns 0 with *in_progress = 1 (wait for writability, then read
 * SO_ERROR); in_progress is required then and optional otherwise.  Without
 * nonblock the socket is left blocking.  Returns 0 with the fd in *fd_out,
 * -EINVAL for a malformed target, -ENOENT when the name does not resolve,
 * -EAGAIN when a unix listener's backlog is full (nonblocking), or the
 * connect -errno (e.g. -ECONNREFUSED).
 */
int net_connect(const char *target, int nonblock, int *fd_out, int *in_progress);

/*
 * Writes the default collector socket path into buf: an absolute
 * $XDG_RUNTIME_DIR set → "$XDG_RUNTIME_DIR/mfu/mfud.sock"; otherwise euid 0
 * → "/run/mfu/mfud.sock"; otherwise "/tmp/mfu-<euid>/mfud.sock".  The
 * environment is ignored in setuid programs (secure_getenv).  Returns 0 or
 * -ENAMETOOLONG when the path does not fit in cap bytes.
 */
int net_default_socket(char *buf, size_t cap);

#endif
