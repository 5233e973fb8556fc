/*
 * faults_pg.c: the fault-injection rules in PostgreSQL (faults_int.h), so a
 * rule added on any node (CLI, API or configuration) applies on every node.
 * Each change sends NOTIFY sg_faults (at commit); every node reloads its
 * in-memory rule set from the LISTEN thread. Counters (matched, fired) are
 * counted by each node and written back as the largest value seen, as the
 * SQLite backend does for several processes: "times" and "every" count per
 * node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "store/faults.h"
#include "store/faults_int.h"
#include "store/pg.h"

#define MAX_RULES 1000
#define MAX_RULES_STR "1000"

static const char cols[] = "id, stage, listener, login, kind, code, enhanced, text, delay_ms, mode, n,"
			   " probability, matched, fired, created, origin";

static long long num(PGresult *r, int row, int col)
{
	uint64_t v = 0;
	sg_parse_u64(PQgetvalue(r, row, col), 0, INT64_MAX, &v);
	return (long long)v;
}

int sg_faults_pg_load(struct sg_pg *pg, struct sg_fault_rule **rules_r, size_t *n_r, const char **error_r)
{
	*rules_r = NULL;
	*n_r = 0;
	PGconn *c = sg_pg_get(pg);
	if (c == NULL) {
		sg_set_err(error_r, "faults: cannot connect to PostgreSQL");
		return -1;
	}
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT %s FROM sg_faults ORDER BY id LIMIT %d", cols, MAX_RULES);
	PGresult *r = sg_pg_exec(pg, c, sql, 0, NULL);
	sg_pg_put(pg, c);
	if (r == NULL) {
		sg_set_err(error_r, "faults: query failed");
		return -1;
	}
	struct sg_fault_rule *rules = NULL;
	size_t n = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		struct sg_fault_rule x;
		memset(&x, 0, sizeof(x));
		x.id = (long)num(r, i, 0);
		x.action.rule_id = x.id;
		if (sg_fault_stage_parse(PQgetvalue(r, i, 1), &x.stage) < 0 ||
		    sg_faults_kind_parse(PQgetvalue(r, i, 4), &x.action.kind) < 0 ||
		    sg_faults_when_parse(PQgetvalue(r, i, 9), &x.when) < 0)
			continue; /* written by a newer version: ignore */
		sg_strlcpy(x.listener, PQgetvalue(r, i, 2), sizeof(x.listener));
		sg_strlcpy(x.login, PQgetvalue(r, i, 3), sizeof(x.login));
		x.action.code = (unsigned)num(r, i, 5);
		sg_strlcpy(x.action.enhanced, PQgetvalue(r, i, 6), sizeof(x.action.enhanced));
		sg_strlcpy(x.action.text, PQgetvalue(r, i, 7), sizeof(x.action.text));
		x.action.delay_ms = (unsigned)num(r, i, 8);
		x.n = (unsigned)num(r, i, 10);
		x.probability = strtod(PQgetvalue(r, i, 11), NULL);
		x.matched = (unsigned long long)num(r, i, 12);
		x.fired = (unsigned long long)num(r, i, 13);
		x.created = num(r, i, 14);
		sg_strlcpy(x.origin, PQgetvalue(r, i, 15), sizeof(x.origin));
		rules = sg_realloc(rules, (n + 1) * sizeof(*rules));
		rules[n++] = x;
	}
	PQclear(r);
	*rules_r = rules;
	*n_r = n;
	return 0;
}

/* One statement that changes the table and announces it (NOTIFY at commit). */
static PGresult *change(struct sg_pg *pg, const char *sql, int n, const char *const *params,
			const char **error_r)
{
	PGconn *c = sg_pg_get(pg);
	if (c == NULL) {
		sg_set_err(error_r, "faults: cannot connect to PostgreSQL");
		return NULL;
	}
	PGresult *r = sg_pg_exec(pg, c, sql, n, params);
	sg_pg_put(pg, c);
	if (r == NULL)
		sg_set_err(error_r, "faults: the change failed in PostgreSQL");
	return r;
}

int sg_faults_pg_add(struct sg_pg *pg, const struct sg_fault_rule *x, const char *origin, long *id_r,
		     const char **error_r)
{
	char code[16], delay[16], n[24], prob[32], created[24];
	snprintf(code, sizeof(code), "%u", x->action.code);
	snprintf(delay, sizeof(delay), "%u", x->action.delay_ms);
	snprintf(n, sizeof(n), "%u", x->n);
	snprintf(prob, sizeof(prob), "%.17g", x->when == SG_FAULT_PROBABILITY ? x->probability : 1.0);
	snprintf(created, sizeof(created), "%lld", (long long)time(NULL));
	const char *params[13] = {sg_fault_stage_name(x->stage), x->listener, x->login,
				  sg_fault_kind_name(x->action.kind), code, x->action.enhanced, x->action.text,
				  delay, sg_fault_when_name(x->when), n, prob, created,
				  origin != NULL ? origin : "cli"};
	PGresult *r = change(pg,
			     "WITH i AS (INSERT INTO sg_faults(stage, listener, login, kind, code, enhanced, text,"
			     " delay_ms, mode, n, probability, created, origin)"
			     " SELECT $1, $2, $3, $4, $5::integer, $6, $7, $8::integer, $9, $10::bigint,"
			     " $11::double precision, $12::bigint, $13"
			     " WHERE (SELECT count(*) FROM sg_faults) < " MAX_RULES_STR
			     " RETURNING id) SELECT id, pg_notify('" SG_FAULTS_CHANNEL "', 'add') FROM i",
			     13, params, error_r);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		sg_set_err(error_r, "too many fault rules (1000)");
		return -1;
	}
	if (id_r != NULL)
		*id_r = (long)num(r, 0, 0);
	PQclear(r);
	return 0;
}

int sg_faults_pg_delete(struct sg_pg *pg, long id, const char **error_r)
{
	char sid[24];
	snprintf(sid, sizeof(sid), "%ld", id);
	const char *params[1] = {sid};
	PGresult *r = change(pg,
			     "WITH d AS (DELETE FROM sg_faults WHERE id = $1::bigint RETURNING id)"
			     " SELECT count(*), pg_notify('" SG_FAULTS_CHANNEL "', 'delete') FROM d",
			     1, params, error_r);
	if (r == NULL)
		return -1;
	int ret = num(r, 0, 0) > 0 ? 1 : 0;
	PQclear(r);
	return ret;
}

int sg_faults_pg_clear(struct sg_pg *pg, const char *origin, size_t *n_r, const char **error_r)
{
	const char *params[1] = {origin};
	PGresult *r = change(pg,
			     origin != NULL
				     ? "WITH d AS (DELETE FROM sg_faults WHERE origin = $1 RETURNING id)"
				       " SELECT count(*), pg_notify('" SG_FAULTS_CHANNEL "', 'clear') FROM d"
				     : "WITH d AS (DELETE FROM sg_faults RETURNING id)"
				       " SELECT count(*), pg_notify('" SG_FAULTS_CHANNEL "', 'clear') FROM d",
			     origin != NULL ? 1 : 0, params, error_r);
	if (r == NULL)
		return -1;
	if (n_r != NULL)
		*n_r = (size_t)num(r, 0, 0);
	PQclear(r);
	return 0;
}

void sg_faults_pg_persist(struct sg_pg *pg, const struct sg_fault_rule *rules, size_t n)
{
	PGconn *c = sg_pg_get(pg);
	if (c == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		char m[24], f[24], id[24];
		snprintf(m, sizeof(m), "%llu", rules[i].matched);
		snprintf(f, sizeof(f), "%llu", rules[i].fired);
		snprintf(id, sizeof(id), "%ld", rules[i].id);
		const char *params[3] = {m, f, id};
		PGresult *r = sg_pg_exec(pg, c,
					 "UPDATE sg_faults SET matched = greatest(matched, $1::bigint),"
					 " fired = greatest(fired, $2::bigint) WHERE id = $3::bigint",
					 3, params);
		PQclear(r);
		if (r == NULL)
			break;
	}
	sg_pg_put(pg, c);
}
