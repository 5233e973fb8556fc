/*
 * events.c: the auth event log (auth_events table of <data-dir>/smtpgate.db)
 * and the live event stream (events.h).
 *
 * sg_events_auth() copies the event into a bounded in-memory queue under a
 * mutex and returns; a writer thread drains the queue in batches, one
 * transaction per batch, on its own connection. When the queue is full
 * (SQLite stalled for a long time) new events are counted and dropped
 * rather than blocking the SMTP loop. The table keeps the newest
 * MAX_ROWS events. Queries use a second connection under their own mutex.
 *
 * Subscribers are called with the subscriber lock held, so unsubscribe
 * returns only when no callback of that handle runs any more.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "core/log.h"
#include "core/util.h"
#include "core/secret.h"
#include "store/events.h"
#include "store/events_int.h"
#include "store/pg.h"

#define QUEUE_MAX 10000
#define BATCH_MAX 500
#define MAX_ROWS 100000
#define OUTBOX_MAX 256     /* PostgreSQL: message events waiting to be announced */

struct subscriber {
	void (*cb)(void *ctx, const char *type, const char *json);
	void *ctx;
	bool used;
};

struct sg_events {
	char *path;
	sqlite3 *wdb;              /* writer thread only (after open) */
	sqlite3 *rdb;              /* under read_lock */
	pthread_mutex_t read_lock;

	pthread_mutex_t lock;      /* queue, seqs, stopping */
	pthread_cond_t cond;       /* writer wake-up */
	pthread_cond_t done_cond;  /* persisted_seq advanced */
	struct sg_auth_event *queue;
	size_t qhead, qlen;
	uint64_t queued_seq, persisted_seq;
	uint64_t dropped;
	bool stopping;
	pthread_t thread;
	bool thread_started;
	unsigned since_trim;

	pthread_mutex_t sub_lock;
	struct subscriber subs[SG_EVENTS_MAX_SUBSCRIBERS];

	/* store = postgresql (events_pg.c): the table is shared by every node */
	struct sg_pg *pg;
	char node[24];             /* this process, to skip its own announcements */
	char *outbox[OUTBOX_MAX];  /* JSON of message events, under lock */
	size_t out_head, out_len;
};

static void notify(struct sg_events *ev, const char *type, const char *json);

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS auth_events("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, session TEXT NOT NULL,"
	" client_ip TEXT NOT NULL, listener TEXT NOT NULL, tls INTEGER NOT NULL,"
	" tls_version TEXT NOT NULL, mech TEXT NOT NULL, login TEXT NOT NULL, result TEXT NOT NULL,"
	" reason TEXT NOT NULL, injected INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS auth_events_login ON auth_events(login, id);";

static sqlite3 *db_open(const char *path, const char **error_r)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("cannot open %s: %s", path,
				      db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
	return db;
}

/* ---- JSON ---- */

static void iso_time(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char base[32];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, size, "%s.%03dZ", base, (int)(ms % 1000));
}

char *sg_auth_event_json(const struct sg_auth_event *e, int64_t id)
{
	char when[48];
	iso_time(e->time_ms, when, sizeof(when));
	json_t *o = json_object();
	if (id > 0)
		json_object_set_new(o, "id", json_integer(id));
	json_object_set_new(o, "time_ms", json_integer(e->time_ms));
	json_object_set_new(o, "time", json_string(when));
	json_object_set_new(o, "session", json_string(e->session));
	json_object_set_new(o, "client_ip", json_string(e->client_ip));
	json_object_set_new(o, "listener", json_string(e->listener));
	json_object_set_new(o, "tls", json_boolean(e->tls));
	json_object_set_new(o, "tls_version", json_string(e->tls_version));
	json_object_set_new(o, "mechanism", json_string(e->mech));
	/* logins come from the wire: jansson refuses invalid UTF-8 */
	json_t *l = json_string(e->login);
	json_object_set_new(o, "login", l != NULL ? l : json_string("(invalid UTF-8)"));
	json_object_set_new(o, "result", json_string(e->result));
	json_object_set_new(o, "reason", json_string(e->reason));
	json_object_set_new(o, "injected", json_boolean(e->injected));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s != NULL ? s : sg_strdup("{}");
}

char *sg_msg_event_json(const struct sg_msg_event *e)
{
	char when[48];
	iso_time(e->time_ms, when, sizeof(when));
	json_t *o = json_object();
	json_object_set_new(o, "time_ms", json_integer(e->time_ms));
	json_object_set_new(o, "time", json_string(when));
	json_t *l = json_string(e->login);
	json_object_set_new(o, "login", l != NULL ? l : json_string(""));
	json_object_set_new(o, "id", json_string(e->id));
	json_object_set_new(o, "size", json_integer((json_int_t)e->size));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s != NULL ? s : sg_strdup("{}");
}

/* ---- the writer ---- */

static void write_batch(struct sg_events *ev, const struct sg_auth_event *batch, size_t n)
{
	if (ev->pg != NULL) {
		if (n > 0 && sg_events_pg_write(ev->pg, ev->node, batch, n, &ev->since_trim) < 0)
			sg_log(SG_WARN, "events", "cannot store %zu auth events in PostgreSQL", n);
		return;
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_exec(ev->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		sg_log(SG_WARN, "events", "begin failed: %s; %zu auth events lost", sqlite3_errmsg(ev->wdb), n);
		return;
	}
	if (sqlite3_prepare_v2(ev->wdb,
			       "INSERT INTO auth_events(time_ms, session, client_ip, listener, tls,"
			       " tls_version, mech, login, result, reason, injected)"
			       " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
			       -1, &st, NULL) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const struct sg_auth_event *e = &batch[i];
		sqlite3_bind_int64(st, 1, e->time_ms);
		sqlite3_bind_text(st, 2, e->session, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, e->client_ip, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, e->listener, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 5, e->tls ? 1 : 0);
		sqlite3_bind_text(st, 6, e->tls_version, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, e->mech, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 8, e->login, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 9, e->result, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 10, e->reason, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 11, e->injected ? 1 : 0);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	ev->since_trim += (unsigned)n;
	if (ev->since_trim >= 1000) {
		ev->since_trim = 0;
		sqlite3_exec(ev->wdb,
			     "DELETE FROM auth_events WHERE id <= (SELECT max(id) FROM auth_events) - 100000",
			     NULL, NULL, NULL);
	}
	if (sqlite3_exec(ev->wdb, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return;
fail:
	sg_log(SG_WARN, "events", "cannot store %zu auth events: %s", n, sqlite3_errmsg(ev->wdb));
	sqlite3_finalize(st);
	sqlite3_exec(ev->wdb, "ROLLBACK", NULL, NULL, NULL);
}

static void *writer_thread(void *arg)
{
	struct sg_events *ev = arg;
	struct sg_auth_event *batch = sg_malloc(BATCH_MAX * sizeof(*batch));
	pthread_mutex_lock(&ev->lock);
	for (;;) {
		while (ev->qlen == 0 && ev->out_len == 0 && !ev->stopping)
			pthread_cond_wait(&ev->cond, &ev->lock);
		if (ev->qlen == 0 && ev->out_len == 0 && ev->stopping)
			break;
		while (ev->out_len > 0) {
			char *json = ev->outbox[ev->out_head];
			ev->out_head = (ev->out_head + 1) % OUTBOX_MAX;
			ev->out_len--;
			pthread_mutex_unlock(&ev->lock);
			sg_events_pg_announce(ev->pg, ev->node, "message", json);
			free(json);
			pthread_mutex_lock(&ev->lock);
		}
		size_t n = 0;
		while (ev->qlen > 0 && n < BATCH_MAX) {
			batch[n++] = ev->queue[ev->qhead];
			ev->qhead = (ev->qhead + 1) % QUEUE_MAX;
			ev->qlen--;
		}
		uint64_t upto = ev->queued_seq - ev->qlen;
		pthread_mutex_unlock(&ev->lock);
		write_batch(ev, batch, n);
		pthread_mutex_lock(&ev->lock);
		ev->persisted_seq = upto;
		pthread_cond_broadcast(&ev->done_cond);
	}
	pthread_mutex_unlock(&ev->lock);
	free(batch);
	return NULL;
}

int sg_events_open(const char *data_dir, struct sg_events **ev_r, const char **error_r)
{
	struct sg_events *ev = sg_calloc(1, sizeof(*ev));
	ev->path = sg_asprintf("%s/smtpgate.db", data_dir);
	pthread_mutex_init(&ev->read_lock, NULL);
	pthread_mutex_init(&ev->lock, NULL);
	pthread_mutex_init(&ev->sub_lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	pthread_cond_init(&ev->done_cond, NULL);
	ev->queue = sg_malloc(QUEUE_MAX * sizeof(*ev->queue));
	/* A new database file is private (0600), as the credential store makes
	 * it. Only when it does not exist yet: closing any descriptor of an open
	 * SQLite file drops this process's POSIX locks on it (other connections'
	 * locks included), after which another process may delete the WAL. */
	struct stat sb;
	if (stat(ev->path, &sb) < 0 && errno == ENOENT) {
		int cfd = open(ev->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (cfd >= 0)
			close(cfd);
	}
	ev->wdb = db_open(ev->path, error_r);
	if (ev->wdb == NULL)
		goto fail;
	char *msg = NULL;
	if (sqlite3_exec(ev->wdb, schema, NULL, NULL, &msg) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("cannot create auth_events in %s: %s", ev->path,
				      msg != NULL ? msg : "?"));
		sqlite3_free(msg);
		goto fail;
	}
	ev->rdb = db_open(ev->path, error_r);
	if (ev->rdb == NULL)
		goto fail;
	if (pthread_create(&ev->thread, NULL, writer_thread, ev) != 0) {
		sg_set_err(error_r, "cannot start the events thread");
		goto fail;
	}
	ev->thread_started = true;
	*ev_r = ev;
	return 0;
fail:
	sg_events_close(&ev);
	return -1;
}

/* Another node's event, from the PostgreSQL listener thread. */
static void on_pg_event(void *ctx, const char *payload)
{
	struct sg_events *ev = ctx;
	const char *type = NULL, *json = NULL;
	char tbuf[16];
	if (payload != NULL && sg_events_pg_parse(payload, ev->node, &type, &json, tbuf, sizeof(tbuf)) == 1)
		notify(ev, type, json);
}

int sg_events_open_pg(struct sg_pg *pg, struct sg_events **ev_r, const char **error_r)
{
	struct sg_events *ev = sg_calloc(1, sizeof(*ev));
	ev->pg = pg;
	uint8_t rnd[8];
	sg_random(rnd, sizeof(rnd));
	sg_hex(rnd, sizeof(rnd), ev->node);
	pthread_mutex_init(&ev->read_lock, NULL);
	pthread_mutex_init(&ev->lock, NULL);
	pthread_mutex_init(&ev->sub_lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	pthread_cond_init(&ev->done_cond, NULL);
	ev->queue = sg_malloc(QUEUE_MAX * sizeof(*ev->queue));
	if (sg_pg_subscribe(pg, SG_EVENTS_CHANNEL, on_pg_event, NULL, ev) < 0) {
		sg_set_err(error_r, "cannot subscribe to the events channel");
		goto fail;
	}
	if (pthread_create(&ev->thread, NULL, writer_thread, ev) != 0) {
		sg_set_err(error_r, "cannot start the events thread");
		goto fail;
	}
	ev->thread_started = true;
	*ev_r = ev;
	return 0;
fail:
	sg_events_close(&ev);
	return -1;
}

void sg_events_close(struct sg_events **evp)
{
	struct sg_events *ev = *evp;
	if (ev == NULL)
		return;
	*evp = NULL;
	if (ev->thread_started) {
		pthread_mutex_lock(&ev->lock);
		ev->stopping = true;
		pthread_cond_signal(&ev->cond);
		pthread_mutex_unlock(&ev->lock);
		pthread_join(ev->thread, NULL);
	}
	if (ev->dropped > 0)
		sg_log(SG_WARN, "events", "dropped=%llu (queue full)", (unsigned long long)ev->dropped);
	while (ev->out_len > 0) {
		free(ev->outbox[ev->out_head]);
		ev->out_head = (ev->out_head + 1) % OUTBOX_MAX;
		ev->out_len--;
	}
	sqlite3_close(ev->wdb);
	sqlite3_close(ev->rdb);
	pthread_mutex_destroy(&ev->read_lock);
	pthread_mutex_destroy(&ev->lock);
	pthread_mutex_destroy(&ev->sub_lock);
	pthread_cond_destroy(&ev->cond);
	pthread_cond_destroy(&ev->done_cond);
	free(ev->queue);
	free(ev->path);
	free(ev);
}

static void notify(struct sg_events *ev, const char *type, const char *json)
{
	pthread_mutex_lock(&ev->sub_lock);
	for (size_t i = 0; i < SG_EVENTS_MAX_SUBSCRIBERS; i++)
		if (ev->subs[i].used)
			ev->subs[i].cb(ev->subs[i].ctx, type, json);
	pthread_mutex_unlock(&ev->sub_lock);
}

static bool have_subscribers(struct sg_events *ev)
{
	bool any = false;
	pthread_mutex_lock(&ev->sub_lock);
	for (size_t i = 0; i < SG_EVENTS_MAX_SUBSCRIBERS && !any; i++)
		any = ev->subs[i].used;
	pthread_mutex_unlock(&ev->sub_lock);
	return any;
}

void sg_events_auth(struct sg_events *ev, const struct sg_auth_event *e)
{
	if (ev == NULL)
		return;
	pthread_mutex_lock(&ev->lock);
	if (ev->qlen >= QUEUE_MAX) {
		ev->dropped++;
	} else {
		struct sg_auth_event *slot = &ev->queue[(ev->qhead + ev->qlen) % QUEUE_MAX];
		*slot = *e;
		/* the fields are fixed arrays filled by the producer: force termination */
		slot->session[sizeof(slot->session) - 1] = '\0';
		slot->client_ip[sizeof(slot->client_ip) - 1] = '\0';
		slot->listener[sizeof(slot->listener) - 1] = '\0';
		slot->tls_version[sizeof(slot->tls_version) - 1] = '\0';
		slot->mech[sizeof(slot->mech) - 1] = '\0';
		slot->login[sizeof(slot->login) - 1] = '\0';
		slot->result[sizeof(slot->result) - 1] = '\0';
		slot->reason[sizeof(slot->reason) - 1] = '\0';
		ev->qlen++;
		ev->queued_seq++;
		pthread_cond_signal(&ev->cond);
	}
	pthread_mutex_unlock(&ev->lock);
	if (have_subscribers(ev)) {
		char *json = sg_auth_event_json(e, 0);
		notify(ev, "auth", json);
		free(json);
	}
}

void sg_events_message(struct sg_events *ev, const struct sg_msg_event *e)
{
	if (ev == NULL || (ev->pg == NULL && !have_subscribers(ev)))
		return;
	char *json = sg_msg_event_json(e);
	notify(ev, "message", json);
	if (ev->pg != NULL) {
		/* other nodes' pages: announced by the writer thread */
		pthread_mutex_lock(&ev->lock);
		if (ev->out_len < OUTBOX_MAX) {
			ev->outbox[(ev->out_head + ev->out_len) % OUTBOX_MAX] = json;
			ev->out_len++;
			json = NULL;
			pthread_cond_signal(&ev->cond);
		}
		pthread_mutex_unlock(&ev->lock);
	}
	free(json);
}

int sg_events_subscribe(struct sg_events *ev, void (*cb)(void *ctx, const char *type, const char *json),
			void *ctx)
{
	int h = -1;
	pthread_mutex_lock(&ev->sub_lock);
	for (size_t i = 0; i < SG_EVENTS_MAX_SUBSCRIBERS; i++)
		if (!ev->subs[i].used) {
			ev->subs[i].cb = cb;
			ev->subs[i].ctx = ctx;
			ev->subs[i].used = true;
			h = (int)i;
			break;
		}
	pthread_mutex_unlock(&ev->sub_lock);
	return h;
}

void sg_events_unsubscribe(struct sg_events *ev, int handle)
{
	if (handle < 0 || handle >= SG_EVENTS_MAX_SUBSCRIBERS)
		return;
	pthread_mutex_lock(&ev->sub_lock);
	ev->subs[handle].used = false;
	ev->subs[handle].cb = NULL;
	ev->subs[handle].ctx = NULL;
	pthread_mutex_unlock(&ev->sub_lock);
}

int sg_events_flush(struct sg_events *ev, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	int ret = 0;
	pthread_mutex_lock(&ev->lock);
	uint64_t target = ev->queued_seq;
	while (ev->persisted_seq < target) {
		if (pthread_cond_timedwait(&ev->done_cond, &ev->lock, &ts) == ETIMEDOUT) {
			ret = ev->persisted_seq < target ? -1 : 0;
			break;
		}
	}
	pthread_mutex_unlock(&ev->lock);
	return ret;
}

static void col_copy(sqlite3_stmt *st, int i, char *out, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	sg_strlcpy(out, t != NULL ? (const char *)t : "", size);
}

int sg_events_query(struct sg_events *ev, const struct sg_events_filter *f,
		    struct sg_auth_event_row **rows_r, size_t *n_r, const char **error_r)
{
	*rows_r = NULL;
	*n_r = 0;
	(void)sg_events_flush(ev, 2000);
	size_t limit = f->limit == 0 ? 100 : f->limit > 1000 ? 1000 : f->limit;
	if (ev->pg != NULL)
		return sg_events_pg_query(ev->pg, f, limit, rows_r, n_r, error_r);
	bool failed = f->result != NULL && strcmp(f->result, "failed") == 0;
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT id, time_ms, session, client_ip, listener, tls, tls_version, mech, login,"
		 " result, reason, injected FROM auth_events WHERE 1"
		 "%s%s%s%s ORDER BY id DESC LIMIT ?5",
		 f->login != NULL && f->login[0] != '\0' ? " AND login = ?1" : "",
		 failed ? " AND result <> 'ok'"
			: f->result != NULL && f->result[0] != '\0' ? " AND result = ?2" : "",
		 f->before_id > 0 ? " AND id < ?3" : "", f->since_ms > 0 ? " AND time_ms >= ?4" : "");
	pthread_mutex_lock(&ev->read_lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(ev->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("auth_events: %s", sqlite3_errmsg(ev->rdb)));
		goto out;
	}
	if (f->login != NULL && f->login[0] != '\0')
		sqlite3_bind_text(st, 1, f->login, -1, SQLITE_TRANSIENT);
	if (!failed && f->result != NULL && f->result[0] != '\0')
		sqlite3_bind_text(st, 2, f->result, -1, SQLITE_TRANSIENT);
	if (f->before_id > 0)
		sqlite3_bind_int64(st, 3, f->before_id);
	if (f->since_ms > 0)
		sqlite3_bind_int64(st, 4, f->since_ms);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)limit);
	struct sg_auth_event_row *rows = sg_calloc(limit, sizeof(*rows));
	size_t n = 0;
	int rc = SQLITE_DONE;
	while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sg_auth_event_row *r = &rows[n++];
		r->id = sqlite3_column_int64(st, 0);
		r->e.time_ms = sqlite3_column_int64(st, 1);
		col_copy(st, 2, r->e.session, sizeof(r->e.session));
		col_copy(st, 3, r->e.client_ip, sizeof(r->e.client_ip));
		col_copy(st, 4, r->e.listener, sizeof(r->e.listener));
		r->e.tls = sqlite3_column_int(st, 5) != 0;
		col_copy(st, 6, r->e.tls_version, sizeof(r->e.tls_version));
		col_copy(st, 7, r->e.mech, sizeof(r->e.mech));
		col_copy(st, 8, r->e.login, sizeof(r->e.login));
		col_copy(st, 9, r->e.result, sizeof(r->e.result));
		col_copy(st, 10, r->e.reason, sizeof(r->e.reason));
		r->e.injected = sqlite3_column_int(st, 11) != 0;
	}
	if (n < limit && rc != SQLITE_DONE) {
		free(rows);
		sg_set_err(error_r, sg_errf("auth_events: %s", sqlite3_errmsg(ev->rdb)));
		goto out;
	}
	if (n == 0) {
		free(rows);
		rows = NULL;
	}
	*rows_r = rows;
	*n_r = n;
	ret = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&ev->read_lock);
	return ret;
}
