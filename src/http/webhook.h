/*
 * webhook.h: a JSON POST to webhook_url for every captured message and
 * every AUTH event (issue 14), delivered by a thread of its own: the SMTP
 * loops only append the event to a bounded queue (a full queue drops the
 * event and counts it), so a slow or dead receiver never delays SMTP.
 *
 *   POST <path> HTTP/1.1
 *   Content-Type: application/json
 *   X-Smtpgate-Event: message | auth
 *   X-Smtpgate-Delivery: <random id, the same for every retry>
 *   X-Smtpgate-Timestamp: <unix seconds>
 *   X-Smtpgate-Signature: sha256=<hex HMAC-SHA256(secret, timestamp "." body)>
 *   {"type": "message"|"auth", "delivery": "...", "data": {...the event...}}
 *
 * A 2xx answer is success; anything else (or no answer within 5 s) is
 * retried after 1, 2 and 4 seconds, then dropped with a log line. Only
 * http:// URLs; the host must be a loopback address unless allow_remote.
 * The secret is <data-dir>/webhook-secret (32 random bytes in hex, 0600,
 * created at the first start; the log names the path).
 */
#ifndef SG_WEBHOOK_H
#define SG_WEBHOOK_H

#include <stdbool.h>

struct sg_events;
struct sg_webhook;

/* NULL url or "": nothing to do (*wh_r NULL, 0). -1 with *error_r on a bad
 * URL, a remote host without allow_remote, or the secret not usable. */
int sg_webhook_start(const char *url, bool allow_remote, const char *data_dir,
		     struct sg_events *events, struct sg_webhook **wh_r, const char **error_r);
/* Stop: the delivery in progress ends (its retries are given up), events
 * still queued are dropped. */
void sg_webhook_stop(struct sg_webhook **wh);

#endif
