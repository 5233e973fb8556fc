/*
 * mech.h: the one interface every SASL mechanism implements.
 *
 * A mechanism is a const descriptor (name, flags, the verifier it needs from
 * the credential store) plus pure operations: bytes in, bytes out, verdict.
 * Mechanisms never do socket I/O and never see base64: the drivers (the SMTP
 * session for the server side, src/client for the client side) decode the
 * client's lines, handle "*" (cancel) and "=" (empty initial response), apply
 * the 12,288-octet line cap, and always call the free op, which wipes.
 *
 * Threading: the server driver runs server_start/server_step on a worker
 * thread, so a step may block (password hashing, SQLite, GSSAPI). One state is
 * only ever used by one thread at a time.
 *
 * Multi-step success data (SCRAM's v=, GSSAPI's last token): return
 * SG_MECH_CONTINUE with the data; the client answers with an empty line and
 * the next step returns SG_MECH_OK. OAuth error JSON is the same: return
 * SG_MECH_CONTINUE with the JSON and set res->reason; the next step (whatever
 * the client sent) returns SG_MECH_FAIL. The driver sends "334 " + base64.
 * A CONTINUE with res->reason set is such an error challenge: the driver
 * counts and logs the failure at once, so a client that hangs up instead of
 * answering it is still throttled.
 */
#ifndef SG_MECH_H
#define SG_MECH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/cred.h"

enum sg_mech_flag {
	/* Reveals the password to the server: never offered or accepted before
	 * TLS on submission (RFC 4954 section 4, 538 5.7.11). */
	SG_MECH_F_PLAINTEXT = 1u << 0,
	/* The server speaks first (CRAM-MD5, LOGIN): an initial response is
	 * refused for CRAM-MD5 (501 5.7.0); the client side has no initial response. */
	SG_MECH_F_SERVER_FIRST = 1u << 1,
	/* -PLUS: needs TLS channel-binding data. */
	SG_MECH_F_CHANNEL_BINDING = 1u << 2,
	/* Failure is "535 5.7.3 Authentication unsuccessful" (MS-SMTPNTLM). */
	SG_MECH_F_FAIL_573 = 1u << 3,
	/* Accepts an initial response even though SERVER_FIRST (LOGIN: the username). */
	SG_MECH_F_IR_OK = 1u << 4,
};

enum sg_mech_status {
	SG_MECH_CONTINUE,  /* send out as a 334 challenge (may be empty), wait */
	SG_MECH_OK,        /* authenticated: res->login is the account */
	SG_MECH_FAIL,      /* bad credentials: 535; res->reason says why (log only) */
	SG_MECH_TEMPFAIL,  /* store or KDC unavailable: 454 4.7.0 */
	SG_MECH_MALFORMED, /* the client's bytes do not parse: 501 5.5.2 */
};

#define SG_LOGIN_MAX 255

struct sg_mech_result {
	/* On OK: the account's login (canonical, as stored). Otherwise the
	 * login the client claimed, when known, for the log (may be empty). */
	char login[SG_LOGIN_MAX + 1];
	/* Static string for the log and the auth event log: "unknown_account",
	 * "wrong_password", "disabled", "bad_authzid", "expired_token", ... */
	const char *reason;
};

/* Mechanism settings from the config file. Zero means "not configured". */
struct sg_sasl_config {
	unsigned scram_iterations;     /* default 4096 */
	bool ntlm_allow_v1;            /* NTLMv1/LM refused unless set */
	const char *ntlm_domain;       /* NetBIOS domain name in CHALLENGE */
	/* OAuth bearer tokens (JWT) */
	const uint8_t *oauth_hs256_secret;
	size_t oauth_hs256_secret_len;
	const char *oauth_jwks_file;
	const void *oauth_jwks;        /* parsed keys, owned by the config */
	const char *oauth_issuer;
	const char *oauth_audience;
	const char *oauth_login_claim; /* "sub" (default) or "email" */
	const char *oauth_scope;       /* scope named in the error JSON */
	/* GSSAPI */
	const char *gss_keytab;
	const char *gss_service;       /* default "smtp" */
	const char *gss_realm;         /* principals user@REALM map to account "user" */
	const char *gss_map_domain;    /* optional: user@REALM maps to user@DOMAIN */
	/* EXTERNAL (TLS client certificates) */
	const char *tls_client_ca;
};

/* What the server side of a mechanism may know about the connection. */
struct sg_sasl_server_env {
	struct sg_cred_store *creds;
	const struct sg_sasl_config *cfg;
	const char *hostname;          /* our name: CRAM-MD5 challenge, GSSAPI */
	const char *service;           /* "smtp" */
	bool tls;                      /* the connection is encrypted */
	const char *cb_type;           /* "tls-exporter", "tls-unique" or NULL */
	const uint8_t *cb_data;
	size_t cb_len;
	bool plus_offered;             /* a -PLUS mechanism was advertised */
	const char *cert_identity;     /* verified client certificate identity or NULL */
	const char *client_ip;
	unsigned local_port;
};

/* What the client side needs. Secrets are borrowed, never copied unwiped. */
struct sg_sasl_client_env {
	const char *authcid;           /* login */
	const char *authzid;           /* usually NULL */
	const char *password;
	const char *token;             /* OAuth bearer token */
	const char *host;              /* server host name (OAUTHBEARER, GSSAPI) */
	unsigned port;
	const char *service;           /* "smtp" */
	const char *cb_type;
	const uint8_t *cb_data;
	size_t cb_len;
	bool server_offers_plus;       /* for the SCRAM gs2 'y' flag */
};

struct sg_mech {
	const char *name;
	unsigned flags;
	int strength;                  /* EHLO lists the highest first */
	enum sg_cred_kind cred;        /* verifier needed from the store, or NONE */
	/* Client-first mechanism, no initial response given: the driver sends
	 * "334 " followed by this text unencoded (MS-SMTPNTLM: "ntlm supported"),
	 * or an empty "334 " when NULL, without calling server_step. */
	const char *empty_challenge_text;
	/* May this mechanism be offered on a connection with this env? (NULL = yes) */
	bool (*server_available)(const struct sg_sasl_server_env *env);
	void *(*server_start)(const struct sg_sasl_server_env *env);
	enum sg_mech_status (*server_step)(void *st, const uint8_t *in, size_t inlen,
					   struct sg_buf *out, struct sg_mech_result *res);
	void (*server_free)(void *st);
	/* Client side (probe, relay). client_step is first called with in == NULL
	 * unless SERVER_FIRST, to produce the initial response. SG_MECH_OK means
	 * the exchange is complete from the client's view (server verified where
	 * the mechanism allows it). */
	void *(*client_start)(const struct sg_sasl_client_env *env, const char **error_r);
	enum sg_mech_status (*client_step)(void *st, const uint8_t *in, size_t inlen,
					   struct sg_buf *out, const char **error_r);
	void (*client_free)(void *st);
};

/* Registry (mech_registry.c): every mechanism, strongest first. */
extern const struct sg_mech *const sg_mechs[];
const struct sg_mech *sg_mech_find(const char *name);

#endif
