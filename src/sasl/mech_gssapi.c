/*
 * mech_gssapi.c: GSSAPI (RFC 4752) over MIT Kerberos, server and client side.
 *
 * Server: the acceptor credential comes from cfg->gss_keytab through
 * gss_acquire_cred_from() with the cred store {"keytab": path}, so nothing
 * process-global (KRB5_KTNAME) is touched. The acceptor name is
 * "<service>@<hostname>" (GSS_C_NT_HOSTBASED_SERVICE; service =
 * cfg->gss_service, else env->service, else "smtp"). When the keytab has no
 * key for that name (clients may reach us under another host name), we fall
 * back to GSS_C_NO_NAME, i.e. any key in the keytab, and then check that the
 * ticket was for "<service>/..." so a keytab shared with other services does
 * not let a ticket for host/ or HTTP/ log in.
 *
 * Exchange (RFC 4752 section 3.1):
 *   C: token ... S: 334 token ...      accept_sec_context until COMPLETE
 *   S: 334 <last token>  C: <empty>    only when accept produced a last token
 *   S: 334 wrap({0x01, 0,0,0})         layers offered: none; max buffer 0
 *   C: wrap({layer, buf[3], authzid})  layer must be 0x01 (none)
 * The client principal "user@REALM" maps to account "user" (or
 * "user@<gss_map_domain>"); REALM must equal cfg->gss_realm when set, else
 * the realm of our own service principal (the keytab's): without it every
 * realm the KDC trusts would map "alice@OTHER" to the local "alice".
 * Principals with more than one component (alice/admin) are refused.
 *
 * The 4 octets' max buffer size is ignored when the client picks "none":
 * GNU SASL (msmtp) answers 0xffffff there. A message shorter than 4 octets
 * is refused before any octet is read (GNU SASL CVE-2022-2469).
 *
 * Verdicts: GSS errors from the client's tokens (bad ticket, replay, wrong
 * service) -> FAIL "gss_error"; keytab missing or unreadable -> TEMPFAIL
 * "keytab"; store error -> TEMPFAIL "store_error"; principal not mapped ->
 * FAIL "unknown_principal" / "wrong_realm" / "disabled" / "bad_authzid";
 * layer message -> MALFORMED / FAIL "bad_layer".
 *
 * The keytab is read at each exchange by the worker thread (the server has
 * dropped root by then: the keytab must be readable by its user, otherwise
 * the mechanism is not offered and the log says why once). The acceptor also
 * writes MIT's replay cache (default /var/tmp/krb5_<uid>.rcache2).
 * The client side uses the default credential cache (KRB5CCNAME) and asks for
 * mutual authentication; it answers the layer offer with "none" + authzid.
 */
#include "sasl/mechs.h"

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"

#define GSS_ERRMSG_MAX 256

/* Release without touching the caller's minor status (kept for the log). */
static void sg_gss_release(gss_buffer_t b)
{
	OM_uint32 m;
	/* MIT's gss_release_buffer frees only non-empty buffers, but gss_unwrap
	 * of an empty message returns a zero-length one-octet allocation. */
	if (b->length == 0 && b->value != NULL) {
		free(b->value);
		b->value = NULL;
		return;
	}
	(void)gss_release_buffer(&m, b);
}

static void sg_gss_status_text(OM_uint32 major, OM_uint32 minor, char *out, size_t size)
{
	struct sg_buf b;
	sg_buf_init(&b, size > 0 ? size - 1 : 0);
	OM_uint32 codes[2] = {major, minor};
	int types[2] = {GSS_C_GSS_CODE, GSS_C_MECH_CODE};
	for (int i = 0; i < 2; i++) {
		if (codes[i] == 0)
			continue;
		OM_uint32 ctx = 0, min;
		do {
			gss_buffer_desc msg = GSS_C_EMPTY_BUFFER;
			if (GSS_ERROR(gss_display_status(&min, codes[i], types[i], GSS_C_NO_OID, &ctx,
							 &msg)))
				break;
			if (b.len > 0)
				(void)sg_buf_append_str(&b, ": ");
			(void)sg_buf_append(&b, msg.value, msg.length);
			gss_release_buffer(&min, &msg);
		} while (ctx != 0);
	}
	sg_strlcpy(out, sg_buf_str(&b), size);
	sg_buf_free(&b);
}

static void sg_gss_log(enum sg_log_level lvl, const char *what, OM_uint32 major, OM_uint32 minor)
{
	char text[GSS_ERRMSG_MAX], safe[GSS_ERRMSG_MAX + 16];
	sg_gss_status_text(major, minor, text, sizeof(text));
	sg_log(lvl, "gssapi", "op=%s major=0x%x minor=%u error=%s", what, (unsigned)major,
	       (unsigned)minor, sg_log_value(text, safe, sizeof(safe)));
}

/* Display a name into out; 0 or -1. */
static int sg_gss_name_str(gss_name_t name, char *out, size_t size)
{
	OM_uint32 minor;
	gss_buffer_desc b = GSS_C_EMPTY_BUFFER;
	if (GSS_ERROR(gss_display_name(&minor, name, &b, NULL)))
		return -1;
	int ret = 0;
	if (b.length >= size || memchr(b.value, '\0', b.length) != NULL) {
		ret = -1;
	} else {
		memcpy(out, b.value, b.length);
		out[b.length] = '\0';
	}
	sg_gss_release(&b);
	return ret;
}

static int sg_gss_import_hostbased(const char *service, const char *host, gss_name_t *name_r)
{
	OM_uint32 minor;
	char *s = sg_asprintf("%s@%s", service, host);
	gss_buffer_desc nb = {strlen(s), s};
	OM_uint32 major = gss_import_name(&minor, &nb, GSS_C_NT_HOSTBASED_SERVICE, name_r);
	free(s);
	if (GSS_ERROR(major)) {
		sg_gss_log(SG_WARN, "import_name", major, minor);
		*name_r = GSS_C_NO_NAME;
		return -1;
	}
	return 0;
}

static int sg_gss_append(struct sg_buf *out, const gss_buffer_desc *tok)
{
	return tok->length == 0 ? 0 : sg_buf_append(out, tok->value, tok->length);
}

/* ------------------------------------------------------------------ server */

enum sg_gss_srv_state {
	GSRV_START,      /* nothing received yet */
	GSRV_ACCEPT,     /* context tokens */
	GSRV_WAIT_EMPTY, /* sent the last context token, expect an empty response */
	GSRV_WAIT_LAYER, /* sent the wrapped layer offer */
	GSRV_DONE,
};

struct sg_gss_srv {
	struct sg_cred_store *creds;
	const struct sg_sasl_config *cfg;
	char service[64];
	char *hostname;
	enum sg_gss_srv_state state;
	bool any_acceptor; /* acquired with GSS_C_NO_NAME: check the target service */
	gss_cred_id_t cred;
	gss_ctx_id_t ctx;
	gss_name_t src;
	char principal[512];
	char target_realm[256]; /* realm of the service principal the ticket was for */
};

static const char *sg_gss_service(const struct sg_sasl_config *cfg, const char *env_service)
{
	if (cfg != NULL && cfg->gss_service != NULL && cfg->gss_service[0] != '\0')
		return cfg->gss_service;
	if (env_service != NULL && env_service[0] != '\0')
		return env_service;
	return "smtp";
}

/* Offered only with a keytab this process can read: the server runs as an
 * unprivileged user after start-up, so the keytab must be readable by that
 * user (as with Postfix and Cyrus SASL). Said once in the log. */
static bool gssapi_server_available(const struct sg_sasl_server_env *env)
{
	static _Atomic bool warned;
	if (env->cfg == NULL || env->cfg->gss_keytab == NULL || env->cfg->gss_keytab[0] == '\0')
		return false;
	if (access(env->cfg->gss_keytab, R_OK) == 0)
		return true;
	if (!atomic_exchange(&warned, true)) {
		char safe[300];
		sg_log(SG_WARN, "gssapi",
		       "msg=\"GSSAPI not offered: keytab not readable by uid %u\" keytab=%s",
		       (unsigned)geteuid(), sg_log_value(env->cfg->gss_keytab, safe, sizeof(safe)));
	}
	return false;
}

static void *gssapi_server_start(const struct sg_sasl_server_env *env)
{
	struct sg_gss_srv *st = sg_calloc(1, sizeof(*st));
	st->creds = env->creds;
	st->cfg = env->cfg;
	sg_strlcpy(st->service, sg_gss_service(env->cfg, env->service), sizeof(st->service));
	st->hostname = env->hostname != NULL && env->hostname[0] != '\0' ? sg_strdup(env->hostname)
									 : NULL;
	st->state = GSRV_START;
	st->cred = GSS_C_NO_CREDENTIAL;
	st->ctx = GSS_C_NO_CONTEXT;
	st->src = GSS_C_NO_NAME;
	return st;
}

static OM_uint32 sg_gss_acquire(const char *keytab, gss_name_t name, gss_cred_id_t *cred_r,
				OM_uint32 *minor_r)
{
	gss_key_value_element_desc kv = {"keytab", keytab};
	gss_key_value_set_desc store = {1, &kv};
	/* Only Kerberos V5: RFC 4752 is the krb5 GSS mechanism, not SPNEGO. */
	return gss_acquire_cred_from(minor_r, name, GSS_C_INDEFINITE, (gss_OID_set)gss_mech_set_krb5,
				     GSS_C_ACCEPT, &store, cred_r, NULL, NULL);
}

/* Remembers that "<service>@<host>" is not in the keytab, so that every AUTH
 * does not retry the named acquisition (which also leaks a little inside
 * libkrb5 on that failure path). Restart to pick up a new keytab entry. */
static pthread_mutex_t sg_gss_any_lock = PTHREAD_MUTEX_INITIALIZER;
static char *sg_gss_any_key;

static bool sg_gss_any_known(const char *key)
{
	pthread_mutex_lock(&sg_gss_any_lock);
	bool r = sg_gss_any_key != NULL && strcmp(sg_gss_any_key, key) == 0;
	pthread_mutex_unlock(&sg_gss_any_lock);
	return r;
}

static void sg_gss_any_remember(const char *key)
{
	pthread_mutex_lock(&sg_gss_any_lock);
	free(sg_gss_any_key);
	sg_gss_any_key = sg_strdup(key);
	pthread_mutex_unlock(&sg_gss_any_lock);
}

/* Acceptor credential; 0 or -1 (-> TEMPFAIL: our configuration, not the client). */
static int sg_gss_srv_cred(struct sg_gss_srv *st)
{
	const char *keytab = st->cfg != NULL ? st->cfg->gss_keytab : NULL;
	if (keytab == NULL || keytab[0] == '\0') {
		sg_log(SG_WARN, "gssapi", "error=\"no gss_keytab configured\"");
		return -1;
	}
	if (access(keytab, R_OK) != 0) {
		char safe[300];
		sg_log(SG_WARN, "gssapi", "error=\"keytab not readable\" keytab=%s",
		       sg_log_value(keytab, safe, sizeof(safe)));
		return -1;
	}
	OM_uint32 major = GSS_S_FAILURE, minor = 0;
	char *key = sg_asprintf("%s\n%s@%s", keytab, st->service,
				st->hostname != NULL ? st->hostname : "");
	bool named_failed = false;
	if (st->hostname != NULL && !sg_gss_any_known(key)) {
		gss_name_t name;
		if (sg_gss_import_hostbased(st->service, st->hostname, &name) == 0) {
			major = sg_gss_acquire(keytab, name, &st->cred, &minor);
			OM_uint32 m2;
			gss_release_name(&m2, &name);
			if (!GSS_ERROR(major)) {
				free(key);
				return 0;
			}
			st->cred = GSS_C_NO_CREDENTIAL;
			named_failed = true;
			sg_gss_log(SG_INFO, "acquire_cred_named", major, minor);
		}
	}
	major = sg_gss_acquire(keytab, GSS_C_NO_NAME, &st->cred, &minor);
	if (GSS_ERROR(major)) {
		free(key);
		sg_gss_log(SG_WARN, "acquire_cred", major, minor);
		st->cred = GSS_C_NO_CREDENTIAL;
		return -1;
	}
	if (named_failed) {
		char safe[300];
		sg_log(SG_WARN, "gssapi",
		       "msg=\"no key for our name in the keytab; accepting any %s/ key in it\" "
		       "name=%s",
		       st->service,
		       sg_log_value(strchr(key, '\n') + 1, safe, sizeof(safe)));
		sg_gss_any_remember(key);
	}
	free(key);
	st->any_acceptor = true;
	return 0;
}

/* With a GSS_C_NO_NAME acceptor: the ticket must be for "<service>/host@REALM". */
/* The service principal the client's ticket was for ("smtp/host@REALM"):
 * remember its realm (the keytab's, for the principal mapping) and, when any
 * key of the keytab was accepted, check the service. */
static bool sg_gss_target_ok(struct sg_gss_srv *st)
{
	OM_uint32 minor;
	gss_name_t targ = GSS_C_NO_NAME;
	if (GSS_ERROR(gss_inquire_context(&minor, st->ctx, NULL, &targ, NULL, NULL, NULL, NULL,
					  NULL)))
		return false;
	char tn[512];
	int r = sg_gss_name_str(targ, tn, sizeof(tn));
	gss_release_name(&minor, &targ);
	if (r < 0)
		return false;
	const char *at = strrchr(tn, '@');
	if (at == NULL || !sg_strlcpy(st->target_realm, at + 1, sizeof(st->target_realm)))
		st->target_realm[0] = '\0';
	size_t sl = strlen(st->service);
	if (!st->any_acceptor || (strncmp(tn, st->service, sl) == 0 && tn[sl] == '/'))
		return true;
	char safe[540];
	sg_log(SG_INFO, "gssapi", "error=\"ticket for another service\" target=%s",
	       sg_log_value(tn, safe, sizeof(safe)));
	return false;
}

/* The server's layer offer, RFC 4752 section 3.1: "the server ... constructs
 * 4 octets of data, with the first octet containing a bit-mask specifying the
 * security layers supported by the server and the second through fourth
 * octets containing in network byte order the maximum size output_token the
 * server is able to receive" -- we support only "no security layer" (1) and
 * announce a maximum of 0, wrapped without confidentiality. */
static enum sg_mech_status sg_gss_srv_offer(struct sg_gss_srv *st, struct sg_buf *out,
					    struct sg_mech_result *res)
{
	static const uint8_t offer[4] = {0x01, 0, 0, 0};
	OM_uint32 minor;
	gss_buffer_desc in = {sizeof(offer), (void *)offer};
	gss_buffer_desc wrapped = GSS_C_EMPTY_BUFFER;
	OM_uint32 major = gss_wrap(&minor, st->ctx, 0, GSS_C_QOP_DEFAULT, &in, NULL, &wrapped);
	if (GSS_ERROR(major)) {
		sg_gss_log(SG_WARN, "wrap", major, minor);
		res->reason = "gss_error";
		return SG_MECH_FAIL;
	}
	int r = sg_gss_append(out, &wrapped);
	sg_gss_release(&wrapped);
	if (r < 0) {
		res->reason = "gss_error";
		return SG_MECH_FAIL;
	}
	st->state = GSRV_WAIT_LAYER;
	return SG_MECH_CONTINUE;
}

enum sg_mech_status sg_gss_map_principal(const char *principal, const char *realm_allowed,
					 const char *map_domain, char *login, size_t size,
					 const char **reason_r)
{
	const char *p = principal;
	const char *at = strrchr(p, '@');
	*reason_r = "unknown_principal";
	login[0] = '\0';
	if (at == NULL || at == p)
		return SG_MECH_FAIL;
	size_t ulen = (size_t)(at - p);
	const char *realm = at + 1;
	/* One component only: "alice/admin" or "smtp/host" are not users; an
	 * escaped '@' or '/' ("a\@b") is refused rather than unescaped. */
	if (memchr(p, '/', ulen) != NULL || memchr(p, '\\', ulen) != NULL)
		return SG_MECH_FAIL;
	/* Only one realm maps to local accounts: alice@OTHER.REALM (trusted by
	 * the KDC through cross-realm keys) is not the local alice. */
	if (realm_allowed == NULL || realm_allowed[0] == '\0' || strcmp(realm, realm_allowed) != 0) {
		*reason_r = "wrong_realm";
		return SG_MECH_FAIL;
	}
	struct sg_buf lb;
	sg_buf_init(&lb, SG_LOGIN_MAX);
	int r = sg_buf_append(&lb, p, ulen);
	if (r == 0 && map_domain != NULL && map_domain[0] != '\0')
		r = sg_buf_printf(&lb, "@%s", map_domain);
	if (r == 0 && !sg_strlcpy(login, sg_buf_str(&lb), size))
		r = -1;
	sg_buf_free(&lb);
	if (r < 0) {
		login[0] = '\0';
		return SG_MECH_FAIL;
	}
	*reason_r = NULL;
	return SG_MECH_OK;
}

/* Principal -> account login; FAIL/TEMPFAIL with res->reason, or OK. The
 * realm is cfg->gss_realm when set, else the keytab's: the realm of the
 * service principal the ticket was issued for. */
static enum sg_mech_status sg_gss_map(struct sg_gss_srv *st, const char *authzid,
				      size_t authzid_len, struct sg_mech_result *res)
{
	const struct sg_sasl_config *cfg = st->cfg;
	const char *realm = cfg != NULL && cfg->gss_realm != NULL && cfg->gss_realm[0] != '\0'
				    ? cfg->gss_realm
				    : st->target_realm;
	char login[SG_LOGIN_MAX + 1];
	const char *reason = NULL;
	if (sg_gss_map_principal(st->principal, realm, cfg != NULL ? cfg->gss_map_domain : NULL,
				 login, sizeof(login), &reason) != SG_MECH_OK) {
		res->reason = reason;
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, login, sizeof(res->login));

	struct sg_account acct;
	memset(&acct, 0, sizeof(acct));
	int found = sg_cred_lookup(st->creds, login, SG_CRED_NONE, &acct, NULL);
	if (found < 0) {
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	if (found == 0) {
		res->reason = "unknown_principal";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, acct.login, sizeof(res->login));
	if (acct.disabled) {
		res->reason = "disabled";
		return SG_MECH_FAIL;
	}
	/* RFC 4752 section 3.1: the authorization identity follows the four
	 * octets; we allow only the identity the principal maps to. */
	if (authzid_len > 0 &&
	    (authzid_len != strlen(acct.login) || memcmp(authzid, acct.login, authzid_len) != 0)) {
		res->reason = "bad_authzid";
		return SG_MECH_FAIL;
	}
	return SG_MECH_OK;
}

static enum sg_mech_status sg_gss_srv_accept(struct sg_gss_srv *st, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, struct sg_mech_result *res)
{
	OM_uint32 minor, major;
	if (st->cred == GSS_C_NO_CREDENTIAL && sg_gss_srv_cred(st) < 0) {
		res->reason = "keytab";
		return SG_MECH_TEMPFAIL;
	}
	gss_buffer_desc itok = {inlen, (void *)in};
	gss_buffer_desc otok = GSS_C_EMPTY_BUFFER;
	gss_name_t src = GSS_C_NO_NAME;
	OM_uint32 flags = 0;
	major = gss_accept_sec_context(&minor, &st->ctx, st->cred, &itok,
				       GSS_C_NO_CHANNEL_BINDINGS, &src, NULL, &otok, &flags, NULL,
				       NULL);
	if (src != GSS_C_NO_NAME) {
		if (st->src != GSS_C_NO_NAME)
			gss_release_name(&minor, &st->src);
		st->src = src;
	}
	if (GSS_ERROR(major)) {
		sg_gss_release(&otok);
		sg_gss_log(SG_INFO, "accept_sec_context", major, minor);
		res->reason = "gss_error";
		st->state = GSRV_DONE;
		return SG_MECH_FAIL;
	}
	int r = sg_gss_append(out, &otok);
	size_t olen = otok.length;
	sg_gss_release(&otok);
	if (r < 0) {
		res->reason = "gss_error";
		st->state = GSRV_DONE;
		return SG_MECH_FAIL;
	}
	if (major & GSS_S_CONTINUE_NEEDED) {
		st->state = GSRV_ACCEPT;
		return SG_MECH_CONTINUE;
	}
	/* Complete. We need integrity for the wrapped layer negotiation. */
	if (st->src == GSS_C_NO_NAME || sg_gss_name_str(st->src, st->principal,
						       sizeof(st->principal)) < 0 ||
	    (flags & GSS_C_INTEG_FLAG) == 0) {
		res->reason = "gss_error";
		st->state = GSRV_DONE;
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, st->principal, sizeof(res->login));
	if (!sg_gss_target_ok(st)) {
		res->reason = "gss_error";
		st->state = GSRV_DONE;
		return SG_MECH_FAIL;
	}
	if (olen > 0) {
		/* RFC 4752 section 3.1: the last token goes out as a challenge;
		 * the client answers with an empty response. */
		st->state = GSRV_WAIT_EMPTY;
		return SG_MECH_CONTINUE;
	}
	return sg_gss_srv_offer(st, out, res);
}

static enum sg_mech_status sg_gss_srv_layer(struct sg_gss_srv *st, const uint8_t *in, size_t inlen,
					    struct sg_mech_result *res)
{
	OM_uint32 minor;
	gss_buffer_desc w = {inlen, (void *)in};
	gss_buffer_desc u = GSS_C_EMPTY_BUFFER;
	st->state = GSRV_DONE;
	sg_strlcpy(res->login, st->principal, sizeof(res->login));
	OM_uint32 major = gss_unwrap(&minor, st->ctx, &w, &u, NULL, NULL);
	if (GSS_ERROR(major)) {
		sg_gss_log(SG_INFO, "unwrap", major, minor);
		res->reason = "gss_error";
		return SG_MECH_FAIL;
	}
	enum sg_mech_status ret;
	const uint8_t *m = u.value;
	/* At least the 4 octets (layer + max buffer): a shorter message is an
	 * error, never an out-of-bounds read (GNU SASL CVE-2022-2469). */
	if (u.length < 4 || m == NULL) {
		res->reason = "bad_layer";
		ret = SG_MECH_MALFORMED;
	} else if (m[0] != 0x01) {
		/* "The client ... with the first octet containing a bit-mask
		 * specifying the selected security layer": exactly "none",
		 * the only one we offered. The max buffer size means nothing
		 * without a layer and is ignored (clients send 0 or 64k). */
		res->reason = "bad_layer";
		ret = SG_MECH_FAIL;
	} else if (u.length - 4 > SG_LOGIN_MAX || memchr(m + 4, '\0', u.length - 4) != NULL) {
		res->reason = "bad_authzid";
		ret = SG_MECH_FAIL;
	} else {
		ret = sg_gss_map(st, (const char *)m + 4, u.length - 4, res);
	}
	sg_gss_release(&u);
	return ret;
}

static enum sg_mech_status gssapi_server_step(void *vst, const uint8_t *in, size_t inlen,
					      struct sg_buf *out, struct sg_mech_result *res)
{
	struct sg_gss_srv *st = vst;
	switch (st->state) {
	case GSRV_START:
		if (in == NULL || inlen == 0) {
			/* No initial response: RFC 4422 section 5 "the server
			 * sends an empty challenge"; the next message must be a token. */
			st->state = GSRV_ACCEPT;
			return SG_MECH_CONTINUE;
		}
		return sg_gss_srv_accept(st, in, inlen, out, res);
	case GSRV_ACCEPT:
		if (in == NULL || inlen == 0) {
			res->reason = "gss_error";
			st->state = GSRV_DONE;
			return SG_MECH_MALFORMED;
		}
		return sg_gss_srv_accept(st, in, inlen, out, res);
	case GSRV_WAIT_EMPTY:
		if (inlen != 0) {
			sg_strlcpy(res->login, st->principal, sizeof(res->login));
			res->reason = "gss_error";
			st->state = GSRV_DONE;
			return SG_MECH_MALFORMED;
		}
		return sg_gss_srv_offer(st, out, res);
	case GSRV_WAIT_LAYER:
		return sg_gss_srv_layer(st, in != NULL ? in : (const uint8_t *)"", inlen, res);
	case GSRV_DONE:
		break;
	}
	res->reason = "gss_error";
	return SG_MECH_FAIL;
}

static void gssapi_server_free(void *vst)
{
	struct sg_gss_srv *st = vst;
	if (st == NULL)
		return;
	OM_uint32 minor;
	if (st->ctx != GSS_C_NO_CONTEXT)
		gss_delete_sec_context(&minor, &st->ctx, GSS_C_NO_BUFFER);
	if (st->src != GSS_C_NO_NAME)
		gss_release_name(&minor, &st->src);
	if (st->cred != GSS_C_NO_CREDENTIAL)
		gss_release_cred(&minor, &st->cred);
	free(st->hostname);
	sg_wipe(st, sizeof(*st));
	free(st);
}

/* ------------------------------------------------------------------ client */

enum sg_gss_cli_state {
	GCLI_INIT,     /* first init_sec_context (initial response) */
	GCLI_CONTEXT,  /* more context tokens */
	GCLI_LAYER,    /* context complete: expect the wrapped layer offer */
	GCLI_SENT,     /* our wrapped answer is out (SG_MECH_OK); expect 235 */
};

struct sg_gss_cli {
	gss_name_t target;
	gss_ctx_id_t ctx;
	enum sg_gss_cli_state state;
	char *authzid;
	char error[GSS_ERRMSG_MAX];
};

static void *gssapi_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	if (env->host == NULL || env->host[0] == '\0') {
		*error_r = "GSSAPI needs the server host name";
		return NULL;
	}
	struct sg_gss_cli *st = sg_calloc(1, sizeof(*st));
	st->ctx = GSS_C_NO_CONTEXT;
	const char *service = env->service != NULL && env->service[0] != '\0' ? env->service
									       : "smtp";
	if (sg_gss_import_hostbased(service, env->host, &st->target) < 0) {
		free(st);
		*error_r = "GSSAPI: cannot import the service name";
		return NULL;
	}
	if (env->authzid != NULL && env->authzid[0] != '\0')
		st->authzid = sg_strdup(env->authzid);
	st->state = GCLI_INIT;
	return st;
}

static enum sg_mech_status sg_gss_cli_fail(struct sg_gss_cli *st, const char *what,
					   OM_uint32 major, OM_uint32 minor, const char **error_r)
{
	char text[GSS_ERRMSG_MAX];
	sg_gss_status_text(major, minor, text, sizeof(text));
	struct sg_buf b;
	sg_buf_init(&b, sizeof(st->error) - 1);
	(void)sg_buf_printf(&b, "GSSAPI %s: ", what);
	(void)sg_buf_append_str(&b, text);
	sg_strlcpy(st->error, sg_buf_str(&b), sizeof(st->error));
	sg_buf_free(&b);
	*error_r = st->error;
	return SG_MECH_FAIL;
}

static enum sg_mech_status gssapi_client_step(void *vst, const uint8_t *in, size_t inlen,
					      struct sg_buf *out, const char **error_r)
{
	struct sg_gss_cli *st = vst;
	OM_uint32 major, minor;

	switch (st->state) {
	case GCLI_INIT:
	case GCLI_CONTEXT: {
		if (st->state == GCLI_CONTEXT && (in == NULL || inlen == 0)) {
			*error_r = "GSSAPI: empty challenge during context establishment";
			return SG_MECH_FAIL;
		}
		gss_buffer_desc itok = {st->state == GCLI_INIT ? 0 : inlen, (void *)in};
		gss_buffer_desc otok = GSS_C_EMPTY_BUFFER;
		OM_uint32 flags = 0;
		major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &st->ctx, st->target,
					     (gss_OID)gss_mech_krb5,
					     GSS_C_MUTUAL_FLAG | GSS_C_SEQUENCE_FLAG |
						     GSS_C_INTEG_FLAG,
					     0, GSS_C_NO_CHANNEL_BINDINGS,
					     st->state == GCLI_INIT ? GSS_C_NO_BUFFER : &itok, NULL,
					     &otok, &flags, NULL);
		if (GSS_ERROR(major)) {
			sg_gss_release(&otok);
			return sg_gss_cli_fail(st, "init_sec_context", major, minor, error_r);
		}
		int r = sg_gss_append(out, &otok);
		sg_gss_release(&otok);
		if (r < 0) {
			*error_r = "GSSAPI: token too large";
			return SG_MECH_FAIL;
		}
		if (major & GSS_S_CONTINUE_NEEDED) {
			st->state = GCLI_CONTEXT;
		} else {
			/* Complete: the server was authenticated (mutual). An
			 * empty response when there is no token (RFC 4752 3.1). */
			if ((flags & GSS_C_MUTUAL_FLAG) == 0 || (flags & GSS_C_INTEG_FLAG) == 0) {
				*error_r = "GSSAPI: mutual authentication or integrity not available";
				return SG_MECH_FAIL;
			}
			st->state = GCLI_LAYER;
		}
		return SG_MECH_CONTINUE;
	}
	case GCLI_LAYER: {
		gss_buffer_desc w = {inlen, (void *)in};
		gss_buffer_desc u = GSS_C_EMPTY_BUFFER;
		if (in == NULL || inlen == 0) {
			*error_r = "GSSAPI: empty security layer message";
			return SG_MECH_FAIL;
		}
		major = gss_unwrap(&minor, st->ctx, &w, &u, NULL, NULL);
		if (GSS_ERROR(major))
			return sg_gss_cli_fail(st, "unwrap", major, minor, error_r);
		/* CVE-2022-2469: check the length before reading the 4 octets. */
		bool ok = u.length == 4 && (((const uint8_t *)u.value)[0] & 0x01) != 0;
		sg_gss_release(&u);
		if (!ok) {
			*error_r = "GSSAPI: server does not offer the no-security-layer option";
			return SG_MECH_FAIL;
		}
		struct sg_buf msg;
		sg_buf_init(&msg, 4 + SG_LOGIN_MAX);
		static const uint8_t choice[4] = {0x01, 0, 0, 0};
		if (sg_buf_append(&msg, choice, sizeof(choice)) < 0 ||
		    (st->authzid != NULL && sg_buf_append_str(&msg, st->authzid) < 0)) {
			sg_buf_free(&msg);
			*error_r = "GSSAPI: authzid too long";
			return SG_MECH_FAIL;
		}
		gss_buffer_desc m = {msg.len, msg.data};
		gss_buffer_desc wrapped = GSS_C_EMPTY_BUFFER;
		major = gss_wrap(&minor, st->ctx, 0, GSS_C_QOP_DEFAULT, &m, NULL, &wrapped);
		sg_buf_free(&msg);
		if (GSS_ERROR(major))
			return sg_gss_cli_fail(st, "wrap", major, minor, error_r);
		int r = sg_gss_append(out, &wrapped);
		sg_gss_release(&wrapped);
		if (r < 0) {
			*error_r = "GSSAPI: token too large";
			return SG_MECH_FAIL;
		}
		st->state = GCLI_SENT;
		return SG_MECH_OK; /* the server was verified when the context completed */
	}
	case GCLI_SENT:
		break;
	}
	*error_r = "GSSAPI: unexpected challenge after the security layer answer";
	return SG_MECH_FAIL;
}

static void gssapi_client_free(void *vst)
{
	struct sg_gss_cli *st = vst;
	if (st == NULL)
		return;
	OM_uint32 minor;
	if (st->ctx != GSS_C_NO_CONTEXT)
		gss_delete_sec_context(&minor, &st->ctx, GSS_C_NO_BUFFER);
	if (st->target != GSS_C_NO_NAME)
		gss_release_name(&minor, &st->target);
	free(st->authzid);
	free(st);
}

const struct sg_mech sg_mech_gssapi = {
	.name = "GSSAPI",
	.flags = 0,
	.strength = 90,
	.cred = SG_CRED_NONE,
	.server_available = gssapi_server_available,
	.server_start = gssapi_server_start,
	.server_step = gssapi_server_step,
	.server_free = gssapi_server_free,
	.client_start = gssapi_client_start,
	.client_step = gssapi_client_step,
	.client_free = gssapi_client_free,
};
