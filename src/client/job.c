#include "client/job.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/sasl_client.h"
#include "core/buf.h"
#include "core/secret.h"
#include "core/util.h"

const char *sg_job_stage_name(enum sg_job_stage s)
{
	static const char *const names[] = {
		"connect", "tls",  "greeting", "ehlo",    "starttls", "ehlo-after-tls", "auth",
		"mail",    "rcpt", "data",     "message", "quit",     "done",
	};
	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static void copy_reply(struct sg_job_reply *dst, const struct sg_reply *r)
{
	dst->code = r->code;
	sg_strlcpy(dst->enh, r->enh, sizeof(dst->enh));
	dst->text[0] = '\0';
	size_t used = 0;
	for (size_t i = 0; i < r->nlines; i++) {
		int n = snprintf(dst->text + used, sizeof(dst->text) - used, "%s%s",
				 i ? " / " : "", sg_reply_text_noenh(r, i));
		if (n < 0 || (size_t)n >= sizeof(dst->text) - used)
			break;
		used += (size_t)n;
	}
}

static void caps_free(struct sg_job_caps *c)
{
	for (size_t i = 0; i < c->ncaps; i++)
		free(c->caps[i]);
	for (size_t i = 0; i < c->nmechs; i++)
		free(c->mechs[i]);
	memset(c, 0, sizeof(*c));
}

static void caps_add_mechs(struct sg_job_caps *c, const char *list)
{
	const char *p = list;
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (n == 0)
			break;
		bool dup = false;
		for (size_t i = 0; i < c->nmechs; i++)
			if (strlen(c->mechs[i]) == n && strncasecmp(c->mechs[i], p, n) == 0)
				dup = true;
		if (!dup && c->nmechs < SG_JOB_MECHS_MAX && n <= 40) {
			char *m = sg_strndup(p, n);
			for (char *q = m; *q; q++)
				if (*q >= 'a' && *q <= 'z')
					*q = (char)(*q - 'a' + 'A');
			c->mechs[c->nmechs++] = m;
		}
		p += n;
	}
}

/* RFC 5321 section 4.1.1.1 / RFC 4954 section 3: the EHLO keywords. */
static void parse_caps(struct sg_job_caps *c, const struct sg_reply *r)
{
	caps_free(c);
	c->seen = true;
	for (size_t i = 1; i < r->nlines; i++) {
		const char *t = sg_reply_text(r, i);
		if (c->ncaps < SG_JOB_CAPS_MAX)
			c->caps[c->ncaps++] = sg_strdup(t);
		if (strcasecmp(t, "STARTTLS") == 0)
			c->starttls = true;
		if (sg_prefix_ci(t, "AUTH ") || sg_prefix_ci(t, "AUTH=")) {
			c->auth = true;
			caps_add_mechs(c, t + 5);
		} else if (strcasecmp(t, "AUTH") == 0) {
			c->auth = true;
		}
	}
}

const struct sg_job_caps *sg_job_caps(const struct sg_job *job)
{
	return job->tls_active ? &job->caps_tls : &job->caps_plain;
}

bool sg_job_offers(const struct sg_job *job, const char *mech)
{
	const struct sg_job_caps *c = sg_job_caps(job);
	for (size_t i = 0; i < c->nmechs; i++)
		if (strcasecmp(c->mechs[i], mech) == 0)
			return true;
	return false;
}

static void job_finish(struct sg_job *job)
{
	job->done = true;
	event_base_loopbreak(job->base);
}

/* Stop on a reply we did not want: remember it, say QUIT politely. */
static void job_refused(struct sg_job *job, enum sg_job_stage st, const struct sg_reply *r)
{
	job->stage = st;
	job->outcome = SG_JOB_REPLY_REFUSED;
	copy_reply(&job->reply, r);
	if (r->code == 421) {
		job_finish(job); /* RFC 5321 section 3.8: the server is closing */
		return;
	}
	job->quitting = true;
	sg_smtpc_command(job->conn, "QUIT", NULL, NULL);
}

static void job_quit(struct sg_job *job)
{
	job->stage = SG_JOB_DONE;
	job->quitting = true;
	sg_smtpc_command(job->conn, "QUIT", NULL, NULL);
}

static void job_send_ehlo(struct sg_job *job, enum sg_job_stage st)
{
	job->stage = st;
	char line[300];
	snprintf(line, sizeof(line), "EHLO %s", job->opts.ehlo ? job->opts.ehlo : "localhost");
	sg_smtpc_command(job->conn, line, NULL, NULL);
}

static void job_send_mail(struct sg_job *job)
{
	job->stage = SG_JOB_MAIL;
	char line[600];
	snprintf(line, sizeof(line), "MAIL FROM:<%s>", job->opts.mail_from);
	sg_smtpc_command(job->conn, line, NULL, NULL);
}

static void job_after_ehlo(struct sg_job *job)
{
	if (job->opts.mech != NULL) {
		struct sg_saslc *sc = sg_calloc(1, sizeof(*sc));
		job->saslc = sc;
		job->stage = SG_JOB_AUTH;
		job->auth_attempted = true;
		struct sg_sasl_client_env *env = &job->opts.env;
		env->host = job->opts.host;
		env->port = job->opts.port;
		if (env->service == NULL)
			env->service = "smtp";
		const struct sg_job_caps *caps = sg_job_caps(job);
		env->server_offers_plus = false;
		for (size_t i = 0; i < caps->nmechs; i++) {
			size_t l = strlen(caps->mechs[i]);
			if (l > 5 && strcasecmp(caps->mechs[i] + l - 5, "-PLUS") == 0)
				env->server_offers_plus = true;
		}
		if (job->cb_len > 0) {
			env->cb_type = job->cb_type;
			env->cb_data = job->cb_data;
			env->cb_len = job->cb_len;
		} else {
			env->cb_type = NULL;
			env->cb_data = NULL;
			env->cb_len = 0;
		}
		if (sg_saslc_begin(sc, job->opts.mech, env, job->opts.show_secrets) < 0) {
			job->outcome = SG_JOB_AUTH_CLIENT;
			snprintf(job->error, sizeof(job->error), "%s: %s", job->opts.mech->name,
				 sc->client_error);
			sg_transcript_add(&job->transcript, SG_TR_NOTE, job->error, NULL);
			job->quitting = true;
			sg_smtpc_command(job->conn, "QUIT", NULL, NULL);
			return;
		}
		sg_smtpc_command(job->conn, sg_buf_str(&sc->line), sc->display, sc->decoded);
		return;
	}
	if (job->opts.mail_from != NULL) {
		job_send_mail(job);
		return;
	}
	job_quit(job);
}

static void job_send_message(struct sg_job *job)
{
	/* RFC 5321 section 4.5.2: dot-stuffing; section 2.3.8: CRLF line ends. */
	struct sg_buf b;
	sg_buf_init(&b, 16 * 1024 * 1024);
	const char *m = job->opts.message;
	bool bol = true;
	for (; *m; m++) {
		if (bol && *m == '.')
			sg_buf_append(&b, ".", 1);
		if (*m == '\n') {
			sg_buf_append(&b, "\r\n", 2);
			bol = true;
			continue;
		}
		if (*m == '\r')
			continue;
		sg_buf_append(&b, m, 1);
		bol = false;
	}
	if (!bol)
		sg_buf_append(&b, "\r\n", 2);
	sg_buf_append(&b, ".\r\n", 3);
	char note[80];
	snprintf(note, sizeof(note), "(message: %zu octets, then \".\")", b.len - 3);
	sg_transcript_add(&job->transcript, SG_TR_CLIENT, note, NULL);
	job->stage = SG_JOB_MESSAGE;
	sg_smtpc_send_raw(job->conn, b.data, b.len, "the reply to the end of the message");
	sg_buf_free(&b);
}

static void job_on_reply(struct sg_job *job, const struct sg_reply *r)
{
	if (job->quitting) {
		job_finish(job);
		return;
	}
	switch (job->stage) {
	case SG_JOB_GREETING:
		sg_strlcpy(job->greeting, sg_reply_text(r, 0), sizeof(job->greeting));
		if (r->code != 220) {
			job_refused(job, SG_JOB_GREETING, r);
			return;
		}
		job_send_ehlo(job, job->tls_active ? SG_JOB_EHLO_TLS : SG_JOB_EHLO);
		return;
	case SG_JOB_EHLO:
	case SG_JOB_EHLO_TLS:
		if (r->code != 250) {
			job_refused(job, job->stage, r);
			return;
		}
		parse_caps(job->stage == SG_JOB_EHLO ? &job->caps_plain : &job->caps_tls, r);
		if (job->stage == SG_JOB_EHLO && job->opts.tls_mode == SG_TLSM_STARTTLS) {
			if (!job->caps_plain.starttls) {
				job->outcome = SG_JOB_NO_STARTTLS;
				snprintf(job->error, sizeof(job->error),
					 "the server does not offer STARTTLS");
				job->quitting = true;
				job->stage = SG_JOB_STARTTLS;
				sg_smtpc_command(job->conn, "QUIT", NULL, NULL);
				return;
			}
			job->stage = SG_JOB_STARTTLS;
			sg_smtpc_command(job->conn, "STARTTLS", NULL, NULL);
			return;
		}
		job_after_ehlo(job);
		return;
	case SG_JOB_STARTTLS:
		if (r->code != 220) {
			job_refused(job, SG_JOB_STARTTLS, r);
			return;
		}
		job->stage = SG_JOB_TLS;
		sg_smtpc_starttls(job->conn, job->opts.tls, job->opts.host);
		return;
	case SG_JOB_AUTH: {
		struct sg_saslc *sc = job->saslc;
		enum sg_saslc_status s = sg_saslc_reply(sc, r);
		copy_reply(&job->reply, r);
		copy_reply(&job->auth_reply, r);
		if (s == SG_SASLC_SEND) {
			sg_smtpc_command(job->conn, sg_buf_str(&sc->line), sc->display, sc->decoded);
			return;
		}
		if (s == SG_SASLC_OK) {
			job->auth_ok = true;
			if (job->opts.mail_from != NULL)
				job_send_mail(job);
			else
				job_quit(job);
			return;
		}
		job->auth_aborted = sc->aborted;
		if (sc->aborted) {
			job->outcome = SG_JOB_AUTH_CLIENT;
			snprintf(job->error, sizeof(job->error), "%s: %s", job->opts.mech->name,
				 sc->client_error);
			job->stage = SG_JOB_AUTH;
			job->quitting = true;
			sg_smtpc_command(job->conn, "QUIT", NULL, NULL);
			return;
		}
		job_refused(job, SG_JOB_AUTH, r);
		return;
	}
	case SG_JOB_MAIL:
		if (r->code != 250) {
			job_refused(job, SG_JOB_MAIL, r);
			return;
		}
		{
			job->stage = SG_JOB_RCPT;
			char line[600];
			snprintf(line, sizeof(line), "RCPT TO:<%s>", job->opts.rcpt_to);
			sg_smtpc_command(job->conn, line, NULL, NULL);
		}
		return;
	case SG_JOB_RCPT:
		if (r->code != 250 && r->code != 251) {
			job_refused(job, SG_JOB_RCPT, r);
			return;
		}
		job->stage = SG_JOB_DATA;
		sg_smtpc_command(job->conn, "DATA", NULL, NULL);
		return;
	case SG_JOB_DATA:
		if (r->code != 354) {
			job_refused(job, SG_JOB_DATA, r);
			return;
		}
		job_send_message(job);
		return;
	case SG_JOB_MESSAGE:
		copy_reply(&job->send_reply, r);
		if (r->code != 250) {
			job_refused(job, SG_JOB_MESSAGE, r);
			return;
		}
		job->sent = true;
		job_quit(job);
		return;
	default:
		job_finish(job);
		return;
	}
}

static void job_cb(struct sg_smtpc *c, enum sg_smtpc_event ev, const struct sg_reply *r, void *arg)
{
	struct sg_job *job = arg;
	switch (ev) {
	case SG_SMTPC_CONNECTED:
		job->connected = true;
		sg_strlcpy(job->peer, sg_smtpc_peer(c), sizeof(job->peer));
		if (job->opts.tls_mode == SG_TLSM_IMPLICIT) {
			job->stage = SG_JOB_TLS;
			sg_smtpc_starttls(c, job->opts.tls, job->opts.host);
		} else {
			job->stage = SG_JOB_GREETING;
			sg_smtpc_expect(c, "the greeting");
		}
		return;
	case SG_SMTPC_TLS_READY: {
		job->tls_active = true;
		job->tls = *sg_smtpc_tls_info(c);
		const char *cbt = NULL;
		if (sg_smtpc_channel_binding(c, &cbt, job->cb_data, &job->cb_len) == 0)
			sg_strlcpy(job->cb_type, cbt, sizeof(job->cb_type));
		else
			job->cb_len = 0;
		if (!job->tls.verified) {
			char note[300];
			snprintf(note, sizeof(note), "certificate NOT verified: %s%s",
				 job->tls.verify_error,
				 job->opts.insecure ? " (going on: --insecure)" : "");
			sg_transcript_add(&job->transcript, SG_TR_NOTE, note, NULL);
			if (!job->opts.insecure) {
				job->outcome = SG_JOB_CERT_FAILED;
				snprintf(job->error, sizeof(job->error),
					 "the server's certificate did not verify: %s",
					 job->tls.verify_error);
				/* Nothing more is said over an unverified channel. */
				job_finish(job);
				return;
			}
		}
		if (job->opts.tls_mode == SG_TLSM_IMPLICIT) {
			job->stage = SG_JOB_GREETING;
			sg_smtpc_expect(c, "the greeting");
		} else {
			/* RFC 3207 section 4.2: forget what we knew, EHLO again. */
			job_send_ehlo(job, SG_JOB_EHLO_TLS);
		}
		return;
	}
	case SG_SMTPC_REPLY:
		job_on_reply(job, r);
		return;
	case SG_SMTPC_FAILED: {
		const char *msg = NULL;
		job->io_err = sg_smtpc_error(c, &msg);
		if (job->quitting) {
			/* the server hung up after our QUIT: fine */
			job_finish(job);
			return;
		}
		job->outcome = SG_JOB_IO_FAILED;
		sg_strlcpy(job->error, msg, sizeof(job->error));
		if (job->stage == SG_JOB_TLS && job->io_err != SG_SMTPC_E_TIMEOUT &&
		    job->io_err != SG_SMTPC_E_PROTOCOL)
			job->io_err = SG_SMTPC_E_TLS;
		job_finish(job);
		return;
	}
	}
}

void sg_job_run(struct event_base *base, struct sg_job *job)
{
	job->base = base;
	job->stage = SG_JOB_CONNECT;
	job->outcome = SG_JOB_OK;
	sg_transcript_init(&job->transcript);
	job->conn = sg_smtpc_new(base, &job->transcript, job->opts.timeout_ms, job_cb, job);
	if (job->opts.tls_mode != SG_TLSM_NONE && job->opts.tls == NULL) {
		job->outcome = SG_JOB_IO_FAILED;
		job->io_err = SG_SMTPC_E_TLS;
		sg_strlcpy(job->error, "TLS requested without a TLS context", sizeof(job->error));
		sg_smtpc_free(&job->conn);
		return;
	}
	sg_smtpc_connect(job->conn, job->opts.host, job->opts.port);
	while (!job->done) {
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			break;
	}
	if (job->outcome == SG_JOB_OK && job->stage == SG_JOB_QUIT)
		job->stage = SG_JOB_DONE;
	sg_smtpc_free(&job->conn);
}

void sg_job_free(struct sg_job *job)
{
	if (job->saslc != NULL) {
		sg_saslc_free(job->saslc);
		free(job->saslc);
		job->saslc = NULL;
	}
	caps_free(&job->caps_plain);
	caps_free(&job->caps_tls);
	sg_transcript_free(&job->transcript);
	sg_wipe(job->cb_data, sizeof(job->cb_data));
}
