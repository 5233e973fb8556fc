#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static bool log_syslog;
static enum sg_log_level log_min = SG_INFO;

void sg_log_open(bool use_syslog, enum sg_log_level min)
{
	log_syslog = use_syslog;
	log_min = min;
	if (use_syslog)
		openlog("smtpgate", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void sg_log(enum sg_log_level lvl, const char *event, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (lvl < log_min)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_syslog) {
		static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
		syslog(prio[lvl], "event=%s %s", event, msg);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line: stdio locks the stream, so lines from worker
	 * threads never interleave. */
	fprintf(stderr, "%s.%03ldZ %s event=%s %s\n", when, ts.tv_nsec / 1000000L, names[lvl], event,
		msg);
}

const char *sg_log_value(const char *in, char *out, size_t outsize)
{
	if (outsize < 8) {
		if (outsize > 0)
			out[0] = '\0';
		return out;
	}
	if (in == NULL)
		in = "";
	bool quote = *in == '\0';
	for (const char *p = in; *p != '\0' && !quote; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20 || *p == 0x7f)
			quote = true;
	size_t o = 0, lim = outsize - 5;
	if (quote)
		out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
		if (o + 4 >= lim) {
			out[o++] = '.';
			out[o++] = '.';
			break;
		}
		if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
			if (*p == '"' || *p == '\\') {
				out[o++] = '\\';
				out[o++] = (char)*p;
			} else {
				snprintf(out + o, 5, "\\x%02x", *p);
				o += 4;
			}
		} else {
			out[o++] = (char)*p;
		}
	}
	if (quote)
		out[o++] = '"';
	out[o] = '\0';
	return out;
}
