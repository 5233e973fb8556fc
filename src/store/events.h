/*
 * events.h: the auth event log and the stream of live events (new messages,
 * auth attempts) that the HTTP API and the web page read.
 *
 * Producers (the SMTP sessions, on the loop thread) never block: an event is
 * copied into memory under a mutex and persisted by a background thread to
 * the auth_events table of <data-dir>/smtpgate.db. Readers (HTTP threads)
 * query the table or subscribe to the live stream.
 */
#ifndef SG_EVENTS_H
#define SG_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_auth_event {
	int64_t time_ms;          /* wall clock, milliseconds since the epoch */
	char session[24];
	char client_ip[64];
	char listener[32];
	bool tls;
	char tls_version[16];
	char mech[32];            /* "" when no mechanism was chosen */
	char login[256];          /* claimed or authenticated login, may be "" */
	char result[16];          /* ok, fail, tempfail, malformed, aborted, throttled */
	char reason[48];          /* server-side reason: unknown_account, wrong_password, ... */
	bool injected;            /* produced by a fault-injection rule */
};

struct sg_msg_event {
	int64_t time_ms;
	char login[256];          /* inbox */
	char id[64];
	size_t size;
};

struct sg_events;

int sg_events_open(const char *data_dir, struct sg_events **ev_r, const char **error_r);
/* store = postgresql: the log is the auth_events table shared by every node
 * (events_pg.c); the stream also carries the other nodes' events (LISTEN/
 * NOTIFY, delivered once the caller starts pg's listener). pg must outlive
 * the log: close the log first. */
struct sg_pg;
int sg_events_open_pg(struct sg_pg *pg, struct sg_events **ev_r, const char **error_r);
void sg_events_close(struct sg_events **ev);
void sg_events_auth(struct sg_events *ev, const struct sg_auth_event *e);
void sg_events_message(struct sg_events *ev, const struct sg_msg_event *e);

/* Live stream: cb receives (type "auth" or "message", a JSON object) on the
 * producer's thread; it must only copy and return. Returns a handle for
 * unsubscribe, or -1. */
int sg_events_subscribe(struct sg_events *ev, void (*cb)(void *ctx, const char *type, const char *json),
			void *ctx);
void sg_events_unsubscribe(struct sg_events *ev, int handle);

#define SG_EVENTS_MAX_SUBSCRIBERS 32

/* ---- queries (HTTP threads, tests) ---- */

struct sg_auth_event_row {
	int64_t id;               /* rowid, increasing */
	struct sg_auth_event e;
};

struct sg_events_filter {
	const char *login;        /* NULL or "" = any (exact match otherwise) */
	const char *result;       /* NULL or "" = any; "failed" = every result but ok */
	int64_t before_id;        /* 0 = newest; else rows with id < before_id */
	int64_t since_ms;         /* 0 = any; else time_ms >= since_ms */
	size_t limit;             /* 0 = 100; at most 1000 */
};

/* Newest first. Events queued before the call are persisted first, so a
 * query sees every event produced before it. *rows_r is malloc'd (free()),
 * NULL when *n_r is 0. 0 or -1 with *error_r (thread-local). */
int sg_events_query(struct sg_events *ev, const struct sg_events_filter *f,
		    struct sg_auth_event_row **rows_r, size_t *n_r, const char **error_r);
/* Wait (at most timeout_ms) until every event queued so far is in the
 * table. 0, or -1 on timeout. */
int sg_events_flush(struct sg_events *ev, unsigned timeout_ms);

/* JSON renderings shared by the stream and the API; malloc'd strings.
 * id <= 0 omits the "id" member. */
char *sg_auth_event_json(const struct sg_auth_event *e, int64_t id);
char *sg_msg_event_json(const struct sg_msg_event *e);

#endif
