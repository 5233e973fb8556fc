/* smtpgate: one binary, subcommands. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"

static const struct sg_subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	bool globals; /* takes --config / --data-dir */
} subcommands[] = {
	{"serve", sg_cmd_serve, "run the SMTP server (sandbox: capture, never deliver)", true},
	{"version", sg_cmd_version, "print the version and the libraries in use", false},
	{"probe", sg_cmd_probe, "test a server's SMTP AUTH with decoded transcripts and a diagnosis", false},
	{"user", sg_cmd_user, "manage accounts: add, passwd, disable, enable, del, list, address", true},
	{"fault", sg_cmd_fault, "inject failures on purpose: add, list, clear (AUTH, MAIL, RCPT...)", true},
	{"token", sg_cmd_token, "OAuth bearer tokens (issue, verify) and the HTTP admin token (admin)", true},
	{"db", sg_cmd_db, "the shared PostgreSQL schema of several nodes: migrate, status", true},
	{"dkim", sg_cmd_dkim, "DKIM keys for relay mode: keygen, record (DNS TXT), sign", false},
	{"queue", sg_cmd_queue, "the relay queue of a running server: list, show, retry, delete, bounce", true},
};

static void usage(FILE *f)
{
	fputs("usage: smtpgate [--config FILE] [--data-dir DIR] COMMAND [ARGS] [OPTIONS]\n"
	      "       smtpgate -V | --version | -h | --help\n\ncommands:\n",
	      f);
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
	fputs("\nglobal options (", f);
	const char *sep = "";
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (subcommands[i].globals) {
			fprintf(f, "%s%s", sep, subcommands[i].name);
			sep = ", ";
		}
	fputs("), before or after the command words:\n"
	      "  --config FILE     the configuration file 'smtpgate serve' uses; a relative\n"
	      "                    data_dir (or other path) in it is resolved from its directory\n"
	      "  --data-dir DIR    the data directory (default: data_dir of the config file, else\n"
	      "                    ./smtpgate-data); only serve and user add create it\n"
	      "\n'smtpgate COMMAND --help' describes each command.\n",
	      f);
}

int main(int argc, char **argv)
{
	struct sg_cli_global *g = &sg_cli_global;
	/* global options before the command word */
	int n = 1;
	while (n < argc && argv[n][0] == '-') {
		if (strcmp(argv[n], "--help") == 0 || strcmp(argv[n], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[n], "--version") == 0 || strcmp(argv[n], "-V") == 0)
			return sg_cmd_version(1, (char *[]){"version", NULL});
		const char **slot = NULL;
		size_t len = 0;
		if (strncmp(argv[n], "--config", 8) == 0 && (argv[n][8] == '\0' || argv[n][8] == '='))
			slot = &g->config, len = 8;
		else if (strncmp(argv[n], "--data-dir", 10) == 0 &&
			 (argv[n][10] == '\0' || argv[n][10] == '='))
			slot = &g->data_dir, len = 10;
		if (slot == NULL) {
			fprintf(stderr, "smtpgate: unknown option '%s'\n", argv[n]);
			usage(stderr);
			return 2;
		}
		if (argv[n][len] == '=') {
			*slot = argv[n] + len + 1;
			n++;
		} else if (n + 1 < argc) {
			*slot = argv[n + 1];
			n += 2;
		} else {
			fprintf(stderr, "smtpgate: %s needs a value\n", argv[n]);
			return 2;
		}
	}
	if (n >= argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[n], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (strcmp(argv[n], subcommands[i].name) != 0)
			continue;
		if (subcommands[i].globals) {
			argc = sg_cli_take_globals(argc, argv, n + 1, g);
			if (argc < 0)
				return 2;
		} else if (g->config != NULL || g->data_dir != NULL) {
			fprintf(stderr, "smtpgate: '%s' takes no --config or --data-dir\n", argv[n]);
			return 2;
		}
		return subcommands[i].run(argc - n, argv + n);
	}
	fprintf(stderr, "smtpgate: unknown command '%s'\n", argv[n]);
	usage(stderr);
	return 2;
}
