/* Simulated fleet members for bench/fleet_nats.sh: NHOSTS hosts that each
 * second, like `kvmscope agent --nats` after its drain, publish one new slot
 * of each instrumentation (fleet/wire.h, the same encoder) and a heartbeat.
 * The values have the shapes of the instrumentations' arities (scalar, a
 * map of 8 VMs, a distribution of 8 buckets); the aggregator merges them
 * like real ones. Prints the bytes and messages it published.
 *
 * usage: fleet_sim URL FLEET NHOSTS SECONDS ID:scalar|map|dist ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <nats/nats.h>

#include "fleet/wire.h"

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static json_t *value_of(const char *shape, int host)
{
	json_t *v;
	char k[16];

	if (!strcmp(shape, "scalar"))
		return json_integer(host + 1);
	if (!strcmp(shape, "map")) {
		v = json_object();
		for (int i = 0; i < 8; i++) {
			snprintf(k, sizeof(k), "vm-%d-%d", host % 50, i);
			json_object_set_new(v, k, json_integer(i + 1));
		}
		return v;
	}
	v = json_array();
	for (int i = 0; i < 8; i++)
		json_array_append_new(v, json_pack("[[I,I],I]", (json_int_t)(i * 100000),
						   (json_int_t)((i + 1) * 100000), (json_int_t)(i + 3)));
	return v;
}

int main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	int nhosts, seconds, nids;
	unsigned long ids[16];
	const char *shapes[16];
	uint64_t bytes = 0, msgs = 0;
	int64_t from;

	if (argc < 6) {
		fprintf(stderr, "usage: fleet_sim URL FLEET NHOSTS SECONDS ID:SHAPE ...\n");
		return 2;
	}
	nhosts = atoi(argv[3]);
	seconds = atoi(argv[4]);
	nids = argc - 5 > 16 ? 16 : argc - 5;
	for (int i = 0; i < nids; i++) {
		ids[i] = strtoul(argv[5 + i], NULL, 10);
		shapes[i] = strchr(argv[5 + i], ':') ? strchr(argv[5 + i], ':') + 1 : "scalar";
	}
	if (natsConnection_ConnectTo(&nc, argv[1]) != NATS_OK) {
		fprintf(stderr, "fleet_sim: cannot connect to %s\n", argv[1]);
		return 1;
	}
	from = now_us() / 1000000 + 1;
	for (int s = 0; s < seconds; s++) {
		int64_t t, drained;

		/* like the agent: the drain 150 ms after the second turns */
		usleep((useconds_t)(1000000 - now_us() % 1000000 + 150000));
		t = now_us() / 1000000 - 1;
		drained = now_us();
		for (int h = 0; h < nhosts; h++) {
			char subj[128], hb[128];

			for (int i = 0; i < nids && t >= from; i++) {
				struct fleet_wire_header hd = { 0, 1, from, t, drained, 1 };
				struct fleet_buf b = { 0 };
				json_t *v = value_of(shapes[i], h);

				fleet_wire__put_header(&b, &hd);
				fleet_wire__put_value(&b, v);
				json_decref(v);
				snprintf(subj, sizeof(subj), "kvmscope.%s.s.%lu.sim%03d", argv[2], ids[i], h);
				natsConnection_Publish(nc, subj, b.data, (int)b.len);
				bytes += b.len + strlen(subj);
				msgs++;
				free(b.data);
			}
			snprintf(subj, sizeof(subj), "kvmscope.%s.h.sim%03d", argv[2], h);
			snprintf(hb, sizeof(hb), "{\"time\":%lld,\"instrumentations\":%d,\"published\":0,\"outbox_dropped\":0}",
				 (long long)(t + 1), nids);
			natsConnection_PublishString(nc, subj, hb);
			bytes += strlen(hb) + strlen(subj);
			msgs++;
		}
		natsConnection_Flush(nc);
	}
	printf("published_bytes %llu\npublished_msgs %llu\n", (unsigned long long)bytes,
	       (unsigned long long)msgs);
	natsConnection_Destroy(nc);
	return 0;
}
