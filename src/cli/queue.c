/*
 * smtpgate queue: control the relay queue of a running server.
 *
 * The request goes through <data_dir>/queue/ctl/ (relay/relay.h): a file
 * "req.<random>" with the command, which the server's control thread
 * answers in "resp.<random>" within a fraction of a second. This works
 * whether or not the HTTP API is on, and the access rule is the one of the
 * queue files themselves (whoever may write the data directory). Files are
 * created with O_EXCL and read with O_NOFOLLOW as regular files of bounded
 * size, so a directory the service user controls cannot redirect us.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/buf.h"
#include "core/secret.h"
#include "core/util.h"

static const char queue_help[] =
	"usage: smtpgate queue [--data-dir DIR] list [--json]\n"
	"       smtpgate queue [--data-dir DIR] show ID\n"
	"       smtpgate queue [--data-dir DIR] retry [ID]\n"
	"       smtpgate queue [--data-dir DIR] delete ID\n"
	"       smtpgate queue [--data-dir DIR] bounce ID\n"
	"\n"
	"The relay queue of the server running on DIR (delivery = relay):\n"
	"  list     the queued messages, oldest first: id, age, attempts, sender,\n"
	"           pending recipients, the last error\n"
	"  show     one message, each recipient with its state and last reply (JSON)\n"
	"  retry    try one message (or all) now instead of at its next retry time\n"
	"  delete   drop a message without telling the sender\n"
	"  bounce   give up on a message: its sender gets a delivery status\n"
	"           notification for the recipients not delivered yet\n"
	"\n"
	"Options:\n"
	"  --data-dir DIR  the server's data directory (default ./smtpgate-data)\n"
	"  --json          list as JSON (what GET /api/v1/queue returns)\n"
	"  --timeout SEC   how long to wait for the server (default 10)\n"
	"  -h, --help      show this text\n"
	"\n"
	"Exit status: 0 success, 1 failure (no such message, no running server), 2 usage.\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, "smtpgate queue: %s\nTry 'smtpgate queue --help'.\n", msg);
	return 2;
}

#define RESP_MAX (16u * 1024 * 1024)

/* Send "cmd id" and wait for the answer: 0 with *status_r and the JSON in out. */
static int request(const char *data_dir, const char *cmd, const char *id, unsigned timeout_s,
		   unsigned *status_r, struct sg_buf *out)
{
	char *ctl = sg_asprintf("%s/queue/ctl", data_dir);
	struct stat st;
	if (lstat(ctl, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "smtpgate queue: %s: no relay queue here (is delivery = relay or "
				"relay_host set, and is this the server's --data-dir?)\n", ctl);
		free(ctl);
		return -1;
	}
	uint8_t rnd[8];
	char hex[17];
	sg_random(rnd, sizeof(rnd));
	sg_hex(rnd, sizeof(rnd), hex);
	char *tmp = sg_asprintf("%s/.new.%s", ctl, hex);
	char *req = sg_asprintf("%s/req.%s", ctl, hex);
	char *resp = sg_asprintf("%s/resp.%s", ctl, hex);
	int rc = -1;
	/* 0644: the server may run as another user than the one asking (root) */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "smtpgate queue: cannot write %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	char line[256];
	int n = snprintf(line, sizeof(line), "%s %s\n", cmd, id != NULL ? id : "");
	bool ok = n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) == n;
	close(fd);
	if (!ok || rename(tmp, req) != 0) {
		fprintf(stderr, "smtpgate queue: cannot place the request in %s: %s\n", ctl,
			strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* the server's control thread looks every 200 ms */
	for (unsigned waited = 0; waited < timeout_s * 20; waited++) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
		int rfd = open(resp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (rfd < 0)
			continue;
		struct stat rs;
		if (fstat(rfd, &rs) != 0 || !S_ISREG(rs.st_mode) || (uint64_t)rs.st_size > RESP_MAX) {
			close(rfd);
			unlink(resp);
			fprintf(stderr, "smtpgate queue: %s is not a response file\n", resp);
			goto out;
		}
		char chunk[65536];
		ssize_t r;
		while ((r = read(rfd, chunk, sizeof(chunk))) > 0)
			if (sg_buf_append(out, chunk, (size_t)r) < 0)
				break;
		close(rfd);
		unlink(resp);
		const char *nl = memchr(out->data, '\n', out->len);
		uint64_t status;
		char head[8] = "";
		if (nl != NULL && (size_t)(nl - (const char *)out->data) < sizeof(head)) {
			memcpy(head, out->data, (size_t)(nl - (const char *)out->data));
			head[nl - (const char *)out->data] = '\0';
		}
		if (nl == NULL || sg_parse_u64(head, 100, 599, &status) < 0) {
			fprintf(stderr, "smtpgate queue: malformed response\n");
			goto out;
		}
		size_t skip = (size_t)(nl - (const char *)out->data) + 1;
		memmove(out->data, out->data + skip, out->len - skip);
		out->len -= skip;
		out->data[out->len] = '\0';
		*status_r = (unsigned)status;
		rc = 0;
		goto out;
	}
	unlink(req);
	fprintf(stderr, "smtpgate queue: no answer within %u s: is the server running with "
			"--data-dir %s?\n", timeout_s, data_dir);
out:
	free(ctl);
	free(tmp);
	free(req);
	free(resp);
	return rc;
}

static void age_str(int64_t secs, char *out, size_t size)
{
	if (secs < 120)
		snprintf(out, size, "%" PRId64 "s", secs);
	else if (secs < 7200)
		snprintf(out, size, "%" PRId64 "m", secs / 60);
	else if (secs < 172800)
		snprintf(out, size, "%" PRId64 "h", secs / 3600);
	else
		snprintf(out, size, "%" PRId64 "d", secs / 86400);
}

static void print_list(json_t *o)
{
	json_t *msgs = json_object_get(o, "messages");
	size_t total = (size_t)json_integer_value(json_object_get(o, "total"));
	printf("%-28s %6s %8s  %-30s %7s  %s\n", "ID", "AGE", "ATTEMPTS", "SENDER", "PENDING",
	       "LAST ERROR");
	size_t i;
	json_t *m;
	int64_t now = (int64_t)time(NULL);
	json_array_foreach(msgs, i, m) {
		char age[32];
		age_str(now - json_integer_value(json_object_get(m, "arrival")), age, sizeof(age));
		const char *from = json_string_value(json_object_get(m, "from"));
		const char *err = json_string_value(json_object_get(m, "last_error"));
		printf("%-28s %6s %8" JSON_INTEGER_FORMAT "  %-30s %7" JSON_INTEGER_FORMAT "  %s\n",
		       json_string_value(json_object_get(m, "id")), age,
		       json_integer_value(json_object_get(m, "attempts")),
		       from != NULL && from[0] != '\0' ? from : "<>",
		       json_integer_value(json_object_get(m, "pending")), err != NULL ? err : "-");
	}
	printf("%zu message%s in the queue%s\n", total, total == 1 ? "" : "s",
	       json_array_size(msgs) < total ? " (the oldest shown)" : "");
}

int sg_cmd_queue(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool as_json = false;
	unsigned timeout_s = 10;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			as_json = true;
			break;
		case 't': {
			uint64_t v;
			if (sg_parse_u64(optarg, 1, 3600, &v) < 0)
				return usage_error("--timeout takes seconds (1 to 3600)");
			timeout_s = (unsigned)v;
			break;
		}
		case 'h':
			fputs(queue_help, stdout);
			return 0;
		default:
			return usage_error("unknown option");
		}
	}
	if (optind >= argc)
		return usage_error("missing command (list, show, retry, delete, bounce)");
	const char *cmd = argv[optind++];
	const char *id = optind < argc ? argv[optind++] : NULL;
	if (optind < argc)
		return usage_error("too many arguments");
	bool needs_id = strcmp(cmd, "show") == 0 || strcmp(cmd, "delete") == 0 ||
			strcmp(cmd, "bounce") == 0;
	if (strcmp(cmd, "list") != 0 && strcmp(cmd, "retry") != 0 && !needs_id)
		return usage_error("unknown command (list, show, retry, delete, bounce)");
	if (needs_id && id == NULL)
		return usage_error("this command needs a queue id");
	if (strcmp(cmd, "list") == 0 && id != NULL)
		return usage_error("list takes no id");
	if (id != NULL && (strlen(id) > 64 || strpbrk(id, " \r\n/") != NULL))
		return usage_error("not a queue id");
	struct sg_config *cfg = sg_calloc(1, sizeof(*cfg));
	if (sg_cli_load_config("queue", cfg) != 0 || sg_cli_need_data_dir("queue", cfg->data_dir, true) != 0) {
		free(cfg);
		return 1;
	}
	char data_dir[sizeof(cfg->data_dir)];
	sg_strlcpy(data_dir, cfg->data_dir, sizeof(data_dir));
	free(cfg);
	struct sg_buf out;
	sg_buf_init(&out, RESP_MAX + 64);
	unsigned status = 0;
	if (request(data_dir, cmd, id, timeout_s, &status, &out) < 0) {
		sg_buf_free(&out);
		return 1;
	}
	json_error_t je;
	json_t *o = json_loadb((const char *)out.data, out.len, 0, &je);
	int rc = status == 200 ? 0 : 1;
	if (o == NULL) {
		fprintf(stderr, "smtpgate queue: malformed response\n");
		rc = 1;
	} else if (status != 200) {
		const char *e = json_string_value(json_object_get(o, "error"));
		fprintf(stderr, "smtpgate queue: %s%s%s\n", e != NULL ? e : "failed",
			id != NULL ? ": " : "", id != NULL ? id : "");
	} else if (strcmp(cmd, "list") == 0 && !as_json) {
		print_list(o);
	} else if (strcmp(cmd, "show") == 0 || as_json) {
		char *s = json_dumps(o, JSON_INDENT(2));
		if (s != NULL)
			puts(s);
		free(s);
	} else {
		const char *st = json_string_value(json_object_get(o, "status"));
		json_t *nm = json_object_get(o, "messages");
		if (nm != NULL)
			printf("retry: %" JSON_INTEGER_FORMAT " message%s scheduled now\n",
			       json_integer_value(nm), json_integer_value(nm) == 1 ? "" : "s");
		else
			printf("%s %s: %s\n", cmd, id, st != NULL ? st : "scheduled now");
	}
	json_decref(o);
	sg_buf_free(&out);
	return rc;
}
