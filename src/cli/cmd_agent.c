/* placeholder until the subcommand lands */
#include <stdio.h>
#include "cli/commands.h"

int cmd_agent(int argc, char **argv)
{
	fprintf(stderr, "kvmscope agent: not built yet\n");
	return 1;
}
