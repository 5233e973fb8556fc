/*
 * config.h: the configuration of `serve`, from defaults, then the config file
 * (--config), then the command line. One small INI-style file:
 *
 *   # comment
 *   hostname = mail.example.test
 *   max_message_size = 26214400
 *   [listener submission]
 *   role = submission
 *   listen = 127.0.0.1:2587
 *
 * Every key has a default; an unknown key, a bad value or a duplicate
 * listener is an error naming the file and line.
 */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/relay_config.h"
#include "core/proxy.h"
#include "sasl/mech.h"

enum sg_role { SG_ROLE_MX, SG_ROLE_SUBMISSION, SG_ROLE_SUBMISSIONS };

#define SG_MAX_LISTENERS 16
#define SG_MAX_FAULTS 32
#define SG_MAX_PROXY_TRUSTED 16

struct sg_listener_cfg {
	char name[32];
	enum sg_role role;
	char host[64];
	unsigned port;
	bool sender_enforce;          /* 553 5.7.1 for addresses the account does not own */
	bool bare_lf_normalize;       /* accept bare LF as a line end in DATA */
	bool require_tls;             /* 530 5.7.0 Must issue a STARTTLS command first */
	bool plaintext_without_tls;   /* offer PLAIN/LOGIN before TLS (never by default) */
	/* auth_mechanisms (alias: mechanisms): space-separated; "" = the
	 * default set (every mechanism the server can serve, without -PLUS
	 * unless channel_binding). Inherited from the global key. */
	char mechanisms[512];
	unsigned mechanisms_line;     /* where it was set (0 = inherited/default) */
	bool channel_binding;         /* also offer SCRAM-*-PLUS */
	uint64_t offer_mask;          /* bit i = sg_mechs[i] may be offered (finish) */
	enum sg_delivery delivery;    /* INHERIT: the global relay.delivery */
	/* PROXY protocol v1/v2 header before anything else, only from these
	 * networks (default: loopback 127.0.0.0/8 and ::1) */
	bool proxy_protocol;
	struct sg_cidr proxy_trusted[SG_MAX_PROXY_TRUSTED];
	size_t nproxy_trusted;
};

struct sg_config {
	char hostname[256];
	char data_dir[1024];
	char tls_cert[1024];
	char tls_key[1024];
	char tls_client_ca[1024];
	char user[64];                /* drop privileges to this user when started as root */
	char log_level[16];
	bool syslog;
	unsigned long long max_message_size;
	unsigned max_recipients;
	unsigned max_line;            /* command line, octets without CRLF */
	unsigned max_errors;
	unsigned max_auth_attempts;   /* per connection */
	unsigned max_connections;
	unsigned max_connections_per_ip;
	unsigned auth_cache_ttl_ms;   /* remember successful PLAIN/LOGIN checks; 0 = off */
	unsigned auth_fail_delay_ms;  /* first failure; doubles per failure from the address */
	unsigned throttle_ip_threshold;
	unsigned throttle_account_threshold;
	unsigned throttle_window_ms;
	unsigned throttle_cooloff_ms;
	unsigned throttle_max_delay_ms;
	unsigned throttle_repeat_window_ms; /* same failed secret again counts once; 0 = off */
	unsigned ipv6_prefix;         /* IPv6 clients are counted per /ipv6_prefix (default 64) */
	bool command_deadline;        /* a line (DATA block) must be complete within its timeout
				       * after its first byte; bytes do not restart the timer */
	unsigned timeout_greeting_ms; /* greeting to the first EHLO/HELO; 0 = timeout_command_ms */
	unsigned timeout_command_ms;  /* RFC 5321 4.5.3.2.7: 5 minutes */
	unsigned timeout_data_ms;     /* 4.5.3.2.5: 3 minutes per data block */
	unsigned timeout_tls_ms;
	unsigned timeout_proxy_ms;    /* PROXY header deadline after accept */
	unsigned timeout_session_ms;
	unsigned loops;               /* event loops (threads), default: one per core */
	unsigned workers;             /* per loop: threads for hashing and fsync */
	bool sender_enforce;          /* default for listeners */
	/* mechanism list (issue 16): defaults for listeners */
	char auth_mechanisms[512];
	unsigned auth_mechanisms_line;
	bool channel_binding;
	unsigned legacy_verifiers;    /* enum sg_cred_legacy bits (store/cred.h) */
	/* mechanism settings (strings owned by this struct) */
	struct sg_sasl_config sasl;
	char ntlm_domain[64];
	char oauth_secret_file[1024];
	char oauth_jwks_file[1024];
	char oauth_issuer[256];
	char oauth_audience[256];
	char oauth_login_claim[32];
	char oauth_scope[128];
	char gss_keytab[1024];
	char gss_service[64];
	char gss_realm[128];
	char gss_map_domain[256];
	/* sandbox HTTP API and page */
	char http_listen[80];         /* "127.0.0.1:8025"; "off" disables it */
	bool http_open;               /* no access control (loopback only) */
	bool http_tls;                /* HTTPS with tls_cert / tls_key */
	/* fault-injection rules from the config file ("fault = stage=auth reply=...") */
	size_t nfaults;
	char faults[SG_MAX_FAULTS][256];
	size_t nlisteners;
	struct sg_listener_cfg listeners[SG_MAX_LISTENERS];
	struct sg_relay_config relay; /* delivery, relay_*, queue_*, dkim_key (relay/relay_config.h) */
};

void sg_config_defaults(struct sg_config *c);
/* Parse a file over the current values. 0, or -1 with a message in err. */
int sg_config_load(struct sg_config *c, const char *path, char *err, size_t errsize);
/* Parse text (for tests and the fuzzer); name is used in messages. */
int sg_config_parse(struct sg_config *c, const char *text, const char *name, char *err,
		    size_t errsize);
/* "--listen ROLE=ADDR:PORT" */
int sg_config_add_listen(struct sg_config *c, const char *spec, char *err, size_t errsize);
/* Fill in default listeners when none were configured; point sasl strings at
 * the owned fields. Call once after loading. */
void sg_config_finish(struct sg_config *c);
const char *sg_role_name(enum sg_role r);
/* May the listener offer this mechanism (its list, channel_binding and
 * legacy_verifiers; TLS and store availability are checked per session)? */
bool sg_listener_offers(const struct sg_listener_cfg *l, const struct sg_mech *m);
/* Does this listener deliver by relay (its own delivery, else the global one)? */
bool sg_config_relays(const struct sg_config *c, const struct sg_listener_cfg *l);

#endif
