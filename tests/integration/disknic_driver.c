/* Drives the disk and NIC collectors the way the agent does (start, drain
 * every second, stop) and prints every record as one JSON line:
 *   {"metric":"vm.disk_ops","time":T,"value":V,"vm":..,"disk":..,"optype":..,
 *    "errno":..,"latency":..,"size":..,"offset":..,"subsecond":..}
 *   {"metric":"vm.nic_packets","time":T,"value":V,"vm":..,"nic":..,"direction":..}
 * then {"drops":N,"source_disk":..,"source_nic":..}. Writes "ready" to stderr
 * once both collectors are attached.
 * Usage: disknic_driver SECONDS
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "collectors/collector.h"

static const char *const metric_names[METRIC__COUNT] = {
	[METRIC_VM_DISK_OPS] = "vm.disk_ops",
	[METRIC_VM_DISK_BYTES] = "vm.disk_bytes",
	[METRIC_VM_NIC_BYTES] = "vm.nic_bytes",
	[METRIC_VM_NIC_PACKETS] = "vm.nic_packets",
};

static void put_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

static int print_record(const struct record *r, void *ctx)
{
	json_t *o = json_object();
	char *s;

	(void)ctx;
	json_object_set_new(o, "metric", json_string(metric_names[r->metric] ? metric_names[r->metric] : "?"));
	json_object_set_new(o, "time", json_integer(r->time));
	json_object_set_new(o, "value", json_integer((json_int_t)r->value));
	put_str(o, "hostname", r->str[F_HOSTNAME]);
	put_str(o, "vm", r->str[F_VM]);
	if (r->metric == METRIC_VM_DISK_OPS || r->metric == METRIC_VM_DISK_BYTES) {
		put_str(o, "disk", r->str[F_DISK_DISK]);
		put_str(o, "optype", r->str[F_DISK_OPTYPE]);
	}
	if (r->metric == METRIC_VM_DISK_OPS) {
		put_str(o, "errno", r->str[F_DISK_ERRNO]);
		json_object_set_new(o, "latency", json_integer((json_int_t)r->num[F_DISK_LATENCY]));
		json_object_set_new(o, "size", json_integer((json_int_t)r->num[F_DISK_SIZE]));
		json_object_set_new(o, "offset", json_integer((json_int_t)r->num[F_DISK_OFFSET]));
		json_object_set_new(o, "subsecond", json_integer((json_int_t)r->num[F_DISK_SUBSECOND]));
	}
	if (r->metric == METRIC_VM_NIC_BYTES || r->metric == METRIC_VM_NIC_PACKETS) {
		put_str(o, "nic", r->str[F_NIC_NIC]);
		put_str(o, "direction", r->str[F_NIC_DIRECTION]);
	}
	s = json_dumps(o, JSON_COMPACT);
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
	return 0;
}

static void sleep_to_next_second(void)
{
	struct timespec now, d;

	clock_gettime(CLOCK_REALTIME, &now);
	d.tv_sec = 0;
	d.tv_nsec = 1000000000L - now.tv_nsec + 20000000L;	/* 20 ms past the boundary */
	if (d.tv_nsec >= 1000000000L) {
		d.tv_sec = 1;
		d.tv_nsec -= 1000000000L;
	}
	nanosleep(&d, NULL);
}

int main(int argc, char **argv)
{
	struct collector disk = { .ops = &collector_disk_ops }, nic = { .ops = &collector_nic_ops };
	struct collector_env env = { .hostname = "driver" };
	uint64_t fields[METRIC__COUNT];
	int seconds, err, rc = 1;
	json_t *end;
	char *s;

	if (argc != 2 || (seconds = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
		return 2;
	}
	for (int m = 0; m < METRIC__COUNT; m++)
		fields[m] = ~0ull;	/* every field of every metric */
	env.vms = vmcache__new("/proc");
	env.tai_offset = collector__tai_offset();
	if (!env.vms) {
		fprintf(stderr, "disknic_driver: out of memory\n");
		return 1;
	}
	err = disk.ops->start(&disk, fields);
	if (err) {
		fprintf(stderr, "disknic_driver: disk collector: %s\n", strerror(-err));
		goto out_vms;
	}
	err = nic.ops->start(&nic, fields);
	if (err) {
		fprintf(stderr, "disknic_driver: nic collector: %s\n", strerror(-err));
		goto out_disk;
	}
	fprintf(stderr, "ready\n");
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < seconds; i++) {
		sleep_to_next_second();
		if ((err = disk.ops->drain(&disk, time(NULL), &env, print_record, NULL)) < 0 ||
		    (err = nic.ops->drain(&nic, time(NULL), &env, print_record, NULL)) < 0) {
			fprintf(stderr, "disknic_driver: drain: %s\n", strerror(-err));
			goto out_nic;
		}
	}
	end = json_pack("{s:I, s:s, s:s}", "drops",
			(json_int_t)(disk.ops->drops(&disk) + nic.ops->drops(&nic)),
			"source_disk", disk.source, "source_nic", nic.source);
	s = json_dumps(end, JSON_COMPACT);
	printf("%s\n", s ? s : "{}");
	free(s);
	json_decref(end);
	rc = 0;
out_nic:
	nic.ops->stop(&nic);
out_disk:
	disk.ops->stop(&disk);
out_vms:
	vmcache__free(env.vms);
	return rc;
}
