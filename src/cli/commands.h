/* One file per subcommand (kvmtool/perf style), dispatched from main.c's table. */
#ifndef KVMSCOPE_CLI_COMMANDS_H
#define KVMSCOPE_CLI_COMMANDS_H

/* Each returns the process exit status (0 ok, 1 runtime error, 2 usage). */
int cmd_vms(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_agent(int argc, char **argv);

#endif
