/*
 * MAIL and RCPT (RFC 5321 4.1.1.2, 4.1.1.3) with the policy decisions:
 * authentication required on submission, sender ownership, relay control
 * and local recipients on mx.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/cred.h"
#include "server/server.h"
#include "server/session.h"
#include "relay/queue.h"
#include "smtp/cmd.h"

static bool auth_required(const struct sg_session *s)
{
	return s->lst->cfg->role != SG_ROLE_MX;
}

int sess_account_fp(struct sg_cred_store *creds, const char *login, uint8_t fp[32])
{
	struct sg_account acct;
	struct sg_verifier v;
	memset(&v, 0, sizeof(v));
	int r = sg_cred_lookup(creds, login, SG_CRED_PASSWORD_HASH, &acct, &v);
	if (r == 1 && acct.disabled)
		r = 0;
	if (r == 1) {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		unsigned len = 32;
		if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestUpdate(ctx, &acct.id, sizeof(acct.id)) != 1 ||
		    EVP_DigestUpdate(ctx, acct.login, strlen(acct.login) + 1) != 1 ||
		    EVP_DigestUpdate(ctx, v.kind == SG_CRED_PASSWORD_HASH ? v.u.crypt : "",
				     v.kind == SG_CRED_PASSWORD_HASH ? strlen(v.u.crypt) : 0) != 1 ||
		    EVP_DigestFinal_ex(ctx, fp, &len) != 1)
			sg_fatal("SHA-256 failed");
		EVP_MD_CTX_free(ctx);
	}
	sg_wipe(&v, sizeof(v));
	return r;
}

/* RFC 4954 leaves open how long an authentication lasts; here it lasts as
 * long as the account does not change: disabled, deleted or given a new
 * password (smtpgate user disable / del / passwd), the session may no longer
 * submit and must authenticate again. Cheap: the account is looked up only
 * when the store's generation moved since the last check.
 *
 * Every check that needs the store (this re-check, sender ownership, local
 * recipients) runs on the worker pool: the session waits in ST_BUSY, its
 * input paused, and the loop goes on serving the others however slow the
 * store is (a PostgreSQL round trip, a failover). What needs no store is
 * decided on the loop, without the hop. */

void lookup_job_work(struct sess_job *j)
{
	struct sg_session *s = j->s;
	struct sg_cred_store *creds = s->srv->creds;
	struct sess_lookup *lk = &j->lk;
	if (lk->rcpt) {
		const char *at = strrchr(lk->path, '@');
		const char *domain = at + 1; /* cmd_rcpt submits only addresses with a domain */
		if (strcasecmp(domain, s->srv->cfg.hostname) == 0 || strcasecmp(domain, "localhost") == 0)
			lk->local_rc = 1;
		else
			lk->local_rc = sg_cred_domain_is_local(creds, domain);
		if (lk->local_rc == 1)
			lk->owner_rc = sg_cred_find_owner(creds, lk->path, lk->owner, sizeof(lk->owner));
		return;
	}
	lk->recheck_rc = 1;
	if (lk->recheck) {
		lk->gen = sg_cred_generation(creds);
		if (lk->gen != lk->auth_gen || lk->gen == 0)
			lk->recheck_rc = sess_account_fp(creds, lk->login, lk->fp);
		else
			lk->recheck = false; /* unchanged store: nothing to compare */
	}
	if (lk->recheck_rc == 1 && lk->owns)
		lk->owns_rc = sg_cred_owns_address(creds, lk->login, lk->path);
}

static void mail_accept(struct sg_session *s, const struct sess_lookup *lk)
{
	char pv[300];
	s->dsn_ret = lk->dsn_ret;
	sg_strlcpy(s->dsn_envid, lk->envid, sizeof(s->dsn_envid));
	sg_strlcpy(s->mail_from, lk->path, sizeof(s->mail_from));
	s->smtputf8 = lk->smtputf8;
	s->declared_size = lk->size;
	s->state = ST_MAIL;
	sg_log(SG_INFO, "mail", "sid=%s login=%s from=%s size=%llu result=ok", s->id, sess_log_login(s),
	       sg_log_value(lk->path[0] ? lk->path : "<>", pv, sizeof(pv)), lk->size);
	sess_reply(s, SG_R_MAIL_OK);
}

static void mail_done(struct sg_session *s, struct sess_lookup *lk)
{
	char pv[300];
	if (lk->recheck_rc < 0) {
		sess_reply(s, SG_R_LOCAL_ERROR);
		return;
	}
	if (lk->recheck) {
		if (lk->recheck_rc == 1 && (s->auth_gen == 0 || sg_ct_eq(lk->fp, s->auth_fp, sizeof(lk->fp)))) {
			memcpy(s->auth_fp, lk->fp, sizeof(lk->fp));
			s->auth_gen = lk->gen;
		} else {
			sg_log(SG_INFO, "mail", "sid=%s login=%s result=rejected reason=account_changed", s->id,
			       sg_log_value(s->login, pv, sizeof(pv)));
			s->authenticated = false;
			s->login[0] = '\0';
			s->auth_mech_name = NULL;
			sess_error(s, SG_R_AUTH_REQUIRED);
			return;
		}
	}
	if (lk->owns) {
		if (lk->owns_rc < 0) {
			sess_reply(s, SG_R_LOCAL_ERROR);
			return;
		}
		if (lk->owns_rc == 0) {
			sg_log(SG_INFO, "mail", "sid=%s login=%s from=%s result=rejected reason=not_owned",
			       s->id, s->login, sg_log_value(lk->path, pv, sizeof(pv)));
			atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_SENDER], 1);
			sess_error(s, SG_R_SENDER_NOT_OWNED, s->login);
			return;
		}
	}
	mail_accept(s, lk);
}

void cmd_mail(struct sg_session *s, char *args)
{
	if (!(s->state & (ST_READY | ST_MAIL | ST_RCPT))) {
		sess_error(s, SG_R_BAD_SEQ_EHLO);
		return;
	}
	if (s->state & (ST_MAIL | ST_RCPT)) {
		sess_error(s, SG_R_NESTED_MAIL);
		return;
	}
	if (s->lst->cfg->require_tls && !sess_tls(s)) {
		sess_error(s, SG_R_TLS_REQUIRED);
		return;
	}
	if (auth_required(s) && !s->authenticated) {
		sess_error(s, SG_R_AUTH_REQUIRED);
		return;
	}
	struct sg_path_cmd pc;
	switch (sg_cmd_parse_path(args, "FROM:", true, &pc)) {
	case SG_PATH_OK:
		break;
	case SG_PATH_BAD_ADDRESS:
	case SG_PATH_TOO_LONG:
	case SG_PATH_NEED_UTF8:
		sess_error(s, SG_R_BAD_SENDER_SYNTAX);
		return;
	case SG_PATH_SYNTAX:
		sess_error(s, SG_R_PARAM_SYNTAX);
		return;
	}
	const struct sg_config *cfg = &s->srv->cfg;
	struct sess_lookup lk;
	memset(&lk, 0, sizeof(lk));
	bool smtputf8 = false;
	unsigned long long size = 0;
	int dsn_ret = 0;
	char envid[sizeof(s->dsn_envid)] = "";
	for (size_t i = 0; i < pc.nparams; i++) {
		const struct sg_param *p = &pc.params[i];
		if (strcmp(p->key, "SIZE") == 0) { /* RFC 1870 */
			uint64_t v;
			if (p->value == NULL || sg_parse_u64(p->value, 0, UINT64_MAX, &v) < 0) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
			if (v > cfg->max_message_size) {
				sess_error(s, SG_R_TOO_BIG);
				return;
			}
			size = v;
		} else if (strcmp(p->key, "BODY") == 0) { /* RFC 6152 */
			if (p->value == NULL ||
			    (strcasecmp(p->value, "7BIT") != 0 && strcasecmp(p->value, "8BITMIME") != 0)) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
		} else if (strcmp(p->key, "SMTPUTF8") == 0) { /* RFC 6531 3.4 */
			if (p->value != NULL) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
			smtputf8 = true;
		} else if (strcmp(p->key, "AUTH") == 0) {
			/* RFC 4954 5: the original submitter; xtext, "<>" for unknown.
			 * Accepted and ignored: we never relay it further. */
			char who[SG_PATH_MAX + 1];
			if (p->value == NULL || sg_xtext_decode(p->value, who, sizeof(who)) < 0) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
		} else if (strcmp(p->key, "RET") == 0 && dsn_ret == 0) { /* RFC 3461 4.3 */
			if (p->value == NULL || (strcasecmp(p->value, "FULL") != 0 &&
						 strcasecmp(p->value, "HDRS") != 0)) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
			dsn_ret = strcasecmp(p->value, "FULL") == 0 ? 1 : 2;
		} else if (strcmp(p->key, "ENVID") == 0 && envid[0] == '\0') { /* RFC 3461 4.4 */
			if (p->value == NULL || sg_xtext_decode(p->value, envid, sizeof(envid)) < 0 ||
			    envid[0] == '\0') {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
		} else {
			sess_error(s, SG_R_PARAM_UNKNOWN);
			return;
		}
	}
	if (pc.utf8 && !smtputf8) {
		sess_error(s, SG_R_UTF8_REQUIRED);
		return;
	}
	sg_strlcpy(lk.path, pc.path, sizeof(lk.path));
	lk.smtputf8 = smtputf8;
	lk.size = size;
	lk.dsn_ret = dsn_ret;
	sg_strlcpy(lk.envid, envid, sizeof(lk.envid));
	/* an accept-any login has no account to re-check and owns no address:
	 * it may send as anybody */
	if (s->authenticated && !s->accepted_any) {
		lk.recheck = true;
		lk.auth_gen = s->auth_gen;
		lk.owns = s->lst->cfg->sender_enforce && pc.path[0] != '\0';
		sg_strlcpy(lk.login, s->login, sizeof(lk.login));
	}
	if (!lk.recheck && !lk.owns) {
		mail_accept(s, &lk);
		return;
	}
	struct sess_job *j = sg_calloc(1, sizeof(*j));
	j->kind = JOB_LOOKUP;
	j->lk = lk;
	sess_submit(s, j);
}

/* Every owner is kept (never more than the accepted RCPTs, which
 * max_recipients bounds): a 250 to RCPT is a promise to deliver. */
static void add_owner(struct sg_session *s, const char *login)
{
	for (size_t i = 0; i < s->nowners; i++)
		if (strcmp(s->owners[i], login) == 0)
			return;
	s->owners = sg_realloc(s->owners, (s->nowners + 1) * sizeof(*s->owners));
	s->owners[s->nowners++] = sg_strdup(login);
}

static void rcpt_done(struct sg_session *s, struct sess_lookup *lk);

void cmd_rcpt(struct sg_session *s, char *args)
{
	if (!(s->state & (ST_MAIL | ST_RCPT))) {
		sess_error(s, SG_R_BAD_SEQ_MAIL);
		return;
	}
	struct sg_path_cmd pc;
	/* RFC 5321 4.1.1.3: <Postmaster> without a domain must be accepted. */
	bool postmaster = strncasecmp(args, "TO:", 3) == 0 &&
			  (strcasecmp(args + 3, "<postmaster>") == 0 || strcasecmp(args + 3, " <postmaster>") == 0);
	if (postmaster) {
		memset(&pc, 0, sizeof(pc));
		if (snprintf(pc.path, sizeof(pc.path), "postmaster@%s", s->srv->cfg.hostname) >=
		    (int)sizeof(pc.path)) {
			sess_error(s, SG_R_BAD_RCPT_SYNTAX);
			return;
		}
	} else {
		switch (sg_cmd_parse_path(args, "TO:", false, &pc)) {
		case SG_PATH_OK:
			break;
		case SG_PATH_BAD_ADDRESS:
		case SG_PATH_TOO_LONG:
		case SG_PATH_NEED_UTF8:
			sess_error(s, SG_R_BAD_RCPT_SYNTAX);
			return;
		case SG_PATH_SYNTAX:
			sess_error(s, SG_R_PARAM_SYNTAX);
			return;
		}
	}
	/* RFC 3461 4.1, 4.2: NOTIFY and ORCPT; nothing else */
	unsigned notify = 0;
	char orcpt[sizeof(s->rcpts[0].orcpt)] = "";
	for (size_t i = 0; i < pc.nparams; i++) {
		const struct sg_param *p = &pc.params[i];
		if (strcmp(p->key, "NOTIFY") == 0 && notify == 0) {
			if (p->value == NULL || sg_notify_parse(p->value, &notify) < 0) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
		} else if (strcmp(p->key, "ORCPT") == 0 && orcpt[0] == '\0') {
			const char *semi = p->value != NULL ? strchr(p->value, ';') : NULL;
			if (semi == NULL || semi == p->value || semi - p->value > 40 ||
			    sg_xtext_decode(p->value, orcpt, sizeof(orcpt)) < 0) {
				sess_error(s, SG_R_PARAM_SYNTAX);
				return;
			}
		} else {
			sess_error(s, SG_R_PARAM_UNKNOWN);
			return;
		}
	}
	if (pc.utf8 && !s->smtputf8) {
		sess_error(s, SG_R_UTF8_REQUIRED);
		return;
	}
	if (s->nrcpts >= s->srv->cfg.max_recipients) {
		sess_reply(s, SG_R_TOO_MANY_RCPTS);
		return;
	}
	struct sess_lookup lk;
	memset(&lk, 0, sizeof(lk));
	lk.rcpt = true;
	sg_strlcpy(lk.path, pc.path, sizeof(lk.path));
	lk.notify = notify;
	sg_strlcpy(lk.orcpt, orcpt, sizeof(lk.orcpt));
	/* mx without AUTH: local recipients only, never relay (no client
	 * address is trusted, loopback included); which domain is local, and
	 * whose inbox an address is, the store says (on the pool). */
	if (!s->authenticated && strrchr(pc.path, '@') != NULL) {
		struct sess_job *j = sg_calloc(1, sizeof(*j));
		j->kind = JOB_LOOKUP;
		j->lk = lk;
		sess_submit(s, j);
		return;
	}
	lk.local_rc = s->authenticated; /* an address without a domain is never local */
	lk.owner_rc = 1;
	rcpt_done(s, &lk);
}

static void rcpt_done(struct sg_session *s, struct sess_lookup *lk)
{
	char pv[300];
	sg_log_value(lk->path, pv, sizeof(pv));
	if (!s->authenticated) {
		if (lk->local_rc < 0) {
			sess_reply(s, SG_R_LOCAL_ERROR);
			return;
		}
		if (lk->local_rc == 0) {
			sg_log(SG_INFO, "rcpt", "sid=%s client=%s to=%s result=rejected reason=relay_denied",
			       s->id, s->client_ip, pv);
			atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_RELAY], 1);
			sess_error(s, SG_R_RELAY_DENIED);
			return;
		}
		if (lk->owner_rc < 0) {
			sess_reply(s, SG_R_LOCAL_ERROR);
			return;
		}
		if (lk->owner_rc == 0) {
			sg_log(SG_INFO, "rcpt", "sid=%s client=%s to=%s result=rejected reason=no_such_user",
			       s->id, s->client_ip, pv);
			atomic_fetch_add(&s->srv->metrics.messages_rejected[SG_MR_NO_SUCH_USER], 1);
			sess_error(s, SG_R_NO_SUCH_USER);
			return;
		}
		add_owner(s, lk->owner);
	} else {
		lk->owner[0] = '\0';
	}
	s->rcpts = sg_realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*s->rcpts));
	struct sess_rcpt *r = &s->rcpts[s->nrcpts++];
	sg_strlcpy(r->owner, lk->owner, sizeof(r->owner));
	sg_strlcpy(r->addr, lk->path, sizeof(r->addr));
	r->notify = lk->notify;
	sg_strlcpy(r->orcpt, lk->orcpt, sizeof(r->orcpt));
	s->state = ST_RCPT;
	sg_log(SG_INFO, "rcpt", "sid=%s login=%s to=%s result=ok", s->id, sess_log_login(s), pv);
	sess_reply(s, SG_R_RCPT_OK);
}

/* Loop thread: the worker's answer to a MAIL or RCPT lookup. */
void lookup_job_done(struct sg_session *s, struct sess_job *j)
{
	if (j->lk.rcpt)
		rcpt_done(s, &j->lk);
	else
		mail_done(s, &j->lk);
}
