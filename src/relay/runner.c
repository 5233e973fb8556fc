/*
 * runner.c: the queue runner (relay.h). The schedule is a binary heap of
 * small entries (id, next try, arrival: about 64 octets each, so 100,000
 * queued messages cost a few MiB); the envelope itself stays on disk and is
 * read when its turn comes, like OpenSMTPD's ramqueue over queue_fs and
 * Postfix's qmgr over the deferred queue.
 */
#include "relay/relay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/tls.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "relay/deliver.h"
#include "relay/dkim.h"
#include "relay/dsn.h"
#include "sasl/mech.h"
#include "store/cred.h"
#include "store/mail.h"

#define NOT_IN_HEAP UINT32_MAX
#define IDLE_CLOSE_MS 5000
#define CTL_POLL_MS 200
#define LIST_MAX 1000

enum { F_BUSY = 1, F_DELETE = 2, F_BOUNCE = 4, F_GONE = 8 };

struct qent {
	uint64_t sec, rnd;
	int64_t next_ms;
	int64_t arrival;
	uint32_t heap;
	uint32_t pos;   /* index in r->all */
	uint8_t flags;
};

struct sg_relay {
	const struct sg_relay_config *cfg;
	char hostname[256];
	char helo[256];
	char data_dir[1024];
	struct sg_mail_store *mail;
	struct sg_cred_store *creds;
	struct sg_queue *q;
	struct sg_ctls *tls;
	struct sg_dkim_signer *signers[SG_RELAY_MAX_DKIM];
	size_t nsigners;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct qent **heap;
	size_t nheap, aheap;
	struct qent **all;
	size_t nall, aall;
	bool stop;
	pthread_t *workers;
	unsigned nworkers;
	pthread_t ctl;
	bool ctl_started;
	atomic_bool stopping;           /* ends attempts in progress (deliver.h) */
	atomic_uint_fast64_t delivered, deferred, failed, attempts, retries, dsns, expired;
};

/* ---- ids and the heap (under r->mu) ---- */

static void ent_id(const struct qent *e, char id[SG_QUEUE_ID_MAX])
{
	snprintf(id, SG_QUEUE_ID_MAX, "%" PRIu64 ".%016" PRIx64, e->sec, e->rnd);
}

static int parse_id(const char *id, uint64_t *sec, uint64_t *rnd)
{
	if (!sg_queue_id_valid(id))
		return -1;
	const char *dot = strchr(id, '.');
	char s[24];
	size_t l = (size_t)(dot - id);
	memcpy(s, id, l);
	s[l] = '\0';
	if (sg_parse_u64(s, 0, UINT64_MAX, sec) < 0)
		return -1;
	uint8_t b[8];
	if (sg_unhex(dot + 1, b, 8) < 0)
		return -1;
	*rnd = 0;
	for (int i = 0; i < 8; i++)
		*rnd = *rnd << 8 | b[i];
	return 0;
}

static void heap_swap(struct sg_relay *r, size_t a, size_t b)
{
	struct qent *t = r->heap[a];
	r->heap[a] = r->heap[b];
	r->heap[b] = t;
	r->heap[a]->heap = (uint32_t)a;
	r->heap[b]->heap = (uint32_t)b;
}

static void heap_up(struct sg_relay *r, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (r->heap[p]->next_ms <= r->heap[i]->next_ms)
			break;
		heap_swap(r, i, p);
		i = p;
	}
}

static void heap_down(struct sg_relay *r, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < r->nheap && r->heap[l]->next_ms < r->heap[m]->next_ms)
			m = l;
		if (l + 1 < r->nheap && r->heap[l + 1]->next_ms < r->heap[m]->next_ms)
			m = l + 1;
		if (m == i)
			return;
		heap_swap(r, i, m);
		i = m;
	}
}

static void heap_push(struct sg_relay *r, struct qent *e)
{
	if (r->nheap == r->aheap) {
		r->aheap = r->aheap ? r->aheap * 2 : 256;
		r->heap = sg_realloc(r->heap, r->aheap * sizeof(*r->heap));
	}
	e->heap = (uint32_t)r->nheap;
	r->heap[r->nheap++] = e;
	heap_up(r, e->heap);
}

static void heap_remove(struct sg_relay *r, struct qent *e)
{
	size_t i = e->heap;
	if (i == NOT_IN_HEAP)
		return;
	r->nheap--;
	if (i != r->nheap) {
		r->heap[i] = r->heap[r->nheap];
		r->heap[i]->heap = (uint32_t)i;
		heap_down(r, i);
		heap_up(r, i);
	}
	e->heap = NOT_IN_HEAP;
}

static void heap_update(struct sg_relay *r, struct qent *e)
{
	heap_down(r, e->heap);
	heap_up(r, e->heap);
}

static struct qent *ent_add(struct sg_relay *r, uint64_t sec, uint64_t rnd, int64_t arrival,
			    int64_t next_ms)
{
	struct qent *e = sg_calloc(1, sizeof(*e));
	e->sec = sec;
	e->rnd = rnd;
	e->arrival = arrival;
	e->next_ms = next_ms;
	e->heap = NOT_IN_HEAP;
	if (r->nall == r->aall) {
		r->aall = r->aall ? r->aall * 2 : 256;
		r->all = sg_realloc(r->all, r->aall * sizeof(*r->all));
	}
	e->pos = (uint32_t)r->nall;
	r->all[r->nall++] = e;
	return e;
}

static void ent_free(struct sg_relay *r, struct qent *e)
{
	heap_remove(r, e);
	size_t i = e->pos;
	r->nall--;
	if (i != r->nall) {
		r->all[i] = r->all[r->nall];
		r->all[i]->pos = (uint32_t)i;
	}
	free(e);
}

static struct qent *ent_find(struct sg_relay *r, const char *id)
{
	uint64_t sec, rnd;
	if (parse_id(id, &sec, &rnd) < 0)
		return NULL;
	for (size_t i = 0; i < r->nall; i++)
		if (r->all[i]->rnd == rnd && r->all[i]->sec == sec)
			return r->all[i];
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t backoff_ms(const struct sg_relay_config *c, unsigned attempts)
{
	uint64_t b = c->retry_min_ms;
	for (unsigned i = 1; i < attempts && b < c->retry_max_ms; i++)
		b *= 2;
	if (b > c->retry_max_ms)
		b = c->retry_max_ms;
	return (int64_t)b;
}

static int64_t next_try(const struct sg_relay_config *c, const struct sg_envelope *e,
			int64_t last_ms)
{
	if (e->attempts == 0)
		return 0;
	int64_t n = last_ms + backoff_ms(c, e->attempts);
	int64_t expiry = e->arrival * 1000 + (int64_t)c->lifetime_ms;
	return n < expiry ? n : expiry;
}

/* ---- DKIM ---- */

static const struct sg_dkim_signer *signer_for(struct sg_relay *r, const char *from)
{
	const char *at = strrchr(from, '@');
	const char *dom = at != NULL ? at + 1 : r->hostname;
	for (size_t i = 0; i < r->nsigners; i++)
		if (strcasecmp(sg_dkim_signer_domain(r->signers[i]), dom) == 0)
			return r->signers[i];
	return NULL;
}

/* ---- DSNs ---- */

static int commit_dsn(struct sg_relay *r, const struct sg_envelope *e, const char *dsn,
		      size_t len, const struct sg_dsn_result *dr, char *where, size_t wsize)
{
	const char *err = NULL;
	char owner[SG_LOGIN_MAX + 1];
	int own = 0;
	if (r->creds != NULL && r->mail != NULL)
		own = sg_cred_find_owner(r->creds, e->from, owner, sizeof(owner));
	if (own == 1) {
		/* a local sender: the DSN goes into its inbox */
		struct sg_buf prefix, body;
		sg_buf_init(&prefix, 4096);
		sg_buf_init(&body, len + 1);
		sg_buf_printf(&prefix, "Return-Path: <>\r\nX-Smtpgate-Rcpt: <%s>\r\n", e->from);
		sg_buf_append(&body, dsn, len);
		const char *logins[1] = {owner};
		char mid[SG_MAIL_ID_MAX];
		int rc = sg_mail_commit(r->mail, logins, 1, &prefix, &body, mid, &err);
		sg_buf_free(&prefix);
		sg_buf_free(&body);
		if (rc < 0) {
			sg_log(SG_ERROR, "relay_dsn", "id=%s result=failed error=\"%s\"", e->id, err);
			return -1;
		}
		snprintf(where, wsize, "inbox=%s mail_id=%s", owner, mid);
		return 0;
	}
	/* remote: through the queue with the null sender (RFC 3461 6.2) */
	struct sg_envelope d;
	sg_envelope_init(&d);
	d.from = sg_strdup("");
	d.login = sg_strdup("");
	d.is_dsn = true;
	d.body = dr->body_8bit ? SG_BODY_8BITMIME : SG_BODY_DEFAULT;
	d.smtputf8 = dr->smtputf8;
	sg_envelope_add_rcpt(&d, e->from, SG_NOTIFY_NEVER, NULL);
	struct sg_buf prefix, body;
	sg_buf_init(&prefix, 16);
	sg_buf_init(&body, len + 1);
	sg_buf_append(&body, dsn, len);
	int rc = sg_relay_enqueue(r, &d, &prefix, &body, &err);
	if (rc < 0)
		sg_log(SG_ERROR, "relay_dsn", "id=%s result=failed error=\"%s\"", e->id, err);
	else
		snprintf(where, wsize, "dsn_id=%s", d.id);
	sg_buf_free(&prefix);
	sg_buf_free(&body);
	sg_envelope_free(&d);
	return rc;
}

static bool wants(const struct sg_qrcpt *rc, unsigned what)
{
	if (rc->notify & SG_NOTIFY_NEVER)
		return false;
	if (rc->notify == 0) /* RFC 3461 4.1: no NOTIFY means FAILURE (and DELAY) */
		return what != SG_NOTIFY_SUCCESS;
	return (rc->notify & what) != 0;
}

/* Report what needs reporting; returns the records (N / W) to append. */
static void notify(struct sg_relay *r, struct sg_envelope *e, const struct sg_buf *msg,
		   bool dsn_offered, bool warn, struct sg_buf *rec)
{
	bool silent = e->is_dsn || e->from[0] == '\0';
	struct sg_dsn_rcpt *dr = sg_calloc(e->nrcpts, sizeof(*dr));
	size_t n = 0;
	size_t *newly = sg_calloc(e->nrcpts, sizeof(*newly));
	size_t nnew = 0;
	int64_t expiry = e->arrival + (int64_t)(r->cfg->lifetime_ms / 1000);
	for (size_t i = 0; i < e->nrcpts; i++) {
		struct sg_qrcpt *rc = &e->rcpts[i];
		if (rc->done)
			continue;
		const char *action = NULL;
		if (rc->state == SG_QR_FAILED) {
			newly[nnew++] = i;
			if (!silent && wants(rc, SG_NOTIFY_FAILURE))
				action = "failed";
		} else if (rc->state == SG_QR_DELIVERED) {
			newly[nnew++] = i;
			/* RFC 3461 5.2.2: the smarthost took NOTIFY: it reports itself */
			if (!silent && !dsn_offered && (rc->notify & SG_NOTIFY_SUCCESS))
				action = "relayed";
		} else if (warn && !silent && wants(rc, SG_NOTIFY_DELAY)) {
			action = "delayed";
		}
		if (action == NULL)
			continue;
		dr[n].orcpt = rc->orcpt;
		dr[n].final_rcpt = rc->addr;
		dr[n].action = action;
		dr[n].status = rc->status[0] ? rc->status : (rc->state == SG_QR_DELIVERED ? "2.0.0" : "4.0.0");
		dr[n].remote_mta = rc->remote_mta;
		dr[n].diagnostic = rc->diag;
		dr[n].last_attempt = rc->time;
		dr[n].will_retry_until = strcmp(action, "delayed") == 0 ? expiry : 0;
		n++;
	}
	bool ok = true;
	if (n > 0) {
		char postmaster[300];
		snprintf(postmaster, sizeof(postmaster), "MAILER-DAEMON@%s", r->hostname);
		struct sg_dsn_info info = {
			.reporting_mta = r->hostname,
			.envid = e->envid,
			.from_addr = e->from,
			.postmaster = postmaster,
			.arrival = e->arrival,
			.ret_hdrs = e->ret == SG_RET_HDRS,
			.rcpts = dr,
			.n_rcpts = n,
		};
		char *out = NULL;
		size_t olen = 0;
		const char *err = NULL;
		struct sg_dsn_result res;
		memset(&res, 0, sizeof(res));
		if (sg_dsn_build_ex(&info, msg != NULL ? msg->data : (const uint8_t *)"",
				    msg != NULL ? msg->len : 0, &out, &olen, &res, &err) < 0) {
			sg_log(SG_ERROR, "relay_dsn", "id=%s result=failed error=\"%s\"", e->id, err);
			ok = false;
		} else {
			char where[400] = "";
			if (commit_dsn(r, e, out, olen, &res, where, sizeof(where)) < 0) {
				ok = false;
			} else {
				char pv[300];
				atomic_fetch_add(&r->dsns, 1);
				sg_log(SG_INFO, "relay_dsn", "id=%s to=%s action=%s recipients=%zu %s",
				       e->id, sg_log_value(e->from, pv, sizeof(pv)), dr[0].action, n, where);
			}
			free(out);
		}
	}
	/* reported, or nothing to report: done (a failed report is retried with
	 * the next attempt, so it is not marked) */
	if (ok) {
		for (size_t k = 0; k < nnew; k++)
			sg_qrec_done(rec, newly[k]);
		if (warn)
			sg_qrec_warned(rec, time(NULL));
	}
	free(dr);
	free(newly);
}

/* ---- one turn of one message ---- */

static void log_result(const struct sg_relay *r, const struct sg_envelope *e, size_t i,
		       const struct sg_sh_result *res, bool final_expired)
{
	char tv[300], dv[700];
	const char *result = res->kind == 'D' ? "delivered" : res->kind == 'F' ? "failed" : "deferred";
	sg_log(res->kind == 'D' ? SG_INFO : SG_WARN, "relay",
	       "id=%s to=%s result=%s%s status=%s relay=%s:%u attempt=%u diag=%s", e->id,
	       sg_log_value(e->rcpts[i].addr, tv, sizeof(tv)), result,
	       final_expired ? " reason=expired" : "", res->status, r->cfg->host, r->cfg->port,
	       e->attempts + 1, sg_log_value(res->diag, dv, sizeof(dv)));
}

/* 1: keep (ent->next_ms set), 0: gone. flags: F_DELETE / F_BOUNCE requests. */
static int process(struct sg_relay *r, struct sg_smarthost *sh, struct qent *ent, unsigned flags,
		   int64_t *next_r)
{
	char id[SG_QUEUE_ID_MAX];
	ent_id(ent, id);
	struct sg_envelope e;
	const char *err = NULL;
	int lr = sg_queue_load(r->q, id, &e, true, &err);
	if (lr == 0)
		return 0;
	if (lr < 0) {
		sg_log(SG_ERROR, "queue_corrupt", "id=%s error=\"%s\" moved=queue/corrupt/", id, err);
		sg_queue_quarantine(r->q, id);
		return 0;
	}
	if (flags & F_DELETE) {
		if (sg_queue_remove(r->q, id, &err) < 0)
			sg_log(SG_ERROR, "queue", "id=%s delete failed: %s", id, err);
		sg_log(SG_INFO, "queue_deleted", "id=%s pending=%zu", id, sg_envelope_pending(&e));
		sg_envelope_free(&e);
		return 0;
	}
	int64_t now = time(NULL);
	struct sg_buf rec;
	sg_buf_init(&rec, 1 << 20);
	struct sg_buf msg;
	sg_buf_init(&msg, 1ULL << 33);
	bool have_msg = false;
	bool dsn_offered = false;
	size_t npend = sg_envelope_pending(&e);
	bool expired = (now - e.arrival) * 1000 >= (int64_t)r->cfg->lifetime_ms;
	if (npend > 0 && ((flags & F_BOUNCE) || expired)) {
		for (size_t i = 0; i < e.nrcpts; i++) {
			struct sg_qrcpt *rc = &e.rcpts[i];
			if (rc->state != SG_QR_PENDING)
				continue;
			char diag[700];
			struct sg_sh_result res;
			res.kind = 'F';
			if (flags & F_BOUNCE) {
				sg_strlcpy(res.status, "5.0.0", sizeof(res.status));
				snprintf(diag, sizeof(diag), "x-smtpgate; returned by the administrator%s%s",
					 rc->diag ? "; last error: " : "", rc->diag ? rc->diag : "");
			} else {
				/* RFC 3463 4.4.7: delivery time expired */
				sg_strlcpy(res.status, "4.4.7", sizeof(res.status));
				snprintf(diag, sizeof(diag), "x-smtpgate; delivery time expired%s%s",
					 rc->diag ? "; last error: " : "", rc->diag ? rc->diag : "");
				atomic_fetch_add(&r->expired, 1);
			}
			sg_strlcpy(res.diag, diag, sizeof(res.diag));
			log_result(r, &e, i, &res, !(flags & F_BOUNCE));
			sg_qrec_result(&rec, 'F', i, now, res.status, rc->remote_mta, res.diag);
			atomic_fetch_add(&r->failed, 1);
		}
	} else if (npend > 0) {
		if (sg_queue_read_msg(r->q, id, &msg, &err) < 0) {
			sg_log(SG_ERROR, "queue_corrupt", "id=%s error=\"%s\" moved=queue/corrupt/", id, err);
			sg_queue_quarantine(r->q, id);
			goto gone;
		}
		have_msg = true;
		/* DKIM: canonicalised and signed once per attempt, for every recipient */
		const uint8_t *out = msg.data;
		size_t outlen = msg.len;
		char *sig = NULL;
		uint8_t *signed_msg = NULL;
		const struct sg_dkim_signer *s = signer_for(r, e.from);
		if (s != NULL) {
			if (sg_dkim_sign(s, msg.data, msg.len, &sig, &err) < 0) {
				sg_log(SG_WARN, "relay_dkim", "id=%s domain=%s result=unsigned error=\"%s\"",
				       id, sg_dkim_signer_domain(s), err);
			} else {
				size_t sl = strlen(sig);
				signed_msg = sg_malloc(sl + msg.len);
				memcpy(signed_msg, sig, sl);
				memcpy(signed_msg + sl, msg.data, msg.len);
				out = signed_msg;
				outlen = sl + msg.len;
				if (e.attempts == 0)
					sg_log(SG_INFO, "relay_dkim", "id=%s domain=%s selector=%s a=%s result=signed",
					       id, sg_dkim_signer_domain(s), sg_dkim_signer_selector(s),
					       sg_dkim_signer_algorithm(s));
			}
		} else if (e.attempts == 0) {
			char pv[300];
			sg_log(SG_INFO, "relay_dkim", "id=%s from=%s result=unsigned reason=no_key_for_domain",
			       id, sg_log_value(e.from, pv, sizeof(pv)));
		}
		size_t *idx = sg_calloc(npend, sizeof(*idx));
		struct sg_sh_result *res = sg_calloc(npend, sizeof(*res));
		size_t k = 0;
		for (size_t i = 0; i < e.nrcpts; i++)
			if (e.rcpts[i].state == SG_QR_PENDING)
				idx[k++] = i;
		struct sg_sh_stats st;
		sg_sh_deliver(sh, &e, idx, npend, out, outlen, res, &st);
		dsn_offered = st.dsn_offered;
		if (st.error[0] != '\0') {
			char ev[500];
			sg_log(st.auth_refused ? SG_ERROR : SG_WARN,
			       st.auth_refused ? "relay_auth_failed" : "relay_connection",
			       "id=%s relay=%s:%u error=%s", id, r->cfg->host, r->cfg->port,
			       sg_log_value(st.error, ev, sizeof(ev)));
		}
		atomic_fetch_add(&r->attempts, 1);
		if (e.attempts > 0)
			atomic_fetch_add(&r->retries, 1);
		sg_qrec_attempt(&rec, now);
		char mta[300];
		snprintf(mta, sizeof(mta), "%s", r->cfg->host);
		for (size_t j = 0; j < npend; j++) {
			log_result(r, &e, idx[j], &res[j], false);
			sg_qrec_result(&rec, res[j].kind, idx[j], now, res[j].status, mta, res[j].diag);
			if (res[j].kind == 'D')
				atomic_fetch_add(&r->delivered, 1);
			else if (res[j].kind == 'F')
				atomic_fetch_add(&r->failed, 1);
			else
				atomic_fetch_add(&r->deferred, 1);
		}
		free(idx);
		free(res);
		free(sig);
		free(signed_msg);
	}
	if (rec.len > 0) {
		if (sg_queue_append(r->q, id, &rec, &err) < 0) {
			/* the results are lost: the next turn repeats the attempt */
			sg_log(SG_ERROR, "queue", "id=%s cannot record the attempt: %s", id, err);
			*next_r = now_ms() + backoff_ms(r->cfg, 1);
			sg_envelope_free(&e);
			sg_buf_free(&rec);
			sg_buf_free(&msg);
			return 1;
		}
		if (sg_envelope_apply(&e, (const char *)rec.data, rec.len, &err) < 0)
			sg_fatal("queue: own records refused: %s", err);
	}
	/* reports: final states, and the delay warning once */
	bool warn = !e.warned && r->cfg->delay_warning_ms > 0 && sg_envelope_pending(&e) > 0 &&
		    (now - e.arrival) * 1000 >= (int64_t)r->cfg->delay_warning_ms;
	bool need_report = warn;
	for (size_t i = 0; i < e.nrcpts; i++)
		need_report |= e.rcpts[i].state != SG_QR_PENDING && !e.rcpts[i].done;
	if (need_report) {
		if (!have_msg && sg_queue_read_msg(r->q, id, &msg, &err) == 0)
			have_msg = true;
		struct sg_buf nrec;
		sg_buf_init(&nrec, 1 << 20);
		notify(r, &e, have_msg ? &msg : NULL, dsn_offered, warn, &nrec);
		if (nrec.len > 0) {
			if (sg_queue_append(r->q, id, &nrec, &err) < 0)
				sg_log(SG_ERROR, "queue", "id=%s cannot record the report: %s", id, err);
			else if (sg_envelope_apply(&e, (const char *)nrec.data, nrec.len, &err) < 0)
				sg_fatal("queue: own records refused: %s", err);
		}
		sg_buf_free(&nrec);
	}
	if (sg_envelope_finished(&e)) {
		size_t nd = 0;
		for (size_t i = 0; i < e.nrcpts; i++)
			nd += e.rcpts[i].state == SG_QR_DELIVERED;
		if (sg_queue_remove(r->q, id, &err) < 0)
			sg_log(SG_ERROR, "queue", "id=%s cannot remove: %s", id, err);
		sg_log(SG_INFO, "queue_done", "id=%s delivered=%zu failed=%zu attempts=%u", id, nd,
		       e.nrcpts - nd, e.attempts);
		goto gone;
	}
	*next_r = next_try(r->cfg, &e, now_ms());
	if (sg_envelope_pending(&e) == 0) /* only reports left: retry them soon */
		*next_r = now_ms() + backoff_ms(r->cfg, 1);
	sg_envelope_free(&e);
	sg_buf_free(&rec);
	sg_buf_free(&msg);
	return 1;
gone:
	sg_envelope_free(&e);
	sg_buf_free(&rec);
	sg_buf_free(&msg);
	return 0;
}

/* Hold an entry (flags |= BUSY), process, put back: the one path every
 * change of a message takes. Called without r->mu held. */
static void turn(struct sg_relay *r, struct sg_smarthost *sh, struct qent *ent)
{
	pthread_mutex_lock(&r->mu);
	unsigned flags = ent->flags;
	ent->flags &= (uint8_t) ~(F_DELETE | F_BOUNCE);
	pthread_mutex_unlock(&r->mu);
	int64_t next = 0;
	int keep = process(r, sh, ent, flags, &next);
	pthread_mutex_lock(&r->mu);
	ent->flags &= (uint8_t)~F_BUSY;
	if (!keep) {
		ent_free(r, ent);
	} else {
		/* a control request that came in meanwhile is served at once */
		ent->next_ms = (ent->flags & (F_DELETE | F_BOUNCE)) ? 0 : next;
		heap_push(r, ent);
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void *worker_main(void *arg)
{
	struct sg_relay *r = arg;
	struct sg_smarthost *sh = sg_sh_new(r->cfg, r->tls, r->helo, &r->stopping);
	int64_t last_use = 0;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		int64_t now = now_ms();
		if (r->nheap > 0 && r->heap[0]->next_ms <= now) {
			struct qent *ent = r->heap[0];
			heap_remove(r, ent);
			ent->flags |= F_BUSY;
			pthread_mutex_unlock(&r->mu);
			turn(r, sh, ent);
			last_use = now_ms();
			pthread_mutex_lock(&r->mu);
			continue;
		}
		bool idle_open = sg_sh_connected(sh);
		if (idle_open && now - last_use >= IDLE_CLOSE_MS) {
			pthread_mutex_unlock(&r->mu);
			sg_sh_close(sh);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		int64_t until = now + 60000;
		if (r->nheap > 0 && r->heap[0]->next_ms < until)
			until = r->heap[0]->next_ms;
		if (idle_open && last_use + IDLE_CLOSE_MS < until)
			until = last_use + IDLE_CLOSE_MS;
		struct timespec ts = {.tv_sec = (time_t)(until / 1000),
				      .tv_nsec = (long)(until % 1000) * 1000000};
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	sg_sh_free(&sh);
	return NULL;
}

/* ---- enqueue, release ---- */

static int enqueue(struct sg_relay *r, struct sg_envelope *e, const struct sg_buf *prefix,
		   const struct sg_buf *body, int body_fd, size_t body_len, const char **error_r)
{
	sg_queue_new_id(e->id);
	if (e->arrival == 0)
		e->arrival = time(NULL);
	if ((body != NULL ? sg_queue_commit(r->q, e, prefix, body, error_r)
			  : sg_queue_commit_fd(r->q, e, prefix, body_fd, body_len, error_r)) < 0)
		return -1;
	uint64_t sec, rnd;
	if (parse_id(e->id, &sec, &rnd) < 0)
		sg_fatal("queue: bad own id %s", e->id);
	pthread_mutex_lock(&r->mu);
	struct qent *ent = ent_add(r, sec, rnd, e->arrival, now_ms());
	heap_push(r, ent);
	pthread_cond_broadcast(&r->cv); /* the control thread waits on it too */
	pthread_mutex_unlock(&r->mu);
	return 0;
}

int sg_relay_enqueue(struct sg_relay *r, struct sg_envelope *e, const struct sg_buf *prefix,
		     const struct sg_buf *body, const char **error_r)
{
	static const struct sg_buf empty;
	return enqueue(r, e, prefix, body != NULL ? body : &empty, -1, 0, error_r);
}

int sg_relay_enqueue_fd(struct sg_relay *r, struct sg_envelope *e, const struct sg_buf *prefix,
			int body_fd, size_t body_len, const char **error_r)
{
	return enqueue(r, e, prefix, NULL, body_fd, body_len, error_r);
}

size_t sg_relay_capture_skip(const uint8_t *msg, size_t len)
{
	size_t off = 0;
	for (;;) {
		const uint8_t *p = msg + off;
		size_t rest = len - off;
		bool ours = (rest >= 12 && strncasecmp((const char *)p, "Return-Path:", 12) == 0) ||
			    (rest >= 11 && strncasecmp((const char *)p, "X-Smtpgate-", 11) == 0);
		if (!ours)
			return off;
		/* the field with its folded continuation lines */
		size_t i = off;
		for (;;) {
			const uint8_t *nl = memchr(msg + i, '\n', len - i);
			if (nl == NULL)
				return off;
			i = (size_t)(nl - msg) + 1;
			if (i >= len || (msg[i] != ' ' && msg[i] != '\t'))
				break;
		}
		off = i;
	}
}

int sg_relay_release(struct sg_relay *r, const char *from, const char *const *rcpts, size_t n,
		     const uint8_t *msg, size_t len, const char *login,
		     char id_r[SG_QUEUE_ID_MAX], const char **error_r)
{
	if (n == 0 || n > SG_QUEUE_MAX_RCPTS) {
		sg_set_err(error_r, "between 1 and 1000 recipients");
		return -1;
	}
	size_t skip = sg_relay_capture_skip(msg, len);
	struct sg_envelope e;
	sg_envelope_init(&e);
	e.from = sg_strdup(from);
	e.login = sg_strdup(login != NULL ? login : "");
	for (size_t i = 0; i < n; i++)
		sg_envelope_add_rcpt(&e, rcpts[i], 0, NULL);
	struct sg_buf prefix, body;
	sg_buf_init(&prefix, 4096);
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	sg_buf_printf(&prefix, "Received: by %s (smtpgate) with release; %s\r\n", r->hostname, date);
	sg_buf_init(&body, len - skip + 1);
	sg_buf_append(&body, msg + skip, len - skip);
	int rc = sg_relay_enqueue(r, &e, &prefix, &body, error_r);
	if (rc == 0) {
		sg_strlcpy(id_r, e.id, SG_QUEUE_ID_MAX);
		char pv[300];
		sg_log(SG_INFO, "relay_release", "id=%s from=%s recipients=%zu login=%s", e.id,
		       sg_log_value(from, pv, sizeof(pv)), n, login != NULL ? login : "");
	}
	sg_buf_free(&prefix);
	sg_buf_free(&body);
	sg_envelope_free(&e);
	return rc;
}

/* ---- control ---- */

static const char *state_name(const struct sg_qrcpt *rc)
{
	return rc->state == SG_QR_DELIVERED ? "delivered"
	       : rc->state == SG_QR_FAILED  ? "failed"
	       : rc->diag != NULL           ? "deferred"
					    : "pending";
}

static json_t *env_json(const struct sg_envelope *e, int64_t next_ms, bool busy, bool full)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:b}", "id", e->id, "from", e->from,
			      "login", e->login, "arrival", (json_int_t)e->arrival, "size",
			      (json_int_t)e->size, "attempts", (json_int_t)e->attempts, "next_try",
			      (json_int_t)(next_ms / 1000), "dsn", e->is_dsn, "active", busy);
	json_t *rs = json_array();
	const char *last_error = NULL;
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct sg_qrcpt *rc = &e->rcpts[i];
		if (rc->state == SG_QR_PENDING && rc->diag != NULL)
			last_error = rc->diag;
		if (!full) {
			json_array_append_new(rs, json_string(rc->addr));
			continue;
		}
		json_t *ro = json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:I,s:b}", "address", rc->addr, "state",
				       state_name(rc), "status", rc->status[0] ? rc->status : NULL,
				       "diagnostic", rc->diag, "orcpt", rc->orcpt, "time",
				       (json_int_t)rc->time, "reported", rc->done);
		json_array_append_new(rs, ro);
	}
	json_object_set_new(o, "recipients", rs);
	json_object_set_new(o, "pending", json_integer((json_int_t)sg_envelope_pending(e)));
	json_object_set_new(o, "last_error", last_error ? json_string(last_error) : json_null());
	return o;
}

static void put_json(struct sg_buf *out, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	sg_buf_reset(out);
	if (s != NULL)
		sg_buf_append_str(out, s);
	free(s);
	json_decref(o);
}

static unsigned ctl_error(struct sg_buf *out, unsigned status, const char *msg)
{
	put_json(out, json_pack("{s:s}", "error", msg));
	return status;
}

struct snap {
	uint64_t sec, rnd;
	int64_t next_ms;
	bool busy;
};

static unsigned ctl_list(struct sg_relay *r, struct sg_buf *out)
{
	pthread_mutex_lock(&r->mu);
	size_t total = r->nall;
	size_t n = total < LIST_MAX ? total : LIST_MAX;
	struct snap *s = sg_calloc(n ? n : 1, sizeof(*s));
	size_t k = 0;
	for (size_t i = 0; i < r->nall && k < n; i++) {
		s[k].sec = r->all[i]->sec;
		s[k].rnd = r->all[i]->rnd;
		s[k].next_ms = r->all[i]->next_ms;
		s[k].busy = (r->all[i]->flags & F_BUSY) != 0;
		k++;
	}
	pthread_mutex_unlock(&r->mu);
	json_t *arr = json_array();
	for (size_t i = 0; i < k; i++) {
		char id[SG_QUEUE_ID_MAX];
		struct qent tmp = {.sec = s[i].sec, .rnd = s[i].rnd};
		ent_id(&tmp, id);
		struct sg_envelope e;
		const char *err = NULL;
		if (sg_queue_load(r->q, id, &e, false, &err) != 1)
			continue;
		json_array_append_new(arr, env_json(&e, s[i].next_ms, s[i].busy, false));
		sg_envelope_free(&e);
	}
	free(s);
	put_json(out, json_pack("{s:I,s:o}", "total", (json_int_t)total, "messages", arr));
	return 200;
}

/* Take an entry out of the schedule for a synchronous change. NULL when
 * absent; *busy when a runner holds it (then the request is flagged). */
static struct qent *hold(struct sg_relay *r, const char *id, unsigned flag, bool *busy)
{
	pthread_mutex_lock(&r->mu);
	struct qent *e = ent_find(r, id);
	*busy = false;
	if (e != NULL && (e->flags & F_BUSY)) {
		e->flags |= (uint8_t)flag;
		*busy = true;
	} else if (e != NULL) {
		heap_remove(r, e);
		e->flags |= (uint8_t)(F_BUSY | flag);
	}
	pthread_mutex_unlock(&r->mu);
	return e;
}

unsigned sg_relay_control(struct sg_relay *r, const char *cmd, const char *id,
			  struct sg_buf *out)
{
	bool have_id = id != NULL && id[0] != '\0';
	if (have_id && !sg_queue_id_valid(id))
		return ctl_error(out, 404, "no such message in the queue");
	if (strcmp(cmd, "list") == 0)
		return ctl_list(r, out);
	if (strcmp(cmd, "retry") == 0 && !have_id) {
		pthread_mutex_lock(&r->mu);
		size_t n = 0;
		for (size_t i = 0; i < r->nheap; i++, n++)
			r->heap[i]->next_ms = 0;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		sg_log(SG_INFO, "queue_retry", "messages=%zu", n);
		put_json(out, json_pack("{s:s,s:I}", "action", "retry", "messages", (json_int_t)n));
		return 200;
	}
	if (!have_id)
		return ctl_error(out, 400, "this command needs a queue id");
	if (strcmp(cmd, "show") == 0) {
		pthread_mutex_lock(&r->mu);
		struct qent *q = ent_find(r, id);
		int64_t next = q != NULL ? q->next_ms : 0;
		bool busy = q != NULL && (q->flags & F_BUSY);
		pthread_mutex_unlock(&r->mu);
		struct sg_envelope e;
		const char *err = NULL;
		if (q == NULL || sg_queue_load(r->q, id, &e, false, &err) != 1)
			return ctl_error(out, 404, "no such message in the queue");
		put_json(out, env_json(&e, next, busy, true));
		sg_envelope_free(&e);
		return 200;
	}
	if (strcmp(cmd, "retry") == 0) {
		pthread_mutex_lock(&r->mu);
		struct qent *q = ent_find(r, id);
		if (q != NULL && q->heap != NOT_IN_HEAP) {
			q->next_ms = 0;
			heap_update(r, q);
			pthread_cond_broadcast(&r->cv);
		}
		pthread_mutex_unlock(&r->mu);
		if (q == NULL)
			return ctl_error(out, 404, "no such message in the queue");
		sg_log(SG_INFO, "queue_retry", "id=%s", id);
		put_json(out, json_pack("{s:s,s:s}", "id", id, "action", "retry"));
		return 200;
	}
	unsigned flag = strcmp(cmd, "delete") == 0 ? F_DELETE : strcmp(cmd, "bounce") == 0 ? F_BOUNCE : 0;
	if (flag == 0)
		return ctl_error(out, 400, "unknown command (list, show, retry, delete, bounce)");
	bool busy;
	struct qent *q = hold(r, id, flag, &busy);
	if (q == NULL)
		return ctl_error(out, 404, "no such message in the queue");
	if (busy) {
		put_json(out, json_pack("{s:s,s:s,s:s}", "id", id, "action", cmd, "status",
					"after the delivery attempt in progress"));
		return 200;
	}
	/* done here, on the caller's thread; no connection is needed */
	turn(r, NULL, q);
	put_json(out, json_pack("{s:s,s:s,s:s}", "id", id, "action", cmd, "status", "done"));
	return 200;
}

void sg_relay_metrics(struct sg_relay *r, struct sg_buf *out)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->nall;
	int64_t oldest = 0;
	for (size_t i = 0; i < r->nall; i++)
		if (oldest == 0 || r->all[i]->arrival < oldest)
			oldest = r->all[i]->arrival;
	pthread_mutex_unlock(&r->mu);
	int64_t age = oldest > 0 ? (int64_t)time(NULL) - oldest : 0;
	sg_buf_printf(out,
		      "# HELP smtpgate_queue_messages Messages in the relay queue.\n"
		      "# TYPE smtpgate_queue_messages gauge\n"
		      "smtpgate_queue_messages %zu\n"
		      "# HELP smtpgate_queue_oldest_age_seconds Age of the oldest queued message.\n"
		      "# TYPE smtpgate_queue_oldest_age_seconds gauge\n"
		      "smtpgate_queue_oldest_age_seconds %" PRId64 "\n"
		      "# HELP smtpgate_relay_deliveries_total Recipient results of delivery attempts.\n"
		      "# TYPE smtpgate_relay_deliveries_total counter\n"
		      "smtpgate_relay_deliveries_total{result=\"delivered\"} %" PRIuFAST64 "\n"
		      "smtpgate_relay_deliveries_total{result=\"deferred\"} %" PRIuFAST64 "\n"
		      "smtpgate_relay_deliveries_total{result=\"failed\"} %" PRIuFAST64 "\n"
		      "# HELP smtpgate_relay_attempts_total Delivery attempts (one per message and turn).\n"
		      "# TYPE smtpgate_relay_attempts_total counter\n"
		      "smtpgate_relay_attempts_total %" PRIuFAST64 "\n"
		      "# HELP smtpgate_relay_retries_total Attempts after the first.\n"
		      "# TYPE smtpgate_relay_retries_total counter\n"
		      "smtpgate_relay_retries_total %" PRIuFAST64 "\n"
		      "# HELP smtpgate_relay_expired_total Recipients failed by queue_lifetime.\n"
		      "# TYPE smtpgate_relay_expired_total counter\n"
		      "smtpgate_relay_expired_total %" PRIuFAST64 "\n"
		      "# HELP smtpgate_relay_dsn_total Delivery status notifications sent.\n"
		      "# TYPE smtpgate_relay_dsn_total counter\n"
		      "smtpgate_relay_dsn_total %" PRIuFAST64 "\n",
		      n, age, atomic_load(&r->delivered), atomic_load(&r->deferred),
		      atomic_load(&r->failed), atomic_load(&r->attempts), atomic_load(&r->retries),
		      atomic_load(&r->expired), atomic_load(&r->dsns));
}

/* ---- the control directory (smtpgate queue ...) ---- */

/* A request file "req.<16 hex>" holds "cmd [id]\n"; the answer goes to
 * "resp.<same>" (written in tmp/, renamed): "<status>\n<json>". */
static void ctl_serve_one(struct sg_relay *r, const char *dir, const char *name)
{
	char *path = sg_asprintf("%s/%s", dir, name);
	char *resp = sg_asprintf("%s/resp.%s", dir, name + 4);
	char *tmp = sg_asprintf("%s/tmp/ctl.%s", sg_queue_dir(r->q), name + 4);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	char req[256];
	ssize_t n = -1;
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		n = read(fd, req, sizeof(req) - 1);
	if (fd >= 0)
		close(fd);
	unlink(path);
	if (n <= 0) {
		free(path);
		free(resp);
		free(tmp);
		return;
	}
	req[n] = '\0';
	req[strcspn(req, "\r\n")] = '\0';
	char *sp = strchr(req, ' ');
	const char *id = "";
	if (sp != NULL) {
		*sp = '\0';
		id = sp + 1;
	}
	struct sg_buf out;
	sg_buf_init(&out, 16 * 1024 * 1024);
	unsigned status = sg_relay_control(r, req, id, &out);
	int wfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (wfd >= 0) {
		char head[16];
		int hl = snprintf(head, sizeof(head), "%u\n", status);
		bool ok = write(wfd, head, (size_t)hl) == hl &&
			  write(wfd, out.data, out.len) == (ssize_t)out.len;
		close(wfd);
		if (!ok || rename(tmp, resp) != 0)
			unlink(tmp);
	}
	sg_buf_free(&out);
	free(path);
	free(resp);
	free(tmp);
}

static void *ctl_main(void *arg)
{
	struct sg_relay *r = arg;
	char dir[1100];
	snprintf(dir, sizeof(dir), "%s/ctl", sg_queue_dir(r->q));
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		pthread_mutex_unlock(&r->mu);
		DIR *d = opendir(dir);
		if (d != NULL) {
			struct dirent *de;
			char names[32][64];
			size_t nn = 0;
			while ((de = readdir(d)) != NULL && nn < 32)
				if (strncmp(de->d_name, "req.", 4) == 0 && strlen(de->d_name) < 64)
					sg_strlcpy(names[nn++], de->d_name, sizeof(names[0]));
			closedir(d);
			for (size_t i = 0; i < nn; i++)
				ctl_serve_one(r, dir, names[i]);
		}
		pthread_mutex_lock(&r->mu);
		int64_t until = now_ms() + CTL_POLL_MS;
		struct timespec ts = {.tv_sec = (time_t)(until / 1000),
				      .tv_nsec = (long)(until % 1000) * 1000000};
		if (!r->stop)
			pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* ---- life ---- */

struct scan_ctx {
	struct sg_relay *r;
	size_t n, bad;
};

static int scan_cb(const char *id, void *arg)
{
	struct scan_ctx *sc = arg;
	struct sg_relay *r = sc->r;
	struct sg_envelope e;
	const char *err = NULL;
	int lr = sg_queue_load(r->q, id, &e, true, &err);
	if (lr != 1) {
		if (lr < 0) {
			sg_log(SG_ERROR, "queue_corrupt", "id=%s error=\"%s\" moved=queue/corrupt/", id,
			       err);
			sg_queue_quarantine(r->q, id);
			sc->bad++;
		}
		return 0;
	}
	uint64_t sec, rnd;
	if (parse_id(id, &sec, &rnd) == 0) {
		int64_t next = next_try(r->cfg, &e, e.last_attempt * 1000);
		heap_push(r, ent_add(r, sec, rnd, e.arrival, next));
		sc->n++;
	}
	sg_envelope_free(&e);
	return 0;
}

int sg_relay_new(const struct sg_relay_params *p, struct sg_relay **r_r, char *err,
		 size_t errsize)
{
	*r_r = NULL;
	struct sg_relay *r = sg_calloc(1, sizeof(*r));
	r->cfg = p->cfg;
	sg_strlcpy(r->hostname, p->hostname, sizeof(r->hostname));
	sg_strlcpy(r->helo, p->cfg->helo[0] ? p->cfg->helo : p->hostname, sizeof(r->helo));
	sg_strlcpy(r->data_dir, p->data_dir, sizeof(r->data_dir));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	const char *e = NULL;
	for (size_t i = 0; i < p->cfg->ndkim; i++) {
		const struct sg_relay_dkim_cfg *d = &p->cfg->dkim[i];
		if (sg_dkim_signer_load(&r->signers[r->nsigners], d->domain, d->selector, d->keyfile,
					&e) < 0) {
			snprintf(err, errsize, "%s: dkim_key: cannot use the key %s: %s", d->where,
				 d->keyfile, e);
			sg_relay_free(&r);
			return -1;
		}
		r->nsigners++;
	}
	if (p->cfg->tls != SG_RELAY_TLS_NONE) {
		struct sg_ctls_opts to = {
			.cafile = p->cfg->ca_file[0] ? p->cfg->ca_file : NULL,
			.cert_file = p->cfg->cert[0] ? p->cfg->cert : NULL,
			.key_file = p->cfg->key[0] ? p->cfg->key : NULL,
		};
		if (sg_ctls_new(&to, &r->tls, &e) < 0) {
			snprintf(err, errsize, "relay TLS (relay_ca_file, relay_cert, relay_key): %s", e);
			sg_relay_free(&r);
			return -1;
		}
	}
	*r_r = r;
	return 0;
}

int sg_relay_start(struct sg_relay *r, const char *data_dir, struct sg_mail_store *mail,
		   struct sg_cred_store *creds, char *err, size_t errsize)
{
	if (data_dir != NULL)
		sg_strlcpy(r->data_dir, data_dir, sizeof(r->data_dir));
	const struct sg_relay_config *cfg = r->cfg;
	const char *e = NULL;
	r->mail = mail;
	r->creds = creds;
	if (sg_queue_open(r->data_dir, &r->q, &e) < 0) {
		snprintf(err, errsize, "relay queue: %s", e);
		return -1;
	}
	struct scan_ctx sc = {.r = r};
	if (sg_queue_scan(r->q, scan_cb, &sc, &e) < 0) {
		snprintf(err, errsize, "relay queue: %s", e);
		return -1;
	}
	sg_log(SG_INFO, "queue_loaded", "messages=%zu corrupt=%zu relay=%s:%u tls=%s auth=%s workers=%u",
	       sc.n, sc.bad, cfg->host, cfg->port,
	       cfg->tls == SG_RELAY_TLS_NONE       ? "none"
	       : cfg->tls == SG_RELAY_TLS_IMPLICIT ? "implicit"
						   : "starttls",
	       cfg->auth[0] ? cfg->auth : "none", cfg->concurrency);
	r->workers = sg_calloc(cfg->concurrency, sizeof(*r->workers));
	for (unsigned i = 0; i < cfg->concurrency; i++) {
		if (pthread_create(&r->workers[i], NULL, worker_main, r) != 0)
			sg_fatal("cannot start a relay thread");
		r->nworkers++;
	}
	if (pthread_create(&r->ctl, NULL, ctl_main, r) != 0)
		sg_fatal("cannot start the queue control thread");
	r->ctl_started = true;
	return 0;
}

void sg_relay_free(struct sg_relay **rp)
{
	struct sg_relay *r = *rp;
	if (r == NULL)
		return;
	atomic_store(&r->stopping, true);
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (unsigned i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i], NULL);
	if (r->ctl_started)
		pthread_join(r->ctl, NULL);
	free(r->workers);
	while (r->nall > 0)
		ent_free(r, r->all[r->nall - 1]);
	free(r->all);
	free(r->heap);
	for (size_t i = 0; i < r->nsigners; i++)
		sg_dkim_signer_free(&r->signers[i]);
	sg_ctls_free(&r->tls);
	sg_queue_close(&r->q);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
	*rp = NULL;
}
