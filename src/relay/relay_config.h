/*
 * relay/relay_config.h: the relay keys of the configuration file (parsed by
 * server/config.c, which hands every key it does not know to
 * sg_relay_config_set() first).
 *
 *   delivery = capture | relay        (also per listener)
 *   relay_host = HOST:PORT
 *   relay_tls = starttls | implicit | none      (starttls, and it is required)
 *   relay_tls_name = NAME             (certificate name; default: the host)
 *   relay_ca_file, relay_cert, relay_key
 *   relay_auth = PLAIN | LOGIN | CRAM-MD5 | SCRAM-SHA-256 | XOAUTH2 | ... | none
 *   relay_user, relay_password_file, relay_token_file
 *   relay_concurrency = 4
 *   relay_retry_min = 1m, relay_retry_max = 1h, queue_lifetime = 5d,
 *   delay_warning_time = 0 (off)
 *   relay_timeout_connect = 30s, relay_timeout_command = 5m,
 *   relay_timeout_data = 3m, relay_timeout_final = 10m  (RFC 5321 4.5.3.2)
 *   relay_helo = NAME (default: hostname)
 *   dkim_key = DOMAIN SELECTOR KEYFILE (repeatable)
 *
 * Files named by the keys are read when the line is parsed (so a missing or
 * unreadable one is refused with the file and line); secrets are kept in
 * the struct and wiped by sg_relay_config_wipe(). Lines of keys whose
 * meaning depends on others are remembered for sg_relay_config_check().
 */
#ifndef SG_RELAY_CONFIG_H
#define SG_RELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_delivery { SG_DELIVERY_INHERIT = 0, SG_DELIVERY_CAPTURE, SG_DELIVERY_RELAY };
enum sg_relay_tls { SG_RELAY_TLS_STARTTLS = 0, SG_RELAY_TLS_IMPLICIT, SG_RELAY_TLS_NONE };

#define SG_RELAY_MAX_DKIM 16
#define SG_RELAY_WHERE 256

struct sg_relay_dkim_cfg {
	char domain[256];
	char selector[64];
	char keyfile[1024];
	char where[SG_RELAY_WHERE];
};

struct sg_relay_config {
	enum sg_delivery delivery;          /* global: capture unless set */
	char host[256];
	unsigned port;
	enum sg_relay_tls tls;
	char tls_name[256];
	char ca_file[1024];
	char cert[1024];
	char key[1024];
	char auth[32];                      /* "" = no AUTH */
	char user[256];
	char password_file[1024];
	char token_file[1024];
	char password[1024];                /* secret: read from password_file */
	char token[8192];                   /* secret: read from token_file */
	char helo[256];
	unsigned concurrency;
	uint64_t retry_min_ms, retry_max_ms, lifetime_ms, delay_warning_ms;
	uint64_t timeout_connect_ms, timeout_command_ms, timeout_data_ms, timeout_final_ms;
	size_t ndkim;
	struct sg_relay_dkim_cfg dkim[SG_RELAY_MAX_DKIM];
	/* where the keys that others depend on were set ("file:line") */
	char where_delivery[SG_RELAY_WHERE];
	char where_host[SG_RELAY_WHERE];
	char where_auth[SG_RELAY_WHERE];
};

void sg_relay_config_defaults(struct sg_relay_config *c);
/* 1 handled, 0 not a relay key, -1 error (message with where in err). */
int sg_relay_config_set(struct sg_relay_config *c, const char *k, const char *v, char *err,
			size_t errsize, const char *where);
/* Listener key "delivery": 0 or -1. */
int sg_relay_parse_delivery(const char *v, enum sg_delivery *out);
/* Cross-key checks once everything is read; relay_used: some listener (or
 * the global setting) delivers by relay. 0 or -1 with err. */
int sg_relay_config_check(const struct sg_relay_config *c, bool relay_used, char *err,
			  size_t errsize);
/* "90s", "500ms", "5m", "2h", "5d"; a plain number is seconds. */
int sg_parse_duration_ms(const char *v, uint64_t *out);
void sg_relay_config_wipe(struct sg_relay_config *c);

#endif
