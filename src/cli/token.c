/* smtpgate token: mint (and check) OAuth 2.0 bearer tokens for the sandbox. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "http/http.h"
#include "core/privs.h"
#include "core/secret.h"
#include "core/util.h"
#include "sasl/jwt.h"
#include "server/config.h"
#include "server/stores.h"
#include "store/cred.h"
#include "store/pg.h"

#define TTL_DEFAULT 3600
#define TTL_MAX (366u * 24 * 3600)

static const char token_help[] =
	"usage: smtpgate token issue LOGIN [--ttl SECONDS] [--data-dir DIR] [--config FILE]\n"
	"                            [--issuer ISS] [--audience AUD]\n"
	"       smtpgate token verify TOKEN|- [--data-dir DIR] [--config FILE]\n"
	"                            [--issuer ISS] [--audience AUD] [--claim NAME]\n"
	"       smtpgate token admin --rotate [--data-dir DIR] [--config FILE]\n"
	"\n"
	"Mint OAuth 2.0 bearer tokens that the sandbox server accepts with SASL\n"
	"XOAUTH2 and OAUTHBEARER (RFC 7628), so that mail clients and scripts can\n"
	"exercise token authentication without an identity provider.\n"
	"\n"
	"A token is a JWT (RFC 7519) signed with HMAC-SHA256 (HS256). Its claims are\n"
	"\"sub\" (the account's login), \"email\" (the same, when the login is an\n"
	"address), \"iat\" (now), \"exp\" (now + the lifetime) and, when given, \"iss\"\n"
	"and \"aud\". The signing key is the one the server uses: the file named by\n"
	"oauth_secret_file in the configuration, or else <DIR>/oauth-hs256.key, 32\n"
	"random octets created (mode 0600) by whichever of 'serve' and 'token issue'\n"
	"runs first. Anyone who can read that file can mint tokens for every account.\n"
	"\n"
	"Commands:\n"
	"  issue LOGIN\n"
	"        Print a token for LOGIN on standard output, followed by a newline.\n"
	"        The account must exist in <DIR>/smtpgate.db (see 'smtpgate user');\n"
	"        a disabled account gets a token with a warning: the server will\n"
	"        refuse it. Nothing else is written to standard output, so\n"
	"        TOKEN=$(smtpgate token issue alice) works.\n"
	"  verify TOKEN\n"
	"        Check a token as the server would (signature, expiry, issuer,\n"
	"        audience, the login claim) and print \"valid SUBJECT\" or\n"
	"        \"invalid REASON\" (expired_token, bad_signature, wrong_issuer,\n"
	"        wrong_audience, not_yet_valid, malformed_token, ...). '-' reads\n"
	"        the token from standard input. Keys come from the same places as\n"
	"        for issue, plus oauth_jwks_file (RS256, ES256); nothing is created.\n"
	"        Like the server, it allows 60 seconds of clock skew: a token is\n"
	"        still valid until 60 s after its \"exp\", and \"iat\" and \"nbf\" may\n"
	"        be up to 60 s in the future.\n"
	"  admin --rotate\n"
	"        Make a new HTTP admin token and print it (once: only its SHA-256 is\n"
	"        kept, in <DIR>/admin-token.sha256, replacing the old one). A running\n"
	"        server reads that file when it starts: restart it afterwards.\n"
	"\n"
	"Options:\n"
	"  --ttl SECONDS      lifetime of the token, 1 to 31622400 (default 3600)\n"
	"  --data-dir DIR     the server's data directory (default ./smtpgate-data,\n"
	"                     or data_dir from --config); it must exist\n"
	"  --config FILE      read data_dir, oauth_secret_file, oauth_jwks_file,\n"
	"                     oauth_issuer, oauth_audience and oauth_login_claim from\n"
	"                     the file 'smtpgate serve' uses; options given here win\n"
	"                     (these two may come before or after the command)\n"
	"  --rotate           admin: replace the admin token (required, on purpose)\n"
	"  --issuer ISS       the \"iss\" claim (default: oauth_issuer, or none). A\n"
	"                     server with oauth_issuer set refuses other issuers.\n"
	"  --audience AUD     the \"aud\" claim (default: oauth_audience, or none). A\n"
	"                     server with oauth_audience set refuses other audiences.\n"
	"  --claim NAME       verify: the claim that names the account (default:\n"
	"                     oauth_login_claim, or \"sub\")\n"
	"  -h, --help         show this text\n"
	"\n"
	"Exit status: 0 success (verify: the token is valid), 1 failure (verify: the\n"
	"token is refused), 2 usage error.\n"
	"\n"
	"Examples:\n"
	"  smtpgate user add alice@example.test\n"
	"  TOKEN=$(smtpgate token issue alice@example.test --ttl 600)\n"
	"  curl --url smtp://localhost:2587 --ssl-reqd -k --login-options AUTH=OAUTHBEARER \\\n"
	"       --user alice@example.test --oauth2-bearer \"$TOKEN\" \\\n"
	"       --mail-from alice@example.test --mail-rcpt bob@example.test -T message.eml\n"
	"  echo \"$TOKEN\" | smtpgate probe localhost:2587 --insecure --auth XOAUTH2 \\\n"
	"       --user alice@example.test --token-stdin\n"
	"  smtpgate token verify \"$TOKEN\"\n";

static int usage_error(const char *fmt, const char *arg)
{
	fputs("smtpgate token: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'smtpgate token --help'.\n", stderr);
	return 2;
}

static int fail(const char *what, const char *err)
{
	fprintf(stderr, "smtpgate token: %s: %s\n", what, err != NULL ? err : "failed");
	return 1;
}

struct token_opts {
	const char *cmd;
	const char *arg;        /* LOGIN or TOKEN */
	const char *issuer;
	const char *audience;
	const char *claim;
	const char *ttl;
	bool rotate;
};

static int parse_args(int argc, char **argv, struct token_opts *o)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
		{"--issuer", offsetof(struct token_opts, issuer)},
		{"--audience", offsetof(struct token_opts, audience)},
		{"--claim", offsetof(struct token_opts, claim)},
		{"--ttl", offsetof(struct token_opts, ttl)},
	};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(token_help, stdout);
			return 0;
		}
		bool matched = false;
		for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]) && !matched; k++) {
			const char **slot = (const char **)((char *)o + opts[k].off);
			int r = sg_cli_opt_value(argc, argv, &i, opts[k].name, slot);
			if (r < 0)
				return usage_error("%s needs a value", opts[k].name);
			matched = r == 1;
		}
		if (matched)
			continue;
		if (strcmp(argv[i], "--rotate") == 0) {
			o->rotate = true;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0')
			return usage_error("unknown option '%s'", argv[i]);
		if (o->cmd == NULL)
			o->cmd = argv[i];
		else if (o->arg == NULL)
			o->arg = argv[i];
		else
			return usage_error("unexpected argument '%s'", argv[i]);
	}
	if (o->cmd == NULL)
		return usage_error("%s", "missing command (issue, verify or admin)");
	if (strcmp(o->cmd, "admin") == 0) {
		if (o->arg != NULL)
			return usage_error("admin: unexpected argument '%s'", o->arg);
		if (!o->rotate)
			return usage_error("%s", "admin: the admin token cannot be shown again (only its "
						 "SHA-256 is kept); --rotate makes a new one");
		if (o->ttl != NULL || o->claim != NULL || o->issuer != NULL || o->audience != NULL)
			return usage_error("%s", "admin takes only --rotate");
		return -1;
	}
	if (o->rotate)
		return usage_error("%s", "--rotate applies to admin only");
	if (strcmp(o->cmd, "issue") != 0 && strcmp(o->cmd, "verify") != 0)
		return usage_error("unknown command '%s'", o->cmd);
	if (o->arg == NULL)
		return usage_error("%s", strcmp(o->cmd, "issue") == 0 ? "issue: missing LOGIN"
								  : "verify: missing TOKEN");
	if (strcmp(o->cmd, "verify") == 0 && o->ttl != NULL)
		return usage_error("%s", "--ttl applies to issue only");
	if (strcmp(o->cmd, "issue") == 0 && o->claim != NULL)
		return usage_error("%s", "--claim applies to verify only");
	return -1; /* go on */
}

static const char *nonempty(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : NULL;
}

/* The server's key: oauth_secret_file, else <data_dir>/oauth-hs256.key. */
static int load_key(const struct sg_config *cfg, const char *data_dir, bool create,
		    uint8_t **key, size_t *keylen)
{
	const char *err = NULL;
	if (cfg->oauth_secret_file[0] != '\0') {
		if (sg_oauth_secret_load(cfg->oauth_secret_file, key, keylen, &err) < 0)
			return fail(cfg->oauth_secret_file, err);
		return 0;
	}
	if (create) {
		if (sg_oauth_secret_load_or_create(data_dir, key, keylen, &err) < 0)
			return fail(data_dir, err);
		return 0;
	}
	char *path = sg_asprintf("%s/%s", data_dir, SG_OAUTH_SECRET_FILE);
	struct stat st;
	int r = 0;
	if (stat(path, &st) != 0 && errno == ENOENT) {
		if (cfg->oauth_jwks_file[0] == '\0')
			r = fail(path, "no key yet ('smtpgate token issue' or 'serve' creates it)");
	} else if (sg_oauth_secret_load(path, key, keylen, &err) < 0) {
		r = fail(path, err);
	}
	free(path);
	return r;
}

static int cmd_issue(const struct token_opts *o, const struct sg_config *cfg, const char *data_dir)
{
	uint64_t ttl = TTL_DEFAULT;
	if (o->ttl != NULL && sg_parse_u64(o->ttl, 1, TTL_MAX, &ttl) < 0)
		return usage_error("--ttl: '%s' is not a number of seconds from 1 to 31622400",
				   o->ttl);
	const char *err = NULL;
	if (sg_cred_validate_login(o->arg, &err) != 0)
		return fail(o->arg, err);

	/* The account must exist: a token for nobody only teaches confusion. */
	struct sg_pg *pg = NULL;
	struct sg_cred_store *store = NULL;
	char serr[1200];
	if (sg_stores_pg_new(cfg, &pg, serr, sizeof(serr)) < 0)
		return fail("opening the credential store", serr);
	if (pg != NULL && sg_stores_open_cred(cfg, pg, &store, serr, sizeof(serr)) < 0) {
		sg_pg_free(&pg);
		return fail("opening the credential store", serr);
	}
	char *db = sg_asprintf("%s/smtpgate.db", data_dir);
	struct stat st;
	if (pg == NULL && stat(db, &st) != 0) {
		fprintf(stderr,
			"smtpgate token: no credential store at %s; create the account first "
			"with 'smtpgate user --data-dir %s add %s'\n",
			db, data_dir, o->arg);
		free(db);
		return 1;
	}
	if (pg == NULL && sg_cred_open(db, &store, &err) != 0) {
		int r = fail(db, err);
		free(db);
		return r;
	}
	free(db);
	struct sg_account acct;
	struct sg_verifier v;
	memset(&acct, 0, sizeof(acct));
	int found = sg_cred_lookup(store, o->arg, SG_CRED_NONE, &acct, &v);
	sg_cred_close(&store);
	sg_pg_free(&pg);
	if (found < 0)
		return fail(o->arg, "the credential store could not be read");
	if (found == 0) {
		fprintf(stderr, "smtpgate token: no account '%s' in %s/smtpgate.db (see 'smtpgate "
				"user list')\n",
			o->arg, data_dir);
		return 1;
	}
	if (acct.disabled)
		fprintf(stderr, "smtpgate token: warning: account '%s' is disabled; the server "
				"will refuse this token\n",
			acct.login);

	const char *iss = nonempty(o->issuer != NULL ? o->issuer : cfg->oauth_issuer);
	const char *aud = nonempty(o->audience != NULL ? o->audience : cfg->oauth_audience);
	if (cfg->oauth_secret_file[0] == '\0' && cfg->oauth_jwks_file[0] != '\0')
		fprintf(stderr, "smtpgate token: warning: the configuration names oauth_jwks_file "
				"and no oauth_secret_file; the server may not accept HS256 tokens\n");
	if (strcmp(cfg->oauth_login_claim, "email") == 0 && strchr(acct.login, '@') == NULL)
		fprintf(stderr, "smtpgate token: warning: oauth_login_claim is \"email\" and the "
				"login is not an address; the server will refuse this token\n");

	uint8_t *key = NULL;
	size_t keylen = 0;
	int r = load_key(cfg, data_dir, true, &key, &keylen);
	if (r != 0)
		return r;
	char *token = sg_jwt_mint_hs256(key, keylen, acct.login, iss, aud, sg_time(),
					(unsigned)ttl);
	sg_oauth_secret_free(&key, keylen);
	if (token == NULL)
		return fail(acct.login, "cannot mint a token (is the login valid UTF-8?)");
	printf("%s\n", token);
	sg_free_secret_str(&token);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_verify(const struct token_opts *o, struct sg_config *cfg, const char *data_dir)
{
	char buf[SG_JWT_MAX + 3];
	const char *token = o->arg;
	if (strcmp(token, "-") == 0) {
		if (fgets(buf, sizeof(buf), stdin) == NULL)
			return fail("standard input", "no token");
		size_t n = strlen(buf);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		token = buf;
	}
	uint8_t *key = NULL;
	size_t keylen = 0;
	int r = load_key(cfg, data_dir, false, &key, &keylen);
	if (r != 0)
		return r;
	void *jwks = NULL;
	const char *err = NULL;
	if (cfg->oauth_jwks_file[0] != '\0' && sg_jwks_load(cfg->oauth_jwks_file, &jwks, &err) < 0) {
		sg_oauth_secret_free(&key, keylen);
		return fail(cfg->oauth_jwks_file, err);
	}
	struct sg_sasl_config sc = cfg->sasl;
	sc.oauth_hs256_secret = key;
	sc.oauth_hs256_secret_len = keylen;
	sc.oauth_jwks = jwks;
	sc.oauth_issuer = nonempty(o->issuer != NULL ? o->issuer : cfg->oauth_issuer);
	sc.oauth_audience = nonempty(o->audience != NULL ? o->audience : cfg->oauth_audience);
	sc.oauth_login_claim = nonempty(o->claim != NULL ? o->claim : cfg->oauth_login_claim);
	char subject[SG_LOGIN_MAX + 1];
	const char *reason = NULL;
	r = sg_jwt_verify(&sc, token, sg_time(), subject, sizeof(subject), &reason);
	sg_wipe(buf, sizeof(buf));
	sg_oauth_secret_free(&key, keylen);
	sg_jwks_free(&jwks);
	if (r == 1) {
		printf("valid %s\n", subject);
		return 0;
	}
	printf("invalid %s\n", reason != NULL ? reason : "internal_error");
	return 1;
}

/* admin --rotate: a new HTTP admin token replaces the old one's hash. */
static int cmd_admin_rotate(const char *data_dir)
{
	char *path = sg_asprintf("%s/admin-token.sha256", data_dir);
	if (unlink(path) != 0 && errno != ENOENT) {
		int r = fail(path, strerror(errno));
		free(path);
		return r;
	}
	char token[128];
	bool created = false;
	const char *err = NULL;
	int r = 0;
	if (sg_http_admin_token_init(data_dir, token, sizeof(token), &created, &err) < 0 || !created) {
		r = fail(path, err != NULL ? err : "another process made a token meanwhile");
	} else {
		printf("%s\n", token);
		fprintf(stderr, "smtpgate token: new HTTP admin token (only its SHA-256 is kept in %s); "
				"restart a running server to use it\n",
			path);
		r = fflush(stdout) == 0 ? 0 : 1;
	}
	sg_wipe(token, sizeof(token));
	free(path);
	return r;
}

int sg_cmd_token(int argc, char **argv)
{
	struct token_opts o;
	memset(&o, 0, sizeof(o));
	int r = parse_args(argc, argv, &o);
	if (r >= 0)
		return r;
	/* --config and --data-dir: taken by main() (cli/common.h), anywhere */
	struct sg_config *cfg = sg_calloc(1, sizeof(*cfg));
	if (sg_cli_load_config("token", cfg) != 0) {
		free(cfg);
		return 1;
	}
	sg_config_finish(cfg);
	const char *data_dir = cfg->data_dir;
	/* never a new, empty data directory: verify with only configured keys needs none */
	bool keys_elsewhere = cfg->oauth_secret_file[0] != '\0' || cfg->oauth_jwks_file[0] != '\0';
	/* store = postgresql with a configured key: accounts and key live elsewhere */
	bool shared = sg_stores_is_pg(cfg) && cfg->oauth_secret_file[0] != '\0' && strcmp(o.cmd, "admin") != 0;
	if (!shared && (strcmp(o.cmd, "verify") != 0 || !keys_elsewhere) &&
	    sg_cli_need_data_dir("token", data_dir, strcmp(o.cmd, "issue") == 0) != 0) {
		free(cfg);
		return 1;
	}
	char perr[256];
	int owner = shared ? 0 : sg_privs_become_owner(data_dir, perr, sizeof(perr));
	if (owner < 0) {
		fprintf(stderr, "smtpgate token: %s\n", perr);
		free(cfg);
		return 1;
	}
	if (data_dir[0] == '\0')
		r = usage_error("%s", "--data-dir is empty");
	else if (strcmp(o.cmd, "issue") == 0)
		r = cmd_issue(&o, cfg, data_dir);
	else if (strcmp(o.cmd, "admin") == 0)
		r = cmd_admin_rotate(data_dir);
	else
		r = cmd_verify(&o, cfg, data_dir);
	free(cfg);
	return r;
}
