/*
 * events_int.h: the PostgreSQL side of the auth event log (events_pg.c),
 * used by events.c when the log was opened with sg_events_open_pg(). The
 * queue, the writer thread and the subscribers stay in events.c; only
 * where a batch is written, where queries read, and how other nodes hear
 * of an event change.
 */
#ifndef SG_EVENTS_INT_H
#define SG_EVENTS_INT_H

#include <stddef.h>

#include "store/events.h"

struct sg_pg;

#define SG_EVENTS_CHANNEL "sg_events"

/* Insert a batch and announce each event (NOTIFY, at commit). 0 / -1. */
int sg_events_pg_write(struct sg_pg *pg, const char *node, const struct sg_auth_event *batch, size_t n,
		       unsigned *since_trim);
/* Announce an event that is not stored (a new message). 0 / -1. */
int sg_events_pg_announce(struct sg_pg *pg, const char *node, const char *type, const char *json);
/* Split a NOTIFY payload: 1 (another node's event: *type_r, *json_r point
 * into the payload / type_buf), 0 (this node's own), -1 (malformed). */
int sg_events_pg_parse(const char *payload, const char *self, const char **type_r, const char **json_r,
		       char *type_buf, size_t type_size);
int sg_events_pg_query(struct sg_pg *pg, const struct sg_events_filter *f, size_t limit,
		       struct sg_auth_event_row **rows_r, size_t *n_r, const char **error_r);

#endif
