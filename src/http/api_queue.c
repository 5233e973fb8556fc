/*
 * api_queue.c: the relay queue over the API (admin only) and release from
 * the sandbox, through the operations the server gives (http.h
 * sg_http_relay); without a smarthost they answer 404 / 409.
 *
 *   GET    /api/v1/queue                 list (oldest 1000, and the total)
 *   POST   /api/v1/queue/retry           retry everything now
 *   GET    /api/v1/queue/{id}            one message, per recipient
 *   POST   /api/v1/queue/{id}/retry      retry now
 *   POST   /api/v1/queue/{id}/bounce     return to the sender (DSN)
 *   DELETE /api/v1/queue/{id}            drop without a DSN
 *   POST   /api/v1/messages/{id}/release {"to": ["a@example.org"], "from": optional}
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "http/http_int.h"
#include "smtp/cmd.h"
#include "store/mail.h"

#define RELEASE_MAX_RCPTS 100

static void set_json_text(struct sg_http_resp *resp, unsigned status, struct sg_buf *text)
{
	resp->status = status;
	resp->content_type = "application/json";
	sg_buf_reset(&resp->body);
	sg_buf_append(&resp->body, text->data, text->len);
}

void sg_api_queue_metrics(const struct sg_http_ctx *ctx, struct sg_buf *out)
{
	if (ctx->relay.metrics != NULL)
		ctx->relay.metrics(ctx->relay.arg, out);
}

void sg_api_queue(struct sg_http_req *r, struct sg_http_resp *resp, const char *rest)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (!r->who.admin) {
		sg_http_error(resp, 403, "the queue is for the administrator");
		return;
	}
	if (ctx->relay.control == NULL) {
		sg_http_error(resp, 404, "no relay queue (relay_host is not configured)");
		return;
	}
	const char *m = r->method;
	const char *cmd = NULL;
	char id[64] = "";
	if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
		if (strcmp(m, "GET") == 0)
			cmd = "list";
	} else if (strcmp(rest, "/retry") == 0) {
		if (strcmp(m, "POST") == 0)
			cmd = "retry";
	} else {
		const char *p = rest + 1;
		size_t il = strcspn(p, "/");
		if (il == 0 || il >= sizeof(id)) {
			sg_http_error(resp, 404, "no such message in the queue");
			return;
		}
		memcpy(id, p, il);
		id[il] = '\0';
		const char *sub = p + il;
		if (sub[0] == '\0' && strcmp(m, "GET") == 0)
			cmd = "show";
		else if (sub[0] == '\0' && strcmp(m, "DELETE") == 0)
			cmd = "delete";
		else if (strcmp(sub, "/retry") == 0 && strcmp(m, "POST") == 0)
			cmd = "retry";
		else if (strcmp(sub, "/bounce") == 0 && strcmp(m, "POST") == 0)
			cmd = "bounce";
	}
	if (cmd == NULL) {
		sg_http_error(resp, 405, "method not allowed");
		return;
	}
	struct sg_buf out;
	sg_buf_init(&out, 16 * 1024 * 1024);
	unsigned status = ctx->relay.control(ctx->relay.arg, cmd, id, &out);
	set_json_text(resp, status, &out);
	sg_buf_free(&out);
}

/* "Return-Path: <addr>" at the start of a stored message. */
static int stored_sender(const struct sg_buf *msg, char *out, size_t size)
{
	const char *p = (const char *)msg->data;
	size_t n = msg->len;
	if (n < 14 || strncmp(p, "Return-Path: <", 14) != 0)
		return -1;
	const char *end = memchr(p + 14, '>', n - 14);
	if (end == NULL || (size_t)(end - (p + 14)) >= size)
		return -1;
	size_t l = (size_t)(end - (p + 14));
	memcpy(out, p + 14, l);
	out[l] = '\0';
	return memchr(out, '\n', l) != NULL || memchr(out, '\r', l) != NULL ? -1 : 0;
}

static bool address_ok(const char *a)
{
	return a[0] != '\0' && strlen(a) <= SG_PATH_MAX && strchr(a, '@') != NULL &&
	       sg_mailbox_valid(a, true);
}

void sg_api_release(struct sg_http_req *r, struct sg_http_resp *resp, const char *login,
		    const char *id)
{
	const struct sg_http_ctx *ctx = sg_http_ctx(r->h);
	if (!r->who.admin) {
		sg_http_error(resp, 403, "release is for the administrator");
		return;
	}
	if (ctx->relay.release == NULL) {
		sg_http_error(resp, 409, "release needs a smarthost: set relay_host in the configuration");
		return;
	}
	json_error_t je;
	json_t *req = r->body != NULL && r->body->len > 0
			      ? json_loadb((const char *)r->body->data, r->body->len, 0, &je)
			      : NULL;
	json_t *to = req != NULL ? json_object_get(req, "to") : NULL;
	if (to == NULL && req != NULL)
		to = json_object_get(req, "To"); /* Mailpit's spelling */
	if (!json_is_array(to) || json_array_size(to) == 0 ||
	    json_array_size(to) > RELEASE_MAX_RCPTS) {
		json_decref(req);
		sg_http_error(resp, 400, "expected {\"to\": [\"address\", ...]} (1 to 100 addresses)");
		return;
	}
	const char *rcpts[RELEASE_MAX_RCPTS];
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(to); i++) {
		const char *a = json_string_value(json_array_get(to, i));
		if (a == NULL || !address_ok(a)) {
			json_decref(req);
			sg_http_error(resp, 400, "not a valid recipient address");
			return;
		}
		rcpts[n++] = a;
	}
	struct sg_buf msg;
	sg_buf_init(&msg, (size_t)256 << 20);
	const char *err = NULL;
	int rr = sg_mail_read(ctx->mail, login, id, &msg, &err);
	if (rr <= 0) {
		sg_buf_free(&msg);
		json_decref(req);
		sg_http_error(resp, rr == 0 ? 404 : 500, rr == 0 ? "no such message" : err);
		return;
	}
	char from[SG_PATH_MAX + 1] = "";
	const char *jf = json_string_value(json_object_get(req, "from"));
	if (jf != NULL) {
		if (jf[0] != '\0' && !address_ok(jf)) {
			sg_buf_free(&msg);
			json_decref(req);
			sg_http_error(resp, 400, "not a valid sender address");
			return;
		}
		sg_strlcpy(from, jf, sizeof(from));
	} else if (stored_sender(&msg, from, sizeof(from)) < 0) {
		sg_buf_free(&msg);
		json_decref(req);
		sg_http_error(resp, 422, "the stored message has no Return-Path: give \"from\"");
		return;
	}
	char qid[64];
	int rc = ctx->relay.release(ctx->relay.arg, from, rcpts, n, msg.data, msg.len, login, qid,
				    sizeof(qid), &err);
	sg_buf_free(&msg);
	json_t *o = rc == 0 ? json_pack("{s:s,s:s,s:s,s:O}", "id", id, "queue_id", qid, "from", from,
					"to", to)
			    : NULL;
	json_decref(req);
	if (rc < 0) {
		sg_http_error(resp, 500, err != NULL ? err : "cannot queue the message");
		return;
	}
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	resp->status = 200;
	resp->content_type = "application/json";
	sg_buf_reset(&resp->body);
	if (s != NULL)
		sg_buf_append_str(&resp->body, s);
	free(s);
}
