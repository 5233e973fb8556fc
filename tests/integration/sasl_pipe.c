/*
 * sasl_pipe.c: runs the server side of one mechanism over a line protocol on
 * stdin/stdout, so real clients can be tried against a mechanism before (or
 * without) the SMTP server: tests/integration/test_gssapi_clients.py puts a
 * tiny SMTP front end in Python around it.
 *
 *   sasl_pipe MECH
 *   in:  "NOIR" | "IR <b64>" first, then "<b64>" per client line ("" = empty, "*" = cancel)
 *   out: "C <b64>" (a 334 challenge), "OK <login>", "FAIL <reason>",
 *        "TEMPFAIL <reason>", "MALFORMED <reason>"
 *
 *   sasl_pipe --client MECH       the client side (SG_PIPE_HOST, SG_PIPE_AUTHZID)
 *   out: "R <b64>" (send, expect a challenge), "DONE <b64>" (send, our part is
 *        complete), "FAIL <error>";  in: one "<b64>" line per server challenge
 *
 * Environment: SG_PIPE_ACCOUNTS="alice,bob:disabled,..." (the credential store),
 * SG_PIPE_OWNERS="addr=login,..." (sg_cred_find_owner), SG_PIPE_HOSTNAME,
 * SG_PIPE_KEYTAB, SG_PIPE_REALM, SG_PIPE_MAP_DOMAIN, SG_PIPE_CERT_IDENTITY.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/b64.h"
#include "core/buf.h"
#include "core/util.h"
#include "sasl/mechs.h"

int sg_cred_lookup(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v);
int sg_cred_find_owner(struct sg_cred_store *s, const char *address, char *login_r, size_t size);
int sg_cred_find_exact_owner(struct sg_cred_store *s, const char *address, char *login_r,
			     size_t size);

/* Finds name in a comma list "a,b:flag,c"; returns the entry's flag part or NULL. */
static const char *list_find(const char *list, const char *name, bool *found)
{
	*found = false;
	if (list == NULL)
		return NULL;
	size_t nl = strlen(name);
	const char *p = list;
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *sep = memchr(p, ':', len);
		size_t kl = sep != NULL ? (size_t)(sep - p) : len;
		if (kl == nl && strncmp(p, name, nl) == 0) {
			*found = true;
			return sep != NULL ? sep + 1 : "";
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return NULL;
}

int sg_cred_lookup(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v)
{
	bool found;
	const char *flag = list_find(getenv("SG_PIPE_ACCOUNTS"), login, &found);
	if (!found)
		return 0;
	memset(acct, 0, sizeof(*acct));
	acct->id = 1;
	sg_strlcpy(acct->login, login, sizeof(acct->login));
	acct->disabled = strncmp(flag, "disabled", 8) == 0;
	if (v != NULL)
		v->kind = SG_CRED_NONE;
	return 1;
}

int sg_cred_find_owner(struct sg_cred_store *s, const char *address, char *login_r, size_t size)
{
	const char *o = getenv("SG_PIPE_OWNERS");
	if (o == NULL)
		return 0;
	size_t al = strlen(address);
	while (*o != '\0') {
		const char *end = strchr(o, ',');
		size_t len = end != NULL ? (size_t)(end - o) : strlen(o);
		const char *eq = memchr(o, '=', len);
		if (eq != NULL && (size_t)(eq - o) == al && strncasecmp(o, address, al) == 0) {
			char *login = sg_strndup(eq + 1, len - al - 1);
			sg_strlcpy(login_r, login, size);
			free(login);
			return 1;
		}
		o += len;
		if (*o == ',')
			o++;
	}
	return 0;
}

/* These owners are exact addresses only: the same answer without catch-alls. */
int sg_cred_find_exact_owner(struct sg_cred_store *s, const char *address, char *login_r,
			     size_t size)
{
	return sg_cred_find_owner(s, address, login_r, size);
}

static void print_b64(const char *tag, const struct sg_buf *b)
{
	char *enc = sg_malloc(SG_B64_ENCODED_LEN(b->len) + 1);
	sg_b64_encode(b->data != NULL ? b->data : (const uint8_t *)"", b->len, enc);
	printf("%s %s\n", tag, enc);
	free(enc);
}

static int client_main(const struct sg_mech *m)
{
	struct sg_sasl_client_env env;
	memset(&env, 0, sizeof(env));
	env.host = getenv("SG_PIPE_HOST") != NULL ? getenv("SG_PIPE_HOST") : "localhost";
	env.service = "smtp";
	env.authzid = getenv("SG_PIPE_AUTHZID");
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *err = NULL;
	void *st = m->client_start(&env, &err);
	if (st == NULL) {
		printf("FAIL %s\n", err);
		return 1;
	}
	struct sg_buf out;
	sg_buf_init(&out, 12288);
	char line[16500];
	enum sg_mech_status s = m->client_step(st, NULL, 0, &out, &err);
	int ret = 1;
	for (;;) {
		if (s == SG_MECH_CONTINUE) {
			print_b64("R", &out);
		} else if (s == SG_MECH_OK) {
			print_b64("DONE", &out);
			ret = 0;
			break;
		} else {
			printf("FAIL %s\n", err != NULL ? err : "-");
			break;
		}
		if (fgets(line, sizeof(line), stdin) == NULL)
			break;
		line[strcspn(line, "\r\n")] = '\0';
		size_t bl = strlen(line);
		uint8_t *dec = sg_malloc(SG_B64_DECODED_MAX(bl) + 1);
		size_t dl = 0;
		if (sg_b64_decode(line, bl, dec, &dl) < 0) {
			free(dec);
			printf("FAIL base64\n");
			break;
		}
		sg_buf_reset(&out);
		s = m->client_step(st, dec, dl, &out, &err);
		free(dec);
	}
	m->client_free(st);
	sg_buf_free(&out);
	return ret;
}

static const struct sg_mech *find_mech(const char *name)
{
	if (strcasecmp(name, "EXTERNAL") == 0)
		return &sg_mech_external;
#ifdef SG_HAVE_GSSAPI
	if (strcasecmp(name, "GSSAPI") == 0)
		return &sg_mech_gssapi;
#endif
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--client") == 0) {
		const struct sg_mech *cm = find_mech(argv[2]);
		if (cm == NULL) {
			fprintf(stderr, "sasl_pipe: unknown mechanism %s\n", argv[2]);
			return 2;
		}
		return client_main(cm);
	}
	if (argc != 2) {
		fprintf(stderr, "usage: sasl_pipe [--client] MECH\n");
		return 2;
	}
	const struct sg_mech *m = find_mech(argv[1]);
	if (m == NULL) {
		fprintf(stderr, "sasl_pipe: unknown mechanism %s\n", argv[1]);
		return 2;
	}
	struct sg_sasl_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.gss_keytab = getenv("SG_PIPE_KEYTAB");
	cfg.gss_realm = getenv("SG_PIPE_REALM");
	cfg.gss_map_domain = getenv("SG_PIPE_MAP_DOMAIN");
	struct sg_sasl_server_env env;
	memset(&env, 0, sizeof(env));
	env.cfg = &cfg;
	env.hostname = getenv("SG_PIPE_HOSTNAME") != NULL ? getenv("SG_PIPE_HOSTNAME") : "localhost";
	env.service = "smtp";
	env.tls = true;
	env.cert_identity = getenv("SG_PIPE_CERT_IDENTITY");
	if (m->server_available != NULL && !m->server_available(&env)) {
		printf("TEMPFAIL not_available\n");
		return 0;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	void *st = m->server_start(&env);
	struct sg_buf out;
	sg_buf_init(&out, 12288);
	char line[16500];
	bool first = true;
	int ret = 0;
	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		const char *b = line;
		bool no_in = false;
		if (first) {
			if (strcmp(line, "NOIR") == 0)
				no_in = true;
			else if (strncmp(line, "IR ", 3) == 0)
				b = line + 3;
			first = false;
		}
		if (strcmp(b, "*") == 0) {
			printf("FAIL cancelled\n");
			break;
		}
		size_t bl = strlen(b);
		uint8_t *dec = sg_malloc(SG_B64_DECODED_MAX(bl) + 1);
		size_t dl = 0;
		if (!no_in && sg_b64_decode(b, bl, dec, &dl) < 0) {
			free(dec);
			printf("MALFORMED base64\n");
			break;
		}
		struct sg_mech_result res;
		memset(&res, 0, sizeof(res));
		sg_buf_reset(&out);
		enum sg_mech_status s = m->server_step(st, no_in ? NULL : dec, dl, &out, &res);
		free(dec);
		if (s == SG_MECH_CONTINUE) {
			print_b64("C", &out);
			continue;
		}
		const char *what = s == SG_MECH_OK	     ? "OK"
				   : s == SG_MECH_FAIL	     ? "FAIL"
				   : s == SG_MECH_TEMPFAIL ? "TEMPFAIL"
							   : "MALFORMED";
		printf("%s %s\n", what,
		       s == SG_MECH_OK ? res.login : (res.reason != NULL ? res.reason : "-"));
		fprintf(stderr, "sasl_pipe: %s login=%s reason=%s\n", what, res.login,
			res.reason != NULL ? res.reason : "-");
		break;
	}
	m->server_free(st);
	sg_buf_free(&out);
	return ret;
}
