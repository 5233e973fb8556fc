/*
 * route.h: relay mode in the server (delivery = relay). Mail from an
 * authenticated session on a relaying listener is split at the end of DATA:
 * recipients that are local accounts get it in their inboxes (the capture
 * store, as in the sandbox), every other recipient through the relay queue
 * (relay/relay.h). The 250 names the queue id only after the message and
 * its envelope are fsync'd (and the local copies, when there are any).
 * Unauthenticated mx sessions never relay (their recipients are local).
 */
#ifndef SG_SERVER_ROUTE_H
#define SG_SERVER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct sg_server;
struct sg_session;
struct sess_job;
struct sg_http_relay;

/* When a listener relays or a smarthost is set (release): load the relay's
 * keys (still as root, before privileges are dropped); config errors name
 * the file and line. 0 or -1 with err. */
int sg_route_setup(struct sg_server *srv, char *err, size_t errsize);
/* Then, with the stores open: the queue and the runner threads. */
int sg_route_start(struct sg_server *srv, char *err, size_t errsize);
/* The relay's operations for the HTTP API, or NULL. */
const struct sg_http_relay *sg_route_http(struct sg_server *srv);

/* At the end of DATA (loop thread): route the job when relay mode applies
 * (sets j->route). The three calls below act only on routed jobs. */
void sg_route_prepare(struct sg_session *s, struct sess_job *j);
/* Worker thread: commit locally and/or to the queue. */
void sg_route_work(struct sess_job *j);
/* Loop thread: log, count, reply. */
void sg_route_done(struct sg_session *s, struct sess_job *j);

#endif
