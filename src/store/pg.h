/*
 * pg.h: one process's link to PostgreSQL (libpq), shared by the PostgreSQL
 * store backends (cred_pg.c, ...): a bounded connection pool, the schema
 * migrations, and one LISTEN connection that turns NOTIFYs into callbacks.
 *
 * Pool: at most pool_size connections, opened lazily, each used by one
 * thread at a time. sg_pg_get() waits up to SG_PG_WAIT_MS for a free one and
 * returns NULL when none comes or the database cannot be reached: callers
 * turn that into a temporary failure (454 4.7.0 / 451 4.3.0), never a crash
 * or a refusal. sg_pg_put() closes a connection whose link broke, so the
 * next caller reconnects. Every connection has a statement_timeout and TCP
 * keepalives, so a hung database costs a bounded time per query.
 *
 * Notifications: sg_pg_subscribe() (before sg_pg_start_listener) names a
 * channel and a callback; the listener thread LISTENs on every channel,
 * calls on_notify(ctx, payload) per NOTIFY, and on_reset(ctx) after it
 * (re)connected, since NOTIFYs sent while it was away are lost: subscribers
 * re-read what they cache. sg_pg_listening() says whether it is connected
 * now (the credential cache is trusted only then).
 *
 * Migrations (sg_pg_migrate): numbered, each in the one transaction that
 * records it in sg_schema_version, under a transaction-level advisory lock,
 * so several nodes running `smtpgate db migrate` at once apply each step
 * exactly once. sg_pg_schema_version() tells the server whether it may
 * start.
 */
#ifndef SG_PG_H
#define SG_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#define SG_PG_WAIT_MS 3000
#define SG_PG_SCHEMA_VERSION 5

struct sg_pg;

/* conninfo: a libpq connection string or URI. Nothing is connected yet. */
struct sg_pg *sg_pg_new(const char *conninfo, unsigned pool_size);
void sg_pg_free(struct sg_pg **pg);

/* Read a connection string from a file that only its owner may read
 * (mode 0600 or stricter, a regular file, not a symlink): it holds the
 * password. 0, or -1 with *error_r. */
int sg_pg_conninfo_file(const char *path, char *out, size_t size, const char **error_r);

PGconn *sg_pg_get(struct sg_pg *pg);
void sg_pg_put(struct sg_pg *pg, PGconn *c);

/* Run one statement with text parameters (NULL = SQL NULL). Returns the
 * result when its status is COMMAND_OK or TUPLES_OK, else logs, clears it and
 * returns NULL. Counts one round trip. */
PGresult *sg_pg_exec(struct sg_pg *pg, PGconn *c, const char *sql, int nparams,
		     const char *const *params);
/* The same with binary parameters where lengths[i] > 0 (formats 1). */
PGresult *sg_pg_exec_bin(struct sg_pg *pg, PGconn *c, const char *sql, int nparams,
			 const char *const *params, const int *lengths, const int *formats);
/* Round trips made by this process (for the benchmark's figures). */
uint64_t sg_pg_round_trips(struct sg_pg *pg);
/* SQLSTATE of the last failed sg_pg_exec on this thread ("" when none). */
const char *sg_pg_last_sqlstate(void);

int sg_pg_subscribe(struct sg_pg *pg, const char *channel, void (*on_notify)(void *ctx, const char *payload),
		    void (*on_reset)(void *ctx), void *ctx);
int sg_pg_start_listener(struct sg_pg *pg);
/* No callback runs after this returns (before closing the subscribers). */
void sg_pg_stop_listener(struct sg_pg *pg);
bool sg_pg_listening(struct sg_pg *pg);
/* The listener was started (a server process, not a CLI command). */
bool sg_pg_served(const struct sg_pg *pg);

int sg_pg_migrate(struct sg_pg *pg, int *from_r, int *to_r, const char **error_r);
/* The applied schema version (0 = none), or -1 when the database is unreachable. */
int sg_pg_schema_version(struct sg_pg *pg);

#endif
