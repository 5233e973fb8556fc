#include <event2/event.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int sg_cmd_version(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		puts("usage: smtpgate version\n\nPrints the smtpgate version and the versions of the libraries it runs on.");
		return 0;
	}
	printf("smtpgate %s\n", SG_VERSION);
	printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("  libevent %s\n", event_get_version());
	printf("  SQLite %s\n", sqlite3_libversion());
	return 0;
}
