/* kvmscope: Cloud Analytics for Linux KVM hosts. Subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "vms",   cmd_vms,   "list the VMs on this host (any VMM), their vCPUs, disks and NICs" },
	{ "stat",  cmd_stat,  "kvmstat for Linux: per-vCPU exit, interrupt and emulation rates" },
	{ "watch", cmd_watch, "run one instrumentation locally and print it each second" },
	{ "agent", cmd_agent, "the daemon: CA-compatible REST API, heatmaps, web UI" },
	{ "record", cmd_record, "record every metric's records to a file, for report" },
	{ "report", cmd_report, "watch's tables and heatmaps over a recording" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmscope <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-7s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'kvmscope <command> --help' describes each command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "kvmscope: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
