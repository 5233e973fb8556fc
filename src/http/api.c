/*
 * api.c: the JSON API under /api/v1 and /metrics (issue 6). Every handler
 * runs on an HTTP thread after http.c authenticated the caller; r->who says
 * what it may see: an account sees its own inbox, its own auth events and
 * the fault rules scoped to its login; the admin sees everything.
 *
 *   GET    /api/v1/me
 *   GET    /api/v1/inboxes
 *   GET    /api/v1/inboxes/{login}/messages?limit=&before=&q=
 *   DELETE /api/v1/inboxes/{login}/messages
 *   GET    /api/v1/messages/{id}            parsed (GMime)
 *   GET    /api/v1/messages/{id}/raw        the stored file (text/plain)
 *   GET    /api/v1/messages/{id}/attachments/{n}
 *   DELETE /api/v1/messages/{id}
 *   GET    /api/v1/auth-events?login=&result=&limit=&before=
 *   POST   /api/v1/events/ticket            a single-use ticket for EventSource
 *   GET    /api/v1/faults, POST /api/v1/faults, DELETE /api/v1/faults[/{id}]
 *   GET    /metrics                          Prometheus text format
 * (GET /api/v1/events, the stream, is in http.c.)
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/metrics.h"
#include "core/util.h"
#include "http/http_int.h"
#include "store/cred.h"
#include "store/events.h"
#include "store/faults.h"
#include "store/mail.h"

#define LIST_DEFAULT 50
#define LIST_MAX 500

static void send_json(struct sg_http_resp *resp, unsigned status, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	resp->status = status;
	resp->content_type = "application/json";
	sg_buf_reset(&resp->body);
	if (s == NULL) {
		sg_http_error(resp, 500, "cannot encode JSON");
		return;
	}
	sg_buf_append_str(&resp->body, s);
	free(s);
}

static bool method_is(const struct sg_http_req *r, const char *m)
{
	return strcmp(r->method, m) == 0 || (strcmp(m, "GET") == 0 && strcmp(r->method, "HEAD") == 0);
}

/* ---- inboxes ---- */

struct names {
	char **v;
	size_t n;
};

static void names_add(struct names *ns, const char *s)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], s) == 0)
			return;
	ns->v = sg_realloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
	ns->v[ns->n++] = sg_strdup(s);
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct acct_list {
	struct names logins;
	json_t *addresses; /* login -> [addresses] */
};

static void acct_cb(void *ctx, const struct sg_account *a, const char *addresses)
{
	struct acct_list *al = ctx;
	names_add(&al->logins, a->login);
	json_t *arr = json_array();
	const char *p = addresses != NULL ? addresses : "";
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		const char *e = strchr(p, ' ');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (n > 0) {
			char *one = sg_strndup(p, n);
			json_t *j = json_string(one);
			if (j != NULL)
				json_array_append_new(arr, j);
			free(one);
		}
		p += n;
	}
	json_object_set_new(al->addresses, a->login, arr);
}

/* Every inbox the caller may see: accounts plus Maildirs left by deleted
 * accounts (admin), or the caller's own. */
static void visible_inboxes(struct sg_http_req *r, struct acct_list *al)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	memset(al, 0, sizeof(*al));
	al->addresses = json_object();
	sg_cred_list(ctx->creds, acct_cb, al, NULL);
	if (!r->who.admin) {
		struct names mine = {0};
		names_add(&mine, r->who.login);
		names_free(&al->logins);
		al->logins = mine;
		return;
	}
	char *dir = sg_asprintf("%s/mail", ctx->data_dir);
	DIR *d = opendir(dir);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' && sg_cred_validate_login(de->d_name, NULL) == 0)
				names_add(&al->logins, de->d_name);
		closedir(d);
	}
	free(dir);
	if (al->logins.n > 1)
		qsort(al->logins.v, al->logins.n, sizeof(char *), cmp_str);
}

static void get_inboxes(struct sg_http_req *r, struct sg_http_resp *resp)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	struct acct_list al;
	visible_inboxes(r, &al);
	json_t *arr = json_array();
	for (size_t i = 0; i < al.logins.n; i++) {
		struct sg_mail_entry *e = NULL;
		size_t n = 0;
		if (sg_mail_list(ctx->mail, al.logins.v[i], &e, &n, NULL) < 0)
			n = 0;
		json_t *o = json_object();
		json_t *login = json_string(al.logins.v[i]);
		if (login == NULL) {
			json_decref(o);
			free(e);
			continue;
		}
		json_object_set_new(o, "login", login);
		json_object_set_new(o, "messages", json_integer((json_int_t)n));
		json_object_set_new(o, "latest_ms", json_integer(n > 0 ? e[0].mtime_ns / 1000000 : 0));
		json_t *addrs = json_object_get(al.addresses, al.logins.v[i]);
		json_object_set(o, "addresses", addrs != NULL ? addrs : json_array());
		if (addrs == NULL)
			json_decref(json_object_get(o, "addresses"));
		json_object_set_new(o, "account", json_boolean(addrs != NULL));
		json_array_append_new(arr, o);
		free(e);
	}
	names_free(&al.logins);
	json_decref(al.addresses);
	send_json(resp, 200, json_pack("{s:o}", "inboxes", arr));
}

static size_t arg_size(const struct sg_http_req *r, const char *name, size_t def, size_t max)
{
	const char *v = sg_http_arg(r, name);
	uint64_t x;
	if (v == NULL || sg_parse_u64(v, 1, max, &x) < 0)
		return def;
	return (size_t)x;
}

static void list_messages(struct sg_http_req *r, struct sg_http_resp *resp, const char *login)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	size_t limit = arg_size(r, "limit", LIST_DEFAULT, LIST_MAX);
	const char *before = sg_http_arg(r, "before");
	const char *q = sg_http_arg(r, "q");
	if (before != NULL && before[0] == '\0')
		before = NULL;
	struct sg_mail_entry *e = NULL;
	size_t n = 0;
	const char *err = NULL;
	if (sg_mail_list(ctx->mail, login, &e, &n, &err) < 0) {
		sg_http_error(resp, 500, err != NULL ? err : "cannot list the inbox");
		return;
	}
	size_t start = 0;
	if (before != NULL) {
		start = n; /* an unknown cursor gives an empty page */
		for (size_t i = 0; i < n; i++)
			if (strcmp(e[i].id, before) == 0) {
				start = i + 1;
				break;
			}
	}
	json_t *arr = json_array();
	size_t matched = 0;
	const char *last = NULL;
	bool more = false;
	for (size_t i = start; i < n; i++) {
		struct sg_msg_summary s;
		if (sg_msg_summary_load(ctx->mail, login, e[i].id, e[i].mtime_ns, e[i].size, &s) < 0)
			continue;
		if (sg_msg_summary_match(&s, q)) {
			if (matched == limit) {
				more = true;
				sg_msg_summary_free(&s);
				break;
			}
			json_array_append_new(arr, sg_msg_summary_json(&s));
			matched++;
			last = e[i].id;
		}
		sg_msg_summary_free(&s);
	}
	json_t *o = json_object();
	json_object_set_new(o, "inbox", json_string(login));
	json_object_set_new(o, "total", json_integer((json_int_t)n));
	json_object_set_new(o, "messages", arr);
	json_object_set_new(o, "next_before", more && last != NULL ? json_string(last) : json_null());
	free(e);
	send_json(resp, 200, o);
}

static void inbox_route(struct sg_http_req *r, struct sg_http_resp *resp, const char *rest)
{
	/* rest = "{login}/messages" */
	const char *slash = strchr(rest, '/');
	if (slash == NULL || strcmp(slash, "/messages") != 0) {
		sg_http_error(resp, 404, "not found");
		return;
	}
	char login[256];
	size_t ll = (size_t)(slash - rest);
	if (ll == 0 || ll >= sizeof(login)) {
		sg_http_error(resp, 404, "no such inbox");
		return;
	}
	memcpy(login, rest, ll);
	login[ll] = '\0';
	if (sg_cred_validate_login(login, NULL) < 0) {
		sg_http_error(resp, 404, "no such inbox");
		return;
	}
	if (!sg_http_may_see(&r->who, login)) {
		sg_http_error(resp, 403, "this inbox belongs to another account");
		return;
	}
	if (method_is(r, "GET")) {
		list_messages(r, resp, login);
	} else if (method_is(r, "DELETE")) {
		size_t n = 0;
		const char *err = NULL;
		if (sg_mail_delete_all(sg_http_ctx(r->h)->mail, login, &n, &err) < 0) {
			sg_http_error(resp, 500, err != NULL ? err : "delete failed");
			return;
		}
		send_json(resp, 200, json_pack("{s:s,s:I}", "inbox", login, "deleted", (json_int_t)n));
	} else {
		sg_http_error(resp, 405, "method not allowed");
	}
}

/* ---- one message ---- */

static bool find_message(struct sg_http_req *r, const char *id, char *login_r, size_t size)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (!sg_mail_id_valid(id))
		return false;
	if (!r->who.admin) {
		int fd = sg_mail_open_message(ctx->mail, r->who.login, id);
		if (fd < 0)
			return false;
		close(fd);
		sg_strlcpy(login_r, r->who.login, size);
		return true;
	}
	struct acct_list al;
	visible_inboxes(r, &al);
	bool found = false;
	for (size_t i = 0; i < al.logins.n && !found; i++) {
		int fd = sg_mail_open_message(ctx->mail, al.logins.v[i], id);
		if (fd >= 0) {
			close(fd);
			sg_strlcpy(login_r, al.logins.v[i], size);
			found = true;
		}
	}
	names_free(&al.logins);
	json_decref(al.addresses);
	return found;
}

static void message_route(struct sg_http_req *r, struct sg_http_resp *resp, const char *rest)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	char id[SG_MAIL_ID_MAX];
	const char *slash = strchr(rest, '/');
	size_t il = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
	if (il == 0 || il >= sizeof(id)) {
		sg_http_error(resp, 404, "no such message");
		return;
	}
	memcpy(id, rest, il);
	id[il] = '\0';
	const char *sub = slash != NULL ? slash + 1 : "";
	char login[256];
	/* A message in an inbox the caller may not see is "not found", like
	 * one that does not exist: ids do not reveal other inboxes. */
	if (!find_message(r, id, login, sizeof(login))) {
		sg_http_error(resp, 404, "no such message");
		return;
	}
	if (sub[0] == '\0' && method_is(r, "GET")) {
		json_t *o = sg_msg_detail_json(ctx->mail, login, id);
		if (o == NULL) {
			sg_http_error(resp, 404, "no such message");
			return;
		}
		send_json(resp, 200, o);
	} else if (sub[0] == '\0' && method_is(r, "DELETE")) {
		const char *err = NULL;
		int d = sg_mail_delete(ctx->mail, login, id, &err);
		if (d < 0)
			sg_http_error(resp, 500, err != NULL ? err : "delete failed");
		else if (d == 0)
			sg_http_error(resp, 404, "no such message");
		else
			send_json(resp, 200, json_pack("{s:s,s:s,s:I}", "id", id, "inbox", login, "deleted",
						       (json_int_t)1));
	} else if (strcmp(sub, "raw") == 0 && method_is(r, "GET")) {
		/* streamed from the file: never held in memory whole */
		int fd = sg_mail_open_message(ctx->mail, login, id);
		if (fd < 0) {
			sg_http_error(resp, 404, "no such message");
			return;
		}
		/* text/plain, never message/rfc822 or text/html: the browser must
		 * not render anything a stranger sent */
		resp->status = 200;
		resp->content_type = "text/plain; charset=utf-8";
		resp->fd = fd;
		snprintf(resp->disposition, sizeof(resp->disposition), "inline; filename=\"%s.eml\"", id);
	} else if (strcmp(sub, "release") == 0 && method_is(r, "POST")) {
		sg_api_release(r, resp, login, id);
	} else if (strncmp(sub, "attachments/", 12) == 0 && method_is(r, "GET")) {
		uint64_t idx;
		if (sg_parse_u64(sub + 12, 0, 10000, &idx) < 0) {
			sg_http_error(resp, 404, "no such attachment");
			return;
		}
		char *name = NULL, *type = NULL;
		sg_buf_reset(&resp->body);
		int a = sg_msg_attachment(ctx->mail, login, id, (size_t)idx, &resp->body, &name, &type);
		if (a <= 0) {
			sg_http_error(resp, a == 0 ? 404 : 500, a == 0 ? "no such attachment" : "cannot decode");
		} else {
			/* always a download, never rendered on our origin */
			resp->status = 200;
			resp->content_type = "application/octet-stream";
			char safe[200];
			size_t k = 0;
			for (const char *p = name; *p != '\0' && k + 1 < sizeof(safe); p++)
				safe[k++] = ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\' ||
					     (unsigned char)*p >= 0x7f) ? '_' : *p;
			safe[k] = '\0';
			snprintf(resp->disposition, sizeof(resp->disposition),
				 "attachment; filename=\"%s\"", safe);
		}
		free(name);
		free(type);
	} else {
		sg_http_error(resp, method_is(r, "GET") || method_is(r, "DELETE") ? 404 : 405,
			      "not found");
	}
}

/* ---- auth events ---- */

static void get_auth_events(struct sg_http_req *r, struct sg_http_resp *resp)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (ctx->events == NULL) {
		sg_http_error(resp, 503, "no event log");
		return;
	}
	struct sg_events_filter f;
	memset(&f, 0, sizeof(f));
	f.login = sg_http_arg(r, "login");
	f.result = sg_http_arg(r, "result");
	f.limit = arg_size(r, "limit", 100, 1000);
	const char *before = sg_http_arg(r, "before");
	uint64_t b;
	if (before != NULL && sg_parse_u64(before, 1, INT64_MAX, &b) == 0)
		f.before_id = (int64_t)b;
	const char *since = sg_http_arg(r, "since_ms");
	if (since != NULL && sg_parse_u64(since, 1, INT64_MAX, &b) == 0)
		f.since_ms = (int64_t)b;
	if (!r->who.admin) {
		if (f.login != NULL && f.login[0] != '\0' && strcmp(f.login, r->who.login) != 0) {
			sg_http_error(resp, 403, "an account sees only its own auth events");
			return;
		}
		f.login = r->who.login;
	}
	struct sg_auth_event_row *rows = NULL;
	size_t n = 0;
	const char *err = NULL;
	if (sg_events_query(ctx->events, &f, &rows, &n, &err) < 0) {
		sg_http_error(resp, 500, err != NULL ? err : "query failed");
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char *s = sg_auth_event_json(&rows[i].e, rows[i].id);
		json_t *o = json_loads(s, 0, NULL);
		if (o != NULL)
			json_array_append_new(arr, o);
		free(s);
	}
	free(rows);
	send_json(resp, 200, json_pack("{s:o}", "events", arr));
}

/* ---- faults ---- */

static json_t *rule_json(const struct sg_fault_rule *f)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_integer(f->id));
	json_object_set_new(o, "stage", json_string(sg_fault_stage_name(f->stage)));
	json_object_set_new(o, "listener", json_string(f->listener));
	json_t *l = json_string(f->login);
	json_object_set_new(o, "login", l != NULL ? l : json_string(""));
	json_object_set_new(o, "action", json_string(sg_fault_kind_name(f->action.kind)));
	if (f->action.kind == SG_FAULT_REPLY || f->action.kind == SG_FAULT_REPLY_CLOSE) {
		char reply[300];
		snprintf(reply, sizeof(reply), "%u%s%s%s%s", f->action.code,
			 f->action.enhanced[0] != '\0' ? " " : "", f->action.enhanced,
			 f->action.text[0] != '\0' ? " " : "", f->action.text);
		json_object_set_new(o, "reply", json_string(reply));
	}
	json_object_set_new(o, "close", json_boolean(f->action.kind == SG_FAULT_REPLY_CLOSE));
	json_object_set_new(o, "drop", json_boolean(f->action.kind == SG_FAULT_DROP));
	json_object_set_new(o, "delay_ms", json_integer(f->action.delay_ms));
	json_object_set_new(o, "mode", json_string(sg_fault_when_name(f->when)));
	if (f->when == SG_FAULT_TIMES || f->when == SG_FAULT_EVERY)
		json_object_set_new(o, "n", json_integer(f->n));
	if (f->when == SG_FAULT_PROBABILITY)
		json_object_set_new(o, "probability", json_real(f->probability));
	if (f->when == SG_FAULT_TIMES)
		json_object_set_new(o, "remaining",
				    json_integer(f->fired >= f->n ? 0 : (json_int_t)(f->n - f->fired)));
	json_object_set_new(o, "matched", json_integer((json_int_t)f->matched));
	json_object_set_new(o, "fired", json_integer((json_int_t)f->fired));
	json_object_set_new(o, "created", json_integer(f->created));
	json_object_set_new(o, "origin", json_string(f->origin));
	return o;
}

static bool rule_visible(const struct sg_http_req *r, const struct sg_fault_rule *f)
{
	return r->who.admin || strcmp(f->login, r->who.login) == 0;
}

/* The JSON body: {"spec": "stage=auth reply=..."} or the fields one by one:
 * stage, reply, close, drop, delay_ms, listener, login, times | every |
 * probability. */
static int rule_from_json(json_t *o, struct sg_fault_rule *f, const char **err)
{
	const char *spec = json_string_value(json_object_get(o, "spec"));
	if (spec != NULL)
		return sg_faults_parse_spec(spec, f, err);
	memset(f, 0, sizeof(*f));
	f->probability = 1.0;
	const char *stage = json_string_value(json_object_get(o, "stage"));
	if (stage == NULL || sg_fault_stage_parse(stage, &f->stage) < 0) {
		*err = "stage must be one of connect, ehlo, auth, mail, rcpt, data";
		return -1;
	}
	const char *reply = json_string_value(json_object_get(o, "reply"));
	if (reply != NULL && sg_faults_parse_reply(reply, &f->action, err) < 0)
		return -1;
	json_t *d = json_object_get(o, "delay_ms");
	if (d != NULL) {
		if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > 600000) {
			*err = "delay_ms must be an integer 0..600000";
			return -1;
		}
		f->action.delay_ms = (unsigned)json_integer_value(d);
		if (f->action.kind == SG_FAULT_NONE && f->action.delay_ms > 0)
			f->action.kind = SG_FAULT_DELAY;
	}
	if (json_is_true(json_object_get(o, "close"))) {
		if (f->action.kind != SG_FAULT_REPLY) {
			*err = "close needs a reply";
			return -1;
		}
		f->action.kind = SG_FAULT_REPLY_CLOSE;
	}
	if (json_is_true(json_object_get(o, "drop")))
		f->action.kind = SG_FAULT_DROP;
	const char *listener = json_string_value(json_object_get(o, "listener"));
	if (listener != NULL && !sg_strlcpy(f->listener, listener, sizeof(f->listener))) {
		*err = "listener too long";
		return -1;
	}
	const char *login = json_string_value(json_object_get(o, "login"));
	if (login != NULL && !sg_strlcpy(f->login, login, sizeof(f->login))) {
		*err = "login too long";
		return -1;
	}
	int modes = 0;
	json_t *v;
	if ((v = json_object_get(o, "times")) != NULL) {
		modes++;
		f->when = SG_FAULT_TIMES;
		f->n = json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 1000000000
			       ? (unsigned)json_integer_value(v) : 0;
	}
	if ((v = json_object_get(o, "every")) != NULL) {
		modes++;
		f->when = SG_FAULT_EVERY;
		f->n = json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 1000000000
			       ? (unsigned)json_integer_value(v) : 0;
	}
	if ((v = json_object_get(o, "probability")) != NULL) {
		modes++;
		f->when = SG_FAULT_PROBABILITY;
		f->probability = json_is_number(v) ? json_number_value(v) : -1.0;
	}
	if (modes > 1) {
		*err = "use only one of times, every, probability";
		return -1;
	}
	return sg_faults_validate(f, err);
}

static void faults_route(struct sg_http_req *r, struct sg_http_resp *resp, const char *rest)
{
	struct sg_faults *faults = sg_http_ctx(r->h)->faults;
	if (faults == NULL) {
		sg_http_error(resp, 503, "fault injection is not available");
		return;
	}
	const char *err = NULL;
	if (rest[0] == '\0' && method_is(r, "GET")) {
		struct sg_fault_rule *rules = NULL;
		size_t n = 0;
		if (sg_faults_list(faults, &rules, &n, &err) < 0) {
			sg_http_error(resp, 500, err != NULL ? err : "cannot list");
			return;
		}
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++)
			if (rule_visible(r, &rules[i]))
				json_array_append_new(arr, rule_json(&rules[i]));
		free(rules);
		send_json(resp, 200, json_pack("{s:o}", "faults", arr));
	} else if (rest[0] == '\0' && method_is(r, "POST")) {
		json_error_t je;
		json_t *o = json_loadb((const char *)r->body->data, r->body->len, 0, &je);
		if (o == NULL || !json_is_object(o)) {
			json_decref(o);
			sg_http_error(resp, 400, "the body must be a JSON object");
			return;
		}
		struct sg_fault_rule f;
		int pr = rule_from_json(o, &f, &err);
		json_decref(o);
		if (pr < 0) {
			sg_http_error(resp, 400, err != NULL ? err : "bad rule");
			return;
		}
		if (!r->who.admin) {
			if (f.login[0] != '\0' && strcmp(f.login, r->who.login) != 0) {
				sg_http_error(resp, 403, "an account may add rules only for its own login");
				return;
			}
			sg_strlcpy(f.login, r->who.login, sizeof(f.login));
		}
		long id = 0;
		if (sg_faults_add(faults, &f, "api", &id, &err) < 0) {
			sg_http_error(resp, 400, err != NULL ? err : "cannot add");
			return;
		}
		f.id = id;
		f.created = (long long)time(NULL);
		sg_strlcpy(f.origin, "api", sizeof(f.origin));
		send_json(resp, 201, rule_json(&f));
	} else if (rest[0] == '\0' && method_is(r, "DELETE")) {
		size_t deleted = 0;
		if (r->who.admin) {
			if (sg_faults_clear(faults, NULL, &deleted, &err) < 0) {
				sg_http_error(resp, 500, err != NULL ? err : "cannot clear");
				return;
			}
		} else {
			struct sg_fault_rule *rules = NULL;
			size_t n = 0;
			sg_faults_list(faults, &rules, &n, &err);
			for (size_t i = 0; i < n; i++)
				if (rule_visible(r, &rules[i]) && sg_faults_delete(faults, rules[i].id, &err) == 1)
					deleted++;
			free(rules);
		}
		send_json(resp, 200, json_pack("{s:I}", "deleted", (json_int_t)deleted));
	} else if (rest[0] == '/' && method_is(r, "DELETE")) {
		uint64_t id;
		if (sg_parse_u64(rest + 1, 1, INT64_MAX, &id) < 0) {
			sg_http_error(resp, 404, "no such rule");
			return;
		}
		struct sg_fault_rule *rules = NULL;
		size_t n = 0;
		bool may = false;
		sg_faults_list(faults, &rules, &n, &err);
		for (size_t i = 0; i < n; i++)
			if (rules[i].id == (long)id)
				may = rule_visible(r, &rules[i]);
		free(rules);
		int d = may ? sg_faults_delete(faults, (long)id, &err) : 0;
		if (d < 0)
			sg_http_error(resp, 500, err != NULL ? err : "cannot delete");
		else if (d == 0)
			sg_http_error(resp, 404, "no such rule");
		else
			send_json(resp, 200, json_pack("{s:I}", "deleted", (json_int_t)1));
	} else {
		sg_http_error(resp, 405, "method not allowed");
	}
}

/* ---- dispatch ---- */

void sg_api_handle(struct sg_http_req *r, struct sg_http_resp *resp)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	const char *p = r->path;
	if (strcmp(p, "/metrics") == 0) {
		if (!method_is(r, "GET")) {
			sg_http_error(resp, 405, "method not allowed");
			return;
		}
		if (ctx->metrics == NULL) {
			sg_http_error(resp, 503, "no metrics");
			return;
		}
		char *text = sg_metrics_render(ctx->metrics);
		sg_buf_reset(&resp->body);
		sg_buf_append_str(&resp->body, text);
		free(text);
		sg_api_queue_metrics(ctx, &resp->body);
		resp->status = 200;
		resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
		return;
	}
	p += strlen("/api/v1/");
	if (strcmp(p, "me") == 0 && method_is(r, "GET")) {
		send_json(resp, 200, json_pack("{s:b,s:s?}", "admin", r->who.admin, "login",
					       r->who.admin ? NULL : r->who.login));
	} else if (strcmp(p, "inboxes") == 0 && method_is(r, "GET")) {
		get_inboxes(r, resp);
	} else if (strncmp(p, "inboxes/", 8) == 0) {
		inbox_route(r, resp, p + 8);
	} else if (strncmp(p, "messages/", 9) == 0) {
		message_route(r, resp, p + 9);
	} else if (strcmp(p, "queue") == 0 || strncmp(p, "queue/", 6) == 0) {
		sg_api_queue(r, resp, p + 5);
	} else if (strcmp(p, "auth-events") == 0 && method_is(r, "GET")) {
		get_auth_events(r, resp);
	} else if (strcmp(p, "events/ticket") == 0 && method_is(r, "POST")) {
		char t[64];
		if (sg_http_ticket_new(r->h, &r->who, t, sizeof(t)) < 0)
			sg_http_error(resp, 500, "cannot make a ticket");
		else
			send_json(resp, 200, json_pack("{s:s,s:i}", "ticket", t, "expires_in", 60));
	} else if (strcmp(p, "faults") == 0) {
		faults_route(r, resp, "");
	} else if (strncmp(p, "faults/", 7) == 0) {
		faults_route(r, resp, p + 6);
	} else {
		sg_http_error(resp, 404, "not found");
	}
}
