/*
 * pool.h: a fixed pool of worker threads for blocking work (password hashing,
 * SQLite, GSSAPI, fsync). A job's work() runs on a worker; its done() runs
 * later on the event loop thread that owns the pool. Nothing blocking ever runs
 * on the loop.
 *
 * A job may be cancelled while queued or running (its owner went away): done()
 * is then called with cancelled = true so the owner's memory can be released
 * in one place. evthread_use_pthreads() must have been called before the base
 * was created.
 */
#ifndef SG_POOL_H
#define SG_POOL_H

#include <stdbool.h>

struct event_base;
struct sg_pool;

struct sg_job {
	void (*work)(struct sg_job *job);               /* on a worker thread */
	void (*done)(struct sg_job *job, bool cancelled); /* on the loop thread */
	/* private */
	struct sg_job *next;
	bool cancelled;
};

struct sg_pool *sg_pool_new(struct event_base *base, unsigned threads);
void sg_pool_submit(struct sg_pool *p, struct sg_job *job);
/* Mark a job cancelled: done() still runs once, with cancelled = true. */
void sg_pool_cancel(struct sg_pool *p, struct sg_job *job);
/* Jobs queued or running. */
unsigned sg_pool_pending(const struct sg_pool *p);
/* Stop the workers after the queue drains; done() callbacks for finished jobs run. */
void sg_pool_free(struct sg_pool **p);

#endif
