/*
 * cred_sqlite.c: the credential store (cred.h) on SQLite 3.
 *
 * Connections: a mutex-protected pool; a thread takes one for the length of a
 * call and gives it back, so no connection is ever used by two threads at
 * once (SQLITE_OPEN_NOMUTEX) and there is at most one per concurrent caller.
 * WAL mode, busy_timeout 5000 ms, synchronous=NORMAL, foreign keys on.
 *
 * Schema:
 *   meta(key PRIMARY KEY, value)       'generation' counter, 'schema' version
 *   accounts(id, login UNIQUE, domain, disabled, created, updated)
 *       domain = lower-cased domain when the login is an address, else NULL
 *   verifiers(account_id, kind, value) kind = sg_cred_kind_name(), value =
 *       sg_verifier_format() text; one row per (account_id, kind)
 *   addresses(account_id, address UNIQUE, domain)
 *       address = "local@domain" or "@domain", the domain part lower-cased
 *
 * The generation lives in the database (meta) and every change increments it
 * inside its own transaction, so a change made by another process (the CLI)
 * is seen by the next sg_cred_generation() call of the server.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/cred.h"
#include "store/cred_int.h"
#include "store/verifier.h"

struct conn {
	sqlite3 *db;
	struct conn *next;
};

struct cred_sqlite {
	struct sg_cred_store base;    /* first: the store seam (cred_int.h) */
	char *path;
	pthread_mutex_t lock;
	struct conn *idle;
};

#define SQ(b) ((struct cred_sqlite *)(b))

/* ---- connections ---- */

static int exec_sql(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		sg_log(SG_ERROR, "cred_db", "error=\"%s\"", msg != NULL ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Close a connection with its kept statements (prep_cached). */
static void close_db(sqlite3 *db)
{
	sqlite3_stmt *st;
	while ((st = sqlite3_next_stmt(db, NULL)) != NULL)
		sqlite3_finalize(st);
	sqlite3_close(db);
}

static sqlite3 *conn_open(const char *path, const char **error_r)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("cannot open %s: %s", path,
				      db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	if (exec_sql(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;") != 0) {
		sg_set_err(error_r, sg_errf("cannot configure %s: %s", path, sqlite3_errmsg(db)));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static struct conn *conn_get(struct cred_sqlite *s)
{
	pthread_mutex_lock(&s->lock);
	struct conn *c = s->idle;
	if (c != NULL)
		s->idle = c->next;
	pthread_mutex_unlock(&s->lock);
	if (c != NULL)
		return c;
	const char *err = NULL;
	sqlite3 *db = conn_open(s->path, &err);
	if (db == NULL) {
		sg_log(SG_ERROR, "cred_db", "error=\"%s\"", err != NULL ? err : "open failed");
		return NULL;
	}
	c = sg_calloc(1, sizeof(*c));
	c->db = db;
	return c;
}

static void conn_put(struct cred_sqlite *s, struct conn *c)
{
	if (c == NULL)
		return;
	/* never hand back a connection stuck inside a transaction */
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_lock(&s->lock);
	c->next = s->idle;
	s->idle = c;
	pthread_mutex_unlock(&s->lock);
}

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', 0), ('schema', 1);"
	"CREATE TABLE IF NOT EXISTS accounts("
	" id INTEGER PRIMARY KEY,"
	" login TEXT NOT NULL UNIQUE,"
	" domain TEXT,"
	" disabled INTEGER NOT NULL DEFAULT 0,"
	" created INTEGER NOT NULL,"
	" updated INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS accounts_domain ON accounts(domain);"
	"CREATE TABLE IF NOT EXISTS verifiers("
	" account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
	" kind TEXT NOT NULL,"
	" value TEXT NOT NULL,"
	" PRIMARY KEY(account_id, kind));"
	"CREATE TABLE IF NOT EXISTS addresses("
	" account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
	" address TEXT NOT NULL UNIQUE,"
	" domain TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS addresses_account ON addresses(account_id);"
	"CREATE INDEX IF NOT EXISTS addresses_domain ON addresses(domain);";

static const struct sg_cred_ops sqlite_ops;

int sg_cred_open(const char *path, struct sg_cred_store **store_r, const char **error_r)
{
	*store_r = NULL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		sg_set_err(error_r, sg_errf("cannot create %s: %s", path, strerror(errno)));
		return -1;
	}
	close(fd);
	sqlite3 *db = conn_open(path, error_r);
	if (db == NULL)
		return -1;
	sqlite3_stmt *st = NULL;
	bool ok = false;
	/* journal_mode=WAL persists in the file; it cannot run inside a transaction */
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW &&
	    strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0)
		ok = true;
	sqlite3_finalize(st);
	if (!ok) {
		sg_set_err(error_r, sg_errf("cannot switch %s to WAL mode: %s", path, sqlite3_errmsg(db)));
		sqlite3_close(db);
		return -1;
	}
	if (exec_sql(db, "BEGIN IMMEDIATE") != 0 || exec_sql(db, schema_sql) != 0 ||
	    exec_sql(db, "COMMIT") != 0) {
		sg_set_err(error_r, sg_errf("cannot create the schema in %s: %s", path, sqlite3_errmsg(db)));
		sqlite3_close(db);
		return -1;
	}
	struct cred_sqlite *s = sg_calloc(1, sizeof(*s));
	s->path = sg_strdup(path);
	pthread_mutex_init(&s->lock, NULL);
	struct conn *c = sg_calloc(1, sizeof(*c));
	c->db = db;
	s->idle = c;
	s->base.ops = &sqlite_ops;
	*store_r = &s->base;
	(void)sg_cred_generation(&s->base);
	return 0;
}

static void sqlite_close(struct sg_cred_store *base)
{
	struct cred_sqlite *s = SQ(base);
	while (s->idle != NULL) {
		struct conn *c = s->idle;
		s->idle = c->next;
		close_db(c->db);
		free(c);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

/* ---- small statement helpers ---- */

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		sg_log(SG_ERROR, "cred_db", "prepare failed error=\"%s\"", sqlite3_errmsg(db));
		return NULL;
	}
	return st;
}

/* The read-only lookups of the SMTP path (RCPT, MAIL, AUTH) are prepared once per
 * connection and kept (a connection is used by one thread at a time, so this is a
 * per-thread cache): parsing the SQL was a third of a plain session's user-space
 * instructions (issue 12). prep_cached() finds a kept statement by its SQL text among
 * the connection's statements that are not running; release() resets it for the next
 * use. close_db() finalizes them before the connection closes. The verifier query is
 * not kept (its row holds key material). */
static sqlite3_stmt *prep_cached(sqlite3 *db, const char *sql)
{
	for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st != NULL; st = sqlite3_next_stmt(db, st))
		if (!sqlite3_stmt_busy(st) && sqlite3_stmt_readonly(st) && strcmp(sqlite3_sql(st), sql) == 0)
			return st;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
		sg_log(SG_ERROR, "cred_db", "prepare failed error=\"%s\"", sqlite3_errmsg(db));
		return NULL;
	}
	return st;
}

static void release(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

/* Run a statement with one or two text parameters that returns at most one
 * row with an integer column: 1 (row, *out set), 0 (no row), -1. */
static int query_int(sqlite3 *db, const char *sql, const char *a, const char *b, int64_t *out)
{
	sqlite3_stmt *st = prep_cached(db, sql);
	if (st == NULL)
		return -1;
	if (a != NULL)
		bind_text(st, 1, a);
	if (b != NULL)
		bind_text(st, 2, b);
	int rc = sqlite3_step(st), ret;
	if (rc == SQLITE_ROW) {
		if (out != NULL)
			*out = sqlite3_column_int64(st, 0);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		sg_log(SG_ERROR, "cred_db", "query failed error=\"%s\"", sqlite3_errmsg(db));
		ret = -1;
	}
	release(st);
	return ret;
}

static int bump_generation(sqlite3 *db)
{
	return exec_sql(db, "UPDATE meta SET value = value + 1 WHERE key = 'generation'");
}

/* The current generation, read from the database; -1 when it cannot be read. */
static int sqlite_generation(struct sg_cred_store *base, uint64_t *gen)
{
	struct cred_sqlite *s = SQ(base);
	struct conn *c = conn_get(s);
	if (c == NULL)
		return -1;
	int64_t g = 0;
	int r = query_int(c->db, "SELECT value FROM meta WHERE key = 'generation'", NULL, NULL, &g);
	conn_put(s, c);
	if (r != 1)
		return -1;
	*gen = (uint64_t)g;
	return 0;
}

static int sqlite_ping(struct sg_cred_store *base)
{
	uint64_t g;
	return sqlite_generation(base, &g);
}

/* ---- lookups ---- */

/* Load the account row (and one verifier) on an open connection. */
static int lookup_on(sqlite3 *db, const char *login, enum sg_cred_kind kind,
		     struct sg_account *acct, struct sg_verifier *v)
{
	char norm[512];
	if (v != NULL)
		v->kind = SG_CRED_NONE;
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm)) ||
	    sg_cred_validate_login(norm, NULL) != 0)
		return 0;
	sqlite3_stmt *st = prep_cached(db, "SELECT id, login, disabled FROM accounts WHERE login = ?1");
	if (st == NULL)
		return -1;
	bind_text(st, 1, norm);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		release(st);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sg_log(SG_ERROR, "cred_db", "lookup failed error=\"%s\"", sqlite3_errmsg(db));
		release(st);
		return -1;
	}
	struct sg_account a = {0};
	a.id = sqlite3_column_int64(st, 0);
	sg_strlcpy(a.login, (const char *)sqlite3_column_text(st, 1), sizeof(a.login));
	a.disabled = sqlite3_column_int(st, 2) != 0;
	release(st);
	if (acct != NULL)
		*acct = a;
	if (kind == SG_CRED_NONE || v == NULL)
		return 1;
	st = prep(db, "SELECT value FROM verifiers WHERE account_id = ?1 AND kind = ?2");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, a.id);
	bind_text(st, 2, sg_cred_kind_name(kind));
	rc = sqlite3_step(st);
	int ret = 1;
	if (rc == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, 0);
		if (sg_verifier_parse(kind, text, v) != 0) {
			sg_log(SG_ERROR, "cred_db", "corrupt verifier account_id=%lld kind=%s",
			       (long long)a.id, sg_cred_kind_name(kind));
			ret = -1;
		}
	} else if (rc != SQLITE_DONE) {
		sg_log(SG_ERROR, "cred_db", "lookup failed error=\"%s\"", sqlite3_errmsg(db));
		ret = -1;
	}
	sqlite3_finalize(st);
	return ret;
}

static int sqlite_lookup(struct sg_cred_store *base, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v)
{
	struct cred_sqlite *s = SQ(base);
	struct conn *c = conn_get(s);
	if (c == NULL)
		return -1;
	int ret = lookup_on(c->db, login, kind, acct, v);
	conn_put(s, c);
	return ret;
}

/* Normalise a query address; false when it cannot be a stored address. */
static bool norm_address(const char *address, char *out, size_t size)
{
	return address != NULL && sg_cred_validate_address(address, NULL) == 0 &&
	       sg_cred_norm_domain(address, out, size);
}

static int sqlite_owns_address(struct sg_cred_store *base, const char *login, const char *address)
{
	struct cred_sqlite *s = SQ(base);
	char addr[512], lnorm[512];
	if (!norm_address(address, addr, sizeof(addr)) || login == NULL ||
	    !sg_cred_norm_domain(login, lnorm, sizeof(lnorm)))
		return 0;
	if (strcmp(addr, lnorm) == 0 && sg_cred_login_domain(lnorm) != NULL) {
		/* the login itself is the address: owned if the account exists */
		struct sg_account a;
		return sqlite_lookup(base, lnorm, SG_CRED_NONE, &a, NULL);
	}
	const char *dom = sg_cred_addr_domain(addr);
	char catchall[512];
	snprintf(catchall, sizeof(catchall), "@%s", dom);
	struct conn *c = conn_get(s);
	if (c == NULL)
		return -1;
	sqlite3_stmt *st = prep_cached(c->db, "SELECT 1 FROM addresses JOIN accounts ON accounts.id = addresses.account_id"
				       " WHERE accounts.login = ?1 AND addresses.address IN (?2, ?3) LIMIT 1");
	int ret = -1;
	if (st != NULL) {
		bind_text(st, 1, lnorm);
		bind_text(st, 2, addr);
		bind_text(st, 3, catchall);
		int rc = sqlite3_step(st);
		ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
		release(st);
	}
	conn_put(s, c);
	return ret;
}

/* Text query returning one login: 1/0/-1. */
static int query_login(sqlite3 *db, const char *sql, const char *arg, char *login_r, size_t size)
{
	sqlite3_stmt *st = prep_cached(db, sql);
	if (st == NULL)
		return -1;
	bind_text(st, 1, arg);
	int rc = sqlite3_step(st), ret;
	if (rc == SQLITE_ROW) {
		ret = sg_strlcpy(login_r, (const char *)sqlite3_column_text(st, 0), size) ? 1 : -1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		sg_log(SG_ERROR, "cred_db", "query failed error=\"%s\"", sqlite3_errmsg(db));
		ret = -1;
	}
	release(st);
	return ret;
}

static int find_owner(struct sg_cred_store *base, const char *address, bool catchall_too,
		      char *login_r, size_t size)
{
	struct cred_sqlite *s = SQ(base);
	char addr[512];
	if (!norm_address(address, addr, sizeof(addr)) || addr[0] == '@')
		return 0;
	char catchall[512];
	snprintf(catchall, sizeof(catchall), "@%s", sg_cred_addr_domain(addr));
	struct conn *c = conn_get(s);
	if (c == NULL)
		return -1;
	/* exact address, then a login equal to it, then the @domain catch-all */
	static const char q_addr[] = "SELECT accounts.login FROM addresses JOIN accounts ON "
				     "accounts.id = addresses.account_id WHERE addresses.address = ?1";
	static const char q_login[] = "SELECT login FROM accounts WHERE login = ?1";
	int ret = query_login(c->db, q_addr, addr, login_r, size);
	if (ret == 0)
		ret = query_login(c->db, q_login, addr, login_r, size);
	if (ret == 0 && catchall_too)
		ret = query_login(c->db, q_addr, catchall, login_r, size);
	conn_put(s, c);
	return ret;
}

static int sqlite_find_owner(struct sg_cred_store *base, const char *address, char *login_r, size_t size)
{
	return find_owner(base, address, true, login_r, size);
}

static int sqlite_find_exact_owner(struct sg_cred_store *base, const char *address, char *login_r,
				   size_t size)
{
	return find_owner(base, address, false, login_r, size);
}

static int sqlite_domain_is_local(struct sg_cred_store *base, const char *domain)
{
	struct cred_sqlite *s = SQ(base);
	char d[300];
	if (domain == NULL || domain[0] == '\0' || !sg_strlcpy(d, domain, sizeof(d)))
		return 0;
	sg_lower(d);
	struct conn *c = conn_get(s);
	if (c == NULL)
		return -1;
	int ret = query_int(c->db, "SELECT 1 FROM addresses WHERE domain = ?1 LIMIT 1", d, NULL, NULL);
	if (ret == 0)
		ret = query_int(c->db, "SELECT 1 FROM accounts WHERE domain = ?1 LIMIT 1", d, NULL, NULL);
	conn_put(s, c);
	return ret;
}

/* ---- administration ---- */

static int write_verifiers(sqlite3 *db, int64_t id, const struct sg_cred_derived *d)
{
	sqlite3_stmt *del = prep(db, "DELETE FROM verifiers WHERE account_id = ?1");
	if (del == NULL)
		return -1;
	sqlite3_bind_int64(del, 1, id);
	int rc = sqlite3_step(del);
	sqlite3_finalize(del);
	if (rc != SQLITE_DONE)
		return -1;
	sqlite3_stmt *st = prep(db, "INSERT INTO verifiers(account_id, kind, value) VALUES (?1, ?2, ?3)");
	if (st == NULL)
		return -1;
	int ret = 0;
	for (size_t i = 0; i < SG_CRED_N_KINDS && ret == 0; i++) {
		if (d->v[i].kind == SG_CRED_NONE)
			continue; /* a legacy verifier not asked for */
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, id);
		bind_text(st, 2, sg_cred_kind_name(sg_cred_all_kinds[i]));
		bind_text(st, 3, d->text[i]);
		if (sqlite3_step(st) != SQLITE_DONE)
			ret = -1;
	}
	sqlite3_clear_bindings(st);
	sqlite3_finalize(st);
	return ret;
}

/* Start a write transaction; on failure report a store error. */
static struct conn *begin_write(struct cred_sqlite *s, const char **error_r)
{
	struct conn *c = conn_get(s);
	if (c == NULL) {
		sg_set_err(error_r, sg_errf("cannot open the credential database %s", s->path));
		return NULL;
	}
	if (exec_sql(c->db, "BEGIN IMMEDIATE") != 0) {
		sg_set_err(error_r, sg_errf("database busy or unwritable: %s", sqlite3_errmsg(c->db)));
		conn_put(s, c);
		return NULL;
	}
	return c;
}

/* Commit with a generation bump, or roll back. Returns 0/-1. */
static int end_write(struct cred_sqlite *s, struct conn *c, int ret, const char **error_r)
{
	if (ret == 0 && (bump_generation(c->db) != 0 || exec_sql(c->db, "COMMIT") != 0)) {
		sg_set_err(error_r, sg_errf("database write failed: %s", sqlite3_errmsg(c->db)));
		ret = -1;
	}
	if (ret != 0 && !sqlite3_get_autocommit(c->db))
		exec_sql(c->db, "ROLLBACK");
	conn_put(s, c);
	if (ret == 0)
		(void)sg_cred_generation(&s->base);
	return ret;
}

static const char *db_error(sqlite3 *db)
{
	return sg_errf("database error: %s", sqlite3_errmsg(db));
}

/* Account id by normalised login: 1/0/-1. */
static int account_id(sqlite3 *db, const char *login, int64_t *id)
{
	return query_int(db, "SELECT id FROM accounts WHERE login = ?1", login, NULL, id);
}

static int sqlite_add(struct sg_cred_store *base, const char *login, const char *password,
		const struct sg_cred_params *p, const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	char norm[512];
	if (sg_cred_validate_login(login, error_r) != 0)
		return -1;
	sg_cred_norm_domain(login, norm, sizeof(norm));
	struct sg_cred_derived *d = sg_cred_derive_all(password, p, error_r);
	if (d == NULL)
		return -1;
	struct conn *c = begin_write(s, error_r);
	if (c == NULL) {
		sg_cred_derived_wipe(d);
		return -1;
	}
	int ret = -1;
	int64_t id, other;
	int r = account_id(c->db, norm, &id);
	if (r != 0) {
		sg_set_err(error_r, r > 0 ? sg_errf("account '%s' already exists", norm) : db_error(c->db));
		goto out;
	}
	r = query_int(c->db, "SELECT account_id FROM addresses WHERE address = ?1", norm, NULL, &other);
	if (r != 0) {
		sg_set_err(error_r, r > 0 ? sg_errf("'%s' is already an address of another account", norm)
				       : db_error(c->db));
		goto out;
	}
	sqlite3_stmt *st = prep(c->db, "INSERT INTO accounts(login, domain, disabled, created, updated)"
				       " VALUES (?1, ?2, 0, ?3, ?3)");
	if (st == NULL) {
		sg_set_err(error_r, db_error(c->db));
		goto out;
	}
	bind_text(st, 1, norm);
	const char *dom = sg_cred_login_domain(norm);
	if (dom != NULL)
		bind_text(st, 2, dom);
	sqlite3_bind_int64(st, 3, sg_time());
	r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r != SQLITE_DONE) {
		sg_set_err(error_r, db_error(c->db));
		goto out;
	}
	id = sqlite3_last_insert_rowid(c->db);
	if (write_verifiers(c->db, id, d) != 0) {
		sg_set_err(error_r, db_error(c->db));
		goto out;
	}
	ret = 0;
out:
	sg_cred_derived_wipe(d);
	return end_write(s, c, ret, error_r);
}

/* Start a write transaction on the account with this normalised login: the
 * connection and *id, or NULL with *error_r (nothing left open). */
static struct conn *begin_account_write(struct cred_sqlite *s, const char *norm, int64_t *id,
					const char **error_r)
{
	struct conn *c = begin_write(s, error_r);
	if (c == NULL)
		return NULL;
	int r = account_id(c->db, norm, id);
	if (r != 1) {
		sg_set_err(error_r, r == 0 ? sg_errf("account '%s' does not exist", norm) : db_error(c->db));
		(void)end_write(s, c, -1, error_r);
		return NULL;
	}
	return c;
}

static int sqlite_set_password(struct sg_cred_store *base, const char *login, const char *password,
			 const struct sg_cred_params *p, const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	char norm[512];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	struct sg_cred_derived *d = sg_cred_derive_all(password, p, error_r);
	if (d == NULL)
		return -1;
	int64_t id;
	struct conn *c = begin_account_write(s, norm, &id, error_r);
	if (c == NULL) {
		sg_cred_derived_wipe(d);
		return -1;
	}
	int ret = -1;
	if (write_verifiers(c->db, id, d) != 0) {
		sg_set_err(error_r, db_error(c->db));
		goto out;
	}
	sqlite3_stmt *st = prep(c->db, "UPDATE accounts SET updated = ?2 WHERE id = ?1");
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, sg_time());
		if (sqlite3_step(st) == SQLITE_DONE)
			ret = 0;
		sqlite3_finalize(st);
	}
	if (ret != 0)
		sg_set_err(error_r, db_error(c->db));
out:
	sg_cred_derived_wipe(d);
	return end_write(s, c, ret, error_r);
}

static int sqlite_set_disabled(struct sg_cred_store *base, const char *login, bool disabled,
			 const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	char norm[512];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	struct conn *c = begin_write(s, error_r);
	if (c == NULL)
		return -1;
	int ret = -1;
	sqlite3_stmt *st = prep(c->db, "UPDATE accounts SET disabled = ?2, updated = ?3 WHERE login = ?1");
	if (st == NULL) {
		sg_set_err(error_r, db_error(c->db));
	} else {
		bind_text(st, 1, norm);
		sqlite3_bind_int(st, 2, disabled ? 1 : 0);
		sqlite3_bind_int64(st, 3, sg_time());
		if (sqlite3_step(st) != SQLITE_DONE)
			sg_set_err(error_r, db_error(c->db));
		else if (sqlite3_changes(c->db) == 0)
			sg_set_err(error_r, sg_errf("account '%s' does not exist", norm));
		else
			ret = 0;
		sqlite3_finalize(st);
	}
	return end_write(s, c, ret, error_r);
}

static int sqlite_delete(struct sg_cred_store *base, const char *login, const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	char norm[512];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	int ret = -1;
	int64_t id;
	struct conn *c = begin_account_write(s, norm, &id, error_r);
	if (c == NULL)
		return -1;
	/* explicit deletes as well as ON DELETE CASCADE, in case foreign keys
	 * were off on the connection that created the rows */
	sqlite3_stmt *st[3] = {
		prep(c->db, "DELETE FROM verifiers WHERE account_id = ?1"),
		prep(c->db, "DELETE FROM addresses WHERE account_id = ?1"),
		prep(c->db, "DELETE FROM accounts WHERE id = ?1"),
	};
	ret = 0;
	for (int i = 0; i < 3; i++) {
		if (st[i] == NULL) {
			ret = -1;
			continue;
		}
		sqlite3_bind_int64(st[i], 1, id);
		if (ret == 0 && sqlite3_step(st[i]) != SQLITE_DONE)
			ret = -1;
		sqlite3_finalize(st[i]);
	}
	if (ret != 0)
		sg_set_err(error_r, db_error(c->db));
	return end_write(s, c, ret, error_r);
}

static int sqlite_add_address(struct sg_cred_store *base, const char *login, const char *address,
			const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	char norm[512], addr[512];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	if (sg_cred_validate_address(address, error_r) != 0)
		return -1;
	sg_cred_norm_domain(address, addr, sizeof(addr));
	int64_t id, other;
	struct conn *c = begin_account_write(s, norm, &id, error_r);
	if (c == NULL)
		return -1;
	int ret = -1;
	char owner[256];
	int r = query_login(c->db,
			"SELECT accounts.login FROM addresses JOIN accounts ON accounts.id = "
			"addresses.account_id WHERE addresses.address = ?1",
			addr, owner, sizeof(owner));
	if (r != 0) {
		sg_set_err(error_r, r < 0 ? db_error(c->db)
			       : strcmp(owner, norm) == 0
				       ? sg_errf("account '%s' already has address '%s'", norm, addr)
				       : sg_errf("address '%s' already belongs to account '%s'", addr, owner));
		goto out;
	}
	r = account_id(c->db, addr, &other);
	if (r != 0) {
		sg_set_err(error_r, r < 0 ? db_error(c->db)
			       : other == id ? sg_errf("'%s' is the login itself, already owned", addr)
					     : sg_errf("address '%s' is the login of another account", addr));
		goto out;
	}
	sqlite3_stmt *st = prep(c->db, "INSERT INTO addresses(account_id, address, domain) VALUES (?1, ?2, ?3)");
	if (st == NULL) {
		sg_set_err(error_r, db_error(c->db));
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, addr);
	bind_text(st, 3, sg_cred_addr_domain(addr));
	if (sqlite3_step(st) == SQLITE_DONE)
		ret = 0;
	else
		sg_set_err(error_r, db_error(c->db));
	sqlite3_finalize(st);
	if (ret == 0) {
		st = prep(c->db, "UPDATE accounts SET updated = ?2 WHERE id = ?1");
		if (st != NULL) {
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_int64(st, 2, sg_time());
			sqlite3_step(st);
			sqlite3_finalize(st);
		}
	}
out:
	return end_write(s, c, ret, error_r);
}

static int sqlite_del_address(struct sg_cred_store *base, const char *login, const char *address,
			const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	char norm[512], addr[512];
	if (login == NULL || !sg_cred_norm_domain(login, norm, sizeof(norm))) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	if (address == NULL || !sg_cred_norm_domain(address, addr, sizeof(addr))) {
		sg_set_err(error_r, "invalid address");
		return -1;
	}
	int ret = -1;
	int64_t id;
	struct conn *c = begin_account_write(s, norm, &id, error_r);
	if (c == NULL)
		return -1;
	sqlite3_stmt *st = prep(c->db, "DELETE FROM addresses WHERE account_id = ?1 AND address = ?2");
	if (st == NULL) {
		sg_set_err(error_r, db_error(c->db));
		return end_write(s, c, -1, error_r);
	}
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, addr);
	if (sqlite3_step(st) != SQLITE_DONE)
		sg_set_err(error_r, db_error(c->db));
	else if (sqlite3_changes(c->db) == 0)
		sg_set_err(error_r, sg_errf("account '%s' has no address '%s'", norm, addr));
	else
		ret = 0;
	sqlite3_finalize(st);
	return end_write(s, c, ret, error_r);
}

static int sqlite_list(struct sg_cred_store *base,
		 void (*cb)(void *ctx, const struct sg_account *a, const char *addresses), void *ctx,
		 const char **error_r)
{
	struct cred_sqlite *s = SQ(base);
	struct conn *c = conn_get(s);
	if (c == NULL) {
		sg_set_err(error_r, sg_errf("cannot open the credential database %s", s->path));
		return -1;
	}
	sqlite3_stmt *st = prep(c->db,
				"SELECT a.id, a.login, a.disabled,"
				" (SELECT group_concat(address, ' ') FROM"
				"   (SELECT address FROM addresses WHERE account_id = a.id ORDER BY address))"
				" FROM accounts a ORDER BY a.login");
	if (st == NULL) {
		sg_set_err(error_r, db_error(c->db));
		conn_put(s, c);
		return -1;
	}
	int rc, ret = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sg_account a = {0};
		a.id = sqlite3_column_int64(st, 0);
		sg_strlcpy(a.login, (const char *)sqlite3_column_text(st, 1), sizeof(a.login));
		a.disabled = sqlite3_column_int(st, 2) != 0;
		const char *addrs = (const char *)sqlite3_column_text(st, 3);
		cb(ctx, &a, addrs != NULL ? addrs : "");
	}
	if (rc != SQLITE_DONE) {
		sg_set_err(error_r, db_error(c->db));
		ret = -1;
	}
	sqlite3_finalize(st);
	conn_put(s, c);
	return ret;
}

static const struct sg_cred_ops sqlite_ops = {
	.name = "sqlite",
	.close = sqlite_close,
	.ping = sqlite_ping,
	.generation = sqlite_generation,
	.lookup = sqlite_lookup,
	.owns_address = sqlite_owns_address,
	.find_owner = sqlite_find_owner,
	.find_exact_owner = sqlite_find_exact_owner,
	.domain_is_local = sqlite_domain_is_local,
	.add = sqlite_add,
	.set_password = sqlite_set_password,
	.set_disabled = sqlite_set_disabled,
	.del = sqlite_delete,
	.add_address = sqlite_add_address,
	.del_address = sqlite_del_address,
	.list = sqlite_list,
};
