/*
 * AUTH (RFC 4954): the server side of the SASL driver. It owns base64, "*"
 * (cancel), "=" (empty initial response), the 12,288-octet line cap, the
 * failure delay, and the mechanism's lifetime; mechanisms only transform
 * bytes (sasl/mech.h). Steps run on the worker pool.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/b64.h"
#include "core/conn.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "server/server.h"
#include "server/session.h"
#include "store/throttle.h"
#include "store/events.h"

#define AUTH_LINE_MAX 12288 /* RFC 4954 4: at least 12,288 octets */

/* The listener's configured offer (auth_mechanisms, channel_binding,
 * legacy_verifiers: computed once in sg_config_finish). */
static bool listener_allows(const struct sg_session *s, const struct sg_mech *m)
{
	return sg_listener_offers(s->lst->cfg, m);
}

static bool plaintext_blocked(const struct sg_session *s, const struct sg_mech *m)
{
	return (m->flags & SG_MECH_F_PLAINTEXT) && !sess_tls(s) && !s->lst->cfg->plaintext_without_tls;
}

static bool usable(struct sg_session *s, const struct sg_mech *m)
{
	if (m->server_start == NULL || !listener_allows(s, m) || plaintext_blocked(s, m))
		return false;
	return m->server_available == NULL || m->server_available(&s->env);
}

static void prepare_env(struct sg_session *s)
{
	struct sg_server *srv = s->srv;
	const struct sg_conn_info *ci = sg_conn_info(s->conn);
	struct sg_sasl_server_env *e = &s->env;
	memset(e, 0, sizeof(*e));
	e->creds = srv->creds;
	e->cfg = &srv->cfg.sasl;
	e->hostname = srv->cfg.hostname;
	e->service = "smtp";
	e->tls = ci->tls;
	e->client_ip = s->client_ip;
	e->local_port = s->local_port;
	if (ci->tls) {
		const char *type = NULL;
		size_t n = sg_conn_channel_binding(s->conn, s->cb_data, sizeof(s->cb_data), &type);
		if (n > 0) {
			e->cb_type = type;
			e->cb_data = s->cb_data;
			e->cb_len = n;
		}
		if (ci->cert_verified)
			e->cert_identity = ci->cert_identity;
	}
	for (size_t i = 0; sg_mechs[i] != NULL; i++)
		if ((sg_mechs[i]->flags & SG_MECH_F_CHANNEL_BINDING) && usable(s, sg_mechs[i]))
			e->plus_offered = true;
}

size_t auth_offered(struct sg_session *s, const struct sg_mech **out, size_t max)
{
	prepare_env(s);
	size_t n = 0;
	for (size_t i = 0; sg_mechs[i] != NULL && n < max; i++)
		if (usable(s, sg_mechs[i]))
			out[n++] = sg_mechs[i];
	return n;
}

void sess_job_free(struct sess_job *j)
{
	sg_buf_free(&j->in);
	sg_buf_free(&j->out);
	sg_buf_free(&j->prefix);
	if (j->kind == JOB_STORE && j->body_fd >= 0)
		close(j->body_fd);
	for (size_t i = 0; i < j->nlogins; i++)
		free(j->logins[i]);
	free(j->logins);
	sg_wipe(&j->res, sizeof(j->res));
	free(j);
}

void auth_abort(struct sg_session *s)
{
	if (s->mech_state != NULL && s->mech != NULL)
		s->mech->server_free(s->mech_state);
	s->mech_state = NULL;
	s->mech = NULL;
	s->state &= ~ST_AUTH;
	s->error_challenge = false;
}

void sess_auth_event(struct sg_session *s, const char *mech, const char *login, const char *result,
		     const char *reason, bool injected)
{
	struct sg_auth_event e;
	memset(&e, 0, sizeof(e));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	e.time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	sg_strlcpy(e.session, s->id, sizeof(e.session));
	sg_strlcpy(e.client_ip, s->client_ip, sizeof(e.client_ip));
	sg_strlcpy(e.listener, s->lst->cfg->name, sizeof(e.listener));
	e.tls = sess_tls(s);
	if (e.tls)
		sg_strlcpy(e.tls_version, sg_conn_info(s->conn)->version, sizeof(e.tls_version));
	sg_strlcpy(e.mech, mech, sizeof(e.mech));
	sg_strlcpy(e.login, login, sizeof(e.login));
	sg_strlcpy(e.result, result, sizeof(e.result));
	sg_strlcpy(e.reason, reason != NULL ? reason : "", sizeof(e.reason));
	e.injected = injected;
	sg_events_auth(s->srv->events, &e);
	static const struct {
		const char *name;
		enum sg_metric_auth_result r;
	} results[] = {{"ok", SG_MA_OK},	       {"fail", SG_MA_FAIL},
		       {"tempfail", SG_MA_TEMPFAIL},   {"malformed", SG_MA_MALFORMED},
		       {"aborted", SG_MA_ABORTED},     {"throttled", SG_MA_THROTTLED}};
	for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
		if (strcmp(results[i].name, result) == 0) {
			struct sg_metrics *m = &s->srv->metrics;
			atomic_fetch_add(&m->auth[sg_metrics_mech_index(m, mech)][results[i].r], 1);
		}
}

static void log_auth(struct sg_session *s, const char *login, const char *result, const char *reason)
{
	char lv[300];
	const char *mech = s->mech != NULL ? s->mech->name : "-";
	sg_log(SG_INFO, "auth", "sid=%s client=%s listener=%s tls=%s mech=%s login=%s result=%s reason=%s",
	       s->id, s->client_ip, s->lst->cfg->name, sess_tls(s) ? sg_conn_info(s->conn)->version : "no",
	       mech, sg_log_value(login, lv, sizeof(lv)), result, reason != NULL ? reason : "-");
	sess_auth_event(s, s->mech != NULL ? s->mech->name : "", login, result, reason, false);
}

static void on_fail_delay(evutil_socket_t fd, short what, void *arg)
{
	struct sg_session *s = arg;
	event_free(s->delay_ev);
	s->delay_ev = NULL;
	sess_reply(s, s->delayed_reply);
	if (s->delayed_close) {
		sess_close(s, SG_R_TOO_MANY_ERRORS);
		return;
	}
	sg_conn_resume(s->conn);
}

/* 535 after the configured delay: the same wait whatever the reason, so
 * neither the text nor the timing tells an unknown login from a bad password. */
/* Count a failure: the attempt limit and the throttle. Returns the delay. */
static unsigned count_failure(struct sg_session *s, const char *login)
{
	s->auth_failures++;
	return sg_throttle_auth_failed(s->srv->throttle, s->client_ip, login,
				       s->auth_tag_set ? s->auth_tag : NULL, sg_now_ms());
}

static void fail(struct sg_session *s, enum sg_reply_id reply, unsigned ms)
{
	s->delayed_reply = reply;
	s->delayed_close = s->auth_failures >= s->srv->cfg.max_auth_attempts;
	s->delay_ev = evtimer_new(s->loop->base, on_fail_delay, s);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	sg_conn_pause(s->conn);
	/* the delay counts from now, not from the loop's cached time (which a
	 * busy iteration leaves behind): never shorter than announced */
	event_base_update_cache_time(s->loop->base);
	evtimer_add(s->delay_ev, &tv);
}

static void count_attempt_and_reply(struct sg_session *s, enum sg_reply_id id)
{
	/* Aborts and malformed exchanges count towards the per-connection limit
	 * too, without the delay. */
	s->auth_failures++;
	sess_reply(s, id);
	if (s->auth_failures >= s->srv->cfg.max_auth_attempts)
		sess_close(s, SG_R_TOO_MANY_ERRORS);
}

static void submit_step(struct sg_session *s, const uint8_t *in, size_t n, bool start)
{
	struct sess_job *j = sg_calloc(1, sizeof(*j));
	j->kind = JOB_AUTH_STEP;
	j->start = start;
	j->no_input = in == NULL;
	sg_buf_init_secret(&j->in, AUTH_LINE_MAX);
	sg_buf_init_secret(&j->out, 64 * 1024);
	sg_buf_append(&j->in, in, n);
	/* a keyed hash of everything the client sent in this exchange: the same
	 * failed secret retried counts once (store/throttle.h) */
	sg_throttle_secret_tag(s->srv->throttle, start ? NULL : s->auth_tag, in, n, s->auth_tag);
	s->auth_tag_set = true;
	s->state |= ST_AUTH;
	sess_submit(s, j);
}

void auth_job_work(struct sess_job *j)
{
	struct sg_session *s = j->s;
	if (j->start) {
		s->mech_state = s->mech->server_start(&s->env);
		if (s->mech_state == NULL) {
			j->status = SG_MECH_TEMPFAIL;
			j->res.reason = "mechanism_start_failed";
			return;
		}
	}
	/* An empty response is a zero-length buffer, never NULL; NULL means "no
	 * response at all" (the server-first opening step). */
	static const uint8_t empty[1];
	const uint8_t *in = j->no_input ? NULL : j->in.data != NULL ? j->in.data : empty;
	uint64_t gen = sg_cred_generation(s->srv->creds);
	j->status = s->mech->server_step(s->mech_state, in, j->in.len, &j->out, &j->res);
	/* remembered for the re-check at MAIL (user disable, passwd, del) */
	if (j->status == SG_MECH_OK) {
		s->auth_gen = gen;
		if (sess_account_fp(s->srv->creds, j->res.login, s->auth_fp) != 1)
			s->auth_gen = 0; /* checked again at the first MAIL */
	}
	/* A refused login is counted and logged under the account it reaches
	 * (the login as stored), or one canonical form of the claimed login. */
	if (j->status != SG_MECH_OK && (j->status != SG_MECH_CONTINUE || j->res.reason != NULL) &&
	    j->res.login[0] != '\0') {
		char canon[sizeof(j->res.login)];
		sg_throttle_canonical_login(s->srv->creds, j->res.login, canon, sizeof(canon));
		memcpy(j->res.login, canon, sizeof(canon));
	}
}

void auth_job_done(struct sg_session *s, struct sess_job *j)
{
	const struct sg_mech *m = s->mech;
	switch (j->status) {
	case SG_MECH_CONTINUE: {
		if (j->res.reason != NULL && !s->error_challenge) {
			/* An error challenge (SCRAM e=, OAuth JSON): the attempt has
			 * failed already; count it now in case the client hangs up. */
			log_auth(s, j->res.login, "fail", j->res.reason);
			s->error_challenge = true;
			s->error_delay_ms = count_failure(s, j->res.login);
		}
		size_t enc = SG_B64_ENCODED_LEN(j->out.len);
		char *line = sg_malloc(enc + 8);
		memcpy(line, "334 ", 4);
		sg_b64_encode(j->out.data, j->out.len, line + 4);
		memcpy(line + 4 + enc, "\r\n", 3);
		sess_reply_raw(s, line);
		free(line);
		return; /* stay in ST_AUTH */
	}
	case SG_MECH_OK:
		log_auth(s, j->res.login, "ok", NULL);
		s->authenticated = true;
		sg_strlcpy(s->login, j->res.login, sizeof(s->login));
		s->auth_mech_name = m->name;
		sg_throttle_auth_ok(s->srv->throttle, s->client_ip, s->login);
		auth_abort(s);
		sess_reply(s, SG_R_AUTH_OK);
		return;
	case SG_MECH_FAIL: {
		unsigned ms;
		if (s->error_challenge) {
			ms = s->error_delay_ms; /* counted and logged with the challenge */
		} else {
			log_auth(s, j->res.login, "fail", j->res.reason);
			ms = count_failure(s, j->res.login);
		}
		auth_abort(s);
		fail(s, (m->flags & SG_MECH_F_FAIL_573) ? SG_R_AUTH_BAD_NTLM : SG_R_AUTH_BAD, ms);
		return;
	}
	case SG_MECH_TEMPFAIL:
		log_auth(s, j->res.login, "tempfail", j->res.reason);
		auth_abort(s);
		sess_reply(s, SG_R_AUTH_TEMP);
		return;
	case SG_MECH_MALFORMED:
		log_auth(s, j->res.login, "malformed", j->res.reason);
		auth_abort(s);
		count_attempt_and_reply(s, SG_R_AUTH_MALFORMED);
		return;
	}
}

/* Decode one client response: "=" is an empty initial response (RFC 4954 4). */
static int decode(const char *in, size_t n, bool initial, struct sg_buf *out)
{
	if (initial && n == 1 && in[0] == '=')
		return 0;
	uint8_t *tmp = sg_malloc(SG_B64_DECODED_MAX(n) + 1);
	size_t len = 0;
	int r = sg_b64_decode(in, n, tmp, &len);
	if (r == 0)
		r = sg_buf_append(out, tmp, len);
	sg_wipe(tmp, SG_B64_DECODED_MAX(n) + 1);
	free(tmp);
	return r;
}

void cmd_auth(struct sg_session *s, char *args)
{
	if (!s->esmtp) {
		sess_error(s, SG_R_BAD_SEQ_EHLO);
		return;
	}
	if (s->authenticated) {
		sess_error(s, SG_R_AUTH_ALREADY);
		return;
	}
	if (s->state & (ST_MAIL | ST_RCPT)) {
		sess_error(s, SG_R_AUTH_IN_TXN);
		return;
	}
	char *ir = strchr(args, ' ');
	if (ir != NULL) {
		*ir++ = '\0';
		if (*ir == '\0' || strchr(ir, ' ') != NULL) {
			sess_error(s, SG_R_PARAM_SYNTAX);
			return;
		}
	}
	if (*args == '\0') {
		sess_error(s, SG_R_PARAM_SYNTAX);
		return;
	}
	prepare_env(s);
	const struct sg_mech *m = sg_mech_find(args);
	if (m == NULL || m->server_start == NULL || !listener_allows(s, m)) {
		char mv[80];
		sg_log(SG_INFO, "auth", "sid=%s client=%s mech=%s result=unknown_mechanism", s->id,
		       s->client_ip, sg_log_value(args, mv, sizeof(mv)));
		sess_error(s, SG_R_AUTH_UNKNOWN_MECH);
		return;
	}
	if (plaintext_blocked(s, m)) {
		sg_log(SG_INFO, "auth", "sid=%s client=%s mech=%s result=refused reason=needs_tls", s->id,
		       s->client_ip, m->name);
		sess_error(s, SG_R_AUTH_ENCRYPT);
		return;
	}
	if (s->lst->cfg->require_tls && !sess_tls(s)) {
		sess_error(s, SG_R_TLS_REQUIRED);
		return;
	}
	if (m->server_available != NULL && !m->server_available(&s->env)) {
		sess_error(s, SG_R_AUTH_UNKNOWN_MECH);
		return;
	}
	if (!sg_throttle_auth_allowed(s->srv->throttle, s->client_ip, sg_now_ms(), NULL)) {
		sg_log(SG_INFO, "auth", "sid=%s client=%s mech=%s result=throttled reason=cooling_off", s->id,
		       s->client_ip, m->name);
		sess_auth_event(s, m->name, "", "throttled", "cooling_off", false);
		atomic_fetch_add(&s->srv->metrics.throttled_clients, 1);
		sess_reply(s, SG_R_AUTH_TEMP);
		return;
	}
	s->mech = m;
	if (ir != NULL) {
		if (strcmp(ir, "*") == 0) {
			log_auth(s, "", "aborted", NULL);
			s->mech = NULL;
			count_attempt_and_reply(s, SG_R_AUTH_ABORTED);
			return;
		}
		if ((m->flags & SG_MECH_F_SERVER_FIRST) && !(m->flags & SG_MECH_F_IR_OK)) {
			s->mech = NULL;
			sess_error(s, SG_R_AUTH_NO_IR);
			return;
		}
		struct sg_buf in;
		sg_buf_init_secret(&in, AUTH_LINE_MAX);
		if (decode(ir, strlen(ir), true, &in) < 0) {
			sg_buf_free(&in);
			log_auth(s, "", "malformed", "bad_base64");
			s->mech = NULL;
			count_attempt_and_reply(s, SG_R_AUTH_BAD_B64);
			return;
		}
		/* "=" is an empty initial response, not an absent one */
		submit_step(s, in.data != NULL ? in.data : (const uint8_t *)"", in.len, true);
		sg_buf_free(&in);
		return;
	}
	if (m->flags & SG_MECH_F_SERVER_FIRST) {
		submit_step(s, NULL, 0, true);
		return;
	}
	/* Client-first mechanism without an initial response: an empty
	 * challenge, started when the response arrives. */
	s->mech_first_step = true;
	s->state |= ST_AUTH;
	char line[128];
	snprintf(line, sizeof(line), "334 %s\r\n",
		 m->empty_challenge_text != NULL ? m->empty_challenge_text : "");
	sess_reply_raw(s, line);
}

void cmd_auth_line(struct sg_session *s, char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		log_auth(s, "", "aborted", NULL);
		auth_abort(s);
		s->mech_first_step = false;
		count_attempt_and_reply(s, SG_R_AUTH_ABORTED);
		return;
	}
	struct sg_buf in;
	sg_buf_init_secret(&in, AUTH_LINE_MAX);
	if (strlen(line) != len || decode(line, len, false, &in) < 0) {
		sg_buf_free(&in);
		log_auth(s, "", "malformed", "bad_base64");
		auth_abort(s);
		s->mech_first_step = false;
		count_attempt_and_reply(s, SG_R_AUTH_BAD_B64);
		return;
	}
	bool start = s->mech_first_step;
	s->mech_first_step = false;
	submit_step(s, in.data != NULL ? in.data : (const uint8_t *)"", in.len, start);
	sg_buf_free(&in);
}

void cmd_auth_too_long(struct sg_session *s)
{
	if (!(s->state & ST_AUTH) && !s->esmtp) {
		sess_error(s, SG_R_LINE_TOO_LONG);
		return;
	}
	log_auth(s, "", "malformed", "line_too_long");
	auth_abort(s);
	s->mech_first_step = false;
	count_attempt_and_reply(s, SG_R_AUTH_LINE_LONG);
}
