/*
 * pg.c: the PostgreSQL link (pg.h): pool, migrations, LISTEN thread.
 */
#include "store/pg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"

#define MAX_SUBS 8
#define LISTEN_RETRY_MS 500

struct pg_conn {
	PGconn *c;
	struct pg_conn *next;
};

struct pg_sub {
	char channel[64];
	void (*on_notify)(void *ctx, const char *payload);
	void (*on_reset)(void *ctx);
	void *ctx;
};

struct sg_pg {
	char *conninfo;
	unsigned pool_size;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pg_conn *idle;     /* open, free */
	unsigned out;             /* handed out */
	unsigned open;            /* open in total (idle + out) */
	atomic_uint_fast64_t round_trips;
	/* listener */
	struct pg_sub subs[MAX_SUBS];
	size_t nsubs;
	pthread_t thread;
	bool thread_started;
	bool served;              /* the listener ran: a server, not a CLI command */
	atomic_bool stop;
	atomic_bool listening;
	int wake[2];              /* pipe: wakes the listener to stop */
};

static _Thread_local char last_sqlstate[6];

const char *sg_pg_last_sqlstate(void)
{
	return last_sqlstate;
}

struct sg_pg *sg_pg_new(const char *conninfo, unsigned pool_size)
{
	struct sg_pg *pg = sg_calloc(1, sizeof(*pg));
	pg->conninfo = sg_strdup(conninfo);
	pg->pool_size = pool_size > 0 ? pool_size : 4;
	pthread_mutex_init(&pg->lock, NULL);
	pthread_cond_init(&pg->cond, NULL);
	pg->wake[0] = pg->wake[1] = -1;
	return pg;
}

void sg_pg_stop_listener(struct sg_pg *pg);

void sg_pg_free(struct sg_pg **ppg)
{
	struct sg_pg *pg = *ppg;
	if (pg == NULL)
		return;
	*ppg = NULL;
	sg_pg_stop_listener(pg);
	sg_log(SG_DEBUG, "pg_stats", "round_trips=%llu", (unsigned long long)atomic_load(&pg->round_trips));
	if (pg->wake[0] >= 0) {
		close(pg->wake[0]);
		close(pg->wake[1]);
	}
	while (pg->idle != NULL) {
		struct pg_conn *c = pg->idle;
		pg->idle = c->next;
		PQfinish(c->c);
		free(c);
	}
	pthread_cond_destroy(&pg->cond);
	pthread_mutex_destroy(&pg->lock);
	sg_wipe(pg->conninfo, strlen(pg->conninfo));
	free(pg->conninfo);
	free(pg);
}

int sg_pg_conninfo_file(const char *path, char *out, size_t size, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		sg_set_err(error_r, sg_errf("%s: %s", path, strerror(errno)));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		sg_set_err(error_r, sg_errf("%s: not a regular file", path));
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		close(fd);
		sg_set_err(error_r, sg_errf("%s: holds a password: must not be readable by group or "
					    "others (chmod 600)", path));
		return -1;
	}
	ssize_t n = read(fd, out, size - 1);
	close(fd);
	if (n < 0 || (size_t)n >= size - 1) {
		sg_wipe(out, size);
		sg_set_err(error_r, sg_errf("%s: unreadable or longer than %zu octets", path, size - 2));
		return -1;
	}
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		out[--n] = '\0';
	if (n == 0 || memchr(out, '\0', (size_t)n) != NULL) {
		sg_set_err(error_r, sg_errf("%s: empty or contains a NUL", path));
		return -1;
	}
	return 0;
}

static int pg_setup(PGconn *c)
{
	PGresult *r = PQexec(c, "SET statement_timeout = 5000; SET lock_timeout = 5000;"
				" SET client_min_messages = warning");
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return ok ? 0 : -1;
}

/* Connect with bounds: a connect timeout unless the conninfo sets one, TCP
 * keepalives, and a statement timeout for every query on it. */
static PGconn *pg_connect(const char *conninfo)
{
	static const char *const keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
					   "keepalives_count", "application_name", "dbname", NULL};
	const char *vals[] = {"3", "10", "3", "3", "smtpgate", conninfo, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL)
		sg_fatal("PQconnectdbParams: out of memory");
	if (PQstatus(c) != CONNECTION_OK) {
		char msg[256];
		sg_log(SG_ERROR, "pg", "connect failed error=%s",
		       sg_log_value(PQerrorMessage(c), msg, sizeof(msg)));
		PQfinish(c);
		return NULL;
	}
	if (pg_setup(c) < 0) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

PGconn *sg_pg_get(struct sg_pg *pg)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SG_PG_WAIT_MS / 1000;
	until.tv_nsec += (SG_PG_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pg->lock);
	while (pg->idle == NULL && pg->open >= pg->pool_size) {
		if (pthread_cond_timedwait(&pg->cond, &pg->lock, &until) == ETIMEDOUT) {
			pthread_mutex_unlock(&pg->lock);
			sg_log(SG_WARN, "pg", "error=\"no free connection within %d ms\"", SG_PG_WAIT_MS);
			return NULL;
		}
	}
	struct pg_conn *pc = pg->idle;
	if (pc != NULL) {
		pg->idle = pc->next;
		pg->out++;
		pthread_mutex_unlock(&pg->lock);
		PGconn *c = pc->c;
		free(pc);
		return c;
	}
	pg->open++; /* reserve the slot, connect outside the lock */
	pg->out++;
	pthread_mutex_unlock(&pg->lock);
	PGconn *c = pg_connect(pg->conninfo);
	if (c == NULL) {
		pthread_mutex_lock(&pg->lock);
		pg->open--;
		pg->out--;
		pthread_cond_signal(&pg->cond);
		pthread_mutex_unlock(&pg->lock);
	}
	return c;
}

void sg_pg_put(struct sg_pg *pg, PGconn *c)
{
	if (c == NULL)
		return;
	bool broken = PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE;
	if (broken && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_ACTIVE) {
		/* a caller left a transaction open after an error: end it */
		PGresult *r = PQexec(c, "ROLLBACK");
		broken = PQresultStatus(r) != PGRES_COMMAND_OK || PQtransactionStatus(c) != PQTRANS_IDLE;
		PQclear(r);
	}
	pthread_mutex_lock(&pg->lock);
	pg->out--;
	if (broken) {
		pg->open--;
		pthread_mutex_unlock(&pg->lock);
		PQfinish(c);
		pthread_mutex_lock(&pg->lock);
	} else {
		struct pg_conn *pc = sg_calloc(1, sizeof(*pc));
		pc->c = c;
		pc->next = pg->idle;
		pg->idle = pc;
	}
	pthread_cond_signal(&pg->cond);
	pthread_mutex_unlock(&pg->lock);
}

PGresult *sg_pg_exec_bin(struct sg_pg *pg, PGconn *c, const char *sql, int nparams,
			 const char *const *params, const int *lengths, const int *formats)
{
	atomic_fetch_add(&pg->round_trips, 1);
	last_sqlstate[0] = '\0';
	bool standalone = PQtransactionStatus(c) == PQTRANS_IDLE;
	PGresult *r = PQexecParams(c, sql, nparams, NULL, params, lengths, formats, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	if (standalone && PQstatus(c) == CONNECTION_BAD) {
		/* a pooled connection that died while idle (database restarted):
		 * reconnect once and retry a statement that was not inside a
		 * transaction, so the first client after a restart gets service */
		PQclear(r);
		PQreset(c);
		if (PQstatus(c) == CONNECTION_OK && pg_setup(c) == 0) {
			atomic_fetch_add(&pg->round_trips, 1);
			r = PQexecParams(c, sql, nparams, NULL, params, lengths, formats, 0);
			st = PQresultStatus(r);
			if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
				return r;
		} else {
			r = NULL;
		}
	}
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	if (state != NULL)
		sg_strlcpy(last_sqlstate, state, sizeof(last_sqlstate));
	/* unique violations are answers (the CLI says "already exists"), not faults */
	if (state == NULL || strcmp(state, "23505") != 0) {
		char msg[300];
		sg_log(SG_ERROR, "pg", "query failed sqlstate=%s error=%s", state != NULL ? state : "-",
		       sg_log_value(PQerrorMessage(c), msg, sizeof(msg)));
	}
	PQclear(r);
	return NULL;
}

PGresult *sg_pg_exec(struct sg_pg *pg, PGconn *c, const char *sql, int nparams,
		     const char *const *params)
{
	return sg_pg_exec_bin(pg, c, sql, nparams, params, NULL, NULL);
}

uint64_t sg_pg_round_trips(struct sg_pg *pg)
{
	return atomic_load(&pg->round_trips);
}

/* ---- migrations ---- */

static const char *const migrations[] = {
	/* 1: accounts, verifiers, addresses, the change generation */
	"CREATE TABLE sg_meta(key text PRIMARY KEY, value bigint NOT NULL);"
	"INSERT INTO sg_meta(key, value) VALUES ('generation', 0);"
	"CREATE TABLE accounts("
	" id bigserial PRIMARY KEY,"
	" login text NOT NULL UNIQUE,"
	" domain text,"
	" disabled boolean NOT NULL DEFAULT false,"
	" created bigint NOT NULL,"
	" updated bigint NOT NULL);"
	"CREATE INDEX accounts_domain ON accounts(domain);"
	"CREATE TABLE verifiers("
	" account_id bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
	" kind text NOT NULL,"
	" value text NOT NULL,"
	" PRIMARY KEY(account_id, kind));"
	"CREATE TABLE addresses("
	" account_id bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
	" address text NOT NULL UNIQUE,"
	" domain text NOT NULL);"
	"CREATE INDEX addresses_account ON addresses(account_id);"
	"CREATE INDEX addresses_domain ON addresses(domain);",
	/* 2: the auth event log of every node */
	"CREATE TABLE auth_events("
	" id bigserial PRIMARY KEY,"
	" time_ms bigint NOT NULL,"
	" node text NOT NULL,"
	" session text NOT NULL,"
	" client_ip text NOT NULL,"
	" listener text NOT NULL,"
	" tls boolean NOT NULL,"
	" tls_version text NOT NULL,"
	" mech text NOT NULL,"
	" login text NOT NULL,"
	" result text NOT NULL,"
	" reason text NOT NULL,"
	" injected boolean NOT NULL);"
	"CREATE INDEX auth_events_login ON auth_events(login, id);",
	/* 3: failed-AUTH counters of every node (throttle_pg.c) */
	"CREATE TABLE sg_throttle("
	" node text NOT NULL,"
	" addr text NOT NULL,"
	" account text NOT NULL,"
	" failures integer NOT NULL,"
	" last_ms bigint NOT NULL,"
	" PRIMARY KEY(node, addr, account));"
	"CREATE INDEX sg_throttle_pair ON sg_throttle(addr, account);"
	"CREATE INDEX sg_throttle_last ON sg_throttle(last_ms);",
	/* 4: captured sandbox messages (mail_pg.c) */
	"CREATE TABLE sg_mail_bodies("
	" id text PRIMARY KEY,"
	" received_ms bigint NOT NULL,"
	" size bigint NOT NULL,"
	" body bytea NOT NULL);"
	"CREATE TABLE sg_mail_inbox("
	" login text NOT NULL,"
	" id text NOT NULL REFERENCES sg_mail_bodies(id) ON DELETE CASCADE,"
	" PRIMARY KEY(login, id));"
	"CREATE INDEX sg_mail_inbox_id ON sg_mail_inbox(id);",
	/* 5: fault-injection rules of every node (faults_pg.c) */
	"CREATE TABLE sg_faults("
	" id bigserial PRIMARY KEY,"
	" stage text NOT NULL, listener text NOT NULL DEFAULT '', login text NOT NULL DEFAULT '',"
	" kind text NOT NULL, code integer NOT NULL DEFAULT 0, enhanced text NOT NULL DEFAULT '',"
	" text text NOT NULL DEFAULT '', delay_ms integer NOT NULL DEFAULT 0,"
	" mode text NOT NULL DEFAULT 'always', n bigint NOT NULL DEFAULT 0,"
	" probability double precision NOT NULL DEFAULT 1,"
	" matched bigint NOT NULL DEFAULT 0, fired bigint NOT NULL DEFAULT 0,"
	" created bigint NOT NULL, origin text NOT NULL DEFAULT 'cli');",
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
/* pg_advisory_xact_lock key: "smtpgate" */
#define MIGRATE_LOCK "7310593858049024101"

static int simple(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	return ok ? 0 : -1;
}

int sg_pg_migrate(struct sg_pg *pg, int *from_r, int *to_r, const char **error_r)
{
	PGconn *c = sg_pg_get(pg);
	if (c == NULL) {
		sg_set_err(error_r, "cannot connect to PostgreSQL (see the log line above)");
		return -1;
	}
	int ret = -1;
	if (simple(c, "BEGIN") < 0 || simple(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")") < 0 ||
	    simple(c, "CREATE TABLE IF NOT EXISTS sg_schema_version(version int PRIMARY KEY,"
		      " applied timestamptz NOT NULL DEFAULT now())") < 0) {
		sg_set_err(error_r, sg_errf("cannot start the migration: %s", PQerrorMessage(c)));
		goto out;
	}
	PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM sg_schema_version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		sg_set_err(error_r, sg_errf("cannot read the schema version: %s", PQerrorMessage(c)));
		PQclear(r);
		goto out;
	}
	uint64_t cur = 0;
	sg_parse_u64(PQgetvalue(r, 0, 0), 0, 1000000, &cur);
	PQclear(r);
	*from_r = (int)cur;
	if (cur > N_MIGRATIONS) {
		sg_set_err(error_r, sg_errf("the database has schema version %d, newer than this "
					    "smtpgate knows (%d)", (int)cur, (int)N_MIGRATIONS));
		goto out;
	}
	for (size_t v = cur + 1; v <= N_MIGRATIONS; v++) {
		char ins[96];
		snprintf(ins, sizeof(ins), "INSERT INTO sg_schema_version(version) VALUES (%zu)", v);
		if (simple(c, migrations[v - 1]) < 0 || simple(c, ins) < 0) {
			sg_set_err(error_r, sg_errf("migration %zu failed: %s", v, PQerrorMessage(c)));
			goto out;
		}
	}
	if (simple(c, "COMMIT") < 0) {
		sg_set_err(error_r, sg_errf("commit failed: %s", PQerrorMessage(c)));
		goto out;
	}
	*to_r = (int)N_MIGRATIONS;
	ret = 0;
out:
	if (ret < 0)
		simple(c, "ROLLBACK");
	sg_pg_put(pg, c);
	return ret;
}

int sg_pg_schema_version(struct sg_pg *pg)
{
	PGconn *c = sg_pg_get(pg);
	if (c == NULL)
		return -1;
	int v = -1;
	PGresult *r = sg_pg_exec(pg, c, "SELECT to_regclass('sg_schema_version') IS NOT NULL", 0, NULL);
	if (r != NULL && strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		v = 0;
	} else if (r != NULL) {
		PQclear(r);
		r = sg_pg_exec(pg, c, "SELECT coalesce(max(version), 0) FROM sg_schema_version", 0, NULL);
		uint64_t u;
		if (r != NULL && sg_parse_u64(PQgetvalue(r, 0, 0), 0, 1000000, &u) == 0)
			v = (int)u;
	}
	PQclear(r);
	sg_pg_put(pg, c);
	return v;
}

/* ---- LISTEN / NOTIFY ---- */

int sg_pg_subscribe(struct sg_pg *pg, const char *channel, void (*on_notify)(void *ctx, const char *payload),
		    void (*on_reset)(void *ctx), void *ctx)
{
	if (pg->thread_started || pg->nsubs >= MAX_SUBS)
		return -1;
	struct pg_sub *s = &pg->subs[pg->nsubs];
	if (!sg_strlcpy(s->channel, channel, sizeof(s->channel)))
		return -1;
	s->on_notify = on_notify;
	s->on_reset = on_reset;
	s->ctx = ctx;
	pg->nsubs++;
	return 0;
}

bool sg_pg_listening(struct sg_pg *pg)
{
	return atomic_load(&pg->listening);
}

/* Sleep up to ms, or until told to stop. */
static void listener_pause(struct sg_pg *pg, int ms)
{
	struct pollfd p = {.fd = pg->wake[0], .events = POLLIN};
	poll(&p, 1, ms);
}

static PGconn *listener_connect(struct sg_pg *pg)
{
	PGconn *c = pg_connect(pg->conninfo);
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < pg->nsubs; i++) {
		char *id = PQescapeIdentifier(c, pg->subs[i].channel, strlen(pg->subs[i].channel));
		char sql[128];
		snprintf(sql, sizeof(sql), "LISTEN %s", id != NULL ? id : "\"\"");
		PQfreemem(id);
		if (simple(c, sql) < 0) {
			PQfinish(c);
			return NULL;
		}
	}
	return c;
}

static void *listener_main(void *arg)
{
	struct sg_pg *pg = arg;
	PGconn *c = NULL;
	while (!atomic_load(&pg->stop)) {
		if (c == NULL) {
			c = listener_connect(pg);
			if (c == NULL) {
				listener_pause(pg, LISTEN_RETRY_MS);
				continue;
			}
			atomic_store(&pg->listening, true);
			sg_log(SG_INFO, "pg", "listening channels=%zu", pg->nsubs);
			/* whatever was announced while away is lost: re-read */
			for (size_t i = 0; i < pg->nsubs; i++)
				if (pg->subs[i].on_reset != NULL)
					pg->subs[i].on_reset(pg->subs[i].ctx);
		}
		struct pollfd p[2] = {{.fd = PQsocket(c), .events = POLLIN},
				      {.fd = pg->wake[0], .events = POLLIN}};
		int n = poll(p, 2, 10000);
		if (n < 0 && errno != EINTR)
			break;
		if (atomic_load(&pg->stop))
			break;
		bool lost = false;
		if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			if (PQconsumeInput(c) == 0)
				lost = true;
		} else if (n == 0) {
			/* idle: make sure the link is still there */
			PGresult *r = PQexec(c, "SELECT 1");
			lost = PQresultStatus(r) != PGRES_TUPLES_OK;
			PQclear(r);
		}
		PGnotify *nt;
		while (!lost && (nt = PQnotifies(c)) != NULL) {
			for (size_t i = 0; i < pg->nsubs; i++)
				if (strcmp(pg->subs[i].channel, nt->relname) == 0)
					pg->subs[i].on_notify(pg->subs[i].ctx, nt->extra);
			PQfreemem(nt);
		}
		if (lost || PQstatus(c) != CONNECTION_OK) {
			atomic_store(&pg->listening, false);
			sg_log(SG_WARN, "pg", "listen connection lost: reconnecting");
			PQfinish(c);
			c = NULL;
			listener_pause(pg, LISTEN_RETRY_MS);
		}
	}
	atomic_store(&pg->listening, false);
	if (c != NULL)
		PQfinish(c);
	return NULL;
}

void sg_pg_stop_listener(struct sg_pg *pg)
{
	if (pg == NULL || !pg->thread_started)
		return;
	atomic_store(&pg->stop, true);
	ssize_t w = write(pg->wake[1], "x", 1);
	(void)w;
	pthread_join(pg->thread, NULL);
	pg->thread_started = false;
}

int sg_pg_start_listener(struct sg_pg *pg)
{
	if (pg->thread_started || pg->nsubs == 0)
		return 0;
	if (pipe2(pg->wake, O_CLOEXEC) < 0)
		return -1;
	if (pthread_create(&pg->thread, NULL, listener_main, pg) != 0) {
		close(pg->wake[0]);
		close(pg->wake[1]);
		pg->wake[0] = pg->wake[1] = -1;
		return -1;
	}
	pg->thread_started = true;
	pg->served = true;
	return 0;
}

bool sg_pg_served(const struct sg_pg *pg)
{
	return pg->served;
}
