/*
 * faults.c: fault-injection rules (faults.h) in the faults table of
 * <data-dir>/smtpgate.db.
 *
 * The hot path (sg_faults_check, on the SMTP loop) never touches SQLite: it
 * reads an atomic rule count (0 in the common case: return at once) and
 * otherwise walks the in-memory rule set under a mutex. A background thread
 * polls PRAGMA data_version every 200 ms on its own connection; when another
 * connection (the CLI, another process) committed, it re-reads the table
 * (the whole database shares one data_version, so a change to another table
 * costs one small SELECT). The same thread writes the matched/fired counters
 * back, so that "times N" survives a restart and `fault list` shows them.
 * Changes made through this handle reload synchronously.
 *
 * Ids come from AUTOINCREMENT and are never reused, so in-memory counters
 * can be carried over a reload by id.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/faults.h"
#include "store/faults_int.h"
#include "store/pg.h"

#define POLL_MS 200
/* Quotas per origin, so that no origin can fill the table for another
 * (issue 10 item 14): the config file's rules, the admin's (CLI and the
 * API with the admin token) and the accounts' (the API, each account for
 * its own login) are counted apart. */
#define MAX_RULES_CONFIG 1000
#define MAX_RULES_ADMIN 1000
#define MAX_RULES_ACCOUNTS 1000
#define MAX_RULES_PER_ACCOUNT 20
#define MAX_RULES_LOADED (MAX_RULES_CONFIG + MAX_RULES_ADMIN + MAX_RULES_ACCOUNTS)

struct sg_faults {
	struct sg_pg *pg;          /* store = postgresql: the rules live there (faults_pg.c) */
	atomic_bool pg_changed;    /* a NOTIFY said the rules changed */
	char *path;
	sqlite3 *db;               /* under db_lock */
	pthread_mutex_t db_lock;
	pthread_mutex_t lock;      /* rules, nrules, dirty */
	struct sg_fault_rule *rules;
	size_t nrules;
	_Atomic size_t nrules_fast;
	bool dirty;                /* counters changed since the last write-back */
	int64_t data_version;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stopping;
};

static const char *const stage_names[] = {"connect", "ehlo", "auth", "mail", "rcpt", "data"};
static const char *const kind_names[] = {"none", "reply", "reply_close", "delay", "drop"};
static const char *const when_names[] = {"always", "times", "every", "probability"};

const char *sg_fault_stage_name(enum sg_fault_stage s)
{
	return (unsigned)s < 6 ? stage_names[s] : "?";
}

int sg_fault_stage_parse(const char *name, enum sg_fault_stage *s)
{
	for (unsigned i = 0; i < 6; i++)
		if (strcasecmp(name, stage_names[i]) == 0) {
			*s = (enum sg_fault_stage)i;
			return 0;
		}
	if (strcasecmp(name, "helo") == 0) {
		*s = SG_FAULT_EHLO;
		return 0;
	}
	return -1;
}

const char *sg_fault_kind_name(enum sg_fault_kind k)
{
	return (unsigned)k < 5 ? kind_names[k] : "?";
}

const char *sg_fault_when_name(enum sg_fault_when w)
{
	return (unsigned)w < 4 ? when_names[w] : "?";
}

int sg_faults_kind_parse(const char *name, enum sg_fault_kind *k)
{
	for (unsigned i = 0; i < 5; i++)
		if (strcmp(name, kind_names[i]) == 0) {
			*k = (enum sg_fault_kind)i;
			return 0;
		}
	return -1;
}

int sg_faults_when_parse(const char *name, enum sg_fault_when *w)
{
	for (unsigned i = 0; i < 4; i++)
		if (strcmp(name, when_names[i]) == 0) {
			*w = (enum sg_fault_when)i;
			return 0;
		}
	return -1;
}

/* ---- parsing and validation ---- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 3463 section 3.1: class "." subject "." detail, 1-3 digits each
 * (class one digit: 2, 4 or 5). */
static bool enhanced_valid(const char *e)
{
	if (!(e[0] == '2' || e[0] == '4' || e[0] == '5') || e[1] != '.')
		return false;
	const char *p = e + 2;
	for (int part = 0; part < 2; part++) {
		int n = 0;
		while (is_digit(*p) && n < 4) {
			p++;
			n++;
		}
		if (n < 1 || n > 3)
			return false;
		if (part == 0 && *p++ != '.')
			return false;
	}
	return *p == '\0';
}

int sg_faults_parse_reply(const char *reply, struct sg_fault_action *a, const char **error_r)
{
	while (*reply == ' ')
		reply++;
	if (!(reply[0] >= '2' && reply[0] <= '5') || !is_digit(reply[1]) || !is_digit(reply[2]) ||
	    (reply[3] != ' ' && reply[3] != '\0')) {
		sg_set_err(error_r, "a reply starts with a three-digit code 200..599 (e.g. '535 5.7.8 text')");
		return -1;
	}
	a->code = (unsigned)((reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0'));
	a->enhanced[0] = '\0';
	a->text[0] = '\0';
	const char *p = reply + 3;
	while (*p == ' ')
		p++;
	const char *sp = strchr(p, ' ');
	size_t wl = sp != NULL ? (size_t)(sp - p) : strlen(p);
	if (wl > 0 && wl < sizeof(a->enhanced) && is_digit(p[0]) && p[1] == '.') {
		char e[16];
		memcpy(e, p, wl);
		e[wl] = '\0';
		if (!enhanced_valid(e)) {
			sg_set_err(error_r, sg_errf("'%s' is not an enhanced status code (RFC 3463: d.ddd.ddd)", e));
			return -1;
		}
		if (e[0] != reply[0]) {
			sg_set_err(error_r, "the enhanced code's class must match the reply code's first digit");
			return -1;
		}
		sg_strlcpy(a->enhanced, e, sizeof(a->enhanced));
		p += wl;
		while (*p == ' ')
			p++;
	}
	size_t tl = strlen(p);
	while (tl > 0 && p[tl - 1] == ' ')
		tl--;
	if (tl >= 200) {
		sg_set_err(error_r, "reply text is longer than 199 bytes");
		return -1;
	}
	for (size_t i = 0; i < tl; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
			sg_set_err(error_r, "reply text must not contain control characters");
			return -1;
		}
	memcpy(a->text, p, tl);
	a->text[tl] = '\0';
	if (a->kind != SG_FAULT_REPLY_CLOSE)
		a->kind = SG_FAULT_REPLY;
	return 0;
}

static bool name_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	return true;
}

int sg_faults_validate(const struct sg_fault_rule *r, const char **error_r)
{
	if ((unsigned)r->stage > SG_FAULT_DATA) {
		sg_set_err(error_r, "unknown stage");
		return -1;
	}
	const struct sg_fault_action *a = &r->action;
	switch (a->kind) {
	case SG_FAULT_REPLY:
	case SG_FAULT_REPLY_CLOSE:
		if (a->code < 200 || a->code > 599) {
			sg_set_err(error_r, "reply code must be 200..599");
			return -1;
		}
		if (a->enhanced[0] != '\0' && (!enhanced_valid(a->enhanced) ||
					       a->enhanced[0] != (char)('0' + a->code / 100))) {
			sg_set_err(error_r, "bad enhanced status code");
			return -1;
		}
		for (const char *p = a->text; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				sg_set_err(error_r, "reply text must not contain control characters");
				return -1;
			}
		break;
	case SG_FAULT_DELAY:
		if (a->delay_ms == 0) {
			sg_set_err(error_r, "a delay rule needs delay > 0 ms");
			return -1;
		}
		break;
	case SG_FAULT_DROP:
		break;
	default:
		sg_set_err(error_r, "a rule needs an action: reply, drop or delay");
		return -1;
	}
	if (a->delay_ms > 600000) {
		sg_set_err(error_r, "delay is at most 600000 ms");
		return -1;
	}
	if (!name_ok(r->listener) || !name_ok(r->login)) {
		sg_set_err(error_r, "listener and login must not contain spaces or control characters");
		return -1;
	}
	switch (r->when) {
	case SG_FAULT_ALWAYS:
		break;
	case SG_FAULT_TIMES:
	case SG_FAULT_EVERY:
		if (r->n < 1) {
			sg_set_err(error_r, "times and every need N >= 1");
			return -1;
		}
		break;
	case SG_FAULT_PROBABILITY:
		if (!(r->probability >= 0.0 && r->probability <= 1.0)) {
			sg_set_err(error_r, "probability must be between 0 and 1");
			return -1;
		}
		break;
	default:
		sg_set_err(error_r, "unknown mode");
		return -1;
	}
	return 0;
}

static const char *const spec_keys[] = {"stage", "reply", "close", "delay", "drop", "listener",
					"login", "times", "every", "probability", NULL};

/* Does the word at p (ending at end) start a new key? */
static bool spec_key_at(const char *p, size_t len)
{
	for (size_t i = 0; spec_keys[i] != NULL; i++) {
		size_t kl = strlen(spec_keys[i]);
		if (len >= kl && strncmp(p, spec_keys[i], kl) == 0 && (len == kl || p[kl] == '='))
			return true;
	}
	return false;
}

static int parse_uint(const char *v, uint64_t max, unsigned *out, const char *what,
		      const char **error_r)
{
	uint64_t x;
	if (sg_parse_u64(v, 0, max, &x) < 0) {
		sg_set_err(error_r, sg_errf("%s: '%.64s' is not a number in 0..%llu", what, v,
				      (unsigned long long)max));
		return -1;
	}
	*out = (unsigned)x;
	return 0;
}

static int parse_prob(const char *v, double *out, const char **error_r)
{
	char *end = NULL;
	errno = 0;
	double p = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !(p >= 0.0 && p <= 1.0)) {
		sg_set_err(error_r, sg_errf("probability: '%.64s' is not a number between 0 and 1", v));
		return -1;
	}
	*out = p;
	return 0;
}

static int spec_apply(struct sg_fault_rule *r, const char *key, const char *val, bool *have_stage,
		      bool *have_when, const char **error_r)
{
	bool flag = strcmp(key, "close") == 0 || strcmp(key, "drop") == 0;
	if (!flag && val == NULL) {
		sg_set_err(error_r, sg_errf("'%s' needs a value (%s=...)", key, key));
		return -1;
	}
	if (strcmp(key, "stage") == 0) {
		if (sg_fault_stage_parse(val, &r->stage) < 0) {
			sg_set_err(error_r, sg_errf("unknown stage '%.32s' (connect, ehlo, auth, mail, rcpt, data)",
					      val));
			return -1;
		}
		*have_stage = true;
	} else if (strcmp(key, "reply") == 0) {
		if (sg_faults_parse_reply(val, &r->action, error_r) < 0)
			return -1;
	} else if (strcmp(key, "close") == 0) {
		r->action.kind = SG_FAULT_REPLY_CLOSE;
	} else if (strcmp(key, "drop") == 0) {
		r->action.kind = SG_FAULT_DROP;
	} else if (strcmp(key, "delay") == 0) {
		if (parse_uint(val, 600000, &r->action.delay_ms, "delay", error_r) < 0)
			return -1;
		if (r->action.kind == SG_FAULT_NONE)
			r->action.kind = SG_FAULT_DELAY;
	} else if (strcmp(key, "listener") == 0) {
		if (!sg_strlcpy(r->listener, val, sizeof(r->listener))) {
			sg_set_err(error_r, "listener name too long");
			return -1;
		}
	} else if (strcmp(key, "login") == 0) {
		if (!sg_strlcpy(r->login, val, sizeof(r->login))) {
			sg_set_err(error_r, "login too long");
			return -1;
		}
	} else {
		if (*have_when) {
			sg_set_err(error_r, "use only one of times, every, probability");
			return -1;
		}
		*have_when = true;
		if (strcmp(key, "times") == 0) {
			r->when = SG_FAULT_TIMES;
			return parse_uint(val, 1000000000, &r->n, "times", error_r);
		} else if (strcmp(key, "every") == 0) {
			r->when = SG_FAULT_EVERY;
			return parse_uint(val, 1000000000, &r->n, "every", error_r);
		}
		r->when = SG_FAULT_PROBABILITY;
		return parse_prob(val, &r->probability, error_r);
	}
	return 0;
}

int sg_faults_parse_spec(const char *spec, struct sg_fault_rule *r, const char **error_r)
{
	memset(r, 0, sizeof(*r));
	r->probability = 1.0;
	size_t len = strlen(spec);
	if (len > 2000) {
		sg_set_err(error_r, "fault spec too long");
		return -1;
	}
	/* words; a word that is not "key" or "key=..." continues the previous value */
	char key[16] = "";
	char val[512];
	bool have_val = false, have_stage = false, have_when = false, reply_close = false;
	size_t vlen = 0;
	const char *p = spec;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *w = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		size_t wl = (size_t)(p - w);
		bool done = wl == 0;
		if (done || spec_key_at(w, wl)) {
			if (key[0] != '\0') {
				val[vlen] = '\0';
				if (strcmp(key, "close") == 0)
					reply_close = true;
				else if (spec_apply(r, key, have_val ? val : NULL, &have_stage, &have_when,
						    error_r) < 0)
					return -1;
			}
			if (done)
				break;
			const char *eq = memchr(w, '=', wl);
			size_t kl = eq != NULL ? (size_t)(eq - w) : wl;
			memcpy(key, w, kl);
			key[kl] = '\0';
			have_val = eq != NULL;
			vlen = 0;
			if (eq != NULL) {
				size_t n = wl - kl - 1;
				if (n >= sizeof(val)) {
					sg_set_err(error_r, "value too long");
					return -1;
				}
				memcpy(val, eq + 1, n);
				vlen = n;
			}
		} else {
			if (key[0] == '\0' || !have_val) {
				sg_set_err(error_r, sg_errf("unexpected word '%.*s' (keys: stage, reply, close, "
						      "delay, drop, listener, login, times, every, probability)",
						      (int)(wl > 64 ? 64 : wl), w));
				return -1;
			}
			if (vlen + 1 + wl >= sizeof(val)) {
				sg_set_err(error_r, "value too long");
				return -1;
			}
			val[vlen++] = ' ';
			memcpy(val + vlen, w, wl);
			vlen += wl;
		}
	}
	if (reply_close) {
		if (r->action.kind != SG_FAULT_REPLY) {
			sg_set_err(error_r, "close needs a reply (e.g. reply=421 4.7.0 Bye close)");
			return -1;
		}
		r->action.kind = SG_FAULT_REPLY_CLOSE;
	}
	if (!have_stage) {
		sg_set_err(error_r, "stage= is required (connect, ehlo, auth, mail, rcpt, data)");
		return -1;
	}
	return sg_faults_validate(r, error_r);
}

/* ---- database ---- */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS faults("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" stage TEXT NOT NULL, listener TEXT NOT NULL DEFAULT '', login TEXT NOT NULL DEFAULT '',"
	" kind TEXT NOT NULL, code INTEGER NOT NULL DEFAULT 0, enhanced TEXT NOT NULL DEFAULT '',"
	" text TEXT NOT NULL DEFAULT '', delay_ms INTEGER NOT NULL DEFAULT 0,"
	" mode TEXT NOT NULL DEFAULT 'always', n INTEGER NOT NULL DEFAULT 0,"
	" probability REAL NOT NULL DEFAULT 1,"
	" matched INTEGER NOT NULL DEFAULT 0, fired INTEGER NOT NULL DEFAULT 0,"
	" created INTEGER NOT NULL, origin TEXT NOT NULL DEFAULT 'cli');";

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t != NULL ? (const char *)t : "";
}

/* Read the table (db_lock held). */
static int load_rules(struct sg_faults *f, struct sg_fault_rule **rules_r, size_t *n_r,
		      const char **error_r)
{
	if (f->pg != NULL)
		return sg_faults_pg_load(f->pg, rules_r, n_r, error_r);
	sqlite3_stmt *st = NULL;
	*rules_r = NULL;
	*n_r = 0;
	if (sqlite3_prepare_v2(f->db,
			       "SELECT id, stage, listener, login, kind, code, enhanced, text, delay_ms,"
			       " mode, n, probability, matched, fired, created, origin FROM faults"
			       " ORDER BY id LIMIT 3000",
			       -1, &st, NULL) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		return -1;
	}
	struct sg_fault_rule *rules = NULL;
	size_t n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sg_fault_rule r;
		memset(&r, 0, sizeof(r));
		r.id = (long)sqlite3_column_int64(st, 0);
		r.action.rule_id = r.id;
		if (sg_fault_stage_parse(col_text(st, 1), &r.stage) < 0 ||
		    sg_faults_kind_parse(col_text(st, 4), &r.action.kind) < 0 ||
		    sg_faults_when_parse(col_text(st, 9), &r.when) < 0)
			continue; /* written by a newer version: ignore */
		sg_strlcpy(r.listener, col_text(st, 2), sizeof(r.listener));
		sg_strlcpy(r.login, col_text(st, 3), sizeof(r.login));
		r.action.code = (unsigned)sqlite3_column_int(st, 5);
		sg_strlcpy(r.action.enhanced, col_text(st, 6), sizeof(r.action.enhanced));
		sg_strlcpy(r.action.text, col_text(st, 7), sizeof(r.action.text));
		r.action.delay_ms = (unsigned)sqlite3_column_int(st, 8);
		r.n = (unsigned)sqlite3_column_int64(st, 10);
		r.probability = sqlite3_column_double(st, 11);
		r.matched = (unsigned long long)sqlite3_column_int64(st, 12);
		r.fired = (unsigned long long)sqlite3_column_int64(st, 13);
		r.created = (long long)sqlite3_column_int64(st, 14);
		sg_strlcpy(r.origin, col_text(st, 15), sizeof(r.origin));
		rules = sg_realloc(rules, (n + 1) * sizeof(*rules));
		rules[n++] = r;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(rules);
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		return -1;
	}
	*rules_r = rules;
	*n_r = n;
	return 0;
}

static int64_t data_version(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Swap in a freshly loaded rule set, keeping this process's counters. */
static void install_rules(struct sg_faults *f, struct sg_fault_rule *rules, size_t n)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < f->nrules; j++)
			if (f->rules[j].id == rules[i].id) {
				if (f->rules[j].matched > rules[i].matched)
					rules[i].matched = f->rules[j].matched;
				if (f->rules[j].fired > rules[i].fired)
					rules[i].fired = f->rules[j].fired;
				break;
			}
	free(f->rules);
	f->rules = rules;
	f->nrules = n;
	atomic_store(&f->nrules_fast, n);
	pthread_mutex_unlock(&f->lock);
}

/* db_lock held */
static void reload_locked(struct sg_faults *f)
{
	struct sg_fault_rule *rules;
	size_t n;
	const char *err = NULL;
	f->data_version = f->pg != NULL ? 0 : data_version(f->db);
	if (load_rules(f, &rules, &n, &err) < 0) {
		sg_log(SG_WARN, "faults", "reload failed: %s", err);
		return;
	}
	install_rules(f, rules, n);
}

void sg_faults_reload(struct sg_faults *f)
{
	pthread_mutex_lock(&f->db_lock);
	reload_locked(f);
	pthread_mutex_unlock(&f->db_lock);
}

/* Write the counters back (db_lock held). */
static void persist_counters_locked(struct sg_faults *f)
{
	pthread_mutex_lock(&f->lock);
	if (!f->dirty || f->nrules == 0) {
		f->dirty = false;
		pthread_mutex_unlock(&f->lock);
		return;
	}
	size_t n = f->nrules;
	struct sg_fault_rule *copy = sg_malloc(n * sizeof(*copy));
	memcpy(copy, f->rules, n * sizeof(*copy));
	f->dirty = false;
	pthread_mutex_unlock(&f->lock);
	if (f->pg != NULL) {
		sg_faults_pg_persist(f->pg, copy, n);
		free(copy);
		return;
	}

	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(f->db, "UPDATE faults SET matched = max(matched, ?), fired = max(fired, ?)"
				      " WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL);
		for (size_t i = 0; i < n; i++) {
			sqlite3_bind_int64(st, 1, (sqlite3_int64)copy[i].matched);
			sqlite3_bind_int64(st, 2, (sqlite3_int64)copy[i].fired);
			sqlite3_bind_int64(st, 3, copy[i].id);
			sqlite3_step(st);
			sqlite3_reset(st);
		}
		if (sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL);
	}
	sqlite3_finalize(st);
	free(copy);
}

static void *poll_thread(void *arg)
{
	struct sg_faults *f = arg;
	pthread_mutex_lock(&f->stop_lock);
	while (!f->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += POLL_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&f->stop_cond, &f->stop_lock, &ts);
		if (f->stopping)
			break;
		pthread_mutex_unlock(&f->stop_lock);
		pthread_mutex_lock(&f->db_lock);
		persist_counters_locked(f);
		if (f->pg != NULL) {
			if (atomic_exchange(&f->pg_changed, false))
				reload_locked(f);
		} else {
			int64_t v = data_version(f->db);
			if (v != f->data_version)
				reload_locked(f);
		}
		pthread_mutex_unlock(&f->db_lock);
		pthread_mutex_lock(&f->stop_lock);
	}
	pthread_mutex_unlock(&f->stop_lock);
	return NULL;
}

int sg_faults_open(const char *data_dir, struct sg_faults **f_r, const char **error_r)
{
	struct sg_faults *f = sg_calloc(1, sizeof(*f));
	f->path = sg_asprintf("%s/smtpgate.db", data_dir);
	pthread_mutex_init(&f->db_lock, NULL);
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->stop_lock, NULL);
	pthread_cond_init(&f->stop_cond, NULL);
	/* A new database file is private (0600), as the credential store makes
	 * it. Only when it does not exist yet: closing any descriptor of an open
	 * SQLite file drops this process's POSIX locks on it (other connections'
	 * locks included), after which another process may delete the WAL. */
	struct stat sb;
	if (stat(f->path, &sb) < 0 && errno == ENOENT) {
		int cfd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (cfd >= 0)
			close(cfd);
	}
	int rc = sqlite3_open_v2(f->path, &f->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("cannot open %s: %s", f->path,
				      f->db != NULL ? sqlite3_errmsg(f->db) : sqlite3_errstr(rc)));
		sg_faults_close(&f);
		return -1;
	}
	sqlite3_busy_timeout(f->db, 5000);
	sqlite3_exec(f->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
	sqlite3_exec(f->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	char *msg = NULL;
	if (sqlite3_exec(f->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("cannot create the faults table in %s: %s", f->path,
				      msg != NULL ? msg : "?"));
		sqlite3_free(msg);
		sg_faults_close(&f);
		return -1;
	}
	sg_faults_reload(f);
	if (pthread_create(&f->thread, NULL, poll_thread, f) != 0) {
		sg_set_err(error_r, "cannot start the faults thread");
		sg_faults_close(&f);
		return -1;
	}
	f->thread_started = true;
	*f_r = f;
	return 0;
}

/* Another node (or the CLI) changed the rules: the write-back thread reloads. */
static void on_pg_change(void *ctx, const char *payload)
{
	struct sg_faults *f = ctx;
	(void)payload;
	atomic_store(&f->pg_changed, true);
}

/* (Re)connected: changes made meanwhile were not announced. */
static void on_pg_reset(void *ctx)
{
	on_pg_change(ctx, NULL);
}

int sg_faults_open_pg(struct sg_pg *pg, struct sg_faults **f_r, const char **error_r)
{
	struct sg_faults *f = sg_calloc(1, sizeof(*f));
	f->pg = pg;
	pthread_mutex_init(&f->db_lock, NULL);
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->stop_lock, NULL);
	pthread_cond_init(&f->stop_cond, NULL);
	/* a CLI command has no listener: the subscription then never fires */
	if (sg_pg_subscribe(pg, SG_FAULTS_CHANNEL, on_pg_change, on_pg_reset, f) < 0) {
		sg_set_err(error_r, "cannot subscribe to the faults channel");
		sg_faults_close(&f);
		return -1;
	}
	sg_faults_reload(f);
	if (pthread_create(&f->thread, NULL, poll_thread, f) != 0) {
		sg_set_err(error_r, "cannot start the faults thread");
		sg_faults_close(&f);
		return -1;
	}
	f->thread_started = true;
	*f_r = f;
	return 0;
}

void sg_faults_close(struct sg_faults **fp)
{
	struct sg_faults *f = *fp;
	if (f == NULL)
		return;
	*fp = NULL;
	if (f->thread_started) {
		pthread_mutex_lock(&f->stop_lock);
		f->stopping = true;
		pthread_cond_signal(&f->stop_cond);
		pthread_mutex_unlock(&f->stop_lock);
		pthread_join(f->thread, NULL);
	}
	if (f->db != NULL || f->pg != NULL)
		persist_counters_locked(f);
	sqlite3_close(f->db);
	pthread_mutex_destroy(&f->db_lock);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->stop_lock);
	pthread_cond_destroy(&f->stop_cond);
	free(f->rules);
	free(f->path);
	free(f);
}

/* ---- the hot path ---- */

static bool chance(double p)
{
	if (p >= 1.0)
		return true;
	if (p <= 0.0)
		return false;
	uint64_t x;
	sg_random(&x, sizeof(x));
	return (double)(x >> 11) * (1.0 / 9007199254740992.0) < p;
}

static void check(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
		  const char *login, bool scoped_only, struct sg_fault_action *out);

void sg_faults_check(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
		     const char *login, struct sg_fault_action *out)
{
	check(f, stage, listener, login, false, out);
}

void sg_faults_check_scoped(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
			    const char *login, struct sg_fault_action *out)
{
	check(f, stage, listener, login, true, out);
}

static void check(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
		  const char *login, bool scoped_only, struct sg_fault_action *out)
{
	memset(out, 0, sizeof(*out));
	out->kind = SG_FAULT_NONE;
	if (f == NULL || atomic_load_explicit(&f->nrules_fast, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->nrules; i++) {
		struct sg_fault_rule *r = &f->rules[i];
		if (r->stage != stage || (scoped_only && r->login[0] == '\0'))
			continue;
		if (r->listener[0] != '\0' && (listener == NULL || strcmp(r->listener, listener) != 0))
			continue;
		/* one rule for logins everywhere: exact, on the canonical form */
		if (r->login[0] != '\0' && (login == NULL || !sg_faults_login_eq(r->login, login)))
			continue;
		bool fire;
		switch (r->when) {
		case SG_FAULT_TIMES:
			if (r->fired >= r->n)
				continue; /* used up: does not count as a match */
			r->matched++;
			fire = true;
			break;
		case SG_FAULT_EVERY:
			r->matched++;
			fire = r->n > 0 && r->matched % r->n == 0;
			break;
		case SG_FAULT_PROBABILITY:
			r->matched++;
			fire = chance(r->probability);
			break;
		default:
			r->matched++;
			fire = true;
			break;
		}
		f->dirty = true;
		if (fire) {
			r->fired++;
			*out = r->action;
			out->rule_id = r->id;
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
}

/* ---- administration ---- */

void sg_faults_login_canon(const char *in, char *out, size_t size)
{
	if (in == NULL)
		in = "";
	if (out != in)
		sg_strlcpy(out, in, size);
	char *at = strrchr(out, '@');
	if (at != NULL)
		sg_lower(at + 1);
}

bool sg_faults_login_eq(const char *a, const char *b)
{
	char ca[256], cb[256];
	sg_faults_login_canon(a, ca, sizeof(ca));
	sg_faults_login_canon(b, cb, sizeof(cb));
	return strcmp(ca, cb) == 0;
}

/* count(*) of the rules matching where (db_lock held); -1 on error. */
static long long count_rules(struct sg_faults *f, const char *where, const char *arg)
{
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM faults WHERE %s", where);
	sqlite3_stmt *st = NULL;
	long long n = -1;
	if (sqlite3_prepare_v2(f->db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (arg != NULL)
			sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return n;
}

int sg_faults_add(struct sg_faults *f, const struct sg_fault_rule *r, const char *origin,
		  long *id_r, const char **error_r)
{
	if (sg_faults_validate(r, error_r) < 0)
		return -1;
	if (f->pg != NULL) {
		if (sg_faults_pg_add(f->pg, r, origin, id_r, error_r) < 0)
			return -1;
		sg_faults_reload(f);
		return 0;
	}
	pthread_mutex_lock(&f->db_lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	const char *org = origin != NULL ? origin : "cli";
	struct sg_fault_rule canon = *r;
	sg_faults_login_canon(r->login, canon.login, sizeof(canon.login));
	r = &canon;
	bool account = strcmp(org, "account") == 0;
	if (account && r->login[0] == '\0') {
		sg_set_err(error_r, "a rule added by an account must be scoped to its login");
		goto out;
	}
	long long n_org = count_rules(f, strcmp(org, "config") == 0 ? "origin = 'config'"
					  : account ? "origin = 'account'"
						    : "origin NOT IN ('config', 'account')",
				      NULL);
	long long limit = strcmp(org, "config") == 0 ? MAX_RULES_CONFIG
			  : account ? MAX_RULES_ACCOUNTS : MAX_RULES_ADMIN;
	if (n_org < 0) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	if (n_org >= limit) {
		sg_set_err(error_r, sg_errf("too many fault rules of origin %s (%lld)", org, limit));
		goto out;
	}
	if (account && count_rules(f, "origin = 'account' AND login = ?", r->login) >=
			       MAX_RULES_PER_ACCOUNT) {
		sg_set_err(error_r, sg_errf("an account may have at most %d fault rules",
					    MAX_RULES_PER_ACCOUNT));
		goto out;
	}
	if (sqlite3_prepare_v2(f->db,
			       "INSERT INTO faults(stage, listener, login, kind, code, enhanced, text,"
			       " delay_ms, mode, n, probability, created, origin)"
			       " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
			       -1, &st, NULL) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	sqlite3_bind_text(st, 1, sg_fault_stage_name(r->stage), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->listener, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, r->login, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, sg_fault_kind_name(r->action.kind), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, (int)r->action.code);
	sqlite3_bind_text(st, 6, r->action.enhanced, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, r->action.text, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 8, (int)r->action.delay_ms);
	sqlite3_bind_text(st, 9, sg_fault_when_name(r->when), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 10, r->n);
	sqlite3_bind_double(st, 11, r->when == SG_FAULT_PROBABILITY ? r->probability : 1.0);
	sqlite3_bind_int64(st, 12, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(st, 13, org, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	if (id_r != NULL)
		*id_r = (long)sqlite3_last_insert_rowid(f->db);
	reload_locked(f);
	ret = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&f->db_lock);
	return ret;
}

int sg_faults_add_spec(struct sg_faults *f, const char *spec, const char **error_r)
{
	struct sg_fault_rule r;
	if (sg_faults_parse_spec(spec, &r, error_r) < 0)
		return -1;
	return sg_faults_add(f, &r, "config", NULL, error_r);
}

int sg_faults_delete(struct sg_faults *f, long id, const char **error_r)
{
	if (f->pg != NULL) {
		int d = sg_faults_pg_delete(f->pg, id, error_r);
		if (d >= 0)
			sg_faults_reload(f);
		return d;
	}
	pthread_mutex_lock(&f->db_lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(f->db, "DELETE FROM faults WHERE id = ?", -1, &st, NULL) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	ret = sqlite3_changes(f->db) > 0 ? 1 : 0;
	reload_locked(f);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&f->db_lock);
	return ret;
}

int sg_faults_clear(struct sg_faults *f, const char *origin, size_t *n_r, const char **error_r)
{
	if (f->pg != NULL) {
		if (sg_faults_pg_clear(f->pg, origin, n_r, error_r) < 0)
			return -1;
		sg_faults_reload(f);
		return 0;
	}
	pthread_mutex_lock(&f->db_lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(f->db, origin != NULL ? "DELETE FROM faults WHERE origin = ?"
						     : "DELETE FROM faults",
			       -1, &st, NULL) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	if (origin != NULL)
		sqlite3_bind_text(st, 1, origin, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sg_set_err(error_r, sg_errf("faults: %s", sqlite3_errmsg(f->db)));
		goto out;
	}
	if (n_r != NULL)
		*n_r = (size_t)sqlite3_changes(f->db);
	reload_locked(f);
	ret = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&f->db_lock);
	return ret;
}

int sg_faults_list(struct sg_faults *f, struct sg_fault_rule **rules_r, size_t *n_r,
		   const char **error_r)
{
	pthread_mutex_lock(&f->db_lock);
	reload_locked(f);
	pthread_mutex_unlock(&f->db_lock);
	pthread_mutex_lock(&f->lock);
	*n_r = f->nrules;
	*rules_r = NULL;
	if (f->nrules > 0) {
		*rules_r = sg_malloc(f->nrules * sizeof(**rules_r));
		memcpy(*rules_r, f->rules, f->nrules * sizeof(**rules_r));
	}
	pthread_mutex_unlock(&f->lock);
	(void)error_r;
	return 0;
}
