#include "client/sasl_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/transcript.h"
#include "core/b64.h"
#include "core/secret.h"
#include "core/util.h"

/* RFC 4954 section 4: AUTH is subject to the 512-octet command line limit. */
#define SASLC_AUTH_LINE_MAX 510
/* Our cap on one mechanism message (decoded), matching the server's 12,288-octet line. */
#define SASLC_MSG_MAX 9216
#define SASLC_STEPS_MAX 20

static void set_display(struct sg_saslc *c, const char *prefix, const uint8_t *d, size_t n,
			bool is_empty_marker)
{
	free(c->display);
	free(c->decoded);
	c->display = NULL;
	c->decoded = NULL;
	const char *secrets[3] = {NULL, NULL, NULL};
	size_t k = 0;
	if (!c->show_secrets) {
		if (c->env->password != NULL && c->env->password[0] != '\0')
			secrets[k++] = c->env->password;
		if (c->env->token != NULL && c->env->token[0] != '\0')
			secrets[k++] = c->env->token;
	}
	bool secret = d != NULL && sg_sasl_contains_secret(d, n, secrets);
	if (secret) {
		c->display = sg_asprintf("%s%s", prefix, "****");
	} else {
		c->display = sg_asprintf("%s", sg_buf_str(&c->line));
	}
	if (d != NULL && !is_empty_marker)
		c->decoded = sg_sasl_describe(d, n, secrets);
	else if (is_empty_marker)
		c->decoded = sg_strdup("empty");
}

/* line = prefix + base64(d) (or prefix + "=" when empty and eq_for_empty) */
static int make_line(struct sg_saslc *c, const char *prefix, const uint8_t *d, size_t n,
		     bool eq_for_empty)
{
	sg_buf_reset(&c->line);
	if (sg_buf_append_str(&c->line, prefix) < 0)
		return -1;
	if (n == 0) {
		if (eq_for_empty && sg_buf_append_str(&c->line, "=") < 0)
			return -1;
	} else {
		char *b = sg_malloc(SG_B64_ENCODED_LEN(n) + 1);
		size_t bl = sg_b64_encode(d, n, b);
		int r = sg_buf_append(&c->line, b, bl);
		sg_wipe(b, bl);
		free(b);
		if (r < 0)
			return -1;
	}
	set_display(c, prefix, d, n, n == 0);
	return 0;
}

static enum sg_saslc_status send_cancel(struct sg_saslc *c, const char *why)
{
	c->aborted = true;
	c->client_error = why;
	sg_buf_reset(&c->line);
	sg_buf_append_str(&c->line, "*");
	free(c->display);
	free(c->decoded);
	c->display = sg_strdup("*");
	c->decoded = sg_asprintf("cancel: %s", why);
	return SG_SASLC_SEND;
}

int sg_saslc_begin(struct sg_saslc *c, const struct sg_mech *mech,
		   const struct sg_sasl_client_env *env, bool show_secrets)
{
	memset(c, 0, sizeof(*c));
	c->mech = mech;
	c->env = env;
	c->show_secrets = show_secrets;
	sg_buf_init_secret(&c->line, 16384);
	sg_buf_init_secret(&c->pending_ir, SASLC_MSG_MAX);
	if (mech->client_start == NULL || mech->client_step == NULL) {
		c->client_error = "this mechanism has no client side in this build";
		return -1;
	}
	const char *err = NULL;
	c->st = mech->client_start(env, &err);
	if (c->st == NULL) {
		c->client_error = err != NULL ? err : "the mechanism could not start";
		return -1;
	}
	char prefix[80];
	if ((mech->flags & SG_MECH_F_SERVER_FIRST) != 0) {
		sg_buf_reset(&c->line);
		sg_buf_printf(&c->line, "AUTH %s", mech->name);
		set_display(c, "", NULL, 0, false);
		return 0;
	}
	struct sg_buf out;
	sg_buf_init_secret(&out, SASLC_MSG_MAX);
	err = NULL;
	enum sg_mech_status s = mech->client_step(c->st, NULL, 0, &out, &err);
	if (s != SG_MECH_CONTINUE && s != SG_MECH_OK) {
		c->client_error = err != NULL ? err : "the mechanism failed to start";
		sg_buf_free(&out);
		return -1;
	}
	if (s == SG_MECH_OK)
		c->mech_done = true;
	int r;
	if (SG_B64_ENCODED_LEN(out.len) + strlen(mech->name) + 6 > SASLC_AUTH_LINE_MAX) {
		/* RFC 4954 section 4: too long for the AUTH line; wait for "334 ". */
		sg_buf_append(&c->pending_ir, out.data, out.len);
		c->have_pending_ir = true;
		sg_buf_reset(&c->line);
		sg_buf_printf(&c->line, "AUTH %s", mech->name);
		set_display(c, "", NULL, 0, false);
		r = 0;
	} else {
		snprintf(prefix, sizeof(prefix), "AUTH %s ", mech->name);
		r = make_line(c, prefix, out.data, out.len, true);
	}
	sg_buf_free(&out);
	if (r < 0) {
		c->client_error = "initial response too long";
		return -1;
	}
	return 0;
}

enum sg_saslc_status sg_saslc_reply(struct sg_saslc *c, const struct sg_reply *r)
{
	if (r->code == 235)
		return SG_SASLC_OK;
	if (r->code != 334)
		return SG_SASLC_REFUSED;
	if (c->aborted || ++c->steps > SASLC_STEPS_MAX)
		return send_cancel(c, "too many challenges");
	if (r->nlines != 1)
		return send_cancel(c, "multi-line 334 challenge");
	const char *t = sg_reply_text(r, 0);
	size_t tl = strlen(t);
	if (c->have_pending_ir) {
		c->have_pending_ir = false;
		if (tl != 0)
			return send_cancel(c, "expected an empty challenge for the held-back initial response");
		int rr = make_line(c, "", c->pending_ir.data, c->pending_ir.len, false);
		sg_buf_reset(&c->pending_ir);
		return rr < 0 ? send_cancel(c, "response too long") : SG_SASLC_SEND;
	}
	uint8_t *in = sg_malloc(SG_B64_DECODED_MAX(tl) + 1);
	size_t inlen = 0;
	if (sg_b64_decode(t, tl, in, &inlen) < 0) {
		free(in);
		return send_cancel(c, "the server's challenge is not valid base64");
	}
	struct sg_buf out;
	sg_buf_init_secret(&out, SASLC_MSG_MAX);
	const char *err = NULL;
	enum sg_mech_status s;
	if (c->mech_done) {
		/* Data after the mechanism finished (an OAuth error JSON): the
		 * mechanism says what to answer (RFC 7628 3.2.3: %x01 for
		 * OAUTHBEARER); otherwise RFC 4954 section 4: an empty line. */
		s = c->mech->client_step(c->st, in, inlen, &out, &err);
		if (s == SG_MECH_FAIL && out.len > 0) {
			sg_wipe(in, inlen);
			free(in);
			int mr = make_line(c, "", out.data, out.len, false);
			sg_buf_free(&out);
			return mr < 0 ? send_cancel(c, "internal") : SG_SASLC_SEND;
		}
		sg_buf_reset(&out);
		s = SG_MECH_CONTINUE;
	} else {
		s = c->mech->client_step(c->st, in, inlen, &out, &err);
	}
	/* RFC 5802 section 7: a SCRAM server-final-message "e=..." is the server's
	 * verdict, sent as a 334 because SMTP has no failure-with-data reply: answer
	 * it with an empty line so the server can end with its 535 (a "*" would
	 * turn a wrong password into "501 aborted"). */
	bool server_error = (s == SG_MECH_FAIL || s == SG_MECH_MALFORMED) && inlen >= 2 &&
			    memcmp(in, "e=", 2) == 0 && strncasecmp(c->mech->name, "SCRAM-", 6) == 0;
	sg_wipe(in, inlen);
	free(in);
	enum sg_saslc_status ret;
	if (server_error) {
		c->mech_done = true;
		sg_buf_free(&out);
		return make_line(c, "", NULL, 0, false) < 0 ? send_cancel(c, "internal")
							     : SG_SASLC_SEND;
	}
	if (s == SG_MECH_CONTINUE || s == SG_MECH_OK) {
		if (s == SG_MECH_OK)
			c->mech_done = true;
		if (make_line(c, "", out.data, out.len, false) < 0)
			ret = send_cancel(c, "response too long");
		else
			ret = SG_SASLC_SEND;
	} else {
		ret = send_cancel(c, err != NULL ? err : "the mechanism rejected the server's data");
	}
	sg_buf_free(&out);
	return ret;
}

void sg_saslc_free(struct sg_saslc *c)
{
	if (c->st != NULL && c->mech != NULL && c->mech->client_free != NULL)
		c->mech->client_free(c->st);
	c->st = NULL;
	sg_buf_free(&c->line);
	sg_buf_free(&c->pending_ir);
	free(c->display);
	free(c->decoded);
	c->display = NULL;
	c->decoded = NULL;
}
