/*
 * throttle.h: failed-password throttling and per-address connection counts,
 * one shared object for every place that checks a password (SMTP AUTH, HTTP
 * Basic, any later protocol) and for the per-address connection limit.
 *
 * Addresses: an IPv4 client is counted per address; an IPv6 client per
 * prefix (ipv6_prefix bits, default 64: a host owning a /64 is one client);
 * an IPv4-mapped IPv6 address counts as its IPv4 address.
 *
 * Accounts: keyed by the canonical account (the login as stored) when it
 * exists, by one canonical form of the claimed login otherwise (domain part
 * lowercased), see sg_throttle_canonical_login().
 *
 * Failures are counted per address, per account, and per (address, account)
 * in a window (window_ms). Each failure from an address doubles the delay
 * before its failure reply (a timer, never a sleep), up to max_delay_ms. Past
 * ip_threshold failures the address is refused (454 / 429) during cooloff_ms.
 * Failures against one account from many addresses only lengthen the delay
 * of further failures for that account: a success is never delayed or
 * refused because of the account's counter, so an attacker hammering an
 * account cannot lock its owner out from another address.
 *
 * A success of account A from address X forgets only the failures that X
 * charged to A: failures charged to other accounts from X stay counted (an
 * attacker holding one account cannot reset its address's count).
 *
 * A repeated failure of the same (address, account) with the same secret
 * within repeat_window_ms counts once (mail clients retry a mistyped password
 * on their own). Only a keyed hash of the failed secret is kept: HMAC-SHA256
 * under a random per-process key (sg_throttle_secret_tag), never the secret.
 *
 * Thread-safe (one mutex); bounded memory: at max_entries, the least recently
 * used entry without a live connection is evicted, so new keys are always
 * counted and throttled.
 */
#ifndef SG_THROTTLE_H
#define SG_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_cred_store;

#define SG_THROTTLE_TAG_LEN 16

struct sg_throttle_cfg {
	unsigned ip_threshold;        /* failures before the cooling-off period */
	unsigned account_threshold;   /* failures before an account's failures get the max delay */
	unsigned window_ms;           /* counters expire after this long without failures */
	unsigned cooloff_ms;
	unsigned base_delay_ms;       /* first failure's delay (auth_fail_delay_ms) */
	unsigned max_delay_ms;
	unsigned max_entries;
	unsigned ipv6_prefix;         /* 1..128; 0 = 64 */
	unsigned repeat_window_ms;    /* same secret again counts once; 0 = off */
};

struct sg_throttle;

struct sg_throttle *sg_throttle_new(const struct sg_throttle_cfg *cfg);
void sg_throttle_free(struct sg_throttle **t);

/* May this address try a password now? false during its cooling-off period;
 * *retry_after_ms (may be NULL) is then the time left. */
bool sg_throttle_auth_allowed(struct sg_throttle *t, const char *ip, uint64_t now_ms,
			      uint64_t *retry_after_ms);
/* Record a failure of the canonical account (or "" when none was claimed);
 * tag is sg_throttle_secret_tag() of the failed secret, or NULL when the
 * secret cannot be compared (challenge-response mechanisms). Returns the
 * delay before the failure reply. */
unsigned sg_throttle_auth_failed(struct sg_throttle *t, const char *ip, const char *account,
				 const uint8_t *tag, uint64_t now_ms);
/* A success forgets the failures this address charged to this account. */
void sg_throttle_auth_ok(struct sg_throttle *t, const char *ip, const char *account);

/* Keyed hash of one failed attempt's secret material. Chained: pass the
 * previous tag as prev (or NULL) to fold several client messages into one. */
void sg_throttle_secret_tag(const struct sg_throttle *t, const uint8_t *prev, const void *data,
			    size_t len, uint8_t out[SG_THROTTLE_TAG_LEN]);

/* The key that names an account in the throttle and the auth event log:
 * the login as stored when the account exists (asks the store; runs on a
 * worker thread), else the claimed login with its domain part lowercased.
 * Returns 1 (account exists), 0 (claimed form), -1 (store error: claimed form). */
int sg_throttle_canonical_login(struct sg_cred_store *creds, const char *login, char *out,
				size_t size);

/* The per-address key for ip (IPv6 masked to the prefix), e.g. "2001:db8::/64". */
void sg_throttle_addr_key(const struct sg_throttle *t, const char *ip, char *out, size_t size);

/* Connection accounting per address (prefix): add returns the new count. */
unsigned sg_throttle_conn_add(struct sg_throttle *t, const char *ip);
void sg_throttle_conn_del(struct sg_throttle *t, const char *ip);
/* Addresses currently in cooling-off (metrics). */
unsigned sg_throttle_blocked(struct sg_throttle *t, uint64_t now_ms);
/* Live entries (tests). */
size_t sg_throttle_entries(struct sg_throttle *t);

#endif
