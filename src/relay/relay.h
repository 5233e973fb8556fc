/*
 * relay/relay.h: relay mode (delivery = relay): the queue runner, queue
 * control and release, as the server, the HTTP API and the CLI see them.
 *
 * sg_relay_new() loads the DKIM keys and the TLS client context (while the
 * server may still be root: the key files can stay readable by root only);
 * sg_relay_start() then opens <data_dir>/queue, rebuilds the schedule from
 * the envelope files (relay/queue.h) and starts relay_concurrency runner
 * threads plus one control thread. Each runner
 * thread owns one smarthost connection (relay/deliver.h) and takes the
 * message whose next try is due soonest; a message is held by one thread at
 * a time. Per recipient: delivered, deferred (retried after
 * relay_retry_min * 2^(attempts-1), at most relay_retry_max), or failed
 * (5xx, or still deferred after queue_lifetime). A final state is reported
 * to the envelope sender in an RFC 3464 DSN (relay/dsn.h) as NOTIFY asks
 * (default: failures; SUCCESS only when the smarthost did not take the DSN
 * parameters itself); a local sender's DSN goes into its inbox, a remote
 * sender's through the queue with the null sender. Nothing is ever reported
 * for a message with the null sender or for a DSN (RFC 3461 6.2: no bounce
 * of a bounce). Every state change is in the envelope file before the
 * next step depends on it; a crash between the smarthost's 250 and our
 * record delivers that message once more (RFC 5321 6.1, at least once).
 *
 * Queue control (`smtpgate queue`, /api/v1/queue): sg_relay_control(). The
 * CLI reaches a running server through request files in queue/ctl/ that
 * the control thread answers (so it works whether or not the HTTP API is
 * on, with the file permissions of the data directory as the access rule).
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef SG_RELAY_RELAY_H
#define SG_RELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "relay/queue.h"
#include "relay/relay_config.h"

struct sg_mail_store;
struct sg_cred_store;
struct sg_relay;

struct sg_relay_params {
	const struct sg_relay_config *cfg; /* kept: must outlive the relay */
	const char *hostname;              /* HELO name default, Reporting-MTA */
	const char *data_dir;
};

int sg_relay_new(const struct sg_relay_params *p, struct sg_relay **r_r, char *err,
		 size_t errsize);
/* data_dir: where queue/ lives (overrides the one given to sg_relay_new);
 * mail: local DSNs (may be NULL); creds: who owns a sender address (may be NULL). */
int sg_relay_start(struct sg_relay *r, const char *data_dir, struct sg_mail_store *mail,
		   struct sg_cred_store *creds, char *err, size_t errsize);
/* Stop the threads (an attempt in flight finishes first, bounded by the
 * timeouts) and free. */
void sg_relay_free(struct sg_relay **r);

/* Put a new message in the queue: sets e->id, commits durably, schedules
 * it now. 0 or -1 with *error_r. Blocking (disk): worker threads only. */
int sg_relay_enqueue(struct sg_relay *r, struct sg_envelope *e, const struct sg_buf *prefix,
		     const struct sg_buf *body, const char **error_r);

/* The same with the client's data in a spool file (relay/queue.h
 * sg_queue_commit_fd). */
int sg_relay_enqueue_fd(struct sg_relay *r, struct sg_envelope *e, const struct sg_buf *prefix,
			int body_fd, size_t body_len, const char **error_r);

/* Release from the sandbox: a captured message (as stored, with our
 * Return-Path / X-Smtpgate-* lines, which are removed) sent from `from` to
 * the n recipients through the queue. id_r receives the queue id. */
int sg_relay_release(struct sg_relay *r, const char *from, const char *const *rcpts, size_t n,
		     const uint8_t *msg, size_t len, const char *login,
		     char id_r[SG_QUEUE_ID_MAX], const char **error_r);

/* Remove the lines of our capture header block that must not leave the
 * machine (Return-Path, X-Smtpgate-*; RFC 5321 4.4: Return-Path is added by
 * the final delivery) from the start of a message: the number of octets to
 * skip at its start, the rest being sent unchanged. */
size_t sg_relay_capture_skip(const uint8_t *msg, size_t len);

/* Queue control. cmd: list | show | retry | delete | bounce; id NULL or ""
 * for list and "retry everything". JSON into out; returns an HTTP-like
 * status (200, 400 bad command, 404 no such message). */
unsigned sg_relay_control(struct sg_relay *r, const char *cmd, const char *id,
			  struct sg_buf *out);

/* Prometheus lines (smtpgate_queue_* and smtpgate_relay_*), appended. */
void sg_relay_metrics(struct sg_relay *r, struct sg_buf *out);

#endif
