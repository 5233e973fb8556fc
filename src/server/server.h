/*
 * server.h: the running server: configuration, stores, TLS context, the
 * event loop, the worker pool and the listeners. Sessions hold a pointer to
 * it; there is one per process.
 */
#ifndef SG_SERVER_H
#define SG_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/metrics.h"
#include "server/config.h"

struct event_base;
struct sg_pool;
struct sg_tls_ctx;
struct sg_cred_store;
struct sg_mail_store;
struct sg_session;
struct sg_throttle;
struct sg_events;
struct sg_faults;
struct sg_http;
struct sg_relay;

struct sg_loop;
struct sg_proxy_wait;

struct sg_listener {
	struct sg_loop *loop;
	const struct sg_listener_cfg *cfg;
	struct evconnlistener *evl;
	struct event *resume_ev;      /* accept paused after EMFILE/ENFILE */
	bool paused;
};

/* One event loop per core (thread), each accepting on its own duplicate of
 * the listening sockets (bound once: no SO_REUSEPORT, so another process can
 * never share our ports), with its own worker pool and its own sessions. What must agree across loops (accounts,
 * throttling, the capture store, limits) is shared and thread-safe. */
struct sg_loop {
	struct sg_server *srv;
	unsigned index;
	pthread_t thread;
	struct event_base *base;
	struct sg_pool *pool;
	struct sg_listener listeners[SG_MAX_LISTENERS];
	size_t nlisteners;
	struct sg_session *sessions;  /* intrusive list of this loop's sessions */
	struct sg_proxy_wait *proxy_waits; /* accepted, PROXY header not read yet */
	unsigned nsessions;
	bool stopping;
	struct event *stop_ev;        /* activated from the signal loop */
	struct event *stop_timer;
};

struct sg_server {
	struct sg_config cfg;
	struct sg_tls_ctx *tls;
	struct sg_cred_store *creds;
	struct sg_mail_store *mail;
	struct sg_throttle *throttle;
	struct sg_events *events;
	struct sg_faults *faults;
	struct sg_http *http;
	struct sg_relay *relay;       /* delivery = relay or a smarthost set (server/route.c) */
	struct sg_metrics metrics;
	struct sg_loop *loops;
	unsigned nloops;
	atomic_uint nsessions;        /* all loops */
	atomic_uint_fast64_t session_seq;
	atomic_bool stopping;
	uint8_t *oauth_key;           /* HS256 secret (configured or the sandbox's) */
	size_t oauth_key_len;
	void *jwks;
	struct event *sigterm_ev, *sigint_ev;
	unsigned max_connections;     /* cfg.max_connections, lowered to fit RLIMIT_NOFILE */
	atomic_uint_fast64_t accept_pauses;
	atomic_uint_fast64_t accept_pause_logged_ms;
};

/* Set up everything (stores, TLS, listeners bound). -1 with a message. */
int sg_server_init(struct sg_server *srv, char *err, size_t errsize);
/* Run the loop until SIGTERM/SIGINT and the drain that follows. */
int sg_server_run(struct sg_server *srv);
void sg_server_deinit(struct sg_server *srv);

/* Called by sessions. */
void sg_server_session_gone(struct sg_loop *loop, struct sg_session *s);

#endif
