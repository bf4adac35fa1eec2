/* The recording format (record/writer.h, record/reader.h): round trip,
 * torn tails, CRC mismatches, foreign files, version mismatches, rotation.
 * The records are constructed here: what is under test is the file, not
 * where records come from (tests/integration/record_replay.sh records real
 * guests). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/metric.h"
#include "record/format.h"
#include "record/reader.h"
#include "record/writer.h"

#define T0 1700000000

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_record.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static const char *path_of(const char *name)
{
	static char p[4][128];
	static int next;
	char *out = p[next++ % 4];

	snprintf(out, sizeof(p[0]), "%s/%s", dir, name);
	return out;
}

static const enum metric_id two_metrics[] = { METRIC_VM_EXITS, METRIC_VM_IRQS };

static uint64_t all_fields(enum metric_id m)
{
	return (1ull << metric__get(m)->nfields) - 1;
}

/* Exit record i of second t: vCPU i % 3, latency 1000 * (i + 1); every
 * fourth has no measurable latency, every fifth an unknown vcpu. */
static struct record exit_rec(int64_t t, int i)
{
	static char vcpu[8][16];
	struct record r = { .metric = METRIC_VM_EXITS, .time = t, .value = (uint64_t)(i + 1) * 10 };

	snprintf(vcpu[i % 8], sizeof(vcpu[0]), "%d", i % 3);
	r.str[F_HOSTNAME] = "host1";
	r.str[F_VM] = i % 2 ? "web1" : "db2";
	r.str[F_EXITS_VCPU] = i % 5 == 4 ? NULL : vcpu[i % 8];
	r.str[F_EXITS_REASON] = "IO";
	r.str[F_EXITS_CLASS] = "iox";
	r.num[F_EXITS_LATENCY] = (uint64_t)(i + 1) * 1000;
	r.num[F_EXITS_SUBSECOND] = (uint64_t)(i * 37 % 1000);
	if (i % 4 == 3) {
		r.num_absent = 1u << F_EXITS_LATENCY;
		r.num[F_EXITS_LATENCY] = 0;
	}
	return r;
}

static struct record irq_rec(int64_t t)
{
	struct record r = { .metric = METRIC_VM_IRQS, .time = t, .value = 7 };

	r.str[F_HOSTNAME] = "host1";
	r.str[F_VM] = "web1";
	r.str[F_IRQS_VCPU] = "0";
	r.str[F_IRQS_VECTOR] = "0x31";
	r.str[F_IRQS_SOURCE] = "ioapic";
	r.num[F_IRQS_SUBSECOND] = 250;
	return r;
}

#define NSEC 5
#define PER_SEC 6

/* Writes NSEC seconds of PER_SEC exit records and one irq record each, the
 * VM table changing at T0 + 2. Returns the file's size. */
static off_t write_recording(const char *path, uint64_t max_size)
{
	uint64_t fields[] = { all_fields(METRIC_VM_EXITS), all_fields(METRIC_VM_IRQS) };
	struct record_writer_opts o = { .hostname = "host1", .first = T0, .nmetrics = 2,
					.metrics = two_metrics, .fields = fields,
					.max_size = max_size, .keep = 3 };
	struct record_writer *w;
	char err[256];
	struct stat st;

	assert_int_equal(record_writer__open(path, &o, &w, err, sizeof(err)), 0);
	for (int s = 0; s < NSEC; s++) {
		uint64_t drops[2] = { (uint64_t)s, 0 };

		assert_int_equal(record_writer__vms(w, T0 + s, s < 2 ? "[{\"name\":\"web1\"}]"
								       : "[{\"name\":\"web1\"},{\"name\":\"db2\"}]"), 0);
		assert_int_equal(record_writer__sources(w, T0 + s, "{\"vm.exits\":\"kvm_pio\"}"), 0);
		for (int i = 0; i < PER_SEC; i++) {
			struct record r = exit_rec(T0 + s, i);

			assert_int_equal(record_writer__record(w, &r), 0);
		}
		struct record r = irq_rec(T0 + s);

		assert_int_equal(record_writer__record(w, &r), 0);
		assert_int_equal(record_writer__mark(w, T0 + s + 1, drops, err, sizeof(err)), 0);
	}
	record_writer__close(w);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* Reads every second; returns how many were read, and the last rc. */
static int read_all(const char *path, int *last_rc, char *err, size_t errlen)
{
	struct record_reader *r;
	struct record_second sec;
	int n = 0, rc;

	rc = record_reader__open(path, &r, err, errlen);
	if (rc) {
		*last_rc = rc;
		return -1;
	}
	while ((rc = record_reader__next_second(r, &sec, err, errlen)) > 0)
		n++;
	*last_rc = rc;
	record_reader__close(r);
	return n;
}

static void format_round_trip(void **state)
{
	const char *path = path_of("rt.kvr");
	struct record_reader *r;
	struct record_second sec;
	char err[256];

	(void)state;
	write_recording(path, 0);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), 0);
	assert_string_equal(record_reader__hostname(r), "host1");
	assert_int_equal(record_reader__version(r), RECORD_FILE_VERSION);
	assert_int_equal(record_reader__first(r), T0);
	assert_true(record_reader__has_metric(r, METRIC_VM_IRQS));
	assert_false(record_reader__has_metric(r, METRIC_VM_DISK_OPS));
	assert_true(record_reader__has_field(r, METRIC_VM_EXITS, F_EXITS_LATENCY));
	for (int s = 0; s < NSEC; s++) {
		assert_int_equal(record_reader__next_second(r, &sec, err, sizeof(err)), 1);
		assert_int_equal(sec.from, T0 + s);
		assert_int_equal(sec.before, T0 + s + 1);
		assert_int_equal(sec.nrecs, PER_SEC + 1);
		assert_int_equal(sec.drops[METRIC_VM_EXITS], s);
		for (int i = 0; i < PER_SEC; i++) {
			struct record want = exit_rec(T0 + s, i);
			const struct record *got = &sec.recs[i];

			assert_int_equal(got->metric, METRIC_VM_EXITS);
			assert_int_equal(got->time, want.time);
			assert_int_equal(got->value, want.value);
			assert_int_equal(got->num_absent, want.num_absent);
			for (int f = 0; f < RECORD_MAX_FIELDS; f++) {
				if (!want.str[f])
					assert_null(got->str[f]);
				else
					assert_string_equal(got->str[f], want.str[f]);
				assert_int_equal(got->num[f], want.num[f]);
			}
		}
		assert_int_equal(sec.recs[PER_SEC].metric, METRIC_VM_IRQS);
		assert_string_equal(sec.recs[PER_SEC].str[F_IRQS_VECTOR], "0x31");
		assert_int_equal(sec.recs[PER_SEC].num[F_IRQS_SUBSECOND], 250);
		/* the VM table in force at each second */
		assert_int_equal(json_array_size(record_reader__vms_at(r, T0 + s)), s < 2 ? 1 : 2);
	}
	assert_int_equal(record_reader__next_second(r, &sec, err, sizeof(err)), 0);
	assert_int_equal(record_reader__torn(r, NULL), 0);
	/* tables of earlier seconds are still answered after the end */
	assert_int_equal(json_array_size(record_reader__vms_at(r, T0 + 1)), 1);
	assert_null(record_reader__vms_at(r, T0 - 1));
	assert_string_equal(json_string_value(json_object_get(record_reader__sources_at(r, T0 + 4),
							      "vm.exits")), "kvm_pio");
	record_reader__close(r);
}

/* Every cut of the file at a byte inside a chunk reads all the seconds of
 * the chunks before it and says the tail is torn. */
static void format_torn_tail(void **state)
{
	const char *path = path_of("full.kvr"), *cut = path_of("cut.kvr");
	const struct record_chunk_info *chunks;
	struct record_reader *r;
	struct record_second sec;
	off_t size = write_recording(path, 0);
	size_t nchunks;
	char err[256];
	int rc;

	(void)state;
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), 0);
	while (record_reader__next_second(r, &sec, err, sizeof(err)) > 0)
		;
	nchunks = record_reader__chunks(r, &chunks);
	assert_int_equal(nchunks, NSEC);
	assert_int_equal(chunks[nchunks - 1].end, size);
	for (size_t c = 1; c < nchunks; c++) {
		size_t lens[] = { chunks[c].offset + 1, chunks[c].offset + RECORD_CHUNK_HEADER_SIZE,
				  chunks[c].end - 1 };

		for (size_t k = 0; k < 3; k++) {
			char cmd[512];
			uint64_t at = 0;
			struct record_reader *rc2;
			int n = 0;

			snprintf(cmd, sizeof(cmd), "head -c %zu %s > %s", lens[k], path, cut);
			assert_int_equal(system(cmd), 0);
			assert_int_equal(record_reader__open(cut, &rc2, err, sizeof(err)), 0);
			while ((rc = record_reader__next_second(rc2, &sec, err, sizeof(err))) > 0)
				n++;
			assert_int_equal(rc, 0);
			assert_int_equal(n, (int)c);
			assert_int_equal(record_reader__torn(rc2, &at), 1);
			assert_int_equal(at, chunks[c].offset);
			record_reader__close(rc2);
		}
	}
	/* a cut inside the first chunk leaves nothing to describe the file */
	{
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "head -c %llu %s > %s",
			 (unsigned long long)chunks[0].end - 1, path, cut);
		assert_int_equal(system(cmd), 0);
		assert_int_equal(read_all(cut, &rc, err, sizeof(err)), -1);
		assert_int_equal(rc, -EBADMSG);
		assert_non_null(strstr(err, "no complete second"));
	}
	/* a zero-filled tail (what a crash can leave) is a torn tail too */
	{
		FILE *f = fopen(path, "ab");

		for (int i = 0; i < 100; i++)
			fputc(0, f);
		fclose(f);
		assert_int_equal(read_all(path, &rc, err, sizeof(err)), NSEC);
		assert_int_equal(rc, 0);
	}
	record_reader__close(r);
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, at), 1);
	c ^= 0x40;
	assert_int_equal(pwrite(fd, &c, 1, at), 1);
	close(fd);
}

/* A flipped byte in a chunk with data after it: an error naming where, after
 * the seconds before it; in the last chunk: a torn tail. */
static void format_crc_mismatch(void **state)
{
	const char *path = path_of("crc.kvr");
	const struct record_chunk_info *chunks;
	struct record_reader *r;
	struct record_second sec;
	char err[256], want[64];
	int n = 0, rc;

	(void)state;
	write_recording(path, 0);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), 0);
	while (record_reader__next_second(r, &sec, err, sizeof(err)) > 0)
		;
	record_reader__chunks(r, &chunks);
	off_t third = (off_t)chunks[2].offset, last = (off_t)chunks[NSEC - 1].offset;
	record_reader__close(r);

	flip_byte(path, third + RECORD_CHUNK_HEADER_SIZE + 3);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), 0);
	while ((rc = record_reader__next_second(r, &sec, err, sizeof(err))) > 0)
		n++;
	assert_int_equal(n, 2);
	assert_int_equal(rc, -EBADMSG);
	assert_non_null(strstr(err, "CRC mismatch"));
	snprintf(want, sizeof(want), "at byte %lld", (long long)third);
	assert_non_null(strstr(err, want));
	record_reader__close(r);

	/* a flip in a chunk's size is corruption too */
	write_recording(path, 0);
	flip_byte(path, third + 5);
	assert_int_equal(read_all(path, &rc, err, sizeof(err)), 2);
	assert_int_equal(rc, -EBADMSG);

	write_recording(path, 0);
	flip_byte(path, last + RECORD_CHUNK_HEADER_SIZE + 1);
	assert_int_equal(read_all(path, &rc, err, sizeof(err)), NSEC - 1);
	assert_int_equal(rc, 0);
}

static void format_version_mismatch(void **state)
{
	const char *path = path_of("v.kvr");
	struct record_reader *r;
	unsigned char v[4];
	char err[256];
	int fd;

	(void)state;
	write_recording(path, 0);
	fd = open(path, O_RDWR);
	record_le32_put(v, RECORD_FILE_VERSION + 1);
	assert_int_equal(pwrite(fd, v, 4, RECORD_FILE_MAGIC_LEN), 4);
	close(fd);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), -ENOTSUP);
	assert_null(r);
	assert_non_null(strstr(err, "format version 2"));
	assert_non_null(strstr(err, "reads version 1"));
}

static void format_foreign_file(void **state)
{
	const char *path = path_of("foreign");
	struct record_reader *r;
	char err[256];
	FILE *f = fopen(path, "w");

	(void)state;
	fputs("{\"time\": 1700000000, \"value\": 3}\n", f);
	fclose(f);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "not a kvmscope recording"));
	f = fopen(path, "w");
	fclose(f);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), -ENOTSUP);
	assert_int_equal(record_reader__open(path_of("absent"), &r, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "absent"));
}

/* Past max_size the file starts again, the old ones shifting to .1, .2, .3
 * (keep = 3): each reads on its own, with its VM table, and together they
 * hold the seconds of the newest files in order. */
static void format_rotation(void **state)
{
	const char *path = path_of("rot.kvr");
	struct record_reader *r;
	struct record_second sec;
	char err[256], name[160];
	int64_t next = INT64_MIN;
	int total = 0, rc;

	(void)state;
	write_recording(path, 300);	/* a chunk here is over 100 bytes: about one per file */
	for (int k = 3; k >= 0; k--) {
		if (k)
			snprintf(name, sizeof(name), "%s.%d", path, k);
		else
			snprintf(name, sizeof(name), "%s", path);
		if (access(name, F_OK))
			continue;
		assert_int_equal(record_reader__open(name, &r, err, sizeof(err)), 0);
		assert_int_equal(record_reader__first(r), T0);
		while ((rc = record_reader__next_second(r, &sec, err, sizeof(err))) > 0) {
			if (next != INT64_MIN)
				assert_int_equal(sec.from, next);
			next = sec.before;
			assert_int_equal(sec.nrecs, PER_SEC + 1);
			assert_non_null(record_reader__vms_at(r, sec.from));
			total++;
		}
		assert_int_equal(rc, 0);
		record_reader__close(r);
	}
	assert_int_equal(next, T0 + NSEC);
	assert_true(total >= 2);
	snprintf(name, sizeof(name), "%s.4", path);
	assert_int_not_equal(access(name, F_OK), 0);
}

/* Fields not recorded read as unknown: NULL, or absent for numeric ones. */
static void format_field_subset(void **state)
{
	const char *path = path_of("sub.kvr");
	const enum metric_id m[] = { METRIC_VM_EXITS };
	uint64_t fields[] = { FIELD_BIT(F_HOSTNAME) | FIELD_BIT(F_VM) | FIELD_BIT(F_EXITS_CLASS) };
	struct record_writer_opts o = { .hostname = "h", .first = T0, .nmetrics = 1, .metrics = m,
					.fields = fields };
	struct record_writer *w;
	struct record_reader *r;
	struct record_second sec;
	struct record rec = exit_rec(T0, 0), irq = irq_rec(T0);
	char err[256];

	(void)state;
	assert_int_equal(record_writer__open(path, &o, &w, err, sizeof(err)), 0);
	assert_int_equal(record_writer__record(w, &rec), 0);
	assert_int_equal(record_writer__record(w, &irq), -EINVAL);	/* not recorded */
	assert_int_equal(record_writer__mark(w, T0 + 1, NULL, err, sizeof(err)), 0);
	record_writer__close(w);
	assert_int_equal(record_reader__open(path, &r, err, sizeof(err)), 0);
	assert_false(record_reader__has_field(r, METRIC_VM_EXITS, F_EXITS_LATENCY));
	assert_true(record_reader__has_field(r, METRIC_VM_EXITS, F_EXITS_CLASS));
	assert_int_equal(record_reader__next_second(r, &sec, err, sizeof(err)), 1);
	assert_int_equal(sec.nrecs, 1);
	assert_string_equal(sec.recs[0].str[F_EXITS_CLASS], "iox");
	assert_null(sec.recs[0].str[F_EXITS_REASON]);
	assert_true(sec.recs[0].num_absent & (1u << F_EXITS_LATENCY));
	assert_true(sec.recs[0].num_absent & (1u << F_EXITS_SUBSECOND));
	record_reader__close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(format_round_trip),
		cmocka_unit_test(format_torn_tail),
		cmocka_unit_test(format_crc_mismatch),
		cmocka_unit_test(format_version_mismatch),
		cmocka_unit_test(format_foreign_file),
		cmocka_unit_test(format_rotation),
		cmocka_unit_test(format_field_subset),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
