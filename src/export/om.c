/* OpenMetrics store and rendering: see om.h for the model. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "engine/metric.h"
#include "export/om.h"

#define OM_HASH_SIZE 8192	/* power of two; chains stay short up to ~40k series */
#define OM_VALUE_MAX 512	/* longer label values are cut (disk paths, VM names) */

#define L1(a) 1, { a }
#define L2(a, b) 2, { a, b }
#define L3(a, b, c) 3, { a, b, c }
#define L4(a, b, c, d) 4, { a, b, c, d }

/* The exported families. Labels are named after the catalogue's fields.
 * Histogram boundaries (engine units) are a 1-2.5-5 series: with the
 * engine's 20 steps per decade every such value is an engine bucket edge
 * (checked by tests/unit/test_openmetrics.c). */
const struct om_family om_families[] = {
	{ "kvmscope_vm_exits", "VM exits by VM, vCPU, exit reason and class (haltx, irqx, irqwx, iox, mmiox, other)",
	  "", OM_COUNTER, METRIC_VM_EXITS, L4(F_VM, F_EXITS_VCPU, F_EXITS_REASON, F_EXITS_CLASS), -1, 1, 0, 0 },
	{ "kvmscope_vm_exit_latency_seconds", "VM exit latency, exit to re-entry, by VM and exit class (exits whose latency is not measurable on this host are left out)",
	  "seconds", OM_HISTOGRAM, METRIC_VM_EXITS, L2(F_VM, F_EXITS_CLASS), F_EXITS_LATENCY, 1e9,
	  1000, 1000000000 },
	{ "kvmscope_vm_irqs", "interrupts delivered into guests by VM, vCPU, vector and source",
	  "", OM_COUNTER, METRIC_VM_IRQS, L4(F_VM, F_IRQS_VCPU, F_IRQS_VECTOR, F_IRQS_SOURCE), -1, 1, 0, 0 },
	{ "kvmscope_vm_disk_ops", "virtual disk operations by VM, disk and operation type",
	  "", OM_COUNTER, METRIC_VM_DISK_OPS, L3(F_VM, F_DISK_DISK, F_DISK_OPTYPE), -1, 1, 0, 0 },
	{ "kvmscope_vm_disk_bytes", "bytes moved by virtual disk operations by VM, disk and operation type",
	  "bytes", OM_COUNTER, METRIC_VM_DISK_BYTES, L3(F_VM, F_DISK_DISK, F_DISK_OPTYPE), -1, 1, 0, 0 },
	{ "kvmscope_vm_disk_latency_seconds", "virtual disk operation latency by VM, disk and operation type",
	  "seconds", OM_HISTOGRAM, METRIC_VM_DISK_OPS, L3(F_VM, F_DISK_DISK, F_DISK_OPTYPE), F_DISK_LATENCY,
	  1e9, 10000, 10000000000ull },
	{ "kvmscope_vm_disk_request_size_bytes", "virtual disk request size by VM, disk and operation type",
	  "bytes", OM_HISTOGRAM, METRIC_VM_DISK_OPS, L3(F_VM, F_DISK_DISK, F_DISK_OPTYPE), F_DISK_SIZE,
	  1, 100, 10000000 },
	{ "kvmscope_vm_nic_bytes", "virtual NIC bytes by VM, NIC and direction (sent/received, the guest's view)",
	  "bytes", OM_COUNTER, METRIC_VM_NIC_BYTES, L3(F_VM, F_NIC_NIC, F_NIC_DIRECTION), -1, 1, 0, 0 },
	{ "kvmscope_vm_nic_packets", "virtual NIC packets by VM, NIC and direction (sent/received, the guest's view)",
	  "", OM_COUNTER, METRIC_VM_NIC_PACKETS, L3(F_VM, F_NIC_NIC, F_NIC_DIRECTION), -1, 1, 0, 0 },
	{ "kvmscope_vm_samples", "vCPU samples at 99 Hz by VM and vCPU (a vCPU on a host CPU)",
	  "", OM_COUNTER, METRIC_VM_SAMPLES, L2(F_VM, F_SAMPLES_VCPU), -1, 1, 0, 0 },
};
const size_t om_nfamilies = sizeof(om_families) / sizeof(om_families[0]);
#define NFAM (sizeof(om_families) / sizeof(om_families[0]))

size_t om_family__edges(const struct om_family *f, uint64_t *edges)
{
	static const unsigned int mant[] = { 10, 25, 50 };	/* x 10^m / 10 */
	size_t n = 0;

	if (f->type != OM_HISTOGRAM)
		return 0;
	for (uint64_t p = 1; p <= f->edge_hi && n < OM_MAX_EDGES; p *= 10)
		for (size_t i = 0; i < 3 && n < OM_MAX_EDGES; i++) {
			uint64_t e = p * mant[i] / 10;

			if (e >= f->edge_lo && e <= f->edge_hi && (p >= 10 || mant[i] == 10))
				edges[n++] = e;
		}
	return n;
}

uint64_t om_family__fields(const struct om_family *f)
{
	uint64_t bits = 0;

	for (int i = 0; i < f->nlabels; i++)
		bits |= FIELD_BIT(f->labels[i]);
	if (f->numeric >= 0)
		bits |= FIELD_BIT(f->numeric);
	return bits;
}

struct om_series {
	struct om_series *hnext;	/* hash chain */
	struct om_series *fnext;	/* the family's list, in creation order */
	uint32_t hash;
	size_t fam;
	int64_t last_seen;
	uint64_t count;			/* counter value, or the histogram's count */
	double sum;			/* histograms, base units */
	uint64_t *buckets;		/* histograms: nedges + 1, not cumulative */
	const char *vm;			/* into key; NULL when the family has no vm */
	size_t keylen;
	char key[];			/* label values, each NUL-terminated */
};

struct om_fam_state {
	struct om_series *head, **tail;
	size_t nedges;
	uint64_t edges[OM_MAX_EDGES];
	int vm_label;			/* index into labels of F_VM, -1 if none */
};

struct om_store {
	struct om_config cfg;
	struct om_series *table[OM_HASH_SIZE];
	struct om_fam_state fams[NFAM];
	uint64_t series;		/* Prometheus series held */
	uint64_t refused;
	uint64_t expired;
};

/* Caller owns *out. */
int om_store__new(struct om_store **out, const struct om_config *cfg)
{
	struct om_store *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	if (cfg)
		s->cfg = *cfg;
	if (!s->cfg.max_series)
		s->cfg.max_series = OM_MAX_SERIES_DEFAULT;
	if (!s->cfg.keep_s)
		s->cfg.keep_s = OM_KEEP_S_DEFAULT;
	for (size_t i = 0; i < NFAM; i++) {
		s->fams[i].tail = &s->fams[i].head;
		s->fams[i].nedges = om_family__edges(&om_families[i], s->fams[i].edges);
		s->fams[i].vm_label = -1;
		for (int l = 0; l < om_families[i].nlabels; l++)
			if (om_families[i].labels[l] == F_VM)
				s->fams[i].vm_label = l;
	}
	*out = s;
	return 0;
}

static void series_free(struct om_series *se)
{
	free(se->buckets);
	free(se);
}

void om_store__free(struct om_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < NFAM; i++)
		for (struct om_series *se = s->fams[i].head, *next; se; se = next) {
			next = se->fnext;
			series_free(se);
		}
	free(s);
}

static uint32_t fnv1a(const char *p, size_t n, uint32_t h)
{
	return (uint32_t)hash__bytes(HASH_SEED ^ h, p, n);
}

static uint64_t series_weight(const struct om_fam_state *fs, const struct om_family *f)
{
	return f->type == OM_HISTOGRAM ? fs->nedges + 3 : 1;	/* buckets, +Inf, _count, _sum */
}

/* The series of family fam with these label values, created if needed.
 * NULL with *refused set when the bound forbids a new one, or on ENOMEM. */
static struct om_series *series_get(struct om_store *s, size_t fam, const char *key, size_t keylen,
				    int *refused)
{
	struct om_fam_state *fs = &s->fams[fam];
	const struct om_family *f = &om_families[fam];
	uint32_t h = fnv1a(key, keylen, 2166136261u ^ (uint32_t)fam);
	struct om_series **slot = &s->table[h & (OM_HASH_SIZE - 1)], *se;
	uint64_t w = series_weight(fs, f);

	for (se = *slot; se; se = se->hnext)
		if (se->hash == h && se->fam == fam && se->keylen == keylen &&
		    !memcmp(se->key, key, keylen))
			return se;
	*refused = 0;
	if (s->series + w > s->cfg.max_series) {
		*refused = 1;
		return NULL;
	}
	se = calloc(1, sizeof(*se) + keylen);
	if (!se)
		return NULL;
	if (f->type == OM_HISTOGRAM) {
		se->buckets = calloc(fs->nedges + 1, sizeof(uint64_t));
		if (!se->buckets) {
			free(se);
			return NULL;
		}
	}
	memcpy(se->key, key, keylen);
	se->keylen = keylen;
	se->hash = h;
	se->fam = fam;
	if (fs->vm_label >= 0) {
		const char *p = se->key;

		for (int l = 0; l < fs->vm_label; l++)
			p += strlen(p) + 1;
		se->vm = p;
	}
	se->hnext = *slot;
	*slot = se;
	*fs->tail = se;
	fs->tail = &se->fnext;
	s->series += w;
	return se;
}

/* Prometheus bucket of the engine bucket holding v: the first boundary at or
 * above the engine bucket's upper edge, so the whole engine bucket lies in
 * it (boundaries are engine edges). Index nedges is +Inf. *mid gets the
 * engine bucket's midpoint, what _sum adds per event (the kernel keeps
 * buckets, not values). */
static size_t prom_bucket(const struct om_fam_state *fs, const struct field_desc *fd, uint64_t v,
			  double *mid)
{
	uint64_t hi, lo = metric__bucket(fd, v, &hi);
	size_t i;

	*mid = hi == UINT64_MAX ? (double)lo : ((double)lo + (double)hi) / 2.0;
	for (i = 0; i < fs->nedges; i++)
		if (fs->edges[i] >= hi)
			break;
	return i;
}

int om_store__ingest(struct om_store *s, size_t fam, const struct record *rec, int64_t now)
{
	const struct om_family *f;
	struct om_fam_state *fs;
	struct om_series *se;
	char key[OM_MAX_LABELS * (OM_VALUE_MAX + 1)];
	size_t keylen = 0;
	int refused = 0;

	if (fam >= NFAM || !rec || rec->metric != om_families[fam].metric)
		return -EINVAL;
	f = &om_families[fam];
	fs = &s->fams[fam];
	if (f->numeric >= 0 && (rec->num_absent & (1u << f->numeric)))
		return 0;
	for (int l = 0; l < f->nlabels; l++) {
		const char *v = rec->str[f->labels[l]] ? rec->str[f->labels[l]] : "unknown";
		size_t n = strnlen(v, OM_VALUE_MAX);

		memcpy(key + keylen, v, n);
		keylen += n;
		key[keylen++] = '\0';
	}
	se = series_get(s, fam, key, keylen, &refused);
	if (!se) {
		if (!refused)
			return -ENOMEM;
		s->refused++;
		return 0;
	}
	se->last_seen = now;
	se->count += rec->value;
	if (f->type == OM_HISTOGRAM) {
		const struct field_desc *fd = metric__get(f->metric)->fields[f->numeric];
		double mid;
		size_t b = prom_bucket(fs, fd, rec->num[f->numeric], &mid);

		se->buckets[b] += rec->value;
		se->sum += mid * (double)rec->value / f->divisor;
	}
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t om_store__sweep(struct om_store *s, const char *const *live, size_t n, int64_t now)
{
	const char **sorted = NULL;
	size_t dropped = 0;

	if (n) {
		sorted = malloc(n * sizeof(*sorted));
		if (sorted) {
			memcpy(sorted, live, n * sizeof(*sorted));
			qsort(sorted, n, sizeof(*sorted), name_cmp);
		}
	}
	for (size_t i = 0; i < NFAM; i++) {
		struct om_fam_state *fs = &s->fams[i];
		struct om_series **pp = &fs->head, *se;

		fs->tail = &fs->head;
		while ((se = *pp)) {
			if (se->vm && sorted && bsearch(&se->vm, sorted, n, sizeof(*sorted), name_cmp))
				se->last_seen = now;
			if (!se->vm || now - se->last_seen <= s->cfg.keep_s) {
				fs->tail = &se->fnext;
				pp = &se->fnext;
				continue;
			}
			/* unlink from its hash chain, then from the family */
			for (struct om_series **hp = &s->table[se->hash & (OM_HASH_SIZE - 1)]; *hp;
			     hp = &(*hp)->hnext)
				if (*hp == se) {
					*hp = se->hnext;
					break;
				}
			*pp = se->fnext;
			s->series -= series_weight(fs, &om_families[i]);
			s->expired++;
			dropped++;
			series_free(se);
		}
	}
	free(sorted);
	return dropped;
}

uint64_t om_store__series(const struct om_store *s)
{
	return s->series;
}

uint64_t om_store__refused(const struct om_store *s)
{
	return s->refused;
}

/* ---- text ---- */

static void buf_reserve(struct om_buf *b, size_t more)
{
	if (!b->oom && array__grow((void **)&b->p, &b->cap, b->len + more + 1, 1))
		b->oom = 1;
}

static void buf_put(struct om_buf *b, const char *p, size_t n)
{
	buf_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct om_buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

void om_buf__printf(struct om_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	/* NUL-terminated: the check stops at the NUL */
	return utf8__seq_len(p, 4);
}

void om_buf__label_value(struct om_buf *b, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;

	while (*p) {
		size_t n = utf8_len(p);

		if (*p == '\\')
			buf_put(b, "\\\\", 2);
		else if (*p == '"')
			buf_put(b, "\\\"", 2);
		else if (*p == '\n')
			buf_put(b, "\\n", 2);
		else if (n)
			buf_put(b, (const char *)p, n);
		else
			buf_put(b, "\xef\xbf\xbd", 3);
		p += n ? n : 1;
	}
}

/* HELP text: the OpenMetrics escapes (\\, \n, \"); the 0.0.4 format has no
 * \" escape, so a quote stays as is there. */
static void buf_help(struct om_buf *b, const char *h, enum om_format fmt)
{
	for (; *h; h++) {
		if (*h == '\\')
			buf_put(b, "\\\\", 2);
		else if (*h == '\n')
			buf_put(b, "\\n", 2);
		else if (*h == '"' && fmt == OM_OPENMETRICS)
			buf_put(b, "\\\"", 2);
		else
			buf_put(b, h, 1);
	}
}

void om__format_double(double v, char *buf, size_t len)
{
	if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	/* Go's strconv 'g' with the shortest precision, as Prometheus writes
	 * numbers: the fewest digits that read back, exponent form only below
	 * 1e-4 or from 1e6 on. Label matchers compare le as a string, so
	 * le="10000" must be spelled the way PromQL users write it. */
	for (int prec = 1; prec <= 17; prec++) {
		const char *e;
		int exp;

		snprintf(buf, len, "%.*e", prec - 1, v);
		if (strtod(buf, NULL) != v && prec < 17)
			continue;
		e = strchr(buf, 'e');
		exp = e ? atoi(e + 1) : 0;
		if (exp < -4 || exp >= 6) {
			/* "1.0e-06" cannot happen: prec is the shortest */
			return;
		}
		snprintf(buf, len, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
		return;
	}
}

static const char *type_name(enum om_type t)
{
	return t == OM_HISTOGRAM ? "histogram" : "counter";
}

/* # TYPE / # UNIT / # HELP of one family. type is "counter", "gauge",
 * "histogram"; the 0.0.4 format names counters by their sample name. */
static void metadata(struct om_buf *b, enum om_format fmt, const char *name, const char *type,
		     const char *unit, const char *help)
{
	const char *suffix = fmt == OM_TEXT_004 && !strcmp(type, "counter") ? "_total" : "";

	om_buf__printf(b, "# TYPE %s%s %s\n", name, suffix, type);
	if (fmt == OM_OPENMETRICS && unit && *unit)
		om_buf__printf(b, "# UNIT %s %s\n", name, unit);
	om_buf__printf(b, "# HELP %s%s ", name, suffix);
	buf_help(b, help, fmt);
	buf_str(b, "\n");
}

/* {l1="v1",...[,le="X"]} of a series; le NULL for none. */
static void labels(struct om_buf *b, const struct om_family *f, const struct om_series *se,
		   const char *le)
{
	const struct metric_desc *md = metric__get(f->metric);
	const char *v = se->key;

	buf_str(b, "{");
	for (int l = 0; l < f->nlabels; l++) {
		om_buf__printf(b, "%s%s=\"", l ? "," : "", md->fields[f->labels[l]]->name);
		om_buf__label_value(b, v);
		buf_str(b, "\"");
		v += strlen(v) + 1;
	}
	if (le)
		om_buf__printf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
	buf_str(b, "}");
}

static void render_family(struct om_buf *b, const struct om_store *s, size_t i, enum om_format fmt)
{
	const struct om_family *f = &om_families[i];
	const struct om_fam_state *fs = &s->fams[i];
	char num[64], le[64];

	metadata(b, fmt, f->name, type_name(f->type), f->unit, f->help);
	for (const struct om_series *se = fs->head; se; se = se->fnext) {
		uint64_t cum = 0;

		if (f->type == OM_COUNTER) {
			om_buf__printf(b, "%s_total", f->name);
			labels(b, f, se, NULL);
			om_buf__printf(b, " %llu\n", (unsigned long long)se->count);
			continue;
		}
		for (size_t e = 0; e <= fs->nedges; e++) {
			cum += se->buckets[e];
			if (e < fs->nedges)
				om__format_double((double)fs->edges[e] / f->divisor, le, sizeof(le));
			else
				snprintf(le, sizeof(le), "+Inf");
			om_buf__printf(b, "%s_bucket", f->name);
			labels(b, f, se, le);
			om_buf__printf(b, " %llu\n", (unsigned long long)cum);
		}
		om_buf__printf(b, "%s_count", f->name);
		labels(b, f, se, NULL);
		om_buf__printf(b, " %llu\n", (unsigned long long)se->count);
		om__format_double(se->sum, num, sizeof(num));
		om_buf__printf(b, "%s_sum", f->name);
		labels(b, f, se, NULL);
		om_buf__printf(b, " %s\n", num);
	}
}

static void render_self(struct om_buf *b, const struct om_store *s, enum om_format fmt,
			const struct om_self *self)
{
	struct timespec ts;
	char num[64];
	double took;

	metadata(b, fmt, "kvmscope_kernel_events_dropped", "counter", "",
		 "events lost in the kernel (aggregation map full) by metric; metrics fed by one collector (disk_ops and disk_bytes, nic_bytes and nic_packets) share one count");
	for (int m = 0; m < METRIC__COUNT; m++) {
		om_buf__printf(b, "kvmscope_kernel_events_dropped_total{metric=\"%s\"} %llu\n",
			       metric__get((enum metric_id)m)->name,
			       (unsigned long long)(self ? self->kernel_drops[m] : 0));
	}
	metadata(b, fmt, "kvmscope_metrics_series_refused", "counter", "",
		 "drained records whose new series was not created because --metrics-max-series was reached");
	om_buf__printf(b, "kvmscope_metrics_series_refused_total %llu\n", (unsigned long long)s->refused);
	metadata(b, fmt, "kvmscope_metrics_series_expired", "counter", "",
		 "series dropped because their VM was gone for longer than --metrics-keep");
	om_buf__printf(b, "kvmscope_metrics_series_expired_total %llu\n", (unsigned long long)s->expired);
	metadata(b, fmt, "kvmscope_metrics_series", "gauge", "",
		 "series held now (a histogram counts its buckets, _count and _sum)");
	om_buf__printf(b, "kvmscope_metrics_series %llu\n", (unsigned long long)s->series);
	metadata(b, fmt, "kvmscope_metrics_series_limit", "gauge", "", "--metrics-max-series");
	om_buf__printf(b, "kvmscope_metrics_series_limit %llu\n", (unsigned long long)s->cfg.max_series);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	took = self && self->scrape_started > 0 ?
		(double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - self->scrape_started : 0;
	metadata(b, fmt, "kvmscope_metrics_scrape_duration_seconds", "gauge", "seconds",
		 "time this scrape took to render, up to this line");
	om__format_double(took > 0 ? took : 0, num, sizeof(num));
	om_buf__printf(b, "kvmscope_metrics_scrape_duration_seconds %s\n", num);
}

/* On success *out is owned by the caller. */
int om__render(const struct om_store *s, enum om_format fmt, const struct om_self *self,
	       char **out, size_t *len)
{
	struct om_buf b = { 0 };

	for (size_t i = 0; i < NFAM; i++)
		render_family(&b, s, i, fmt);
	render_self(&b, s, fmt, self);
	if (fmt == OM_OPENMETRICS)
		buf_str(&b, "# EOF\n");
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

const char *om__content_type(enum om_format fmt)
{
	return fmt == OM_TEXT_004 ? "text/plain; version=0.0.4; charset=utf-8" :
		"application/openmetrics-text; version=1.0.0; charset=utf-8";
}

enum om_format om__negotiate(const char *accept)
{
	if (accept && strstr(accept, "text/plain") && !strstr(accept, "application/openmetrics-text"))
		return OM_TEXT_004;
	return OM_OPENMETRICS;
}
