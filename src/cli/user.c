/* smtpgate user: account administration on the credential store. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/privs.h"
#include "core/secret.h"
#include "core/util.h"
#include "server/config.h"
#include "store/cred.h"

#define PASSWORD_MAX 1024

static const char user_help[] =
	"usage: smtpgate user [--config FILE] [--data-dir DIR] COMMAND [ARGS]\n"
	"\n"
	"Manage the accounts of the credential store, <DIR>/smtpgate.db (SQLite).\n"
	"Passwords are never stored: setting one derives the verifiers the\n"
	"authentication mechanisms need (yescrypt for PLAIN and LOGIN, SCRAM-SHA-1\n"
	"and SCRAM-SHA-256 keys; the NT hash for NTLM and the HMAC-MD5 key state for\n"
	"CRAM-MD5 only with legacy verifiers, see --legacy-verifiers). A running\n"
	"server notices changes made here at its next lookup.\n"
	"\n"
	"Commands:\n"
	"  add LOGIN [--address ADDR]... [--password-stdin] [--legacy-verifiers LIST]\n"
	"        Create an account. LOGIN is 1 to 255 bytes without spaces, control\n"
	"        characters or '/', and not '.' or '..'. A LOGIN that is an address\n"
	"        (user@domain) owns that address and receives mail for it. Each\n"
	"        --address adds an address the account may send as and receives\n"
	"        mail for: user@domain, or @domain for every address of a domain.\n"
	"  passwd LOGIN [--password-stdin] [--legacy-verifiers LIST]\n"
	"        Set a new password (every verifier is derived again; legacy ones\n"
	"        no longer wanted are removed).\n"
	"  disable LOGIN\n"
	"        Refuse authentication for the account (the SMTP reply does not say\n"
	"        why); its addresses still receive mail.\n"
	"  enable LOGIN\n"
	"        Allow authentication again.\n"
	"  del LOGIN\n"
	"        Delete the account and its addresses. Stored mail is left in\n"
	"        <DIR>/mail/LOGIN.\n"
	"  list\n"
	"        One line per account: LOGIN, TAB, enabled or disabled, TAB, the\n"
	"        addresses separated by spaces.\n"
	"  address add LOGIN ADDR\n"
	"  address del LOGIN ADDR\n"
	"        Give an address (user@domain or @domain) to an account, or take it\n"
	"        away. An address belongs to at most one account.\n"
	"\n"
	"Options:\n"
	"  --config FILE      read data_dir and scram_iterations from this\n"
	"                     configuration file (the one 'smtpgate serve' uses; a\n"
	"                     relative data_dir is resolved from its directory);\n"
	"                     --data-dir overrides it\n"
	"  --data-dir DIR     the data directory (default ./smtpgate-data). Only\n"
	"                     'add' creates a missing one (mode 0700); the other\n"
	"                     commands refuse a missing one, naming the path.\n"
	"                     Both options may come before or after the command.\n"
	"  --password-stdin   read the password as one line from standard input (a\n"
	"                     trailing CR LF or LF is removed). Without it, the\n"
	"                     password is asked twice on the terminal with echo off;\n"
	"                     when standard input is not a terminal this option is\n"
	"                     required.\n"
	"  --legacy-verifiers LIST\n"
	"                     also store the fast, unsalted verifiers that NTLM and\n"
	"                     CRAM-MD5 need: 'ntlm', 'cram-md5', both, or 'none'.\n"
	"                     Default: legacy_verifiers of --config (none). A stolen\n"
	"                     database is cracked at MD4/MD5 speed from them; the\n"
	"                     server offers those mechanisms only with the same\n"
	"                     setting (docs/mechanisms.md).\n"
	"  -h, --help         show this text\n"
	"\n"
	"Exit status: 0 success, 1 failure (the message says why), 2 usage error.\n"
	"\n"
	"Examples:\n"
	"  smtpgate user add alice --address alice@example.test\n"
	"  printf '%s\\n' \"$PW\" | smtpgate user add bob@example.test --password-stdin\n"
	"  smtpgate user address add alice @example.test\n"
	"  smtpgate user list\n";

static int usage_error(const char *fmt, const char *arg)
{
	fputs("smtpgate user: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'smtpgate user --help'.\n", stderr);
	return 2;
}

static int fail(const char *what, const char *err)
{
	fprintf(stderr, "smtpgate user: %s: %s\n", what, err != NULL ? err : "failed");
	return 1;
}

/* ---- password input ---- */

/* scram_iterations of the config: verifiers derived here must match what the
 * server uses for unknown logins' fake salts. */
static struct sg_cred_params cred_params = {.scram_iterations = 4096};

static struct termios saved_tio;
static volatile sig_atomic_t echo_off;

static void restore_tty(int sig)
{
	if (echo_off)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line (without CR/LF) into buf; -1 on EOF/error or overlong line. */
static int read_line(FILE *f, char *buf, size_t size)
{
	if (fgets(buf, (int)size, f) == NULL)
		return -1;
	size_t n = strlen(buf);
	bool had_nl = n > 0 && buf[n - 1] == '\n';
	if (!had_nl && n == size - 1 && !feof(f)) {
		sg_wipe(buf, size);
		return -1; /* too long */
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

static int prompt_noecho(const char *prompt, char *buf, size_t size)
{
	struct termios tio;
	if (tcgetattr(STDIN_FILENO, &saved_tio) != 0)
		return -1;
	tio = saved_tio;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	tio.c_lflag |= ICANON;
	struct sigaction sa, old_int, old_term, old_hup;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = restore_tty;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	fputs(prompt, stderr);
	fflush(stderr);
	int ret = -1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio) == 0) {
		echo_off = 1;
		ret = read_line(stdin, buf, size);
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		echo_off = 0;
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	fputc('\n', stderr);
	return ret;
}

/* Get the password into pw (PASSWORD_MAX bytes). 0, or an exit status. */
static int get_password(bool from_stdin, char *pw)
{
	if (from_stdin) {
		if (read_line(stdin, pw, PASSWORD_MAX) != 0)
			return fail("reading the password from standard input",
				    "no line, or longer than 1023 bytes");
		if (pw[0] == '\0')
			return fail("password", "the password must not be empty");
		return 0;
	}
	if (!isatty(STDIN_FILENO)) {
		fputs("smtpgate user: standard input is not a terminal; use --password-stdin\n",
		      stderr);
		return 2;
	}
	char *again = sg_malloc(PASSWORD_MAX);
	int ret = 0;
	if (prompt_noecho("Password: ", pw, PASSWORD_MAX) != 0 ||
	    prompt_noecho("Password (again): ", again, PASSWORD_MAX) != 0) {
		ret = fail("reading the password", "no input, or longer than 1023 bytes");
	} else if (pw[0] == '\0') {
		ret = fail("password", "the password must not be empty");
	} else if (strcmp(pw, again) != 0) {
		ret = fail("password", "the two passwords differ");
	}
	sg_wipe(again, PASSWORD_MAX);
	free(again);
	return ret;
}

/* ---- commands ---- */

static int open_store(const char *data_dir, bool create, struct sg_cred_store **s)
{
	/* only `user add` makes a new data directory and store: the others on a
	 * missing one would work on an empty store that no server reads */
	if (!create && sg_cli_need_data_dir("user", data_dir, true) != 0)
		return 1;
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "smtpgate user: cannot create %s: %s\n", data_dir, strerror(errno));
		return 1;
	}
	char perr[256];
	int owner = sg_privs_become_owner(data_dir, perr, sizeof(perr));
	if (owner < 0)
		return fail("switching to the data directory's owner", perr);
	char *path = sg_asprintf("%s/smtpgate.db", data_dir);
	const char *err = NULL;
	int r = sg_cred_open(path, s, &err);
	free(path);
	if (r != 0)
		return fail("opening the credential store", err);
	return 0;
}

static void list_cb(void *ctx, const struct sg_account *a, const char *addresses)
{
	(void)ctx;
	printf("%s\t%s\t%s\n", a->login, a->disabled ? "disabled" : "enabled", addresses);
}

/* --legacy-verifiers LIST (overrides legacy_verifiers of --config) */
static int set_legacy(const char *v)
{
	const char *bad = NULL;
	if (sg_cred_legacy_parse(v, &cred_params.legacy, &bad) < 0)
		return usage_error("--legacy-verifiers: unknown verifier '%s' (ntlm, cram-md5, none)", bad);
	return 0;
}

/* add / passwd: LOGIN [--address ADDR]... [--password-stdin] [--legacy-verifiers LIST] */
static int cmd_set_password(struct sg_cred_store *s, bool add, int argc, char **argv)
{
	const char *login = NULL;
	bool from_stdin = false;
	const char **addrs = sg_calloc((size_t)argc + 1, sizeof(*addrs));
	size_t naddr = 0;
	int ret = 0;
	for (int i = 1; i < argc && ret == 0; i++) {
		if (strcmp(argv[i], "--password-stdin") == 0) {
			from_stdin = true;
		} else if (strcmp(argv[i], "--legacy-verifiers") == 0 ||
			   strncmp(argv[i], "--legacy-verifiers=", 19) == 0) {
			const char *v = argv[i][18] == '=' ? argv[i] + 19 : i + 1 < argc ? argv[++i] : NULL;
			if (v == NULL)
				ret = usage_error("%s needs a value", "--legacy-verifiers");
			else
				ret = set_legacy(v);
		} else if (add && strcmp(argv[i], "--address") == 0) {
			if (i + 1 >= argc)
				ret = usage_error("%s needs a value", "--address");
			else
				addrs[naddr++] = argv[++i];
		} else if (add && strncmp(argv[i], "--address=", 10) == 0) {
			addrs[naddr++] = argv[i] + 10;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			ret = usage_error("unknown option '%s'", argv[i]);
		} else if (login == NULL) {
			login = argv[i];
		} else {
			ret = usage_error("unexpected argument '%s'", argv[i]);
		}
	}
	if (ret == 0 && login == NULL)
		ret = usage_error("%s: missing LOGIN", argv[0]);
	const char *err = NULL;
	if (ret == 0 && add && sg_cred_validate_login(login, &err) != 0)
		ret = fail(login, err);
	for (size_t i = 0; i < naddr && ret == 0; i++)
		if (sg_cred_validate_address(addrs[i], &err) != 0)
			ret = fail(addrs[i], err);
	if (ret != 0) {
		free(addrs);
		return ret;
	}
	if (!add) {
		struct sg_account a;
		int r = sg_cred_lookup(s, login, SG_CRED_NONE, &a, NULL);
		if (r <= 0) {
			free(addrs);
			return fail(login, r == 0 ? "no such account" : "store error");
		}
	}
	char *pw = sg_malloc(PASSWORD_MAX);
	ret = get_password(from_stdin, pw);
	if (ret == 0) {
		int r = add ? sg_cred_add(s, login, pw, &cred_params, &err)
			    : sg_cred_set_password(s, login, pw, &cred_params, &err);
		if (r != 0)
			ret = fail(add ? "add" : "passwd", err);
	}
	sg_wipe(pw, PASSWORD_MAX);
	free(pw);
	for (size_t i = 0; i < naddr && ret == 0; i++) {
		if (sg_cred_add_address(s, login, addrs[i], &err) != 0) {
			ret = fail("address", err);
			/* no half-made account: take it back */
			const char *err2 = NULL;
			if (sg_cred_delete(s, login, &err2) != 0)
				fail("removing the new account again", err2);
		}
	}
	free(addrs);
	return ret;
}

static int cmd_address(struct sg_cred_store *s, int argc, char **argv)
{
	if (argc != 4)
		return usage_error("%s", "usage: smtpgate user address add|del LOGIN ADDR");
	const char *err = NULL;
	int r;
	if (strcmp(argv[1], "add") == 0)
		r = sg_cred_add_address(s, argv[2], argv[3], &err);
	else if (strcmp(argv[1], "del") == 0)
		r = sg_cred_del_address(s, argv[2], argv[3], &err);
	else
		return usage_error("address: unknown action '%s' (add or del)", argv[1]);
	return r == 0 ? 0 : fail("address", err);
}

static int cmd_login_only(struct sg_cred_store *s, int argc, char **argv)
{
	if (argc != 2)
		return usage_error("%s: expects exactly one LOGIN", argv[0]);
	const char *err = NULL;
	int r;
	if (strcmp(argv[0], "disable") == 0)
		r = sg_cred_set_disabled(s, argv[1], true, &err);
	else if (strcmp(argv[0], "enable") == 0)
		r = sg_cred_set_disabled(s, argv[1], false, &err);
	else
		r = sg_cred_delete(s, argv[1], &err);
	return r == 0 ? 0 : fail(argv[0], err);
}

static int user_main(const char *data_dir, int sub_argc, char **sub_argv);

int sg_cmd_user(int argc, char **argv)
{
	/* --config and --data-dir: taken by main() (cli/common.h), anywhere */
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(user_help, stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			return usage_error("unknown option '%s'", argv[i]);
		} else {
			break;
		}
	}
	if (i >= argc)
		return usage_error("%s", "missing COMMAND (add, passwd, disable, enable, del, list, address)");
	for (int j = i; j < argc; j++)
		if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
			fputs(user_help, stdout);
			return 0;
		}
	/* defaults, then the config file, then the command line */
	struct sg_config *cfg = sg_calloc(1, sizeof(*cfg));
	if (sg_cli_load_config("user", cfg) != 0) {
		free(cfg);
		return 1;
	}
	char *dir = sg_strdup(cfg->data_dir);
	cred_params.scram_iterations = cfg->sasl.scram_iterations;
	cred_params.legacy = cfg->legacy_verifiers;
	free(cfg);
	int ret = user_main(dir, argc - i, argv + i);
	free(dir);
	return ret;
}

static int user_main(const char *data_dir, int sub_argc, char **sub_argv)
{
	if (data_dir[0] == '\0')
		return usage_error("%s", "--data-dir must not be empty");
	const char *cmd = sub_argv[0];
	static const char *const known[] = {"add", "passwd", "disable", "enable", "del", "list", "address"};
	bool ok = false;
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
		if (strcmp(cmd, known[k]) == 0)
			ok = true;
	if (!ok)
		return usage_error("unknown command '%s'", cmd);
	if (strcmp(cmd, "list") == 0 && sub_argc != 1)
		return usage_error("%s", "list takes no arguments");

	struct sg_cred_store *s = NULL;
	int ret = open_store(data_dir, strcmp(cmd, "add") == 0, &s);
	if (ret != 0)
		return ret;
	if (strcmp(cmd, "add") == 0 || strcmp(cmd, "passwd") == 0) {
		ret = cmd_set_password(s, strcmp(cmd, "add") == 0, sub_argc, sub_argv);
	} else if (strcmp(cmd, "address") == 0) {
		ret = cmd_address(s, sub_argc, sub_argv);
	} else if (strcmp(cmd, "list") == 0) {
		const char *err = NULL;
		if (sg_cred_list(s, list_cb, NULL, &err) != 0)
			ret = fail("list", err);
		if (fflush(stdout) != 0)
			ret = 1;
	} else {
		ret = cmd_login_only(s, sub_argc, sub_argv);
	}
	sg_cred_close(&s);
	return ret;
}
