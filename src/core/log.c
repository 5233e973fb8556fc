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

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 section 4: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	size_t n;
	unsigned cp;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Octets written raw: printable ASCII and well-formed UTF-8 other than the
 * C1 controls and the Unicode line and paragraph separators (which some log
 * viewers treat as line ends). Everything else is escaped as \xHH. */
static size_t printable_seq(const unsigned char *p)
{
	if (p[0] < 0x20 || p[0] == 0x7f)
		return 0;
	size_t n = utf8_seq(p);
	if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
		return 0; /* U+0080..U+009F */
	if (n == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
		return 0; /* U+2028, U+2029 */
	return n;
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
	for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && !quote;) {
		size_t n = printable_seq(p);
		if (n == 0 || *p == ' ' || *p == '"' || *p == '=')
			quote = true;
		p += n > 0 ? n : 1;
	}
	size_t o = 0, lim = outsize - 5;
	if (quote)
		out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)in; *p != '\0';) {
		size_t n = printable_seq(p);
		size_t need = n == 0 ? 4 : *p == '"' || *p == '\\' ? 2 : n;
		if (o + need + 2 >= lim) {
			out[o++] = '.';
			out[o++] = '.';
			break;
		}
		if (n == 0) {
			snprintf(out + o, 5, "\\x%02x", *p);
			o += 4;
			p++;
		} else if (*p == '"' || *p == '\\') {
			out[o++] = '\\';
			out[o++] = (char)*p++;
		} else {
			memcpy(out + o, p, n);
			o += n;
			p += n;
		}
	}
	if (quote)
		out[o++] = '"';
	out[o] = '\0';
	return out;
}
