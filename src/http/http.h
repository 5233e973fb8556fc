/*
 * http.h: the sandbox HTTP server (JSON API under /api/v1, the web page, the
 * events stream, /metrics). It runs on its own threads (libmicrohttpd) inside
 * the `serve` process and reads the same stores as the SMTP side.
 */
#ifndef SG_HTTP_H
#define SG_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct sg_cred_store;
struct sg_mail_store;
struct sg_events;
struct sg_faults;
struct sg_metrics;

struct sg_buf;

/* Queue control and release of the relay (relay/relay.h), given by the
 * server when a smarthost is configured; http/ never includes relay/. */
struct sg_http_relay {
	void *arg;
	/* list | show | retry | delete | bounce; JSON into out; an HTTP status */
	unsigned (*control)(void *arg, const char *cmd, const char *id, struct sg_buf *out);
	/* Prometheus lines appended to /metrics */
	void (*metrics)(void *arg, struct sg_buf *out);
	/* queue a captured message for rcpts; 0 with the queue id, or -1 */
	int (*release)(void *arg, const char *from, const char *const *rcpts, size_t n,
		       const unsigned char *msg, size_t len, const char *login, char *id_r,
		       size_t id_size, const char **error_r);
};

struct sg_http_config {
	const char *listen_host;   /* default 127.0.0.1 */
	unsigned port;             /* default 8025; 0 = disabled */
	bool open;                 /* --http-open: no access control (loopback only) */
	const char *tls_cert;      /* optional HTTPS */
	const char *tls_key;
	const char *data_dir;      /* admin token hash lives here */
	const struct sg_http_relay *relay; /* NULL: no queue API, release disabled */
	struct sg_throttle *throttle; /* shared with SMTP: HTTP Basic is throttled and logged alike */
};

struct sg_http;
struct sg_throttle;

int sg_http_start(const struct sg_http_config *cfg, struct sg_cred_store *creds,
		  struct sg_mail_store *mail, struct sg_events *events, struct sg_faults *faults,
		  struct sg_metrics *metrics, struct sg_http **http_r, const char **error_r);
void sg_http_stop(struct sg_http **http);

/* The admin token: when <data_dir>/admin-token.sha256 does not exist,
 * generate a token, store only its SHA-256 (hex, mode 0600), copy the token
 * to token_out and set *created_r: the caller prints it once. When the file
 * exists, *created_r is false and token_out is "" (the token cannot be
 * recovered: delete the file and restart for a new one). sg_http_start()
 * calls this itself when not open and prints a created token to stderr,
 * so calling it first is optional. 0 or -1 with *error_r. */
int sg_http_admin_token_init(const char *data_dir, char *token_out, size_t size, bool *created_r,
			     const char **error_r);

#endif
