/* smtpgate fault: fault-injection rules (store/faults.h) from the command line. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/util.h"
#include "store/faults.h"

static const char fault_help[] =
	"usage: smtpgate fault add --stage STAGE ACTION [SCOPE] [WHEN] [--data-dir DIR] [--config FILE]\n"
	"       smtpgate fault add --spec 'stage=auth reply=535 5.7.8 ... times=2'\n"
	"       smtpgate fault list\n"
	"       smtpgate fault clear [ID]\n"
	"\n"
	"Make the SMTP server fail on purpose, to see what an application does when\n"
	"AUTH (or MAIL, RCPT, DATA...) fails. Rules live in <DIR>/smtpgate.db; a\n"
	"running server picks up changes within a fraction of a second. Each fault\n"
	"injected at the AUTH stage shows in the auth log as injected.\n"
	"\n"
	"  --stage STAGE       connect, ehlo, auth, mail, rcpt or data\n"
	"ACTION (one of):\n"
	"  --reply 'CODE [X.Y.Z] TEXT'   answer this instead of running the command\n"
	"  --close             with --reply: close the connection after it (421 ...)\n"
	"  --drop              close the connection without a reply\n"
	"  --delay MS          wait MS milliseconds first (alone: then carry on normally)\n"
	"SCOPE (default: every session):\n"
	"  --listener NAME     only on this listener\n"
	"  --login LOGIN       only for this account (the login claimed in AUTH)\n"
	"WHEN (default: every time):\n"
	"  --times N           the next N times, then never\n"
	"  --every N           every Nth time\n"
	"  --probability P     each time with probability P (0..1)\n"
	"\n"
	"  --data-dir DIR      the server's data directory (default: data_dir of --config,\n"
	"                      else ./smtpgate-data); it must exist, with its smtpgate.db\n"
	"  --config FILE       read data_dir from the file 'smtpgate serve' uses\n"
	"                      (options may come before or after the command)\n"
	"  -h, --help          this text\n"
	"\n"
	"Replies worth trying: 535 5.7.8 Authentication credentials invalid;\n"
	"454 4.7.0 Temporary authentication failure; 534 5.7.9 Authentication\n"
	"mechanism is too weak; 538 5.7.11 Encryption required for requested\n"
	"authentication mechanism; 530 5.7.0 Authentication required; 550 5.7.1\n"
	"...; 421 4.7.0 Try again later (with --close).\n"
	"\n"
	"Examples:\n"
	"  smtpgate fault add --stage auth --reply '535 5.7.8 Authentication credentials invalid' --times 2\n"
	"  smtpgate fault add --stage connect --reply '421 4.7.0 Too busy' --close --probability 0.3\n"
	"  smtpgate fault add --stage rcpt --drop --login alice@example.test --every 3\n"
	"  smtpgate fault list\n"
	"  smtpgate fault clear\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "smtpgate fault: %s%s%s\nTry 'smtpgate fault --help'.\n", msg,
		arg != NULL ? " " : "", arg != NULL ? arg : "");
	return 2;
}

static void print_rule(const struct sg_fault_rule *f)
{
	char action[400];
	switch (f->action.kind) {
	case SG_FAULT_REPLY:
	case SG_FAULT_REPLY_CLOSE:
		snprintf(action, sizeof(action), "reply '%u%s%s%s%s'%s", f->action.code,
			 f->action.enhanced[0] != '\0' ? " " : "", f->action.enhanced,
			 f->action.text[0] != '\0' ? " " : "", f->action.text,
			 f->action.kind == SG_FAULT_REPLY_CLOSE ? " close" : "");
		break;
	case SG_FAULT_DROP:
		snprintf(action, sizeof(action), "drop");
		break;
	default:
		action[0] = '\0';
		break;
	}
	char delay[40] = "";
	if (f->action.delay_ms > 0)
		snprintf(delay, sizeof(delay), "%sdelay %u ms", action[0] != '\0' ? " " : "",
			 f->action.delay_ms);
	char when[64];
	switch (f->when) {
	case SG_FAULT_TIMES:
		snprintf(when, sizeof(when), "times %u (%llu left)", f->n,
			 f->fired >= f->n ? 0ULL : (unsigned long long)(f->n - f->fired));
		break;
	case SG_FAULT_EVERY:
		snprintf(when, sizeof(when), "every %u", f->n);
		break;
	case SG_FAULT_PROBABILITY:
		snprintf(when, sizeof(when), "probability %g", f->probability);
		break;
	default:
		snprintf(when, sizeof(when), "always");
		break;
	}
	char scope[320];
	if (f->listener[0] != '\0' || f->login[0] != '\0')
		snprintf(scope, sizeof(scope), "%s%s%s%s%s", f->listener[0] != '\0' ? "listener=" : "",
			 f->listener, f->listener[0] != '\0' && f->login[0] != '\0' ? " " : "",
			 f->login[0] != '\0' ? "login=" : "", f->login);
	else
		snprintf(scope, sizeof(scope), "global");
	printf("%ld\t%s\t%s\t%s%s\t%s\tmatched=%llu fired=%llu\t%s\n", f->id,
	       sg_fault_stage_name(f->stage), scope, action, delay, when, f->matched, f->fired,
	       f->origin);
}

int sg_cmd_fault(int argc, char **argv)
{
	static const struct option opts[] = {
		{"stage", required_argument, NULL, 's'},
		{"reply", required_argument, NULL, 'r'},
		{"close", no_argument, NULL, 'c'},
		{"drop", no_argument, NULL, 'D'},
		{"delay", required_argument, NULL, 'w'},
		{"listener", required_argument, NULL, 'l'},
		{"login", required_argument, NULL, 'u'},
		{"times", required_argument, NULL, 't'},
		{"every", required_argument, NULL, 'e'},
		{"probability", required_argument, NULL, 'p'},
		{"spec", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *stage = NULL, *reply = NULL, *delay = NULL;
	const char *listener = NULL, *login = NULL, *times = NULL, *every = NULL, *prob = NULL;
	const char *spec = NULL;
	bool close_after = false, drop = false;
	int c;
	optind = 1;
	/* getopt_long permutes: options may come before or after the command;
	 * --config and --data-dir are taken by main() (cli/common.h) */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': stage = optarg; break;
		case 'r': reply = optarg; break;
		case 'c': close_after = true; break;
		case 'D': drop = true; break;
		case 'w': delay = optarg; break;
		case 'l': listener = optarg; break;
		case 'u': login = optarg; break;
		case 't': times = optarg; break;
		case 'e': every = optarg; break;
		case 'p': prob = optarg; break;
		case 'S': spec = optarg; break;
		case 'h':
			fputs(fault_help, stdout);
			return 0;
		default:
			fputs(fault_help, stderr);
			return 2;
		}
	}
	if (optind >= argc)
		return usage_error("missing command (add, list or clear)", NULL);
	const char *cmd = argv[optind++];
	struct sg_fault_rule rule;
	const char *err = NULL;
	if (strcmp(cmd, "add") == 0) {
		if (optind < argc)
			return usage_error("unexpected argument", argv[optind]);
		if (spec != NULL) {
			if (sg_faults_parse_spec(spec, &rule, &err) < 0)
				return usage_error(err, NULL);
		} else {
			memset(&rule, 0, sizeof(rule));
			rule.probability = 1.0;
			if (stage == NULL)
				return usage_error("add needs --stage (or --spec)", NULL);
			if (sg_fault_stage_parse(stage, &rule.stage) < 0)
				return usage_error("unknown stage", stage);
			if (reply != NULL && sg_faults_parse_reply(reply, &rule.action, &err) < 0)
				return usage_error(err, NULL);
			if (close_after) {
				if (reply == NULL)
					return usage_error("--close needs --reply", NULL);
				rule.action.kind = SG_FAULT_REPLY_CLOSE;
			}
			if (drop) {
				if (reply != NULL)
					return usage_error("--drop and --reply exclude each other", NULL);
				rule.action.kind = SG_FAULT_DROP;
			}
			if (delay != NULL) {
				uint64_t ms;
				if (sg_parse_u64(delay, 1, 600000, &ms) < 0)
					return usage_error("--delay takes milliseconds 1..600000, not", delay);
				rule.action.delay_ms = (unsigned)ms;
				if (rule.action.kind == SG_FAULT_NONE)
					rule.action.kind = SG_FAULT_DELAY;
			}
			if (rule.action.kind == SG_FAULT_NONE)
				return usage_error("add needs --reply, --drop or --delay", NULL);
			if (listener != NULL && !sg_strlcpy(rule.listener, listener, sizeof(rule.listener)))
				return usage_error("listener name too long", NULL);
			if (login != NULL && !sg_strlcpy(rule.login, login, sizeof(rule.login)))
				return usage_error("login too long", NULL);
			int modes = (times != NULL) + (every != NULL) + (prob != NULL);
			if (modes > 1)
				return usage_error("use only one of --times, --every, --probability", NULL);
			uint64_t n;
			if (times != NULL || every != NULL) {
				const char *v = times != NULL ? times : every;
				if (sg_parse_u64(v, 1, 1000000000, &n) < 0)
					return usage_error("--times/--every take a count >= 1, not", v);
				rule.when = times != NULL ? SG_FAULT_TIMES : SG_FAULT_EVERY;
				rule.n = (unsigned)n;
			}
			if (prob != NULL) {
				char *end = NULL;
				errno = 0;
				double p = strtod(prob, &end);
				if (errno != 0 || end == prob || *end != '\0' || !(p >= 0.0 && p <= 1.0))
					return usage_error("--probability takes a number 0..1, not", prob);
				rule.when = SG_FAULT_PROBABILITY;
				rule.probability = p;
			}
			if (sg_faults_validate(&rule, &err) < 0)
				return usage_error(err, NULL);
		}
	} else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "clear") == 0) {
		if (optind + (strcmp(cmd, "clear") == 0 ? 1 : 0) < argc)
			return usage_error("unexpected argument", argv[argc - 1]);
	} else {
		return usage_error("unknown command", cmd);
	}

	struct sg_config *cfg = sg_calloc(1, sizeof(*cfg));
	if (sg_cli_load_config("fault", cfg) != 0 || sg_cli_need_data_dir("fault", cfg->data_dir, true) != 0) {
		free(cfg);
		return 1;
	}
	char data_dir[sizeof(cfg->data_dir)];
	sg_strlcpy(data_dir, cfg->data_dir, sizeof(data_dir));
	free(cfg);
	struct sg_faults *f = NULL;
	if (sg_faults_open(data_dir, &f, &err) < 0) {
		fprintf(stderr, "smtpgate fault: %s\n", err);
		return 1;
	}
	int ret = 0;
	if (strcmp(cmd, "add") == 0) {
		long id = 0;
		if (sg_faults_add(f, &rule, "cli", &id, &err) < 0) {
			fprintf(stderr, "smtpgate fault: %s\n", err);
			ret = 1;
		} else {
			printf("%ld\n", id);
		}
	} else if (strcmp(cmd, "list") == 0) {
		struct sg_fault_rule *rules = NULL;
		size_t n = 0;
		if (sg_faults_list(f, &rules, &n, &err) < 0) {
			fprintf(stderr, "smtpgate fault: %s\n", err);
			ret = 1;
		}
		for (size_t i = 0; i < n; i++)
			print_rule(&rules[i]);
		free(rules);
	} else if (optind < argc) {
		uint64_t id;
		if (sg_parse_u64(argv[optind], 1, INT64_MAX, &id) < 0) {
			sg_faults_close(&f);
			return usage_error("not a rule id:", argv[optind]);
		}
		int d = sg_faults_delete(f, (long)id, &err);
		if (d < 0) {
			fprintf(stderr, "smtpgate fault: %s\n", err);
			ret = 1;
		} else if (d == 0) {
			fprintf(stderr, "smtpgate fault: no rule %s\n", argv[optind]);
			ret = 1;
		}
	} else {
		size_t n = 0;
		if (sg_faults_clear(f, NULL, &n, &err) < 0) {
			fprintf(stderr, "smtpgate fault: %s\n", err);
			ret = 1;
		} else {
			printf("%zu rule%s deleted\n", n, n == 1 ? "" : "s");
		}
	}
	sg_faults_close(&f);
	return ret;
}
