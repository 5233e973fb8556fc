/*
 * index.c: the background indexer (http_int.h). One thread of its own:
 * at start it compares the index with the Maildirs (indexes what is
 * missing, forgets what is gone), then waits for "message" events. The
 * events callback runs on the SMTP loop that stored the message and only
 * appends (inbox, id) to a bounded queue; the parse and the SQLite write
 * happen here. A full queue sets a flag that makes the thread rescan the
 * Maildirs instead, so nothing is lost and the SMTP side never waits.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/log.h"
#include "core/util.h"
#include "http/http_int.h"
#include "store/cred.h"
#include "store/events.h"
#include "store/mail.h"
#include "store/search.h"

#define QUEUE_MAX 4096
#define RETENTION_EVERY_MS 30000

struct item {
	char inbox[256];
	char id[SG_MAIL_ID_MAX];
	uint64_t seq;
};

struct sg_indexer {
	char *data_dir;
	struct sg_mail_store *mail;
	struct sg_events *events;
	struct sg_search *search;
	int handle;
	pthread_t thread;
	pthread_mutex_t m;
	pthread_cond_t cv, idle_cv;
	struct item q[QUEUE_MAX];
	size_t head, count;
	bool rescan, busy, stopping;
	/* read-your-writes (sg_indexer_flush): every message announced gets a
	 * number; done is the highest one whose message is indexed (a rescan
	 * covers every number given before it started) */
	uint64_t announced, done;
	unsigned max_per_inbox, max_age_s; /* retention, 0 = none */
	uint64_t last_retention_ms;
};

/* Retention (issue 14): the oldest messages of an inbox beyond
 * max_messages_per_inbox, and every message older than max_message_age,
 * are deleted, here on the indexer's thread, never on an SMTP loop. */
static void retain_inbox(struct sg_indexer *ix, const char *inbox)
{
	if (ix->max_per_inbox == 0 && ix->max_age_s == 0)
		return;
	struct sg_mail_entry *e = NULL;
	size_t n = 0;
	if (sg_mail_list(ix->mail, inbox, &e, &n, NULL) < 0)
		return;
	int64_t cutoff = ix->max_age_s > 0 ? ((int64_t)time(NULL) - (int64_t)ix->max_age_s) * 1000000000
					   : INT64_MIN;
	size_t removed = 0;
	for (size_t i = 0; i < n; i++) { /* newest first */
		bool over = ix->max_per_inbox > 0 && i >= ix->max_per_inbox;
		if (!over && e[i].mtime_ns >= cutoff)
			continue;
		if (sg_mail_delete(ix->mail, inbox, e[i].id, NULL) == 1) {
			sg_search_delete(ix->search, inbox, e[i].id);
			removed++;
		}
	}
	free(e);
	if (removed > 0) {
		char v[300];
		sg_log(SG_INFO, "retention", "inbox=%s removed=%zu max_messages=%u max_age_s=%u",
		       sg_log_value(inbox, v, sizeof(v)), removed, ix->max_per_inbox, ix->max_age_s);
	}
}

static void retain_all(struct sg_indexer *ix)
{
	char *dir = sg_asprintf("%s/mail", ix->data_dir);
	DIR *d = opendir(dir);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL && !ix->stopping)
			if (de->d_name[0] != '.' && sg_cred_validate_login(de->d_name, NULL) == 0)
				retain_inbox(ix, de->d_name);
		closedir(d);
	}
	free(dir);
	ix->last_retention_ms = sg_now_ms();
}

static void on_event(void *ctx, const char *type, const char *json)
{
	struct sg_indexer *ix = ctx;
	if (strcmp(type, "message") != 0)
		return;
	json_t *o = json_loads(json, 0, NULL);
	const char *login = json_string_value(json_object_get(o, "login"));
	const char *id = json_string_value(json_object_get(o, "id"));
	pthread_mutex_lock(&ix->m);
	ix->announced++;
	if (login != NULL && id != NULL && ix->count < QUEUE_MAX) {
		struct item *it = &ix->q[(ix->head + ix->count) % QUEUE_MAX];
		sg_strlcpy(it->inbox, login, sizeof(it->inbox));
		sg_strlcpy(it->id, id, sizeof(it->id));
		it->seq = ix->announced;
		ix->count++;
	} else {
		ix->rescan = true;
	}
	pthread_cond_signal(&ix->cv);
	pthread_mutex_unlock(&ix->m);
	json_decref(o);
}

static void index_one(struct sg_indexer *ix, const char *inbox, const char *id, int64_t mtime_ns)
{
	const char *err = NULL;
	if (mtime_ns == 0) {
		struct sg_mail_entry *e = NULL;
		size_t n = 0;
		if (sg_mail_list(ix->mail, inbox, &e, &n, NULL) == 0)
			for (size_t i = 0; i < n; i++)
				if (strcmp(e[i].id, id) == 0)
					mtime_ns = e[i].mtime_ns;
		free(e);
	}
	if (sg_msg_index(ix->mail, ix->search, inbox, id, mtime_ns, &err) < 0) {
		char v[300];
		sg_log(SG_WARN, "index", "inbox=%s id=%s result=failed error=\"%s\"",
		       sg_log_value(inbox, v, sizeof(v)), id, err != NULL ? err : "?");
	}
}

struct known {
	char (*keys)[320];
	size_t n, cap;
};

static void known_cb(void *ctx, const char *inbox, const char *id)
{
	struct known *k = ctx;
	if (k->n == k->cap) {
		k->cap = k->cap != 0 ? k->cap * 2 : 1024;
		k->keys = sg_realloc(k->keys, k->cap * sizeof(*k->keys));
	}
	snprintf(k->keys[k->n++], sizeof(k->keys[0]), "%s/%s", inbox, id);
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/* Bring the index in line with the Maildirs. */
static void rescan(struct sg_indexer *ix)
{
	uint64_t t0 = sg_now_ms();
	struct known k = {0};
	sg_search_each(ix->search, NULL, known_cb, &k);
	if (k.n > 1)
		qsort(k.keys, k.n, sizeof(*k.keys), cmp_key);
	bool *seen = k.n > 0 ? sg_calloc(k.n, sizeof(bool)) : NULL;
	size_t added = 0, removed = 0;
	char *dir = sg_asprintf("%s/mail", ix->data_dir);
	DIR *d = opendir(dir);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL && !ix->stopping) {
			if (de->d_name[0] == '.' || sg_cred_validate_login(de->d_name, NULL) < 0)
				continue;
			struct sg_mail_entry *e = NULL;
			size_t n = 0;
			if (sg_mail_list(ix->mail, de->d_name, &e, &n, NULL) < 0)
				continue;
			for (size_t i = 0; i < n && !ix->stopping; i++) {
				char key[320];
				snprintf(key, sizeof(key), "%s/%s", de->d_name, e[i].id);
				char(*hit)[320] = k.n > 0 ? bsearch(key, k.keys, k.n, sizeof(*k.keys), cmp_key)
							 : NULL;
				if (hit != NULL) {
					seen[hit - k.keys] = true;
				} else {
					index_one(ix, de->d_name, e[i].id, e[i].mtime_ns);
					added++;
				}
			}
			free(e);
		}
		closedir(d);
	}
	free(dir);
	for (size_t i = 0; i < k.n && !ix->stopping; i++) {
		if (seen[i])
			continue;
		char *slash = strrchr(k.keys[i], '/');
		*slash = '\0';
		sg_search_delete(ix->search, k.keys[i], slash + 1);
		removed++;
	}
	free(seen);
	free(k.keys);
	if (added > 0 || removed > 0)
		sg_log(SG_INFO, "index_rescan", "added=%zu removed=%zu ms=%llu", added, removed,
		       (unsigned long long)(sg_now_ms() - t0));
}

static void *indexer_main(void *arg)
{
	struct sg_indexer *ix = arg;
	pthread_mutex_lock(&ix->m);
	while (!ix->stopping) {
		if (ix->rescan) {
			ix->rescan = false;
			ix->busy = true;
			uint64_t covers = ix->announced;
			pthread_mutex_unlock(&ix->m);
			rescan(ix);
			retain_all(ix);
			pthread_mutex_lock(&ix->m);
			ix->busy = false;
			if (covers > ix->done)
				ix->done = covers;
			pthread_cond_broadcast(&ix->idle_cv);
			continue;
		}
		if (ix->count > 0) {
			struct item it = ix->q[ix->head];
			ix->head = (ix->head + 1) % QUEUE_MAX;
			ix->count--;
			ix->busy = true;
			pthread_mutex_unlock(&ix->m);
			index_one(ix, it.inbox, it.id, 0);
			pthread_mutex_lock(&ix->m);
			if (it.seq > ix->done)
				ix->done = it.seq;
			pthread_cond_broadcast(&ix->idle_cv);
			pthread_mutex_unlock(&ix->m);
			retain_inbox(ix, it.inbox);
			pthread_mutex_lock(&ix->m);
			ix->busy = false;
			continue;
		}
		if ((ix->max_per_inbox > 0 || ix->max_age_s > 0) &&
		    sg_now_ms() - ix->last_retention_ms >= RETENTION_EVERY_MS) {
			ix->busy = true;
			pthread_mutex_unlock(&ix->m);
			retain_all(ix);
			pthread_mutex_lock(&ix->m);
			ix->busy = false;
			continue;
		}
		pthread_cond_broadcast(&ix->idle_cv);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += RETENTION_EVERY_MS / 1000;
		pthread_cond_timedwait(&ix->cv, &ix->m, &ts);
	}
	pthread_cond_broadcast(&ix->idle_cv);
	pthread_mutex_unlock(&ix->m);
	return NULL;
}

struct sg_indexer *sg_indexer_start(const char *data_dir, struct sg_mail_store *mail,
				    struct sg_events *events, struct sg_search *search,
				    unsigned max_per_inbox, unsigned max_age_s)
{
	if (mail == NULL || search == NULL)
		return NULL;
	struct sg_indexer *ix = sg_calloc(1, sizeof(*ix));
	ix->data_dir = sg_strdup(data_dir);
	ix->mail = mail;
	ix->events = events;
	ix->search = search;
	ix->rescan = true;
	ix->handle = -1;
	ix->max_per_inbox = max_per_inbox;
	ix->max_age_s = max_age_s;
	pthread_mutex_init(&ix->m, NULL);
	pthread_cond_init(&ix->cv, NULL);
	pthread_cond_init(&ix->idle_cv, NULL);
	if (events != NULL)
		ix->handle = sg_events_subscribe(events, on_event, ix);
	if (pthread_create(&ix->thread, NULL, indexer_main, ix) != 0) {
		if (ix->handle >= 0)
			sg_events_unsubscribe(events, ix->handle);
		free(ix->data_dir);
		free(ix);
		return NULL;
	}
	return ix;
}

void sg_indexer_flush(struct sg_indexer *ix, unsigned timeout_ms)
{
	if (ix == NULL)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&ix->m);
	uint64_t mark = ix->announced;
	while (ix->done < mark && !ix->stopping)
		if (pthread_cond_timedwait(&ix->idle_cv, &ix->m, &ts) != 0)
			break;
	pthread_mutex_unlock(&ix->m);
}

void sg_indexer_stop(struct sg_indexer **ixp)
{
	struct sg_indexer *ix = *ixp;
	if (ix == NULL)
		return;
	*ixp = NULL;
	if (ix->handle >= 0)
		sg_events_unsubscribe(ix->events, ix->handle);
	pthread_mutex_lock(&ix->m);
	ix->stopping = true;
	pthread_cond_broadcast(&ix->cv);
	pthread_mutex_unlock(&ix->m);
	pthread_join(ix->thread, NULL);
	pthread_mutex_destroy(&ix->m);
	pthread_cond_destroy(&ix->cv);
	pthread_cond_destroy(&ix->idle_cv);
	free(ix->data_dir);
	free(ix);
}
