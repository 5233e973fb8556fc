/*
 * tls_floor: the cost of a TLS handshake on this machine, with nothing else around it
 * (issue 12). A minimal SMTP-shaped server for bench/smtpbench: it greets, answers EHLO
 * (offering STARTTLS), runs the OpenSSL server handshake on STARTTLS, then answers every
 * command with a fixed reply (AUTH 235, DATA 354 ... 250, QUIT 221) without looking at it:
 * no parsing, no logging, no store. What smtpbench measures against it is OpenSSL's
 * handshake plus the minimum of record I/O, i.e. the floor under smtpgate's STARTTLS
 * sessions.
 *
 * The TLS settings are smtpgate's (src/core/tls.c): one SSL_CTX, TLS 1.3 negotiated by
 * the client (min 1.2), the same ECDSA P-256 certificate file, X25519 first, no session
 * tickets unless --tickets N, SSL_MODE_RELEASE_BUFFERS.
 *
 *   tls_floor --cert FILE --key FILE [--port P] [--threads N] [--tickets N]
 *
 * Prints "PORT n" once it listens (127.0.0.1 only), runs until SIGTERM/SIGINT. One epoll
 * loop per thread, the listening socket shared (EPOLLEXCLUSIVE). Loopback only, bounded
 * buffers (a line longer than 4 KiB closes the connection).
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define BUF_SIZE 16384
#define MAX_THREADS 64

enum phase { P_PLAIN, P_HANDSHAKE, P_TLS, P_BODY_PLAIN, P_BODY_TLS };

struct fconn {
	int fd;
	SSL *ssl;
	enum phase ph;
	char in[BUF_SIZE];
	size_t inlen;
	char out[BUF_SIZE];
	size_t outlen;
	bool quit;
};

static SSL_CTX *g_ctx;
static int g_lfd;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "tls_floor: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fconn_free(struct fconn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

static void put(struct fconn *c, const char *s)
{
	size_t n = strlen(s);
	if (c->outlen + n <= sizeof(c->out)) {
		memcpy(c->out + c->outlen, s, n);
		c->outlen += n;
	}
}

/* Send what is queued. false: the connection failed. */
static bool flush_out(struct fconn *c)
{
	size_t off = 0;
	while (off < c->outlen) {
		if (c->ssl != NULL && c->ph != P_HANDSHAKE) {
			int w = SSL_write(c->ssl, c->out + off, (int)(c->outlen - off));
			if (w <= 0)
				return false; /* loopback, small replies: a full buffer is a failure */
			off += (size_t)w;
		} else {
			ssize_t w = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL);
			if (w < 0)
				return false;
			off += (size_t)w;
		}
	}
	c->outlen = 0;
	return true;
}

/* The body ends at CRLF.CRLF (smtpbench's body has no dot lines). */
static bool eat_body(struct fconn *c, size_t *used)
{
	char *end = memmem(c->in, c->inlen, "\r\n.\r\n", 5);
	if (end == NULL) {
		*used = c->inlen > 4 ? c->inlen - 4 : 0;
		return false;
	}
	*used = (size_t)(end - c->in) + 5;
	return true;
}

/* Answer complete lines in c->in. */
static void process(struct fconn *c)
{
	size_t off = 0;
	while (off < c->inlen && !c->quit && c->ph != P_HANDSHAKE) {
		if (c->ph == P_BODY_PLAIN || c->ph == P_BODY_TLS) {
			size_t used;
			memmove(c->in, c->in + off, c->inlen - off);
			c->inlen -= off;
			off = 0;
			bool done = eat_body(c, &used);
			memmove(c->in, c->in + used, c->inlen - used);
			c->inlen -= used;
			if (!done)
				return;
			put(c, "250 2.0.0 ok\r\n");
			c->ph = c->ph == P_BODY_PLAIN ? P_PLAIN : P_TLS;
			continue;
		}
		char *lf = memchr(c->in + off, '\n', c->inlen - off);
		if (lf == NULL)
			break;
		const char *l = c->in + off;
		off = (size_t)(lf - c->in) + 1;
		if (strncasecmp(l, "EHLO", 4) == 0)
			put(c, c->ph == P_PLAIN ? "250-floor\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
						: "250-floor\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n");
		else if (strncasecmp(l, "STARTTLS", 8) == 0 && c->ph == P_PLAIN) {
			put(c, "220 2.0.0 go ahead\r\n");
			c->ph = P_HANDSHAKE; /* input after STARTTLS is dropped below */
		} else if (strncasecmp(l, "AUTH", 4) == 0)
			put(c, "235 2.7.0 ok\r\n");
		else if (strncasecmp(l, "DATA", 4) == 0) {
			put(c, "354 go ahead\r\n");
			c->ph = c->ph == P_PLAIN ? P_BODY_PLAIN : P_BODY_TLS;
		} else if (strncasecmp(l, "QUIT", 4) == 0) {
			put(c, "221 2.0.0 bye\r\n");
			c->quit = true;
		} else
			put(c, "250 2.0.0 ok\r\n");
	}
	if (c->ph == P_HANDSHAKE)
		c->inlen = 0;
	else {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
}

/* Drive one connection after an event. false: close it. */
static bool step(struct fconn *c)
{
	for (;;) {
		if (c->ph == P_HANDSHAKE) {
			if (c->ssl == NULL) {
				if (!flush_out(c)) /* the 220 goes out in clear text */
					return false;
				c->ssl = SSL_new(g_ctx);
				if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
					return false;
				SSL_set_accept_state(c->ssl);
			}
			int r = SSL_do_handshake(c->ssl);
			if (r != 1) {
				int e = SSL_get_error(c->ssl, r);
				ERR_clear_error();
				return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
			}
			c->ph = P_TLS;
			continue;
		}
		if (c->inlen == sizeof(c->in))
			return false; /* a line longer than the buffer */
		ssize_t n;
		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, c->in + c->inlen, (int)(sizeof(c->in) - c->inlen));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				ERR_clear_error();
				return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
			}
			n = r;
		} else {
			n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
			if (n == 0)
				return false;
			if (n < 0)
				return errno == EAGAIN || errno == EINTR;
		}
		c->inlen += (size_t)n;
		process(c);
		if (!flush_out(c))
			return false;
		if (c->quit)
			return false;
	}
}

static void accept_some(int ep)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(g_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct fconn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			return;
		}
		c->fd = fd;
		put(c, "220 floor ESMTP\r\n");
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
		if (!flush_out(c) || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			fconn_free(c);
	}
}

static void *loop(void *arg)
{
	(void)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, g_lfd, &lev) != 0)
		die("epoll_ctl");
	struct epoll_event evs[128];
	while (!g_stop) {
		int n = epoll_wait(ep, evs, 128, 200);
		for (int i = 0; i < n; i++) {
			struct fconn *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_some(ep);
				continue;
			}
			if (!step(c)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				fconn_free(c);
			}
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	unsigned long port = 0, threads = 1, tickets = 0;
	static const struct option lo[] = {
		{"cert", 1, 0, 'c'}, {"key", 1, 0, 'k'},     {"port", 1, 0, 'p'},
		{"threads", 1, 0, 't'}, {"tickets", 1, 0, 'T'}, {0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'p': port = strtoul(optarg, NULL, 10); break;
		case 't': threads = strtoul(optarg, NULL, 10); break;
		case 'T': tickets = strtoul(optarg, NULL, 10); break;
		default:
			fputs("usage: tls_floor --cert FILE --key FILE [--port P] [--threads N] "
			      "[--tickets N]\n", stderr);
			return 2;
		}
	}
	if (cert == NULL || key == NULL || port > 65535 || threads < 1 || threads > MAX_THREADS ||
	    tickets > 10) {
		fputs("tls_floor: --cert and --key are required; --port <= 65535, --threads 1..64, "
		      "--tickets 0..10\n", stderr);
		return 2;
	}
	g_ctx = SSL_CTX_new(TLS_server_method());
	if (g_ctx == NULL || SSL_CTX_use_certificate_chain_file(g_ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(g_ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 2;
	}
	SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(g_ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(g_ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set1_groups_list(g_ctx, "X25519:P-256:P-384");
	SSL_CTX_set_num_tickets(g_ctx, tickets);
	if (tickets == 0) {
		SSL_CTX_set_options(g_ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
	}

	g_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	if (g_lfd < 0 || setsockopt(g_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(g_lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(g_lfd, 1024) != 0 ||
	    getsockname(g_lfd, (struct sockaddr *)&sa, &sl) != 0)
		die("listen");
	struct sigaction act = {.sa_handler = on_signal};
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("PORT %u\n", ntohs(sa.sin_port));
	fflush(stdout);
	pthread_t tid[MAX_THREADS];
	for (unsigned long i = 1; i < threads; i++)
		if (pthread_create(&tid[i], NULL, loop, NULL) != 0)
			die("pthread_create");
	loop(NULL);
	for (unsigned long i = 1; i < threads; i++)
		pthread_join(tid[i], NULL);
	close(g_lfd);
	SSL_CTX_free(g_ctx);
	return 0;
}
