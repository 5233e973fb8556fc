/*
 * fuzz_mech_gssapi: the server side of GSSAPI (RFC 4752), in particular the
 * wrapped security-layer message (RFC 4752 section 3.1: the client's
 * wrap({layer, max buffer[3], authzid})) that mech_gssapi.c parses after
 * gss_unwrap. That message is only reachable on an established Kerberos
 * context, so this target needs a KDC: run it under
 *   python3 tests/integration/krb5_realm.py --run build-fuzz/tests/fuzz/fuzz_mech_gssapi ...
 * (tests/fuzz/run does), which exports SG_TEST_KRB5_KEYTAB / _REALM and a
 * ccache with alice's TGT. Without it the target exits with a note.
 *
 * Per input a fresh context is established (initiator: GSSAPI directly with
 * alice's credentials for smtp@localhost; acceptor: sg_mech_gssapi), then:
 *   data[0] bit 0 = 0: the rest is the layer message PLAINTEXT; we gss_wrap
 *                      it (integrity only) and feed it, so the fuzzer reaches
 *                      the parsing after unwrap (layer, size, authzid);
 *   data[0] bit 0 = 1: the rest is fed as is (garbage for gss_unwrap);
 *   data[0] bit 1 = 1: no context: the rest is the first accept token.
 * data[0] bit 2 sets gss_realm (principal realm check).
 */
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "sasl/mechs.h"

static const char *fz_keytab, *fz_realm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	sg_fuzz_init();
	fz_keytab = getenv("SG_TEST_KRB5_KEYTAB");
	fz_realm = getenv("SG_TEST_KRB5_REALM");
	if (fz_keytab == NULL || fz_realm == NULL) {
		fprintf(stderr, "fuzz_mech_gssapi: needs a KDC; run it under "
				"tests/integration/krb5_realm.py --run\n");
		exit(77);
	}
	return 0;
}

struct init_ctx {
	gss_ctx_id_t ctx;
	gss_name_t target;
};

static int init_step(struct init_ctx *ic, const struct sg_buf *in, struct sg_buf *tok)
{
	OM_uint32 minor, major;
	gss_buffer_desc itok = {in != NULL ? in->len : 0, in != NULL ? in->data : NULL};
	gss_buffer_desc otok = GSS_C_EMPTY_BUFFER;
	major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &ic->ctx, ic->target,
				     (gss_OID)gss_mech_krb5,
				     GSS_C_MUTUAL_FLAG | GSS_C_INTEG_FLAG | GSS_C_SEQUENCE_FLAG, 0,
				     GSS_C_NO_CHANNEL_BINDINGS, in != NULL ? &itok : GSS_C_NO_BUFFER,
				     NULL, &otok, NULL, NULL);
	if (GSS_ERROR(major))
		sg_fuzz_fail("gssapi: init_sec_context failed 0x%x/%u (KDC, ccache?)",
			     (unsigned)major, (unsigned)minor);
	sg_buf_reset(tok);
	if (otok.length > 0 && sg_buf_append(tok, otok.value, otok.length) < 0)
		sg_fuzz_fail("gssapi: token too long");
	gss_release_buffer(&minor, &otok);
	return (major & GSS_S_CONTINUE_NEEDED) != 0 ? 1 : 0;
}

static enum sg_mech_status step(const struct sg_mech *m, void *st, const uint8_t *in, size_t n,
				struct sg_buf *out, struct sg_mech_result *res)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	if (n > 0)
		memcpy(copy, in, n);
	sg_buf_reset(out);
	enum sg_mech_status s = m->server_step(st, copy, n, out, res);
	free(copy);
	if (s < SG_MECH_CONTINUE || s > SG_MECH_MALFORMED)
		sg_fuzz_fail("gssapi: status %d", s);
	if (memchr(res->login, '\0', sizeof(res->login)) == NULL)
		sg_fuzz_fail("gssapi: login not terminated");
	if (s == SG_MECH_OK && strcmp(res->login, SG_FUZZ_LOGIN) != 0)
		sg_fuzz_fail("gssapi: OK for \"%s\"", res->login);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct sg_mech *m = &sg_mech_gssapi;
	struct sg_sasl_config cfg = *sg_fuzz_cfg();
	cfg.gss_keytab = fz_keytab;
	cfg.gss_service = "smtp";
	cfg.gss_realm = (data[0] & 4) != 0 ? fz_realm : NULL;
	struct sg_sasl_server_env env = sg_fuzz_env();
	env.cfg = &cfg;
	env.hostname = "localhost";
	struct sg_mech_result res;
	memset(&res, 0, sizeof(res));
	struct sg_buf out, tok;
	sg_buf_init(&out, SG_FUZZ_OUT_MAX);
	sg_buf_init(&tok, SG_FUZZ_OUT_MAX);
	void *st = m->server_start(&env);
	if (st == NULL)
		sg_fuzz_fail("gssapi: server_start");

	if ((data[0] & 2) != 0) {
		(void)step(m, st, data + 1, size - 1, &out, &res);
		goto done;
	}

	OM_uint32 minor;
	struct init_ctx ic = {GSS_C_NO_CONTEXT, GSS_C_NO_NAME};
	gss_buffer_desc nb = {strlen("smtp@localhost"), (void *)"smtp@localhost"};
	if (GSS_ERROR(gss_import_name(&minor, &nb, GSS_C_NT_HOSTBASED_SERVICE, &ic.target)))
		sg_fuzz_fail("gssapi: import_name");
	int more = init_step(&ic, NULL, &tok);
	enum sg_mech_status s = step(m, st, tok.data, tok.len, &out, &res);
	/* context tokens until the server sends the wrapped offer (4 octets
	 * once unwrapped) */
	for (int round = 0; round < 5 && s == SG_MECH_CONTINUE; round++) {
		if (more) {
			more = init_step(&ic, &out, &tok);
			s = step(m, st, tok.data, tok.len, &out, &res);
			continue;
		}
		/* context complete on our side: out is either the last token's
		 * answer (empty reply expected) or the wrapped offer */
		gss_buffer_desc w = {out.len, out.data}, u = GSS_C_EMPTY_BUFFER;
		if (out.len == 0 || GSS_ERROR(gss_unwrap(&minor, ic.ctx, &w, &u, NULL, NULL))) {
			s = step(m, st, (const uint8_t *)"", 0, &out, &res);
			continue;
		}
		if (u.length != 4 || ((uint8_t *)u.value)[0] != 0x01)
			sg_fuzz_fail("gssapi: offer of %zu octets", (size_t)u.length);
		gss_release_buffer(&minor, &u);
		/* the layer message */
		if ((data[0] & 1) != 0) {
			s = step(m, st, data + 1, size - 1, &out, &res);
		} else {
			gss_buffer_desc p = {size - 1, (void *)(data + 1)}, wr = GSS_C_EMPTY_BUFFER;
			if (GSS_ERROR(gss_wrap(&minor, ic.ctx, 0, GSS_C_QOP_DEFAULT, &p, NULL, &wr)))
				sg_fuzz_fail("gssapi: wrap");
			s = step(m, st, wr.value, wr.length, &out, &res);
			gss_release_buffer(&minor, &wr);
		}
		break;
	}
	gss_delete_sec_context(&minor, &ic.ctx, GSS_C_NO_BUFFER);
	gss_release_name(&minor, &ic.target);
done:
	m->server_free(st);
	sg_buf_free(&out);
	sg_buf_free(&tok);
	return 0;
}
