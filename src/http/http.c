/*
 * http.c: the sandbox HTTP server (http.h): libmicrohttpd set-up, access
 * control, the events stream (SSE) and the static page.
 *
 * Threads: libmicrohttpd with MHD_USE_INTERNAL_POLLING_THREAD and
 * MHD_USE_THREAD_PER_CONNECTION. The HTTP side runs on threads of its own,
 * never on the SMTP libevent loop, so nothing an HTTP client does (a slow
 * reader, a 25 MB raw download, a yescrypt check for HTTP Basic, a GMime
 * parse, a long-lived events stream) can delay an SMTP session. One thread
 * per connection lets the events stream simply block on a condition
 * variable between events and heartbeats; the connection count is capped
 * (CONN_LIMIT, and PER_IP_LIMIT per client) so threads stay bounded.
 * (libevent's evhttp on the SMTP loop would need every one of those slow
 * operations moved to the worker pool by hand.)
 *
 * Access control (issue 6):
 *   - Authorization: Bearer <admin token>   sees every inbox. The token is
 *     generated at first start and only its SHA-256 is stored, in
 *     <data-dir>/admin-token.sha256 (0600).
 *   - Authorization: Basic login:password   sees that account's inbox only;
 *     accepted only over TLS or when listening on a loopback address.
 *     Successful checks are cached for CACHE_TTL_MS under a salted SHA-256
 *     of login and password (the password itself is never kept), and
 *     dropped when the credential store's generation changes.
 *   - open (--http-open): no credentials, everything visible; refused
 *     unless the listen address is loopback.
 * The page (/, /app.js, /app.css) is public: it holds no data and asks
 * for credentials itself. EventSource cannot send headers, so the page
 * trades its credentials for a single-use stream ticket (POST
 * /api/v1/events/ticket) and opens /api/v1/events?ticket=...
 * Against DNS rebinding, a loopback listener accepts only loopback Host
 * names; a request whose Origin differs from its Host is refused (403).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "core/b64.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "http/http_int.h"
#include "store/cred.h"
#include "store/events.h"
#include "store/throttle.h"

#define CONN_LIMIT 64
#define PER_IP_LIMIT 32
#define BODY_MAX (64 * 1024)
#define CACHE_SLOTS 64
#define CACHE_TTL_MS 60000
#define TICKETS 64
#define TICKET_TTL_MS 60000
#define SSE_HEARTBEAT_MS 15000
#define SSE_PENDING_MAX (1 << 20)
#define BASIC_FAIL_DELAY_MS 300

struct cache_slot {
	uint8_t key[32];
	char login[256];
	uint64_t expires_ms;
	uint64_t generation;
	bool used;
};

struct ticket {
	uint8_t hash[32];
	struct sg_http_principal who;
	uint64_t expires_ms;
	bool used;
};

struct sse;

struct sg_http {
	struct sg_http_ctx ctx;
	struct MHD_Daemon *d;
	bool loopback;
	bool tls;
	bool open;
	bool have_admin;
	uint8_t admin_hash[32];
	uint8_t cache_salt[32];
	pthread_mutex_t lock;      /* cache, tickets, sse list */
	struct cache_slot cache[CACHE_SLOTS];
	struct ticket tickets[TICKETS];
	struct sse *streams;
	atomic_bool stopping;
	char *cert_pem, *key_pem;
	struct sg_throttle *throttle;
};

struct req_state {
	struct sg_buf body;
	bool too_big;
};

const struct sg_http_ctx *sg_http_ctx(const struct sg_http *h)
{
	return &h->ctx;
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned len = 32;
	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
		sg_fatal("EVP_Digest(sha256) failed");
}

/* ---- the admin token ---- */

static int read_small_file(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, out, size - 1);
	int e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	out[n] = '\0';
	return 0;
}

static int load_admin_hash(const char *data_dir, uint8_t out[32])
{
	char path[1200], text[200];
	snprintf(path, sizeof(path), "%s/admin-token.sha256", data_dir);
	if (read_small_file(path, text, sizeof(text)) < 0)
		return -1;
	if (strlen(text) < 64)
		return -1;
	text[64] = '\0';
	return sg_unhex(text, out, 32) == 0 ? 0 : -1;
}

int sg_http_admin_token_init(const char *data_dir, char *token_out, size_t size, bool *created_r,
			     const char **error_r)
{
	static _Thread_local char err[1600];
	char path[1200];
	uint8_t h[32];
	*created_r = false;
	if (size > 0)
		token_out[0] = '\0';
	if (load_admin_hash(data_dir, h) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/admin-token.sha256", data_dir);
	if (access(path, F_OK) == 0) {
		snprintf(err, sizeof(err), "%s is not a SHA-256 in hex; delete it to get a new token",
			 path);
		*error_r = err;
		return -1;
	}
	uint8_t raw[32];
	char token[64];
	sg_random(raw, sizeof(raw));
	memcpy(token, "sgat_", 5);
	size_t n = sg_b64url_encode(raw, sizeof(raw), token + 5);
	token[5 + n] = '\0';
	sg_wipe(raw, sizeof(raw));
	if (size < strlen(token) + 1) {
		sg_wipe(token, sizeof(token));
		*error_r = "token buffer too small";
		return -1;
	}
	sha256(token, strlen(token), h);
	char hex[65];
	sg_hex(h, 32, hex);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		sg_wipe(token, sizeof(token));
		snprintf(err, sizeof(err), "cannot create %s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	char line[80];
	int ll = snprintf(line, sizeof(line), "%s\n", hex);
	if (write(fd, line, (size_t)ll) != ll || fsync(fd) != 0) {
		close(fd);
		unlink(path);
		sg_wipe(token, sizeof(token));
		snprintf(err, sizeof(err), "cannot write %s", path);
		*error_r = err;
		return -1;
	}
	close(fd);
	sg_strlcpy(token_out, token, size);
	sg_wipe(token, sizeof(token));
	*created_r = true;
	return 0;
}

/* ---- small helpers ---- */

const char *sg_http_arg(const struct sg_http_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool sg_http_may_see(const struct sg_http_principal *who, const char *login)
{
	return who->admin || strcmp(who->login, login) == 0;
}

void sg_http_error(struct sg_http_resp *resp, unsigned status, const char *msg)
{
	resp->status = status;
	resp->content_type = "application/json";
	sg_buf_reset(&resp->body);
	json_t *o = json_pack("{s:s}", "error", msg);
	char *s = json_dumps(o, JSON_COMPACT);
	sg_buf_append_str(&resp->body, s != NULL ? s : "{\"error\":\"?\"}");
	free(s);
	json_decref(o);
}

static bool is_loopback_host(const char *host)
{
	if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
		return true;
	struct in_addr a;
	return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* "host:port", "[v6]:port" or "host" -> host */
static void host_part(const char *in, char *out, size_t size)
{
	const char *end;
	if (in[0] == '[') {
		in++;
		end = strchr(in, ']');
	} else {
		end = strrchr(in, ':');
	}
	size_t n = end != NULL ? (size_t)(end - in) : strlen(in);
	if (n >= size)
		n = size - 1;
	memcpy(out, in, n);
	out[n] = '\0';
	sg_lower(out);
}

static void add_common_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
}

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, const char *type,
				const void *data, size_t len, const char *disposition,
				bool www_auth)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data,
								 MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	add_common_headers(r);
	if (type != NULL)
		MHD_add_response_header(r, "Content-Type", type);
	if (disposition != NULL && disposition[0] != '\0')
		MHD_add_response_header(r, "Content-Disposition", disposition);
	if (www_auth)
		MHD_add_response_header(r, "WWW-Authenticate", "Basic realm=\"smtpgate\", charset=\"UTF-8\"");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_throttled(struct MHD_Connection *c, uint64_t retry_after_ms)
{
	static const char body[] = "{\"error\": \"too many failed logins from this address, retry later\"}";
	struct MHD_Response *r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
								 MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	add_common_headers(r);
	MHD_add_response_header(r, "Content-Type", "application/json");
	char ra[32];
	snprintf(ra, sizeof(ra), "%llu", (unsigned long long)(retry_after_ms + 999) / 1000);
	MHD_add_response_header(r, "Retry-After", ra);
	enum MHD_Result ret = MHD_queue_response(c, 429, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json_error(struct MHD_Connection *c, unsigned status, const char *msg,
				       bool www_auth);

/* A whole file as the body; the fd is closed in every case. */
static enum MHD_Result send_fd(struct MHD_Connection *c, unsigned status, const char *type, int fd,
			       const char *disposition)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return send_json_error(c, 500, "cannot read the message", false);
	}
	struct MHD_Response *r = MHD_create_response_from_fd((size_t)st.st_size, fd);
	if (r == NULL) {
		close(fd);
		return MHD_NO;
	}
	add_common_headers(r);
	if (type != NULL)
		MHD_add_response_header(r, "Content-Type", type);
	if (disposition != NULL && disposition[0] != '\0')
		MHD_add_response_header(r, "Content-Disposition", disposition);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json_error(struct MHD_Connection *c, unsigned status, const char *msg,
				       bool www_auth)
{
	struct sg_http_resp resp;
	memset(&resp, 0, sizeof(resp));
	sg_buf_init(&resp.body, 4096);
	sg_http_error(&resp, status, msg);
	enum MHD_Result r = send_buf(c, status, "application/json", resp.body.data, resp.body.len,
				     NULL, www_auth);
	sg_buf_free(&resp.body);
	return r;
}

/* ---- credentials ---- */

static void cache_key(struct sg_http *h, const char *login, const char *password, uint8_t out[32])
{
	struct sg_buf b;
	sg_buf_init_secret(&b, 2048);
	sg_buf_append(&b, h->cache_salt, sizeof(h->cache_salt));
	sg_buf_append(&b, login, strlen(login) + 1);
	sg_buf_append_str(&b, password);
	sha256(b.data, b.len, out);
	sg_buf_free(&b);
}

static bool cache_hit(struct sg_http *h, const uint8_t key[32], uint64_t gen, char *login_r,
		      size_t size)
{
	bool hit = false;
	uint64_t now = sg_now_ms();
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		struct cache_slot *s = &h->cache[i];
		if (s->used && s->expires_ms > now && s->generation == gen &&
		    sg_ct_eq(s->key, key, 32)) {
			sg_strlcpy(login_r, s->login, size);
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return hit;
}

static void cache_put(struct sg_http *h, const uint8_t key[32], uint64_t gen, const char *login)
{
	uint64_t now = sg_now_ms();
	pthread_mutex_lock(&h->lock);
	size_t victim = 0;
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		if (!h->cache[i].used || h->cache[i].expires_ms <= now) {
			victim = i;
			break;
		}
		if (h->cache[i].expires_ms < h->cache[victim].expires_ms)
			victim = i;
	}
	struct cache_slot *s = &h->cache[victim];
	memcpy(s->key, key, 32);
	sg_strlcpy(s->login, login, sizeof(s->login));
	s->expires_ms = now + CACHE_TTL_MS;
	s->generation = gen;
	s->used = true;
	pthread_mutex_unlock(&h->lock);
}

enum auth_outcome { AUTH_OK, AUTH_NONE, AUTH_BAD, AUTH_FORBIDDEN_PLAIN, AUTH_ERROR, AUTH_THROTTLED };

/* HTTP Basic is a password check like SMTP AUTH: the same throttle (per
 * address and per account, the same counters) and the same auth event log. */
struct basic_check {
	char ip[64];
	unsigned delay_ms;        /* before a 401 */
	uint64_t retry_after_ms;  /* AUTH_THROTTLED */
};

static void basic_event(struct sg_http *h, const struct basic_check *bc, const char *login,
			const char *result, const char *reason)
{
	struct sg_auth_event e;
	memset(&e, 0, sizeof(e));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	e.time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	sg_strlcpy(e.session, "http", sizeof(e.session));
	sg_strlcpy(e.client_ip, bc->ip, sizeof(e.client_ip));
	sg_strlcpy(e.listener, "http", sizeof(e.listener));
	e.tls = h->tls;
	sg_strlcpy(e.mech, "HTTP-BASIC", sizeof(e.mech));
	sg_strlcpy(e.login, login, sizeof(e.login));
	sg_strlcpy(e.result, result, sizeof(e.result));
	sg_strlcpy(e.reason, reason != NULL ? reason : "", sizeof(e.reason));
	if (h->ctx.events != NULL)
		sg_events_auth(h->ctx.events, &e);
	char lv[300];
	sg_log(SG_INFO, "http_auth", "client=%s login=%s result=%s reason=%s", bc->ip,
	       sg_log_value(login, lv, sizeof(lv)), result, reason != NULL ? reason : "-");
}

static void client_ip(struct MHD_Connection *c, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sg_strlcpy(out, "?", size);
	if (ci == NULL || ci->client_addr == NULL)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)size);
}

static enum auth_outcome check_basic(struct sg_http *h, const char *b64, struct sg_http_principal *who,
				     struct basic_check *bc)
{
	size_t n = strlen(b64);
	if (n == 0 || n > 2048)
		return AUTH_BAD;
	struct sg_buf dec;
	sg_buf_init_secret(&dec, SG_B64_DECODED_MAX(n) + 1);
	enum auth_outcome out = AUTH_BAD;
	size_t dl = 0;
	uint8_t *tmp = sg_malloc(SG_B64_DECODED_MAX(n) + 1);
	if (sg_b64_decode(b64, n, tmp, &dl) < 0 || sg_buf_append(&dec, tmp, dl) < 0) {
		sg_wipe(tmp, SG_B64_DECODED_MAX(n) + 1);
		free(tmp);
		goto done;
	}
	sg_wipe(tmp, SG_B64_DECODED_MAX(n) + 1);
	free(tmp);
	char *text = (char *)dec.data;
	if (memchr(text, '\0', dl) != NULL)
		goto done;
	char *colon = strchr(text, ':');
	if (colon == NULL)
		goto done;
	*colon = '\0';
	const char *login = text, *password = colon + 1;
	if (sg_cred_validate_login(login, NULL) < 0)
		goto done;
	uint8_t key[32];
	uint64_t gen = sg_cred_generation(h->ctx.creds);
	cache_key(h, login, password, key);
	/* a pair verified moments ago is no guess: the page of a user who shares
	 * the address with a guesser keeps working */
	if (cache_hit(h, key, gen, who->login, sizeof(who->login))) {
		sg_wipe(key, sizeof(key));
		out = AUTH_OK;
		goto done;
	}
	uint64_t now = sg_now_ms();
	if (h->throttle != NULL && !sg_throttle_auth_allowed(h->throttle, bc->ip, now, &bc->retry_after_ms)) {
		sg_wipe(key, sizeof(key));
		basic_event(h, bc, "", "throttled", "cooling_off");
		out = AUTH_THROTTLED;
		goto done;
	}
	struct sg_account acct;
	const char *reason = NULL;
	int r = sg_cred_check_password(h->ctx.creds, login, password, &acct, &reason);
	if (r == 1) {
		sg_strlcpy(who->login, acct.login, sizeof(who->login));
		cache_put(h, key, gen, acct.login);
		if (h->throttle != NULL)
			sg_throttle_auth_ok(h->throttle, bc->ip, acct.login);
		basic_event(h, bc, acct.login, "ok", NULL);
		out = AUTH_OK;
	} else if (r < 0) {
		basic_event(h, bc, login, "tempfail", "store_error");
		out = AUTH_ERROR;
	} else {
		char canon[256];
		sg_throttle_canonical_login(h->ctx.creds, login, canon, sizeof(canon));
		if (h->throttle != NULL) {
			uint8_t tag[SG_THROTTLE_TAG_LEN];
			sg_throttle_secret_tag(h->throttle, NULL, dec.data, dl, tag);
			bc->delay_ms = sg_throttle_auth_failed(h->throttle, bc->ip, canon, tag, now);
		}
		basic_event(h, bc, canon, "fail", reason);
	}
	sg_wipe(key, sizeof(key));
done:
	sg_buf_free(&dec);
	return out;
}

int sg_http_ticket_new(struct sg_http *h, const struct sg_http_principal *who, char *out,
		       size_t size)
{
	uint8_t raw[24];
	if (size < 2 * sizeof(raw) + 1)
		return -1;
	sg_random(raw, sizeof(raw));
	sg_hex(raw, sizeof(raw), out);
	uint8_t hash[32];
	sha256(out, strlen(out), hash);
	uint64_t now = sg_now_ms();
	pthread_mutex_lock(&h->lock);
	size_t victim = 0;
	for (size_t i = 0; i < TICKETS; i++) {
		if (!h->tickets[i].used || h->tickets[i].expires_ms <= now) {
			victim = i;
			break;
		}
		if (h->tickets[i].expires_ms < h->tickets[victim].expires_ms)
			victim = i;
	}
	struct ticket *t = &h->tickets[victim];
	memcpy(t->hash, hash, 32);
	t->who = *who;
	t->expires_ms = now + TICKET_TTL_MS;
	t->used = true;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static bool ticket_take(struct sg_http *h, const char *ticket, struct sg_http_principal *who)
{
	if (strlen(ticket) != 48)
		return false;
	uint8_t hash[32];
	sha256(ticket, strlen(ticket), hash);
	bool ok = false;
	uint64_t now = sg_now_ms();
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < TICKETS; i++) {
		struct ticket *t = &h->tickets[i];
		if (t->used && t->expires_ms > now && sg_ct_eq(t->hash, hash, 32)) {
			*who = t->who;
			t->used = false; /* single use */
			ok = true;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return ok;
}

static enum auth_outcome authenticate(struct sg_http *h, struct MHD_Connection *c, const char *path,
				      struct sg_http_principal *who, struct basic_check *bc)
{
	memset(who, 0, sizeof(*who));
	memset(bc, 0, sizeof(*bc));
	bc->delay_ms = BASIC_FAIL_DELAY_MS;
	client_ip(c, bc->ip, sizeof(bc->ip));
	if (h->open) {
		who->admin = true;
		return AUTH_OK;
	}
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (auth == NULL) {
		const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ticket");
		if (t != NULL && strcmp(path, "/api/v1/events") == 0)
			return ticket_take(h, t, who) ? AUTH_OK : AUTH_BAD;
		return AUTH_NONE;
	}
	if (sg_prefix_ci(auth, "Bearer ")) {
		const char *tok = auth + 7;
		while (*tok == ' ')
			tok++;
		uint8_t hash[32];
		sha256(tok, strlen(tok), hash);
		if (h->have_admin && sg_ct_eq(hash, h->admin_hash, 32)) {
			who->admin = true;
			return AUTH_OK;
		}
		return AUTH_BAD;
	}
	if (sg_prefix_ci(auth, "Basic ")) {
		if (!h->tls && !h->loopback)
			return AUTH_FORBIDDEN_PLAIN;
		const char *b = auth + 6;
		while (*b == ' ')
			b++;
		return check_basic(h, b, who, bc);
	}
	return AUTH_BAD;
}

/* ---- the events stream ---- */

struct sse {
	struct sg_http *h;
	struct sg_http_principal who;
	pthread_mutex_t m;
	pthread_cond_t cv;
	struct sg_buf pending;     /* "type\njson\n" records from the producers */
	bool overflow;
	struct sg_buf out;         /* formatted, not yet sent */
	size_t out_off;
	int handle;
	struct sse *next;
};

static void sse_cb(void *ctx, const char *type, const char *json)
{
	struct sse *s = ctx;
	pthread_mutex_lock(&s->m);
	size_t before = s->pending.len;
	if (sg_buf_printf(&s->pending, "%s\n%s\n", type, json) < 0) {
		s->pending.len = before;
		s->overflow = true;
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->m);
}

static bool sse_visible(const struct sse *s, const char *json)
{
	if (s->who.admin)
		return true;
	json_t *o = json_loads(json, 0, NULL);
	const char *login = o != NULL ? json_string_value(json_object_get(o, "login")) : NULL;
	bool ok = login != NULL && strcmp(login, s->who.login) == 0;
	json_decref(o);
	return ok;
}

/* Turn pending records into SSE frames in out (called with s->m held). */
static void sse_format(struct sse *s)
{
	sg_buf_reset(&s->out);
	s->out_off = 0;
	if (s->overflow) {
		sg_buf_append_str(&s->out, "event: lagged\ndata: {}\n\n");
		s->overflow = false;
	}
	char *p = (char *)s->pending.data;
	char *end = p + s->pending.len;
	while (p != NULL && p < end) {
		char *nl1 = memchr(p, '\n', (size_t)(end - p));
		if (nl1 == NULL)
			break;
		char *nl2 = memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1));
		if (nl2 == NULL)
			break;
		*nl1 = '\0';
		*nl2 = '\0';
		if (sse_visible(s, nl1 + 1))
			sg_buf_printf(&s->out, "event: %s\ndata: %s\n\n", p, nl1 + 1);
		p = nl2 + 1;
	}
	sg_buf_reset(&s->pending);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *s = cls;
	(void)pos;
	pthread_mutex_lock(&s->m);
	while (s->out_off >= s->out.len) {
		if (atomic_load(&s->h->stopping)) {
			pthread_mutex_unlock(&s->m);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (s->pending.len > 0 || s->overflow) {
			sse_format(s);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += SSE_HEARTBEAT_MS / 1000;
		if (pthread_cond_timedwait(&s->cv, &s->m, &ts) == ETIMEDOUT && s->pending.len == 0 &&
		    !atomic_load(&s->h->stopping)) {
			/* a comment line keeps proxies and the client's timeout happy
			 * and tells us when the client has gone */
			sg_buf_reset(&s->out);
			s->out_off = 0;
			sg_buf_append_str(&s->out, ": heartbeat\n\n");
		}
	}
	size_t n = s->out.len - s->out_off;
	if (n > max)
		n = max;
	memcpy(buf, s->out.data + s->out_off, n);
	s->out_off += n;
	pthread_mutex_unlock(&s->m);
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse *s = cls;
	struct sg_http *h = s->h;
	if (s->handle >= 0)
		sg_events_unsubscribe(h->ctx.events, s->handle);
	pthread_mutex_lock(&h->lock);
	for (struct sse **pp = &h->streams; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&h->lock);
	sg_buf_free(&s->pending);
	sg_buf_free(&s->out);
	pthread_mutex_destroy(&s->m);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static enum MHD_Result start_sse(struct sg_http *h, struct MHD_Connection *c,
				 const struct sg_http_principal *who)
{
	if (h->ctx.events == NULL)
		return send_json_error(c, 503, "no event log", false);
	if (atomic_load(&h->stopping))
		return send_json_error(c, 503, "shutting down", false);
	struct sse *s = sg_calloc(1, sizeof(*s));
	s->h = h;
	s->who = *who;
	pthread_mutex_init(&s->m, NULL);
	pthread_cond_init(&s->cv, NULL);
	sg_buf_init(&s->pending, SSE_PENDING_MAX);
	sg_buf_init(&s->out, SSE_PENDING_MAX + 4096);
	sg_buf_append_str(&s->out, "retry: 3000\n: connected\n\n");
	s->handle = sg_events_subscribe(h->ctx.events, sse_cb, s);
	if (s->handle < 0) {
		s->handle = -1;
		sse_free(s);
		return send_json_error(c, 503, "too many event streams", false);
	}
	pthread_mutex_lock(&h->lock);
	s->next = h->streams;
	h->streams = s;
	pthread_mutex_unlock(&h->lock);
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s,
								  sse_free);
	if (r == NULL) {
		sse_free(s);
		return MHD_NO;
	}
	add_common_headers(r);
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- dispatch ---- */

static const char page_csp[] =
	"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
	"img-src data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
	"frame-ancestors 'none'";

static enum MHD_Result serve_asset(struct MHD_Connection *c, const struct sg_http_asset *a)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(a->body), (void *)a->body,
								 MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	add_common_headers(r);
	MHD_add_response_header(r, "Content-Type", a->content_type);
	MHD_add_response_header(r, "Content-Security-Policy", page_csp);
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static bool host_ok(struct sg_http *h, struct MHD_Connection *c)
{
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	char hp[256];
	if (host != NULL)
		host_part(host, hp, sizeof(hp));
	if (h->loopback && (host == NULL || !is_loopback_host(hp)))
		return false;
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	if (origin != NULL && host != NULL) {
		const char *o = strstr(origin, "://");
		if (o == NULL)
			return false;
		char want[300];
		snprintf(want, sizeof(want), "%s", host);
		sg_lower(want);
		char got[300];
		snprintf(got, sizeof(got), "%s", o + 3);
		sg_lower(got);
		if (strcmp(want, got) != 0)
			return false;
	}
	return true;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct sg_http *h = cls;
	(void)version;
	struct req_state *st = *con_cls;
	if (st == NULL) {
		st = sg_calloc(1, sizeof(*st));
		sg_buf_init(&st->body, BODY_MAX);
		*con_cls = st;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (!st->too_big && sg_buf_append(&st->body, upload_data, *upload_data_size) < 0)
			st->too_big = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!host_ok(h, c))
		return send_json_error(c, 403, "Host or Origin not allowed", false);
	if (st->too_big)
		return send_json_error(c, 413, "request body too large", false);

	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (get) {
		const struct sg_http_asset *a = sg_http_asset_find(url);
		if (a != NULL)
			return serve_asset(c, a);
	}
	if (strncmp(url, "/api/v1/", 8) != 0 && strcmp(url, "/metrics") != 0)
		return send_json_error(c, 404, "not found", false);

	struct sg_http_principal who;
	struct basic_check bc;
	enum auth_outcome ao = authenticate(h, c, url, &who, &bc);
	/* the page sends X-Requested-With so that a 401 does not pop up the
	 * browser's own password dialog */
	bool from_page = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Requested-With") != NULL;
	switch (ao) {
	case AUTH_OK:
		break;
	case AUTH_NONE:
		return send_json_error(c, 401, "credentials required (HTTP Basic login:password, or Bearer admin token)",
				       !from_page);
	case AUTH_BAD: {
		struct timespec ts = {bc.delay_ms / 1000, (long)(bc.delay_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL); /* an HTTP thread, not the SMTP loop */
		return send_json_error(c, 401, "invalid credentials", !from_page);
	}
	case AUTH_THROTTLED:
		return send_throttled(c, bc.retry_after_ms);
	case AUTH_FORBIDDEN_PLAIN:
		return send_json_error(c, 403, "HTTP Basic is accepted only over TLS or on a loopback listener",
				       false);
	default:
		return send_json_error(c, 503, "credential store unavailable", false);
	}
	if (get && strcmp(url, "/api/v1/events") == 0)
		return start_sse(h, c, &who);

	struct sg_http_req r = {
		.h = h, .conn = c, .method = method, .path = url, .body = &st->body, .who = who,
	};
	struct sg_http_resp resp;
	memset(&resp, 0, sizeof(resp));
	sg_buf_init(&resp.body, (size_t)512 << 20);
	resp.status = 200;
	resp.content_type = "application/json";
	sg_api_handle(&r, &resp);
	if (resp.fd > 0) {
		enum MHD_Result fr = send_fd(c, resp.status, resp.content_type, resp.fd, resp.disposition);
		sg_buf_free(&resp.body);
		return fr;
	}
	enum MHD_Result ret = send_buf(c, resp.status, resp.content_type, resp.body.data, resp.body.len,
				       resp.disposition, false);
	sg_buf_free(&resp.body);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct req_state *st = *con_cls;
	if (st != NULL) {
		sg_buf_free(&st->body);
		free(st);
		*con_cls = NULL;
	}
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	char v[600];
	sg_log(SG_DEBUG, "http", "mhd=%s", sg_log_value(msg, v, sizeof(v)));
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (sg_buf_append(&b, chunk, n) < 0) {
			fclose(f);
			sg_buf_free(&b);
			return NULL;
		}
	fclose(f);
	char *s = sg_strdup(sg_buf_str(&b));
	sg_buf_free(&b);
	return s;
}

int sg_http_start(const struct sg_http_config *cfg, struct sg_cred_store *creds,
		  struct sg_mail_store *mail, struct sg_events *events, struct sg_faults *faults,
		  struct sg_metrics *metrics, struct sg_http **http_r, const char **error_r)
{
	static _Thread_local char err[2600];
	*http_r = NULL;
	if (cfg->port == 0)
		return 0;
	const char *host = cfg->listen_host != NULL && cfg->listen_host[0] != '\0' ? cfg->listen_host
										   : "127.0.0.1";
	struct addrinfo hints, *ai = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	char port[16];
	snprintf(port, sizeof(port), "%u", cfg->port);
	int gr = getaddrinfo(host, port, &hints, &ai);
	if (gr != 0 || ai == NULL) {
		snprintf(err, sizeof(err), "http: cannot resolve %s: %s", host, gai_strerror(gr));
		*error_r = err;
		return -1;
	}
	bool loopback = false;
	if (ai->ai_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
		loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (ai->ai_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;
		loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	}
	if (cfg->open && !loopback) {
		freeaddrinfo(ai);
		snprintf(err, sizeof(err),
			 "http: --http-open is allowed only on a loopback address (not %s)", host);
		*error_r = err;
		return -1;
	}
	struct sg_http *h = sg_calloc(1, sizeof(*h));
	h->ctx.creds = creds;
	h->ctx.mail = mail;
	h->ctx.events = events;
	h->ctx.faults = faults;
	h->ctx.metrics = metrics;
	if (cfg->relay != NULL)
		h->ctx.relay = *cfg->relay;
	h->throttle = cfg->throttle;
	h->ctx.data_dir = sg_strdup(cfg->data_dir != NULL ? cfg->data_dir : ".");
	h->loopback = loopback;
	h->open = cfg->open;
	pthread_mutex_init(&h->lock, NULL);
	sg_random(h->cache_salt, sizeof(h->cache_salt));
	if (!h->open) {
		char token[128];
		bool created = false;
		const char *e = NULL;
		if (sg_http_admin_token_init(h->ctx.data_dir, token, sizeof(token), &created, &e) < 0) {
			snprintf(err, sizeof(err), "http: admin token: %s", e);
			*error_r = err;
			freeaddrinfo(ai);
			sg_http_stop(&h);
			return -1;
		}
		if (created) {
			/* shown once, on the terminal only, never in the log */
			fprintf(stderr,
				"smtpgate: HTTP admin token (shown once; only its SHA-256 is kept in "
				"%s/admin-token.sha256):\n  %s\n",
				h->ctx.data_dir, token);
			fflush(stderr);
		}
		sg_wipe(token, sizeof(token));
		h->have_admin = load_admin_hash(h->ctx.data_dir, h->admin_hash) == 0;
	}
	sg_msg_init();

	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	bool want_tls = cfg->tls_cert != NULL && cfg->tls_cert[0] != '\0' && cfg->tls_key != NULL &&
			cfg->tls_key[0] != '\0';
	if (want_tls) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(err, sizeof(err), "http: libmicrohttpd was built without TLS");
			goto fail;
		}
		h->cert_pem = read_file(cfg->tls_cert);
		h->key_pem = read_file(cfg->tls_key);
		if (h->cert_pem == NULL || h->key_pem == NULL) {
			snprintf(err, sizeof(err), "http: cannot read %s or %s", cfg->tls_cert, cfg->tls_key);
			goto fail;
		}
		flags |= MHD_USE_TLS;
		h->tls = true;
	}
	struct MHD_OptionItem tls_opts[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert_pem},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, h->key_pem},
		{MHD_OPTION_END, 0, NULL},
	};
	h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handle, h,
				MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_LIMIT,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_LIMIT,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
				MHD_OPTION_NOTIFY_COMPLETED, completed, h,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
				MHD_OPTION_ARRAY, h->tls ? tls_opts : tls_opts + 2,
				MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, sizeof(err), "http: cannot listen on %s:%u (address in use?)", host,
			 cfg->port);
		goto fail;
	}
	freeaddrinfo(ai);
	sg_log(SG_INFO, "http_listen", "addr=%s port=%u tls=%s access=%s", host, cfg->port,
	       h->tls ? "yes" : "no", h->open ? "open" : "credentials");
	*http_r = h;
	return 0;
fail:
	freeaddrinfo(ai);
	*error_r = err;
	sg_http_stop(&h);
	return -1;
}

void sg_http_stop(struct sg_http **hp)
{
	struct sg_http *h = *hp;
	if (h == NULL)
		return;
	*hp = NULL;
	atomic_store(&h->stopping, true);
	pthread_mutex_lock(&h->lock);
	for (struct sse *s = h->streams; s != NULL; s = s->next) {
		pthread_mutex_lock(&s->m);
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->m);
	}
	pthread_mutex_unlock(&h->lock);
	if (h->d != NULL)
		MHD_stop_daemon(h->d);
	pthread_mutex_destroy(&h->lock);
	sg_wipe(h->cache, sizeof(h->cache));
	sg_wipe(h->tickets, sizeof(h->tickets));
	if (h->key_pem != NULL)
		sg_free_secret_str(&h->key_pem);
	free(h->cert_pem);
	free(h->ctx.data_dir);
	free(h);
}
