/* Discovery: disks named on a QEMU command line with -daemonize, where a
 * relative path no longer resolves (QEMU changed to /) and the disk is known
 * from its open fd instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "discovery/discovery.h"

#define CMD(lit) lit, sizeof(lit)

struct disks {
	char path[4][256];
	int n;
};

static void collect(void *ctx, enum discovery_arg kind, const char *value)
{
	struct disks *d = ctx;

	if (kind == DISCOVERY_ARG_DISK && d->n < 4)
		snprintf(d->path[d->n++], sizeof(d->path[0]), "%s", value);
}

static void test_daemonized_relative_paths_left_to_the_fd_scan(void **state)
{
	struct disks d = { 0 };

	(void)state;
	discovery__parse_cmdline_devices(CMD(
		"qemu-system-x86_64\0-daemonize\0-drive\0file=disk.img,format=raw\0"
		"-drive\0file=/abs/b.img\0-hda\0./c.img\0"), collect, &d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.path[0], "/abs/b.img");
}

static void test_two_dash_daemonize_too(void **state)
{
	struct disks d = { 0 };

	(void)state;
	discovery__parse_cmdline_devices(CMD(
		"qemu\0-drive\0file=rel.img\0--daemonize\0"), collect, &d);
	assert_int_equal(d.n, 0);
}

static void test_without_daemonize_relative_paths_stay(void **state)
{
	struct disks d = { 0 };

	(void)state;
	/* "-daemonized" or a value spelled like the option is not the option */
	discovery__parse_cmdline_devices(CMD(
		"qemu\0-drive\0file=disk.img\0-name\0-daemonize-not\0"), collect, &d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.path[0], "disk.img");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_daemonized_relative_paths_left_to_the_fd_scan),
		cmocka_unit_test(test_two_dash_daemonize_too),
		cmocka_unit_test(test_without_daemonize_relative_paths_stay),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
