/* smtpgate db: the PostgreSQL schema (store = postgresql). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/log.h"
#include "core/util.h"
#include "server/config.h"
#include "server/stores.h"
#include "store/pg.h"

static const char db_help[] =
	"usage: smtpgate db COMMAND --config FILE\n"
	"\n"
	"The shared PostgreSQL database of several smtpgate nodes (store =\n"
	"postgresql with pg_conninfo or pg_conninfo_file in FILE; docs/scaling.md).\n"
	"\n"
	"Commands:\n"
	"  migrate   create the schema, or bring it to this version of smtpgate.\n"
	"            Versioned and idempotent: each step runs once, in the same\n"
	"            transaction that records it, under an advisory lock, so every\n"
	"            node may run it at start-up, at the same time.\n"
	"  status    print the schema version of the database and the one this\n"
	"            smtpgate needs (exit status 1 when they differ)\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

int sg_cmd_db(int argc, char **argv)
{
	const char *cmd = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(db_help, stdout);
			return 0;
		} else if (argv[i][0] != '-' && cmd == NULL) {
			cmd = argv[i];
		} else {
			fprintf(stderr, "smtpgate db: unexpected '%s' (see --help)\n", argv[i]);
			return 2;
		}
	}
	/* --config is a global option (cli/common.h), taken out of argv by main() */
	const char *config = sg_cli_global.config;
	if (config == NULL || cmd == NULL || (strcmp(cmd, "migrate") != 0 && strcmp(cmd, "status") != 0)) {
		fputs(db_help, stderr);
		return 2;
	}
	sg_log_open(false, SG_WARN);
	struct sg_config *cfg = sg_calloc(1, sizeof(*cfg));
	char err[1200];
	struct sg_pg *pg = NULL;
	int ret = 1;
	if (sg_cli_load_config("db", cfg) != 0)
		goto out;
	if (sg_stores_pg_new(cfg, &pg, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgate db: %s\n", err);
		goto out;
	}
	if (pg == NULL) {
		fprintf(stderr, "smtpgate db: %s does not say store = postgresql\n", config);
		goto out;
	}
	if (strcmp(cmd, "migrate") == 0) {
		int from = 0, to = 0;
		const char *error = NULL;
		if (sg_pg_migrate(pg, &from, &to, &error) < 0) {
			fprintf(stderr, "smtpgate db migrate: %s\n", error);
			goto out;
		}
		if (from == to)
			printf("schema already at version %d\n", to);
		else
			printf("schema migrated from version %d to %d\n", from, to);
		ret = 0;
	} else {
		int v = sg_pg_schema_version(pg);
		if (v < 0) {
			fprintf(stderr, "smtpgate db status: cannot reach PostgreSQL\n");
			goto out;
		}
		printf("database schema version %d, this smtpgate needs %d\n", v, SG_PG_SCHEMA_VERSION);
		ret = v == SG_PG_SCHEMA_VERSION ? 0 : 1;
	}
out:
	sg_pg_free(&pg);
	free(cfg);
	return ret;
}
