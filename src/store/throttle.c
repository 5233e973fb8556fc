#include "store/throttle.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"
#include "store/cred.h"

/* Keys: "i:<address or prefix>", "a:<account>", "p:<address>\n<account>".
 * A chained hash table (FNV-1a) plus one LRU list: every lookup moves the
 * entry to the front; at max_entries the least recently used entry without
 * a live connection makes room. */

#define TAGS 4
#define MAX_KEY 320

struct entry {
	struct entry *hnext;
	struct entry *lprev, *lnext;
	uint64_t hash;
	unsigned failures;
	unsigned conns;
	uint64_t first_fail_ms;    /* start of the current failure count */
	uint64_t last_fail_ms;
	uint64_t blocked_until_ms;
	/* pairs only: keyed hashes of recently failed secrets */
	uint8_t tags[TAGS][SG_THROTTLE_TAG_LEN];
	uint64_t tag_ms[TAGS];
	unsigned tag_next;
	char key[];
};

struct sg_throttle {
	pthread_mutex_t lock;
	struct sg_throttle_cfg cfg;
	struct entry **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
	struct entry *lru_head, *lru_tail;
	uint8_t tag_key[32];
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

struct sg_throttle *sg_throttle_new(const struct sg_throttle_cfg *cfg)
{
	struct sg_throttle *t = sg_calloc(1, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->cfg = *cfg;
	if (t->cfg.max_entries < 16)
		t->cfg.max_entries = 16;
	if (t->cfg.ipv6_prefix == 0 || t->cfg.ipv6_prefix > 128)
		t->cfg.ipv6_prefix = 64;
	t->nbuckets = 64;
	t->buckets = sg_calloc(t->nbuckets, sizeof(*t->buckets));
	sg_random(t->tag_key, sizeof(t->tag_key));
	return t;
}

void sg_throttle_free(struct sg_throttle **pt)
{
	struct sg_throttle *t = *pt;
	if (t == NULL)
		return;
	struct entry *e = t->lru_head;
	while (e != NULL) {
		struct entry *n = e->lnext;
		sg_wipe(e->tags, sizeof(e->tags));
		free(e);
		e = n;
	}
	free(t->buckets);
	sg_wipe(t->tag_key, sizeof(t->tag_key));
	pthread_mutex_destroy(&t->lock);
	free(t);
	*pt = NULL;
}

static void lru_unlink(struct sg_throttle *t, struct entry *e)
{
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else
		t->lru_head = e->lnext;
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		t->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_front(struct sg_throttle *t, struct entry *e)
{
	e->lnext = t->lru_head;
	e->lprev = NULL;
	if (t->lru_head != NULL)
		t->lru_head->lprev = e;
	t->lru_head = e;
	if (t->lru_tail == NULL)
		t->lru_tail = e;
}

static void remove_entry(struct sg_throttle *t, struct entry *e)
{
	struct entry **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(t, e);
	t->count--;
	sg_wipe(e->tags, sizeof(e->tags));
	free(e);
}

static void grow(struct sg_throttle *t)
{
	size_t n = t->nbuckets * 2;
	struct entry **b = sg_calloc(n, sizeof(*b));
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct entry *e = t->buckets[i];
		while (e != NULL) {
			struct entry *next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

/* Make room for one more entry: the least recently used entry that holds
 * no live connection goes (entries with connections are bounded by
 * max_connections, so the table may exceed max_entries only by those). */
static void evict_one(struct sg_throttle *t)
{
	unsigned scanned = 0;
	/* the two most recent entries may be held by the caller */
	const struct entry *keep1 = t->lru_head, *keep2 = keep1 != NULL ? keep1->lnext : NULL;
	for (struct entry *e = t->lru_tail; e != NULL && scanned < 256; e = e->lprev, scanned++)
		if (e->conns == 0 && e != keep1 && e != keep2) {
			remove_entry(t, e);
			return;
		}
}

static struct entry *get(struct sg_throttle *t, char kind, const char *name, const char *name2,
			 bool create)
{
	char key[MAX_KEY];
	if (name2 != NULL)
		snprintf(key, sizeof(key), "%c:%s\n%s", kind, name, name2);
	else
		snprintf(key, sizeof(key), "%c:%s", kind, name);
	uint64_t h = fnv(key);
	for (struct entry *e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0) {
			lru_unlink(t, e);
			lru_front(t, e);
			return e;
		}
	if (!create)
		return NULL;
	if (t->count >= t->cfg.max_entries)
		evict_one(t);
	if (t->count >= t->nbuckets)
		grow(t);
	size_t kl = strlen(key);
	struct entry *e = sg_calloc(1, sizeof(*e) + kl + 1);
	memcpy(e->key, key, kl + 1);
	e->hash = h;
	e->hnext = t->buckets[h & (t->nbuckets - 1)];
	t->buckets[h & (t->nbuckets - 1)] = e;
	lru_front(t, e);
	t->count++;
	return e;
}

void sg_throttle_addr_key(const struct sg_throttle *t, const char *ip, char *out, size_t size)
{
	struct in6_addr a;
	if (inet_pton(AF_INET6, ip, &a) != 1) {
		sg_strlcpy(out, ip, size);
		return;
	}
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a.s6_addr, v4mapped, sizeof(v4mapped)) == 0) {
		if (inet_ntop(AF_INET, a.s6_addr + 12, out, (socklen_t)size) == NULL)
			sg_strlcpy(out, ip, size);
		return;
	}
	unsigned bits = t->cfg.ipv6_prefix;
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
		a.s6_addr[i] &= (uint8_t)(0xff00u >> keep);
	}
	char txt[INET6_ADDRSTRLEN];
	if (inet_ntop(AF_INET6, &a, txt, sizeof(txt)) == NULL)
		sg_strlcpy(out, ip, size);
	else
		snprintf(out, size, "%s/%u", txt, bits);
}

static void expire(const struct sg_throttle *t, struct entry *e, uint64_t now)
{
	if (e->failures > 0 && now - e->last_fail_ms >= t->cfg.window_ms && now >= e->blocked_until_ms)
		e->failures = 0;
}

bool sg_throttle_auth_allowed(struct sg_throttle *t, const char *ip, uint64_t now,
			      uint64_t *retry_after_ms)
{
	char ak[128];
	sg_throttle_addr_key(t, ip, ak, sizeof(ak));
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ak, NULL, false);
	bool ok = e == NULL || now >= e->blocked_until_ms;
	if (!ok && retry_after_ms != NULL)
		*retry_after_ms = e->blocked_until_ms - now;
	pthread_mutex_unlock(&t->lock);
	return ok;
}

static unsigned delay_for(const struct sg_throttle *t, unsigned failures)
{
	uint64_t d = t->cfg.base_delay_ms;
	for (unsigned i = 1; i < failures && d < t->cfg.max_delay_ms; i++)
		d *= 2;
	return (unsigned)(d < t->cfg.max_delay_ms ? d : t->cfg.max_delay_ms);
}

/* The pair's failures belong to the address's current count only. */
static void pair_sync(struct entry *pair, const struct entry *addr)
{
	if (addr->failures == 0 || pair->last_fail_ms < addr->first_fail_ms) {
		pair->failures = 0;
		sg_wipe(pair->tags, sizeof(pair->tags));
		memset(pair->tag_ms, 0, sizeof(pair->tag_ms));
	}
}

static bool tag_seen(const struct sg_throttle *t, const struct entry *pair, const uint8_t *tag,
		     uint64_t now)
{
	bool seen = false;
	if (t->cfg.repeat_window_ms == 0)
		return false;
	for (unsigned i = 0; i < TAGS; i++)
		if (pair->tag_ms[i] != 0 && now - pair->tag_ms[i] < t->cfg.repeat_window_ms &&
		    sg_ct_eq(pair->tags[i], tag, SG_THROTTLE_TAG_LEN))
			seen = true;
	return seen;
}

unsigned sg_throttle_auth_failed(struct sg_throttle *t, const char *ip, const char *account,
				 const uint8_t *tag, uint64_t now)
{
	char ak[128];
	sg_throttle_addr_key(t, ip, ak, sizeof(ak));
	bool has_account = account != NULL && *account != '\0';
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ak, NULL, true);
	expire(t, e, now);
	struct entry *pair = has_account ? get(t, 'p', ak, account, true) : NULL;
	if (pair != NULL) {
		pair_sync(pair, e);
		if (tag != NULL && tag_seen(t, pair, tag, now)) {
			/* the same secret again: a client retrying, not a guess */
			unsigned delay = delay_for(t, e->failures > 0 ? e->failures : 1);
			pthread_mutex_unlock(&t->lock);
			return delay;
		}
	}
	if (e->failures == 0)
		e->first_fail_ms = now;
	e->failures++;
	e->last_fail_ms = now;
	if (e->failures >= t->cfg.ip_threshold)
		e->blocked_until_ms = now + t->cfg.cooloff_ms;
	unsigned delay = delay_for(t, e->failures);
	if (pair != NULL) {
		pair->failures++;
		pair->last_fail_ms = now;
		if (tag != NULL) {
			memcpy(pair->tags[pair->tag_next], tag, SG_THROTTLE_TAG_LEN);
			pair->tag_ms[pair->tag_next] = now;
			pair->tag_next = (pair->tag_next + 1) % TAGS;
		}
	}
	if (has_account) {
		struct entry *a = get(t, 'a', account, NULL, true);
		expire(t, a, now);
		a->failures++;
		a->last_fail_ms = now;
		if (a->failures >= t->cfg.account_threshold && t->cfg.max_delay_ms > delay)
			delay = t->cfg.max_delay_ms;
	}
	pthread_mutex_unlock(&t->lock);
	return delay;
}

void sg_throttle_auth_ok(struct sg_throttle *t, const char *ip, const char *account)
{
	if (account == NULL || *account == '\0')
		return;
	char ak[128];
	sg_throttle_addr_key(t, ip, ak, sizeof(ak));
	uint64_t now = sg_now_ms();
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ak, NULL, false);
	struct entry *pair = get(t, 'p', ak, account, false);
	if (e != NULL && pair != NULL) {
		expire(t, e, now);
		pair_sync(pair, e);
		if (now >= e->blocked_until_ms)
			e->failures -= pair->failures < e->failures ? pair->failures : e->failures;
		pair->failures = 0;
		sg_wipe(pair->tags, sizeof(pair->tags));
		memset(pair->tag_ms, 0, sizeof(pair->tag_ms));
	}
	pthread_mutex_unlock(&t->lock);
}

void sg_throttle_secret_tag(const struct sg_throttle *t, const uint8_t *prev, const void *data,
			    size_t len, uint8_t out[SG_THROTTLE_TAG_LEN])
{
	size_t n = SG_THROTTLE_TAG_LEN + len;
	uint8_t *msg = sg_malloc(n + 1);
	if (prev != NULL)
		memcpy(msg, prev, SG_THROTTLE_TAG_LEN);
	else
		memset(msg, 0, SG_THROTTLE_TAG_LEN);
	if (len > 0)
		memcpy(msg + SG_THROTTLE_TAG_LEN, data, len);
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (HMAC(EVP_sha256(), t->tag_key, sizeof(t->tag_key), msg, n, md, &mdlen) == NULL)
		sg_fatal("HMAC-SHA256 failed");
	memcpy(out, md, SG_THROTTLE_TAG_LEN);
	sg_wipe(md, sizeof(md));
	sg_wipe(msg, n + 1);
	free(msg);
}

int sg_throttle_canonical_login(struct sg_cred_store *creds, const char *login, char *out,
				size_t size)
{
	if (creds != NULL && login[0] != '\0') {
		struct sg_account acct;
		int r = sg_cred_lookup(creds, login, SG_CRED_NONE, &acct, NULL);
		if (r == 1) {
			sg_strlcpy(out, acct.login, size);
			return 1;
		}
		/* not found or store error: the claimed form */
	}
	sg_strlcpy(out, login, size);
	char *at = strrchr(out, '@');
	if (at != NULL)
		for (char *p = at + 1; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	return 0;
}

unsigned sg_throttle_conn_add(struct sg_throttle *t, const char *ip)
{
	char ak[128];
	sg_throttle_addr_key(t, ip, ak, sizeof(ak));
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ak, NULL, true);
	unsigned n = ++e->conns;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void sg_throttle_conn_del(struct sg_throttle *t, const char *ip)
{
	char ak[128];
	sg_throttle_addr_key(t, ip, ak, sizeof(ak));
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ak, NULL, false);
	if (e != NULL && e->conns > 0)
		e->conns--;
	pthread_mutex_unlock(&t->lock);
}

unsigned sg_throttle_blocked(struct sg_throttle *t, uint64_t now)
{
	unsigned n = 0;
	pthread_mutex_lock(&t->lock);
	for (struct entry *e = t->lru_head; e != NULL; e = e->lnext)
		if (e->key[0] == 'i' && now < e->blocked_until_ms)
			n++;
	pthread_mutex_unlock(&t->lock);
	return n;
}

size_t sg_throttle_entries(struct sg_throttle *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
