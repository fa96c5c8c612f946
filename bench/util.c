/*
 * util.c - small helpers of the load generator: aborting allocators,
 * growable strings, a per-stanza arena, named counters and an HDR-style
 * latency histogram. Independent of src/ on purpose (see
 * loadgen-private.h). The histogram keeps 64 sub-buckets per power of two,
 * so any reported percentile is within 1/64 of the true value.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "loadgen-private.h"

static void lg_oom(void)
{
	fputs("loadgen: out of memory\n", stderr);
	abort();
}

void *lg_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		lg_oom();
	return p;
}

void *lg_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		lg_oom();
	return p;
}

void *lg_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		lg_oom();
	return p;
}

char *lg_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(lg_xmalloc(n), s, n);
}

char *lg_xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		lg_oom();
	return s;
}

/* ---- strings ---- */

static void sbuf_reserve(struct lg_sbuf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->p = lg_xrealloc(b->p, cap);
	b->cap = cap;
}

void lg_sbuf_add(struct lg_sbuf *b, const void *data, size_t len)
{
	sbuf_reserve(b, len);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
}

void lg_sbuf_adds(struct lg_sbuf *b, const char *s)
{
	lg_sbuf_add(b, s, strlen(s));
}

void lg_sbuf_printf(struct lg_sbuf *b, const char *fmt, ...)
{
	/* Try in place first; most strings fit the spare room. */
	sbuf_reserve(b, 128);
	size_t room = b->cap - b->len;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		lg_oom();
	if ((size_t)n >= room) {
		sbuf_reserve(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void lg_sbuf_add_xml(struct lg_sbuf *b, const char *s)
{
	const char *run = s;
	for (; *s; s++) {
		const char *rep;
		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\'': rep = "&apos;"; break;
		case '"': rep = "&quot;"; break;
		default: continue;
		}
		lg_sbuf_add(b, run, (size_t)(s - run));
		lg_sbuf_adds(b, rep);
		run = s + 1;
	}
	lg_sbuf_add(b, run, (size_t)(s - run));
}

void lg_sbuf_add_u64(struct lg_sbuf *b, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	lg_sbuf_add(b, tmp + sizeof(tmp) - n, n);
}

void lg_sbuf_free(struct lg_sbuf *b)
{
	free(b->p);
	*b = (struct lg_sbuf){ 0 };
}

/* ---- arena ---- */

struct lg_arena_chunk {
	struct lg_arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

#define LG_CHUNK 8192

void *lg_arena_alloc(struct lg_arena *a, size_t n)
{
	size_t align = sizeof(max_align_t);
	n = (n + align - 1) / align * align;
	if (a->used + n > a->max)
		return NULL;
	struct lg_arena_chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > LG_CHUNK ? n : LG_CHUNK;
		c = lg_xmalloc(sizeof(*c) + cap);
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	a->used += n;
	return p;
}

void lg_arena_reset(struct lg_arena *a)
{
	struct lg_arena_chunk *c = a->head;
	while (c) {
		struct lg_arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
}

/* ---- named counters ---- */

void lg_counts_add(struct lg_counts *c, const char *name, uint64_t n)
{
	for (size_t i = 0; i < c->len; i++) {
		if (strcmp(c->items[i].name, name) == 0) {
			c->items[i].n += n;
			return;
		}
	}
	if (c->len == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->items = lg_xrealloc(c->items, c->cap * sizeof(*c->items));
	}
	c->items[c->len++] = (struct lg_count_item){ lg_xstrdup(name), n };
}

uint64_t lg_counts_total(const struct lg_counts *c)
{
	uint64_t t = 0;
	for (size_t i = 0; i < c->len; i++)
		t += c->items[i].n;
	return t;
}

void lg_counts_print(const struct lg_counts *c, const char *prefix)
{
	for (size_t i = 0; i < c->len; i++) {
		/* Keys of the RESULT line stay parseable whatever the
		 * server put in an error condition. */
		printf(" %s", prefix);
		for (const char *s = c->items[i].name; *s; s++) {
			int ch = (unsigned char)*s;
			putchar(isalnum(ch) || ch == '-' ? tolower(ch) : '_');
		}
		printf("=%llu", (unsigned long long)c->items[i].n);
	}
}

void lg_counts_free(struct lg_counts *c)
{
	for (size_t i = 0; i < c->len; i++)
		free(c->items[i].name);
	free(c->items);
	*c = (struct lg_counts){ 0 };
}

/* ---- histogram ---- */

/* Values below 128 us have a bucket each; above, bucket = (power of two,
 * top 7 bits of the value), i.e. 64 sub-buckets per power of two. */
static size_t hist_index(uint64_t v)
{
	if (v < 128)
		return (size_t)v;
	int msb = 63 - __builtin_clzll(v);
	int g = msb - 6;
	size_t idx = 128 + (size_t)(g - 1) * 64 + (size_t)((v >> g) - 64);
	return idx < LG_HIST_BUCKETS ? idx : LG_HIST_BUCKETS - 1;
}

/* Highest value that falls in bucket `idx`. */
static uint64_t hist_upper(size_t idx)
{
	if (idx < 128)
		return idx;
	unsigned g = (unsigned)((idx - 128) / 64 + 1);
	uint64_t m = (idx - 128) % 64 + 64;
	return ((m + 1) << g) - 1;
}

void lg_hist_add(struct lg_hist *h, uint64_t us)
{
	h->bucket[hist_index(us)]++;
	h->n++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}

uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			uint64_t v = hist_upper(i);
			return v < h->max_us ? v : h->max_us;
		}
	}
	return h->max_us;
}

void lg_hist_print(const struct lg_hist *h, const char *name)
{
	printf(" %s_p50_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f", name,
	       lg_hist_quantile(h, 0.50) / 1000.0, name,
	       lg_hist_quantile(h, 0.99) / 1000.0, name, h->max_us / 1000.0);
}

uint64_t lg_now_ns(void)
{
	return uv_hrtime();
}

/* ---- CPU over a measured window ---- */

double lg_proc_cpu_s(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields are
	 * counted from the last ')'. utime and stime are fields 14 and 15,
	 * the 12th and 13th after it. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
			 "%*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void lg_window_begin(struct lg_window *w, int server_pid)
{
	w->srv0 = server_pid ? lg_proc_cpu_s(server_pid) : -1;
	w->self0 = self_cpu_s();
	w->t0 = lg_now_ns();
	w->t1 = 0;
}

void lg_window_end(struct lg_window *w, int server_pid)
{
	w->t1 = lg_now_ns();
	w->self1 = self_cpu_s();
	w->srv1 = server_pid ? lg_proc_cpu_s(server_pid) : -1;
}

void lg_window_print(const struct lg_window *w, double ops, const char *op)
{
	if (!w->t1)
		return; /* the window never ended (nothing was measured) */
	double self = w->self1 - w->self0;
	printf(" window_s=%.3f", (w->t1 - w->t0) / 1e9);
	if (w->srv0 >= 0 && w->srv1 >= 0) {
		double srv = w->srv1 - w->srv0;
		printf(" server_cpu_s=%.3f", srv);
		if (ops > 0)
			printf(" server_cpu_ms_per_%s=%.4g", op,
			       srv * 1e3 / ops);
		/* The plural: "msgs", "logins", but "deliveries". */
		size_t len = strlen(op);
		if (srv > 0 && len > 1 && op[len - 1] == 'y')
			printf(" %.*sies_per_server_cpu_s=%.1f", (int)len - 1, op,
			       ops / srv);
		else if (srv > 0)
			printf(" %ss_per_server_cpu_s=%.1f", op, ops / srv);
	}
	printf(" gen_cpu_s=%.3f", self);
	if (ops > 0)
		printf(" gen_cpu_ms_per_%s=%.4g", op, self * 1e3 / ops);
}
