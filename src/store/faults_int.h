/*
 * faults_int.h: the PostgreSQL side of the fault rules (faults_pg.c), used
 * by faults.c when the rules were opened with sg_faults_open_pg(). The
 * in-memory rule set, the hot path and the write-back thread stay in
 * faults.c; only where rules are read, written and counted back changes.
 */
#ifndef SG_FAULTS_INT_H
#define SG_FAULTS_INT_H

#include <stddef.h>

#include "store/faults.h"

struct sg_pg;

#define SG_FAULTS_CHANNEL "sg_faults"

int sg_faults_kind_parse(const char *name, enum sg_fault_kind *k);
int sg_faults_when_parse(const char *name, enum sg_fault_when *w);

int sg_faults_pg_load(struct sg_pg *pg, struct sg_fault_rule **rules_r, size_t *n_r, const char **error_r);
int sg_faults_pg_add(struct sg_pg *pg, const struct sg_fault_rule *r, const char *origin, long *id_r,
		     const char **error_r);
int sg_faults_pg_delete(struct sg_pg *pg, long id, const char **error_r);
int sg_faults_pg_clear(struct sg_pg *pg, const char *origin, size_t *n_r, const char **error_r);
void sg_faults_pg_persist(struct sg_pg *pg, const struct sg_fault_rule *rules, size_t n);

#endif
