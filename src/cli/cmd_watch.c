/* placeholder until the subcommand lands */
#include <stdio.h>
#include "cli/commands.h"

int cmd_watch(int argc, char **argv)
{
	fprintf(stderr, "kvmscope watch: not built yet\n");
	return 1;
}
