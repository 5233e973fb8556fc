/*
 * DATA (RFC 5321 4.1.1.4): read the message with the smuggling-safe reader
 * (smtp/data.h), then store it durably on a worker before the 250.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/util.h"
#include "server/server.h"
#include "server/session.h"
#include "store/events.h"
#include "store/mail.h"

void cmd_data(struct sg_session *s, char *args)
{
	if (s->state & ST_MAIL) {
		sess_error(s, SG_R_NO_VALID_RCPTS);
		return;
	}
	if (!(s->state & ST_RCPT)) {
		sess_error(s, SG_R_BAD_SEQ_MAIL);
		return;
	}
	if (*args != '\0') {
		sess_error(s, SG_R_PARAM_SYNTAX);
		return;
	}
	sg_buf_reset(&s->body);
	sg_data_init(&s->dr, &s->body, s->srv->cfg.max_message_size, s->lst->cfg->bare_lf_normalize);
	s->state = ST_DATA;
	sg_conn_set_timeout(s->conn, s->srv->cfg.timeout_data_ms);
	sess_reply(s, SG_R_DATA_GO);
}

/* RFC 5321 4.4 trace header; "with" per RFC 3848 (ESMTPSA, ...) and RFC 6531.
 * only != NULL: the block of that inbox, naming only the recipients that go
 * to it (mx: one owner never learns another's, Bcc included). */
static void build_prefix(struct sg_session *s, struct sg_buf *b, const char *only)
{
	const struct sg_conn_info *ci = sg_conn_info(s->conn);
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	const char *with = s->smtputf8 ? (ci->tls ? (s->authenticated ? "UTF8SMTPSA" : "UTF8SMTPS")
						   : (s->authenticated ? "UTF8SMTPA" : "UTF8SMTP"))
			 : s->esmtp   ? (ci->tls ? (s->authenticated ? "ESMTPSA" : "ESMTPS")
						 : (s->authenticated ? "ESMTPA" : "ESMTP"))
				      : "SMTP";
	sg_buf_printf(b, "Return-Path: <%s>\r\n", s->mail_from);
	sg_buf_printf(b, "X-Smtpgate-Envelope: listener=%s; client=%s; auth=%s; login=%s; tls=%s; cipher=%s\r\n",
		      s->lst->cfg->name, s->client_ip, s->auth_mech_name ? s->auth_mech_name : "none",
		      s->authenticated ? s->login : "", ci->tls ? ci->version : "none",
		      ci->tls ? ci->cipher : "none");
	size_t mine = 0, last = 0;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (only == NULL || strcmp(s->rcpts[i].owner, only) == 0) {
			sg_buf_printf(b, "X-Smtpgate-Rcpt: <%s>\r\n", s->rcpts[i].addr);
			mine++;
			last = i;
		}
	sg_buf_printf(b, "Received: from %s ([%s])\r\n\tby %s (smtpgate) with %s id %s.%u", s->helo,
		      s->client_ip, s->srv->cfg.hostname, with, s->id, s->txn_seq);
	if (ci->tls)
		sg_buf_printf(b, "\r\n\t(using %s with cipher %s (%d bits))", ci->version, ci->cipher,
			      ci->bits);
	if (s->authenticated)
		sg_buf_printf(b, "\r\n\t(authenticated as %s with %s)", s->login, s->auth_mech_name);
	if (mine == 1)
		sg_buf_printf(b, "\r\n\tfor <%s>", s->rcpts[last].addr);
	sg_buf_printf(b, "; %s\r\n", date);
}

static void finish(struct sg_session *s)
{
	s->state = ST_READY;
	sg_conn_set_timeout(s->conn, s->srv->cfg.timeout_command_ms);
	s->txn_seq++;
	struct sg_data_reader *dr = &s->dr;
	if (dr->too_big) {
		sg_log(SG_INFO, "data", "sid=%s size=%zu result=rejected reason=too_big", s->id, dr->size);
		atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_TOO_BIG], 1);
		sess_reset_txn(s);
		sess_reply(s, SG_R_TOO_BIG);
		return;
	}
	if ((dr->bare_lf && !dr->normalize_lf) || dr->bare_cr) {
		sg_log(SG_INFO, "data", "sid=%s size=%zu result=rejected reason=%s", s->id, dr->size,
		       dr->bare_cr ? "bare_cr" : "bare_lf");
		atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_BARE_LF], 1);
		sess_reset_txn(s);
		sess_reply(s, SG_R_BARE_LF);
		return;
	}
	struct sess_job *j = sg_calloc(1, sizeof(*j));
	j->kind = JOB_STORE;
	sg_buf_init(&j->prefix, 64 * 1024);
	build_prefix(s, &j->prefix, NULL);
	/* hand the body over without copying */
	j->body = s->body;
	sg_buf_init(&s->body, s->srv->cfg.max_message_size);
	if (s->authenticated) {
		j->logins[j->nlogins++] = sg_strdup(s->login);
	} else {
		for (size_t i = 0; i < s->nowners; i++) {
			if (s->nowners > 1) {
				j->own_prefix[j->nlogins] = sg_calloc(1, sizeof(struct sg_buf));
				sg_buf_init(j->own_prefix[j->nlogins], 64 * 1024);
				build_prefix(s, j->own_prefix[j->nlogins], s->owners[i]);
			}
			j->logins[j->nlogins++] = sg_strdup(s->owners[i]);
		}
	}
	sess_submit(s, j);
}

void cmd_data_input(struct sg_session *s)
{
	const uint8_t *p;
	size_t n = sg_conn_peek(s->conn, &p);
	if (n == 0)
		return;
	size_t used = sg_data_feed(&s->dr, p, n);
	sg_conn_drain(s->conn, used);
	if (s->dr.done)
		finish(s);
}

void store_job_work(struct sess_job *j)
{
	struct sg_session *s = j->s;
	j->store_rc = sg_mail_commit_each(s->srv->mail, (const char *const *)j->logins,
					  j->own_prefix[0] != NULL ? (const struct sg_buf *const *)j->own_prefix
								   : NULL,
					  j->nlogins, &j->prefix, &j->body, j->id, &j->error);
}

void store_job_done(struct sg_session *s, struct sess_job *j)
{
	size_t size = j->body.len;
	if (j->store_rc < 0) {
		sg_log(SG_ERROR, "store", "sid=%s result=failed error=\"%s\"", s->id,
		       j->error ? j->error : "?");
		atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_STORE], 1);
		sess_reset_txn(s);
		sess_reply(s, SG_R_STORE_FAILED);
		return;
	}
	sg_log(SG_INFO, "stored", "sid=%s id=%s size=%zu inboxes=%zu login=%s", s->id, j->id, size,
	       j->nlogins, sess_log_login(s));
	atomic_fetch_add(&s->srv->metrics.messages_accepted, 1);
	atomic_fetch_add(&s->srv->metrics.bytes_stored, j->prefix.len + size);
	for (size_t i = 0; i < j->nlogins; i++) {
		struct sg_msg_event e = {.time_ms = (int64_t)time(NULL) * 1000, .size = j->prefix.len + size};
		sg_strlcpy(e.login, j->logins[i], sizeof(e.login));
		sg_strlcpy(e.id, j->id, sizeof(e.id));
		sg_events_message(s->srv->events, &e);
	}
	sess_reset_txn(s);
	sess_reply(s, SG_R_QUEUED, j->id);
}
