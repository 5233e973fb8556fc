/* Options and the data directory shared by the subcommands (cli/common.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/common.h"
#include "core/util.h"

struct sg_cli_global sg_cli_global;

int sg_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return 0;
	if (argv[*i][n] == '=') {
		*out = argv[*i] + n + 1;
		return 1;
	}
	if (argv[*i][n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*out = argv[++*i];
	return 1;
}

int sg_cli_take_globals(int argc, char **argv, int first, struct sg_cli_global *g)
{
	int out = first;
	bool rest = false;
	for (int i = first; i < argc; i++) {
		if (!rest && strcmp(argv[i], "--") == 0)
			rest = true;
		if (!rest) {
			int r = sg_cli_opt_value(argc, argv, &i, "--config", &g->config);
			if (r == 0)
				r = sg_cli_opt_value(argc, argv, &i, "--data-dir", &g->data_dir);
			if (r < 0) {
				fprintf(stderr, "smtpgate: %s needs a value\n", argv[i]);
				return -1;
			}
			if (r > 0)
				continue;
		}
		argv[out++] = argv[i];
	}
	argv[out] = NULL;
	return out;
}

/* dir/value when value is relative and not empty; value is cap bytes. */
static int resolve(char *value, size_t cap, const char *dir, char *err, size_t errsize,
		   const char *key)
{
	if (value[0] == '\0' || value[0] == '/')
		return 0;
	const char *v = value;
	while (v[0] == '.' && v[1] == '/')
		v += 2;
	char *joined = v[0] == '\0' || strcmp(v, ".") == 0 ? sg_strdup(dir)
							     : sg_asprintf("%s/%s", dir, v);
	bool ok = sg_strlcpy(value, joined, cap);
	free(joined);
	if (!ok) {
		snprintf(err, errsize, "%s: the path resolved from the config file's directory is too long",
			 key);
		return -1;
	}
	return 0;
}

int sg_cli_resolve_config_paths(struct sg_config *cfg, const char *config_path, bool data_dir_set,
				char *err, size_t errsize)
{
	char *copy = sg_strdup(config_path);
	char *slash = strrchr(copy, '/');
	const char *dirpart = slash == NULL ? "." : slash == copy ? "/" : (*slash = '\0', copy);
	char real[PATH_MAX];
	if (realpath(dirpart, real) == NULL) {
		snprintf(err, errsize, "%s: %s", config_path, strerror(errno));
		free(copy);
		return -1;
	}
	free(copy);
	struct {
		char *v;
		size_t cap;
		const char *key;
	} paths[] = {
		{cfg->tls_cert, sizeof(cfg->tls_cert), "tls_cert"},
		{cfg->tls_key, sizeof(cfg->tls_key), "tls_key"},
		{cfg->tls_client_ca, sizeof(cfg->tls_client_ca), "tls_client_ca"},
		{cfg->oauth_secret_file, sizeof(cfg->oauth_secret_file), "oauth_secret_file"},
		{cfg->oauth_jwks_file, sizeof(cfg->oauth_jwks_file), "oauth_jwks_file"},
		{cfg->gss_keytab, sizeof(cfg->gss_keytab), "gss_keytab"},
	};
	if (data_dir_set && resolve(cfg->data_dir, sizeof(cfg->data_dir), real, err, errsize, "data_dir") < 0)
		return -1;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (resolve(paths[i].v, paths[i].cap, real, err, errsize, paths[i].key) < 0)
			return -1;
	return 0;
}

int sg_cli_load_config(const char *cmd, struct sg_config *cfg)
{
	sg_config_defaults(cfg);
	const struct sg_cli_global *g = &sg_cli_global;
	if (g->config != NULL) {
		char err[1400];
		/* an empty data_dir before the load tells whether the file set one */
		char def[sizeof(cfg->data_dir)];
		sg_strlcpy(def, cfg->data_dir, sizeof(def));
		cfg->data_dir[0] = '\0';
		if (sg_config_load(cfg, g->config, err, sizeof(err)) < 0) {
			fprintf(stderr, "smtpgate %s: %s\n", cmd, err);
			return 1;
		}
		bool set = cfg->data_dir[0] != '\0';
		if (!set)
			sg_strlcpy(cfg->data_dir, def, sizeof(cfg->data_dir));
		if (sg_cli_resolve_config_paths(cfg, g->config, set, err, sizeof(err)) < 0) {
			fprintf(stderr, "smtpgate %s: %s\n", cmd, err);
			return 1;
		}
	}
	if (g->data_dir != NULL) {
		if (g->data_dir[0] == '\0') {
			fprintf(stderr, "smtpgate %s: --data-dir must not be empty\n", cmd);
			return 1;
		}
		if (!sg_strlcpy(cfg->data_dir, g->data_dir, sizeof(cfg->data_dir))) {
			fprintf(stderr, "smtpgate %s: --data-dir: path too long\n", cmd);
			return 1;
		}
	}
	/* An existing data directory by its real path: a command that switches to the
	 * directory's owner must not depend on reaching it through directories only
	 * root may search (a symlink ./smtpgate-data in a checkout under /root). */
	char real[PATH_MAX];
	if (realpath(cfg->data_dir, real) != NULL && !sg_strlcpy(cfg->data_dir, real, sizeof(cfg->data_dir))) {
		fprintf(stderr, "smtpgate %s: data directory path too long\n", cmd);
		return 1;
	}
	return 0;
}

int sg_cli_need_data_dir(const char *cmd, const char *dir, bool store)
{
	struct stat st;
	int r = stat(dir, &st);
	if (r != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"smtpgate %s: no data directory at %s (%s). Give the server's with --data-dir DIR "
			"or --config FILE; 'smtpgate serve' or 'smtpgate user add' creates a new one.\n",
			cmd, dir, r != 0 ? strerror(errno) : "not a directory");
		return 1;
	}
	if (store) {
		char *db = sg_asprintf("%s/smtpgate.db", dir);
		r = stat(db, &st);
		int e = errno;
		if (r != 0) {
			fprintf(stderr,
				"smtpgate %s: no credential store at %s (%s); 'smtpgate serve' or "
				"'smtpgate user add' creates it\n",
				cmd, db, strerror(e));
			free(db);
			return 1;
		}
		free(db);
	}
	return 0;
}
