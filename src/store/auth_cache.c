#include "store/auth_cache.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"

struct slot {
	bool used;
	uint8_t key[32];
	uint64_t generation;
	uint64_t expires_ms;
	struct sg_account acct;
};

struct sg_auth_cache {
	pthread_mutex_t lock;
	uint8_t hmac_key[32];
	unsigned ttl_ms;
	unsigned nslots; /* power of two */
	struct slot *slots;
};

struct sg_auth_cache *sg_auth_cache_new(unsigned ttl_ms, unsigned slots)
{
	struct sg_auth_cache *c = sg_calloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	sg_random(c->hmac_key, sizeof(c->hmac_key));
	c->ttl_ms = ttl_ms;
	c->nslots = 64;
	while (c->nslots < slots && c->nslots < (1u << 20))
		c->nslots *= 2;
	c->slots = sg_calloc(c->nslots, sizeof(*c->slots));
	return c;
}

void sg_auth_cache_free(struct sg_auth_cache **pc)
{
	struct sg_auth_cache *c = *pc;
	if (c == NULL)
		return;
	sg_wipe(c->slots, c->nslots * sizeof(*c->slots));
	sg_wipe(c->hmac_key, sizeof(c->hmac_key));
	free(c->slots);
	pthread_mutex_destroy(&c->lock);
	free(c);
	*pc = NULL;
}

static void derive(const struct sg_auth_cache *c, const char *login, const char *password, uint8_t out[32])
{
	size_t ll = strlen(login), pl = strlen(password);
	uint8_t *msg = sg_malloc(ll + 1 + pl);
	memcpy(msg, login, ll);
	msg[ll] = 0;
	memcpy(msg + ll + 1, password, pl);
	unsigned len = 32;
	if (HMAC(EVP_sha256(), c->hmac_key, sizeof(c->hmac_key), msg, ll + 1 + pl, out, &len) == NULL)
		sg_fatal("HMAC-SHA256 failed");
	sg_wipe(msg, ll + 1 + pl);
	free(msg);
}

static struct slot *slot_for(struct sg_auth_cache *c, const uint8_t key[32])
{
	uint32_t h;
	memcpy(&h, key, sizeof(h));
	return &c->slots[h & (c->nslots - 1)];
}

bool sg_auth_cache_get(struct sg_auth_cache *c, const char *login, const char *password,
		       uint64_t generation, struct sg_account *acct)
{
	uint8_t key[32];
	derive(c, login, password, key);
	bool hit = false;
	uint64_t now = sg_now_ms();
	pthread_mutex_lock(&c->lock);
	struct slot *s = slot_for(c, key);
	if (s->used && sg_ct_eq(s->key, key, sizeof(key))) {
		if (s->generation == generation && now < s->expires_ms) {
			*acct = s->acct;
			hit = true;
		} else {
			s->used = false;
		}
	}
	pthread_mutex_unlock(&c->lock);
	sg_wipe(key, sizeof(key));
	return hit;
}

void sg_auth_cache_put(struct sg_auth_cache *c, const char *login, const char *password,
		       uint64_t generation, const struct sg_account *acct)
{
	uint8_t key[32];
	derive(c, login, password, key);
	pthread_mutex_lock(&c->lock);
	struct slot *s = slot_for(c, key);
	memcpy(s->key, key, sizeof(key));
	s->generation = generation;
	s->expires_ms = sg_now_ms() + c->ttl_ms;
	s->acct = *acct;
	s->used = true;
	pthread_mutex_unlock(&c->lock);
	sg_wipe(key, sizeof(key));
}
