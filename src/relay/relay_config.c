#include "relay/relay_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"

void sg_relay_config_defaults(struct sg_relay_config *c)
{
	memset(c, 0, sizeof(*c));
	c->delivery = SG_DELIVERY_CAPTURE;
	c->tls = SG_RELAY_TLS_STARTTLS;
	c->concurrency = 4;
	c->retry_min_ms = 60 * 1000;
	c->retry_max_ms = 60 * 60 * 1000;
	c->lifetime_ms = 5ULL * 24 * 3600 * 1000;
	c->delay_warning_ms = 0;
	/* RFC 5321 4.5.3.2: greeting and MAIL/RCPT 5 min, DATA initiation 2 min,
	 * each data block 3 min, the final dot 10 min */
	c->timeout_connect_ms = 30 * 1000;
	c->timeout_command_ms = 5 * 60 * 1000;
	c->timeout_data_ms = 3 * 60 * 1000;
	c->timeout_final_ms = 10 * 60 * 1000;
}

void sg_relay_config_wipe(struct sg_relay_config *c)
{
	sg_wipe(c->password, sizeof(c->password));
	sg_wipe(c->token, sizeof(c->token));
}

int sg_parse_duration_ms(const char *v, uint64_t *out)
{
	size_t n = strlen(v);
	size_t d = 0;
	while (d < n && isdigit((unsigned char)v[d]))
		d++;
	if (d == 0 || d > 12)
		return -1;
	char num[16];
	memcpy(num, v, d);
	num[d] = '\0';
	uint64_t x;
	if (sg_parse_u64(num, 0, 999999999999ULL, &x) < 0)
		return -1;
	const char *u = v + d;
	uint64_t mult;
	if (*u == '\0' || strcmp(u, "s") == 0)
		mult = 1000;
	else if (strcmp(u, "ms") == 0)
		mult = 1;
	else if (strcmp(u, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(u, "h") == 0)
		mult = 3600 * 1000;
	else if (strcmp(u, "d") == 0)
		mult = 24ULL * 3600 * 1000;
	else
		return -1;
	if (x > UINT64_MAX / mult / 2)
		return -1;
	*out = x * mult;
	return 0;
}

int sg_relay_parse_delivery(const char *v, enum sg_delivery *out)
{
	if (strcmp(v, "capture") == 0)
		*out = SG_DELIVERY_CAPTURE;
	else if (strcmp(v, "relay") == 0)
		*out = SG_DELIVERY_RELAY;
	else
		return -1;
	return 0;
}

/* Read a small file whole (a secret): trailing CR/LF removed. */
static int read_secret(const char *path, char *out, size_t size, char *err, size_t errsize,
		       const char *where, const char *key)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsize, "%s: %s: cannot read %s: %s", where, key, path, strerror(errno));
		return -1;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, out + n, size - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errsize, "%s: %s: cannot read %s: %s", where, key, path,
				 strerror(errno));
			close(fd);
			sg_wipe(out, size);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == size - 1) {
			char extra;
			if (read(fd, &extra, 1) == 1) {
				snprintf(err, errsize, "%s: %s: %s is too large (at most %zu octets)", where,
					 key, path, size - 1);
				close(fd);
				sg_wipe(out, size);
				return -1;
			}
			break;
		}
	}
	close(fd);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	out[n] = '\0';
	if (n == 0 || memchr(out, '\0', n) != NULL || memchr(out, '\n', n) != NULL) {
		snprintf(err, errsize, "%s: %s: %s must hold one non-empty line", where, key, path);
		sg_wipe(out, size);
		return -1;
	}
	return 0;
}

static int check_readable(const char *path, char *err, size_t errsize, const char *where,
			  const char *key)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsize, "%s: %s: cannot read %s: %s", where, key, path, strerror(errno));
		return -1;
	}
	close(fd);
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
	for (size_t i = 0; i < hl; i++)
		if (!(isalnum((unsigned char)h[i]) || h[i] == '.' || h[i] == '-' || h[i] == ':' ||
		      h[i] == '_'))
			return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	uint64_t p;
	if (sg_parse_u64(colon + 1, 1, 65535, &p) < 0)
		return -1;
	*port = (unsigned)p;
	return 0;
}

static int set_str(char *dst, size_t size, const char *v, char *err, size_t errsize,
		   const char *where, const char *k)
{
	if (!sg_strlcpy(dst, v, size)) {
		snprintf(err, errsize, "%s: %s: value too long", where, k);
		return -1;
	}
	return 0;
}

static int set_duration(uint64_t *dst, const char *v, uint64_t min, char *err, size_t errsize,
			const char *where, const char *k)
{
	uint64_t x;
	if (sg_parse_duration_ms(v, &x) < 0 || x < min) {
		snprintf(err, errsize,
			 "%s: bad value for '%s': '%s' (a duration such as 90s, 500ms, 5m, 2h, 5d)",
			 where, k, v);
		return -1;
	}
	*dst = x;
	return 0;
}

int sg_relay_config_set(struct sg_relay_config *c, const char *k, const char *v, char *err,
			size_t errsize, const char *where)
{
	if (strcmp(k, "delivery") == 0) {
		if (sg_relay_parse_delivery(v, &c->delivery) < 0) {
			snprintf(err, errsize, "%s: delivery must be 'capture' or 'relay', not '%s'",
				 where, v);
			return -1;
		}
		sg_strlcpy(c->where_delivery, where, sizeof(c->where_delivery));
		return 1;
	}
	if (strcmp(k, "relay_host") == 0) {
		if (parse_hostport(v, c->host, sizeof(c->host), &c->port) < 0) {
			snprintf(err, errsize,
				 "%s: relay_host '%s' is not HOST:PORT (a host name or address, a "
				 "colon, a port from 1 to 65535; [IPv6]:PORT)",
				 where, v);
			return -1;
		}
		sg_strlcpy(c->where_host, where, sizeof(c->where_host));
		return 1;
	}
	if (strcmp(k, "relay_tls") == 0) {
		if (strcmp(v, "starttls") == 0)
			c->tls = SG_RELAY_TLS_STARTTLS;
		else if (strcmp(v, "implicit") == 0)
			c->tls = SG_RELAY_TLS_IMPLICIT;
		else if (strcmp(v, "none") == 0)
			c->tls = SG_RELAY_TLS_NONE;
		else {
			snprintf(err, errsize, "%s: relay_tls must be starttls, implicit or none, not '%s'",
				 where, v);
			return -1;
		}
		return 1;
	}
	if (strcmp(k, "relay_tls_name") == 0)
		return set_str(c->tls_name, sizeof(c->tls_name), v, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_helo") == 0)
		return set_str(c->helo, sizeof(c->helo), v, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_user") == 0)
		return set_str(c->user, sizeof(c->user), v, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_ca_file") == 0 || strcmp(k, "relay_cert") == 0 ||
	    strcmp(k, "relay_key") == 0) {
		char *dst = k[6] == 'c' && k[7] == 'a' ? c->ca_file : k[6] == 'c' ? c->cert : c->key;
		if (set_str(dst, sizeof(c->ca_file), v, err, errsize, where, k) < 0 ||
		    check_readable(v, err, errsize, where, k) < 0)
			return -1;
		return 1;
	}
	if (strcmp(k, "relay_password_file") == 0) {
		if (set_str(c->password_file, sizeof(c->password_file), v, err, errsize, where, k) < 0 ||
		    read_secret(v, c->password, sizeof(c->password), err, errsize, where, k) < 0)
			return -1;
		return 1;
	}
	if (strcmp(k, "relay_token_file") == 0) {
		if (set_str(c->token_file, sizeof(c->token_file), v, err, errsize, where, k) < 0 ||
		    read_secret(v, c->token, sizeof(c->token), err, errsize, where, k) < 0)
			return -1;
		return 1;
	}
	if (strcmp(k, "relay_auth") == 0) {
		if (strcasecmp(v, "none") == 0) {
			c->auth[0] = '\0';
		} else {
			const struct sg_mech *m = sg_mech_find(v);
			if (m == NULL || m->client_start == NULL) {
				snprintf(err, errsize,
					 "%s: relay_auth: unknown mechanism '%s' (one of PLAIN, LOGIN, "
					 "CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER, "
					 "EXTERNAL, NTLM, GSSAPI, or none)",
					 where, v);
				return -1;
			}
			sg_strlcpy(c->auth, m->name, sizeof(c->auth));
		}
		sg_strlcpy(c->where_auth, where, sizeof(c->where_auth));
		return 1;
	}
	if (strcmp(k, "relay_concurrency") == 0) {
		uint64_t x;
		if (sg_parse_u64(v, 1, 256, &x) < 0) {
			snprintf(err, errsize, "%s: relay_concurrency must be 1 to 256, not '%s'", where, v);
			return -1;
		}
		c->concurrency = (unsigned)x;
		return 1;
	}
	if (strcmp(k, "relay_retry_min") == 0)
		return set_duration(&c->retry_min_ms, v, 100, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_retry_max") == 0)
		return set_duration(&c->retry_max_ms, v, 100, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "queue_lifetime") == 0)
		return set_duration(&c->lifetime_ms, v, 1000, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "delay_warning_time") == 0)
		return set_duration(&c->delay_warning_ms, v, 0, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_timeout_connect") == 0)
		return set_duration(&c->timeout_connect_ms, v, 100, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_timeout_command") == 0)
		return set_duration(&c->timeout_command_ms, v, 100, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_timeout_data") == 0)
		return set_duration(&c->timeout_data_ms, v, 100, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "relay_timeout_final") == 0)
		return set_duration(&c->timeout_final_ms, v, 100, err, errsize, where, k) < 0 ? -1 : 1;
	if (strcmp(k, "dkim_key") == 0) {
		if (c->ndkim >= SG_RELAY_MAX_DKIM) {
			snprintf(err, errsize, "%s: too many dkim_key lines (at most %d)", where,
				 SG_RELAY_MAX_DKIM);
			return -1;
		}
		struct sg_relay_dkim_cfg *d = &c->dkim[c->ndkim];
		char f[3][1024];
		int n = 0;
		const char *p = v;
		while (*p != '\0' && n < 4) {
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '\0')
				break;
			size_t l = strcspn(p, " \t");
			if (n < 3) {
				if (l >= sizeof(f[0]))
					l = sizeof(f[0]) - 1;
				memcpy(f[n], p, l);
				f[n][l] = '\0';
			}
			n++;
			p += strcspn(p, " \t");
		}
		if (n != 3) {
			snprintf(err, errsize, "%s: dkim_key needs three values: DOMAIN SELECTOR KEYFILE",
				 where);
			return -1;
		}
		for (size_t i = 0; i < c->ndkim; i++)
			if (strcasecmp(c->dkim[i].domain, f[0]) == 0) {
				snprintf(err, errsize, "%s: dkim_key for %s given twice (first at %s)", where,
					 f[0], c->dkim[i].where);
				return -1;
			}
		if (!sg_strlcpy(d->domain, f[0], sizeof(d->domain)) ||
		    !sg_strlcpy(d->selector, f[1], sizeof(d->selector)) ||
		    !sg_strlcpy(d->keyfile, f[2], sizeof(d->keyfile))) {
			snprintf(err, errsize, "%s: dkim_key: value too long", where);
			return -1;
		}
		if (check_readable(d->keyfile, err, errsize, where, k) < 0)
			return -1;
		sg_strlcpy(d->where, where, sizeof(d->where));
		c->ndkim++;
		return 1;
	}
	return 0;
}

int sg_relay_config_check(const struct sg_relay_config *c, bool relay_used, char *err,
			  size_t errsize)
{
	if (relay_used && c->host[0] == '\0') {
		snprintf(err, errsize,
			 "%s: delivery = relay needs a smarthost: set relay_host = HOST:PORT",
			 c->where_delivery[0] ? c->where_delivery : "configuration");
		return -1;
	}
	if (c->retry_max_ms < c->retry_min_ms) {
		snprintf(err, errsize, "configuration: relay_retry_max is shorter than relay_retry_min");
		return -1;
	}
	if (c->auth[0] == '\0')
		return 0;
	const char *w = c->where_auth;
	const struct sg_mech *m = sg_mech_find(c->auth);
	bool token = strcasecmp(c->auth, "XOAUTH2") == 0 || strcasecmp(c->auth, "OAUTHBEARER") == 0;
	bool external = strcasecmp(c->auth, "EXTERNAL") == 0;
	bool gssapi = strcasecmp(c->auth, "GSSAPI") == 0;
	if (m == NULL)
		return -1;
	if (!external && !gssapi && c->user[0] == '\0') {
		snprintf(err, errsize, "%s: relay_auth = %s needs relay_user", w, c->auth);
		return -1;
	}
	if (token && c->token_file[0] == '\0') {
		snprintf(err, errsize, "%s: relay_auth = %s needs relay_token_file (the bearer token)",
			 w, c->auth);
		return -1;
	}
	if (!token && !external && !gssapi && c->password_file[0] == '\0') {
		snprintf(err, errsize, "%s: relay_auth = %s needs relay_password_file", w, c->auth);
		return -1;
	}
	if (external && c->cert[0] == '\0') {
		snprintf(err, errsize, "%s: relay_auth = EXTERNAL needs relay_cert and relay_key", w);
		return -1;
	}
	if ((m->flags & SG_MECH_F_PLAINTEXT) && c->tls == SG_RELAY_TLS_NONE) {
		snprintf(err, errsize,
			 "%s: relay_auth = %s would send the password in clear with relay_tls = none",
			 w, c->auth);
		return -1;
	}
	return 0;
}
