#include "server/stores.h"

#include <stdio.h>
#include <string.h>

#include "core/secret.h"
#include "server/config.h"
#include "store/cred.h"
#include "store/events.h"
#include "store/faults.h"
#include "store/mail.h"
#include "store/pg.h"
#include "store/throttle_pg.h"

bool sg_stores_is_pg(const struct sg_config *c)
{
	return strcmp(c->store, "postgresql") == 0;
}

int sg_stores_pg_new(const struct sg_config *c, struct sg_pg **pg_r, char *err, size_t errsize)
{
	*pg_r = NULL;
	if (strcmp(c->store, "sqlite") == 0)
		return 0;
	if (!sg_stores_is_pg(c)) {
		snprintf(err, errsize, "store '%s': expected sqlite or postgresql", c->store);
		return -1;
	}
	if ((c->pg_conninfo[0] != '\0') == (c->pg_conninfo_file[0] != '\0')) {
		snprintf(err, errsize, "store = postgresql needs exactly one of pg_conninfo and pg_conninfo_file");
		return -1;
	}
	char conninfo[1024];
	const char *error = NULL;
	if (c->pg_conninfo_file[0] != '\0') {
		if (sg_pg_conninfo_file(c->pg_conninfo_file, conninfo, sizeof(conninfo), &error) < 0) {
			snprintf(err, errsize, "pg_conninfo_file: %s", error);
			return -1;
		}
	} else {
		snprintf(conninfo, sizeof(conninfo), "%s", c->pg_conninfo);
	}
	*pg_r = sg_pg_new(conninfo, c->pg_pool_size);
	sg_wipe(conninfo, sizeof(conninfo));
	return 0;
}

int sg_stores_open_cred(const struct sg_config *c, struct sg_pg *pg, struct sg_cred_store **creds_r,
			char *err, size_t errsize)
{
	const char *error = NULL;
	if (pg != NULL) {
		if (sg_cred_open_pg(pg, creds_r, &error) < 0) {
			snprintf(err, errsize, "account database (PostgreSQL): %s", error);
			return -1;
		}
		return 0;
	}
	char path[1100];
	snprintf(path, sizeof(path), "%s/smtpgate.db", c->data_dir);
	if (sg_cred_open(path, creds_r, &error) < 0) {
		snprintf(err, errsize, "account database %s: %s", path, error);
		return -1;
	}
	return 0;
}

int sg_stores_open_events(const struct sg_config *c, struct sg_pg *pg, struct sg_events **ev_r,
			  char *err, size_t errsize)
{
	const char *error = NULL;
	int r = pg != NULL ? sg_events_open_pg(pg, ev_r, &error) : sg_events_open(c->data_dir, ev_r, &error);
	if (r < 0) {
		snprintf(err, errsize, "auth event log: %s", error);
		return -1;
	}
	return 0;
}

int sg_stores_share_throttle(const struct sg_config *c, struct sg_pg *pg, struct sg_throttle *t,
			     struct sg_throttle_pg **shared_r, char *err, size_t errsize)
{
	*shared_r = NULL;
	if (pg == NULL)
		return 0;
	const char *error = NULL;
	if (sg_throttle_pg_new(pg, t, c->throttle_window_ms, c->throttle_ip_threshold, shared_r, &error) < 0) {
		snprintf(err, errsize, "shared throttle: %s", error);
		return -1;
	}
	return 0;
}

int sg_stores_open_mail(const struct sg_config *c, struct sg_pg *pg, struct sg_mail_store **mail_r,
			char *err, size_t errsize)
{
	const char *error = NULL;
	/* the header block we add (Received:, Return-Path:) is far under 64 KiB */
	int r = pg != NULL ? sg_mail_open_pg(pg, c->max_message_size + 65536, mail_r, &error)
			   : sg_mail_open(c->data_dir, mail_r, &error);
	if (r < 0) {
		snprintf(err, errsize, "mail store: %s", error);
		return -1;
	}
	return 0;
}

int sg_stores_open_faults(const struct sg_config *c, struct sg_pg *pg, struct sg_faults **f_r,
			  char *err, size_t errsize)
{
	const char *error = NULL;
	int r = pg != NULL ? sg_faults_open_pg(pg, f_r, &error) : sg_faults_open(c->data_dir, f_r, &error);
	if (r < 0) {
		snprintf(err, errsize, "fault rules: %s", error);
		return -1;
	}
	return 0;
}
