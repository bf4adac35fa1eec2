/* One file per subcommand (kvmtool/perf style), dispatched from main.c's table. */
#ifndef KVMSCOPE_CLI_COMMANDS_H
#define KVMSCOPE_CLI_COMMANDS_H

#include <stdint.h>
#include <jansson.h>

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
/* watch's view options (-w/--width, --rows, --ymax), which report takes
 * too: their getopt values, and their parser. Returns 1 when opt was one of
 * them (v set), 0 when not, -1 after printing why arg is wrong (exit 2). */
enum { WATCH_OPT_ROWS = 256, WATCH_OPT_YMAX, WATCH_OPT_NEXT };
int watch__view_option(int opt, const char *arg, struct watch_view *v, const char *cmd);
/* The instrumentation spec of metric with -d and -P as watch and report
 * take them (predicate: CA predicate JSON text; either may be NULL). On
 * success the caller owns the returned spec; NULL after printing why to
 * stderr, prefixed with cmd. */

json_t *watch__spec(const char *cmd, const char *metric, const char *decomposition,
		    const char *predicate);
int watch__draw_heatmap(struct instr *in, int64_t first, int64_t last, const struct watch_view *v,
			const char *title);

#endif
