/* SPDX-License-Identifier: MIT */
/*
 * Archive file names on the command line: which files belong to one stream
 * (name.0.mfa, name.1.mfa, ... and a crashed writer's .tmp), and the order
 * to read them in.  report and replay must agree on both.
 */
#ifndef MFU_ARCHIVE_FILES_H
#define MFU_ARCHIVE_FILES_H

#include <stddef.h>

/* Length of the stream name: the path without ".N.mfa" and ".tmp". */
size_t archive_group_len(const char *path);
/* Sorts by stream name, then by N numerically (2 before 10). */
void archive_files_sort(char **files, size_t n);
/* 1 when a and b belong to the same stream. */
int archive_same_group(const char *a, const char *b);

#endif
