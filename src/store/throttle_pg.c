/*
 * throttle_pg.c: failed-AUTH counters shared by every node (throttle_pg.h).
 *
 * Each node keeps deciding from its own in-memory throttle (store/throttle.c:
 * no query on an SMTP loop, no added latency), and every node counts every
 * node's failures:
 *   - the throttle's observer queues each counted failure and each forgiving
 *     success (never blocking: a bounded queue, dropped and counted when
 *     full);
 *   - a publisher thread records it in sg_throttle with an atomic upsert
 *     (one row per node, address key and account; the count restarts after
 *     throttle_window_ms without failures) and announces it with
 *     NOTIFY sg_throttle in the same statement;
 *   - the LISTEN thread applies the other nodes' announcements to the local
 *     throttle (sg_throttle_remote_failed / _ok), so an address is refused on
 *     every node after ip_threshold failures spread over any of them;
 *   - after the LISTEN connection (re)connects, the other nodes' rows of the
 *     current window are loaded (notifications sent meanwhile were lost); a
 *     reconnection may count some failures twice, which only throttles
 *     sooner.
 * Payload: "<node>\t<F|O>\t<address key>\t<account>" (the account last: it
 * may contain anything but NUL).
 */
#include "store/throttle_pg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/pg.h"
#include "store/throttle.h"

#define CHANNEL "sg_throttle"
#define QUEUE_MAX 4096

struct item {
	bool failed;
	char addr[64];
	char account[256];
	int64_t wall_ms;
};

struct sg_throttle_pg {
	struct sg_pg *pg;
	struct sg_throttle *t;
	unsigned window_ms;
	unsigned cap;               /* failures applied per row when loading */
	char node[24];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct item *queue;
	size_t head, len;
	uint64_t dropped;
	bool stopping;
	pthread_t thread;
	bool thread_started;
	unsigned since_prune;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The throttle's observer: on an SMTP loop or an HTTP thread; never blocks. */
static void observe(void *ctx, bool failed, const char *addr_key, const char *account)
{
	struct sg_throttle_pg *p = ctx;
	pthread_mutex_lock(&p->lock);
	if (p->len >= QUEUE_MAX) {
		p->dropped++;
	} else {
		struct item *it = &p->queue[(p->head + p->len) % QUEUE_MAX];
		it->failed = failed;
		sg_strlcpy(it->addr, addr_key, sizeof(it->addr));
		sg_strlcpy(it->account, account, sizeof(it->account));
		it->wall_ms = wall_ms();
		p->len++;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

static void publish(struct sg_throttle_pg *p, PGconn *c, const struct item *it)
{
	char *payload = sg_asprintf("%s\t%c\t%s\t%s", p->node, it->failed ? 'F' : 'O', it->addr, it->account);
	char ms[24], win[24];
	snprintf(ms, sizeof(ms), "%lld", (long long)it->wall_ms);
	snprintf(win, sizeof(win), "%u", p->window_ms);
	PGresult *r;
	if (it->failed) {
		const char *params[6] = {p->node, it->addr, it->account, ms, win, payload};
		r = sg_pg_exec(p->pg, c,
			       "WITH u AS (INSERT INTO sg_throttle(node, addr, account, failures, last_ms)"
			       " VALUES ($1, $2, $3, 1, $4::bigint) ON CONFLICT (node, addr, account) DO UPDATE SET"
			       " failures = CASE WHEN sg_throttle.last_ms < $4::bigint - $5::bigint THEN 1"
			       " ELSE sg_throttle.failures + 1 END, last_ms = $4::bigint RETURNING 1)"
			       " SELECT pg_notify('" CHANNEL "', $6) FROM u",
			       6, params);
	} else {
		const char *params[3] = {it->addr, it->account, payload};
		r = sg_pg_exec(p->pg, c,
			       "WITH d AS (DELETE FROM sg_throttle WHERE addr = $1 AND account = $2 RETURNING 1)"
			       " SELECT pg_notify('" CHANNEL "', $3)",
			       3, params);
	}
	if (r == NULL)
		sg_log(SG_WARN, "throttle", "cannot share a throttle event with the other nodes");
	PQclear(r);
	free(payload);
	if (++p->since_prune >= 1000) {
		p->since_prune = 0;
		char old[24];
		snprintf(old, sizeof(old), "%lld", (long long)(it->wall_ms - 2 * (int64_t)p->window_ms));
		const char *params[1] = {old};
		PQclear(sg_pg_exec(p->pg, c, "DELETE FROM sg_throttle WHERE last_ms < $1::bigint", 1, params));
	}
}

static void *publisher(void *arg)
{
	struct sg_throttle_pg *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->len == 0 && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping) {
			/* bounded shutdown even with the database away */
			p->dropped += p->len;
			p->len = 0;
			break;
		}
		struct item it = p->queue[p->head];
		p->head = (p->head + 1) % QUEUE_MAX;
		p->len--;
		pthread_mutex_unlock(&p->lock);
		PGconn *c = sg_pg_get(p->pg);
		if (c != NULL) {
			publish(p, c, &it);
			sg_pg_put(p->pg, c);
		}
		sg_wipe(it.account, sizeof(it.account));
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Another node's event (LISTEN thread). */
static void on_notify(void *ctx, const char *payload)
{
	struct sg_throttle_pg *p = ctx;
	if (payload == NULL)
		return;
	const char *t1 = strchr(payload, '\t');
	if (t1 == NULL)
		return;
	size_t nl = (size_t)(t1 - payload);
	if (nl == strlen(p->node) && memcmp(payload, p->node, nl) == 0)
		return; /* our own: counted when it happened */
	if ((t1[1] != 'F' && t1[1] != 'O') || t1[2] != '\t')
		return;
	const char *addr = t1 + 3;
	const char *t3 = strchr(addr, '\t');
	if (t3 == NULL || (size_t)(t3 - addr) >= 64)
		return;
	char ak[64];
	memcpy(ak, addr, (size_t)(t3 - addr));
	ak[t3 - addr] = '\0';
	if (t1[1] == 'F')
		sg_throttle_remote_failed(p->t, ak, t3 + 1, sg_now_ms());
	else
		sg_throttle_remote_ok(p->t, ak, t3 + 1);
}

/* (Re)connected: the other nodes' failures of the current window. */
static void on_reset(void *ctx)
{
	struct sg_throttle_pg *p = ctx;
	PGconn *c = sg_pg_get(p->pg);
	if (c == NULL)
		return;
	char since[24];
	snprintf(since, sizeof(since), "%lld", (long long)(wall_ms() - (int64_t)p->window_ms));
	const char *params[2] = {p->node, since};
	PGresult *r = sg_pg_exec(p->pg, c,
				 "SELECT addr, account, sum(failures) FROM sg_throttle WHERE node <> $1"
				 " AND last_ms >= $2::bigint GROUP BY addr, account",
				 2, params);
	sg_pg_put(p->pg, c);
	if (r == NULL)
		return;
	uint64_t now = sg_now_ms();
	for (int i = 0; i < PQntuples(r); i++) {
		uint64_t f = 0;
		sg_parse_u64(PQgetvalue(r, i, 2), 0, UINT32_MAX, &f);
		for (uint64_t k = 0; k < f && k < p->cap; k++)
			sg_throttle_remote_failed(p->t, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), now);
	}
	PQclear(r);
}

int sg_throttle_pg_new(struct sg_pg *pg, struct sg_throttle *t, unsigned window_ms, unsigned cap,
		       struct sg_throttle_pg **p_r, const char **error_r)
{
	struct sg_throttle_pg *p = sg_calloc(1, sizeof(*p));
	p->pg = pg;
	p->t = t;
	p->window_ms = window_ms;
	p->cap = cap > 0 ? cap : 1;
	uint8_t rnd[8];
	sg_random(rnd, sizeof(rnd));
	sg_hex(rnd, sizeof(rnd), p->node);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->queue = sg_calloc(QUEUE_MAX, sizeof(*p->queue));
	if (sg_pg_subscribe(pg, CHANNEL, on_notify, on_reset, p) < 0 ||
	    pthread_create(&p->thread, NULL, publisher, p) != 0) {
		sg_set_err(error_r, "cannot subscribe to the throttle channel or start its thread");
		sg_throttle_pg_free(&p);
		return -1;
	}
	p->thread_started = true;
	sg_throttle_set_observer(t, observe, p);
	*p_r = p;
	return 0;
}

void sg_throttle_pg_free(struct sg_throttle_pg **pp)
{
	struct sg_throttle_pg *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	sg_throttle_set_observer(p->t, NULL, NULL);
	if (p->thread_started) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
	}
	if (p->dropped > 0)
		sg_log(SG_WARN, "throttle", "dropped=%llu shared events (queue full)", (unsigned long long)p->dropped);
	sg_wipe(p->queue, QUEUE_MAX * sizeof(*p->queue));
	free(p->queue);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
