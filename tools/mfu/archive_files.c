/* SPDX-License-Identifier: MIT */
/*
 * Grouping and ordering of archive file names; see archive_files.h.
 */
#include <stdlib.h>
#include <string.h>

#include "archive_files.h"

size_t archive_group_len(const char *path)
{
	size_t n = strlen(path);

	if (n > 4 && !strcmp(path + n - 4, ".tmp"))
		n -= 4;
	if (n > 4 && !strncmp(path + n - 4, ".mfa", 4)) {
		size_t k = n - 4;
		while (k > 0 && path[k - 1] >= '0' && path[k - 1] <= '9')
			k--;
		if (k > 0 && k < n - 4 && path[k - 1] == '.')
			return k - 1;
	}
	return n;
}

static unsigned long file_seq(const char *path)
{
	size_t g = archive_group_len(path);
	return path[g] == '.' ? strtoul(path + g + 1, NULL, 10) : 0;
}

int archive_same_group(const char *a, const char *b)
{
	size_t ga = archive_group_len(a), gb = archive_group_len(b);
	return ga == gb && !strncmp(a, b, ga);
}

/* The connection number ending a group name ("...-c12"), and where its
 * "-c" starts; 0 if there is none. */
static unsigned long group_conn(const char *path, size_t g, size_t *at)
{
	size_t k = g;
	while (k > 0 && path[k - 1] >= '0' && path[k - 1] <= '9')
		k--;
	if (k == g || k < 2 || path[k - 1] != 'c' || path[k - 2] != '-')
		return 0;
	*at = k - 2;
	return strtoul(path + k, NULL, 10);
}

static int compare_span(const char *a, size_t na, const char *b, size_t nb)
{
	int c = memcmp(a, b, na < nb ? na : nb);
	return c ? c : na < nb ? -1 : na > nb;
}

/* Ordered by the key (source prefix, connection number, group, file
 * number): one source's connections in the order they happened, c2 before
 * c10, so a replayed frame meets the model its first sending built; and,
 * being a lexicographic order of total orders, it is one too, which keeps
 * each group's files together. */
static int by_group_then_seq(const void *x, const void *y)
{
	const char *a = *(const char *const *)x, *b = *(const char *const *)y;
	size_t ga = archive_group_len(a), gb = archive_group_len(b);
	size_t pa = ga, pb = gb;
	unsigned long na = group_conn(a, ga, &pa), nb = group_conn(b, gb, &pb);
	int c;

	if ((c = compare_span(a, pa, b, pb)))
		return c;
	if (na != nb)
		return na < nb ? -1 : 1;
	if ((c = compare_span(a, ga, b, gb)))
		return c;
	unsigned long sa = file_seq(a), sb = file_seq(b);
	return sa < sb ? -1 : sa > sb;
}

void archive_files_sort(char **files, size_t n)
{
	qsort(files, n, sizeof(*files), by_group_then_seq);
}
