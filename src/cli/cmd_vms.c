/* placeholder until the subcommand lands */
#include <stdio.h>
#include "cli/commands.h"

int cmd_vms(int argc, char **argv)
{
	fprintf(stderr, "kvmscope vms: not built yet\n");
	return 1;
}
