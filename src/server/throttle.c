#include "server/throttle.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Keys: "i:<ip>" for addresses, "a:<login>" for accounts. FNV-1a hashed into an
 * open-addressing table that is rebuilt (expired entries dropped) when full. */
struct entry {
	char *key;
	unsigned failures;
	unsigned conns;
	uint64_t last_fail_ms;
	uint64_t blocked_until_ms;
};

struct sg_throttle {
	pthread_mutex_t lock;
	struct sg_throttle_cfg cfg;
	struct entry *tab;
	size_t cap;   /* power of two */
	size_t used;
	uint64_t last_rebuild_ms;
	struct entry scratch; /* stands in for new keys while the table is full */
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
	if (t->cfg.max_entries < 64)
		t->cfg.max_entries = 64;
	t->cap = 64;
	t->tab = sg_calloc(t->cap, sizeof(*t->tab));
	return t;
}

void sg_throttle_free(struct sg_throttle **pt)
{
	struct sg_throttle *t = *pt;
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->cap; i++)
		free(t->tab[i].key);
	free(t->tab);
	pthread_mutex_destroy(&t->lock);
	free(t);
	*pt = NULL;
}

static bool live(const struct sg_throttle *t, const struct entry *e, uint64_t now)
{
	return e->conns > 0 || now < e->blocked_until_ms ||
	       (e->failures > 0 && now - e->last_fail_ms < t->cfg.window_ms);
}

static void insert_raw(struct entry *tab, size_t cap, struct entry *e)
{
	size_t i = fnv(e->key) & (cap - 1);
	while (tab[i].key != NULL)
		i = (i + 1) & (cap - 1);
	tab[i] = *e;
}

/* Drop expired entries; grow when still more than half full. */
static void rebuild(struct sg_throttle *t, uint64_t now)
{
	size_t live_n = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->tab[i].key != NULL && live(t, &t->tab[i], now))
			live_n++;
	size_t cap = t->cap;
	while (live_n * 2 >= cap && cap < (size_t)t->cfg.max_entries * 2)
		cap *= 2;
	struct entry *tab = sg_calloc(cap, sizeof(*tab));
	size_t used = 0;
	for (size_t i = 0; i < t->cap; i++) {
		struct entry *e = &t->tab[i];
		if (e->key == NULL)
			continue;
		if (live(t, e, now) && used * 2 < cap) {
			insert_raw(tab, cap, e);
			used++;
		} else {
			free(e->key);
		}
	}
	free(t->tab);
	t->tab = tab;
	t->cap = cap;
	t->used = used;
}

static struct entry *get(struct sg_throttle *t, char kind, const char *name, bool create, uint64_t now)
{
	char key[300];
	key[0] = kind;
	key[1] = ':';
	sg_strlcpy(key + 2, name, sizeof(key) - 2);
	size_t i = fnv(key) & (t->cap - 1);
	while (t->tab[i].key != NULL) {
		if (strcmp(t->tab[i].key, key) == 0)
			return &t->tab[i];
		i = (i + 1) & (t->cap - 1);
	}
	if (!create)
		return NULL;
	if ((t->used + 1) * 2 > t->cap) {
		/* Full at max_entries of live keys (a distributed attack): rebuild
		 * at most once a second, and meanwhile count new keys in a
		 * scratch entry rather than rescanning the table on every call. */
		if (t->cap >= (size_t)t->cfg.max_entries * 2 && now - t->last_rebuild_ms < 1000) {
			t->scratch = (struct entry){.key = NULL};
			return &t->scratch;
		}
		t->last_rebuild_ms = now;
		size_t before = t->used;
		rebuild(t, now);
		if ((t->used + 1) * 2 > t->cap && t->used >= before) {
			t->scratch = (struct entry){.key = NULL};
			return &t->scratch;
		}
		return get(t, kind, name, true, now);
	}
	t->tab[i] = (struct entry){.key = sg_strdup(key)};
	t->used++;
	return &t->tab[i];
}

static void expire(const struct sg_throttle *t, struct entry *e, uint64_t now)
{
	if (e->failures > 0 && now - e->last_fail_ms >= t->cfg.window_ms && now >= e->blocked_until_ms)
		e->failures = 0;
}

bool sg_throttle_auth_allowed(struct sg_throttle *t, const char *ip, uint64_t now)
{
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ip, false, now);
	bool ok = e == NULL || now >= e->blocked_until_ms;
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

unsigned sg_throttle_auth_failed(struct sg_throttle *t, const char *ip, const char *login, uint64_t now)
{
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ip, true, now);
	expire(t, e, now);
	e->failures++;
	e->last_fail_ms = now;
	if (e->failures >= t->cfg.ip_threshold)
		e->blocked_until_ms = now + t->cfg.cooloff_ms;
	unsigned delay = delay_for(t, e->failures);
	if (login != NULL && *login != '\0') {
		struct entry *a = get(t, 'a', login, true, now);
		expire(t, a, now);
		a->failures++;
		a->last_fail_ms = now;
		if (a->failures >= t->cfg.account_threshold && t->cfg.max_delay_ms > delay)
			delay = t->cfg.max_delay_ms;
	}
	pthread_mutex_unlock(&t->lock);
	return delay;
}

void sg_throttle_auth_ok(struct sg_throttle *t, const char *ip)
{
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ip, false, 0);
	if (e != NULL && e->blocked_until_ms == 0)
		e->failures = 0;
	pthread_mutex_unlock(&t->lock);
}

unsigned sg_throttle_conn_add(struct sg_throttle *t, const char *ip)
{
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ip, true, sg_now_ms());
	unsigned n = ++e->conns;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void sg_throttle_conn_del(struct sg_throttle *t, const char *ip)
{
	pthread_mutex_lock(&t->lock);
	struct entry *e = get(t, 'i', ip, false, 0);
	if (e != NULL && e->conns > 0)
		e->conns--;
	pthread_mutex_unlock(&t->lock);
}

unsigned sg_throttle_blocked(struct sg_throttle *t, uint64_t now)
{
	unsigned n = 0;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->cap; i++)
		if (t->tab[i].key != NULL && t->tab[i].key[0] == 'i' && now < t->tab[i].blocked_until_ms)
			n++;
	pthread_mutex_unlock(&t->lock);
	return n;
}
