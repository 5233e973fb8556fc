/*
 * log.h: one line per event, key=value fields, to stderr or syslog.
 *
 *   sg_log(SG_INFO, "auth", "sid=%s mech=%s login=%s result=%s", ...)
 *
 * Values that come from the peer go through sg_log_value(), which quotes them
 * and escapes control characters so a client cannot forge log lines.
 * Secrets are never passed here. Each line is formatted once; on the event loops the
 * lines of one loop iteration leave in one write(2).
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum sg_log_level { SG_DEBUG, SG_INFO, SG_WARN, SG_ERROR };

struct event_base;

void sg_log_open(bool use_syslog, enum sg_log_level min);
/* On an event-loop thread, once per base: lines logged on this thread are buffered and
 * written together at the end of each loop iteration (one write instead of one per
 * line; nothing is dropped, see log.c). Other threads write each line at once. */
void sg_log_bind_loop(struct event_base *base);
/* Write this thread's buffered lines now. */
void sg_log_flush(void);
/* Before the bound base is freed: write the buffered lines, and log this
 * thread's later lines directly (never through the freed base). */
void sg_log_unbind_loop(void);
void sg_log(enum sg_log_level lvl, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Render a peer-supplied value safely into out (quoted when needed, truncated). */
const char *sg_log_value(const char *in, char *out, size_t outsize);

#endif
