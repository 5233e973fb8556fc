/*
 * DATA (RFC 5321 4.1.1.4): read the message with the smuggling-safe reader
 * (smtp/data.h), then store it durably on a worker before the 250.
 *
 * The body is never held whole in memory: the reader's output goes to a
 * buffer of SESS_SPOOL_BUF octets that is written, whenever half full, to an
 * unnamed file in <data_dir>/spool (O_TMPFILE: nothing is left behind by a
 * crash). The store job copies prefix + spool into the inbox, fsyncs file
 * and directory, and only then is 250 sent. Memory per session in DATA is
 * a small constant whatever max_message_size is.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/util.h"
#include "server/route.h"
#include "server/server.h"
#include "server/session.h"
#include "store/events.h"
#include "store/mail.h"

static int spool_open(struct sg_session *s)
{
	char dir[1100];
	snprintf(dir, sizeof(dir), "%s/spool", s->srv->cfg.data_dir);
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	/* no O_TMPFILE on this file system: a private name, unlinked at once */
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s.%u.XXXXXX", dir, s->id, s->txn_seq);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

void sess_spool_close(struct sg_session *s)
{
	if (s->spool_fd >= 0)
		close(s->spool_fd);
	s->spool_fd = -1;
	s->spooled = 0;
}

/* Append the buffered body to the spool file (page cache; the fsync of the
 * final message happens on a worker). A failure is remembered for the end. */
static void spool_flush(struct sg_session *s)
{
	const uint8_t *p = s->body.data;
	size_t n = s->body.len;
	while (n > 0 && s->spool_errno == 0) {
		ssize_t w = pwrite(s->spool_fd, p, n, (off_t)s->spooled);
		if (w < 0) {
			if (errno != EINTR)
				s->spool_errno = errno;
			continue;
		}
		p += w;
		n -= (size_t)w;
		s->spooled += (size_t)w;
	}
	sg_buf_reset(&s->body);
}

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
	sess_spool_close(s);
	s->spool_fd = spool_open(s);
	if (s->spool_fd < 0) {
		sg_log(SG_ERROR, "store", "sid=%s result=failed error=\"cannot create a spool file in %s/spool: %s\"",
		       s->id, s->srv->cfg.data_dir, strerror(errno));
		atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_STORE], 1);
		sess_reply(s, SG_R_STORE_FAILED);
		return;
	}
	s->spooled = 0;
	s->spool_errno = 0;
	sg_data_init(&s->dr, &s->body, s->srv->cfg.max_message_size, s->lst->cfg->bare_lf_normalize);
	s->state = ST_DATA;
	sg_conn_set_timeout(s->conn, s->srv->cfg.timeout_data_ms);
	sess_reply(s, SG_R_DATA_GO);
}

/* RFC 5321 4.4 trace header; "with" per RFC 3848 (ESMTPSA, ...) and RFC 6531. */
static void build_prefix(struct sg_session *s, struct sg_buf *b)
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
	for (size_t i = 0; i < s->nrcpts; i++)
		sg_buf_printf(b, "X-Smtpgate-Rcpt: <%s>\r\n", s->rcpts[i].addr);
	sg_buf_printf(b, "Received: from %s ([%s])\r\n\tby %s (smtpgate) with %s id %s.%u", s->helo,
		      s->client_ip, s->srv->cfg.hostname, with, s->id, s->txn_seq);
	if (ci->tls)
		sg_buf_printf(b, "\r\n\t(using %s with cipher %s (%d bits))", ci->version, ci->cipher,
			      ci->bits);
	if (s->authenticated)
		sg_buf_printf(b, "\r\n\t(authenticated as %s with %s)", s->login, s->auth_mech_name);
	if (s->nrcpts == 1)
		sg_buf_printf(b, "\r\n\tfor <%s>", s->rcpts[0].addr);
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
	spool_flush(s);
	if (s->spool_errno != 0) {
		sg_log(SG_ERROR, "store", "sid=%s result=failed error=\"spool write: %s\"", s->id,
		       strerror(s->spool_errno));
		atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_STORE], 1);
		sess_reset_txn(s);
		sess_reply(s, SG_R_STORE_FAILED);
		return;
	}
	struct sess_job *j = sg_calloc(1, sizeof(*j));
	j->kind = JOB_STORE;
	sg_buf_init(&j->prefix, 64 * 1024);
	build_prefix(s, &j->prefix);
	/* hand the spool file over */
	j->body_fd = s->spool_fd;
	j->body_len = s->spooled;
	s->spool_fd = -1;
	s->spooled = 0;
	j->logins = sg_calloc(s->authenticated ? 1 : s->nowners + 1, sizeof(*j->logins));
	if (s->authenticated) {
		j->logins[j->nlogins++] = sg_strdup(s->login);
	} else {
		for (size_t i = 0; i < s->nowners; i++)
			j->logins[j->nlogins++] = sg_strdup(s->owners[i]);
	}
	sg_route_prepare(s, j); /* delivery = relay */
	sess_submit(s, j);
}

void cmd_data_input(struct sg_session *s)
{
	const uint8_t *p;
	size_t n = sg_conn_peek(s->conn, &p);
	if (n == 0)
		return;
	/* The reader emits at most two octets per octet read (a bare LF
	 * normalised to CRLF): feed it no more than half the room left. */
	size_t used = 0;
	while (used < n && !s->dr.done) {
		if (s->body.len >= SESS_SPOOL_BUF / 2)
			spool_flush(s);
		size_t room = (SESS_SPOOL_BUF - s->body.len) / 2;
		size_t chunk = n - used < room ? n - used : room;
		used += sg_data_feed(&s->dr, p + used, chunk);
	}
	sg_conn_drain(s->conn, used);
	if (s->dr.done)
		finish(s);
}

void store_job_work(struct sess_job *j)
{
	struct sg_session *s = j->s;
	if (j->route != NULL) {
		sg_route_work(j);
		return;
	}
	j->store_rc = sg_mail_commit_fd(s->srv->mail, (const char *const *)j->logins, j->nlogins,
					&j->prefix, j->body_fd, j->body_len, j->id, &j->error);
}

void store_job_done(struct sg_session *s, struct sess_job *j)
{
	if (j->route != NULL) {
		sg_route_done(s, j);
		return;
	}
	size_t size = j->body_len;
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
