/* Build and run (not part of the default build):
 *   tests/fuzz/build.sh build fuzz_discovery
 *   build/fuzz/fuzz_discovery -max_total_time=60 tests/fuzz/corpus/fuzz_discovery
 *
 * Feeds arbitrary bytes to every discovery parser, the way /proc hands them
 * over from other processes: the cmdline parsers get the exact bytes (no NUL
 * guaranteed, so ASan catches any read past len), the string parsers a
 * NUL-terminated copy. Output buffers are sized exactly so that an overflow
 * by one byte is caught too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discovery/discovery.h"

static size_t items;

static void count_item(void *ctx, enum discovery_arg kind, const char *value)
{
	/* touch every byte: a missing terminator shows up under ASan */
	items += strlen(value) + (size_t)kind;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *exact = malloc(size ? size : 1), *str = malloc(size + 1);
	char *name, *ifname;
	size_t nlen = size ? (data[0] % 40) + 1 : 1;

	if (!exact || !str)
		goto out;
	memcpy(exact, data, size);
	memcpy(str, data, size);
	str[size] = '\0';

	name = malloc(nlen);
	if (name) {
		if (!discovery__parse_name(exact, size, name, nlen) && strlen(name) >= nlen)
			abort();
		discovery__parse_name(exact, size, name, 0);
		free(name);
	}
	{
		char big[VM_NAME_MAX];

		if (!discovery__parse_name(exact, size, big, sizeof(big)) && !big[0])
			abort();	/* success promises a non-empty name */
	}
	discovery__parse_cmdline_devices(exact, size, count_item, NULL);

	ifname = malloc(16);
	if (ifname) {
		discovery__parse_fdinfo_iff(str, ifname, 16);
		free(ifname);
	}
	if (discovery__parse_vcpu_comm(str) < -1 || discovery__parse_vcpu_fd_link(str) < -1)
		abort();
	discovery__is_vm_fd_link(str);
	discovery__path_may_be_disk(str);
out:
	free(exact);
	free(str);
	return 0;
}
