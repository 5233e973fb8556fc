/*
 * auth_cache.h: remembers successful password verifications (PLAIN, LOGIN)
 * for a short time, so an application that re-authenticates on every
 * message does not pay a yescrypt hash each time.
 *
 * An entry is keyed by HMAC-SHA256(per-process random key, login NUL
 * password): neither the password nor an unkeyed hash of it is kept, and
 * nothing is ever written to disk. An entry is valid only while the
 * credential store's generation is unchanged (passwd, disable and del all bump
 * it) and its time-to-live has not passed. Only successes are cached: a wrong
 * password always pays the full hash. Direct-mapped, fixed size, thread-safe.
 */
#ifndef SG_AUTH_CACHE_H
#define SG_AUTH_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/cred.h"

struct sg_auth_cache;

struct sg_auth_cache *sg_auth_cache_new(unsigned ttl_ms, unsigned slots);
void sg_auth_cache_free(struct sg_auth_cache **c);
bool sg_auth_cache_get(struct sg_auth_cache *c, const char *login, const char *password,
		       uint64_t generation, struct sg_account *acct);
void sg_auth_cache_put(struct sg_auth_cache *c, const char *login, const char *password,
		       uint64_t generation, const struct sg_account *acct);

#endif
