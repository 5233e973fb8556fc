#include "server/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "http/http.h"
#include "relay/relay.h"
#include "server/server.h"
#include "server/session.h"
#include "store/cred.h"
#include "store/events.h"
#include "store/mail.h"

struct sg_route {
	struct sg_relay *relay;
	struct sg_envelope env;     /* remote recipients; from, login, body */
	size_t nremote;
	int rc;
	char qid[SG_QUEUE_ID_MAX];
	char local_id[SG_MAIL_ID_MAX];
};

static unsigned http_control(void *arg, const char *cmd, const char *id, struct sg_buf *out)
{
	return sg_relay_control(arg, cmd, id, out);
}

static void http_metrics(void *arg, struct sg_buf *out)
{
	sg_relay_metrics(arg, out);
}

static int http_release(void *arg, const char *from, const char *const *rcpts, size_t n,
			const unsigned char *msg, size_t len, const char *login, char *id_r,
			size_t id_size, const char **error_r)
{
	char id[SG_QUEUE_ID_MAX];
	if (sg_relay_release(arg, from, rcpts, n, msg, len, login, id, error_r) < 0)
		return -1;
	sg_strlcpy(id_r, id, id_size);
	return 0;
}

static struct sg_http_relay http_ops;

const struct sg_http_relay *sg_route_http(struct sg_server *srv)
{
	if (srv->relay == NULL)
		return NULL;
	http_ops.arg = srv->relay;
	http_ops.control = http_control;
	http_ops.metrics = http_metrics;
	http_ops.release = http_release;
	return &http_ops;
}

int sg_route_setup(struct sg_server *srv, char *err, size_t errsize)
{
	struct sg_config *c = &srv->cfg;
	bool used = false;
	for (size_t i = 0; i < c->nlisteners; i++)
		used |= sg_config_relays(c, &c->listeners[i]);
	if (sg_relay_config_check(&c->relay, used, err, errsize) < 0)
		return -1;
	if (!used && c->relay.host[0] == '\0')
		return 0;
	struct sg_relay_params p = {
		.cfg = &c->relay,
		.hostname = c->hostname,
		.data_dir = c->data_dir,
	};
	return sg_relay_new(&p, &srv->relay, err, errsize);
}

int sg_route_start(struct sg_server *srv, char *err, size_t errsize)
{
	if (srv->relay == NULL)
		return 0;
	/* the data directory may have become absolute when root was dropped */
	return sg_relay_start(srv->relay, srv->cfg.data_dir, srv->mail, srv->creds, err, errsize);
}

void sg_route_prepare(struct sg_session *s, struct sess_job *j)
{
	struct sg_server *srv = s->srv;
	if (srv->relay == NULL || !s->authenticated || !sg_config_relays(&srv->cfg, s->lst->cfg))
		return;
	struct sg_route *rt = sg_calloc(1, sizeof(*rt));
	rt->relay = srv->relay;
	sg_envelope_init(&rt->env);
	rt->env.from = sg_strdup(s->mail_from);
	rt->env.login = sg_strdup(s->login);
	rt->env.smtputf8 = s->smtputf8;
	rt->env.ret = s->dsn_ret == 1 ? SG_RET_FULL : s->dsn_ret == 2 ? SG_RET_HDRS : SG_RET_DEFAULT;
	rt->env.envid = s->dsn_envid[0] ? sg_strdup(s->dsn_envid) : NULL;
	j->route = rt;
}

/* Worker thread: recipients that are local accounts go to their inboxes
 * instead of the sender's; the others (and any the store cannot tell now)
 * to the smarthost, which decides. The session's recipients are read as
 * they are: the session is paused while its job is out, and freed only
 * after the job comes back (sess_free). */
static void split_recipients(const struct sg_session *s, struct sess_job *j, struct sg_route *rt)
{
	for (size_t i = 0; i < j->nlogins; i++)
		free(j->logins[i]);
	free(j->logins);
	j->logins = sg_calloc(s->nrcpts + 1, sizeof(*j->logins));
	j->nlogins = 0;
	for (size_t i = 0; i < s->nrcpts; i++) {
		const char *addr = s->rcpts[i].addr;
		char owner[SG_LOGIN_MAX + 1];
		int own = sg_cred_find_owner(s->srv->creds, addr, owner, sizeof(owner));
		if (own == 1) {
			bool dup = false;
			for (size_t k = 0; k < j->nlogins; k++)
				dup |= strcmp(j->logins[k], owner) == 0;
			if (!dup)
				j->logins[j->nlogins++] = sg_strdup(owner);
			continue;
		}
		sg_envelope_add_rcpt(&rt->env, addr, s->rcpts[i].notify, s->rcpts[i].orcpt);
		rt->nremote++;
	}
}

/* Marks a routed job after sg_route_work() released its route (a job whose
 * session went away meanwhile is freed without sg_route_done()). */
static struct sg_route routed_mark;

void sg_route_work(struct sess_job *j)
{
	struct sg_session *s = j->s;
	struct sg_route *rt = j->route;
	j->store_rc = 0;
	j->error = NULL;
	split_recipients(s, j, rt);
	if (rt->nremote > 0) {
		/* what leaves the machine: our Received line, not the sandbox's
		 * Return-Path and X-Smtpgate-* (which name the Bcc recipients) */
		size_t skip = sg_relay_capture_skip(j->prefix.data, j->prefix.len);
		struct sg_buf trace;
		sg_buf_init(&trace, j->prefix.len + 1);
		sg_buf_append(&trace, j->prefix.data + skip, j->prefix.len - skip);
		if (sg_relay_enqueue_fd(rt->relay, &rt->env, &trace, j->body_fd, j->body_len,
					&j->error) < 0)
			j->store_rc = -1;
		else
			sg_strlcpy(rt->qid, rt->env.id, sizeof(rt->qid));
		sg_buf_free(&trace);
	}
	if (j->store_rc == 0 && j->nlogins > 0)
		j->store_rc = sg_mail_commit_fd(s->srv->mail, (const char *const *)j->logins,
						j->nlogins, &j->prefix, j->body_fd, j->body_len,
						rt->local_id, &j->error);
	sg_strlcpy(j->id, rt->nremote > 0 ? rt->qid : rt->local_id, sizeof(j->id));
	if (j->store_rc == 0) {
		size_t size = j->body_len;
		char pv[300];
		sg_log(SG_INFO, "queued",
		       "sid=%s id=%s from=%s remote=%zu local=%zu local_id=%s size=%zu login=%s", s->id,
		       rt->nremote > 0 ? rt->qid : "-",
		       sg_log_value(rt->env.from[0] ? rt->env.from : "<>", pv, sizeof(pv)), rt->nremote,
		       j->nlogins, j->nlogins > 0 ? rt->local_id : "-", size, rt->env.login);
		for (size_t i = 0; i < j->nlogins; i++) {
			struct sg_msg_event e = {.time_ms = (int64_t)time(NULL) * 1000,
						 .size = j->prefix.len + size};
			sg_strlcpy(e.login, j->logins[i], sizeof(e.login));
			sg_strlcpy(e.id, rt->local_id, sizeof(e.id));
			sg_events_message(s->srv->events, &e);
		}
	}
	sg_envelope_free(&rt->env);
	free(rt);
	j->route = &routed_mark;
}

void sg_route_done(struct sg_session *s, struct sess_job *j)
{
	j->route = NULL;
	if (j->store_rc < 0) {
		sg_log(SG_ERROR, "store", "sid=%s result=failed error=\"%s\"", s->id,
		       j->error ? j->error : "?");
		atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_STORE], 1);
		sess_reset_txn(s);
		sess_reply(s, SG_R_STORE_FAILED);
		return;
	}
	atomic_fetch_add(&s->srv->metrics.messages_accepted, 1);
	atomic_fetch_add(&s->srv->metrics.bytes_stored, j->prefix.len + j->body_len);
	sess_reset_txn(s);
	sess_reply(s, SG_R_QUEUED, j->id);
}
