/*
 * log.h: one line per event, key=value fields, to stderr or syslog.
 *
 *   sg_log(SG_INFO, "auth", "sid=%s mech=%s login=%s result=%s", ...)
 *
 * Values that come from the peer go through sg_log_value(), which quotes them
 * and escapes control characters so a client cannot forge log lines.
 * Secrets are never passed here.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum sg_log_level { SG_DEBUG, SG_INFO, SG_WARN, SG_ERROR };

void sg_log_open(bool use_syslog, enum sg_log_level min);
void sg_log(enum sg_log_level lvl, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Render a peer-supplied value safely into out (quoted when needed, truncated). */
const char *sg_log_value(const char *in, char *out, size_t outsize);

#endif
