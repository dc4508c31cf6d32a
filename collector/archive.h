/* SPDX-License-Identifier: MIT */
/*
 * Archive files (doc/wire-format.md, "Archive files"): the frames a source
 * sent, still compressed, each behind its receive time.  The writer rotates
 * by size and renames a file only once it is complete; the reader walks
 * entries, and on a torn or corrupt entry reports it and resynchronises on
 * the next frame magic.
 */
#ifndef MFU_ARCHIVE_H
#define MFU_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "agg.h"

#define ARCHIVE_MAGIC "MFUArch1"
#define ARCHIVE_HEADER_LEN 16u
#define ARCHIVE_ENTRY_LEN 8u

struct archive;

/* Creates dir (0700) if missing.  max_bytes: rotate past this size. */
int archive_new(const char *dir, uint64_t max_bytes, struct archive **out);
void archive_free(struct archive *ar); /* closes and renames every open file */
int archive_write(struct archive *ar, struct agg_source *s, uint64_t recv_ns, const uint8_t *frame,
		  size_t len);
void archive_close_source(struct archive *ar, struct agg_source *s);

struct archive_reader {
	const uint8_t *data;
	size_t size, off;
	size_t skipped_bytes;
	unsigned skipped_entries;
};

/* Maps the file.  Returns 0, -errno, or -EBADMSG when it is no archive. */
int archive_reader_open(const char *path, struct archive_reader *r);
void archive_reader_close(struct archive_reader *r);
/* Returns 1 with the next entry, 0 at the end, or a negated mfu_wire_error
 * for a bad entry at *bad_off; the reader has then already skipped to the
 * next frame magic, so calling again continues. */
int archive_reader_next(struct archive_reader *r, uint64_t *recv_ns, const uint8_t **frame, size_t *len,
			size_t *bad_off);

#endif
