/* smtpgate dkim: make DKIM keys, print their DNS records, sign a message. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/buf.h"
#include "core/util.h"
#include "relay/dkim.h"

/* Largest message 'dkim sign' reads. */
#define SG_DKIM_CLI_MAX_MSG (64u * 1024 * 1024)

static const char dkim_help[] =
    "usage: smtpgate dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N]\n"
    "                            [--out FILE]\n"
    "       smtpgate dkim record DOMAIN SELECTOR KEYFILE\n"
    "       smtpgate dkim sign DOMAIN SELECTOR KEYFILE [MESSAGE|-]\n"
    "\n"
    "DKIM keys for relay mode (RFC 6376; Ed25519 keys: RFC 8463). The server\n"
    "signs relayed mail whose sender domain has a 'dkim_key = DOMAIN SELECTOR\n"
    "KEYFILE' line in its configuration; receivers check the signature with the\n"
    "public key published in DNS at SELECTOR._domainkey.DOMAIN.\n"
    "\n"
    "Commands:\n"
    "  keygen DOMAIN SELECTOR\n"
    "        Make a new private key, write it (PEM, PKCS#8, mode 0600; an\n"
    "        existing file is never overwritten) and print the DNS TXT record\n"
    "        on standard output, in zone-file form, the text cut into strings\n"
    "        of at most 255 octets (RFC 1035 3.3.14, RFC 6376 3.6.2.2).\n"
    "  record DOMAIN SELECTOR KEYFILE\n"
    "        Print the DNS TXT record of an existing private key.\n"
    "  sign DOMAIN SELECTOR KEYFILE [MESSAGE]\n"
    "        Sign MESSAGE (a file, or standard input when '-' or absent) as the\n"
    "        server would and print it with its DKIM-Signature field first:\n"
    "        a way to check a key and its record with any verifier.\n"
    "\n"
    "Options:\n"
    "  --type rsa|ed25519  key type (default rsa: every verifier knows it;\n"
    "                      ed25519 keys are short, but not every receiver checks\n"
    "                      them yet, so sign with both when you use one)\n"
    "  --bits N            RSA key size, 1024 to 4096 (default 2048)\n"
    "  --out FILE          where to write the key (default\n"
    "                      ./SELECTOR._domainkey.DOMAIN.pem)\n"
    "  -h, --help          show this text\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n"
    "\n"
    "Example:\n"
    "  smtpgate dkim keygen example.org mail2026 --out /etc/smtpgate/example.org.pem\n"
    "  # publish the printed record, then in smtpgate.conf:\n"
    "  #   dkim_key = example.org mail2026 /etc/smtpgate/example.org.pem\n";

static int usage_error(const char *fmt, const char *arg)
{
	fputs("smtpgate dkim: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'smtpgate dkim --help'.\n", stderr);
	return 2;
}

static int fail(const char *what, const char *err)
{
	fprintf(stderr, "smtpgate dkim: %s: %s\n", what, err != NULL ? err : "failed");
	return 1;
}

/* Print "NAME. IN TXT "..." "..."": the value cut into 255-octet strings. */
static void print_record(const char *domain, const char *selector, const char *txt)
{
	printf("%s._domainkey.%s. IN TXT", selector, domain);
	size_t n = strlen(txt);
	for (size_t i = 0; i < n; i += 255) {
		size_t k = n - i < 255 ? n - i : 255;
		printf(" \"%.*s\"", (int)k, txt + i);
	}
	putchar('\n');
}

static int record_of(const char *domain, const char *selector, const char *keyfile)
{
	struct sg_dkim_signer *s;
	const char *err = NULL;
	char *txt;
	if (sg_dkim_signer_load(&s, domain, selector, keyfile, &err) < 0)
		return fail("record", err);
	if (sg_dkim_dns_record(s, &txt, &err) < 0) {
		sg_dkim_signer_free(&s);
		return fail("record", err);
	}
	print_record(domain, selector, txt);
	free(txt);
	sg_dkim_signer_free(&s);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int keygen(const char *domain, const char *selector, const char *type, const char *bits_s,
                  const char *out)
{
	uint64_t bits = 2048;
	bool ed = false;
	if (type != NULL && strcmp(type, "ed25519") == 0)
		ed = true;
	else if (type != NULL && strcmp(type, "rsa") != 0)
		return usage_error("--type must be rsa or ed25519, not '%s'", type);
	if (bits_s != NULL) {
		if (ed)
			return usage_error("%s", "--bits applies to RSA keys only");
		if (sg_parse_u64(bits_s, 1024, 4096, &bits) < 0)
			return usage_error("--bits must be 1024 to 4096, not '%s'", bits_s);
	}
	char *def_out = NULL;
	if (out == NULL)
		out = def_out = sg_asprintf("%s._domainkey.%s.pem", selector, domain);

	ERR_clear_error();
	EVP_PKEY *key = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
	                   : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	if (key == NULL) {
		free(def_out);
		return fail("keygen", "key generation failed");
	}
	/* O_EXCL: never replace a key that may be published already. */
	int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		EVP_PKEY_free(key);
		fprintf(stderr, "smtpgate dkim: cannot create %s: %s%s\n", out, strerror(e),
		        e == EEXIST ? " (an existing key is never overwritten)" : "");
		free(def_out);
		return 1;
	}
	FILE *f = fdopen(fd, "w");
	bool ok = f != NULL && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1 &&
	          fflush(f) == 0 && fsync(fd) == 0;
	if (f != NULL)
		ok = fclose(f) == 0 && ok;
	else
		close(fd);
	EVP_PKEY_free(key);
	if (!ok) {
		unlink(out);
		fprintf(stderr, "smtpgate dkim: cannot write %s\n", out);
		free(def_out);
		return 1;
	}
	fprintf(stderr,
	        "smtpgate dkim: wrote the private key to %s (mode 0600); publish this "
	        "record:\n",
	        out);
	int r = record_of(domain, selector, out);
	if (r == 0)
		fprintf(stderr,
		        "smtpgate dkim: then add to the configuration:\n  dkim_key = %s %s %s\n",
		        domain, selector, out);
	free(def_out);
	return r;
}

static int sign(const char *domain, const char *selector, const char *keyfile, const char *path)
{
	struct sg_dkim_signer *s;
	const char *err = NULL;
	if (sg_dkim_signer_load(&s, domain, selector, keyfile, &err) < 0)
		return fail("sign", err);
	FILE *in = stdin;
	if (path != NULL && strcmp(path, "-") != 0) {
		in = fopen(path, "rb");
		if (in == NULL) {
			sg_dkim_signer_free(&s);
			fprintf(stderr, "smtpgate dkim: cannot open %s: %s\n", path,
			        strerror(errno));
			return 1;
		}
	}
	struct sg_buf msg;
	sg_buf_init(&msg, SG_DKIM_CLI_MAX_MSG);
	uint8_t chunk[65536];
	size_t n;
	bool too_big = false;
	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
		if (sg_buf_append(&msg, chunk, n) < 0) {
			too_big = true;
			break;
		}
	bool rerr = ferror(in) != 0;
	if (in != stdin)
		fclose(in);
	int r = 1;
	char *hdr = NULL;
	if (too_big)
		fprintf(stderr, "smtpgate dkim: message larger than %u octets\n",
		        SG_DKIM_CLI_MAX_MSG);
	else if (rerr)
		fprintf(stderr, "smtpgate dkim: cannot read the message\n");
	else if (sg_dkim_sign(s, msg.data, msg.len, &hdr, &err) < 0)
		fail("sign", err);
	else if (fwrite(hdr, 1, strlen(hdr), stdout) != strlen(hdr) ||
	         fwrite(msg.data, 1, msg.len, stdout) != msg.len || fflush(stdout) != 0)
		fprintf(stderr, "smtpgate dkim: cannot write the message\n");
	else
		r = 0;
	free(hdr);
	sg_buf_free(&msg);
	sg_dkim_signer_free(&s);
	return r;
}

int sg_cmd_dkim(int argc, char **argv)
{
	const char *pos[5] = {0};
	int npos = 0;
	const char *type = NULL, *bits = NULL, *out = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(dkim_help, stdout);
			return 0;
		}
		int r;
		if ((r = sg_cli_opt_value(argc, argv, &i, "--type", &type)) != 0 ||
		    (r = sg_cli_opt_value(argc, argv, &i, "--bits", &bits)) != 0 ||
		    (r = sg_cli_opt_value(argc, argv, &i, "--out", &out)) != 0) {
			if (r < 0)
				return usage_error("%s needs a value", argv[i]);
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0')
			return usage_error("unknown option '%s'", argv[i]);
		if (npos == 5)
			return usage_error("unexpected argument '%s'", argv[i]);
		pos[npos++] = argv[i];
	}
	if (npos == 0)
		return usage_error("%s", "missing command (keygen, record or sign)");
	const char *cmd = pos[0];
	bool is_keygen = strcmp(cmd, "keygen") == 0;
	if (!is_keygen && (type != NULL || bits != NULL || out != NULL))
		return usage_error("%s", "--type, --bits and --out apply to keygen only");
	if (is_keygen) {
		if (npos != 3)
			return usage_error("%s", "keygen needs DOMAIN and SELECTOR");
		if (!sg_dkim_valid_name(pos[1]))
			return usage_error("invalid DOMAIN '%s' (letters, digits, hyphens, dots; "
			                   "an IDN in its xn-- form)",
			                   pos[1]);
		if (!sg_dkim_valid_name(pos[2]))
			return usage_error("invalid SELECTOR '%s' (letters, digits, hyphens, dots)",
			                   pos[2]);
		return keygen(pos[1], pos[2], type, bits, out);
	}
	if (strcmp(cmd, "record") == 0) {
		if (npos != 4)
			return usage_error("%s", "record needs DOMAIN, SELECTOR and KEYFILE");
		return record_of(pos[1], pos[2], pos[3]);
	}
	if (strcmp(cmd, "sign") == 0) {
		if (npos < 4)
			return usage_error("%s", "sign needs DOMAIN, SELECTOR and KEYFILE");
		return sign(pos[1], pos[2], pos[3], npos == 5 ? pos[4] : NULL);
	}
	return usage_error("unknown command '%s'", cmd);
}
