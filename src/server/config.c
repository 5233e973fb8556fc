#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/util.h"
#include "store/cred.h"

enum ktype { K_STR, K_UINT, K_SIZE, K_BOOL };

struct key {
	const char *name;
	enum ktype type;
	size_t offset;
	size_t size;      /* K_STR: buffer size */
	unsigned long long min, max;
};

#define STR(f) K_STR, offsetof(struct sg_config, f), sizeof(((struct sg_config *)0)->f), 0, 0
#define UINT(f, lo, hi) K_UINT, offsetof(struct sg_config, f), 0, lo, hi
#define BOOL(f) K_BOOL, offsetof(struct sg_config, f), 0, 0, 0

static const struct key global_keys[] = {
	{"hostname", STR(hostname)},
	{"data_dir", STR(data_dir)},
	{"tls_cert", STR(tls_cert)},
	{"tls_key", STR(tls_key)},
	{"tls_client_ca", STR(tls_client_ca)},
	{"user", STR(user)},
	{"log_level", STR(log_level)},
	{"syslog", BOOL(syslog)},
	{"max_message_size", K_SIZE, offsetof(struct sg_config, max_message_size), 0, 1024,
	 1ULL << 32},
	{"max_recipients", UINT(max_recipients, 1, 100000)},
	{"max_line", UINT(max_line, 512, 65536)},
	{"max_errors", UINT(max_errors, 1, 1000)},
	{"max_auth_attempts", UINT(max_auth_attempts, 1, 1000)},
	{"max_connections", UINT(max_connections, 1, 1000000)},
	{"max_connections_per_ip", UINT(max_connections_per_ip, 1, 1000000)},
	{"auth_cache_ttl_ms", UINT(auth_cache_ttl_ms, 0, 86400000)},
	{"auth_fail_delay_ms", UINT(auth_fail_delay_ms, 0, 60000)},
	{"throttle_ip_threshold", UINT(throttle_ip_threshold, 1, 1000000)},
	{"throttle_account_threshold", UINT(throttle_account_threshold, 1, 1000000)},
	{"throttle_window_ms", UINT(throttle_window_ms, 1000, 86400000)},
	{"throttle_cooloff_ms", UINT(throttle_cooloff_ms, 0, 86400000)},
	{"throttle_max_delay_ms", UINT(throttle_max_delay_ms, 0, 600000)},
	{"throttle_repeat_window_ms", UINT(throttle_repeat_window_ms, 0, 86400000)},
	{"ipv6_prefix", UINT(ipv6_prefix, 1, 128)},
	{"command_deadline", BOOL(command_deadline)},
	{"timeout_greeting_ms", UINT(timeout_greeting_ms, 0, 3600000)},
	{"timeout_command_ms", UINT(timeout_command_ms, 100, 3600000)},
	{"timeout_data_ms", UINT(timeout_data_ms, 100, 3600000)},
	{"timeout_tls_ms", UINT(timeout_tls_ms, 100, 600000)},
	{"timeout_proxy_ms", UINT(timeout_proxy_ms, 100, 600000)},
	{"timeout_session_ms", UINT(timeout_session_ms, 1000, 86400000)},
	{"loops", UINT(loops, 1, 256)},
	{"http_listen", STR(http_listen)},
	{"http_open", BOOL(http_open)},
	{"http_tls", BOOL(http_tls)},
	{"fault", K_STR, 0, 0, 0, 0}, /* special: repeatable */
	{"workers", UINT(workers, 1, 256)},
	{"sender_policy", K_STR, 0, 0, 0, 0}, /* special: enforce | off */
	{"scram_iterations", K_UINT, offsetof(struct sg_config, sasl.scram_iterations), 0, 4096,
	 10000000},
	{"ntlm_allow_v1", BOOL(sasl.ntlm_allow_v1)},
	{"ntlm_domain", STR(ntlm_domain)},
	{"oauth_secret_file", STR(oauth_secret_file)},
	{"oauth_jwks_file", STR(oauth_jwks_file)},
	{"oauth_issuer", STR(oauth_issuer)},
	{"oauth_audience", STR(oauth_audience)},
	{"oauth_login_claim", STR(oauth_login_claim)},
	{"oauth_scope", STR(oauth_scope)},
	{"gss_keytab", STR(gss_keytab)},
	{"gss_service", STR(gss_service)},
	{"gss_realm", STR(gss_realm)},
	{"gss_map_domain", STR(gss_map_domain)},
	{"auth_mechanisms", K_STR, 0, 0, 0, 0},  /* special: checked names */
	{"channel_binding", BOOL(channel_binding)},
	{"legacy_verifiers", K_STR, 0, 0, 0, 0}, /* special: ntlm cram-md5 */
};

const char *sg_role_name(enum sg_role r)
{
	switch (r) {
	case SG_ROLE_MX:
		return "mx";
	case SG_ROLE_SUBMISSION:
		return "submission";
	case SG_ROLE_SUBMISSIONS:
		return "submissions";
	}
	return "?";
}

static int parse_role(const char *s, enum sg_role *r)
{
	if (strcmp(s, "mx") == 0)
		*r = SG_ROLE_MX;
	else if (strcmp(s, "submission") == 0)
		*r = SG_ROLE_SUBMISSION;
	else if (strcmp(s, "submissions") == 0)
		*r = SG_ROLE_SUBMISSIONS;
	else
		return -1;
	return 0;
}

void sg_config_defaults(struct sg_config *c)
{
	memset(c, 0, sizeof(*c));
	char host[256];
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		sg_strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	sg_strlcpy(c->hostname, host, sizeof(c->hostname));
	sg_strlcpy(c->data_dir, "./smtpgate-data", sizeof(c->data_dir));
	sg_strlcpy(c->user, "smtpgate", sizeof(c->user));
	sg_strlcpy(c->log_level, "info", sizeof(c->log_level));
	c->max_message_size = 25ULL * 1024 * 1024;
	c->max_recipients = 100;
	c->max_line = 4096;
	c->max_errors = 10;
	c->max_auth_attempts = 3;
	c->max_connections = 10000;
	c->max_connections_per_ip = 100;
	c->auth_fail_delay_ms = 1000;
	c->auth_cache_ttl_ms = 300000;
	c->throttle_ip_threshold = 10;
	c->throttle_account_threshold = 20;
	c->throttle_window_ms = 15 * 60 * 1000;
	c->throttle_cooloff_ms = 5 * 60 * 1000;
	c->throttle_max_delay_ms = 8000;
	c->throttle_repeat_window_ms = 5 * 60 * 1000;
	c->ipv6_prefix = 64;
	c->command_deadline = true;
	c->timeout_command_ms = 300000;
	c->timeout_data_ms = 180000;
	c->timeout_tls_ms = 30000;
	c->timeout_proxy_ms = 5000;
	c->timeout_session_ms = 3600000;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	c->loops = cores > 0 && cores < 64 ? (unsigned)cores : 1;
	/* fsync is the bottleneck of durable capture: many in flight let the
	 * file system batch them (measured in BENCHMARKS.md) */
	c->workers = 8;
	c->sender_enforce = true;
	c->sasl.scram_iterations = 4096;
	sg_strlcpy(c->oauth_login_claim, "sub", sizeof(c->oauth_login_claim));
	sg_strlcpy(c->oauth_scope, "smtp", sizeof(c->oauth_scope));
	sg_strlcpy(c->gss_service, "smtp", sizeof(c->gss_service));
	sg_strlcpy(c->http_listen, "127.0.0.1:8025", sizeof(c->http_listen));
	sg_relay_config_defaults(&c->relay);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0 ||
	    strcmp(v, "1") == 0)
		*out = true;
	else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "off") == 0 ||
		 strcmp(v, "0") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

/* 26214400, 25M, 512k */
static int parse_size(const char *v, unsigned long long *out)
{
	char num[32];
	size_t n = strlen(v);
	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, v, n + 1);
	unsigned long long mult = 1;
	char last = (char)tolower((unsigned char)num[n - 1]);
	if (last == 'k' || last == 'm' || last == 'g') {
		mult = last == 'k' ? 1024ULL : last == 'm' ? 1024ULL * 1024 : 1024ULL * 1024 * 1024;
		num[n - 1] = '\0';
	}
	uint64_t x;
	if (sg_parse_u64(num, 0, UINT64_MAX / mult, &x) < 0)
		return -1;
	*out = x * mult;
	return 0;
}

static int parse_hostport(const char *spec, char *host, size_t hsize, unsigned *port)
{
	const char *colon = strrchr(spec, ':');
	if (colon == NULL)
		return -1;
	const char *h = spec;
	size_t hl = (size_t)(colon - spec);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hsize)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	uint64_t p;
	if (sg_parse_u64(colon + 1, 1, 65535, &p) < 0)
		return -1;
	*port = (unsigned)p;
	return 0;
}

static void listener_defaults(const struct sg_config *c, struct sg_listener_cfg *l, enum sg_role role)
{
	memset(l, 0, sizeof(*l));
	l->role = role;
	sg_strlcpy(l->name, sg_role_name(role), sizeof(l->name));
	sg_strlcpy(l->host, "127.0.0.1", sizeof(l->host));
	l->port = role == SG_ROLE_MX ? 2525 : role == SG_ROLE_SUBMISSION ? 2587 : 2465;
	l->sender_enforce = c->sender_enforce;
	sg_strlcpy(l->mechanisms, c->auth_mechanisms, sizeof(l->mechanisms));
	l->channel_binding = c->channel_binding;
	sg_cidr_parse("127.0.0.0/8", &l->proxy_trusted[0]);
	sg_cidr_parse("::1", &l->proxy_trusted[1]);
	l->nproxy_trusted = 2;
}

/* Every word of a mechanism list must name a mechanism of this build. */
static int check_mech_list(const char *v, char *err, size_t errsize, const char *where)
{
	char copy[512];
	if (!sg_strlcpy(copy, v, sizeof(copy))) {
		snprintf(err, errsize, "%s: mechanism list too long", where);
		return -1;
	}
	for (char *save = NULL, *m = strtok_r(copy, " ,", &save); m != NULL;
	     m = strtok_r(NULL, " ,", &save))
		if (sg_mech_find(m) == NULL) {
			snprintf(err, errsize, "%s: unknown mechanism '%s'", where, m);
			return -1;
		}
	return 0;
}

static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p != '\0';) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t w = strcspn(p, " ,");
		if (w == n && strncasecmp(p, name, n) == 0)
			return true;
		p += w;
	}
	return false;
}

/* The verifier a mechanism needs is stored only with legacy_verifiers. */
static bool legacy_ok(unsigned legacy, const struct sg_mech *m)
{
	if (m->cred == SG_CRED_NT)
		return (legacy & SG_LEGACY_NTLM) != 0;
	if (m->cred == SG_CRED_CRAM_MD5)
		return (legacy & SG_LEGACY_CRAM_MD5) != 0;
	return true;
}

static uint64_t offer_mask(const struct sg_listener_cfg *l, unsigned legacy)
{
	uint64_t mask = 0;
	for (size_t i = 0; sg_mechs[i] != NULL && i < 64; i++) {
		const struct sg_mech *m = sg_mechs[i];
		bool plus = (m->flags & SG_MECH_F_CHANNEL_BINDING) != 0;
		bool on;
		if (l->mechanisms[0] == '\0') {
			on = !plus || l->channel_binding;
		} else {
			on = list_has(l->mechanisms, m->name);
			/* channel_binding = yes adds SCRAM-X-PLUS next to a listed SCRAM-X */
			if (!on && plus && l->channel_binding) {
				char base[64];
				size_t n = strlen(m->name);
				if (n > 5 && n - 5 < sizeof(base)) {
					memcpy(base, m->name, n - 5);
					base[n - 5] = '\0';
					on = list_has(l->mechanisms, base);
				}
			}
		}
		if (on && legacy_ok(legacy, m))
			mask |= (uint64_t)1 << i;
	}
	return mask;
}

bool sg_listener_offers(const struct sg_listener_cfg *l, const struct sg_mech *m)
{
	for (size_t i = 0; sg_mechs[i] != NULL && i < 64; i++)
		if (sg_mechs[i] == m)
			return (l->offer_mask >> i) & 1;
	return false;
}

/* A listed mechanism whose verifier is not stored could never succeed. */
static int check_legacy(const char *list, unsigned line, unsigned legacy, const char *name,
			char *err, size_t errsize)
{
	for (size_t i = 0; sg_mechs[i] != NULL; i++)
		if (list_has(list, sg_mechs[i]->name) && !legacy_ok(legacy, sg_mechs[i])) {
			snprintf(err, errsize,
				 "%s:%u: %s needs its legacy verifier: add 'legacy_verifiers = %s' "
				 "(see docs/mechanisms.md)",
				 name, line, sg_mechs[i]->name,
				 sg_mechs[i]->cred == SG_CRED_NT ? "ntlm" : "cram-md5");
			return -1;
		}
	return 0;
}

static struct sg_listener_cfg *new_listener(struct sg_config *c, const char *name, char *err,
					    size_t errsize, const char *where)
{
	for (size_t i = 0; i < c->nlisteners; i++)
		if (strcmp(c->listeners[i].name, name) == 0) {
			snprintf(err, errsize, "%s: listener '%s' defined twice", where, name);
			return NULL;
		}
	if (c->nlisteners >= SG_MAX_LISTENERS) {
		snprintf(err, errsize, "%s: too many listeners (at most %d)", where, SG_MAX_LISTENERS);
		return NULL;
	}
	struct sg_listener_cfg *l = &c->listeners[c->nlisteners++];
	enum sg_role role = SG_ROLE_MX;
	(void)parse_role(name, &role);
	listener_defaults(c, l, role);
	if (!sg_strlcpy(l->name, name, sizeof(l->name))) {
		snprintf(err, errsize, "%s: listener name too long", where);
		return NULL;
	}
	return l;
}

static int set_listener_key(struct sg_listener_cfg *l, const char *k, const char *v, char *err,
			    size_t errsize, const char *where, unsigned lineno)
{
	if (strcmp(k, "role") == 0) {
		if (parse_role(v, &l->role) < 0)
			goto bad;
		if (l->port == 2525 || l->port == 2587 || l->port == 2465)
			l->port = l->role == SG_ROLE_MX ? 2525 : l->role == SG_ROLE_SUBMISSION ? 2587 : 2465;
	} else if (strcmp(k, "listen") == 0) {
		if (parse_hostport(v, l->host, sizeof(l->host), &l->port) < 0)
			goto bad;
	} else if (strcmp(k, "sender_policy") == 0) {
		if (strcmp(v, "enforce") == 0)
			l->sender_enforce = true;
		else if (strcmp(v, "off") == 0)
			l->sender_enforce = false;
		else
			goto bad;
	} else if (strcmp(k, "bare_lf") == 0) {
		if (strcmp(v, "reject") == 0)
			l->bare_lf_normalize = false;
		else if (strcmp(v, "normalize") == 0)
			l->bare_lf_normalize = true;
		else
			goto bad;
	} else if (strcmp(k, "require_tls") == 0) {
		if (parse_bool(v, &l->require_tls) < 0)
			goto bad;
	} else if (strcmp(k, "plaintext_without_tls") == 0) {
		if (parse_bool(v, &l->plaintext_without_tls) < 0)
			goto bad;
	} else if (strcmp(k, "proxy_protocol") == 0) {
		if (parse_bool(v, &l->proxy_protocol) < 0)
			goto bad;
	} else if (strcmp(k, "proxy_trusted") == 0) {
		char copy[1024];
		if (!sg_strlcpy(copy, v, sizeof(copy)))
			goto bad;
		l->nproxy_trusted = 0;
		for (char *save = NULL, *m = strtok_r(copy, " ,", &save); m != NULL;
		     m = strtok_r(NULL, " ,", &save)) {
			if (l->nproxy_trusted >= SG_MAX_PROXY_TRUSTED) {
				snprintf(err, errsize, "%s: at most %d networks in proxy_trusted", where,
					 SG_MAX_PROXY_TRUSTED);
				return -1;
			}
			if (sg_cidr_parse(m, &l->proxy_trusted[l->nproxy_trusted]) < 0) {
				snprintf(err, errsize, "%s: proxy_trusted: '%s' is not ADDR or ADDR/BITS", where, m);
				return -1;
			}
			l->nproxy_trusted++;
		}
		if (l->nproxy_trusted == 0)
			goto bad;
	} else if (strcmp(k, "mechanisms") == 0 || strcmp(k, "auth_mechanisms") == 0) {
		if (check_mech_list(v, err, errsize, where) < 0)
			return -1;
		if (!sg_strlcpy(l->mechanisms, v, sizeof(l->mechanisms)))
			goto bad;
		l->mechanisms_line = lineno;
	} else if (strcmp(k, "channel_binding") == 0) {
		if (parse_bool(v, &l->channel_binding) < 0)
			goto bad;
	} else if (strcmp(k, "delivery") == 0) {
		if (sg_relay_parse_delivery(v, &l->delivery) < 0)
			goto bad;
	} else {
		snprintf(err, errsize, "%s: unknown listener key '%s'", where, k);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errsize, "%s: bad value for '%s': '%s'", where, k, v);
	return -1;
}

static int set_global_key(struct sg_config *c, const char *k, const char *v, char *err,
			  size_t errsize, const char *where)
{
	for (size_t i = 0; i < sizeof(global_keys) / sizeof(global_keys[0]); i++) {
		const struct key *key = &global_keys[i];
		if (strcmp(key->name, k) != 0)
			continue;
		if (strcmp(k, "fault") == 0) {
			if (c->nfaults >= SG_MAX_FAULTS || !sg_strlcpy(c->faults[c->nfaults], v, sizeof(c->faults[0])))
				goto bad;
			c->nfaults++;
			return 0;
		}
		if (strcmp(k, "auth_mechanisms") == 0) {
			if (check_mech_list(v, err, errsize, where) < 0)
				return -1;
			if (!sg_strlcpy(c->auth_mechanisms, v, sizeof(c->auth_mechanisms)))
				goto bad;
			return 0;
		}
		if (strcmp(k, "legacy_verifiers") == 0) {
			const char *word = NULL;
			if (sg_cred_legacy_parse(v, &c->legacy_verifiers, &word) < 0) {
				snprintf(err, errsize,
					 "%s: legacy_verifiers: unknown verifier '%s' (ntlm, cram-md5)",
					 where, word);
				return -1;
			}
			return 0;
		}
		if (strcmp(k, "sender_policy") == 0) {
			if (strcmp(v, "enforce") == 0)
				c->sender_enforce = true;
			else if (strcmp(v, "off") == 0)
				c->sender_enforce = false;
			else
				goto bad;
			for (size_t j = 0; j < c->nlisteners; j++)
				c->listeners[j].sender_enforce = c->sender_enforce;
			return 0;
		}
		char *field = (char *)c + key->offset;
		uint64_t x;
		unsigned long long sz;
		switch (key->type) {
		case K_STR:
			if (!sg_strlcpy(field, v, key->size))
				goto bad;
			return 0;
		case K_UINT:
			if (sg_parse_u64(v, key->min, key->max, &x) < 0)
				goto bad;
			*(unsigned *)field = (unsigned)x;
			return 0;
		case K_SIZE:
			if (parse_size(v, &sz) < 0 || sz < key->min || sz > key->max)
				goto bad;
			*(unsigned long long *)field = sz;
			return 0;
		case K_BOOL:
			if (parse_bool(v, (bool *)field) < 0)
				goto bad;
			return 0;
		}
	}
	int rr = sg_relay_config_set(&c->relay, k, v, err, errsize, where);
	if (rr != 0)
		return rr < 0 ? -1 : 0;
	snprintf(err, errsize, "%s: unknown key '%s'", where, k);
	return -1;
bad:
	snprintf(err, errsize, "%s: bad value for '%s': '%s'", where, k, v);
	return -1;
}

int sg_config_parse(struct sg_config *c, const char *text, const char *name, char *err,
		    size_t errsize)
{
	struct sg_listener_cfg *cur = NULL;
	unsigned lineno = 0;
	const char *p = text;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		lineno++;
		char where[1200];
		snprintf(where, sizeof(where), "%s:%u", name, lineno);
		char line[2048];
		if (n >= sizeof(line)) {
			snprintf(err, errsize, "%s: line too long", where);
			return -1;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + (nl != NULL ? 1 : 0);
		char *s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			if (close == NULL || close[1] != '\0') {
				snprintf(err, errsize, "%s: bad section header", where);
				return -1;
			}
			*close = '\0';
			char *sec = trim(s + 1);
			if (strncmp(sec, "listener", 8) != 0 || !isspace((unsigned char)sec[8])) {
				snprintf(err, errsize, "%s: unknown section '[%s]' (expected [listener NAME])",
					 where, sec);
				return -1;
			}
			char *lname = trim(sec + 8);
			if (*lname == '\0') {
				snprintf(err, errsize, "%s: listener needs a name", where);
				return -1;
			}
			cur = new_listener(c, lname, err, errsize, where);
			if (cur == NULL)
				return -1;
			continue;
		}
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errsize, "%s: expected 'key = value'", where);
			return -1;
		}
		*eq = '\0';
		/* "key = value   # comment": a '#' after whitespace starts a comment */
		for (char *h = eq + 1; *h != '\0'; h++)
			if (*h == '#' && h > eq + 1 && isspace((unsigned char)h[-1])) {
				*h = '\0';
				break;
			}
		char *k = trim(s), *v = trim(eq + 1);
		if (*k == '\0') {
			snprintf(err, errsize, "%s: empty key", where);
			return -1;
		}
		if (cur != NULL) {
			if (set_listener_key(cur, k, v, err, errsize, where, lineno) < 0)
				return -1;
		} else if (set_global_key(c, k, v, err, errsize, where) < 0) {
			return -1;
		} else if (strcmp(k, "auth_mechanisms") == 0) {
			c->auth_mechanisms_line = lineno;
		}
	}
	/* legacy_verifiers may come after the lists that need it */
	if (c->auth_mechanisms_line != 0 &&
	    check_legacy(c->auth_mechanisms, c->auth_mechanisms_line, c->legacy_verifiers, name,
			 err, errsize) < 0)
		return -1;
	for (size_t i = 0; i < c->nlisteners; i++)
		if (c->listeners[i].mechanisms_line != 0 &&
		    check_legacy(c->listeners[i].mechanisms, c->listeners[i].mechanisms_line,
				 c->legacy_verifiers, name, err, errsize) < 0)
			return -1;
	return 0;
}

int sg_config_load(struct sg_config *c, const char *path, char *err, size_t errsize)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct sg_buf text;
	sg_buf_init(&text, 1024 * 1024);
	char chunk[4096];
	size_t n;
	int r = 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (sg_buf_append(&text, chunk, n) < 0) {
			snprintf(err, errsize, "%s: file too large", path);
			r = -1;
			break;
		}
	fclose(f);
	if (r == 0 && text.len > 0 && memchr(text.data, '\0', text.len) != NULL) {
		snprintf(err, errsize, "%s: contains a NUL byte (not a text file?)", path);
		r = -1;
	}
	if (r == 0)
		r = sg_config_parse(c, sg_buf_str(&text), path, err, errsize);
	if (r == 0) { /* relay keys that depend on each other, with their lines */
		bool relay_used = c->relay.delivery == SG_DELIVERY_RELAY;
		for (size_t i = 0; i < c->nlisteners; i++)
			relay_used |= sg_config_relays(c, &c->listeners[i]);
		r = sg_relay_config_check(&c->relay, relay_used, err, errsize);
	}
	sg_buf_free(&text);
	return r;
}

int sg_config_add_listen(struct sg_config *c, const char *spec, char *err, size_t errsize)
{
	const char *eq = strchr(spec, '=');
	char role[32];
	if (eq == NULL || (size_t)(eq - spec) >= sizeof(role)) {
		snprintf(err, errsize, "--listen %s: expected ROLE=ADDR:PORT", spec);
		return -1;
	}
	memcpy(role, spec, (size_t)(eq - spec));
	role[eq - spec] = '\0';
	enum sg_role r;
	if (parse_role(role, &r) < 0) {
		snprintf(err, errsize, "--listen %s: role must be mx, submission or submissions", spec);
		return -1;
	}
	/* A second listener of the same role gets a numbered name. */
	char name[32];
	sg_strlcpy(name, role, sizeof(name));
	for (unsigned i = 2; i < 100; i++) {
		bool used = false;
		for (size_t j = 0; j < c->nlisteners; j++)
			used |= strcmp(c->listeners[j].name, name) == 0;
		if (!used)
			break;
		if (snprintf(name, sizeof(name), "%s%u", role, i) >= (int)sizeof(name))
			break;
	}
	struct sg_listener_cfg *l = new_listener(c, name, err, errsize, "--listen");
	if (l == NULL)
		return -1;
	l->role = r;
	if (parse_hostport(eq + 1, l->host, sizeof(l->host), &l->port) < 0) {
		c->nlisteners--;
		snprintf(err, errsize, "--listen %s: expected ROLE=ADDR:PORT", spec);
		return -1;
	}
	return 0;
}

static const char *opt(const char *s)
{
	return s[0] != '\0' ? s : NULL;
}

bool sg_config_relays(const struct sg_config *c, const struct sg_listener_cfg *l)
{
	enum sg_delivery d = l->delivery != SG_DELIVERY_INHERIT ? l->delivery : c->relay.delivery;
	return d == SG_DELIVERY_RELAY;
}

void sg_config_finish(struct sg_config *c)
{
	if (c->nlisteners == 0) {
		listener_defaults(c, &c->listeners[0], SG_ROLE_MX);
		listener_defaults(c, &c->listeners[1], SG_ROLE_SUBMISSION);
		listener_defaults(c, &c->listeners[2], SG_ROLE_SUBMISSIONS);
		c->nlisteners = 3;
	}
	c->sasl.ntlm_domain = opt(c->ntlm_domain);
	c->sasl.oauth_jwks_file = opt(c->oauth_jwks_file);
	c->sasl.oauth_issuer = opt(c->oauth_issuer);
	c->sasl.oauth_audience = opt(c->oauth_audience);
	c->sasl.oauth_login_claim = opt(c->oauth_login_claim);
	c->sasl.oauth_scope = opt(c->oauth_scope);
	c->sasl.gss_keytab = opt(c->gss_keytab);
	c->sasl.gss_service = opt(c->gss_service);
	c->sasl.gss_realm = opt(c->gss_realm);
	c->sasl.gss_map_domain = opt(c->gss_map_domain);
	c->sasl.tls_client_ca = opt(c->tls_client_ca);
	for (size_t i = 0; i < c->nlisteners; i++)
		c->listeners[i].offer_mask = offer_mask(&c->listeners[i], c->legacy_verifiers);
}
