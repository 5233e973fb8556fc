/*
 * ntlm_msg.h: NTLM message parsing and building (MS-NLMP 2.2), pure and
 * bounds-checked. No crypto here (ntlm.h), no I/O.
 *
 * Contract for every parser: the input is untrusted. A message is refused
 * (-1) unless
 *   - it is at most SG_NTLM_MSG_MAX octets, starts "NTLMSSP\0" and carries
 *     the expected MessageType (MS-NLMP 2.2.1);
 *   - the fixed header is complete;
 *   - every security buffer (MS-NLMP 2.2.1: Len, MaxLen, BufferOffset)
 *     with Len > 0 lies inside the message: offset >= the end of the fixed
 *     header (no overlap with it), offset + Len <= message length (computed
 *     without overflow), Len <= the per-field cap. A buffer with Len == 0 is
 *     never read; its offset must still be <= the message length.
 *     MaxLen is read and ignored: MS-NLMP 2.2.1 says "MaxLen ... MUST be
 *     ignored on receipt", and only Len is ever used to read (the Exim
 *     CVE-2023-42115/42116 class came from trusting a length that was not
 *     the checked one);
 *   - strings are Unicode (UTF-16LE, even length) when NTLMSSP_NEGOTIATE_
 *     UNICODE is set in the message's flags, else OEM bytes.
 * On success the sg_ntlm_field pointers borrow from the input message.
 */
#ifndef SG_NTLM_MSG_H
#define SG_NTLM_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* MS-NLMP 2.2.2.5 NEGOTIATE flags. */
#define SG_NTLMSSP_NEGOTIATE_UNICODE 0x00000001u
#define SG_NTLMSSP_NEGOTIATE_OEM 0x00000002u
#define SG_NTLMSSP_REQUEST_TARGET 0x00000004u
#define SG_NTLMSSP_NEGOTIATE_SIGN 0x00000010u
#define SG_NTLMSSP_NEGOTIATE_SEAL 0x00000020u
#define SG_NTLMSSP_NEGOTIATE_LM_KEY 0x00000080u
#define SG_NTLMSSP_NEGOTIATE_NTLM 0x00000200u
#define SG_NTLMSSP_ANONYMOUS 0x00000800u
#define SG_NTLMSSP_NEGOTIATE_ALWAYS_SIGN 0x00008000u
#define SG_NTLMSSP_TARGET_TYPE_DOMAIN 0x00010000u
#define SG_NTLMSSP_TARGET_TYPE_SERVER 0x00020000u
#define SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY 0x00080000u
#define SG_NTLMSSP_NEGOTIATE_TARGET_INFO 0x00800000u
#define SG_NTLMSSP_NEGOTIATE_VERSION 0x02000000u
#define SG_NTLMSSP_NEGOTIATE_128 0x20000000u
#define SG_NTLMSSP_NEGOTIATE_KEY_EXCH 0x40000000u
#define SG_NTLMSSP_NEGOTIATE_56 0x80000000u

/* MS-NLMP 2.2.2.1 AV_PAIR ids. */
enum sg_ntlm_av_id {
	SG_MSV_AV_EOL = 0,
	SG_MSV_AV_NB_COMPUTER_NAME = 1,
	SG_MSV_AV_NB_DOMAIN_NAME = 2,
	SG_MSV_AV_DNS_COMPUTER_NAME = 3,
	SG_MSV_AV_DNS_DOMAIN_NAME = 4,
	SG_MSV_AV_DNS_TREE_NAME = 5,
	SG_MSV_AV_FLAGS = 6,
	SG_MSV_AV_TIMESTAMP = 7,
	SG_MSV_AV_SINGLE_HOST = 8,
	SG_MSV_AV_TARGET_NAME = 9,
	SG_MSV_AV_CHANNEL_BINDINGS = 10,
};
/* MsvAvFlags bit: the AUTHENTICATE message carries a MIC (MS-NLMP 2.2.2.1). */
#define SG_MSV_AV_FLAG_MIC 0x00000002u

enum sg_ntlm_type {
	SG_NTLM_NEGOTIATE = 1,
	SG_NTLM_CHALLENGE = 2,
	SG_NTLM_AUTHENTICATE = 3,
};

/* Caps. A whole message decoded from a 12,288-octet base64 line is at most
 * 9,216 octets; each field has its own, smaller cap. */
#define SG_NTLM_MSG_MAX 9216
#define SG_NTLM_NAME_MAX 512        /* user, domain, workstation, target name (octets) */
#define SG_NTLM_LM_RESP_MAX 24
#define SG_NTLM_NT_RESP_MAX 4096
#define SG_NTLM_TARGET_INFO_MAX 4096
#define SG_NTLM_SESSION_KEY_MAX 16

/* Fixed header sizes (MS-NLMP 2.2.1.1-3), without and with the VERSION field. */
#define SG_NTLM_NEGOTIATE_HDR 32
#define SG_NTLM_CHALLENGE_HDR 48
#define SG_NTLM_AUTHENTICATE_HDR 64
#define SG_NTLM_VERSION_LEN 8
#define SG_NTLM_MIC_OFFSET 72
#define SG_NTLM_MIC_LEN 16

struct sg_ntlm_field {
	const uint8_t *p; /* NULL when len == 0 */
	size_t len;
};

struct sg_ntlm_negotiate {
	uint32_t flags;
	struct sg_ntlm_field domain;      /* OEM */
	struct sg_ntlm_field workstation; /* OEM */
};

struct sg_ntlm_challenge {
	uint32_t flags;
	uint8_t server_challenge[8];
	struct sg_ntlm_field target_name;
	struct sg_ntlm_field target_info; /* AV pairs, checked by sg_ntlm_av_check */
};

struct sg_ntlm_authenticate {
	uint32_t flags;
	struct sg_ntlm_field lm;          /* LmChallengeResponse */
	struct sg_ntlm_field nt;          /* NtChallengeResponse */
	struct sg_ntlm_field domain;
	struct sg_ntlm_field user;
	struct sg_ntlm_field workstation;
	struct sg_ntlm_field session_key; /* EncryptedRandomSessionKey */
	size_t payload_min;               /* lowest offset of a non-empty buffer, or the length */
};

/* Parsers: 0, or -1 when the message breaks any rule above. */
int sg_ntlm_parse_negotiate(const uint8_t *m, size_t n, struct sg_ntlm_negotiate *out);
int sg_ntlm_parse_challenge(const uint8_t *m, size_t n, struct sg_ntlm_challenge *out);
int sg_ntlm_parse_authenticate(const uint8_t *m, size_t n, struct sg_ntlm_authenticate *out);

/* AV pairs (MS-NLMP 2.2.2.1). sg_ntlm_av_check: every pair lies inside the
 * buffer and the list ends with MsvAvEOL (0 / -1). sg_ntlm_av_find: 1 and the
 * value when present, 0 when absent, -1 when the list is malformed. */
int sg_ntlm_av_check(const uint8_t *p, size_t n);
int sg_ntlm_av_find(const uint8_t *p, size_t n, uint16_t id, struct sg_ntlm_field *value);
/* Append one pair; the caller appends SG_MSV_AV_EOL (empty value) last. */
int sg_ntlm_av_add(struct sg_buf *b, uint16_t id, const void *value, size_t len);
/* Append a pair whose value is a UTF-8 string sent as UTF-16LE. */
int sg_ntlm_av_add_str(struct sg_buf *b, uint16_t id, const char *utf8);

/* Builders: append the whole message to out; 0, or -1 when it does not fit.
 * sg_ntlm_build_negotiate writes a Version field when flags has
 * SG_NTLMSSP_NEGOTIATE_VERSION. */
int sg_ntlm_build_negotiate(uint32_t flags, struct sg_buf *out);
int sg_ntlm_build_challenge(uint32_t flags, const uint8_t server_challenge[8],
			    const struct sg_ntlm_field *target_name,
			    const struct sg_ntlm_field *target_info, struct sg_buf *out);
/* With with_mic, a Version (zeros) and a zeroed MIC field are written and
 * *mic_offset_r tells where the MIC is, for the caller to fill in. */
int sg_ntlm_build_authenticate(uint32_t flags, const struct sg_ntlm_field *lm,
			       const struct sg_ntlm_field *nt, const struct sg_ntlm_field *domain,
			       const struct sg_ntlm_field *user, const struct sg_ntlm_field *workstation,
			       bool with_mic, struct sg_buf *out, size_t *mic_offset_r);

/* Strings. */
/* UTF-16LE to UTF-8 into out (NUL-terminated). -1 for odd length, unpaired
 * surrogates, U+0000 or when it does not fit. */
int sg_ntlm_utf16_to_utf8(const uint8_t *p, size_t n, char *out, size_t outsize);
/* OEM bytes to UTF-8: kept as they are when valid UTF-8 without NUL,
 * otherwise read as Latin-1. -1 when it does not fit or holds a NUL. */
int sg_ntlm_oem_to_utf8(const uint8_t *p, size_t n, char *out, size_t outsize);
/* OEM bytes widened to UTF-16LE, one code unit per byte (Latin-1), as curl
 * and the other OEM clients do. out needs 2n octets. */
void sg_ntlm_oem_to_utf16(const uint8_t *p, size_t n, uint8_t *out);
/* Upper-case UTF-16LE in place: ASCII, Latin-1, Greek and Cyrillic letters
 * (the ranges account names use; MS-NLMP 3.3.2 "Uppercase(User)"). */
void sg_ntlm_upper_utf16(uint8_t *p, size_t n);

/* Little-endian helpers. */
static inline uint16_t sg_ntlm_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t sg_ntlm_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* Current time as a little-endian FILETIME (100 ns since 1601-01-01). */
void sg_ntlm_filetime_now(uint8_t out[8]);

#endif
