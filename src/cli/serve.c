/* smtpgate serve */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/log.h"
#include "core/util.h"
#include "server/config.h"
#include "server/server.h"

static const char serve_usage[] =
	"usage: smtpgate serve [--config FILE] [--data-dir DIR] [--listen ROLE=ADDR:PORT]...\n"
	"                      [--hostname NAME] [--log-level debug|info|warn|error]\n"
	"                      [--http ADDR:PORT | --no-http] [--http-open]\n"
	"\n"
	"Run the SMTP server in the foreground. In sandbox mode (the only mode so far)\n"
	"every accepted message is stored durably in the inbox of its account and\n"
	"never delivered.\n"
	"\n"
	"Listener roles:\n"
	"  mx           port 25's role (default 127.0.0.1:2525). STARTTLS offered, AUTH\n"
	"               optional. Mail for a local address is accepted from anyone and\n"
	"               captured in the owning account's inbox; any other domain only\n"
	"               after AUTH (else 554 5.7.1). No client address is trusted.\n"
	"  submission   port 587's role (default 127.0.0.1:2587). STARTTLS; AUTH required\n"
	"               before MAIL (530 5.7.0); PLAIN and LOGIN only after STARTTLS\n"
	"               (538 5.7.11).\n"
	"  submissions  port 465's role (default 127.0.0.1:2465). Implicit TLS; AUTH\n"
	"               required.\n"
	"\n"
	"Options:\n"
	"  --config FILE        read settings from FILE (INI style; smtpgate.conf(5)); a\n"
	"                       relative path in it is resolved from the file's directory\n"
	"  --data-dir DIR       accounts, inboxes and generated keys (default: data_dir of\n"
	"                       the config file, else ./smtpgate-data; created 0700)\n"
	"  --listen ROLE=A:P    listen on address A, port P with ROLE; repeatable; replaces\n"
	"                       the default listeners\n"
	"  --hostname NAME      name used in the greeting, EHLO and Received headers\n"
	"  --log-level LEVEL    debug, info (default), warn or error\n"
	"  --http ADDR:PORT     the sandbox HTTP API and web page (default 127.0.0.1:8025)\n"
	"  --http-open          no credentials needed for HTTP (only on a loopback address)\n"
	"  --no-http            no HTTP server\n"
	"  -h, --help           this text\n"
	"\n"
	"Without a configured certificate a self-signed one (ECDSA P-256) is created in\n"
	"DIR/tls/. Logs go to standard error, one key=value line per event.\n"
	"SIGTERM or SIGINT: stop accepting, let messages in DATA finish (up to 10 s), exit.\n";

static enum sg_log_level parse_level(const char *s)
{
	if (strcmp(s, "debug") == 0)
		return SG_DEBUG;
	if (strcmp(s, "warn") == 0)
		return SG_WARN;
	if (strcmp(s, "error") == 0)
		return SG_ERROR;
	return SG_INFO;
}

int sg_cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"hostname", required_argument, NULL, 'H'},
		{"log-level", required_argument, NULL, 'L'},
		{"http", required_argument, NULL, 'P'},
		{"http-open", no_argument, NULL, 'O'},
		{"no-http", no_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct sg_server srv;
	struct sg_config *cfg = &srv.cfg;
	char err[1400];
	const char *hostname = NULL, *level = NULL;
	const char *http = NULL;
	bool http_open = false;
	const char *listens[SG_MAX_LISTENERS];
	size_t nlistens = 0;
	int c;
	optind = 1;
	/* --config and --data-dir: taken by main() (cli/common.h), anywhere */
	while ((c = getopt_long(argc, argv, "l:H:L:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (nlistens >= SG_MAX_LISTENERS) {
				fprintf(stderr, "smtpgate serve: too many --listen\n");
				return 2;
			}
			listens[nlistens++] = optarg;
			break;
		case 'H':
			hostname = optarg;
			break;
		case 'L':
			level = optarg;
			break;
		case 'P':
			http = optarg;
			break;
		case 'O':
			http_open = true;
			break;
		case 'N':
			http = "off";
			break;
		case 'h':
			fputs(serve_usage, stdout);
			return 0;
		default:
			fputs(serve_usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smtpgate serve: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* defaults, the config file (its relative paths from its directory), --data-dir */
	if (sg_cli_load_config("serve", cfg) != 0)
		return 2;
	if (nlistens > 0) {
		cfg->nlisteners = 0; /* --listen replaces the configured listeners */
		for (size_t i = 0; i < nlistens; i++)
			if (sg_config_add_listen(cfg, listens[i], err, sizeof(err)) < 0) {
				fprintf(stderr, "smtpgate serve: %s\n", err);
				return 2;
			}
	}
	if (hostname != NULL)
		sg_strlcpy(cfg->hostname, hostname, sizeof(cfg->hostname));
	if (level != NULL)
		sg_strlcpy(cfg->log_level, level, sizeof(cfg->log_level));
	if (http != NULL)
		sg_strlcpy(cfg->http_listen, http, sizeof(cfg->http_listen));
	if (http_open)
		cfg->http_open = true;
	sg_config_finish(cfg);
	sg_log_open(cfg->syslog, parse_level(cfg->log_level));
	/* The admin token is printed at the first start only: say at the later ones how to
	 * get a new one (checked before the start, which creates the file). */
	char *token_file = sg_asprintf("%s/admin-token.sha256", cfg->data_dir);
	bool token_hint = strcmp(cfg->http_listen, "off") != 0 && !cfg->http_open &&
			  access(token_file, F_OK) == 0;
	free(token_file);
	if (sg_server_init(&srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgate serve: %s\n", err);
		sg_server_deinit(&srv);
		return 1;
	}
	if (token_hint) {
		fprintf(stderr,
			"smtpgate: HTTP admin token: made at the first start (only its SHA-256 is "
			"kept in %s/admin-token.sha256); for a new one: smtpgate token admin --rotate "
			"--data-dir %s, then restart serve\n",
			cfg->data_dir, cfg->data_dir);
		fflush(stderr);
	}
	int r = sg_server_run(&srv);
	sg_server_deinit(&srv);
	return r;
}
