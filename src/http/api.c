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
#include "store/search.h"

#define LIST_DEFAULT 50
#define LIST_MAX 500
/* how long a search waits for the indexer to catch up with the mail already accepted */
#define SEARCH_SYNC_MS 2000

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

/* Is the request's method one of methods ("GET, DELETE")? If not: 405 with
 * Allow (RFC 9110 section 15.5.6), false. */
static bool allow(const struct sg_http_req *r, struct sg_http_resp *resp, const char *methods)
{
	const char *p = methods;
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		if ((strlen(r->method) == n && strncmp(p, r->method, n) == 0) ||
		    (n == 3 && strncmp(p, "GET", 3) == 0 && strcmp(r->method, "HEAD") == 0))
			return true;
		p += n;
		while (*p == ',' || *p == ' ')
			p++;
	}
	sg_http_error(resp, 405, "method not allowed");
	resp->allow = methods;
	return false;
}

/* 400 naming the parameter: {"error": "...", "parameter": name}. */
static void bad_param(struct sg_http_resp *resp, const char *name, const char *why)
{
	json_t *o = json_object();
	char *msg = sg_asprintf("invalid query parameter '%s': %s", name, why);
	json_object_set_new(o, "error", json_string(msg));
	json_t *n = json_string(name);
	json_object_set_new(o, "parameter", n != NULL ? n : json_string("?"));
	free(msg);
	char *txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	resp->status = 400;
	resp->content_type = "application/json";
	sg_buf_reset(&resp->body);
	sg_buf_append_str(&resp->body, txt != NULL ? txt : "{\"error\":\"bad parameter\"}");
	free(txt);
}

/* Only the parameters an endpoint knows; 400 for any other. */
static bool known_args(const struct sg_http_req *r, struct sg_http_resp *resp,
		       const char *const *allowed)
{
	char name[128];
	if (!sg_http_unknown_arg(r, allowed, name, sizeof(name)))
		return true;
	bad_param(resp, name, "unknown parameter");
	return false;
}

/* An integer parameter in [min, max]; absent: def. False (400 sent) when
 * present but not such an integer. */
static bool int_arg(const struct sg_http_req *r, struct sg_http_resp *resp, const char *name,
		    uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
	const char *v = sg_http_arg(r, name);
	*out = def;
	if (v == NULL)
		return true;
	if (sg_parse_u64(v, min, max, out) < 0) {
		char why[96];
		snprintf(why, sizeof(why), "must be an integer from %llu to %llu",
			 (unsigned long long)min, (unsigned long long)max);
		bad_param(resp, name, why);
		return false;
	}
	return true;
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

/* "read" and "tags" of a message (from the index; unread and none when it
 * is not indexed yet). */
static void add_state(const struct sg_http_ctx *ctx, json_t *o, const char *login, const char *id)
{
	bool read = false;
	char tags[4096] = "";
	if (ctx->search != NULL)
		sg_search_state(ctx->search, login, id, &read, tags, sizeof(tags));
	json_object_set_new(o, "read", json_boolean(read));
	json_t *arr = json_array();
	for (const char *p = tags; *p != '\0';) {
		size_t l = strcspn(p, " ");
		if (l > 0) {
			char *t = sg_strndup(p, l);
			json_array_append_new(arr, json_string(t));
			free(t);
		}
		p += l;
		while (*p == ' ')
			p++;
	}
	json_object_set_new(o, "tags", arr);
}

/* A page of index hits as summaries; the cursor is "<id>/<inbox>". */
static void hits_json(const struct sg_http_ctx *ctx, const struct sg_search_hit *hits, size_t n,
		      size_t limit, json_t *o)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n && i < limit; i++) {
		struct sg_msg_summary sm;
		if (sg_msg_summary_load(ctx->mail, hits[i].inbox, hits[i].id,
					hits[i].received_ms * 1000000, 0, &sm) < 0)
			continue;
		json_t *j = sg_msg_summary_json(&sm);
		add_state(ctx, j, hits[i].inbox, hits[i].id);
		json_array_append_new(arr, j);
		sg_msg_summary_free(&sm);
	}
	json_object_set_new(o, "messages", arr);
	if (n > limit) {
		char *c = sg_asprintf("%s/%s", hits[limit - 1].id, hits[limit - 1].inbox);
		json_object_set_new(o, "next_before", json_string(c));
		free(c);
	} else {
		json_object_set_new(o, "next_before", json_null());
	}
}

/* Run a query through the index: 0 done (resp set), -1 no index. */
static int index_query(struct sg_http_req *r, struct sg_http_resp *resp, const char *const *inboxes,
		       size_t ninboxes, const char *q, const char *tag, size_t limit,
		       const char *before, const char *fixed_inbox)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (ctx->search == NULL)
		return -1;
	struct sg_search_parsed parsed;
	const char *perr = NULL;
	if (sg_search_parse(q, &parsed, &perr) < 0) {
		sg_search_parsed_free(&parsed);
		bad_param(resp, "q", perr);
		return 0;
	}
	if (!r->who.admin && parsed.nlogins + parsed.nnlogins > 0) {
		sg_search_parsed_free(&parsed);
		bad_param(resp, "q", "login: is for the admin");
		return 0;
	}
	char cur_id[SG_MAIL_ID_MAX] = "", cur_inbox[256] = "";
	if (before != NULL && before[0] != '\0') {
		const char *slash = strchr(before, '/');
		size_t il = slash != NULL ? (size_t)(slash - before) : strlen(before);
		if (il >= sizeof(cur_id)) {
			sg_search_parsed_free(&parsed);
			bad_param(resp, "before", "not a cursor");
			return 0;
		}
		memcpy(cur_id, before, il);
		cur_id[il] = '\0';
		sg_strlcpy(cur_inbox, slash != NULL ? slash + 1 : fixed_inbox != NULL ? fixed_inbox : "",
			   sizeof(cur_inbox));
	}
	struct sg_search_query sq = {
		.parsed = &parsed, .inboxes = inboxes, .ninboxes = ninboxes, .tag = tag,
		.limit = limit + 1,
		.before_inbox = cur_id[0] != '\0' ? cur_inbox : NULL,
		.before_id = cur_id[0] != '\0' ? cur_id : NULL,
	};
	struct sg_search_hit *hits = NULL;
	size_t n = 0, total = 0;
	const char *err = NULL;
	uint64_t t0 = sg_now_ms();
	/* a message whose 250 the caller has seen is announced already (the
	 * event precedes the reply): wait for it to be indexed, bounded */
	sg_indexer_flush(ctx->indexer, SEARCH_SYNC_MS);
	int rc = sg_search_run(ctx->search, &sq, &hits, &n, &total, &err);
	sg_search_parsed_free(&parsed);
	if (rc == -2) {
		bad_param(resp, "before", "no such message");
		return 0;
	}
	if (rc < 0) {
		sg_http_error(resp, 500, err != NULL ? err : "search failed");
		return 0;
	}
	json_t *o = json_object();
	if (fixed_inbox != NULL)
		json_object_set_new(o, "inbox", json_string(fixed_inbox));
	json_object_set_new(o, "total", json_integer((json_int_t)total));
	json_object_set_new(o, "took_ms", json_integer((json_int_t)(sg_now_ms() - t0)));
	hits_json(ctx, hits, n, limit, o);
	free(hits);
	send_json(resp, 200, o);
	return 0;
}

static void list_messages(struct sg_http_req *r, struct sg_http_resp *resp, const char *login)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	static const char *const known[] = {"limit", "before", "q", "tag", NULL};
	uint64_t limit;
	if (!known_args(r, resp, known) || !int_arg(r, resp, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit))
		return;
	const char *before = sg_http_arg(r, "before");
	const char *q = sg_http_arg(r, "q");
	const char *tag = sg_http_arg(r, "tag");
	if (tag != NULL && tag[0] != '\0' && !sg_search_tag_valid(tag, strlen(tag))) {
		bad_param(resp, "tag", "a tag is 1 to 64 of A-Z a-z 0-9 . _ -");
		return;
	}
	if ((q != NULL && q[0] != '\0') || (tag != NULL && tag[0] != '\0')) {
		/* a search: through the full-text index when there is one */
		const char *one[1] = {login};
		if (index_query(r, resp, one, 1, q, tag != NULL && tag[0] != '\0' ? tag : NULL, limit,
				before, login) == 0)
			return;
	}
	if (before != NULL && before[0] == '\0')
		before = NULL;
	if (q != NULL && strlen(q) > 1024) {
		bad_param(resp, "q", "longer than 1024 bytes");
		return;
	}
	if (before != NULL && !sg_mail_id_valid(before)) {
		bad_param(resp, "before", "not a message id");
		return;
	}
	struct sg_mail_entry *e = NULL;
	size_t n = 0;
	const char *err = NULL;
	if (sg_mail_list(ctx->mail, login, &e, &n, &err) < 0) {
		sg_http_error(resp, 500, err != NULL ? err : "cannot list the inbox");
		return;
	}
	size_t start = 0;
	if (before != NULL) {
		start = n + 1;
		for (size_t i = 0; i < n; i++)
			if (strcmp(e[i].id, before) == 0) {
				start = i + 1;
				break;
			}
		if (start == n + 1) {
			free(e);
			bad_param(resp, "before", "no such message in this inbox");
			return;
		}
	}
	bool searching = q != NULL && q[0] != '\0';
	json_t *arr = json_array();
	size_t matched = 0, total = searching ? 0 : n;
	const char *last = NULL;
	bool more = false;
	/* total counts every match of q in the inbox; the page is the
	 * matches after the cursor */
	for (size_t i = searching ? 0 : start; i < n; i++) {
		if (!searching && more)
			break;
		struct sg_msg_summary sm;
		if (sg_msg_summary_load(ctx->mail, login, e[i].id, e[i].mtime_ns, e[i].size, &sm) < 0)
			continue;
		if (sg_msg_summary_match(&sm, q)) {
			if (searching)
				total++;
			if (i >= start) {
				if (matched == limit) {
					more = true;
				} else {
					json_t *j = sg_msg_summary_json(&sm);
					add_state(ctx, j, login, e[i].id);
					json_array_append_new(arr, j);
					matched++;
					last = e[i].id;
				}
			}
		}
		sg_msg_summary_free(&sm);
	}
	json_t *o = json_object();
	json_object_set_new(o, "inbox", json_string(login));
	json_object_set_new(o, "total", json_integer((json_int_t)total));
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
	if (!allow(r, resp, "GET, DELETE"))
		return;
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
		if (sg_http_ctx(r->h)->search != NULL)
			sg_search_delete(sg_http_ctx(r->h)->search, login, NULL);
		send_json(resp, 200, json_pack("{s:s,s:I}", "inbox", login, "deleted", (json_int_t)n));
	} else {
		sg_http_error(resp, 405, "method not allowed");
	}
}

/* ---- one message ---- */

/* RFC 6266 section 4.3: an ASCII fallback in filename= and the real name in
 * filename*=UTF-8''<RFC 5987 percent-encoding> when it is not plain ASCII.
 * Cut at a character boundary to fit. */
static void content_disposition(const char *name, char *out, size_t size)
{
	char safe[200];
	size_t k = 0;
	bool ascii = true;
	for (const char *p = name; *p != '\0' && k + 1 < sizeof(safe); p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 0x80)
			ascii = false;
		safe[k++] = (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f) ? '_' : (char)c;
	}
	safe[k] = '\0';
	int n = snprintf(out, size, "attachment; filename=\"%s\"", safe);
	if (ascii || n < 0 || (size_t)n >= size)
		return;
	static const char hex[] = "0123456789ABCDEF";
	size_t len = (size_t)n;
	const char *star = "; filename*=UTF-8''";
	if (len + strlen(star) + 1 >= size)
		return;
	memcpy(out + len, star, strlen(star) + 1);
	len += strlen(star);
	const unsigned char *p = (const unsigned char *)name;
	while (*p != '\0') {
		/* one whole UTF-8 character at a time */
		size_t cl = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
		size_t need = 0;
		for (size_t i = 0; i < cl; i++) {
			if (p[i] == '\0') {
				cl = i;
				break;
			}
			unsigned char c = p[i];
			bool attr = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				    strchr("!#$&+-.^_`|~", c) != NULL;
			need += attr ? 1 : 3;
		}
		if (cl == 0 || len + need + 1 > size)
			break;
		for (size_t i = 0; i < cl; i++) {
			unsigned char c = p[i];
			bool attr = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				    strchr("!#$&+-.^_`|~", c) != NULL;
			if (attr) {
				out[len++] = (char)c;
			} else {
				out[len++] = '%';
				out[len++] = hex[c >> 4];
				out[len++] = hex[c & 15];
			}
		}
		p += cl;
	}
	out[len] = '\0';
}

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

/* PUT /api/v1/messages/{id}/tags {"tags": ["a", "b"]}   (replaces them)
 * PUT /api/v1/messages/{id}/read {"read": true|false} */
static void put_state(struct sg_http_req *r, struct sg_http_resp *resp, const char *login,
		      const char *id, bool tags)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (ctx->search == NULL) {
		sg_http_error(resp, 503, "the search index is not available");
		return;
	}
	json_error_t je;
	json_t *o = json_loadb((const char *)r->body->data, r->body->len, 0, &je);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		sg_http_error(resp, 400, "the body must be a JSON object");
		return;
	}
	/* index it now if the indexer has not yet */
	if (sg_search_has(ctx->search, login, id) == 0)
		sg_msg_index(ctx->mail, ctx->search, login, id, 0, NULL);
	int rc;
	const char *err = NULL;
	if (tags) {
		json_t *arr = json_object_get(o, "tags");
		if (!json_is_array(arr) || json_array_size(arr) > 32) {
			json_decref(o);
			sg_http_error(resp, 400, "\"tags\" must be an array of at most 32 strings");
			return;
		}
		struct sg_buf b;
		sg_buf_init(&b, 4096);
		size_t i;
		json_t *v;
		bool ok = true;
		json_array_foreach(arr, i, v) {
			const char *t = json_string_value(v);
			if (t == NULL || !sg_search_tag_valid(t, strlen(t))) {
				ok = false;
				break;
			}
			sg_buf_printf(&b, "%s%s", b.len > 0 ? " " : "", t);
		}
		if (!ok) {
			sg_buf_free(&b);
			json_decref(o);
			sg_http_error(resp, 400, "a tag is 1 to 64 of A-Z a-z 0-9 . _ -");
			return;
		}
		rc = sg_search_set_tags(ctx->search, login, id, sg_buf_str(&b), &err);
		sg_buf_free(&b);
	} else {
		json_t *v = json_object_get(o, "read");
		if (!json_is_boolean(v)) {
			json_decref(o);
			sg_http_error(resp, 400, "\"read\" must be true or false");
			return;
		}
		rc = sg_search_set_read(ctx->search, login, id, json_is_true(v));
	}
	json_decref(o);
	if (rc < 0) {
		sg_http_error(resp, 400, err != NULL ? err : "cannot update");
		return;
	}
	if (rc == 0) {
		sg_http_error(resp, 404, "no such message");
		return;
	}
	json_t *out = json_pack("{s:s,s:s}", "id", id, "inbox", login);
	add_state(ctx, out, login, id);
	send_json(resp, 200, out);
}

/* GET /api/v1/messages/{id}/spam: spamd's score (spamd_address; off by
 * default: {"enabled": false}). */
static void spam_score(struct sg_http_req *r, struct sg_http_resp *resp, const char *login,
		       const char *id)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (ctx->spamd_address[0] == '\0') {
		send_json(resp, 200, json_pack("{s:s,s:b}", "id", id, "enabled", 0));
		return;
	}
	int fd = sg_mail_open_message(ctx->mail, login, id);
	if (fd < 0) {
		sg_http_error(resp, 404, "no such message");
		return;
	}
	double score = 0, threshold = 0;
	bool spam = false;
	const char *err = NULL;
	int rc = sg_spamd_check(ctx->spamd_address, fd, &score, &threshold, &spam, &err);
	close(fd);
	if (rc < 0) {
		sg_http_error(resp, 502, err != NULL ? err : "spamd failed");
		return;
	}
	json_t *o = json_pack("{s:s,s:b}", "id", id, "enabled", 1);
	if (rc == 1) {
		json_object_set_new(o, "score", json_real(score));
		json_object_set_new(o, "threshold", json_real(threshold));
		json_object_set_new(o, "spam", json_boolean(spam));
	} else {
		json_object_set_new(o, "note", json_string(err != NULL ? err : "not scored"));
	}
	send_json(resp, 200, o);
}

/* GET /api/v1/search?q=&limit=&before=   every inbox the caller may see */
static void search_route(struct sg_http_req *r, struct sg_http_resp *resp)
{
	static const char *const known[] = {"q", "limit", "before", "tag", NULL};
	uint64_t limit;
	if (!known_args(r, resp, known) || !int_arg(r, resp, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit))
		return;
	const char *tag = sg_http_arg(r, "tag");
	if (tag != NULL && tag[0] != '\0' && !sg_search_tag_valid(tag, strlen(tag))) {
		bad_param(resp, "tag", "a tag is 1 to 64 of A-Z a-z 0-9 . _ -");
		return;
	}
	const char *mine[1] = {r->who.login};
	if (index_query(r, resp, r->who.admin ? NULL : mine, r->who.admin ? 0 : 1, sg_http_arg(r, "q"),
			tag != NULL && tag[0] != '\0' ? tag : NULL, limit, sg_http_arg(r, "before"),
			NULL) < 0)
		sg_http_error(resp, 503, "the search index is not available");
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
	if (sub[0] == '\0' ? !allow(r, resp, "GET, DELETE")
	    : strcmp(sub, "raw") == 0 || strncmp(sub, "attachments/", 12) == 0 ? !allow(r, resp, "GET")
	    : strcmp(sub, "tags") == 0 || strcmp(sub, "read") == 0		 ? !allow(r, resp, "PUT")
	    : strcmp(sub, "links") == 0 || strcmp(sub, "html-check") == 0 || strcmp(sub, "spam") == 0
		? !allow(r, resp, "GET")
										 : false)
		return;
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
		/* opening a message marks it read (as mail clients do) */
		if (ctx->search != NULL && sg_search_set_read(ctx->search, login, id, true) == 0 &&
		    sg_msg_index(ctx->mail, ctx->search, login, id, 0, NULL) == 1)
			sg_search_set_read(ctx->search, login, id, true);
		add_state(ctx, o, login, id);
		send_json(resp, 200, o);
	} else if (strcmp(sub, "spam") == 0) {
		spam_score(r, resp, login, id);
	} else if (strcmp(sub, "links") == 0 || strcmp(sub, "html-check") == 0) {
		json_t *o = strcmp(sub, "links") == 0 ? sg_msg_links_json(ctx->mail, login, id)
						      : sg_msg_htmlcheck_json(ctx->mail, login, id);
		if (o == NULL)
			sg_http_error(resp, 404, "no such message");
		else
			send_json(resp, 200, o);
	} else if (strcmp(sub, "tags") == 0 || strcmp(sub, "read") == 0) {
		put_state(r, resp, login, id, strcmp(sub, "tags") == 0);
	} else if (sub[0] == '\0' && method_is(r, "DELETE")) {
		const char *err = NULL;
		int d = sg_mail_delete(ctx->mail, login, id, &err);
		if (d < 0)
			sg_http_error(resp, 500, err != NULL ? err : "delete failed");
		else if (d == 0)
			sg_http_error(resp, 404, "no such message");
		else {
			if (ctx->search != NULL)
				sg_search_delete(ctx->search, login, id);
			send_json(resp, 200, json_pack("{s:s,s:s,s:I}", "id", id, "inbox", login, "deleted",
						       (json_int_t)1));
		}
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
			content_disposition(name, resp->disposition, sizeof(resp->disposition));
		}
		free(name);
		free(type);
	} else {
		sg_http_error(resp, 404, "not found");
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
	static const char *const known[] = {"login", "result", "limit", "before", "since_ms", NULL};
	static const char *const results[] = {"ok", "failed", "fail", "tempfail", "malformed",
					      "aborted", "throttled", "accepted_any", NULL};
	uint64_t limit, before, since;
	if (!known_args(r, resp, known) || !int_arg(r, resp, "limit", 1, 1000, 100, &limit) ||
	    !int_arg(r, resp, "before", 1, INT64_MAX, 0, &before) ||
	    !int_arg(r, resp, "since_ms", 0, INT64_MAX, 0, &since))
		return;
	f.login = sg_http_arg(r, "login");
	f.result = sg_http_arg(r, "result");
	if (f.login != NULL && f.login[0] != '\0' && sg_cred_validate_login(f.login, NULL) < 0) {
		bad_param(resp, "login", "not a valid login");
		return;
	}
	if (f.result != NULL && f.result[0] != '\0') {
		bool ok = false;
		for (size_t i = 0; results[i] != NULL; i++)
			ok = ok || strcmp(results[i], f.result) == 0;
		if (!ok) {
			bad_param(resp, "result",
				  "must be one of ok, failed (not ok), fail, tempfail, malformed, aborted, "
				  "throttled, accepted_any");
			return;
		}
	}
	f.limit = (size_t)limit;
	f.before_id = (int64_t)before;
	f.since_ms = (int64_t)since;
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
	return r->who.admin || sg_faults_login_eq(f->login, r->who.login);
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
			if (f.login[0] != '\0' && !sg_faults_login_eq(f.login, r->who.login)) {
				sg_http_error(resp, 403, "an account may add rules only for its own login");
				return;
			}
			sg_strlcpy(f.login, r->who.login, sizeof(f.login));
		}
		long id = 0;
		const char *origin = r->who.admin ? "api" : "account";
		if (sg_faults_add(faults, &f, origin, &id, &err) < 0) {
			sg_http_error(resp, 400, err != NULL ? err : "cannot add");
			return;
		}
		f.id = id;
		f.created = (long long)time(NULL);
		sg_faults_login_canon(f.login, f.login, sizeof(f.login));
		sg_strlcpy(f.origin, origin, sizeof(f.origin));
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
		if (!allow(r, resp, "GET"))
			return;
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
	if (strcmp(p, "me") == 0) {
		if (allow(r, resp, "GET"))
			send_json(resp, 200,
				  json_pack("{s:b,s:s?,s:b,s:{s:i,s:i}}", "admin", r->who.admin, "login",
					    r->who.admin ? NULL : r->who.login, "accept_any", ctx->accept_any,
					    "retention", "max_messages_per_inbox",
					    (int)ctx->max_messages_per_inbox, "max_message_age",
					    (int)ctx->max_message_age));
	} else if (strcmp(p, "inboxes") == 0) {
		if (allow(r, resp, "GET"))
			get_inboxes(r, resp);
	} else if (strncmp(p, "inboxes/", 8) == 0) {
		inbox_route(r, resp, p + 8);
	} else if (strncmp(p, "messages/", 9) == 0) {
		message_route(r, resp, p + 9);
	} else if (strcmp(p, "queue") == 0 || strncmp(p, "queue/", 6) == 0) {
		sg_api_queue(r, resp, p + 5);
	} else if (strcmp(p, "auth-events") == 0) {
		if (allow(r, resp, "GET"))
			get_auth_events(r, resp);
	} else if (strcmp(p, "search") == 0) {
		if (allow(r, resp, "GET"))
			search_route(r, resp);
	} else if (strcmp(p, "events/ticket") == 0) {
		if (!allow(r, resp, "POST"))
			return;
		char t[64];
		if (sg_http_ticket_new(r->h, &r->who, t, sizeof(t)) < 0)
			sg_http_error(resp, 500, "cannot make a ticket");
		else
			send_json(resp, 200, json_pack("{s:s,s:i}", "ticket", t, "expires_in", 60));
	} else if (strcmp(p, "faults") == 0) {
		if (allow(r, resp, "GET, POST, DELETE"))
			faults_route(r, resp, "");
	} else if (strncmp(p, "faults/", 7) == 0) {
		if (allow(r, resp, "DELETE"))
			faults_route(r, resp, p + 6);
	} else {
		sg_http_error(resp, 404, "not found");
	}
}
