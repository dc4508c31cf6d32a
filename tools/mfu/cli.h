/* SPDX-License-Identifier: MIT */
/*
 * The mfu subcommands.  Each takes argc/argv from its own name on, prints
 * its --help, and reports bad usage with one line on stderr and status 2.
 */
#ifndef MFU_CLI_H
#define MFU_CLI_H

int cmd_run(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_trace(int argc, char **argv);

/* Prints "mfu CMD: MESSAGE" and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "unknown option" / "missing value" message for getopt's last failure. */
int cli_bad_option(const char *cmd, char **argv, int optind_now);

#endif
