#include "relay/deliver.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/sasl_client.h"
#include "client/smtpc.h"
#include "client/tls.h"
#include "client/transcript.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"

struct sh_reply {
	int code;
	char enh[16];
	char text[512]; /* the lines joined by " / ", enhanced codes removed */
};

struct sg_smarthost {
	const struct sg_relay_config *cfg;
	struct sg_ctls *tls;
	char helo[256];
	struct event_base *base;
	struct sg_transcript tr;
	struct sg_smtpc *c;
	bool open;          /* greeting, EHLO, TLS and AUTH done */
	bool used;          /* carried a transaction already */
	/* capabilities (after TLS) */
	bool pipelining, size, eightbit, smtputf8, dsn, starttls;
	uint64_t max_size;
	char mechs[512];
	/* the wait */
	bool got, failed, tls_ready, connected;
	struct sh_reply r;
	char error[1200];
	enum sg_smtpc_err err;
	bool closing;                  /* a 421 was seen */
	const atomic_bool *stop;
	struct event *tick;            /* wakes the wait up to look at *stop */
	struct sg_saslc *saslc;        /* during AUTH: replies go to the driver */
	enum sg_saslc_status sasl_status;
};

static void sh_cb(struct sg_smtpc *c, enum sg_smtpc_event ev, const struct sg_reply *r, void *arg)
{
	struct sg_smarthost *h = arg;
	switch (ev) {
	case SG_SMTPC_CONNECTED:
		h->connected = true;
		return;
	case SG_SMTPC_TLS_READY:
		h->tls_ready = true;
		return;
	case SG_SMTPC_REPLY: {
		h->got = true;
		h->r.code = r->code;
		if (r->code == 421)
			h->closing = true;
		sg_strlcpy(h->r.enh, r->enh, sizeof(h->r.enh));
		size_t used = 0;
		h->r.text[0] = '\0';
		for (size_t i = 0; i < r->nlines; i++) {
			int n = snprintf(h->r.text + used, sizeof(h->r.text) - used, "%s%s",
					 i ? " / " : "", sg_reply_text_noenh(r, i));
			if (n < 0 || (size_t)n >= sizeof(h->r.text) - used)
				break;
			used += (size_t)n;
		}
		if (h->saslc != NULL)
			h->sasl_status = sg_saslc_reply(h->saslc, r);
		/* EHLO keywords (lines after the first) */
		if (h->r.code == 250 && r->nlines > 1 && h->mechs[0] == '\x01') {
			h->mechs[0] = '\0';
			for (size_t i = 1; i < r->nlines; i++) {
				const char *t = sg_reply_text(r, i);
				if (strcasecmp(t, "PIPELINING") == 0)
					h->pipelining = true;
				else if (strcasecmp(t, "8BITMIME") == 0)
					h->eightbit = true;
				else if (strcasecmp(t, "SMTPUTF8") == 0)
					h->smtputf8 = true;
				else if (strcasecmp(t, "DSN") == 0)
					h->dsn = true;
				else if (strcasecmp(t, "STARTTLS") == 0)
					h->starttls = true;
				else if (strcasecmp(t, "SIZE") == 0 || sg_prefix_ci(t, "SIZE ")) {
					h->size = true;
					uint64_t v;
					if (t[4] == ' ' && sg_parse_u64(t + 5, 0, UINT64_MAX, &v) == 0)
						h->max_size = v;
				} else if (sg_prefix_ci(t, "AUTH ") || sg_prefix_ci(t, "AUTH=")) {
					size_t l = strlen(h->mechs);
					snprintf(h->mechs + l, sizeof(h->mechs) - l, " %s ", t + 5);
				}
			}
		}
		return;
	}
	case SG_SMTPC_FAILED: {
		const char *msg = NULL;
		h->err = sg_smtpc_error(c, &msg);
		sg_strlcpy(h->error, msg != NULL ? msg : "connection failed", sizeof(h->error));
		h->failed = true;
		return;
	}
	}
}

/* Run the private loop until the pending operation ends. 0 or -1 (failed). */
static int sh_wait(struct sg_smarthost *h, bool *flag)
{
	for (unsigned guard = 0; !*flag && !h->failed; guard++) {
		if (h->stop != NULL && atomic_load(h->stop)) {
			sg_strlcpy(h->error, "the server is stopping", sizeof(h->error));
			h->failed = true;
			break;
		}
		int r = event_base_loop(h->base, EVLOOP_ONCE);
		if (r < 0 || (r == 1 && !*flag && !h->failed)) {
			sg_strlcpy(h->error, "internal: nothing to wait for", sizeof(h->error));
			h->failed = true;
		}
	}
	return h->failed ? -1 : 0;
}

static int sh_cmd(struct sg_smarthost *h, const char *line, const char *display)
{
	h->got = false;
	sg_smtpc_command(h->c, line, display, NULL);
	return sh_wait(h, &h->got);
}

static void tick_cb(evutil_socket_t fd, short ev, void *arg)
{
}

struct sg_smarthost *sg_sh_new(const struct sg_relay_config *cfg, struct sg_ctls *tls,
			       const char *helo, const atomic_bool *stop)
{
	struct sg_smarthost *h = sg_calloc(1, sizeof(*h));
	h->cfg = cfg;
	h->tls = tls;
	sg_strlcpy(h->helo, helo, sizeof(h->helo));
	h->stop = stop;
	h->base = event_base_new();
	if (h->base == NULL)
		sg_fatal("out of memory (event base)");
	h->tick = event_new(h->base, -1, EV_PERSIST, tick_cb, h);
	struct timeval tv = {0, 200 * 1000};
	if (h->tick == NULL || event_add(h->tick, &tv) != 0)
		sg_fatal("out of memory (libevent)");
	sg_transcript_init(&h->tr);
	return h;
}

static void sh_drop(struct sg_smarthost *h)
{
	sg_smtpc_free(&h->c);
	/* let libevent finish the closes it deferred */
	event_base_loop(h->base, EVLOOP_NONBLOCK);
	sg_transcript_free(&h->tr);
	sg_transcript_init(&h->tr);
	h->open = false;
	h->used = false;
}

void sg_sh_close(struct sg_smarthost *h)
{
	if (h->c == NULL)
		return;
	if (h->open && !h->failed && (h->stop == NULL || !atomic_load(h->stop))) {
		sg_smtpc_set_timeout(h->c, 5000);
		(void)sh_cmd(h, "QUIT", NULL);
	}
	sh_drop(h);
}

bool sg_sh_connected(const struct sg_smarthost *h)
{
	return h->c != NULL && h->open;
}

void sg_sh_free(struct sg_smarthost **hp)
{
	struct sg_smarthost *h = *hp;
	if (h == NULL)
		return;
	sg_sh_close(h);
	event_free(h->tick);
	event_base_free(h->base);
	free(h);
	*hp = NULL;
}

static unsigned ms(uint64_t v)
{
	return v > 3600000u * 24 ? 3600000u * 24 : (unsigned)v;
}

static void reply_diag(const struct sh_reply *r, char *out, size_t size)
{
	if (r->enh[0] != '\0')
		snprintf(out, size, "smtp; %d %s %s", r->code, r->enh, r->text);
	else
		snprintf(out, size, "smtp; %d %s", r->code, r->text);
}

static void reply_status(const struct sh_reply *r, char *out, size_t size)
{
	int cls = r->code / 100;
	if (r->enh[0] != '\0' && r->enh[0] == '0' + cls)
		sg_strlcpy(out, r->enh, size);
	else
		snprintf(out, size, "%d.0.0", cls == 2 ? 2 : cls == 4 ? 4 : 5);
}

/* TLS handshake on the open connection and the certificate check. */
static int sh_tls(struct sg_smarthost *h)
{
	const char *name = h->cfg->tls_name[0] ? h->cfg->tls_name : h->cfg->host;
	h->tls_ready = false;
	sg_smtpc_set_timeout(h->c, ms(h->cfg->timeout_connect_ms));
	sg_smtpc_starttls(h->c, h->tls, name);
	if (sh_wait(h, &h->tls_ready) < 0)
		return -1;
	const struct sg_ctls_info *ti = sg_smtpc_tls_info(h->c);
	if (!ti->verified) {
		/* RFC 3207 4.1 / RFC 6125: nothing more over an unverified channel */
		snprintf(h->error, sizeof(h->error), "the smarthost's certificate did not verify for %s: %s",
			 name, ti->verify_error);
		h->failed = true;
		return -1;
	}
	return 0;
}

static int sh_ehlo(struct sg_smarthost *h)
{
	h->pipelining = h->size = h->eightbit = h->smtputf8 = h->dsn = h->starttls = false;
	h->max_size = 0;
	h->mechs[0] = '\x01'; /* "collect" marker for sh_cb */
	h->mechs[1] = '\0';
	char line[300];
	snprintf(line, sizeof(line), "EHLO %s", h->helo);
	int r = sh_cmd(h, line, NULL);
	if (h->mechs[0] == '\x01')
		h->mechs[0] = '\0';
	if (r < 0)
		return -1;
	if (h->r.code != 250) {
		char d[600];
		reply_diag(&h->r, d, sizeof(d));
		snprintf(h->error, sizeof(h->error), "the smarthost refused EHLO: %s", d);
		return -1;
	}
	return 0;
}

static bool offers(const struct sg_smarthost *h, const char *mech)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s ", mech);
	const char *p = h->mechs;
	size_t pl = strlen(pat);
	for (; *p != '\0'; p++)
		if (strncasecmp(p, pat, pl) == 0)
			return true;
	/* mechanisms separated by single spaces: " A B " matches " B " */
	return false;
}

static int sh_auth(struct sg_smarthost *h, struct sg_sh_stats *st)
{
	const struct sg_mech *m = sg_mech_find(h->cfg->auth);
	if (m == NULL)
		return -1;
	if (!offers(h, m->name)) {
		snprintf(h->error, sizeof(h->error),
			 "the smarthost does not offer AUTH %s (it offers:%s)", m->name,
			 h->mechs[0] ? h->mechs : " nothing");
		st->auth_refused = true;
		return -1;
	}
	struct sg_sasl_client_env env;
	memset(&env, 0, sizeof(env));
	env.authcid = h->cfg->user[0] ? h->cfg->user : NULL;
	env.password = h->cfg->password[0] ? h->cfg->password : NULL;
	env.token = h->cfg->token[0] ? h->cfg->token : NULL;
	env.host = h->cfg->host;
	env.port = h->cfg->port;
	env.service = "smtp";
	uint8_t cb[64];
	size_t cbl = 0;
	const char *cbt = NULL;
	if (sg_smtpc_channel_binding(h->c, &cbt, cb, &cbl) == 0) {
		env.cb_type = cbt;
		env.cb_data = cb;
		env.cb_len = cbl;
	}
	struct sg_saslc sc;
	memset(&sc, 0, sizeof(sc));
	int rc = -1;
	if (sg_saslc_begin(&sc, m, &env, false) < 0) {
		snprintf(h->error, sizeof(h->error), "AUTH %s cannot start: %s", m->name,
			 sc.client_error != NULL ? sc.client_error : "?");
		st->auth_refused = true;
		goto out;
	}
	h->saslc = &sc;
	for (unsigned steps = 0; steps < 20; steps++) {
		h->sasl_status = SG_SASLC_REFUSED;
		if (sh_cmd(h, sg_buf_str(&sc.line), sc.display) < 0)
			goto out;
		if (h->sasl_status == SG_SASLC_OK) {
			rc = 0;
			goto out;
		}
		if (h->sasl_status == SG_SASLC_REFUSED) {
			char d[600];
			reply_diag(&h->r, d, sizeof(d));
			snprintf(h->error, sizeof(h->error),
				 "the smarthost refused our AUTH %s as %s: %s%s%s", m->name,
				 h->cfg->user[0] ? h->cfg->user : "(no user)", d,
				 sc.aborted ? "; we cancelled: " : "",
				 sc.aborted && sc.client_error ? sc.client_error : "");
			st->auth_refused = true;
			goto out;
		}
	}
	snprintf(h->error, sizeof(h->error), "AUTH %s: too many steps", m->name);
out:
	h->saslc = NULL;
	sg_saslc_free(&sc);
	sg_wipe(cb, sizeof(cb));
	return rc;
}

/* Connect, greeting, EHLO, TLS, AUTH. 0 or -1 (h->error says why). */
static int sh_open(struct sg_smarthost *h, struct sg_sh_stats *st)
{
	const struct sg_relay_config *cfg = h->cfg;
	sh_drop(h);
	h->failed = false;
	h->error[0] = '\0';
	h->connected = false;
	h->c = sg_smtpc_new(h->base, &h->tr, ms(cfg->timeout_connect_ms), sh_cb, h);
	sg_smtpc_connect(h->c, cfg->host, cfg->port);
	if (sh_wait(h, &h->connected) < 0)
		return -1;
	if (cfg->tls == SG_RELAY_TLS_IMPLICIT && sh_tls(h) < 0)
		return -1;
	/* RFC 5321 4.5.3.2.1: 5 minutes for the greeting */
	sg_smtpc_set_timeout(h->c, ms(cfg->timeout_command_ms));
	h->got = false;
	sg_smtpc_expect(h->c, "the greeting");
	if (sh_wait(h, &h->got) < 0)
		return -1;
	if (h->r.code != 220) {
		char d[600];
		reply_diag(&h->r, d, sizeof(d));
		snprintf(h->error, sizeof(h->error), "the smarthost's greeting is not 220: %s", d);
		return -1;
	}
	if (sh_ehlo(h) < 0)
		return -1;
	if (cfg->tls == SG_RELAY_TLS_STARTTLS) {
		if (!h->starttls) {
			snprintf(h->error, sizeof(h->error),
				 "the smarthost does not offer STARTTLS (relay_tls = starttls requires "
				 "it; nothing was sent)");
			return -1;
		}
		if (sh_cmd(h, "STARTTLS", NULL) < 0)
			return -1;
		if (h->r.code != 220) {
			char d[600];
			reply_diag(&h->r, d, sizeof(d));
			snprintf(h->error, sizeof(h->error), "the smarthost refused STARTTLS: %s", d);
			return -1;
		}
		if (sh_tls(h) < 0)
			return -1;
		sg_smtpc_set_timeout(h->c, ms(cfg->timeout_command_ms));
		/* RFC 3207 4.2: forget what we knew, EHLO again */
		if (sh_ehlo(h) < 0)
			return -1;
	}
	if (cfg->auth[0] != '\0' && sh_auth(h, st) < 0)
		return -1;
	h->open = true;
	h->used = false;
	return 0;
}

/* "x-smtpgate; <why>" */
static void local_diag(char *out, size_t size, const char *why)
{
	sg_strlcpy(out, "x-smtpgate; ", size);
	size_t l = strlen(out);
	sg_strlcpy(out + l, why, size - l);
}

static void xtext(struct sg_buf *b, const char *s)
{
	/* RFC 3461 4: xtext (the envelope keeps the decoded values) */
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 33 || *p > 126 || *p == '=' || *p == '+')
			sg_buf_printf(b, "+%02X", *p);
		else
			sg_buf_append(b, p, 1);
	}
}

static void all_results(struct sg_sh_result *res, size_t n, char kind, const char *status,
			const char *diag)
{
	for (size_t i = 0; i < n; i++) {
		res[i].kind = kind;
		sg_strlcpy(res[i].status, status, sizeof(res[i].status));
		sg_strlcpy(res[i].diag, diag, sizeof(res[i].diag));
	}
}

static void set_from_reply(struct sg_sh_result *res, const struct sh_reply *r)
{
	res->kind = r->code / 100 == 2 ? 'D' : r->code / 100 == 4 ? 'T' : 'F';
	reply_status(r, res->status, sizeof(res->status));
	reply_diag(r, res->diag, sizeof(res->diag));
}

static void dot_stuff(struct sg_buf *out, const uint8_t *msg, size_t len)
{
	/* RFC 5321 4.5.2; the message file already has CRLF line ends */
	bool bol = true;
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		if (bol && msg[i] == '.') {
			sg_buf_append(out, msg + run, i - run);
			sg_buf_append(out, ".", 1);
			run = i;
		}
		bol = msg[i] == '\n';
	}
	sg_buf_append(out, msg + run, len - run);
	if (len < 2 || msg[len - 2] != '\r' || msg[len - 1] != '\n')
		sg_buf_append(out, "\r\n", 2);
	sg_buf_append(out, ".\r\n", 3);
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void sh_txn(struct sg_smarthost *h, const struct sg_envelope *e, const size_t *idx,
		   size_t n, const uint8_t *msg, size_t len, struct sg_sh_result *res,
		   struct sg_sh_stats *st);

void sg_sh_deliver(struct sg_smarthost *h, const struct sg_envelope *e, const size_t *idx,
		   size_t n, const uint8_t *msg, size_t len, struct sg_sh_result *res,
		   struct sg_sh_stats *st)
{
	h->closing = false;
	sh_txn(h, e, idx, n, msg, len, res, st);
	/* RFC 5321 3.8: after a 421 the server closes; never reuse it */
	if (h->closing && h->c != NULL)
		sh_drop(h);
}

static void sh_txn(struct sg_smarthost *h, const struct sg_envelope *e, const size_t *idx,
		   size_t n, const uint8_t *msg, size_t len, struct sg_sh_result *res,
		   struct sg_sh_stats *st)
{
	memset(st, 0, sizeof(*st));
	const struct sg_relay_config *cfg = h->cfg;
	char diag[600];
	/* a reused connection: RSET proves it is alive */
	if (h->c != NULL && h->open && h->used) {
		sg_smtpc_set_timeout(h->c, ms(cfg->timeout_command_ms));
		if (sh_cmd(h, "RSET", NULL) < 0 || h->r.code != 250)
			sh_drop(h);
		else
			st->reused = true;
	}
	if (h->c == NULL || !h->open || h->failed) {
		if (sh_open(h, st) < 0) {
			local_diag(diag, sizeof(diag), h->error);
			sg_strlcpy(st->error, h->error, sizeof(st->error));
			all_results(res, n, 'T', st->auth_refused ? "4.7.0" : "4.4.1", diag);
			sh_drop(h);
			return;
		}
	}
	h->used = true;
	/* what the message needs */
	bool need_utf8 = e->smtputf8 || !is_ascii(e->from);
	for (size_t i = 0; i < n; i++)
		need_utf8 |= !is_ascii(e->rcpts[idx[i]].addr);
	if (need_utf8 && !h->smtputf8) {
		all_results(res, n, 'F', "5.6.7",
			    "x-smtpgate; the message needs SMTPUTF8 and the smarthost does not offer it");
		return;
	}
	if (e->body == SG_BODY_8BITMIME && !h->eightbit) {
		all_results(res, n, 'F', "5.6.3",
			    "x-smtpgate; the message needs 8BITMIME and the smarthost does not offer it");
		return;
	}
	if (h->size && h->max_size > 0 && len > h->max_size) {
		snprintf(diag, sizeof(diag),
			 "x-smtpgate; the message (%zu octets) exceeds the smarthost's SIZE %llu", len,
			 (unsigned long long)h->max_size);
		all_results(res, n, 'F', "5.3.4", diag);
		return;
	}
	struct sg_buf line;
	sg_buf_init(&line, 8192);
	sg_buf_printf(&line, "MAIL FROM:<%s>", e->from);
	if (h->size)
		sg_buf_printf(&line, " SIZE=%zu", len);
	if (e->body == SG_BODY_8BITMIME)
		sg_buf_append_str(&line, " BODY=8BITMIME");
	else if (e->body == SG_BODY_7BIT && h->eightbit)
		sg_buf_append_str(&line, " BODY=7BIT");
	if (need_utf8)
		sg_buf_append_str(&line, " SMTPUTF8");
	if (h->dsn) {
		st->dsn_offered = true;
		if (e->ret != SG_RET_DEFAULT)
			sg_buf_append_str(&line, e->ret == SG_RET_FULL ? " RET=FULL" : " RET=HDRS");
		if (e->envid != NULL) {
			sg_buf_append_str(&line, " ENVID=");
			xtext(&line, e->envid);
		}
	}
	/* the commands: MAIL, RCPT..., DATA */
	size_t ncmd = n + 2;
	char **cmds = sg_calloc(ncmd, sizeof(*cmds));
	cmds[0] = sg_strdup(sg_buf_str(&line));
	for (size_t i = 0; i < n; i++) {
		const struct sg_qrcpt *r = &e->rcpts[idx[i]];
		sg_buf_reset(&line);
		sg_buf_printf(&line, "RCPT TO:<%s>", r->addr);
		if (h->dsn) {
			char nb[40];
			if (r->notify != 0)
				sg_buf_printf(&line, " NOTIFY=%s", sg_notify_str(r->notify, nb, sizeof(nb)));
			if (r->orcpt != NULL) {
				sg_buf_append_str(&line, " ORCPT=");
				/* RFC 3461 4.2: addr-type ";" xtext */
				const char *semi = strchr(r->orcpt, ';');
				if (semi != NULL) {
					sg_buf_append(&line, r->orcpt, (size_t)(semi - r->orcpt) + 1);
					xtext(&line, semi + 1);
				} else {
					sg_buf_append_str(&line, "rfc822;");
					xtext(&line, r->orcpt);
				}
			}
		}
		cmds[i + 1] = sg_strdup(sg_buf_str(&line));
	}
	cmds[n + 1] = sg_strdup("DATA");
	sg_buf_free(&line);
	sg_smtpc_set_timeout(h->c, ms(cfg->timeout_command_ms));
	bool *accepted = sg_calloc(n ? n : 1, sizeof(bool));
	size_t naccepted = 0;
	bool mail_ok = false, data_go = false, dead = false;
	struct sh_reply mail_reply;
	memset(&mail_reply, 0, sizeof(mail_reply));
	/* RFC 2920 3.1: with PIPELINING everything up to DATA goes in one write
	 * (smtpc queues the lines; replies are then taken one by one) */
	size_t sent = 0;
	for (size_t k = 0; k < ncmd && !dead; k++) {
		if (h->pipelining) {
			if (k == 0)
				for (; sent < ncmd; sent++) {
					/* DATA: RFC 5321 4.5.3.2.2, 2 minutes */
					h->got = false;
					sg_smtpc_command(h->c, cmds[sent], NULL, NULL);
				}
			if (k == ncmd - 1)
				sg_smtpc_set_timeout(h->c, ms(cfg->timeout_data_ms));
			h->got = false;
			if (k > 0)
				sg_smtpc_expect(h->c, k == ncmd - 1 ? "the reply to DATA" : "the reply to RCPT");
			if (sh_wait(h, &h->got) < 0)
				dead = true;
		} else {
			if (k == ncmd - 1) {
				if (!mail_ok || naccepted == 0)
					break; /* no DATA without a recipient */
				sg_smtpc_set_timeout(h->c, ms(cfg->timeout_data_ms));
			}
			if (k > 0 && !mail_ok)
				break;
			if (sh_cmd(h, cmds[k], NULL) < 0)
				dead = true;
		}
		if (dead)
			break;
		if (k == 0) {
			mail_reply = h->r;
			mail_ok = h->r.code == 250;
		} else if (k <= n) {
			if (!mail_ok) {
				/* the RCPT replies after a refused MAIL do not count */
			} else if (h->r.code == 250 || h->r.code == 251) {
				accepted[k - 1] = true;
				naccepted++;
			} else {
				set_from_reply(&res[k - 1], &h->r);
				if (res[k - 1].kind == 'D') {
					res[k - 1].kind = 'T';
					sg_strlcpy(res[k - 1].status, "4.0.0", sizeof(res[k - 1].status));
				}
			}
		} else {
			data_go = h->r.code == 354;
		}
	}
	for (size_t i = 0; i < ncmd; i++)
		free(cmds[i]);
	free(cmds);
	if (dead && mail_reply.code != 0 && !mail_ok) {
		/* the refusal of MAIL (a 421 and a close, say) is the news, not the close */
		struct sg_sh_result mr;
		set_from_reply(&mr, &mail_reply);
		if (mr.kind == 'D')
			mr.kind = 'T';
		for (size_t i = 0; i < n; i++)
			res[i] = mr;
		sh_drop(h);
		free(accepted);
		return;
	}
	if (dead) {
		local_diag(diag, sizeof(diag), h->error);
		sg_strlcpy(st->error, h->error, sizeof(st->error));
		for (size_t i = 0; i < n; i++)
			if (accepted[i] || res[i].kind == 0) {
				res[i].kind = 'T';
				sg_strlcpy(res[i].status, "4.4.2", sizeof(res[i].status));
				sg_strlcpy(res[i].diag, diag, sizeof(res[i].diag));
			}
		sh_drop(h);
		free(accepted);
		return;
	}
	if (!mail_ok) {
		struct sg_sh_result mr;
		set_from_reply(&mr, &mail_reply);
		if (mr.kind == 'D')
			mr.kind = 'T';
		for (size_t i = 0; i < n; i++)
			res[i] = mr;
		if (data_go)
			sh_drop(h); /* a 354 nobody wanted: the connection is unusable */
		free(accepted);
		return;
	}
	if (naccepted == 0) {
		if (data_go)
			sh_drop(h);
		free(accepted);
		return;
	}
	if (!data_go) {
		struct sg_sh_result dr;
		set_from_reply(&dr, &h->r);
		if (dr.kind == 'D')
			dr.kind = 'T';
		for (size_t i = 0; i < n; i++)
			if (accepted[i])
				res[i] = dr;
		free(accepted);
		return;
	}
	struct sg_buf body;
	sg_buf_init(&body, len + len / 32 + 64);
	dot_stuff(&body, msg, len);
	/* RFC 5321 4.5.3.2.3 and .6: 3 minutes per block, 10 for the final reply;
	 * smtpc's timer runs from the write, so the longer of the two applies */
	sg_smtpc_set_timeout(h->c, ms(cfg->timeout_final_ms));
	h->got = false;
	sg_smtpc_send_raw(h->c, body.data, body.len, "the reply to the end of the message");
	sg_buf_free(&body);
	if (sh_wait(h, &h->got) < 0) {
		local_diag(diag, sizeof(diag), h->error);
		sg_strlcpy(st->error, h->error, sizeof(st->error));
		for (size_t i = 0; i < n; i++)
			if (accepted[i]) {
				res[i].kind = 'T';
				sg_strlcpy(res[i].status, "4.4.2", sizeof(res[i].status));
				sg_strlcpy(res[i].diag, diag, sizeof(res[i].diag));
			}
		sh_drop(h);
		free(accepted);
		return;
	}
	struct sg_sh_result fr;
	set_from_reply(&fr, &h->r);
	for (size_t i = 0; i < n; i++)
		if (accepted[i])
			res[i] = fr;
	free(accepted);
	/* keep the transcript from growing over a long-lived connection */
	if (h->tr.n > 200) {
		sg_transcript_free(&h->tr);
		sg_transcript_init(&h->tr);
	}
}
