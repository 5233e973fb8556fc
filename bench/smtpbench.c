/*
 * smtpbench: an SMTP load generator for smtpgate's benchmark (issue 7).
 *
 * Self-contained on purpose: epoll and OpenSSL only, none of the server's I/O code, so a
 * bug in the server's event loop cannot hide in the measuring tool. Loopback only: the
 * host must be 127.0.0.0/8 or ::1 (it is a benchmark, not a flooding tool).
 *
 * Two modes:
 *  - sessions (default): N slots (--concurrency) each run whole sessions
 *      connect, [implicit TLS], 220, EHLO, [STARTTLS, TLS 1.3 handshake, EHLO],
 *      [AUTH mech], (MAIL, RCPT, DATA, body) x --msgs-per-session, QUIT
 *    until --sessions are done or --duration has passed (one of them is required; both
 *    are capped). Prints sessions/s, messages/s, errors by reply code, latency of whole
 *    sessions p50/p90/p99, server CPU ms per session (--pid) and, with --verify-dir,
 *    checks that the number of stored messages grew by the number of 250s after DATA.
 *  - idle (--idle N): opens N connections (at most --concurrency handshaking at a time),
 *    EHLO, optionally STARTTLS + EHLO, holds them, and reports the server's memory (PSS of
 *    --pid and its descendants, /proc/PID/smaps_rollup) per held connection.
 *
 * Every TLS session is a full TLS 1.3 handshake: no session tickets, no cache.
 * Certificates are not verified (the peers use throw-away self-signed ones).
 * The last line is machine readable: "RESULT key=value ..." (bench/run-bench parses it).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define MAX_CONCURRENCY 20000
#define MAX_SESSIONS 10000000UL
#define MAX_DURATION 3600
#define MAX_MSG_SIZE (64UL * 1024 * 1024)
#define MAX_MSGS_PER_SESSION 10000
#define MAX_THREADS 64
#define RBUF_SIZE 8192
#define SESSION_TIMEOUT_MS 30000
#define DRAIN_GRACE_MS 15000
#define MAX_LAT_SAMPLES 20000000UL

enum tls_mode { TLS_NONE, TLS_STARTTLS, TLS_IMPLICIT };
enum auth_mech { AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN, AUTH_CRAM, AUTH_SCRAM };

static struct {
	char host[256];
	char port[16];
	unsigned concurrency;
	unsigned long sessions;
	unsigned duration;
	size_t msg_size;
	unsigned msgs_per_session;
	enum tls_mode tls;
	enum auth_mech auth;
	char user[256];
	char password[256];
	bool pipelining;
	unsigned long idle;
	unsigned hold;
	char from[256];
	char to[256];
	long pid;
	char verify_dir[PATH_MAX];
	char verify_login[256];
	unsigned threads;
	bool quiet;
} O;

/* ---------------------------------------------------------------- helpers */

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("smtpbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned long parse_ul(const char *s, const char *what, unsigned long lo, unsigned long hi)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
		die("bad %s '%s' (%lu..%lu)", what, s, lo, hi);
	return v;
}

static void copy_opt(char *dst, size_t size, const char *src, const char *what)
{
	size_t n = strlen(src);
	if (n >= size)
		die("%s too long", what);
	memcpy(dst, src, n + 1);
}

/* base64 of len bytes into out (size >= 4*ceil(len/3)+1); returns its length. */
static size_t b64_enc(const unsigned char *in, size_t len, char *out, size_t outsize)
{
	if (outsize < 4 * ((len + 2) / 3) + 1)
		return 0;
	return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Decode base64 (no whitespace); returns the decoded length or -1. */
static long b64_dec(const char *in, size_t len, unsigned char *out, size_t outsize)
{
	if (len % 4 != 0 || len / 4 * 3 > outsize)
		return -1;
	if (len == 0)
		return 0;
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0)
		return -1;
	if (in[len - 1] == '=')
		n--;
	if (in[len - 2] == '=')
		n--;
	return n;
}

/* ---------------------------------------------------- /proc of the server */

/* The server's process tree: pid and every descendant (Postfix forks smtpd per client). */
static size_t proc_tree(long root, long *out, size_t max)
{
	size_t n = 0;
	if (max == 0)
		return 0;
	out[n++] = root;
	DIR *d = opendir("/proc");
	if (d == NULL)
		return n;
	/* Collect (pid, ppid) pairs once, then close the set under "child of". */
	static long pids[65536], ppids[65536];
	size_t np = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && np < 65536) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char path[300], buf[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t r = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[r] = '\0';
		char *p = strrchr(buf, ')');
		long ppid = 0;
		if (p == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1)
			continue;
		pids[np] = strtol(e->d_name, NULL, 10);
		ppids[np] = ppid;
		np++;
	}
	closedir(d);
	for (size_t i = 0; i < n && n < max; i++)
		for (size_t j = 0; j < np && n < max; j++)
			if (ppids[j] == out[i])
				out[n++] = pids[j];
	return n;
}

/* utime+stime+cutime+cstime of the tree, in clock ticks (reaped children count through
 * their parent's cutime, so processes that come and go during a run are included). */
static unsigned long long tree_cpu_ticks(long root)
{
	static long tree[65536];
	size_t n = proc_tree(root, tree, 65536);
	unsigned long long sum = 0;
	for (size_t i = 0; i < n; i++) {
		char path[64], buf[1024];
		snprintf(path, sizeof(path), "/proc/%ld/stat", tree[i]);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t r = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[r] = '\0';
		char *p = strrchr(buf, ')');
		unsigned long long ut, st, cut, cst;
		/* fields after ')': 3 state ... 14 utime 15 stime 16 cutime 17 cstime */
		if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
					   "%llu %llu", &ut, &st, &cut, &cst) != 4)
			continue;
		sum += ut + st + cut + cst;
	}
	return sum;
}

/* Sum of Pss (KiB) over the tree, from smaps_rollup. */
static unsigned long long tree_pss_kib(long root, size_t *nprocs)
{
	static long tree[65536];
	size_t n = proc_tree(root, tree, 65536);
	unsigned long long sum = 0;
	for (size_t i = 0; i < n; i++) {
		char path[64], line[256];
		snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", tree[i]);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL) {
			unsigned long long v;
			if (sscanf(line, "Pss: %llu kB", &v) == 1) {
				sum += v;
				break;
			}
		}
		fclose(f);
	}
	if (nprocs)
		*nprocs = n;
	return sum;
}

/* Regular files in DIR (not recursive); -1 when DIR cannot be read. */
static long count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static long verify_count(void)
{
	if (O.verify_dir[0] == '\0')
		return -1;
	if (O.verify_login[0] == '\0')
		return count_files(O.verify_dir);
	char path[PATH_MAX + 300];
	snprintf(path, sizeof(path), "%s/mail/%s/new", O.verify_dir, O.verify_login);
	long n = count_files(path);
	return n < 0 ? 0 : n; /* the inbox is created at the first message */
}

/* ------------------------------------------------------------ connections */

enum state {
	S_FREE,
	S_CONNECT,
	S_TLS_HS,
	S_GREET,
	S_EHLO,
	S_STARTTLS,
	S_AUTH,
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_BODY,
	S_QUIT,
	S_IDLE,
};

struct stats {
	unsigned long sessions_ok, sessions_failed, msgs_ok;
	unsigned long code_err[600]; /* unexpected replies by code */
	unsigned long err_connect, err_tls, err_eof, err_timeout, err_proto;
	double *lat_ms;
	size_t nlat, lat_cap;
	uint64_t last_done_us;
};

struct thr;

struct conn {
	struct thr *t;
	int fd;
	enum state st;
	SSL *ssl;
	bool tls_on;
	int auth_step;
	unsigned msgs_done;
	int pipe_pending; /* replies still expected for a pipelined MAIL/RCPT/DATA */
	bool failed;
	uint64_t start_us, deadline_us;
	char rbuf[RBUF_SIZE];
	size_t rlen;
	char *obuf;
	size_t olen, ooff, ocap;
	char scram_bare[512];
	size_t scram_bare_len;
	unsigned char scram_server_sig[32];
};

struct thr {
	pthread_t tid;
	int ep;
	unsigned nslots;
	struct conn *slots;
	struct stats st;
	/* SCRAM clients keep the salted password: cache the last (salt, iterations). */
	unsigned char scram_salt[128];
	long scram_salt_len;
	unsigned long scram_iter;
	unsigned char scram_sp[32];
	unsigned long idle_ready, idle_started;
	struct conn **pending; /* slots to start again (no recursion through conn_close) */
	unsigned npending;
};

static SSL_CTX *g_ctx;
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static char *g_body;
static size_t g_body_len;
static atomic_ulong g_started;
static uint64_t g_t0_us, g_end_us;
static volatile bool g_stop_starting;

static void conn_start(struct conn *c);

static void stats_lat(struct stats *s, double ms)
{
	if (s->nlat == s->lat_cap) {
		if (s->lat_cap >= MAX_LAT_SAMPLES)
			return;
		size_t cap = s->lat_cap ? s->lat_cap * 2 : 4096;
		double *p = realloc(s->lat_ms, cap * sizeof(*p));
		if (p == NULL)
			return;
		s->lat_ms = p;
		s->lat_cap = cap;
	}
	s->lat_ms[s->nlat++] = ms;
}

static void out_append(struct conn *c, const char *p, size_t n)
{
	if (c->ooff == c->olen)
		c->ooff = c->olen = 0;
	if (c->olen + n > c->ocap) {
		size_t cap = c->olen + n + 1024;
		char *b = realloc(c->obuf, cap);
		if (b == NULL)
			die("out of memory");
		c->obuf = b;
		c->ocap = cap;
	}
	memcpy(c->obuf + c->olen, p, n);
	c->olen += n;
}

static void out_printf(struct conn *c, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		die("command too long");
	out_append(c, line, (size_t)n);
}

/* Close the connection; ok=false counts a failed session. Starts the next one. */
static void conn_close(struct conn *c, bool ok)
{
	struct stats *s = &c->t->st;
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		/* RST, no TIME_WAIT: thousands of sessions a second on loopback would otherwise
		 * run out of ephemeral ports. The session is over (221 received). */
		struct linger lg = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->fd);
		c->fd = -1;
	}
	uint64_t now = now_us();
	if (c->st != S_FREE && c->st != S_IDLE) {
		if (ok && !c->failed) {
			s->sessions_ok++;
			stats_lat(s, (double)(now - c->start_us) / 1000.0);
		} else {
			s->sessions_failed++;
		}
		s->last_done_us = now;
	}
	c->st = S_FREE;
	c->rlen = 0;
	c->olen = c->ooff = 0;
	if (O.idle == 0 && c->t->pending && c->t->npending < c->t->nslots)
		c->t->pending[c->t->npending++] = c;
}

static int g_debug; /* SMTPBENCH_DEBUG=N: describe the first N failures on stderr */

static void debug_fail(const struct conn *c, const char *what, int code, const char *text)
{
	if (g_debug <= 0)
		return;
	g_debug--;
	fprintf(stderr, "smtpbench: failure in state %d: %s %d %s (errno %s)\n", (int)c->st, what,
		code, text ? text : "", strerror(errno));
}

static void fail(struct conn *c, unsigned long *counter)
{
	debug_fail(c, "fail", 0, NULL);
	if (counter)
		(*counter)++;
	c->failed = true;
	conn_close(c, false);
}

/* Unexpected reply: count it by code, then QUIT (ignoring replies until 221 or EOF). */
static void bad_reply(struct conn *c, int code)
{
	debug_fail(c, "reply", code, NULL);
	if (code >= 0 && code < 600)
		c->t->st.code_err[code]++;
	c->failed = true;
	if (c->st == S_QUIT) {
		conn_close(c, false);
		return;
	}
	c->st = S_QUIT;
	out_printf(c, "QUIT\r\n");
}

static void conn_start(struct conn *c)
{
	struct thr *t = c->t;
	if (O.idle == 0) {
		if (g_stop_starting)
			return;
		if (O.sessions) {
			unsigned long n = atomic_fetch_add(&g_started, 1);
			if (n >= O.sessions)
				return;
		} else if (now_us() >= g_end_us) {
			return;
		}
	}
	int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		t->st.err_connect++;
		t->st.sessions_failed++;
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(c, 0, offsetof(struct conn, rbuf));
	c->t = t;
	c->fd = fd;
	c->st = S_CONNECT;
	c->start_us = now_us();
	c->deadline_us = c->start_us + (uint64_t)SESSION_TIMEOUT_MS * 1000u;
	c->rlen = 0;
	c->olen = c->ooff = 0;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = c};
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) != 0 && errno != EINPROGRESS) {
		t->st.err_connect++;
		c->failed = true;
		conn_close(c, false);
	}
}

static bool tls_begin(struct conn *c)
{
	c->ssl = SSL_new(g_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return false;
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	SSL_set_connect_state(c->ssl);
	c->st = S_TLS_HS;
	return true;
}

static void send_ehlo(struct conn *c)
{
	c->st = S_EHLO;
	out_printf(c, "EHLO bench.client.test\r\n");
}

static void send_msg_start(struct conn *c)
{
	if (c->msgs_done >= O.msgs_per_session) { /* --msgs-per-session 0: sessions only */
		c->st = S_QUIT;
		out_printf(c, "QUIT\r\n");
		return;
	}
	if (O.pipelining) {
		out_printf(c, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", O.from, O.to);
		c->pipe_pending = 3;
	} else {
		out_printf(c, "MAIL FROM:<%s>\r\n", O.from);
	}
	c->st = S_MAIL;
}

static void scram_escape(const char *in, char *out, size_t size)
{
	size_t o = 0;
	for (const char *p = in; *p && o + 4 < size; p++) {
		if (*p == '=') {
			memcpy(out + o, "=3D", 3);
			o += 3;
		} else if (*p == ',') {
			memcpy(out + o, "=2C", 3);
			o += 3;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
}

static void send_auth_start(struct conn *c)
{
	char raw[800], b64[1200];
	size_t n;
	c->st = S_AUTH;
	c->auth_step = 0;
	switch (O.auth) {
	case AUTH_PLAIN: {
		size_t ul = strlen(O.user), pl = strlen(O.password);
		raw[0] = '\0';
		memcpy(raw + 1, O.user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, O.password, pl);
		n = b64_enc((unsigned char *)raw, 2 + ul + pl, b64, sizeof(b64));
		out_printf(c, "AUTH PLAIN %.*s\r\n", (int)n, b64);
		break;
	}
	case AUTH_LOGIN:
		out_printf(c, "AUTH LOGIN\r\n");
		break;
	case AUTH_CRAM:
		out_printf(c, "AUTH CRAM-MD5\r\n");
		break;
	case AUTH_SCRAM: {
		unsigned char nonce[18];
		char nb64[32], esc[600];
		RAND_bytes(nonce, sizeof(nonce));
		b64_enc(nonce, sizeof(nonce), nb64, sizeof(nb64));
		scram_escape(O.user, esc, sizeof(esc));
		int m = snprintf(c->scram_bare, sizeof(c->scram_bare), "n=%s,r=%s", esc, nb64);
		if (m < 0 || (size_t)m >= sizeof(c->scram_bare))
			die("user too long for SCRAM");
		c->scram_bare_len = (size_t)m;
		m = snprintf(raw, sizeof(raw), "n,,%s", c->scram_bare);
		n = b64_enc((unsigned char *)raw, (size_t)m, b64, sizeof(b64));
		out_printf(c, "AUTH SCRAM-SHA-256 %.*s\r\n", (int)n, b64);
		break;
	}
	case AUTH_NONE:
		break;
	}
}

static void after_ehlo(struct conn *c)
{
	if (O.idle) {
		c->st = S_IDLE;
		c->t->idle_ready++;
		return;
	}
	if (O.auth != AUTH_NONE)
		send_auth_start(c);
	else
		send_msg_start(c);
}

/* SCRAM-SHA-256 client final (RFC 5802 section 3); false on a malformed challenge. */
static bool scram_final(struct conn *c, const char *sf, size_t sflen)
{
	struct thr *t = c->t;
	const char *r = NULL, *s = NULL, *i = NULL;
	size_t rl = 0, sl = 0;
	char copy[1024];
	if (sflen >= sizeof(copy))
		return false;
	memcpy(copy, sf, sflen);
	copy[sflen] = '\0';
	for (char *save = NULL, *a = strtok_r(copy, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		if (strncmp(a, "r=", 2) == 0)
			r = a + 2, rl = strlen(a + 2);
		else if (strncmp(a, "s=", 2) == 0)
			s = a + 2, sl = strlen(a + 2);
		else if (strncmp(a, "i=", 2) == 0)
			i = a + 2;
	}
	if (!r || !s || !i)
		return false;
	unsigned long iter = strtoul(i, NULL, 10);
	unsigned char salt[128];
	long saltlen = b64_dec(s, sl, salt, sizeof(salt));
	if (saltlen <= 0 || iter == 0 || iter > 1000000)
		return false;
	if (!(t->scram_iter == iter && t->scram_salt_len == saltlen &&
	      memcmp(t->scram_salt, salt, (size_t)saltlen) == 0)) {
		if (PKCS5_PBKDF2_HMAC(O.password, (int)strlen(O.password), salt, (int)saltlen,
				      (int)iter, EVP_sha256(), 32, t->scram_sp) != 1)
			return false;
		memcpy(t->scram_salt, salt, (size_t)saltlen);
		t->scram_salt_len = saltlen;
		t->scram_iter = iter;
	}
	char cfwp[400];
	int m = snprintf(cfwp, sizeof(cfwp), "c=biws,r=%.*s", (int)rl, r);
	if (m < 0 || (size_t)m >= sizeof(cfwp))
		return false;
	char am[2048];
	int aml = snprintf(am, sizeof(am), "%.*s,%.*s,%s", (int)c->scram_bare_len, c->scram_bare,
			   (int)sflen, sf, cfwp);
	if (aml < 0 || (size_t)aml >= sizeof(am))
		return false;
	unsigned char ck[32], sk[32], sig[32], proof[32], servk[32];
	unsigned int len = 32;
	HMAC(EVP_sha256(), t->scram_sp, 32, (const unsigned char *)"Client Key", 10, ck, &len);
	EVP_Digest(ck, 32, sk, NULL, EVP_sha256(), NULL);
	HMAC(EVP_sha256(), sk, 32, (unsigned char *)am, (size_t)aml, sig, &len);
	for (int k = 0; k < 32; k++)
		proof[k] = ck[k] ^ sig[k];
	HMAC(EVP_sha256(), t->scram_sp, 32, (const unsigned char *)"Server Key", 10, servk, &len);
	HMAC(EVP_sha256(), servk, 32, (unsigned char *)am, (size_t)aml, c->scram_server_sig, &len);
	char pb64[64], final[600], fb64[900];
	b64_enc(proof, 32, pb64, sizeof(pb64));
	m = snprintf(final, sizeof(final), "%s,p=%s", cfwp, pb64);
	if (m < 0 || (size_t)m >= sizeof(final))
		return false;
	size_t n = b64_enc((unsigned char *)final, (size_t)m, fb64, sizeof(fb64));
	out_printf(c, "%.*s\r\n", (int)n, fb64);
	return true;
}

/* An AUTH reply; text is what follows "334 ". */
static void on_auth_reply(struct conn *c, int code, const char *text, size_t tlen)
{
	char b64[1200];
	unsigned char dec[1024];
	if (code == 235) {
		send_msg_start(c);
		return;
	}
	if (code != 334) {
		bad_reply(c, code);
		return;
	}
	c->auth_step++;
	switch (O.auth) {
	case AUTH_LOGIN: {
		const char *v = c->auth_step == 1 ? O.user : O.password;
		size_t n = b64_enc((const unsigned char *)v, strlen(v), b64, sizeof(b64));
		if (c->auth_step > 2)
			goto bad;
		out_printf(c, "%.*s\r\n", (int)n, b64);
		return;
	}
	case AUTH_CRAM: {
		long dl = b64_dec(text, tlen, dec, sizeof(dec));
		if (dl <= 0 || c->auth_step > 1)
			goto bad;
		unsigned char mac[16];
		unsigned int ml = 16;
		HMAC(EVP_md5(), O.password, (int)strlen(O.password), dec, (size_t)dl, mac, &ml);
		char resp[600];
		int m = snprintf(resp, sizeof(resp), "%s ", O.user);
		for (int k = 0; k < 16 && m > 0 && (size_t)m + 3 < sizeof(resp); k++)
			m += snprintf(resp + m, sizeof(resp) - (size_t)m, "%02x", mac[k]);
		size_t n = b64_enc((unsigned char *)resp, (size_t)m, b64, sizeof(b64));
		out_printf(c, "%.*s\r\n", (int)n, b64);
		return;
	}
	case AUTH_SCRAM: {
		long dl = b64_dec(text, tlen, dec, sizeof(dec) - 1);
		if (dl <= 0)
			goto bad;
		if (c->auth_step == 1) {
			if (!scram_final(c, (char *)dec, (size_t)dl))
				goto bad;
			return;
		}
		if (c->auth_step == 2) { /* server-final: v=ServerSignature */
			char expect[64];
			size_t n = b64_enc(c->scram_server_sig, 32, expect, sizeof(expect));
			if ((size_t)dl != n + 2 || memcmp(dec, "v=", 2) != 0 ||
			    memcmp(dec + 2, expect, n) != 0)
				goto bad;
			out_printf(c, "\r\n");
			return;
		}
		goto bad;
	}
	default:
		goto bad;
	}
bad:
	c->t->st.err_proto++;
	bad_reply(c, -1);
}

/* One complete reply (the code of its last line; text = the last line after "NNN "). */
static void on_reply(struct conn *c, int code, const char *text, size_t tlen)
{
	switch (c->st) {
	case S_GREET:
		if (code != 220)
			{ bad_reply(c, code); return; }
		send_ehlo(c);
		return;
	case S_EHLO:
		if (code != 250)
			{ bad_reply(c, code); return; }
		if (O.tls == TLS_STARTTLS && !c->tls_on) {
			c->st = S_STARTTLS;
			out_printf(c, "STARTTLS\r\n");
			return;
		}
		after_ehlo(c);
		return;
	case S_STARTTLS:
		if (code != 220)
			{ bad_reply(c, code); return; }
		if (c->rlen != 0) { /* bytes after 220 before the handshake: refuse (CVE-2011-0411) */
			c->t->st.err_proto++;
			{ fail(c, NULL); return; }
		}
		if (!tls_begin(c))
			{ fail(c, &c->t->st.err_tls); return; }
		return;
	case S_AUTH:
		on_auth_reply(c, code, text, tlen);
		return;
	case S_MAIL:
		if (code != 250)
			{ bad_reply(c, code); return; }
		c->st = S_RCPT;
		if (!O.pipelining)
			out_printf(c, "RCPT TO:<%s>\r\n", O.to);
		return;
	case S_RCPT:
		if (code != 250 && code != 251)
			{ bad_reply(c, code); return; }
		c->st = S_DATA;
		if (!O.pipelining)
			out_printf(c, "DATA\r\n");
		return;
	case S_DATA:
		if (code != 354)
			{ bad_reply(c, code); return; }
		c->st = S_BODY;
		out_append(c, g_body, g_body_len);
		return;
	case S_BODY:
		if (code != 250)
			{ bad_reply(c, code); return; }
		c->t->st.msgs_ok++;
		c->msgs_done++;
		send_msg_start(c);
		return;
	case S_QUIT:
		if (code == 221)
			conn_close(c, true);
		return; /* the rest of a pipelined group after an error */
	case S_IDLE:
		return; /* e.g. a 421 at shutdown */
	default:
		c->t->st.err_proto++;
		fail(c, NULL);
	}
}

/* Parse complete replies out of rbuf. false when the connection is gone. */
static bool parse_replies(struct conn *c)
{
	for (int guard = 0; guard < 1000; guard++) {
		char *end = memmem(c->rbuf, c->rlen, "\r\n", 2);
		if (end == NULL) {
			if (c->rlen == sizeof(c->rbuf)) {
				c->t->st.err_proto++;
				fail(c, NULL);
				return false;
			}
			return true;
		}
		/* Find the final line of this reply: lines "NNN-" continue. */
		char *line = c->rbuf;
		char *last_end = end;
		for (;;) {
			size_t ll = (size_t)(last_end - line);
			if (ll < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
			    !isdigit((unsigned char)line[2])) {
				c->t->st.err_proto++;
				fail(c, NULL);
				return false;
			}
			if (ll > 3 && line[3] == '-') {
				line = last_end + 2;
				last_end = memmem(line, c->rlen - (size_t)(line - c->rbuf), "\r\n", 2);
				if (last_end == NULL) {
					if (c->rlen == sizeof(c->rbuf)) {
						c->t->st.err_proto++;
						fail(c, NULL);
						return false;
					}
					return true;
				}
				continue;
			}
			break;
		}
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		size_t ll = (size_t)(last_end - line);
		char text[1100];
		size_t tlen = ll > 4 ? ll - 4 : 0;
		if (tlen >= sizeof(text))
			tlen = sizeof(text) - 1;
		memcpy(text, line + 4 > last_end ? last_end : line + 4, tlen);
		text[tlen] = '\0';
		size_t used = (size_t)(last_end + 2 - c->rbuf);
		memmove(c->rbuf, c->rbuf + used, c->rlen - used);
		c->rlen -= used;
		enum state before = c->st;
		int fd_before = c->fd;
		on_reply(c, code, text, tlen);
		if (c->fd != fd_before || c->st == S_FREE)
			return false; /* closed (and maybe restarted) */
		if (before == S_STARTTLS && c->st == S_TLS_HS)
			return true; /* the rest goes through TLS */
	}
	return true;
}

/* Flush output; false if the connection failed. */
static bool flush_out(struct conn *c)
{
	for (int guard = 0; guard < 10000 && c->ooff < c->olen; guard++) {
		size_t n = c->olen - c->ooff;
		if (c->tls_on) {
			ERR_clear_error();
			int r = SSL_write(c->ssl, c->obuf + c->ooff, (int)(n > INT_MAX ? INT_MAX : n));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return true;
				fail(c, &c->t->st.err_tls);
				return false;
			}
			c->ooff += (size_t)r;
		} else {
			ssize_t r = send(c->fd, c->obuf + c->ooff, n, MSG_NOSIGNAL);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return true;
				fail(c, &c->t->st.err_eof);
				return false;
			}
			c->ooff += (size_t)r;
		}
	}
	return true;
}

/* Drive the connection as far as it goes without blocking. */
static void conn_progress(struct conn *c, uint32_t events)
{
	if (c->st == S_CONNECT) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
			errno = err;
			fail(c, &c->t->st.err_connect);
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLIN)))
			return;
		if (O.tls == TLS_IMPLICIT) {
			if (!tls_begin(c))
				{ fail(c, &c->t->st.err_tls); return; }
		} else {
			c->st = S_GREET;
		}
	}
	for (int round = 0; round < 64; round++) {
		int fd = c->fd;
		if (c->st == S_TLS_HS) {
			ERR_clear_error();
			int r = SSL_connect(c->ssl);
			if (r != 1) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return;
				{ fail(c, &c->t->st.err_tls); return; }
			}
			c->tls_on = true;
			if (O.tls == TLS_IMPLICIT)
				c->st = S_GREET;
			else
				send_ehlo(c);
		}
		if (!flush_out(c))
			return;
		/* read what is there */
		bool progressed = false, eof = false;
		unsigned long *hard = NULL;
		for (int g = 0; g < 64 && c->rlen < sizeof(c->rbuf); g++) {
			size_t room = sizeof(c->rbuf) - c->rlen;
			ssize_t r;
			if (c->tls_on) {
				ERR_clear_error();
				int n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)room);
				if (n <= 0) {
					int e = SSL_get_error(c->ssl, n);
					if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
						break;
					if (e == SSL_ERROR_ZERO_RETURN) {
						eof = true;
						break;
					}
					if (e == SSL_ERROR_SYSCALL && n == 0) {
						eof = true;
						break;
					}
					hard = &c->t->st.err_tls; /* after parsing what came before */
					break;
				}
				r = n;
			} else {
				r = recv(c->fd, c->rbuf + c->rlen, room, 0);
				if (r < 0) {
					if (errno == EAGAIN || errno == EINTR)
						break;
					hard = &c->t->st.err_eof;
					break;
				}
				if (r == 0) {
					eof = true;
					break;
				}
			}
			c->rlen += (size_t)r;
			progressed = true;
			if (c->st == S_STARTTLS)
				break; /* parse before reading anything the TLS layer should see */
		}
		if (progressed) {
			if (!parse_replies(c))
				return;
			if (c->fd != fd)
				return;
		}
		if (hard) {
			if (c->st == S_QUIT && c->failed)
				{ conn_close(c, false); return; }
			{ fail(c, hard); return; }
		}
		if (eof) {
			if (c->st == S_QUIT && c->failed)
				{ conn_close(c, false); return; }
			{ fail(c, &c->t->st.err_eof); return; }
		}
		if (!progressed && c->ooff >= c->olen && c->st != S_TLS_HS)
			return;
		if (!progressed && c->st != S_TLS_HS && !(c->tls_on && SSL_pending(c->ssl) > 0)) {
			if (!flush_out(c))
				return;
			return;
		}
	}
}

static void check_timeouts(struct thr *t, uint64_t now)
{
	for (unsigned i = 0; i < t->nslots; i++) {
		struct conn *c = &t->slots[i];
		if (c->st != S_FREE && c->st != S_IDLE && now > c->deadline_us)
			fail(c, &t->st.err_timeout);
	}
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	struct epoll_event evs[256];
	for (unsigned i = 0; i < t->nslots; i++) {
		t->slots[i].t = t;
		t->slots[i].fd = -1;
		t->slots[i].st = S_FREE;
		conn_start(&t->slots[i]);
	}
	uint64_t last_check = now_us();
	uint64_t hard_end = O.duration ? g_end_us + (uint64_t)DRAIN_GRACE_MS * 1000u
				       : g_t0_us + (uint64_t)MAX_DURATION * 1000000u;
	for (;;) {
		int n = epoll_wait(t->ep, evs, 256, 50);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->st != S_FREE)
				conn_progress(c, evs[i].events);
		}
		for (unsigned guard = 0; t->npending > 0 && guard < t->nslots; guard++)
			conn_start(t->pending[--t->npending]);
		uint64_t now = now_us();
		if (now - last_check > 200000) {
			check_timeouts(t, now);
			last_check = now;
		}
		bool busy = t->npending > 0;
		for (unsigned i = 0; i < t->nslots && !busy; i++)
			busy = t->slots[i].st != S_FREE;
		if (!busy)
			break;
		if (now > hard_end) {
			for (unsigned i = 0; i < t->nslots; i++)
				if (t->slots[i].st != S_FREE) {
					g_stop_starting = true;
					fail(&t->slots[i], &t->st.err_timeout);
				}
			break;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------ idle mode */

static int run_idle(void)
{
	struct thr *t = calloc(1, sizeof(*t));
	if (t == NULL)
		die("out of memory");
	t->ep = epoll_create1(EPOLL_CLOEXEC);
	t->nslots = (unsigned)O.idle;
	t->slots = calloc(O.idle, sizeof(struct conn));
	if (t->slots == NULL)
		die("out of memory");
	size_t np = 0;
	unsigned long long pss0 = O.pid ? tree_pss_kib(O.pid, &np) : 0;
	uint64_t t0 = now_us();
	uint64_t hard_end = t0 + 120u * 1000000u;
	unsigned long next = 0;
	struct epoll_event evs[256];
	for (;;) {
		/* keep at most --concurrency connections in set-up */
		unsigned long setting_up = t->idle_started - t->idle_ready - t->st.sessions_failed;
		while (next < O.idle && setting_up < O.concurrency) {
			struct conn *c = &t->slots[next++];
			c->t = t;
			c->fd = -1;
			conn_start(c);
			t->idle_started++;
			setting_up++;
		}
		int n = epoll_wait(t->ep, evs, 256, 50);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->st != S_FREE && c->st != S_IDLE)
				conn_progress(c, evs[i].events);
		}
		uint64_t now = now_us();
		check_timeouts(t, now);
		if (t->idle_ready + t->st.sessions_failed >= O.idle || now > hard_end)
			break;
	}
	double setup_s = (double)(now_us() - t0) / 1e6;
	/* let the server settle (lazy frees, timers), then measure */
	struct timespec hold = {.tv_sec = O.hold, .tv_nsec = 0};
	nanosleep(&hold, NULL);
	unsigned long alive = 0;
	for (unsigned long i = 0; i < O.idle; i++)
		if (t->slots[i].st == S_IDLE)
			alive++;
	size_t np1 = 0;
	unsigned long long pss1 = O.pid ? tree_pss_kib(O.pid, &np1) : 0;
	double per = alive && O.pid ? ((double)pss1 - (double)pss0) / (double)alive : 0.0;
	printf("idle: %lu/%lu connections held (%s), set up in %.2f s, %lu failed\n", alive, O.idle,
	       O.tls == TLS_STARTTLS ? "after STARTTLS+EHLO" : O.tls == TLS_IMPLICIT ? "implicit TLS"
										    : "after EHLO",
	       setup_s, t->st.sessions_failed);
	if (O.pid)
		printf("server PSS: %llu KiB before (%zu procs), %llu KiB after (%zu procs): %.1f KiB "
		       "per connection\n",
		       pss0, np, pss1, np1, per);
	for (int code = 0; code < 600; code++)
		if (t->st.code_err[code])
			printf("  reply %d: %lu\n", code, t->st.code_err[code]);
	printf("RESULT mode=idle held=%lu wanted=%lu failed=%lu pss_before_kib=%llu pss_after_kib=%llu "
	       "kib_per_conn=%.2f err_connect=%lu err_tls=%lu err_eof=%lu err_timeout=%lu\n",
	       alive, O.idle, t->st.sessions_failed, pss0, pss1, per, t->st.err_connect, t->st.err_tls,
	       t->st.err_eof, t->st.err_timeout);
	fflush(stdout);
	for (unsigned long i = 0; i < O.idle; i++)
		if (t->slots[i].fd >= 0) {
			struct linger lg = {1, 0};
			setsockopt(t->slots[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(t->slots[i].fd);
			if (t->slots[i].ssl)
				SSL_free(t->slots[i].ssl);
		}
	return alive == O.idle ? 0 : 1;
}

/* ------------------------------------------------------------ main */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void build_body(void)
{
	/* headers + 76-character lines; ends with CRLF.CRLF; total = --msg-size bytes */
	size_t want = O.msg_size < 256 ? 256 : O.msg_size;
	g_body = malloc(want + 256);
	if (g_body == NULL)
		die("out of memory");
	int h = snprintf(g_body, 256,
			 "From: <%s>\r\nTo: <%s>\r\nSubject: smtpbench\r\n"
			 "Message-ID: <bench@smtpbench.test>\r\n\r\n",
			 O.from, O.to);
	size_t len = (size_t)h;
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	while (len + 5 < want) {
		size_t line = want - len - 5 > 76 ? 76 : want - len - 5;
		if (line < 2)
			break;
		for (size_t i = 0; i < line - 2; i++)
			g_body[len + i] = alphabet[(len + i) % (sizeof(alphabet) - 1)];
		g_body[len + line - 2] = '\r';
		g_body[len + line - 1] = '\n';
		len += line;
	}
	memcpy(g_body + len, ".\r\n", 3);
	len += 3;
	g_body_len = len;
}

static void usage(FILE *f)
{
	fputs("usage: smtpbench [--host 127.0.0.1] --port PORT [--concurrency N]\n"
	      "                 (--sessions N | --duration SECONDS | --idle N [--hold S])\n"
	      "                 [--msg-size BYTES] [--msgs-per-session N] [--pipelining]\n"
	      "                 [--tls none|starttls|implicit]\n"
	      "                 [--auth none|PLAIN|LOGIN|CRAM-MD5|SCRAM-SHA-256 --user U --password P]\n"
	      "                 [--from ADDR] [--to ADDR] [--pid SERVER_PID]\n"
	      "                 [--verify-dir DIR [--verify-login LOGIN]] [--threads N] [--quiet]\n"
	      "Loopback only. --pid: server CPU ms per session (utime+stime of PID and its\n"
	      "descendants); in --idle mode the server's PSS per held connection.\n"
	      "--verify-dir DIR: files in DIR (or in DIR/mail/LOGIN/new with --verify-login)\n"
	      "must grow by the number of messages accepted (250 after DATA).\n",
	      f);
}

int main(int argc, char **argv)
{
	copy_opt(O.host, sizeof(O.host), "127.0.0.1", "host");
	O.concurrency = 16;
	O.msg_size = 4096;
	O.msgs_per_session = 1;
	O.hold = 2;
	O.threads = 1;
	copy_opt(O.from, sizeof(O.from), "bench@bench.test", "from");
	copy_opt(O.to, sizeof(O.to), "bench@bench.test", "to");
	enum { O_HOST = 1000, O_PORT, O_CONC, O_SESS, O_DUR, O_SIZE, O_MPS, O_TLS, O_AUTH, O_USER,
	       O_PASS, O_PIPE, O_IDLE, O_HOLD, O_FROM, O_TO, O_PID, O_VDIR, O_VLOGIN, O_THREADS,
	       O_QUIET, O_HELP };
	static const struct option lo[] = {
		{"host", 1, 0, O_HOST},	       {"port", 1, 0, O_PORT},
		{"concurrency", 1, 0, O_CONC}, {"sessions", 1, 0, O_SESS},
		{"duration", 1, 0, O_DUR},     {"msg-size", 1, 0, O_SIZE},
		{"msgs-per-session", 1, 0, O_MPS}, {"tls", 1, 0, O_TLS},
		{"auth", 1, 0, O_AUTH},	       {"user", 1, 0, O_USER},
		{"password", 1, 0, O_PASS},    {"pipelining", 0, 0, O_PIPE},
		{"idle", 1, 0, O_IDLE},	       {"hold", 1, 0, O_HOLD},
		{"from", 1, 0, O_FROM},	       {"to", 1, 0, O_TO},
		{"pid", 1, 0, O_PID},	       {"verify-dir", 1, 0, O_VDIR},
		{"verify-login", 1, 0, O_VLOGIN}, {"threads", 1, 0, O_THREADS},
		{"quiet", 0, 0, O_QUIET},      {"help", 0, 0, O_HELP},
		{0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case O_HOST: copy_opt(O.host, sizeof(O.host), optarg, "--host"); break;
		case O_PORT: parse_ul(optarg, "--port", 1, 65535); copy_opt(O.port, sizeof(O.port), optarg, "--port"); break;
		case O_CONC: O.concurrency = (unsigned)parse_ul(optarg, "--concurrency", 1, MAX_CONCURRENCY); break;
		case O_SESS: O.sessions = parse_ul(optarg, "--sessions", 1, MAX_SESSIONS); break;
		case O_DUR: O.duration = (unsigned)parse_ul(optarg, "--duration", 1, MAX_DURATION); break;
		case O_SIZE: O.msg_size = parse_ul(optarg, "--msg-size", 1, MAX_MSG_SIZE); break;
		case O_MPS: O.msgs_per_session = (unsigned)parse_ul(optarg, "--msgs-per-session", 0, MAX_MSGS_PER_SESSION); break;
		case O_TLS:
			if (strcmp(optarg, "none") == 0) O.tls = TLS_NONE;
			else if (strcmp(optarg, "starttls") == 0) O.tls = TLS_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0) O.tls = TLS_IMPLICIT;
			else die("bad --tls '%s'", optarg);
			break;
		case O_AUTH:
			if (strcasecmp(optarg, "none") == 0) O.auth = AUTH_NONE;
			else if (strcasecmp(optarg, "PLAIN") == 0) O.auth = AUTH_PLAIN;
			else if (strcasecmp(optarg, "LOGIN") == 0) O.auth = AUTH_LOGIN;
			else if (strcasecmp(optarg, "CRAM-MD5") == 0) O.auth = AUTH_CRAM;
			else if (strcasecmp(optarg, "SCRAM-SHA-256") == 0) O.auth = AUTH_SCRAM;
			else die("bad --auth '%s'", optarg);
			break;
		case O_USER: copy_opt(O.user, sizeof(O.user), optarg, "--user"); break;
		case O_PASS: copy_opt(O.password, sizeof(O.password), optarg, "--password"); break;
		case O_PIPE: O.pipelining = true; break;
		case O_IDLE: O.idle = parse_ul(optarg, "--idle", 1, 1000000); break;
		case O_HOLD: O.hold = (unsigned)parse_ul(optarg, "--hold", 0, 600); break;
		case O_FROM: copy_opt(O.from, sizeof(O.from), optarg, "--from"); break;
		case O_TO: copy_opt(O.to, sizeof(O.to), optarg, "--to"); break;
		case O_PID: O.pid = (long)parse_ul(optarg, "--pid", 1, 4194304); break;
		case O_VDIR: copy_opt(O.verify_dir, sizeof(O.verify_dir), optarg, "--verify-dir"); break;
		case O_VLOGIN: copy_opt(O.verify_login, sizeof(O.verify_login), optarg, "--verify-login"); break;
		case O_THREADS: O.threads = (unsigned)parse_ul(optarg, "--threads", 1, MAX_THREADS); break;
		case O_QUIET: O.quiet = true; break;
		case 'h': case O_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || O.port[0] == '\0') {
		usage(stderr);
		return 2;
	}
	if (O.idle == 0 && (O.sessions == 0) == (O.duration == 0))
		die("exactly one of --sessions N or --duration S is required (no unbounded runs)");
	if (O.auth != AUTH_NONE && (O.user[0] == '\0' || O.password[0] == '\0'))
		die("--auth needs --user and --password");
	if (O.idle && O.concurrency > 1000)
		O.concurrency = 1000;

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	if (getaddrinfo(O.host, O.port, &hints, &ai) != 0 || ai == NULL)
		die("--host must be a numeric loopback address: '%s'", O.host);
	memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
	g_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	bool loop = false;
	if (g_addr.ss_family == AF_INET)
		loop = (ntohl(((struct sockaddr_in *)&g_addr)->sin_addr.s_addr) >> 24) == 127;
	else if (g_addr.ss_family == AF_INET6)
		loop = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&g_addr)->sin6_addr);
	if (!loop)
		die("loopback only: '%s' is not 127.0.0.0/8 or ::1", O.host);

	/* enough descriptors for --idle / --concurrency */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t want = (rlim_t)(O.idle ? O.idle : O.concurrency) + 64;
		if (rl.rlim_cur < want) {
			rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}

	if (O.tls != TLS_NONE) {
		g_ctx = SSL_CTX_new(TLS_client_method());
		if (g_ctx == NULL)
			die("SSL_CTX_new failed");
		SSL_CTX_set_min_proto_version(g_ctx, TLS1_3_VERSION);
		SSL_CTX_set_max_proto_version(g_ctx, TLS1_3_VERSION);
		SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(g_ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(g_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
						SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	build_body();
	if (getenv("SMTPBENCH_DEBUG"))
		g_debug = (int)strtol(getenv("SMTPBENCH_DEBUG"), NULL, 10);

	if (O.idle)
		return run_idle();

	long stored0 = verify_count();
	unsigned long long cpu0 = O.pid ? tree_cpu_ticks(O.pid) : 0;
	struct rusage ru0;
	getrusage(RUSAGE_SELF, &ru0);
	if (O.threads > O.concurrency)
		O.threads = O.concurrency;
	struct thr *th = calloc(O.threads, sizeof(*th));
	if (th == NULL)
		die("out of memory");
	g_t0_us = now_us();
	g_end_us = O.duration ? g_t0_us + (uint64_t)O.duration * 1000000u : UINT64_MAX;
	for (unsigned i = 0; i < O.threads; i++) {
		th[i].ep = epoll_create1(EPOLL_CLOEXEC);
		th[i].nslots = O.concurrency / O.threads + (i < O.concurrency % O.threads ? 1 : 0);
		th[i].slots = calloc(th[i].nslots, sizeof(struct conn));
		th[i].pending = calloc(th[i].nslots, sizeof(struct conn *));
		if (th[i].ep < 0 || th[i].slots == NULL || th[i].pending == NULL)
			die("set-up failed");
		if (pthread_create(&th[i].tid, NULL, thr_main, &th[i]) != 0)
			die("pthread_create failed");
	}
	struct stats tot = {0};
	uint64_t last = g_t0_us;
	for (unsigned i = 0; i < O.threads; i++) {
		pthread_join(th[i].tid, NULL);
		struct stats *s = &th[i].st;
		tot.sessions_ok += s->sessions_ok;
		tot.sessions_failed += s->sessions_failed;
		tot.msgs_ok += s->msgs_ok;
		for (int k = 0; k < 600; k++)
			tot.code_err[k] += s->code_err[k];
		tot.err_connect += s->err_connect;
		tot.err_tls += s->err_tls;
		tot.err_eof += s->err_eof;
		tot.err_timeout += s->err_timeout;
		tot.err_proto += s->err_proto;
		if (s->last_done_us > last)
			last = s->last_done_us;
		for (size_t k = 0; k < s->nlat; k++)
			stats_lat(&tot, s->lat_ms[k]);
	}
	unsigned long long cpu1 = O.pid ? tree_cpu_ticks(O.pid) : 0;
	struct rusage ru1;
	getrusage(RUSAGE_SELF, &ru1);
	/* the verifier: stored messages grow by msgs_ok (give a slow store a moment) */
	long stored1 = -1;
	for (int k = 0; k < 20 && O.verify_dir[0]; k++) {
		stored1 = verify_count();
		if (stored1 - stored0 >= (long)tot.msgs_ok)
			break;
		usleep(100000);
	}
	double el = (double)(last - g_t0_us) / 1e6;
	if (el <= 0)
		el = 1e-6;
	qsort(tot.lat_ms, tot.nlat, sizeof(double), cmp_d);
#define PCT(p) (tot.nlat ? tot.lat_ms[(size_t)((double)(tot.nlat - 1) * (p))] : 0.0)
	double p50 = PCT(0.50), p90 = PCT(0.90), p99 = PCT(0.99);
	double cpu_ms = 0;
	if (O.pid && tot.sessions_ok)
		cpu_ms = (double)(cpu1 - cpu0) * 1000.0 / (double)sysconf(_SC_CLK_TCK) /
			 (double)tot.sessions_ok;
	double self_ms = ((double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e3 +
			  (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e3 +
			  (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e3 +
			  (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e3);
	unsigned long errs = tot.err_connect + tot.err_tls + tot.err_eof + tot.err_timeout + tot.err_proto;
	for (int k = 0; k < 600; k++)
		errs += tot.code_err[k];
	if (!O.quiet) {
		printf("sessions: %lu ok, %lu failed in %.2f s (concurrency %u, tls %s, auth %s%s)\n",
		       tot.sessions_ok, tot.sessions_failed, el, O.concurrency,
		       O.tls == TLS_NONE ? "none" : O.tls == TLS_STARTTLS ? "starttls" : "implicit",
		       O.auth == AUTH_NONE ? "none" : O.auth == AUTH_PLAIN ? "PLAIN"
				     : O.auth == AUTH_LOGIN ? "LOGIN" : O.auth == AUTH_CRAM ? "CRAM-MD5"
										   : "SCRAM-SHA-256",
		       O.pipelining ? ", pipelining" : "");
		printf("throughput: %.1f sessions/s, %.1f messages/s (%zu-byte messages)\n",
		       (double)tot.sessions_ok / el, (double)tot.msgs_ok / el, g_body_len - 3);
		printf("latency of sessions (ms): p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", p50, p90,
		       p99, tot.nlat ? tot.lat_ms[tot.nlat - 1] : 0.0);
		if (O.pid)
			printf("server CPU: %.3f ms per session (pid %ld and descendants)\n", cpu_ms, O.pid);
		printf("client CPU: %.3f ms per session\n",
		       tot.sessions_ok ? self_ms / (double)tot.sessions_ok : 0.0);
		printf("errors: connect %lu, tls %lu, eof %lu, timeout %lu, protocol %lu\n",
		       tot.err_connect, tot.err_tls, tot.err_eof, tot.err_timeout, tot.err_proto);
		for (int k = 0; k < 600; k++)
			if (tot.code_err[k])
				printf("  reply %d: %lu\n", k, tot.code_err[k]);
		if (O.verify_dir[0])
			printf("verify: %ld stored messages before, %ld after: +%ld for %lu accepted: %s\n",
			       stored0, stored1, stored1 - stored0, tot.msgs_ok,
			       stored1 - stored0 == (long)tot.msgs_ok ? "OK" : "MISMATCH");
	}
	char codes[2048] = "";
	size_t cl = 0;
	for (int k = 0; k < 600 && cl + 16 < sizeof(codes); k++)
		if (tot.code_err[k])
			cl += (size_t)snprintf(codes + cl, sizeof(codes) - cl, "%s%d:%lu", cl ? "," : "", k,
					       tot.code_err[k]);
	printf("RESULT mode=sessions ok=%lu failed=%lu elapsed=%.3f sps=%.1f mps=%.1f p50=%.3f p90=%.3f "
	       "p99=%.3f server_cpu_ms=%.4f client_cpu_ms=%.4f errors=%lu codes=%s verify=%s\n",
	       tot.sessions_ok, tot.sessions_failed, el, (double)tot.sessions_ok / el,
	       (double)tot.msgs_ok / el, p50, p90, p99, cpu_ms,
	       tot.sessions_ok ? self_ms / (double)tot.sessions_ok : 0.0, errs, cl ? codes : "-",
	       !O.verify_dir[0] ? "skipped" : stored1 - stored0 == (long)tot.msgs_ok ? "ok" : "mismatch");
	return errs == 0 && (!O.verify_dir[0] || stored1 - stored0 == (long)tot.msgs_ok) ? 0 : 1;
}
