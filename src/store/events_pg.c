/*
 * events_pg.c: the auth event log and the live stream on PostgreSQL
 * (events_int.h), so every node's API and page show every node's events.
 *
 * Writes come from the events writer thread in batches (never from an SMTP
 * loop): one multi-row INSERT and the NOTIFYs in one transaction, so a
 * notification never announces an event that is not in the table. The
 * payload of NOTIFY sg_events is "<node>\t<type>\t<json>": each node passes
 * on to its own subscribers the events of the other nodes (its own were
 * delivered locally when they happened). PostgreSQL caps a payload at 8000
 * octets; an event that would not fit is stored but not announced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "store/events.h"
#include "store/events_int.h"
#include "store/pg.h"

#define CHUNK 50          /* events per INSERT statement (11 parameters each) */
#define PAYLOAD_MAX 7900
#define KEEP_ROWS "100000"

static char *payload(const char *node, const char *type, const char *json)
{
	char *p = sg_asprintf("%s\t%s\t%s", node, type, json);
	if (strlen(p) > PAYLOAD_MAX) {
		free(p);
		return NULL;
	}
	return p;
}

static bool exec_simple(struct sg_pg *pg, PGconn *c, const char *sql)
{
	PGresult *r = sg_pg_exec(pg, c, sql, 0, NULL);
	PQclear(r);
	return r != NULL;
}

int sg_events_pg_write(struct sg_pg *pg, const char *node, const struct sg_auth_event *batch, size_t n,
		       unsigned *since_trim)
{
	PGconn *c = sg_pg_get(pg);
	if (c == NULL)
		return -1;
	bool ok = exec_simple(pg, c, "BEGIN");
	for (size_t base = 0; ok && base < n; base += CHUNK) {
		size_t m = n - base < CHUNK ? n - base : CHUNK;
		struct sg_buf sql;
		sg_buf_init(&sql, 64 * 1024);
		sg_buf_append_str(&sql, "INSERT INTO auth_events(time_ms, node, session, client_ip, listener,"
					" tls, tls_version, mech, login, result, reason, injected) VALUES ");
		const char *params[CHUNK * 12];
		char times[CHUNK][24];
		int np = 0;
		for (size_t i = 0; i < m; i++) {
			const struct sg_auth_event *e = &batch[base + i];
			snprintf(times[i], sizeof(times[i]), "%lld", (long long)e->time_ms);
			sg_buf_printf(&sql, "%s($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", i ? "," : "",
				      np + 1, np + 2, np + 3, np + 4, np + 5, np + 6, np + 7, np + 8, np + 9,
				      np + 10, np + 11, np + 12);
			params[np++] = times[i];
			params[np++] = node;
			params[np++] = e->session;
			params[np++] = e->client_ip;
			params[np++] = e->listener;
			params[np++] = e->tls ? "true" : "false";
			params[np++] = e->tls_version;
			params[np++] = e->mech;
			params[np++] = e->login;
			params[np++] = e->result;
			params[np++] = e->reason;
			params[np++] = e->injected ? "true" : "false";
		}
		sg_buf_append(&sql, "", 1);
		PGresult *r = sg_pg_exec(pg, c, (const char *)sql.data, np, params);
		sg_buf_free(&sql);
		PQclear(r);
		ok = r != NULL;
		/* the announcements, delivered at COMMIT */
		char *payloads[CHUNK];
		size_t k = 0;
		for (size_t i = 0; ok && i < m; i++) {
			char *json = sg_auth_event_json(&batch[base + i], 0);
			char *p = payload(node, "auth", json);
			free(json);
			if (p != NULL)
				payloads[k++] = p;
		}
		if (ok && k > 0) {
			struct sg_buf q;
			sg_buf_init(&q, 16 * 1024);
			sg_buf_append_str(&q, "SELECT ");
			for (size_t i = 0; i < k; i++)
				sg_buf_printf(&q, "%spg_notify('" SG_EVENTS_CHANNEL "', $%zu)", i ? "," : "", i + 1);
			sg_buf_append(&q, "", 1);
			r = sg_pg_exec(pg, c, (const char *)q.data, (int)k, (const char *const *)payloads);
			sg_buf_free(&q);
			PQclear(r);
			ok = r != NULL;
		}
		for (size_t i = 0; i < k; i++)
			free(payloads[i]);
	}
	*since_trim += (unsigned)n;
	if (ok && *since_trim >= 1000) {
		*since_trim = 0;
		ok = exec_simple(pg, c, "DELETE FROM auth_events WHERE id <= (SELECT max(id) FROM auth_events) - "
				 KEEP_ROWS);
	}
	ok = ok && exec_simple(pg, c, "COMMIT");
	if (!ok && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	sg_pg_put(pg, c);
	return ok ? 0 : -1;
}

int sg_events_pg_announce(struct sg_pg *pg, const char *node, const char *type, const char *json)
{
	char *p = payload(node, type, json);
	if (p == NULL)
		return 0;
	PGconn *c = sg_pg_get(pg);
	if (c == NULL) {
		free(p);
		return -1;
	}
	const char *params[1] = {p};
	PGresult *r = sg_pg_exec(pg, c, "SELECT pg_notify('" SG_EVENTS_CHANNEL "', $1)", 1, params);
	PQclear(r);
	sg_pg_put(pg, c);
	free(p);
	return r != NULL ? 0 : -1;
}

int sg_events_pg_parse(const char *payload_text, const char *self, const char **type_r,
		       const char **json_r, char *type_buf, size_t type_size)
{
	const char *t1 = strchr(payload_text, '\t');
	if (t1 == NULL)
		return -1;
	const char *t2 = strchr(t1 + 1, '\t');
	if (t2 == NULL || (size_t)(t2 - t1 - 1) >= type_size)
		return -1;
	if ((size_t)(t1 - payload_text) == strlen(self) && strncmp(payload_text, self, strlen(self)) == 0)
		return 0; /* our own: already delivered */
	memcpy(type_buf, t1 + 1, (size_t)(t2 - t1 - 1));
	type_buf[t2 - t1 - 1] = '\0';
	if (strcmp(type_buf, "auth") != 0 && strcmp(type_buf, "message") != 0)
		return -1;
	*type_r = type_buf;
	*json_r = t2 + 1;
	return 1;
}

static void copy_col(PGresult *r, int row, int col, char *out, size_t size)
{
	sg_strlcpy(out, PQgetvalue(r, row, col), size);
}

int sg_events_pg_query(struct sg_pg *pg, const struct sg_events_filter *f, size_t limit,
		       struct sg_auth_event_row **rows_r, size_t *n_r, const char **error_r)
{
	bool failed = f->result != NULL && strcmp(f->result, "failed") == 0;
	const char *params[5];
	char before[24], since[24], lim[24];
	int np = 0;
	struct sg_buf sql;
	sg_buf_init(&sql, 2048);
	sg_buf_append_str(&sql, "SELECT id, time_ms, session, client_ip, listener, tls, tls_version, mech, login,"
				" result, reason, injected FROM auth_events WHERE true");
	if (f->login != NULL && f->login[0] != '\0') {
		params[np++] = f->login;
		sg_buf_printf(&sql, " AND login = $%d", np);
	}
	if (failed) {
		sg_buf_append_str(&sql, " AND result <> 'ok'");
	} else if (f->result != NULL && f->result[0] != '\0') {
		params[np++] = f->result;
		sg_buf_printf(&sql, " AND result = $%d", np);
	}
	if (f->before_id > 0) {
		snprintf(before, sizeof(before), "%lld", (long long)f->before_id);
		params[np++] = before;
		sg_buf_printf(&sql, " AND id < $%d", np);
	}
	if (f->since_ms > 0) {
		snprintf(since, sizeof(since), "%lld", (long long)f->since_ms);
		params[np++] = since;
		sg_buf_printf(&sql, " AND time_ms >= $%d", np);
	}
	snprintf(lim, sizeof(lim), "%zu", limit);
	params[np++] = lim;
	sg_buf_printf(&sql, " ORDER BY id DESC LIMIT $%d", np);
	sg_buf_append(&sql, "", 1);
	PGconn *c = sg_pg_get(pg);
	if (c == NULL) {
		sg_buf_free(&sql);
		sg_set_err(error_r, "auth_events: cannot connect to PostgreSQL");
		return -1;
	}
	PGresult *r = sg_pg_exec(pg, c, (const char *)sql.data, np, params);
	sg_buf_free(&sql);
	sg_pg_put(pg, c);
	if (r == NULL) {
		sg_set_err(error_r, "auth_events: query failed");
		return -1;
	}
	size_t n = (size_t)PQntuples(r);
	struct sg_auth_event_row *rows = n > 0 ? sg_calloc(n, sizeof(*rows)) : NULL;
	for (size_t i = 0; i < n; i++) {
		int k = (int)i;
		uint64_t u = 0;
		sg_parse_u64(PQgetvalue(r, k, 0), 0, INT64_MAX, &u);
		rows[i].id = (int64_t)u;
		u = 0;
		sg_parse_u64(PQgetvalue(r, k, 1), 0, INT64_MAX, &u);
		rows[i].e.time_ms = (int64_t)u;
		copy_col(r, k, 2, rows[i].e.session, sizeof(rows[i].e.session));
		copy_col(r, k, 3, rows[i].e.client_ip, sizeof(rows[i].e.client_ip));
		copy_col(r, k, 4, rows[i].e.listener, sizeof(rows[i].e.listener));
		rows[i].e.tls = PQgetvalue(r, k, 5)[0] == 't';
		copy_col(r, k, 6, rows[i].e.tls_version, sizeof(rows[i].e.tls_version));
		copy_col(r, k, 7, rows[i].e.mech, sizeof(rows[i].e.mech));
		copy_col(r, k, 8, rows[i].e.login, sizeof(rows[i].e.login));
		copy_col(r, k, 9, rows[i].e.result, sizeof(rows[i].e.result));
		copy_col(r, k, 10, rows[i].e.reason, sizeof(rows[i].e.reason));
		rows[i].e.injected = PQgetvalue(r, k, 11)[0] == 't';
	}
	PQclear(r);
	*rows_r = rows;
	*n_r = n;
	return 0;
}
