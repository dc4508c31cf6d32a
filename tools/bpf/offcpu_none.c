/* SPDX-License-Identifier: MIT */
/*
 * The off-CPU tracer when mfushim is built without BPF (meson -Dbpf=disabled,
 * or libbpf, bpftool or clang missing): creation fails and says why, so the
 * collector reports BPF as off with that reason.
 */
#include <errno.h>
#include <stdio.h>

#include "offcpu_tracer.h"

int offcpu_tracer_new(struct loop *l, const struct offcpu_tracer_opts *opts, offcpu_fn fn, void *arg,
		      struct offcpu_tracer **out, char *why, size_t whylen)
{
	*out = NULL;
	snprintf(why, whylen, "built without BPF support (meson -Dbpf, needs libbpf, bpftool and clang)");
	return -EOPNOTSUPP;
}

void offcpu_tracer_free(struct offcpu_tracer *t)
{
}

int offcpu_watch(struct offcpu_tracer *t, uint32_t pid)
{
	return -EOPNOTSUPP;
}

int offcpu_unwatch(struct offcpu_tracer *t, uint32_t pid)
{
	return -EOPNOTSUPP;
}

int offcpu_tracer_poll(struct offcpu_tracer *t)
{
	return -EOPNOTSUPP;
}

void offcpu_tracer_stats(struct offcpu_tracer *t, struct offcpu_stats *st)
{
	*st = (struct offcpu_stats){0};
}

int offcpu_tracer_stack(struct offcpu_tracer *t, int32_t stack_id, uint64_t *ips, size_t n)
{
	return -EOPNOTSUPP;
}
