/* smtpgate: one binary, subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct sg_subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} subcommands[] = {
	{"serve", sg_cmd_serve, "run the SMTP server (sandbox: capture, never deliver)"},
	{"version", sg_cmd_version, "print the version and the libraries in use"},
	{"probe", sg_cmd_probe, "test a server's SMTP AUTH with decoded transcripts and a diagnosis"},
	{"user", sg_cmd_user, "manage accounts: add, passwd, disable, enable, del, list, address"},
	{"fault", sg_cmd_fault, "inject failures on purpose: add, list, clear (AUTH, MAIL, RCPT...)"},
	{"token", sg_cmd_token, "mint OAuth bearer tokens (HS256) for sandbox accounts"},
	{"dkim", sg_cmd_dkim, "DKIM keys for relay mode: keygen, record (DNS TXT), sign"},
};

static void usage(FILE *f)
{
	fputs("usage: smtpgate COMMAND [OPTIONS]\n\ncommands:\n", f);
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
	fputs("\n'smtpgate COMMAND --help' describes each command.\n", f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0)
		return sg_cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "smtpgate: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
