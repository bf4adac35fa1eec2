/* placeholder until the subcommand lands */
#include <stdio.h>
#include "cli/commands.h"

int cmd_stat(int argc, char **argv)
{
	fprintf(stderr, "kvmscope stat: not built yet\n");
	return 1;
}
