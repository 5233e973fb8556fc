#include "core/log.h"

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static bool log_syslog;
static enum sg_log_level log_min = SG_INFO;

/*
 * The writer (issue 12). A line is formatted once, straight into its destination.
 * On an event-loop thread (bound by sg_log_bind_loop) lines go to that thread's buffer
 * and leave in one write(2) at the end of the loop iteration that produced them: the
 * first line of an iteration activates a one-shot event that runs after the callbacks
 * already active, i.e. before the loop waits again. Elsewhere (workers, start-up, the
 * CLI) every line is one write(2) as before. Nothing is dropped: a full buffer is
 * written at once; the buffers of every loop thread are written at exit and from the
 * handlers of fatal signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT: the previous
 * handler, e.g. the sanitizer's, then runs as before).
 */
#define LOG_BUF_SIZE (32 * 1024)
#define LOG_MSG_MAX 2048                     /* the message part of a line, as before */
#define LOG_LINE_MAX (LOG_MSG_MAX + 128 + 64) /* + timestamp, level, event name */
#define LOG_STALE_MS 200                     /* a flush not run by then is done inline */
#define LOG_MAX_THREADS 256

struct log_thread {
	char buf[LOG_BUF_SIZE];
	size_t len;
	struct event_base *base;
	bool pending;       /* a flush event is scheduled on base */
	int64_t pending_ms; /* when it was */
	time_t when_sec;    /* cached "YYYY-MM-DDTHH:MM:SS" of when_sec */
	char when[32];
	size_t when_len;
};

static __thread struct log_thread *log_tl;
static struct log_thread *log_threads[LOG_MAX_THREADS];
static size_t log_nthreads;
static pthread_mutex_t log_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction log_old_act[NSIG];

static void write_fd(const char *p, size_t n)
{
	int tries = 0;
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			/* a non-blocking stderr that is full: wait a little, bounded */
			if (errno == EAGAIN && tries++ < 50) {
				struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
				poll(&pfd, 1, 100);
				continue;
			}
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void flush_thread(struct log_thread *t)
{
	if (t->len > 0)
		write_fd(t->buf, t->len);
	t->len = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct log_thread *t = arg;
	t->pending = false;
	flush_thread(t);
}

/* Exit and fatal signals: every loop thread's buffer (write(2) is async-signal-safe;
 * a line being appended concurrently may come out cut, which beats losing it). */
static void flush_all(void)
{
	size_t n = __atomic_load_n(&log_nthreads, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < n; i++) {
		struct log_thread *t = log_threads[i];
		if (t->len > 0 && t->len <= sizeof(t->buf))
			write_fd(t->buf, t->len);
		t->len = 0;
	}
}

static void on_fatal(int sig, siginfo_t *info, void *uctx)
{
	flush_all();
	/* the previous disposition handles the signal: a fault re-executes, a sent or
	 * raised signal is raised again */
	sigaction(sig, &log_old_act[sig], NULL);
	if (info == NULL || info->si_code <= 0 || sig == SIGABRT)
		raise(sig);
}

void sg_log_bind_loop(struct event_base *base)
{
	if (log_syslog || base == NULL)
		return;
	struct log_thread *t = log_tl;
	if (t != NULL && t->base == base)
		return;
	if (t == NULL) {
		pthread_mutex_lock(&log_reg_lock);
		if (log_nthreads < LOG_MAX_THREADS) {
			t = calloc(1, sizeof(*t));
			if (t != NULL) {
				log_threads[log_nthreads] = t;
				__atomic_store_n(&log_nthreads, log_nthreads + 1, __ATOMIC_RELEASE);
			}
		}
		pthread_mutex_unlock(&log_reg_lock);
		if (t == NULL)
			return; /* unbuffered, as before */
		log_tl = t;
	}
	flush_thread(t);
	t->base = base;
	t->pending = false;
}

void sg_log_flush(void)
{
	if (log_tl != NULL)
		flush_thread(log_tl);
}

void sg_log_unbind_loop(void)
{
	struct log_thread *t = log_tl;
	if (t == NULL)
		return;
	flush_thread(t);
	t->base = NULL;
	t->pending = false;
}

static void at_exit(void)
{
	flush_all();
}

void sg_log_open(bool use_syslog, enum sg_log_level min)
{
	log_syslog = use_syslog;
	log_min = min;
	if (use_syslog) {
		openlog("smtpgate", LOG_PID | LOG_NDELAY, LOG_MAIL);
		return;
	}
	static bool hooked;
	if (hooked)
		return;
	hooked = true;
	atexit(at_exit);
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
	struct sigaction act = {.sa_sigaction = on_fatal, .sa_flags = SA_SIGINFO | SA_ONSTACK};
	sigemptyset(&act.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &act, &log_old_act[sigs[i]]);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ level event=name " into out (>= 128 + event); its length. */
static size_t format_head(struct log_thread *t, char *out, enum sg_log_level lvl,
			  const char *event, const struct timespec *ts)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	char when_buf[32];
	const char *when;
	size_t when_len;
	if (t != NULL && t->when_sec == ts->tv_sec && t->when_len > 0) {
		when = t->when;
		when_len = t->when_len;
	} else {
		struct tm tm;
		gmtime_r(&ts->tv_sec, &tm);
		when_len = strftime(when_buf, sizeof(when_buf), "%Y-%m-%dT%H:%M:%S", &tm);
		when = when_buf;
		if (t != NULL) {
			memcpy(t->when, when_buf, when_len + 1);
			t->when_len = when_len;
			t->when_sec = ts->tv_sec;
		}
	}
	size_t o = 0;
	memcpy(out, when, when_len);
	o += when_len;
	long ms = ts->tv_nsec / 1000000L;
	out[o++] = '.';
	out[o++] = (char)('0' + ms / 100);
	out[o++] = (char)('0' + ms / 10 % 10);
	out[o++] = (char)('0' + ms % 10);
	out[o++] = 'Z';
	out[o++] = ' ';
	size_t n = strlen(names[lvl]);
	memcpy(out + o, names[lvl], n);
	o += n;
	memcpy(out + o, " event=", 7);
	o += 7;
	n = strnlen(event, 64);
	memcpy(out + o, event, n);
	o += n;
	out[o++] = ' ';
	return o;
}

void sg_log(enum sg_log_level lvl, const char *event, const char *fmt, ...)
{
	if (lvl < log_min)
		return;
	va_list ap;
	if (log_syslog) {
		char msg[LOG_MSG_MAX];
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
		syslog(prio[lvl], "event=%s %s", event, msg);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct log_thread *t = log_tl;
	char line[LOG_LINE_MAX];
	char *out = line;
	if (t != NULL && t->base != NULL) {
		int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		/* room for a whole line, and no flush left behind by a loop that ended */
		if (sizeof(t->buf) - t->len < LOG_LINE_MAX ||
		    (t->pending && now_ms - t->pending_ms > LOG_STALE_MS))
			flush_thread(t);
		out = t->buf + t->len;
		if (!t->pending && event_base_once(t->base, -1, EV_TIMEOUT, on_flush, t, NULL) == 0) {
			t->pending = true;
			t->pending_ms = now_ms;
		}
	}
	size_t o = format_head(t, out, lvl, event, &ts);
	va_start(ap, fmt);
	int n = vsnprintf(out + o, LOG_MSG_MAX, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	o += (size_t)n < LOG_MSG_MAX ? (size_t)n : LOG_MSG_MAX - 1;
	out[o++] = '\n';
	if (out == line)
		write_fd(line, o); /* one write per line: lines of threads never interleave */
	else if (t->pending)
		t->len += o;
	else
		write_fd(out, o); /* the flush could not be scheduled: write now */
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
