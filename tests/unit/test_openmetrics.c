/* OpenMetrics export: bucket boundaries against the engine's buckets, text
 * rendering (escaping, HELP/TYPE/UNIT, cumulative histograms ending in +Inf
 * with _count and _sum, # EOF), both formats, the series bound, expiry.
 * Fed with synthetic records, as the collectors would drain them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/metric.h"
#include "export/om.h"

static size_t fam_index(const char *name)
{
	for (size_t i = 0; i < om_nfamilies; i++)
		if (!strcmp(om_families[i].name, name))
			return i;
	fail_msg("no family %s", name);
	return 0;
}

static struct record exit_rec(const char *vm, const char *cls, uint64_t latency, uint64_t n)
{
	struct record r = { .metric = METRIC_VM_EXITS, .time = 1000, .value = n };

	r.str[F_HOSTNAME] = "h";
	r.str[F_VM] = vm;
	r.str[F_EXITS_VCPU] = "0";
	r.str[F_EXITS_REASON] = "IO";
	r.str[F_EXITS_CLASS] = cls;
	r.num[F_EXITS_LATENCY] = latency;
	return r;
}

static char *render(struct om_store *s, enum om_format fmt)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(om__render(s, fmt, NULL, &out, &len), 0);
	assert_int_equal(strlen(out), len);
	return out;
}

/* Every histogram boundary is an engine bucket edge, so every engine bucket
 * lies inside one Prometheus bucket: no boundary strictly inside any. */
static void test_edges_are_engine_edges(void **state)
{
	(void)state;
	for (size_t i = 0; i < om_nfamilies; i++) {
		const struct om_family *f = &om_families[i];
		const struct field_desc *fd;
		uint64_t edges[OM_MAX_EDGES], hi;
		size_t n = om_family__edges(f, edges);

		if (f->type != OM_HISTOGRAM) {
			assert_int_equal(n, 0);
			continue;
		}
		fd = metric__get(f->metric)->fields[f->numeric];
		assert_true(n >= 10);
		assert_int_equal(edges[0], f->edge_lo);
		assert_int_equal(edges[n - 1], f->edge_hi);
		for (size_t e = 0; e < n; e++) {
			assert_int_equal(metric__bucket(fd, edges[e], &hi), edges[e]);
			if (e)
				assert_true(edges[e] > edges[e - 1]);
		}
		for (unsigned int b = 0; b < metric__nbuckets(fd); b++) {
			uint64_t lo = metric__bucket_lo(fd, b, &hi);

			for (size_t e = 0; e < n; e++)
				assert_false(edges[e] > lo && edges[e] < hi);
		}
	}
	/* exit latency: 1 us .. 1 s in a 1-2.5-5 series */
	{
		uint64_t edges[OM_MAX_EDGES];
		size_t n = om_family__edges(&om_families[fam_index("kvmscope_vm_exit_latency_seconds")], edges);

		assert_int_equal(n, 19);
		assert_int_equal(edges[0], 1000);
		assert_int_equal(edges[1], 2500);
		assert_int_equal(edges[2], 5000);
		assert_int_equal(edges[18], 1000000000);
	}
}

static void test_counter_escaping_and_metadata(void **state)
{
	struct om_store *s;
	struct record r;
	char *txt;
	size_t fe = fam_index("kvmscope_vm_exits");

	(void)state;
	assert_int_equal(om_store__new(&s, NULL), 0);
	/* quote, backslash, newline and a byte that is not UTF-8; then a valid
	 * two-byte character that must pass through */
	r = exit_rec("a\"b\\c\nd\xff\xc3\xa9", "iox", 0, 5);
	assert_int_equal(om_store__ingest(s, fe, &r, 1000), 0);
	r.value = 7;
	assert_int_equal(om_store__ingest(s, fe, &r, 1001), 0);
	r.str[F_EXITS_REASON] = NULL;
	assert_int_equal(om_store__ingest(s, fe, &r, 1001), 0);
	/* a record of another metric is refused */
	r.metric = METRIC_VM_IRQS;
	assert_int_equal(om_store__ingest(s, fe, &r, 1001), -EINVAL);

	txt = render(s, OM_OPENMETRICS);
	assert_non_null(strstr(txt, "# TYPE kvmscope_vm_exits counter\n"));
	assert_non_null(strstr(txt, "# HELP kvmscope_vm_exits VM exits"));
	assert_null(strstr(txt, "# UNIT kvmscope_vm_exits "));
	assert_non_null(strstr(txt,
		"kvmscope_vm_exits_total{vm=\"a\\\"b\\\\c\\nd\xef\xbf\xbd\xc3\xa9\",vcpu=\"0\",reason=\"IO\",class=\"iox\"} 12\n"));
	assert_non_null(strstr(txt, "reason=\"unknown\",class=\"iox\"} 7\n"));
	assert_non_null(strstr(txt, "# UNIT kvmscope_vm_exit_latency_seconds seconds\n"));
	assert_non_null(strstr(txt, "# UNIT kvmscope_vm_disk_bytes bytes\n"));
	assert_non_null(strstr(txt, "kvmscope_kernel_events_dropped_total{metric=\"vm.exits\"} 0\n"));
	assert_non_null(strstr(txt, "kvmscope_metrics_series 2\n"));
	assert_non_null(strstr(txt, "kvmscope_metrics_scrape_duration_seconds "));
	assert_true(strlen(txt) > 6);
	assert_string_equal(txt + strlen(txt) - 6, "# EOF\n");
	assert_int_equal(strstr(txt, "# EOF") - txt, (long)strlen(txt) - 6);
	free(txt);

	txt = render(s, OM_TEXT_004);
	assert_non_null(strstr(txt, "# TYPE kvmscope_vm_exits_total counter\n"));
	assert_non_null(strstr(txt, "# HELP kvmscope_vm_exits_total VM exits"));
	assert_null(strstr(txt, "# UNIT"));
	assert_null(strstr(txt, "# EOF"));
	assert_non_null(strstr(txt, "# TYPE kvmscope_vm_exit_latency_seconds histogram\n"));
	free(txt);
	om_store__free(s);
}

static uint64_t sample(const char *txt, const char *prefix)
{
	const char *p = strstr(txt, prefix);

	assert_non_null(p);
	return strtoull(p + strlen(prefix), NULL, 10);
}

static void test_histogram(void **state)
{
	struct om_store *s;
	struct record r;
	char *txt, *p;
	size_t fh = fam_index("kvmscope_vm_exit_latency_seconds");
	const char *pre = "kvmscope_vm_exit_latency_seconds_bucket{vm=\"v\",class=\"iox\",le=";
	double sum, prev_le = -1;
	uint64_t prev = 0, nb = 0;

	(void)state;
	assert_int_equal(om_store__new(&s, NULL), 0);
	r = exit_rec("v", "iox", 999, 2);	/* engine [950, 1000) -> le 1e-06 */
	om_store__ingest(s, fh, &r, 1000);
	r = exit_rec("v", "iox", 1200, 3);	/* [1000, 1500) -> le 2.5e-06 */
	om_store__ingest(s, fh, &r, 1000);
	r = exit_rec("v", "iox", 20000000000ull, 1);	/* overflow [10 s, inf) -> +Inf */
	om_store__ingest(s, fh, &r, 1000);
	r = exit_rec("v", "iox", 0, 50);		/* latency not measurable: left out */
	r.num_absent = 1u << F_EXITS_LATENCY;
	om_store__ingest(s, fh, &r, 1000);

	txt = render(s, OM_OPENMETRICS);
	assert_non_null(strstr(txt, "# TYPE kvmscope_vm_exit_latency_seconds histogram\n"));
	assert_int_equal(sample(txt, "le=\"1e-06\"} "), 2);
	assert_int_equal(sample(txt, "le=\"2.5e-06\"} "), 5);
	assert_int_equal(sample(txt, "le=\"5e-06\"} "), 5);
	assert_int_equal(sample(txt, "le=\"1\"} "), 5);
	assert_int_equal(sample(txt, "le=\"+Inf\"} "), 6);
	assert_int_equal(sample(txt, "kvmscope_vm_exit_latency_seconds_count{vm=\"v\",class=\"iox\"} "), 6);
	p = strstr(txt, "kvmscope_vm_exit_latency_seconds_sum{vm=\"v\",class=\"iox\"} ");
	assert_non_null(p);
	sum = strtod(strchr(p, '}') + 2, NULL);
	/* bucket midpoints: 2 x 975 ns + 3 x 1250 ns + the overflow's lower bound, 10 s */
	assert_true(fabs(sum - (2 * 975e-9 + 3 * 1250e-9 + 10.0)) < 1e-12);
	/* buckets ascend in le, counts are cumulative, +Inf is last before _count */
	for (p = strstr(txt, pre); p; p = strstr(p + 1, pre)) {
		const char *le = p + strlen(pre) + 1;
		double v = strncmp(le, "+Inf", 4) ? strtod(le, NULL) : INFINITY;
		uint64_t c = strtoull(strstr(p, "} ") + 2, NULL, 10);

		assert_true(v > prev_le);
		assert_true(c >= prev);
		prev_le = v;
		prev = c;
		nb++;
	}
	assert_int_equal(nb, 20);
	assert_true(isinf(prev_le));
	assert_true(strstr(txt, "le=\"+Inf\"") < strstr(txt, "kvmscope_vm_exit_latency_seconds_count"));
	assert_true(strstr(txt, "kvmscope_vm_exit_latency_seconds_count") <
		    strstr(txt, "kvmscope_vm_exit_latency_seconds_sum"));
	/* a histogram is its 19 boundaries + +Inf + _count + _sum in series */
	assert_int_equal(om_store__series(s), 22);
	free(txt);
	om_store__free(s);
}

static void test_series_bound(void **state)
{
	struct om_config cfg = { .max_series = 3 };
	struct om_store *s;
	struct record r;
	char name[16], *txt;
	size_t fe = fam_index("kvmscope_vm_exits"), fh = fam_index("kvmscope_vm_exit_latency_seconds");

	(void)state;
	assert_int_equal(om_store__new(&s, &cfg), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "vm%d", i);
		r = exit_rec(name, "iox", 1200, 1);
		assert_int_equal(om_store__ingest(s, fe, &r, 1000), 0);
	}
	r = exit_rec("vm0", "iox", 1200, 1);
	assert_int_equal(om_store__ingest(s, fe, &r, 1000), 0);	/* existing: still counted */
	assert_int_equal(om_store__ingest(s, fh, &r, 1000), 0);	/* 22 series: refused */
	assert_int_equal(om_store__series(s), 3);
	assert_int_equal(om_store__refused(s), 3);
	txt = render(s, OM_OPENMETRICS);
	assert_non_null(strstr(txt, "vm=\"vm0\",vcpu=\"0\",reason=\"IO\",class=\"iox\"} 2\n"));
	assert_null(strstr(txt, "vm=\"vm3\""));
	assert_non_null(strstr(txt, "kvmscope_metrics_series_refused_total 3\n"));
	assert_non_null(strstr(txt, "kvmscope_metrics_series_limit 3\n"));
	free(txt);
	om_store__free(s);
}

static void test_expiry(void **state)
{
	struct om_config cfg = { .keep_s = 60 };
	const char *live[] = { "b" };
	struct om_store *s;
	struct record r;
	char *txt;
	size_t fe = fam_index("kvmscope_vm_exits");

	(void)state;
	assert_int_equal(om_store__new(&s, &cfg), 0);
	r = exit_rec("a", "iox", 0, 4);
	om_store__ingest(s, fe, &r, 100);
	r = exit_rec("b", "iox", 0, 4);
	om_store__ingest(s, fe, &r, 100);
	assert_int_equal(om_store__sweep(s, live, 1, 150), 0);	/* within keep_s */
	assert_int_equal(om_store__sweep(s, live, 1, 200), 1);	/* a gone 100 s */
	assert_int_equal(om_store__sweep(s, NULL, 0, 250), 0);	/* b seen at 200 */
	txt = render(s, OM_OPENMETRICS);
	assert_null(strstr(txt, "vm=\"a\""));
	assert_non_null(strstr(txt, "vm=\"b\""));
	assert_non_null(strstr(txt, "kvmscope_metrics_series_expired_total 1\n"));
	free(txt);
	/* a comes back: a new series from 0 */
	r = exit_rec("a", "iox", 0, 1);
	om_store__ingest(s, fe, &r, 300);
	txt = render(s, OM_OPENMETRICS);
	assert_non_null(strstr(txt, "vm=\"a\",vcpu=\"0\",reason=\"IO\",class=\"iox\"} 1\n"));
	free(txt);
	om_store__free(s);
}

static void test_negotiate_and_numbers(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(om__negotiate(NULL), OM_OPENMETRICS);
	assert_int_equal(om__negotiate("*/*"), OM_OPENMETRICS);
	assert_int_equal(om__negotiate("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
			 OM_OPENMETRICS);
	assert_int_equal(om__negotiate("text/plain;version=0.0.4"), OM_TEXT_004);
	assert_string_equal(om__content_type(OM_OPENMETRICS),
			    "application/openmetrics-text; version=1.0.0; charset=utf-8");
	om__format_double(1000 / 1e9, buf, sizeof(buf));
	assert_string_equal(buf, "1e-06");
	om__format_double(2500 / 1e9, buf, sizeof(buf));
	assert_string_equal(buf, "2.5e-06");
	om__format_double(0.25, buf, sizeof(buf));
	assert_string_equal(buf, "0.25");
	om__format_double(10000, buf, sizeof(buf));
	assert_string_equal(buf, "10000");
	om__format_double(250000, buf, sizeof(buf));
	assert_string_equal(buf, "250000");
	om__format_double(2.5e6, buf, sizeof(buf));
	assert_string_equal(buf, "2.5e+06");
	om__format_double(1, buf, sizeof(buf));
	assert_string_equal(buf, "1");
	om__format_double(0.0025857500000000004, buf, sizeof(buf));
	assert_string_equal(buf, "0.0025857500000000004");
	om__format_double(1e7, buf, sizeof(buf));
	assert_string_equal(buf, "1e+07");	/* as Prometheus itself writes it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edges_are_engine_edges),
		cmocka_unit_test(test_counter_escaping_and_metadata),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_series_bound),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_negotiate_and_numbers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
