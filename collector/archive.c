/* SPDX-License-Identifier: MIT */
/*
 * Archive writer and reader.  A file being written is named *.mfa.tmp and is
 * renamed to *.mfa when rotated or closed, so a *.mfa never changes after it
 * appears; after a crash the *.tmp holds everything up to a possibly torn
 * last entry, which the reader detects through the frame's length and CRC.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"

struct archive_file {
	int fd;
	unsigned n, conn; /* conn: the group's number, fixed by its first file */
	uint64_t bytes;
	char tmp[4200], final[4096];
};

struct archive {
	char dir[4000];
	uint64_t max_bytes;
	struct archive_file **files; /* indexed by position in a small list */
	struct agg_source **owners;
	unsigned nfiles, cap;
};

int archive_new(const char *dir, uint64_t max_bytes, struct archive **out)
{
	struct archive *ar;

	if (strlen(dir) >= sizeof(ar->dir))
		return -ENAMETOOLONG;
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	ar = calloc(1, sizeof(*ar));
	if (!ar)
		return -ENOMEM;
	snprintf(ar->dir, sizeof(ar->dir), "%s", dir);
	ar->max_bytes = max_bytes ? max_bytes : (64u << 20);
	*out = ar;
	return 0;
}

static void file_close(struct archive_file *f)
{
	if (f->fd < 0)
		return;
	fsync(f->fd);
	close(f->fd);
	f->fd = -1;
	if (rename(f->tmp, f->final))
		fprintf(stderr, "mfud: archive: cannot rename %s: %s\n", f->tmp, strerror(errno));
}

static void safe_name(char *dst, size_t cap, const char *s)
{
	/* Host names come from the producer: keep them to a harmless alphabet. */
	size_t i = 0;
	for (; s[i] && i + 1 < cap && i < 64; i++) {
		char c = s[i];
		dst[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
				 c == '.'
			 ? c
			 : '_';
	}
	dst[i] = 0;
	if (!i || dst[0] == '.')
		snprintf(dst, cap, "host");
}

static int file_open(struct archive *ar, const struct agg_source *s, struct archive_file *f)
{
	char host[80];
	uint8_t hdr[ARCHIVE_HEADER_LEN];
	struct timespec ts;

	safe_name(host, sizeof(host), s->host);
	/* One file group per connection: a reconnecting source starts a new
	 * group (with its own hello) instead of overwriting the first.  A
	 * collector restarted after a crash counts connections from 1 again, so
	 * a group's number is the first one no file uses yet: the dead
	 * collector's files stay, and sort before the new ones. */
	if (f->n == 0)
		f->conn = s->connections ? s->connections : 1;
	for (unsigned tries = 0;; tries++) {
		snprintf(f->final, sizeof(f->final), "%s/%s-%llu-%llu-c%u.%u.mfa", ar->dir, host,
			 (unsigned long long)s->pid, (unsigned long long)s->hello_ns, f->conn, f->n);
		snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", f->final);
		if (access(f->final, F_OK) == 0) {
			f->fd = -1;
			errno = EEXIST;
		} else {
			f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		}
		if (f->fd >= 0)
			break;
		if (errno != EEXIST || f->n || tries > 10000)
			return -errno;
		f->conn++;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	memcpy(hdr, ARCHIVE_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (uint8_t)(now >> (8 * i));
	if (write(f->fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr)) {
		int err = errno ? -errno : -EIO;
		close(f->fd);
		f->fd = -1;
		unlink(f->tmp);
		return err;
	}
	f->bytes = sizeof(hdr);
	return 0;
}

static struct archive_file *file_for(struct archive *ar, struct agg_source *s)
{
	for (unsigned i = 0; i < ar->nfiles; i++)
		if (ar->owners[i] == s)
			return ar->files[i];
	if (ar->nfiles == ar->cap) {
		unsigned cap = ar->cap ? ar->cap * 2 : 16;
		struct archive_file **f = realloc(ar->files, cap * sizeof(*f));
		if (!f)
			return NULL;
		ar->files = f;
		struct agg_source **o = realloc(ar->owners, cap * sizeof(*o));
		if (!o)
			return NULL;
		ar->owners = o;
		ar->cap = cap;
	}
	struct archive_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->fd = -1;
	ar->files[ar->nfiles] = f;
	ar->owners[ar->nfiles++] = s;
	return f;
}

int archive_write(struct archive *ar, struct agg_source *s, uint64_t recv_ns, const uint8_t *frame,
		  size_t len)
{
	struct archive_file *f = file_for(ar, s);
	uint8_t entry[ARCHIVE_ENTRY_LEN];
	int rc;

	if (!f)
		return -ENOMEM;
	if (f->fd >= 0 && f->bytes + len + sizeof(entry) > ar->max_bytes && f->bytes > ARCHIVE_HEADER_LEN) {
		file_close(f);
		f->n++;
	}
	if (f->fd < 0 && (rc = file_open(ar, s, f)))
		return rc;
	for (int i = 0; i < 8; i++)
		entry[i] = (uint8_t)(recv_ns >> (8 * i));
	struct iovec iov[2] = {{entry, sizeof(entry)}, {(void *)frame, len}};
	ssize_t n = writev(f->fd, iov, 2);
	if (n != (ssize_t)(sizeof(entry) + len))
		return n < 0 ? -errno : -ENOSPC;
	f->bytes += (uint64_t)n;
	return 0;
}

void archive_close_source(struct archive *ar, struct agg_source *s)
{
	for (unsigned i = 0; i < ar->nfiles; i++) {
		if (ar->owners[i] != s)
			continue;
		file_close(ar->files[i]);
		free(ar->files[i]);
		ar->files[i] = ar->files[ar->nfiles - 1];
		ar->owners[i] = ar->owners[ar->nfiles - 1];
		ar->nfiles--;
		return;
	}
}

void archive_free(struct archive *ar)
{
	if (!ar)
		return;
	for (unsigned i = 0; i < ar->nfiles; i++) {
		file_close(ar->files[i]);
		free(ar->files[i]);
	}
	free(ar->files);
	free(ar->owners);
	free(ar);
}

int archive_reader_open(const char *path, struct archive_reader *r)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	memset(r, 0, sizeof(*r));
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		int err = -errno;
		close(fd);
		return err;
	}
	if ((size_t)st.st_size < ARCHIVE_HEADER_LEN) {
		close(fd);
		return -EBADMSG;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	if (memcmp(p, ARCHIVE_MAGIC, 8)) {
		munmap(p, (size_t)st.st_size);
		return -EBADMSG;
	}
	r->data = p;
	r->size = (size_t)st.st_size;
	r->off = ARCHIVE_HEADER_LEN;
	return 0;
}

void archive_reader_close(struct archive_reader *r)
{
	if (r->data)
		munmap((void *)r->data, r->size);
	memset(r, 0, sizeof(*r));
}

static void resync(struct archive_reader *r, size_t from)
{
	/* The next entry starts 8 bytes before a frame magic. */
	for (size_t p = from + 1; p + 4 <= r->size; p++) {
		if (p >= ARCHIVE_ENTRY_LEN && !memcmp(r->data + p, "FMUw", 4) && p - ARCHIVE_ENTRY_LEN > from) {
			r->skipped_bytes += p - ARCHIVE_ENTRY_LEN - from;
			r->off = p - ARCHIVE_ENTRY_LEN;
			return;
		}
	}
	r->skipped_bytes += r->size - from;
	r->off = r->size;
}

int archive_reader_next(struct archive_reader *r, uint64_t *recv_ns, const uint8_t **frame, size_t *len,
			size_t *bad_off)
{
	struct mfu_frame_header h;
	size_t at = r->off;
	int rc;

	if (at >= r->size)
		return 0;
	*bad_off = at;
	if (r->size - at < ARCHIVE_ENTRY_LEN) {
		rc = -MFU_WIRE_E_TRUNCATED;
		goto bad;
	}
	const uint8_t *e = r->data + at;
	uint64_t t = 0;
	for (int i = 0; i < 8; i++)
		t |= (uint64_t)e[i] << (8 * i);
	const uint8_t *f = e + ARCHIVE_ENTRY_LEN;
	size_t avail = r->size - at - ARCHIVE_ENTRY_LEN;
	rc = mfu_frame_header_parse(f, avail, &h);
	if (rc)
		goto bad;
	if (avail < mfu_frame_size(&h)) {
		rc = -MFU_WIRE_E_TRUNCATED;
		goto bad;
	}
	*recv_ns = t;
	*frame = f;
	*len = mfu_frame_size(&h);
	r->off = at + ARCHIVE_ENTRY_LEN + *len;
	return 1;
bad:
	r->skipped_entries++;
	resync(r, at);
	return rc;
}
