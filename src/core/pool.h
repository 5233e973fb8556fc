/*
 * pool.h: a fixed pool of worker threads for blocking work (password hashing,
 * SQLite, GSSAPI, fsync). A job's work() runs on a worker; its done() runs
 * later on the event loop thread that owns the pool. Nothing blocking ever runs
 * on the loop.
 * A job always completes: an owner that goes away while its job is out waits
 * for done() to release its memory (see sess_free). evthread_use_pthreads()
 * must have been called before the base was created.
 */
#ifndef SG_POOL_H
#define SG_POOL_H

#include <stdbool.h>

struct event_base;
struct sg_pool;

struct sg_job {
	void (*work)(struct sg_job *job);               /* on a worker thread */
	void (*done)(struct sg_job *job);  /* on the loop thread */
	/* private */
	struct sg_job *next;
};

struct sg_pool *sg_pool_new(struct event_base *base, unsigned threads);
void sg_pool_submit(struct sg_pool *p, struct sg_job *job);
/* Stop the workers after the queue drains; done() callbacks for finished jobs run. */
void sg_pool_free(struct sg_pool **p);

#endif
