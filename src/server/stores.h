/*
 * stores.h: open the stores the configuration names (`store = sqlite` or
 * `store = postgresql`), for `serve` and for the CLI commands that manage
 * accounts. The only place that knows which backend is chosen: everything
 * else uses the store interfaces (store/cred.h ...).
 */
#ifndef SG_STORES_H
#define SG_STORES_H

#include <stdbool.h>
#include <stddef.h>

struct sg_config;
struct sg_pg;
struct sg_cred_store;

bool sg_stores_is_pg(const struct sg_config *c);
/* With store = postgresql: the connection string (pg_conninfo, or read from
 * pg_conninfo_file, which must be mode 0600) and a link with no connection
 * yet; *pg_r = NULL for SQLite. 0, or -1 with a message. */
int sg_stores_pg_new(const struct sg_config *c, struct sg_pg **pg_r, char *err, size_t errsize);
/* The credential store: PostgreSQL on pg when it is not NULL, else
 * <data_dir>/smtpgate.db. 0, or -1 with a message. */
int sg_stores_open_cred(const struct sg_config *c, struct sg_pg *pg, struct sg_cred_store **creds_r,
			char *err, size_t errsize);

/* The auth event log: the shared PostgreSQL table when pg is not NULL, else
 * <data_dir>/smtpgate.db. */
struct sg_events;
int sg_stores_open_events(const struct sg_config *c, struct sg_pg *pg, struct sg_events **ev_r,
			  char *err, size_t errsize);

/* The fault-injection rules: the shared PostgreSQL table when pg is not
 * NULL, else <data_dir>/smtpgate.db. */
struct sg_faults;
int sg_stores_open_faults(const struct sg_config *c, struct sg_pg *pg, struct sg_faults **f_r,
			  char *err, size_t errsize);

/* The capture store: the shared PostgreSQL tables when pg is not NULL (a
 * message up to max_message_size plus our header block), else one Maildir
 * per account under data_dir. */
struct sg_mail_store;
int sg_stores_open_mail(const struct sg_config *c, struct sg_pg *pg, struct sg_mail_store **mail_r,
			char *err, size_t errsize);

/* store = postgresql: share the throttle's failure counts with the other
 * nodes (*shared_r = NULL with SQLite). */
struct sg_throttle;
struct sg_throttle_pg;
int sg_stores_share_throttle(const struct sg_config *c, struct sg_pg *pg, struct sg_throttle *t,
			     struct sg_throttle_pg **shared_r, char *err, size_t errsize);

#endif
