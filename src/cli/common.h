/*
 * cli/common.h: what every subcommand that works on a data directory shares.
 *
 * One option grammar: the global options --config FILE and --data-dir DIR
 * (also --config=FILE, --data-dir=DIR) are accepted before the subcommand
 * (smtpgate --data-dir X user list) or anywhere after it (smtpgate user list
 * --data-dir X), up to a "--". main() takes them out of argv for serve, user,
 * fault and token and leaves them in sg_cli_global; the subcommands never see
 * them.
 *
 * One data directory: --data-dir, else data_dir of the --config file (a
 * relative one is resolved from the file's directory, as are the file's other
 * paths), else ./smtpgate-data. Only `serve` and `user add` create it; every
 * other command refuses a missing one with an error naming the path, rather
 * than working on a new empty store that no server reads.
 */
#ifndef SG_CLI_COMMON_H
#define SG_CLI_COMMON_H

#include <stdbool.h>

#include "server/config.h"

struct sg_cli_global {
	const char *config;   /* --config FILE, or NULL */
	const char *data_dir; /* --data-dir DIR, or NULL */
};
extern struct sg_cli_global sg_cli_global;

/* Take the global options out of argv[first..argc-1] (stopping at "--"),
 * into g; argv is compacted and the new argc returned. A global option
 * without its value: a message on stderr and -1. */
/* "--name VALUE" or "--name=VALUE" at argv[*i]: 1 taken (*i advanced past a
 * separate value), 0 not this option, -1 no value. */
int sg_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **out);

int sg_cli_take_globals(int argc, char **argv, int first, struct sg_cli_global *g);

/* cfg = defaults, then the --config file (relative paths in it resolved from
 * its directory), then --data-dir. 0, or 1 after "smtpgate CMD: ..." on
 * stderr. */
int sg_cli_load_config(const char *cmd, struct sg_config *cfg);

/* Resolve the relative paths the file at config_path set in cfg (data_dir,
 * tls_cert, tls_key, tls_client_ca, oauth_secret_file, oauth_jwks_file,
 * gss_keytab) against the file's directory. Paths still at their default
 * (empty, or data_dir "./smtpgate-data" when the file did not set it) are
 * left alone: data_dir_set says whether the file set data_dir. 0 or -1. */
int sg_cli_resolve_config_paths(struct sg_config *cfg, const char *config_path, bool data_dir_set,
				char *err, size_t errsize);

/* The data directory must exist and be a directory (and, when store is true,
 * hold smtpgate.db): 0, or 1 after an error naming the path and how to
 * create it. */
int sg_cli_need_data_dir(const char *cmd, const char *dir, bool store);

#endif
