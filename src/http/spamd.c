/*
 * spamd.c: an optional spam score from SpamAssassin's spamd (issue 14),
 * asked on demand by GET /api/v1/messages/{id}/spam, on an HTTP thread.
 * The SPAMC/1.5 protocol: "CHECK SPAMC/1.5", Content-length, the message;
 * spamd answers "SPAMD/1.1 0 EX_OK" and "Spam: True|False ; S / T".
 * Messages over SPAMD_SIZE_MAX are not sent (spamc's own default limit).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "http/http_int.h"

#define SPAMD_SIZE_MAX (512 * 1024)
#define SPAMD_TIMEOUT_MS 30000

static int io_wait(int fd, short ev, uint64_t deadline)
{
	uint64_t now = sg_now_ms();
	if (now >= deadline)
		return -1;
	struct pollfd p = {.fd = fd, .events = ev};
	return poll(&p, 1, (int)(deadline - now)) > 0 ? 0 : -1;
}

int sg_spamd_check(const char *addr, int msg_fd, double *score, double *threshold, bool *spam,
		   const char **error_r)
{
	struct stat st;
	if (fstat(msg_fd, &st) != 0) {
		*error_r = "cannot read the message";
		return -1;
	}
	if (st.st_size > SPAMD_SIZE_MAX) {
		*error_r = "the message is larger than 512 KiB: not sent to spamd";
		return 0;
	}
	char host[256], port[8];
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || (size_t)(colon - addr) >= sizeof(host) || strlen(colon + 1) >= sizeof(port)) {
		*error_r = "spamd_address must be HOST:PORT";
		return -1;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	sg_strlcpy(port, colon + 1, sizeof(port));
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		*error_r = "cannot resolve spamd_address";
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	uint64_t deadline = sg_now_ms() + SPAMD_TIMEOUT_MS;
	int ret = -1;
	*error_r = "spamd did not answer";
	char *msg = NULL;
	if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) ||
	    io_wait(fd, POLLOUT, deadline) < 0)
		goto out;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
		*error_r = "cannot connect to spamd";
		goto out;
	}
	size_t len = (size_t)st.st_size;
	msg = sg_malloc(len + 128);
	int hl = snprintf(msg, 128, "CHECK SPAMC/1.5\r\nContent-length: %zu\r\n\r\n", len);
	size_t have = 0;
	while (have < len) {
		ssize_t r = pread(msg_fd, msg + hl + have, len - have, (off_t)have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto out;
		have += (size_t)r;
	}
	size_t total = (size_t)hl + len, off = 0;
	while (off < total) {
		if (io_wait(fd, POLLOUT, deadline) < 0)
			goto out;
		ssize_t n = send(fd, msg + off, total - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			goto out;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	char resp[1024];
	size_t got = 0;
	for (;;) {
		if (got + 1 >= sizeof(resp) || io_wait(fd, POLLIN, deadline) < 0)
			break;
		ssize_t n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	resp[got] = '\0';
	const char *sp = strstr(resp, "\nSpam:");
	if (strncmp(resp, "SPAMD/", 6) != 0 || sp == NULL) {
		*error_r = "spamd answered something else";
		goto out;
	}
	char verdict[8];
	if (sscanf(sp + 6, " %7s ; %lf / %lf", verdict, score, threshold) != 3) {
		*error_r = "cannot read spamd's score";
		goto out;
	}
	*spam = strcmp(verdict, "True") == 0 || strcmp(verdict, "Yes") == 0;
	ret = 1;
out:
	free(msg);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return ret;
}
