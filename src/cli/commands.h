/* One file per subcommand (kvmtool/perf style), dispatched from main.c's table. */
#ifndef KVMSCOPE_CLI_COMMANDS_H
#define KVMSCOPE_CLI_COMMANDS_H

#include <stdint.h>

/* Each returns the process exit status (0 ok, 1 runtime error, 2 usage). */
int cmd_vms(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_record(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* The terminal heatmap of watch, which report draws too. */
struct instr;
struct watch_view {
	int width, rows, has_ymax;
	double ymax;
	int color, tty;
};
int watch__draw_heatmap(struct instr *in, int64_t first, int64_t last, const struct watch_view *v,
			const char *title);

#endif
