/* SPDX-License-Identifier: MIT */
/*
 * mfu: the command-line front end.  Dispatches to one subcommand per file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
	"usage: mfu COMMAND [ARGS]\n"
	"Live GPU FLOPs utilization (HFU/MFU) for training jobs.\n"
	"\n"
	"  run [--json FILE] [--interval SEC] -- CMD ARGS...   profile CMD with the shim\n"
	"  top [--connect HOST:PORT]                           live per-source table from mfud\n"
	"  report [--json FILE] FILE...                        summary of archived frames\n"
	"  replay [--speed X|--max] FILE...                    stream archived frames to a collector\n"
	"  trace -o OUT.json FILE...                           archived frames as a Perfetto trace\n"
	"\n"
	"Each command takes --help.  mfu --version prints the version.\n";

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "mfu %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

int cli_bad_option(const char *cmd, char **argv, int optind_now)
{
	return cli_usage_error(cmd, "unknown option or missing value: '%s' (see mfu %s --help)",
			       argv[optind_now - 1], cmd);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {{"run", cmd_run}, {"top", cmd_top}, {"report", cmd_report}, {"replay", cmd_replay}, {"trace", cmd_trace}};

	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("mfu %s\n", MFU_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	if (!strcmp(argv[1], "attach")) {
		fprintf(stderr, "mfu: '%s' is not available in this version yet\n", argv[1]);
		return 2;
	}
	fprintf(stderr, "mfu: unknown command '%s' (see mfu --help)\n", argv[1]);
	return 2;
}
