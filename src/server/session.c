/*
 * session.c: connection callbacks, the command table and the dispatcher.
 * Command handlers are in cmd_*.c.
 */
#include "server/session.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "server/server.h"
#include "smtp/cmd.h"
#include "store/events.h"
#include "store/faults.h"

#define ST_ANY_SESSION (ST_GREETED | ST_READY | ST_MAIL | ST_RCPT)

static const struct sess_cmd {
	const char *verb;
	unsigned states;   /* where it may run; elsewhere the handler's own 503 */
	void (*run)(struct sg_session *s, char *args);
} commands[] = {
	{"EHLO", ST_ANY_SESSION, cmd_ehlo},
	{"HELO", ST_ANY_SESSION, cmd_helo},
	{"STARTTLS", ST_ANY_SESSION, cmd_starttls},
	{"AUTH", ST_ANY_SESSION, cmd_auth},
	{"MAIL", ST_ANY_SESSION, cmd_mail},
	{"RCPT", ST_ANY_SESSION, cmd_rcpt},
	{"DATA", ST_ANY_SESSION, cmd_data},
	{"RSET", ST_ANY_SESSION, cmd_rset},
	{"NOOP", ST_ANY_SESSION, cmd_noop},
	{"VRFY", ST_ANY_SESSION, cmd_vrfy},
	{"HELP", ST_ANY_SESSION, cmd_help},
	{"QUIT", ST_ANY_SESSION, cmd_quit},
};

static void on_read(void *ctx);
static void on_event(void *ctx, enum sg_conn_event ev);
static void run_command(struct sg_session *s, char *line, size_t len, bool fault_checked);
static void greet(struct sg_session *s);
static const struct sg_conn_cbs conn_cbs = {on_read, on_event};

static void on_life_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sg_session *s = arg;
	sg_log(SG_INFO, "timeout", "sid=%s limit=session", s->id);
	sess_close(s, SG_R_TIMEOUT);
}

bool sess_tls(const struct sg_session *s)
{
	return sg_conn_info(s->conn)->tls;
}

const char *sess_log_login(const struct sg_session *s)
{
	return s->authenticated ? s->login : "";
}

static void greet(struct sg_session *s)
{
	s->state = ST_GREETED;
	sess_reply(s, SG_R_GREETING, s->srv->cfg.hostname);
	const struct sg_config *c = &s->srv->cfg;
	sg_conn_set_timeout(s->conn, c->timeout_greeting_ms ? c->timeout_greeting_ms : c->timeout_command_ms);
}

/* ---- fault injection (sandbox: "what does my app do when AUTH fails?") ---- */

static void on_fault_delay(evutil_socket_t fd, short what, void *arg)
{
	struct sg_session *s = arg;
	event_free(s->fault_ev);
	s->fault_ev = NULL;
	if (s->fault_job != NULL) {
		/* an AUTH step held back by a login-scoped delay: go on with it */
		struct sess_job *j = s->fault_job;
		s->fault_job = NULL;
		auth_job_done(s, j);
		sess_job_free(j);
		if (!(s->state & (ST_CLOSING | ST_BUSY)) && s->delay_ev == NULL && s->fault_ev == NULL)
			sg_conn_resume(s->conn);
		return;
	}
	char *line = s->fault_line;
	s->fault_line = NULL;
	if (line == NULL) {
		greet(s); /* a delayed greeting */
	} else {
		run_command(s, line, strlen(line), true);
		sg_wipe(line, strlen(line));
		free(line);
	}
	if (!(s->state & (ST_CLOSING | ST_BUSY)) && s->delay_ev == NULL && s->fault_ev == NULL)
		sg_conn_resume(s->conn);
}

/* Apply the rule for this stage, if any. Returns true when the fault took
 * the command over (a reply, a close, a drop, or a delay after which
 * the command runs: line is kept for that; NULL = the greeting). */
static bool apply_fault(struct sg_session *s, enum sg_fault_stage stage, const char *line)
{
	struct sg_fault_action a;
	sg_faults_check(s->srv->faults, stage, s->lst->cfg->name, s->authenticated ? s->login : NULL, &a);
	if (a.kind == SG_FAULT_NONE)
		return false;
	sg_log(SG_INFO, "fault", "sid=%s rule=%ld stage=%d kind=%d code=%u delay_ms=%u", s->id, a.rule_id,
	       (int)stage, (int)a.kind, a.code, a.delay_ms);
	if (stage == SG_FAULT_AUTH && a.kind != SG_FAULT_DELAY) {
		/* name the mechanism the client asked for ("AUTH PLAIN ...") */
		char mech[32] = "";
		if (line != NULL && strlen(line) > 5) {
			size_t n = strcspn(line + 5, " ");
			if (n < sizeof(mech)) {
				memcpy(mech, line + 5, n);
				mech[n] = '\0';
				for (char *p = mech; *p != '\0'; p++)
					if (*p >= 'a' && *p <= 'z')
						*p = (char)(*p - 'a' + 'A');
			}
		}
		sess_auth_event(s, mech, "", a.code >= 500 ? "fail" : a.code >= 400 ? "tempfail" : "ok",
				"fault_rule", true);
	}
	if (a.delay_ms > 0 && a.kind == SG_FAULT_DELAY) {
		s->fault_line = line != NULL ? sg_strdup(line) : NULL;
		s->fault_ev = evtimer_new(s->loop->base, on_fault_delay, s);
		struct timeval tv = {a.delay_ms / 1000, (a.delay_ms % 1000) * 1000};
		sg_conn_pause(s->conn);
		evtimer_add(s->fault_ev, &tv);
		return true;
	}
	switch (a.kind) {
	case SG_FAULT_REPLY:
	case SG_FAULT_REPLY_CLOSE: {
		char text[400];
		int n = a.enhanced[0] != '\0' ? snprintf(text, sizeof(text), "%u %s %s\r\n", a.code, a.enhanced, a.text)
					      : snprintf(text, sizeof(text), "%u %s\r\n", a.code, a.text);
		if (n > 0)
			sess_reply_raw(s, text);
		if (a.kind == SG_FAULT_REPLY_CLOSE)
			sess_close(s, (enum sg_reply_id)-1);
		else if (stage == SG_FAULT_CONNECT)
			sess_close(s, (enum sg_reply_id)-1); /* a refused greeting ends the session */
		return true;
	}
	case SG_FAULT_DROP:
		sg_conn_shutdown(s->conn);
		s->state = ST_CLOSING;
		return true;
	default:
		return false;
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg);
/* AUTH rules scoped to a login (issue 14 item 4). The global AUTH rules are
 * checked at the AUTH command, before any login is known; the scoped ones
 * once per exchange, as soon as a step of the mechanism reveals the login
 * the client claims (res.login: PLAIN, XOAUTH2, OAUTHBEARER, EXTERNAL after
 * their one response; LOGIN after the user name; SCRAM after client-first;
 * NTLM after type 3; GSSAPI at its identity step). A rule that fires
 * replaces that step's reply and ends the exchange (a delay holds the
 * step's reply back, then the exchange goes on). True when it took over. */
static bool auth_scoped_fault(struct sg_session *s, struct sess_job *j)
{
	if (s->auth_fault_done || j->res.login[0] == '\0' || s->srv->faults == NULL)
		return false;
	s->auth_fault_done = true;
	struct sg_fault_action a;
	sg_faults_check_scoped(s->srv->faults, SG_FAULT_AUTH, s->lst->cfg->name, j->res.login, &a);
	if (a.kind == SG_FAULT_NONE)
		return false;
	char lv[300];
	sg_log(SG_INFO, "fault", "sid=%s rule=%ld stage=%d kind=%d code=%u delay_ms=%u login=%s", s->id,
	       a.rule_id, (int)SG_FAULT_AUTH, (int)a.kind, a.code, a.delay_ms,
	       sg_log_value(j->res.login, lv, sizeof(lv)));
	if (a.kind == SG_FAULT_DELAY) {
		s->fault_job = j;
		s->fault_ev = evtimer_new(s->loop->base, on_fault_delay, s);
		struct timeval tv = {a.delay_ms / 1000, (a.delay_ms % 1000) * 1000};
		sg_conn_pause(s->conn);
		evtimer_add(s->fault_ev, &tv);
		return true;
	}
	const char *mech = s->mech != NULL ? s->mech->name : "";
	sess_auth_event(s, mech, j->res.login,
			a.kind == SG_FAULT_DROP ? "aborted"
			: a.code >= 500	       ? "fail"
			: a.code >= 400	       ? "tempfail"
					       : "ok",
			"fault_rule", true);
	auth_abort(s);
	s->mech_first_step = false;
	switch (a.kind) {
	case SG_FAULT_REPLY:
	case SG_FAULT_REPLY_CLOSE: {
		char text[400];
		int n = a.enhanced[0] != '\0' ? snprintf(text, sizeof(text), "%u %s %s\r\n", a.code, a.enhanced, a.text)
					      : snprintf(text, sizeof(text), "%u %s\r\n", a.code, a.text);
		if (n > 0)
			sess_reply_raw(s, text);
		if (a.kind == SG_FAULT_REPLY_CLOSE)
			sess_close(s, (enum sg_reply_id)-1);
		return true;
	}
	default: /* SG_FAULT_DROP */
		sg_conn_shutdown(s->conn);
		s->state = ST_CLOSING;
		return true;
	}
}

static void start_session(struct sg_session *s)
{
	if (!apply_fault(s, SG_FAULT_CONNECT, NULL))
		greet(s);
}

struct sg_session *sess_new(struct sg_listener *lst, int fd, const char *ip, unsigned port,
			    unsigned local_port)
{
	struct sg_server *srv = lst->loop->srv;
	struct sg_session *s = sg_calloc(1, sizeof(*s));
	s->srv = srv;
	s->loop = lst->loop;
	s->lst = lst;
	s->started_ms = sg_now_ms();
	snprintf(s->id, sizeof(s->id), "%08llx%04x",
		 (unsigned long long)(atomic_fetch_add(&srv->session_seq, 1) + 1),
		 (unsigned)(s->started_ms & 0xffff));
	sg_strlcpy(s->client_ip, ip, sizeof(s->client_ip));
	s->client_port = port;
	s->local_port = local_port;
	/* 12,288 octets with the CRLF: 12,286 before it */
	s->line_size = 12286 + 1 > srv->cfg.max_line + 1 ? 12286 + 1 : srv->cfg.max_line + 1;
	s->line = sg_malloc(s->line_size + 1);
	sg_buf_init(&s->body, SESS_SPOOL_BUF);
	s->spool_fd = -1;
	bool implicit = lst->cfg->role == SG_ROLE_SUBMISSIONS;
	s->conn = sg_conn_new(s->loop->base, fd, implicit ? srv->tls : NULL, &conn_cbs, s);
	if (s->conn == NULL) {
		sg_log(SG_ERROR, "connect", "sid=%s client=%s error=\"connection setup failed\"", s->id,
		       ip);
		free(s->line);
		free(s);
		return NULL;
	}
	s->life_ev = evtimer_new(s->loop->base, on_life_timeout, s);
	s->deadline_ev = evtimer_new(s->loop->base, on_deadline, s);
	struct timeval tv = {srv->cfg.timeout_session_ms / 1000, (srv->cfg.timeout_session_ms % 1000) * 1000};
	evtimer_add(s->life_ev, &tv);
	sg_log(SG_INFO, "connect", "sid=%s listener=%s role=%s client=%s port=%u", s->id,
	       lst->cfg->name, sg_role_name(lst->cfg->role), ip, port);
	if (implicit) {
		s->state = ST_HANDSHAKE;
		sg_conn_set_timeout(s->conn, srv->cfg.timeout_tls_ms);
	} else {
		start_session(s);
	}
	atomic_fetch_add(&srv->metrics.connections_current, 1);
	atomic_fetch_add(&srv->metrics.connections_total[sg_metrics_listener_index(&srv->metrics, lst->cfg->name)], 1);
	return s;
}

void sess_free(struct sg_session *s)
{
	if (s->job != NULL) {
		/* A worker is using this session's state (mechanism, env): drop
		 * the connection now, free the rest when the job comes back. */
		s->zombie = true;
		s->state = ST_CLOSING;
		sg_conn_free(&s->conn);
		if (s->life_ev != NULL)
			evtimer_del(s->life_ev);
		if (s->deadline_ev != NULL)
			evtimer_del(s->deadline_ev);
		if (s->delay_ev != NULL)
			evtimer_del(s->delay_ev);
		if (s->fault_ev != NULL)
			evtimer_del(s->fault_ev);
		return;
	}
	auth_abort(s);
	sess_reset_txn(s);
	sg_log(SG_INFO, "disconnect", "sid=%s client=%s login=%s duration_ms=%llu", s->id,
	       s->client_ip, sess_log_login(s), (unsigned long long)(sg_now_ms() - s->started_ms));
	sg_conn_free(&s->conn);
	if (s->delay_ev != NULL)
		event_free(s->delay_ev);
	if (s->life_ev != NULL)
		event_free(s->life_ev);
	if (s->deadline_ev != NULL)
		event_free(s->deadline_ev);
	if (s->fault_ev != NULL)
		event_free(s->fault_ev);
	if (s->fault_line != NULL)
		sg_free_secret_str(&s->fault_line);
	if (s->fault_job != NULL) {
		sess_job_free(s->fault_job);
		s->fault_job = NULL;
	}
	atomic_fetch_sub(&s->srv->metrics.connections_current, 1);
	sg_metrics_session_done(&s->srv->metrics, sg_now_ms() - s->started_ms);
	sg_buf_free(&s->body);
	free(s->rcpts);
	free(s->line);
	sg_server_session_gone(s->loop, s);
	free(s);
}

void sess_shutdown(struct sg_session *s)
{
	if (s->state & (ST_CLOSING))
		return;
	if (s->state & ST_HANDSHAKE) {
		/* No reply can reach a client that has not finished its TLS
		 * handshake: just go. */
		sess_free(s);
		return;
	}
	if (s->state & (ST_DATA | ST_BUSY))
		return; /* finishes its transaction first; server.c bounds the wait */
	sess_close(s, SG_R_SHUTDOWN);
}

static void vreply(struct sg_session *s, const struct sg_reply *r, va_list ap)
{
	char text[512];
	vsnprintf(text, sizeof(text), r->text, ap);
	char line[600];
	int n = r->enhanced != NULL ? snprintf(line, sizeof(line), "%u %s %s\r\n", r->code, r->enhanced, text)
				    : snprintf(line, sizeof(line), "%u %s\r\n", r->code, text);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	sg_conn_write(s->conn, line, (size_t)n);
	if (r->code >= 400)
		sg_log(SG_DEBUG, "reply", "sid=%s code=%u enhanced=%s", s->id, r->code,
		       r->enhanced ? r->enhanced : "-");
}

void sess_reply(struct sg_session *s, enum sg_reply_id id, ...)
{
	va_list ap;
	va_start(ap, id);
	vreply(s, sg_reply_get(id), ap);
	va_end(ap);
}

void sess_reply_raw(struct sg_session *s, const char *text)
{
	sg_conn_write(s->conn, text, strlen(text));
}

void sess_close(struct sg_session *s, enum sg_reply_id id)
{
	if (s->state & ST_CLOSING)
		return;
	if ((int)id >= 0)
		sess_reply(s, id, s->srv->cfg.hostname);
	s->state = ST_CLOSING;
	sg_conn_shutdown(s->conn);
}

void sess_error(struct sg_session *s, enum sg_reply_id id, ...)
{
	va_list ap;
	va_start(ap, id);
	vreply(s, sg_reply_get(id), ap);
	va_end(ap);
	if (++s->errors >= s->srv->cfg.max_errors) {
		sg_log(SG_INFO, "too_many_errors", "sid=%s client=%s errors=%u", s->id, s->client_ip,
		       s->errors);
		sess_close(s, SG_R_TOO_MANY_ERRORS);
	}
}

void sess_reset_txn(struct sg_session *s)
{
	s->mail_from[0] = '\0';
	s->smtputf8 = false;
	s->declared_size = 0;
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	for (size_t i = 0; i < s->nowners; i++)
		free(s->owners[i]);
	free(s->owners);
	s->owners = NULL;
	s->nowners = 0;
	sg_buf_reset(&s->body);
	sess_spool_close(s);
	if (s->state & (ST_MAIL | ST_RCPT | ST_DATA))
		s->state = ST_READY;
}

static void job_work(struct sg_job *job);
static void job_done(struct sg_job *job);

void sess_submit(struct sg_session *s, struct sess_job *j)
{
	j->s = s;
	j->job.work = job_work;
	j->job.done = job_done;
	s->job = j;
	s->state |= ST_BUSY;
	sg_conn_pause(s->conn);
	sg_pool_submit(s->loop->pool, &j->job);
}

static void job_work(struct sg_job *job)
{
	struct sess_job *j = (struct sess_job *)job;
	if (j->kind == JOB_AUTH_STEP)
		auth_job_work(j);
	else if (j->kind == JOB_LOOKUP)
		lookup_job_work(j);
	else
		store_job_work(j);
}

static void job_done(struct sg_job *job)
{
	struct sess_job *j = (struct sess_job *)job;
	struct sg_session *s = j->s;
	s->job = NULL;
	s->state &= ~ST_BUSY;
	if (s->zombie) {
		sess_job_free(j);
		sess_free(s);
		return;
	}
	if (s->state & ST_CLOSING) {
		if (j->kind == JOB_STORE && j->store_rc == 0)
			sg_log(SG_WARN, "stored_unconfirmed", "sid=%s id=%s", s->id, j->id);
		sess_job_free(j);
		return;
	}
	if (j->kind == JOB_AUTH_STEP) {
		if (auth_scoped_fault(s, j)) {
			if (s->fault_job == j)
				return; /* held back by a delay; on_fault_delay goes on */
		} else {
			auth_job_done(s, j);
		}
	} else if (j->kind == JOB_LOOKUP) {
		lookup_job_done(s, j);
	} else {
		store_job_done(s, j);
	}
	sess_job_free(j);
	if (!(s->state & (ST_CLOSING | ST_BUSY)) && s->delay_ev == NULL && s->fault_ev == NULL)
		sg_conn_resume(s->conn);
}

static enum sg_fault_stage stage_of(const char *verb, bool *has)
{
	*has = true;
	if (strcmp(verb, "EHLO") == 0 || strcmp(verb, "HELO") == 0)
		return SG_FAULT_EHLO;
	if (strcmp(verb, "AUTH") == 0)
		return SG_FAULT_AUTH;
	if (strcmp(verb, "MAIL") == 0)
		return SG_FAULT_MAIL;
	if (strcmp(verb, "RCPT") == 0)
		return SG_FAULT_RCPT;
	if (strcmp(verb, "DATA") == 0)
		return SG_FAULT_DATA;
	*has = false;
	return SG_FAULT_CONNECT;
}

static void run_command(struct sg_session *s, char *line, size_t len, bool fault_checked)
{
	if (strlen(line) != len) {
		sess_error(s, SG_R_SYNTAX); /* NUL in a command line */
		return;
	}
	char verb[16];
	const char *args;
	if (sg_cmd_split(line, verb, &args) < 0) {
		sg_log(SG_DEBUG, "command", "sid=%s unrecognized", s->id);
		sess_error(s, SG_R_SYNTAX);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].verb, verb) != 0)
			continue;
		if (!(s->state & commands[i].states)) {
			sess_error(s, SG_R_BAD_SEQ_EHLO);
			return;
		}
		bool has;
		enum sg_fault_stage stage = stage_of(verb, &has);
		if (stage == SG_FAULT_AUTH && has)
			s->auth_fault_done = false; /* a new exchange */
		if (has && !fault_checked && apply_fault(s, stage, line))
			return;
		commands[i].run(s, (char *)args);
		return;
	}
	sess_error(s, SG_R_SYNTAX);
}

/* Per-line deadline (Postfix's smtpd_per_record_deadline): a command line
 * must be complete within timeout_command_ms of its first byte, and every
 * line of a message within timeout_data_ms; further bytes of the same line
 * do not restart the timer (the connection's idle timeout, which they do
 * restart, only bounds the pauses between lines). A client trickling one
 * byte every few seconds is cut after one timeout, not after the session's. */
static bool line_pending(struct sg_session *s)
{
	if (s->state & (ST_HANDSHAKE | ST_CLOSING))
		return false;
	if (s->state & ST_DATA)
		return sg_data_mid_line(&s->dr) || sg_conn_input_len(s->conn) > 0;
	return sg_conn_input_len(s->conn) > 0;
}

static void update_deadline(struct sg_session *s)
{
	if (!s->srv->cfg.command_deadline || s->conn == NULL)
		return;
	if (!line_pending(s)) {
		if (s->deadline_armed)
			evtimer_del(s->deadline_ev);
		s->deadline_armed = false;
		return;
	}
	if (s->deadline_armed)
		return;
	unsigned ms = (s->state & ST_DATA) ? s->srv->cfg.timeout_data_ms : s->srv->cfg.timeout_command_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(s->deadline_ev, &tv);
	s->deadline_armed = true;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct sg_session *s = arg;
	s->deadline_armed = false;
	if ((s->state & (ST_BUSY | ST_CLOSING)) || s->delay_ev != NULL || s->fault_ev != NULL)
		return; /* a worker or a delay holds the input, not the client */
	if (!line_pending(s))
		return;
	sg_log(SG_INFO, "timeout", "sid=%s client=%s state=%#x reason=line_deadline", s->id, s->client_ip,
	       s->state);
	sess_close(s, SG_R_TIMEOUT);
}

static void read_input(struct sg_session *s);

static void on_read(void *ctx)
{
	struct sg_session *s = ctx;
	read_input(s);
	update_deadline(s);
}

static void read_input(struct sg_session *s)
{
	/* Process as many pipelined commands as are buffered; replies are
	 * queued and leave in one write (RFC 2920). */
	while (!(s->state & (ST_BUSY | ST_CLOSING | ST_HANDSHAKE)) && s->delay_ev == NULL &&
	       s->fault_ev == NULL && !sg_conn_output_full(s->conn)) {
		if (s->state & ST_DATA) {
			if (sg_conn_input_len(s->conn) == 0)
				return;
			cmd_data_input(s);
			continue;
		}
		/* Every line may be as long as an AUTH line (RFC 4954 4: 12,288
		 * octets, initial response included); other commands are held
		 * to max_line below. */
		size_t len = 0;
		int r = sg_conn_read_line(s->conn, s->line, s->line_size, &len);
		if (r == 0)
			return;
		bool auth = (s->state & ST_AUTH) || sg_prefix_ci(s->line, "AUTH ");
		if (r < 0 || (!auth && len > s->srv->cfg.max_line)) {
			if (auth)
				cmd_auth_too_long(s);
			else
				sess_error(s, SG_R_LINE_TOO_LONG);
			sg_wipe(s->line, r > 0 ? len : 16);
			continue;
		}
		if (s->state & ST_AUTH)
			cmd_auth_line(s, s->line, len);
		else
			run_command(s, s->line, len, false);
		/* AUTH lines hold secrets */
		sg_wipe(s->line, len);
	}
}

static void on_event(void *ctx, enum sg_conn_event ev)
{
	struct sg_session *s = ctx;
	switch (ev) {
	case SG_CONN_TLS_DONE: {
		const struct sg_conn_info *i = sg_conn_info(s->conn);
		sg_log(SG_INFO, "tls", "sid=%s version=%s cipher=%s client_cert=%s", s->id, i->version,
		       i->cipher, i->cert_verified ? "verified" : i->cert_subject[0] ? "unverified" : "none");
		if (s->state & ST_HANDSHAKE) {
			atomic_fetch_add(&s->srv->metrics.tls_handshakes, 1);
			if (!s->after_starttls)
				start_session(s); /* implicit TLS: the greeting comes after the handshake */
			else {
				s->state = ST_GREETED; /* after STARTTLS: the client speaks first */
				sg_conn_set_timeout(s->conn, s->srv->cfg.timeout_command_ms);
			}
		}
		return;
	}
	case SG_CONN_TIMEOUT:
		sg_log(SG_INFO, "timeout", "sid=%s client=%s state=%#x", s->id, s->client_ip, s->state);
		sess_close(s, SG_R_TIMEOUT);
		return;
	case SG_CONN_TLS_FAILED:
		atomic_fetch_add(&s->srv->metrics.tls_failures, 1);
		sg_log(SG_INFO, "tls_failed", "sid=%s client=%s", s->id, s->client_ip);
		break;
	case SG_CONN_EOF:
	case SG_CONN_ERROR:
		if (!s->quit)
			sg_log(SG_INFO, "lost", "sid=%s client=%s state=%#x reason=%s", s->id, s->client_ip,
			       s->state, ev == SG_CONN_EOF ? "eof" : "error");
		break;
	case SG_CONN_CLOSED:
		break;
	}
	sess_free(s);
}
