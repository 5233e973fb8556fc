/*
 * mech_ntlm.c: NTLM over SMTP AUTH (MS-SMTPNTLM, MS-NLMP), server and client.
 *
 *   C: AUTH NTLM                    (or AUTH NTLM <NEGOTIATE>, as curl does)
 *   S: 334 ntlm supported           (MS-SMTPNTLM; literal text, not base64)
 *   C: base64(NEGOTIATE)
 *   S: 334 base64(CHALLENGE)
 *   C: base64(AUTHENTICATE)
 *   S: 235 2.7.0 ... | 535 5.7.3 Authentication unsuccessful (SG_MECH_F_FAIL_573)
 *
 * Driver contract (the one special case NTLM needs): when server_step is
 * called without an initial response (in == NULL, or "=" giving in != NULL
 * with inlen == 0), it returns SG_MECH_CONTINUE with out EMPTY. For the
 * mechanism named "NTLM" the SMTP driver sends that first empty challenge as
 * the literal line "334 ntlm supported" instead of "334 ". Every later
 * challenge is ordinary base64.
 *
 * Server verification (MS-NLMP 3.3):
 *   - NtChallengeResponse longer than 24 octets is NTLMv2: NTProofStr =
 *     HMAC-MD5(NTOWFv2, ServerChallenge || blob), tried with the domain as
 *     sent and with the empty domain (clients differ), compared with
 *     sg_ct_eq. When the blob's MsvAvFlags announce a MIC, the MIC is checked
 *     too (MS-NLMP 3.2.5.1.2), which stops a relay from stripping flags.
 *   - exactly 24 octets is NTLMv1 (with the NTLM2 session response when
 *     EXTENDED_SESSIONSECURITY is negotiated): refused ("ntlmv1_refused")
 *     unless cfg->ntlm_allow_v1. LM-only responses are refused ("lm_refused"):
 *     the store keeps no LM hash.
 *   - the login: the UserName as sent ("user", "DOMAIN\user" or
 *     "user@domain" as a full login) first, then the bare user part. An
 *     unknown login runs the same HMAC work against a random hash.
 * Reasons: unknown_account, no_verifier, disabled, wrong_password, bad_mic,
 * ntlmv1_refused, lm_refused, anonymous, store_error, malformed, protocol.
 *
 * Clients seen: curl (OEM strings, empty domain unless "DOMAIN\user") sends
 * NTLMv2 because the CHALLENGE echoes EXTENDED_SESSIONSECURITY and carries
 * target info; swaks (Authen::NTLM) and msmtp (GNU SASL / libntlm) send
 * NTLMv1 and need ntlm_allow_v1.
 *
 * Client (probe): NEGOTIATE as the initial response, then one NTLMv2
 * AUTHENTICATE (with a MIC when the CHALLENGE has MsvAvTimestamp) from
 * env->authcid ("DOMAIN\user" splits; otherwise the domain is empty) and the
 * NT hash of env->password. If the client driver hands over an empty
 * challenge (the server answered "334 ntlm supported" to a bare AUTH NTLM),
 * the NEGOTIATE is sent again.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/md4.h"
#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"
#include "sasl/ntlm.h"
#include "sasl/ntlm_msg.h"
#include "store/cred.h"

#define NTLM_DEFAULT_DOMAIN "SMTPGATE"
/* Blob (MS-NLMP 2.2.2.7): RespType, HiRespType, Reserved1 (2), Reserved2 (4),
 * TimeStamp (8), ChallengeFromClient (8), Reserved3 (4), then AV pairs. */
#define NTLMV2_BLOB_AV_OFFSET 28
#define NTLMV2_RESP_MIN (16 + NTLMV2_BLOB_AV_OFFSET + 4)

/* Flags the server can honour; anything else a client asks for is dropped. */
#define SERVER_ECHO_FLAGS                                                                  \
	(SG_NTLMSSP_NEGOTIATE_ALWAYS_SIGN | SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | \
	 SG_NTLMSSP_NEGOTIATE_128 | SG_NTLMSSP_NEGOTIATE_56)

enum ntlm_server_state { S_START, S_NEGOTIATE, S_AUTHENTICATE, S_DONE };

struct ntlm_server {
	const struct sg_sasl_server_env *env;
	enum ntlm_server_state state;
	uint32_t flags; /* sent in CHALLENGE */
	uint8_t server_challenge[8];
	struct sg_buf neg;  /* copies for the MIC */
	struct sg_buf chal;
};

static void *ntlm_server_start(const struct sg_sasl_server_env *env)
{
	struct ntlm_server *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	sg_buf_init(&st->neg, SG_NTLM_MSG_MAX);
	sg_buf_init(&st->chal, SG_NTLM_MSG_MAX);
	return st;
}

static const char *server_domain(const struct ntlm_server *st)
{
	const char *d = st->env->cfg != NULL ? st->env->cfg->ntlm_domain : NULL;
	return d != NULL && d[0] != '\0' ? d : NTLM_DEFAULT_DOMAIN;
}

/* NetBIOS computer name: the first label of the host name, upper case, at most
 * 15 characters. */
static void netbios_name(const char *host, char out[16])
{
	size_t i = 0;
	for (; host[i] != '\0' && host[i] != '.' && i < 15; i++) {
		char c = host[i];
		out[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
	}
	out[i] = '\0';
}

static enum sg_mech_status ntlm_challenge(struct ntlm_server *st, const uint8_t *in, size_t inlen,
					  struct sg_buf *out, struct sg_mech_result *res)
{
	struct sg_ntlm_negotiate neg;
	if (sg_ntlm_parse_negotiate(in, inlen, &neg) < 0) {
		st->state = S_DONE;
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	/* MS-NLMP 3.2.5.1.1: Unicode when the client offers it, else OEM. */
	uint32_t f = SG_NTLMSSP_REQUEST_TARGET | SG_NTLMSSP_NEGOTIATE_NTLM |
		     SG_NTLMSSP_TARGET_TYPE_DOMAIN | SG_NTLMSSP_NEGOTIATE_TARGET_INFO;
	if ((neg.flags & SG_NTLMSSP_NEGOTIATE_UNICODE) != 0 ||
	    (neg.flags & SG_NTLMSSP_NEGOTIATE_OEM) == 0)
		f |= SG_NTLMSSP_NEGOTIATE_UNICODE;
	else
		f |= SG_NTLMSSP_NEGOTIATE_OEM;
	f |= neg.flags & SERVER_ECHO_FLAGS;
	st->flags = f;
	sg_random(st->server_challenge, sizeof(st->server_challenge));

	const char *domain = server_domain(st);
	const char *host = st->env->hostname != NULL && st->env->hostname[0] != '\0'
				   ? st->env->hostname
				   : "localhost";
	char nb[16];
	netbios_name(host, nb);
	uint8_t tn[SG_NTLM_NAME_MAX];
	long tnlen;
	if ((f & SG_NTLMSSP_NEGOTIATE_UNICODE) != 0) {
		tnlen = sg_utf8_to_utf16le(domain, strlen(domain), tn, sizeof(tn));
	} else {
		tnlen = (long)strlen(domain);
		if ((size_t)tnlen > sizeof(tn))
			tnlen = -1;
		else
			memcpy(tn, domain, (size_t)tnlen);
	}
	struct sg_buf ti;
	sg_buf_init(&ti, SG_NTLM_TARGET_INFO_MAX);
	uint8_t ts[8];
	sg_ntlm_filetime_now(ts);
	int r = tnlen < 0 ? -1 : 0;
	if (r == 0)
		r = sg_ntlm_av_add_str(&ti, SG_MSV_AV_NB_DOMAIN_NAME, domain);
	if (r == 0)
		r = sg_ntlm_av_add_str(&ti, SG_MSV_AV_NB_COMPUTER_NAME, nb);
	if (r == 0)
		r = sg_ntlm_av_add_str(&ti, SG_MSV_AV_DNS_COMPUTER_NAME, host);
	if (r == 0)
		r = sg_ntlm_av_add(&ti, SG_MSV_AV_TIMESTAMP, ts, sizeof(ts));
	if (r == 0)
		r = sg_ntlm_av_add(&ti, SG_MSV_AV_EOL, NULL, 0);
	if (r == 0) {
		struct sg_ntlm_field tnf = {tn, (size_t)tnlen}, tif = {ti.data, ti.len};
		r = sg_ntlm_build_challenge(f, st->server_challenge, &tnf, &tif, &st->chal);
	}
	sg_buf_free(&ti);
	if (r == 0)
		r = sg_buf_append(&st->neg, in, inlen);
	if (r == 0)
		r = sg_buf_append(out, st->chal.data, st->chal.len);
	if (r < 0) {
		st->state = S_DONE;
		res->reason = "config"; /* domain or host name too long / not UTF-8 */
		return SG_MECH_TEMPFAIL;
	}
	st->state = S_AUTHENTICATE;
	return SG_MECH_CONTINUE;
}

/* A name field as UTF-16LE (for NTOWFv2) and UTF-8 (for the store). */
static int decode_name(const struct sg_ntlm_field *f, bool uni, uint8_t u16[2 * SG_NTLM_NAME_MAX],
		       size_t *u16_len, char *utf8, size_t utf8_size)
{
	if (uni) {
		if (f->len > 0)
			memcpy(u16, f->p, f->len);
		*u16_len = f->len;
		if (f->len == 0) {
			utf8[0] = '\0';
			return 0;
		}
		return sg_ntlm_utf16_to_utf8(f->p, f->len, utf8, utf8_size);
	}
	sg_ntlm_oem_to_utf16(f->p, f->len, u16);
	*u16_len = 2 * f->len;
	return sg_ntlm_oem_to_utf8(f->p, f->len, utf8, utf8_size);
}

/* Look the account up: the name as given, then the bare user part. */
static int lookup_account(struct ntlm_server *st, const char *user, const char *domain,
			  struct sg_account *acct, struct sg_verifier *v)
{
	char bare[SG_LOGIN_MAX + 1];
	bare[0] = '\0';
	const char *bs = strrchr(user, '\\');
	const char *at = strrchr(user, '@');
	if (bs != NULL)
		sg_strlcpy(bare, bs + 1, sizeof(bare));
	else if (at != NULL && (size_t)(at - user) < sizeof(bare))
		sg_strlcpy(bare, user, (size_t)(at - user) + 1);
	/* libntlm (msmtp) splits "user@example.test" into UserName "user" and
	 * DomainName "example.test": a domain with a dot makes an address. */
	char addr[SG_LOGIN_MAX + 1];
	addr[0] = '\0';
	if (bs == NULL && at == NULL && strchr(domain, '.') != NULL &&
	    snprintf(addr, sizeof(addr), "%s@%s", user, domain) >= (int)sizeof(addr))
		addr[0] = '\0';
	const char *cands[3] = {user, addr, bare};
	for (size_t i = 0; i < 3; i++) {
		if (cands[i][0] == '\0' || strlen(cands[i]) > SG_LOGIN_MAX ||
		    (i > 0 && strcmp(cands[i], user) == 0))
			continue;
		memset(acct, 0, sizeof(*acct));
		memset(v, 0, sizeof(*v));
		int r = sg_cred_lookup(st->env->creds, cands[i], SG_CRED_NT, acct, v);
		if (r != 0)
			return r;
	}
	return 0;
}

static enum sg_mech_status ntlm_verify(struct ntlm_server *st, const uint8_t *in, size_t inlen,
				       struct sg_mech_result *res)
{
	struct sg_ntlm_authenticate a;
	if (sg_ntlm_parse_authenticate(in, inlen, &a) < 0)
		goto malformed;
	bool uni = (a.flags & SG_NTLMSSP_NEGOTIATE_UNICODE) != 0;
	uint8_t user16[2 * SG_NTLM_NAME_MAX], dom16[2 * SG_NTLM_NAME_MAX];
	size_t user16_len, dom16_len;
	char user[2 * SG_NTLM_NAME_MAX + 1], dom[2 * SG_NTLM_NAME_MAX + 1];
	if (decode_name(&a.user, uni, user16, &user16_len, user, sizeof(user)) < 0 ||
	    decode_name(&a.domain, uni, dom16, &dom16_len, dom, sizeof(dom)) < 0)
		goto malformed;
	sg_strlcpy(res->login, user, sizeof(res->login));
	if (user[0] == '\0') {
		res->reason = "anonymous";
		return SG_MECH_FAIL;
	}

	bool v2 = a.nt.len > 24;
	bool mic = false;
	if (a.nt.len == 0) {
		res->reason = "lm_refused";
		return SG_MECH_FAIL;
	}
	if (v2) {
		if (a.nt.len < NTLMV2_RESP_MIN)
			goto malformed;
		const uint8_t *av = a.nt.p + 16 + NTLMV2_BLOB_AV_OFFSET;
		size_t avlen = a.nt.len - 16 - NTLMV2_BLOB_AV_OFFSET;
		struct sg_ntlm_field fl;
		int r = sg_ntlm_av_find(av, avlen, SG_MSV_AV_FLAGS, &fl);
		if (r < 0)
			goto malformed;
		if (r == 1 && fl.len == 4 && (sg_ntlm_get32(fl.p) & SG_MSV_AV_FLAG_MIC) != 0) {
			/* The MIC sits at 72..88: no payload may overlap it. */
			if (inlen < SG_NTLM_MIC_OFFSET + SG_NTLM_MIC_LEN ||
			    a.payload_min < SG_NTLM_MIC_OFFSET + SG_NTLM_MIC_LEN)
				goto malformed;
			mic = true;
		}
	} else if (a.nt.len != 24) {
		goto malformed;
	} else {
		if (st->env->cfg == NULL || !st->env->cfg->ntlm_allow_v1) {
			res->reason = "ntlmv1_refused";
			return SG_MECH_FAIL;
		}
		if (!sg_ntlm_des_available()) {
			res->reason = "des_unavailable";
			return SG_MECH_TEMPFAIL;
		}
	}
	bool ess = !v2 && (a.flags & SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY) != 0 &&
		   (st->flags & SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY) != 0;
	if (ess && a.lm.len != 24)
		goto malformed;

	struct sg_account acct;
	struct sg_verifier v;
	int found = strlen(user) > SG_LOGIN_MAX ? 0 : lookup_account(st, user, dom, &acct, &v);
	if (found < 0) {
		sg_wipe(&v, sizeof(v));
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	bool usable = found == 1 && v.kind == SG_CRED_NT;
	uint8_t hash[16];
	if (usable)
		memcpy(hash, v.u.nt, sizeof(hash));
	else
		sg_random(hash, sizeof(hash));
	sg_wipe(&v, sizeof(v));

	bool match = false, mic_ok = true;
	int err = 0;
	if (v2) {
		/* MS-NLMP 3.3.2 with UserDom as sent, then empty; both always
		 * computed so the work does not depend on which matches. */
		uint8_t key[16], proof[16], good_key[16];
		const uint8_t *blob = a.nt.p + 16;
		size_t blob_len = a.nt.len - 16;
		for (int i = 0; i < 2 && err == 0; i++) {
			err = sg_ntlm_ntowfv2(hash, user16, user16_len, dom16, i == 0 ? dom16_len : 0, key);
			if (err == 0)
				err = sg_ntlm_v2_proof(key, st->server_challenge, blob, blob_len, proof);
			if (err == 0 && sg_ct_eq(proof, a.nt.p, 16) && !match) {
				match = true;
				memcpy(good_key, key, sizeof(key));
			}
		}
		if (err == 0 && match && mic) {
			/* MS-NLMP 3.4.5.1: for NTLMv2, KeyExchangeKey = SessionBaseKey;
			 * with KEY_EXCH the client sent RC4(KeyExchangeKey, key). */
			uint8_t sk[16], calc[16];
			err = sg_ntlm_v2_session_key(good_key, a.nt.p, sk);
			if (err == 0 && (a.flags & SG_NTLMSSP_NEGOTIATE_KEY_EXCH) != 0 &&
			    a.session_key.len == 16)
				sg_ntlm_rc4(sk, sizeof(sk), a.session_key.p, 16, sk);
			if (err == 0)
				err = sg_ntlm_mic(sk, st->neg.data, st->neg.len, st->chal.data,
						  st->chal.len, in, inlen, SG_NTLM_MIC_OFFSET, calc);
			if (err == 0)
				mic_ok = sg_ct_eq(calc, in + SG_NTLM_MIC_OFFSET, SG_NTLM_MIC_LEN);
			sg_wipe(sk, sizeof(sk));
			sg_wipe(calc, sizeof(calc));
		}
		sg_wipe(key, sizeof(key));
		sg_wipe(proof, sizeof(proof));
		sg_wipe(good_key, sizeof(good_key));
	} else {
		/* MS-NLMP 3.3.1: DESL(NT hash, challenge); with extended session
		 * security the challenge is MD5(ServerChallenge || ClientChallenge)[0..7]
		 * and ClientChallenge is the first 8 octets of LmChallengeResponse. */
		uint8_t ch[8], expect[24];
		memcpy(ch, st->server_challenge, sizeof(ch));
		if (ess)
			err = sg_ntlm_ess_challenge(st->server_challenge, a.lm.p, ch);
		if (err == 0)
			err = sg_ntlm_v1_response(hash, ch, expect);
		if (err == 0)
			match = sg_ct_eq(expect, a.nt.p, sizeof(expect));
		sg_wipe(expect, sizeof(expect));
	}
	sg_wipe(hash, sizeof(hash));
	if (err != 0) {
		res->reason = "crypto_error";
		return SG_MECH_TEMPFAIL;
	}
	if (found == 0) {
		res->reason = "unknown_account";
		return SG_MECH_FAIL;
	}
	if (!usable) {
		res->reason = "no_verifier";
		return SG_MECH_FAIL;
	}
	if (acct.disabled) {
		res->reason = "disabled";
		return SG_MECH_FAIL;
	}
	if (!match) {
		res->reason = "wrong_password";
		return SG_MECH_FAIL;
	}
	if (!mic_ok) {
		res->reason = "bad_mic";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, acct.login, sizeof(res->login));
	return SG_MECH_OK;

malformed:
	res->reason = "malformed";
	return SG_MECH_MALFORMED;
}

static enum sg_mech_status ntlm_server_step(void *vst, const uint8_t *in, size_t inlen,
					    struct sg_buf *out, struct sg_mech_result *res)
{
	struct ntlm_server *st = vst;
	switch (st->state) {
	case S_START:
		if (in == NULL || inlen == 0) {
			/* MS-SMTPNTLM: "334 ntlm supported", sent by the
			 * driver for this empty first challenge. */
			st->state = S_NEGOTIATE;
			return SG_MECH_CONTINUE;
		}
		return ntlm_challenge(st, in, inlen, out, res);
	case S_NEGOTIATE:
		if (in == NULL || inlen == 0)
			break;
		return ntlm_challenge(st, in, inlen, out, res);
	case S_AUTHENTICATE:
		st->state = S_DONE;
		if (in == NULL || inlen == 0)
			break;
		return ntlm_verify(st, in, inlen, res);
	case S_DONE:
		break;
	}
	st->state = S_DONE;
	res->reason = "protocol";
	return SG_MECH_MALFORMED;
}

static void ntlm_server_free(void *vst)
{
	struct ntlm_server *st = vst;
	if (st == NULL)
		return;
	sg_buf_free(&st->neg);
	sg_buf_free(&st->chal);
	sg_wipe(st, sizeof(*st));
	free(st);
}

/* ---- client ---- */

#define CLIENT_NEGOTIATE_FLAGS                                                        \
	(SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_OEM |                     \
	 SG_NTLMSSP_REQUEST_TARGET | SG_NTLMSSP_NEGOTIATE_NTLM |                       \
	 SG_NTLMSSP_NEGOTIATE_ALWAYS_SIGN | SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | \
	 SG_NTLMSSP_NEGOTIATE_VERSION)

struct ntlm_client {
	int state; /* 0: send NEGOTIATE, 1: wait CHALLENGE, 2: done */
	uint8_t nt_hash[16];
	char user[SG_NTLM_NAME_MAX];
	char domain[SG_NTLM_NAME_MAX];
	struct sg_buf neg;
};

static void *ntlm_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	if (env->authcid == NULL || env->authcid[0] == '\0' || env->password == NULL) {
		*error_r = "NTLM needs a login and a password";
		return NULL;
	}
	struct ntlm_client *st = sg_calloc(1, sizeof(*st));
	sg_buf_init(&st->neg, SG_NTLM_MSG_MAX);
	const char *bs = strchr(env->authcid, '\\');
	bool ok;
	if (bs != NULL) {
		size_t dl = (size_t)(bs - env->authcid);
		ok = dl < sizeof(st->domain) && sg_strlcpy(st->user, bs + 1, sizeof(st->user));
		if (ok)
			sg_strlcpy(st->domain, env->authcid, dl + 1);
	} else {
		ok = sg_strlcpy(st->user, env->authcid, sizeof(st->user));
	}
	if (!ok || st->user[0] == '\0') {
		*error_r = "NTLM: login too long or empty";
		goto fail;
	}
	if (sg_nt_hash(env->password, st->nt_hash) < 0) {
		*error_r = "NTLM: password is not valid UTF-8";
		goto fail;
	}
	return st;
fail:
	sg_buf_free(&st->neg);
	sg_wipe(st, sizeof(*st));
	free(st);
	return NULL;
}

/* A name as sent (Unicode or OEM) and as NTOWFv2 sees it (UTF-16LE). */
static int encode_name(const char *s, bool uni, uint8_t *wire, size_t *wire_len, uint8_t *u16,
		       size_t *u16_len)
{
	size_t n = strlen(s);
	if (uni) {
		long l = sg_utf8_to_utf16le(s, n, wire, SG_NTLM_NAME_MAX);
		if (l < 0)
			return -1;
		*wire_len = (size_t)l;
		memcpy(u16, wire, (size_t)l);
		*u16_len = (size_t)l;
		return 0;
	}
	if (n > SG_NTLM_NAME_MAX)
		return -1;
	memcpy(wire, s, n);
	*wire_len = n;
	sg_ntlm_oem_to_utf16(wire, n, u16);
	*u16_len = 2 * n;
	return 0;
}

static enum sg_mech_status ntlm_authenticate(struct ntlm_client *st, const uint8_t *in,
					     size_t inlen, struct sg_buf *out, const char **error_r)
{
	struct sg_ntlm_challenge ch;
	if (sg_ntlm_parse_challenge(in, inlen, &ch) < 0) {
		*error_r = "NTLM: malformed CHALLENGE";
		return SG_MECH_MALFORMED;
	}
	bool uni = (ch.flags & SG_NTLMSSP_NEGOTIATE_UNICODE) != 0;
	uint8_t user_w[SG_NTLM_NAME_MAX], dom_w[SG_NTLM_NAME_MAX];
	uint8_t user16[2 * SG_NTLM_NAME_MAX], dom16[2 * SG_NTLM_NAME_MAX];
	size_t user_wl, dom_wl, user16_len, dom16_len;
	if (encode_name(st->user, uni, user_w, &user_wl, user16, &user16_len) < 0 ||
	    encode_name(st->domain, uni, dom_w, &dom_wl, dom16, &dom16_len) < 0) {
		*error_r = "NTLM: login not valid UTF-8 or too long";
		return SG_MECH_FAIL;
	}

	/* Blob (MS-NLMP 3.3.2): the server's AV pairs, plus MsvAvFlags = MIC
	 * when the server sent a timestamp (MS-NLMP 3.1.5.1.2). */
	struct sg_ntlm_field ts = {NULL, 0};
	int have_ts = ch.target_info.len > 0
			      ? sg_ntlm_av_find(ch.target_info.p, ch.target_info.len,
						SG_MSV_AV_TIMESTAMP, &ts)
			      : 0;
	bool mic = have_ts == 1 && ts.len == 8;
	uint8_t cc[8], now[8];
	sg_random(cc, sizeof(cc));
	sg_ntlm_filetime_now(now);
	static const uint8_t zero[16];
	struct sg_buf resp;
	sg_buf_init_secret(&resp, SG_NTLM_NT_RESP_MAX);
	int r = sg_buf_append(&resp, zero, 16); /* NTProofStr, filled below */
	uint8_t head[2] = {1, 1};
	if (r == 0)
		r = sg_buf_append(&resp, head, 2);
	if (r == 0)
		r = sg_buf_append(&resp, zero, 6);
	if (r == 0)
		r = sg_buf_append(&resp, mic ? ts.p : now, 8);
	if (r == 0)
		r = sg_buf_append(&resp, cc, 8);
	if (r == 0)
		r = sg_buf_append(&resp, zero, 4);
	/* Copy the pairs up to MsvAvEOL (sg_ntlm_parse_challenge checked them). */
	size_t off = 0;
	while (r == 0 && ch.target_info.len - off >= 4) {
		uint16_t id = sg_ntlm_get16(ch.target_info.p + off);
		size_t l = sg_ntlm_get16(ch.target_info.p + off + 2);
		if (id == SG_MSV_AV_EOL)
			break;
		if (id != SG_MSV_AV_FLAGS)
			r = sg_buf_append(&resp, ch.target_info.p + off, 4 + l);
		off += 4 + l;
	}
	if (r == 0 && mic) {
		uint8_t fl[4] = {SG_MSV_AV_FLAG_MIC, 0, 0, 0};
		r = sg_ntlm_av_add(&resp, SG_MSV_AV_FLAGS, fl, sizeof(fl));
	}
	if (r == 0)
		r = sg_ntlm_av_add(&resp, SG_MSV_AV_EOL, NULL, 0);
	if (r == 0)
		r = sg_buf_append(&resp, zero, 4);

	uint8_t key[16], lm[24], sk[16];
	memset(lm, 0, sizeof(lm));
	if (r == 0)
		r = sg_ntlm_ntowfv2(st->nt_hash, user16, user16_len, dom16, dom16_len, key);
	if (r == 0)
		r = sg_ntlm_v2_proof(key, ch.server_challenge, resp.data + 16, resp.len - 16, resp.data);
	if (r == 0 && !mic) {
		/* LMv2 = HMAC-MD5(NTOWFv2, ServerChallenge || cc) || cc; with a
		 * timestamp MS-NLMP 3.1.5.1.2 sends Z(24) instead. */
		r = sg_ntlm_v2_proof(key, ch.server_challenge, cc, sizeof(cc), lm);
		memcpy(lm + 16, cc, sizeof(cc));
	}
	if (r == 0)
		r = sg_ntlm_v2_session_key(key, resp.data, sk);
	uint32_t flags = (ch.flags & (SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_OEM |
				      SG_NTLMSSP_REQUEST_TARGET | SG_NTLMSSP_NEGOTIATE_NTLM |
				      SG_NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
				      SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY |
				      SG_NTLMSSP_NEGOTIATE_TARGET_INFO | SG_NTLMSSP_NEGOTIATE_128 |
				      SG_NTLMSSP_NEGOTIATE_56));
	size_t start = out->len, mic_off = 0;
	if (r == 0) {
		struct sg_ntlm_field lmf = {lm, sizeof(lm)}, ntf = {resp.data, resp.len};
		struct sg_ntlm_field df = {dom_w, dom_wl}, uf = {user_w, user_wl}, wf = {NULL, 0};
		r = sg_ntlm_build_authenticate(flags, &lmf, &ntf, &df, &uf, &wf, mic, out, &mic_off);
	}
	if (r == 0 && mic) {
		uint8_t m[16];
		r = sg_ntlm_mic(sk, st->neg.data, st->neg.len, in, inlen, out->data + start,
				out->len - start, mic_off - start, m);
		if (r == 0)
			memcpy(out->data + mic_off, m, sizeof(m));
	}
	sg_wipe(key, sizeof(key));
	sg_wipe(sk, sizeof(sk));
	sg_wipe(lm, sizeof(lm));
	sg_buf_free(&resp);
	if (r < 0) {
		*error_r = "NTLM: cannot build AUTHENTICATE";
		return SG_MECH_FAIL;
	}
	return SG_MECH_OK;
}

static enum sg_mech_status ntlm_client_step(void *vst, const uint8_t *in, size_t inlen,
					    struct sg_buf *out, const char **error_r)
{
	struct ntlm_client *st = vst;
	if (st->state == 0 || (st->state == 1 && (in == NULL || inlen == 0))) {
		/* The NEGOTIATE; sent again if the server ignored it and
		 * answered "334 ntlm supported". */
		if (st->state == 0 && sg_ntlm_build_negotiate(CLIENT_NEGOTIATE_FLAGS, &st->neg) < 0) {
			*error_r = "NTLM: cannot build NEGOTIATE";
			return SG_MECH_FAIL;
		}
		if (sg_buf_append(out, st->neg.data, st->neg.len) < 0) {
			*error_r = "NTLM: cannot build NEGOTIATE";
			return SG_MECH_FAIL;
		}
		st->state = 1;
		return SG_MECH_CONTINUE;
	}
	if (st->state != 1) {
		*error_r = "NTLM: unexpected challenge after AUTHENTICATE";
		return SG_MECH_FAIL;
	}
	st->state = 2;
	return ntlm_authenticate(st, in, inlen, out, error_r);
}

static void ntlm_client_free(void *vst)
{
	struct ntlm_client *st = vst;
	if (st == NULL)
		return;
	sg_buf_free(&st->neg);
	sg_wipe(st, sizeof(*st));
	free(st);
}

const struct sg_mech sg_mech_ntlm = {
	.name = "NTLM",
	.flags = SG_MECH_F_FAIL_573,
	.strength = 35,
	.cred = SG_CRED_NT,
	.empty_challenge_text = "ntlm supported",
	.server_start = ntlm_server_start,
	.server_step = ntlm_server_step,
	.server_free = ntlm_server_free,
	.client_start = ntlm_client_start,
	.client_step = ntlm_client_step,
	.client_free = ntlm_client_free,
};
