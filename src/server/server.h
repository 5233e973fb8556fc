/*
 * server.h: the running server: configuration, stores, TLS context, the
 * event loop, the worker pool and the listeners. Sessions hold a pointer to
 * it; there is one per process.
 */
#ifndef SG_SERVER_H
#define SG_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "server/config.h"

struct event_base;
struct sg_pool;
struct sg_tls_ctx;
struct sg_cred_store;
struct sg_mail_store;
struct sg_session;
struct sg_throttle;

struct sg_listener {
	struct sg_server *srv;
	const struct sg_listener_cfg *cfg;
	struct evconnlistener *evl;
	unsigned long long accepted;
};

struct sg_server {
	struct sg_config cfg;
	struct event_base *base;
	struct sg_pool *pool;
	struct sg_tls_ctx *tls;
	struct sg_cred_store *creds;
	struct sg_mail_store *mail;
	struct sg_throttle *throttle;
	struct sg_listener listeners[SG_MAX_LISTENERS];
	size_t nlisteners;
	struct sg_session *sessions;  /* intrusive list of live sessions */
	unsigned nsessions;
	bool stopping;
	uint64_t session_seq;
	uint8_t *oauth_key;           /* sandbox HS256 secret, when generated */
	size_t oauth_key_len;
	void *jwks;
	struct event *sigterm_ev, *sigint_ev, *stop_timer;
};

/* Set up everything (stores, TLS, listeners bound). -1 with a message. */
int sg_server_init(struct sg_server *srv, char *err, size_t errsize);
/* Run the loop until SIGTERM/SIGINT and the drain that follows. */
int sg_server_run(struct sg_server *srv);
void sg_server_deinit(struct sg_server *srv);

/* Called by sessions. */
void sg_server_session_gone(struct sg_server *srv, struct sg_session *s);

#endif
