/*
 * cred_pg.c: the credential store (cred.h) on PostgreSQL, for several
 * smtpgate nodes sharing one database. The schema (pg.c, migration 1) is the
 * SQLite one: accounts, verifiers (sg_verifier_format text), addresses, and
 * the change generation in sg_meta.
 *
 * Round trips: a lookup is one query (the account and the wanted verifier in
 * one join). Every change bumps the generation and sends NOTIFY sg_cred
 * with the new value in its own transaction (delivered at commit); every
 * node LISTENs (pg.h) and keeps the generation in memory, so the auth cache
 * check costs no round trip: a cached success is one of zero round trips, a
 * full check one. While the LISTEN connection is down the generation is read
 * from the database on each check instead (one more round trip), so a
 * change made meanwhile is never missed.
 *
 * Any database error is -1 (cred.h: a temporary failure, 454), never "not
 * found".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/cred.h"
#include "store/cred_int.h"
#include "store/pg.h"
#include "store/verifier.h"

#define CHANNEL "sg_cred"

struct cred_pg {
	struct sg_cred_store base;    /* first: the store seam (cred_int.h) */
	struct sg_pg *pg;
	atomic_uint_fast64_t generation;
	atomic_bool have_generation;
	atomic_uint_fast64_t round_trips; /* this store's queries (benchmark figures) */
	/* answers of the read queries, valid for one generation (rcache_*) */
	pthread_mutex_t rlock;
	struct rslot *rcache;
};

#define PGS(b) ((struct cred_pg *)(b))

static PGresult *cq(struct cred_pg *s, PGconn *c, const char *sql, int n, const char *const *params)
{
	atomic_fetch_add(&s->round_trips, 1);
	return sg_pg_exec(s->pg, c, sql, n, params);
}

static const struct sg_cred_ops pg_ops;

/* ---- generation ---- */

static int read_generation(struct cred_pg *s, uint64_t *gen)
{
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL)
		return -1;
	PGresult *r = cq(s, c, "SELECT value FROM sg_meta WHERE key = 'generation'", 0, NULL);
	int ret = -1;
	if (r != NULL && PQntuples(r) == 1 && sg_parse_u64(PQgetvalue(r, 0, 0), 0, UINT64_MAX, gen) == 0)
		ret = 0;
	PQclear(r);
	sg_pg_put(s->pg, c);
	return ret;
}

static void raise_generation(struct cred_pg *s, uint64_t g)
{
	uint64_t cur = atomic_load(&s->generation);
	while (cur < g && !atomic_compare_exchange_weak(&s->generation, &cur, g))
		;
}

static void on_notify(void *ctx, const char *payload)
{
	struct cred_pg *s = ctx;
	uint64_t g;
	if (payload != NULL && sg_parse_u64(payload, 0, UINT64_MAX, &g) == 0)
		raise_generation(s, g);
	else
		raise_generation(s, atomic_load(&s->generation) + 1);
}

static void on_reset(void *ctx)
{
	struct cred_pg *s = ctx;
	uint64_t g;
	if (read_generation(s, &g) == 0) {
		raise_generation(s, g);
		atomic_store(&s->have_generation, true);
	} else {
		atomic_store(&s->have_generation, false);
	}
}

static int pg_generation(struct sg_cred_store *base, uint64_t *gen)
{
	struct cred_pg *s = PGS(base);
	if (sg_pg_listening(s->pg) && atomic_load(&s->have_generation)) {
		*gen = atomic_load(&s->generation);
		return 0;
	}
	if (read_generation(s, gen) < 0)
		return -1;
	raise_generation(s, *gen);
	return 0;
}

static int pg_ping(struct sg_cred_store *base)
{
	struct cred_pg *s = PGS(base);
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL)
		return -1;
	PGresult *r = sg_pg_exec(s->pg, c, "SELECT 1", 0, NULL); /* not an AUTH round trip */
	int ret = r != NULL ? 0 : -1;
	PQclear(r);
	sg_pg_put(s->pg, c);
	return ret;
}

/* ---- the read cache ----
 * Lookups, address ownership, owners and local domains are answered from
 * memory while the generation they were read under is current and the
 * node hears the change notifications (so any change on any node makes
 * them stale at once). Only then: a node that cannot vouch for the
 * generation asks the database every time. This keeps the round trips
 * per successful AUTH at one (zero with the auth cache), and the MAIL /
 * RCPT checks, which the session runs on its event loop, off the network
 * for every address seen before. Direct-mapped, fixed size; verifiers are
 * wiped when replaced. */

#define RSLOTS 1024

static int raw_lookup(struct sg_cred_store *base, const char *login, enum sg_cred_kind kind,
		      struct sg_account *acct, struct sg_verifier *v);
static int raw_owns_address(struct sg_cred_store *base, const char *login, const char *address);
static int raw_find_owner(struct sg_cred_store *base, const char *address, char *login_r, size_t size);
static int raw_domain_is_local(struct sg_cred_store *base, const char *domain);

struct rslot {
	bool used;
	uint64_t gen;
	uint64_t hash;
	char key[600];
	int ret;
	struct sg_account acct;
	struct sg_verifier v;
	char text[256];
};

static bool cacheable_gen(struct cred_pg *s, uint64_t *gen)
{
	if (!sg_pg_listening(s->pg) || !atomic_load(&s->have_generation))
		return false;
	*gen = atomic_load(&s->generation);
	return true;
}

static uint64_t fnv(const char *k)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *k != '\0'; k++) {
		h ^= (unsigned char)*k;
		h *= 1099511628211ULL;
	}
	return h;
}

/* true (and *out copied) on a hit */
static bool rcache_get(struct cred_pg *s, const char *key, uint64_t gen, struct rslot *out)
{
	uint64_t h = fnv(key);
	bool hit = false;
	pthread_mutex_lock(&s->rlock);
	struct rslot *e = &s->rcache[h % RSLOTS];
	if (e->used && e->hash == h && e->gen == gen && strcmp(e->key, key) == 0) {
		*out = *e;
		hit = true;
	}
	pthread_mutex_unlock(&s->rlock);
	return hit;
}

static void rcache_put(struct cred_pg *s, const char *key, uint64_t gen, const struct rslot *val)
{
	if (strlen(key) >= sizeof(val->key))
		return;
	uint64_t h = fnv(key);
	pthread_mutex_lock(&s->rlock);
	struct rslot *e = &s->rcache[h % RSLOTS];
	sg_wipe(e, sizeof(*e));
	*e = *val;
	e->used = true;
	e->gen = gen;
	e->hash = h;
	sg_strlcpy(e->key, key, sizeof(e->key));
	pthread_mutex_unlock(&s->rlock);
}

static int pg_lookup(struct sg_cred_store *base, const char *login, enum sg_cred_kind kind,
		     struct sg_account *acct, struct sg_verifier *v)
{
	struct cred_pg *s = PGS(base);
	uint64_t gen;
	if (login == NULL || !cacheable_gen(s, &gen))
		return raw_lookup(base, login, kind, acct, v);
	char key[600];
	snprintf(key, sizeof(key), "L\n%d\n%s", v != NULL ? (int)kind : 0, login);
	struct rslot r;
	memset(&r, 0, sizeof(r));
	if (rcache_get(s, key, gen, &r)) {
		if (acct != NULL && r.ret == 1)
			*acct = r.acct;
		if (v != NULL)
			*v = r.v;
		int ret = r.ret;
		sg_wipe(&r, sizeof(r));
		return ret;
	}
	r.ret = raw_lookup(base, login, kind, &r.acct, v != NULL ? &r.v : NULL);
	if (r.ret >= 0)
		rcache_put(s, key, gen, &r);
	if (acct != NULL && r.ret == 1)
		*acct = r.acct;
	if (v != NULL)
		*v = r.v;
	int ret = r.ret;
	sg_wipe(&r, sizeof(r));
	return ret;
}

static int pg_owns_address(struct sg_cred_store *base, const char *login, const char *address)
{
	struct cred_pg *s = PGS(base);
	uint64_t gen;
	if (login == NULL || address == NULL || !cacheable_gen(s, &gen))
		return raw_owns_address(base, login, address);
	char key[600];
	snprintf(key, sizeof(key), "O\n%s\n%s", login, address);
	struct rslot r;
	memset(&r, 0, sizeof(r));
	if (rcache_get(s, key, gen, &r))
		return r.ret;
	r.ret = raw_owns_address(base, login, address);
	if (r.ret >= 0)
		rcache_put(s, key, gen, &r);
	return r.ret;
}

static int pg_find_owner(struct sg_cred_store *base, const char *address, char *login_r, size_t size)
{
	struct cred_pg *s = PGS(base);
	uint64_t gen;
	if (address == NULL || !cacheable_gen(s, &gen))
		return raw_find_owner(base, address, login_r, size);
	char key[600];
	snprintf(key, sizeof(key), "F\n%s", address);
	struct rslot r;
	memset(&r, 0, sizeof(r));
	if (!rcache_get(s, key, gen, &r)) {
		r.ret = raw_find_owner(base, address, r.text, sizeof(r.text));
		if (r.ret < 0)
			return -1;
		rcache_put(s, key, gen, &r);
	}
	if (r.ret == 1 && !sg_strlcpy(login_r, r.text, size))
		return -1;
	return r.ret;
}

static int pg_domain_is_local(struct sg_cred_store *base, const char *domain)
{
	struct cred_pg *s = PGS(base);
	uint64_t gen;
	if (domain == NULL || !cacheable_gen(s, &gen))
		return raw_domain_is_local(base, domain);
	char key[600];
	snprintf(key, sizeof(key), "D\n%s", domain);
	struct rslot r;
	memset(&r, 0, sizeof(r));
	if (rcache_get(s, key, gen, &r))
		return r.ret;
	r.ret = raw_domain_is_local(base, domain);
	if (r.ret >= 0)
		rcache_put(s, key, gen, &r);
	return r.ret;
}

int sg_cred_open_pg(struct sg_pg *pg, struct sg_cred_store **store_r, const char **error_r)
{
	*store_r = NULL;
	int v = sg_pg_schema_version(pg);
	if (v < 0) {
		sg_set_err(error_r, "cannot reach PostgreSQL");
		return -1;
	}
	if (v < SG_PG_SCHEMA_VERSION) {
		sg_set_err(error_r, sg_errf("the database schema is at version %d, this smtpgate needs %d: "
					    "run `smtpgate db migrate`", v, SG_PG_SCHEMA_VERSION));
		return -1;
	}
	struct cred_pg *s = sg_calloc(1, sizeof(*s));
	s->base.ops = &pg_ops;
	s->pg = pg;
	pthread_mutex_init(&s->rlock, NULL);
	s->rcache = sg_calloc(RSLOTS, sizeof(*s->rcache));
	uint64_t g;
	if (read_generation(s, &g) == 0)
		atomic_store(&s->generation, g);
	/* the listener (if the caller starts it) keeps the generation current */
	sg_pg_subscribe(pg, CHANNEL, on_notify, on_reset, s);
	*store_r = &s->base;
	return 0;
}

static void pg_close(struct sg_cred_store *base)
{
	struct cred_pg *s = PGS(base);
	if (sg_pg_served(s->pg))
		sg_log(SG_INFO, "pg_stats", "store=cred round_trips=%llu",
		       (unsigned long long)atomic_load(&s->round_trips));
	sg_wipe(s->rcache, RSLOTS * sizeof(*s->rcache));
	free(s->rcache);
	pthread_mutex_destroy(&s->rlock);
	free(s);
}

/* ---- lookups ---- */

static bool is_true(const char *v)
{
	return v != NULL && v[0] == 't';
}

static int raw_lookup(struct sg_cred_store *base, const char *login, enum sg_cred_kind kind,
		     struct sg_account *acct, struct sg_verifier *v)
{
	struct cred_pg *s = PGS(base);
	char norm[512];
	if (v != NULL)
		v->kind = SG_CRED_NONE;
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm)) ||
	    sg_cred_validate_login(norm, NULL) != 0)
		return 0;
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL)
		return -1;
	const char *kname = kind != SG_CRED_NONE && v != NULL ? sg_cred_kind_name(kind) : "";
	const char *params[2] = {norm, kname};
	PGresult *r = cq(s, c,
				 "SELECT a.id, a.login, a.disabled, v.value FROM accounts a"
				 " LEFT JOIN verifiers v ON v.account_id = a.id AND v.kind = $2"
				 " WHERE a.login = $1",
				 2, params);
	sg_pg_put(s->pg, c);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return 0;
	}
	struct sg_account a = {0};
	uint64_t id = 0;
	sg_parse_u64(PQgetvalue(r, 0, 0), 0, INT64_MAX, &id);
	a.id = (int64_t)id;
	sg_strlcpy(a.login, PQgetvalue(r, 0, 1), sizeof(a.login));
	a.disabled = is_true(PQgetvalue(r, 0, 2));
	int ret = 1;
	if (kname[0] != '\0' && !PQgetisnull(r, 0, 3)) {
		char *text = PQgetvalue(r, 0, 3);
		if (sg_verifier_parse(kind, text, v) != 0) {
			sg_log(SG_ERROR, "cred_db", "corrupt verifier account_id=%lld kind=%s",
			       (long long)a.id, kname);
			ret = -1;
		}
		sg_wipe(text, strlen(text));
	}
	PQclear(r);
	if (acct != NULL && ret == 1)
		*acct = a;
	return ret;
}

/* One query, one text column, at most one row: 1 (copied) / 0 / -1. */
static int query_text(struct cred_pg *s, const char *sql, int n, const char *const *params,
		      char *out, size_t size)
{
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL)
		return -1;
	PGresult *r = cq(s, c, sql, n, params);
	sg_pg_put(s->pg, c);
	if (r == NULL)
		return -1;
	int ret = PQntuples(r) == 0 ? 0 : 1;
	if (ret == 1 && out != NULL && !sg_strlcpy(out, PQgetvalue(r, 0, 0), size))
		ret = -1;
	PQclear(r);
	return ret;
}

static bool norm_address(const char *address, char *out, size_t size)
{
	return address != NULL && sg_cred_validate_address(address, NULL) == 0 &&
	       sg_cred_norm_domain(address, out, size);
}

static int raw_owns_address(struct sg_cred_store *base, const char *login, const char *address)
{
	struct cred_pg *s = PGS(base);
	char addr[512], lnorm[512];
	if (!norm_address(address, addr, sizeof(addr)) || login == NULL ||
	    !sg_cred_norm_domain(login, lnorm, sizeof(lnorm)))
		return 0;
	if (strcmp(addr, lnorm) == 0 && sg_cred_login_domain(lnorm) != NULL) {
		struct sg_account a;
		return raw_lookup(base, lnorm, SG_CRED_NONE, &a, NULL);
	}
	char catchall[512];
	snprintf(catchall, sizeof(catchall), "@%s", sg_cred_addr_domain(addr));
	const char *p[3] = {lnorm, addr, catchall};
	return query_text(s, "SELECT 1 FROM addresses JOIN accounts ON accounts.id = addresses.account_id"
			     " WHERE accounts.login = $1 AND addresses.address IN ($2, $3) LIMIT 1",
			  3, p, NULL, 0);
}

static int raw_find_owner(struct sg_cred_store *base, const char *address, char *login_r, size_t size)
{
	struct cred_pg *s = PGS(base);
	char addr[512];
	if (!norm_address(address, addr, sizeof(addr)) || addr[0] == '@')
		return 0;
	char catchall[512];
	snprintf(catchall, sizeof(catchall), "@%s", sg_cred_addr_domain(addr));
	const char *p[2] = {addr, catchall};
	/* exact address, then a login equal to it, then the @domain catch-all */
	return query_text(s,
			  "SELECT login FROM ("
			  " SELECT 1 AS o, a.login FROM addresses d JOIN accounts a ON a.id = d.account_id"
			  "  WHERE d.address = $1"
			  " UNION ALL SELECT 2, login FROM accounts WHERE login = $1"
			  " UNION ALL SELECT 3, a.login FROM addresses d JOIN accounts a ON a.id = d.account_id"
			  "  WHERE d.address = $2) t ORDER BY o LIMIT 1",
			  2, p, login_r, size);
}

static int raw_domain_is_local(struct sg_cred_store *base, const char *domain)
{
	struct cred_pg *s = PGS(base);
	char d[300];
	if (domain == NULL || domain[0] == '\0' || !sg_strlcpy(d, domain, sizeof(d)))
		return 0;
	sg_lower(d);
	const char *p[1] = {d};
	return query_text(s, "SELECT 1 WHERE EXISTS (SELECT 1 FROM addresses WHERE domain = $1)"
			     " OR EXISTS (SELECT 1 FROM accounts WHERE domain = $1)",
			  1, p, NULL, 0);
}

/* ---- administration ---- */

static const char *db_error(PGconn *c)
{
	char msg[300];
	return sg_errf("database error: %s", sg_log_value(c != NULL ? PQerrorMessage(c) : "no connection",
							   msg, sizeof(msg)));
}

static PGconn *begin_write(struct cred_pg *s, const char **error_r)
{
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL) {
		sg_set_err(error_r, "cannot connect to PostgreSQL");
		return NULL;
	}
	PGresult *r = cq(s, c, "BEGIN", 0, NULL);
	if (r == NULL) {
		sg_set_err(error_r, db_error(c));
		sg_pg_put(s->pg, c);
		return NULL;
	}
	PQclear(r);
	return c;
}

/* Bump the generation, announce it (NOTIFY goes out at COMMIT), commit; or
 * roll back. */
static int end_write(struct cred_pg *s, PGconn *c, int ret, const char **error_r)
{
	PGresult *r = NULL;
	if (ret == 0) {
		r = cq(s, c,
			       "WITH g AS (UPDATE sg_meta SET value = value + 1 WHERE key = 'generation'"
			       " RETURNING value) SELECT pg_notify('" CHANNEL "', value::text), value FROM g",
			       0, NULL);
		uint64_t g = 0;
		if (r == NULL || PQntuples(r) != 1 || sg_parse_u64(PQgetvalue(r, 0, 1), 0, UINT64_MAX, &g) < 0) {
			sg_set_err(error_r, db_error(c));
			ret = -1;
		}
		PQclear(r);
		if (ret == 0) {
			r = cq(s, c, "COMMIT", 0, NULL);
			if (r == NULL) {
				sg_set_err(error_r, db_error(c));
				ret = -1;
			} else {
				raise_generation(s, g);
			}
			PQclear(r);
		}
	}
	if (ret != 0 && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	sg_pg_put(s->pg, c);
	return ret;
}

/* id of the account with this normalised login: 1/0/-1 */
static int account_id(struct cred_pg *s, PGconn *c, const char *login, char *id, size_t size)
{
	const char *p[1] = {login};
	PGresult *r = cq(s, c, "SELECT id FROM accounts WHERE login = $1", 1, p);
	if (r == NULL)
		return -1;
	int ret = PQntuples(r) > 0 ? 1 : 0;
	if (ret == 1 && id != NULL)
		sg_strlcpy(id, PQgetvalue(r, 0, 0), size);
	PQclear(r);
	return ret;
}

static int write_verifiers(struct cred_pg *s, PGconn *c, const char *id, const struct sg_cred_derived *d)
{
	const char *p1[1] = {id};
	PGresult *r = cq(s, c, "DELETE FROM verifiers WHERE account_id = $1", 1, p1);
	if (r == NULL)
		return -1;
	PQclear(r);
	const char *p[1 + 2 * SG_CRED_N_KINDS];
	p[0] = id;
	for (size_t i = 0; i < SG_CRED_N_KINDS; i++) {
		p[1 + 2 * i] = sg_cred_kind_name(sg_cred_all_kinds[i]);
		p[2 + 2 * i] = d->text[i];
	}
	r = cq(s, c,
		       "INSERT INTO verifiers(account_id, kind, value) VALUES"
		       " ($1, $2, $3), ($1, $4, $5), ($1, $6, $7), ($1, $8, $9), ($1, $10, $11)",
		       1 + 2 * SG_CRED_N_KINDS, p);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

static int touch(struct cred_pg *s, PGconn *c, const char *id)
{
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)sg_time());
	const char *p[2] = {id, now};
	PGresult *r = cq(s, c, "UPDATE accounts SET updated = $2 WHERE id = $1", 2, p);
	PQclear(r);
	return r != NULL ? 0 : -1;
}

static int pg_add(struct sg_cred_store *base, const char *login, const char *password,
		  const struct sg_cred_params *p, const char **error_r)
{
	struct cred_pg *s = PGS(base);
	char norm[512];
	if (sg_cred_validate_login(login, error_r) != 0)
		return -1;
	sg_cred_norm_domain(login, norm, sizeof(norm));
	struct sg_cred_derived *d = sg_cred_derive_all(password, p, error_r);
	if (d == NULL)
		return -1;
	PGconn *c = begin_write(s, error_r);
	if (c == NULL) {
		sg_cred_derived_wipe(d);
		return -1;
	}
	int ret = -1;
	int r = account_id(s, c, norm, NULL, 0);
	if (r != 0) {
		sg_set_err(error_r, r > 0 ? sg_errf("account '%s' already exists", norm) : db_error(c));
		goto out;
	}
	const char *pa[1] = {norm};
	PGresult *res = cq(s, c, "SELECT 1 FROM addresses WHERE address = $1", 1, pa);
	if (res == NULL || PQntuples(res) > 0) {
		sg_set_err(error_r, res != NULL ? sg_errf("'%s' is already an address of another account", norm)
					       : db_error(c));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)sg_time());
	const char *pi[3] = {norm, sg_cred_login_domain(norm), now};
	res = cq(s, c,
			 "INSERT INTO accounts(login, domain, disabled, created, updated)"
			 " VALUES ($1, $2, false, $3, $3) RETURNING id",
			 3, pi);
	if (res == NULL) {
		sg_set_err(error_r, strcmp(sg_pg_last_sqlstate(), "23505") == 0
					 ? sg_errf("account '%s' already exists", norm)
					 : db_error(c));
		goto out;
	}
	char id[32];
	sg_strlcpy(id, PQgetvalue(res, 0, 0), sizeof(id));
	PQclear(res);
	if (write_verifiers(s, c, id, d) != 0) {
		sg_set_err(error_r, db_error(c));
		goto out;
	}
	ret = 0;
out:
	sg_cred_derived_wipe(d);
	return end_write(s, c, ret, error_r);
}

static PGconn *begin_account_write(struct cred_pg *s, const char *norm, char *id, size_t size,
				   const char **error_r)
{
	PGconn *c = begin_write(s, error_r);
	if (c == NULL)
		return NULL;
	/* FOR UPDATE: a concurrent delete on another node waits for us */
	const char *p[1] = {norm};
	PGresult *r = cq(s, c, "SELECT id FROM accounts WHERE login = $1 FOR UPDATE", 1, p);
	if (r == NULL || PQntuples(r) == 0) {
		sg_set_err(error_r, r != NULL ? sg_errf("account '%s' does not exist", norm) : db_error(c));
		PQclear(r);
		(void)end_write(s, c, -1, error_r);
		return NULL;
	}
	sg_strlcpy(id, PQgetvalue(r, 0, 0), size);
	PQclear(r);
	return c;
}

static int pg_set_password(struct sg_cred_store *base, const char *login, const char *password,
			   const struct sg_cred_params *p, const char **error_r)
{
	struct cred_pg *s = PGS(base);
	char norm[512], id[32];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	struct sg_cred_derived *d = sg_cred_derive_all(password, p, error_r);
	if (d == NULL)
		return -1;
	PGconn *c = begin_account_write(s, norm, id, sizeof(id), error_r);
	if (c == NULL) {
		sg_cred_derived_wipe(d);
		return -1;
	}
	int ret = write_verifiers(s, c, id, d) == 0 && touch(s, c, id) == 0 ? 0 : -1;
	if (ret != 0)
		sg_set_err(error_r, db_error(c));
	sg_cred_derived_wipe(d);
	return end_write(s, c, ret, error_r);
}

static int pg_set_disabled(struct sg_cred_store *base, const char *login, bool disabled,
			   const char **error_r)
{
	struct cred_pg *s = PGS(base);
	char norm[512], id[32];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	PGconn *c = begin_account_write(s, norm, id, sizeof(id), error_r);
	if (c == NULL)
		return -1;
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)sg_time());
	const char *p[3] = {id, disabled ? "true" : "false", now};
	PGresult *r = cq(s, c, "UPDATE accounts SET disabled = $2, updated = $3 WHERE id = $1",
				 3, p);
	int ret = r != NULL ? 0 : -1;
	if (r == NULL)
		sg_set_err(error_r, db_error(c));
	PQclear(r);
	return end_write(s, c, ret, error_r);
}

static int pg_delete(struct sg_cred_store *base, const char *login, const char **error_r)
{
	struct cred_pg *s = PGS(base);
	char norm[512], id[32];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	PGconn *c = begin_account_write(s, norm, id, sizeof(id), error_r);
	if (c == NULL)
		return -1;
	const char *p[1] = {id};
	PGresult *r = cq(s, c, "DELETE FROM accounts WHERE id = $1", 1, p); /* cascades */
	int ret = r != NULL ? 0 : -1;
	if (r == NULL)
		sg_set_err(error_r, db_error(c));
	PQclear(r);
	return end_write(s, c, ret, error_r);
}

static int pg_add_address(struct sg_cred_store *base, const char *login, const char *address,
			  const char **error_r)
{
	struct cred_pg *s = PGS(base);
	char norm[512], addr[512], id[32];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	if (sg_cred_validate_address(address, error_r) != 0)
		return -1;
	sg_cred_norm_domain(address, addr, sizeof(addr));
	PGconn *c = begin_account_write(s, norm, id, sizeof(id), error_r);
	if (c == NULL)
		return -1;
	int ret = -1;
	const char *pa[1] = {addr};
	PGresult *r = cq(s, c,
				 "SELECT a.login FROM addresses d JOIN accounts a ON a.id = d.account_id"
				 " WHERE d.address = $1",
				 1, pa);
	if (r == NULL || PQntuples(r) > 0) {
		sg_set_err(error_r, r == NULL ? db_error(c)
				    : strcmp(PQgetvalue(r, 0, 0), norm) == 0
					    ? sg_errf("account '%s' already has address '%s'", norm, addr)
					    : sg_errf("address '%s' already belongs to account '%s'", addr,
						      PQgetvalue(r, 0, 0)));
		PQclear(r);
		goto out;
	}
	PQclear(r);
	char other[32];
	int k = account_id(s, c, addr, other, sizeof(other));
	if (k != 0) {
		sg_set_err(error_r, k < 0 ? db_error(c)
				    : strcmp(other, id) == 0 ? sg_errf("'%s' is the login itself, already owned", addr)
							     : sg_errf("address '%s' is the login of another account", addr));
		goto out;
	}
	const char *pi[3] = {id, addr, sg_cred_addr_domain(addr)};
	r = cq(s, c, "INSERT INTO addresses(account_id, address, domain) VALUES ($1, $2, $3)", 3,
		       pi);
	if (r == NULL) {
		sg_set_err(error_r, strcmp(sg_pg_last_sqlstate(), "23505") == 0
					 ? sg_errf("address '%s' already belongs to another account", addr)
					 : db_error(c));
		goto out;
	}
	PQclear(r);
	ret = touch(s, c, id);
out:
	return end_write(s, c, ret, error_r);
}

static int pg_del_address(struct sg_cred_store *base, const char *login, const char *address,
			  const char **error_r)
{
	struct cred_pg *s = PGS(base);
	char norm[512], addr[512], id[32];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	if (address == NULL || !sg_cred_norm_domain(address, addr, sizeof(addr))) {
		sg_set_err(error_r, "invalid address");
		return -1;
	}
	PGconn *c = begin_account_write(s, norm, id, sizeof(id), error_r);
	if (c == NULL)
		return -1;
	const char *p[2] = {id, addr};
	PGresult *r = cq(s, c, "DELETE FROM addresses WHERE account_id = $1 AND address = $2", 2, p);
	int ret = -1;
	if (r == NULL)
		sg_set_err(error_r, db_error(c));
	else if (strcmp(PQcmdTuples(r), "0") == 0)
		sg_set_err(error_r, sg_errf("account '%s' has no address '%s'", norm, addr));
	else
		ret = 0;
	PQclear(r);
	return end_write(s, c, ret, error_r);
}

static int pg_list(struct sg_cred_store *base,
		   void (*cb)(void *ctx, const struct sg_account *a, const char *addresses), void *ctx,
		   const char **error_r)
{
	struct cred_pg *s = PGS(base);
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL) {
		sg_set_err(error_r, "cannot connect to PostgreSQL");
		return -1;
	}
	PGresult *r = cq(s, c,
				 "SELECT a.id, a.login, a.disabled, coalesce((SELECT string_agg(address, ' '"
				 " ORDER BY address) FROM addresses WHERE account_id = a.id), '')"
				 " FROM accounts a ORDER BY a.login",
				 0, NULL);
	if (r == NULL) {
		sg_set_err(error_r, db_error(c));
		sg_pg_put(s->pg, c);
		return -1;
	}
	sg_pg_put(s->pg, c);
	for (int i = 0; i < PQntuples(r); i++) {
		struct sg_account a = {0};
		uint64_t id = 0;
		sg_parse_u64(PQgetvalue(r, i, 0), 0, INT64_MAX, &id);
		a.id = (int64_t)id;
		sg_strlcpy(a.login, PQgetvalue(r, i, 1), sizeof(a.login));
		a.disabled = is_true(PQgetvalue(r, i, 2));
		cb(ctx, &a, PQgetvalue(r, i, 3));
	}
	PQclear(r);
	return 0;
}

static const struct sg_cred_ops pg_ops = {
	.name = "postgresql",
	.close = pg_close,
	.ping = pg_ping,
	.generation = pg_generation,
	.lookup = pg_lookup,
	.owns_address = pg_owns_address,
	.find_owner = pg_find_owner,
	.domain_is_local = pg_domain_is_local,
	.add = pg_add,
	.set_password = pg_set_password,
	.set_disabled = pg_set_disabled,
	.del = pg_delete,
	.add_address = pg_add_address,
	.del_address = pg_del_address,
	.list = pg_list,
};
