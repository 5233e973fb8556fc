#include "core/pool.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/util.h"

struct sg_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sg_job *queue_head, *queue_tail;
	struct sg_job *done_head, *done_tail;
	struct event *done_ev;
	pthread_t *threads;
	unsigned nthreads;
	bool stopping;
};

static void push(struct sg_job **head, struct sg_job **tail, struct sg_job *j)
{
	j->next = NULL;
	if (*tail != NULL)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

static void *worker(void *arg)
{
	struct sg_pool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->queue_head == NULL && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		struct sg_job *j = p->queue_head;
		if (j == NULL)
			break;
		p->queue_head = j->next;
		if (p->queue_head == NULL)
			p->queue_tail = NULL;
		pthread_mutex_unlock(&p->lock);
		j->work(j);
		pthread_mutex_lock(&p->lock);
		push(&p->done_head, &p->done_tail, j);
		event_active(p->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct sg_pool *p = arg;
	if (fd >= 0 || what != 0)
		sg_log_bind_loop(event_get_base(p->done_ev)); /* on the loop's thread */
	pthread_mutex_lock(&p->lock);
	struct sg_job *j = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (j != NULL) {
		struct sg_job *next = j->next;
		j->done(j);
		j = next;
	}
}

struct sg_pool *sg_pool_new(struct event_base *base, unsigned threads)
{
	struct sg_pool *p = sg_calloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->done_ev = event_new(base, -1, EV_PERSIST | EV_READ, on_done, p);
	if (p->done_ev == NULL)
		sg_fatal("event_new failed");
	p->nthreads = threads ? threads : 1;
	p->threads = sg_calloc(p->nthreads, sizeof(pthread_t));
	for (unsigned i = 0; i < p->nthreads; i++)
		if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
			sg_fatal("pthread_create failed");
	return p;
}

void sg_pool_submit(struct sg_pool *p, struct sg_job *job)
{
	pthread_mutex_lock(&p->lock);
	push(&p->queue_head, &p->queue_tail, job);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void sg_pool_free(struct sg_pool **pp)
{
	struct sg_pool *p = *pp;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	on_done(-1, 0, p);
	event_free(p->done_ev);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->threads);
	free(p);
	*pp = NULL;
}
