/*
 * throttle_pg.h: the failed-AUTH throttle shared by several nodes through
 * PostgreSQL (store = postgresql). It hooks into an existing throttle
 * (store/throttle.h) as its observer: decisions stay local and immediate,
 * and every node counts every node's failures (upserts into sg_throttle,
 * NOTIFY sg_throttle, applied by the other nodes' LISTEN threads). See
 * throttle_pg.c and docs/scaling.md. Per-connection limits stay local.
 *
 * Create it before sg_pg_start_listener(); free it after
 * sg_pg_stop_listener() and before the throttle and the link.
 */
#ifndef SG_THROTTLE_PG_H
#define SG_THROTTLE_PG_H

struct sg_pg;
struct sg_throttle;
struct sg_throttle_pg;

/* window_ms: the throttle's window; cap: how many failures of one row to
 * apply when loading (the address threshold is enough). */
int sg_throttle_pg_new(struct sg_pg *pg, struct sg_throttle *t, unsigned window_ms, unsigned cap,
		       struct sg_throttle_pg **p_r, const char **error_r);
void sg_throttle_pg_free(struct sg_throttle_pg **p);

#endif
