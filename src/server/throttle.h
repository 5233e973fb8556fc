/*
 * throttle.h: failed-AUTH throttling and per-address connection counts.
 *
 * Failures are counted per client address and per account, in a window
 * (throttle_window_ms). Each failure from an address doubles the delay before
 * its 535 (timer, never a sleep), up to throttle_max_delay_ms. Past
 * throttle_ip_threshold failures the address gets 454 4.7.0 for AUTH during
 * throttle_cooloff_ms. Failures against one account from many addresses only
 * lengthen the delay of further *failures* for that account: a success is
 * never delayed or refused because of the account's counter, so an attacker
 * hammering an account cannot lock its owner out from another address.
 *
 * Thread-safe (one mutex); bounded memory (oldest entries evicted).
 */
#ifndef SG_THROTTLE_H
#define SG_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

struct sg_throttle_cfg {
	unsigned ip_threshold;        /* failures before the cooling-off period */
	unsigned account_threshold;   /* failures before an account's failures get the max delay */
	unsigned window_ms;           /* counters expire after this long without failures */
	unsigned cooloff_ms;
	unsigned base_delay_ms;       /* first failure's delay (auth_fail_delay_ms) */
	unsigned max_delay_ms;
	unsigned max_entries;
};

struct sg_throttle;

struct sg_throttle *sg_throttle_new(const struct sg_throttle_cfg *cfg);
void sg_throttle_free(struct sg_throttle **t);
/* May this address try AUTH now? false during its cooling-off period. */
bool sg_throttle_auth_allowed(struct sg_throttle *t, const char *ip, uint64_t now_ms);
/* Record a failure; returns the delay before the failure reply. */
unsigned sg_throttle_auth_failed(struct sg_throttle *t, const char *ip, const char *login,
				 uint64_t now_ms);
/* A success forgets the address's failures (not the account's). */
void sg_throttle_auth_ok(struct sg_throttle *t, const char *ip);
/* Connection accounting per address: add returns the new count. */
unsigned sg_throttle_conn_add(struct sg_throttle *t, const char *ip);
void sg_throttle_conn_del(struct sg_throttle *t, const char *ip);
/* Addresses currently in cooling-off (metrics). */
unsigned sg_throttle_blocked(struct sg_throttle *t, uint64_t now_ms);

#endif
