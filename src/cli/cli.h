/*
 * cli.h: the subcommands of the smtpgate binary. Each takes argc/argv with
 * argv[0] = the subcommand name, prints its own --help, and returns the
 * process exit status (0 ok, 1 failure, 2 usage).
 */
#ifndef SG_CLI_H
#define SG_CLI_H

int sg_cmd_version(int argc, char **argv);
int sg_cmd_probe(int argc, char **argv);
int sg_cmd_serve(int argc, char **argv);
int sg_cmd_user(int argc, char **argv);
int sg_cmd_fault(int argc, char **argv);
int sg_cmd_token(int argc, char **argv);
int sg_cmd_dkim(int argc, char **argv);
int sg_cmd_queue(int argc, char **argv);

#endif
