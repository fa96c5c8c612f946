/*
 * report.c - `status` and `metrics` answers; see report.h and
 * docs/internals/admin.md for every line and metric.
 *
 * Counters are summed over the shards here, on the main thread, from
 * copies each shard made of its own; the gauges come from the
 * connections the shards described and from the process.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/conf.h"
#include "../core/server.h"
#include "../core/xmalloc.h"
#include "../net/conn.h"
#include "../router/sessions.h"
#include "../store/store.h"
#include "../xmpp/errors.h"
#include "report.h"

static const char *const kinds[STATS_KINDS] = { "message", "presence",
						"iq" };
/* The last condition of errors.def must fit the per-shard array. */
static_assert(STREAM_ERR_UNSUPPORTED_VERSION < STATS_STREAM_ERRS,
	      "stream error counters");

/* The resident set of this process, from /proc/self/statm (pages). */
static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, resident = 0;
	int n = f ? fscanf(f, "%lu %lu", &size, &resident) : 0;
	if (f != NULL)
		fclose(f);
	long page = sysconf(_SC_PAGESIZE);
	return n == 2 && page > 0 ? (uint64_t)resident * (uint64_t)page : 0;
}

void report_proc(struct proc_snap *p)
{
	time_t now = time(NULL);
	p->uptime_s = now > server.started ? (uint64_t)(now - server.started)
					   : 0;
	p->pid = (long)getpid();
	p->connections = conn_count();
	p->sessions = sessions_count();
	store_keyed_stats(&p->keyed_accounts, &p->keyed_waiting);
	p->rss_bytes = rss_bytes();
}

/* The counters of all shards added up. */
static void sum_stats(const struct proc_snap *p,
		      const struct shard_snap *snaps, struct shard_stats *t)
{
	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < p->nshards; i++) {
		const struct shard_stats *s = &snaps[i].stats;
		for (size_t k = 0; k < STATS_KINDS; k++) {
			t->stanzas_in[k] += s->stanzas_in[k];
			t->stanzas_out[k] += s->stanzas_out[k];
		}
		for (size_t e = 0; e < STATS_STREAM_ERRS; e++)
			t->stream_errors[e] += s->stream_errors[e];
		t->bytes_in += s->bytes_in;
		t->bytes_out += s->bytes_out;
		t->logins_ok += s->logins_ok;
		t->logins_failed += s->logins_failed;
		t->stanza_errors += s->stanza_errors;
		t->pool_queued += s->pool_queued;
		t->pool_done += s->pool_done;
		t->shard_reads += s->shard_reads;
		t->read_throttles += s->read_throttles;
		t->rate_limited += s->rate_limited;
		t->xml_parsers += s->xml_parsers;
		t->xml_primes += s->xml_primes;
		t->tls_bufs_reused += s->tls_bufs_reused;
	}
}

/* Connections by kind, and c2s sessions by host. */
struct tally {
	size_t c2s, s2s_in, s2s_out, components;
	size_t *host_sessions; /* nhosts */
};

static void tally(const struct proc_snap *p, const struct shard_snap *snaps,
		  struct tally *t, size_t *host_sessions)
{
	memset(t, 0, sizeof(*t));
	t->host_sessions = host_sessions;
	for (unsigned i = 0; i < p->nshards; i++) {
		for (size_t j = 0; j < snaps[i].nconns; j++) {
			const struct conn_info *ci = &snaps[i].conns[j];
			switch (ci->kind) {
			case CONN_KIND_C2S:
				t->c2s++;
				if (ci->ready &&
				    ci->host_idx < server.conf->nhosts)
					host_sessions[ci->host_idx]++;
				break;
			case CONN_KIND_S2S:
				if (ci->out)
					t->s2s_out++;
				else
					t->s2s_in++;
				break;
			case CONN_KIND_COMPONENT:
				t->components++;
				break;
			case CONN_KIND_OTHER:
				break;
			}
		}
	}
}

/* Pool jobs queued and not yet done; a shard's done may run before the
 * copy of another shard's queued, so never below zero. */
static uint64_t pool_in_flight(const struct shard_stats *t)
{
	return t->pool_queued > t->pool_done ? t->pool_queued - t->pool_done
					     : 0;
}

static const char *host_name(size_t idx)
{
	return idx < server.conf->nhosts ? server.conf->hosts[idx] : "?";
}

static void status_conns(struct buf *b, const struct proc_snap *p,
			 const struct shard_snap *snaps)
{
	for (unsigned i = 0; i < p->nshards; i++) {
		for (size_t j = 0; j < snaps[i].nconns; j++) {
			const struct conn_info *ci = &snaps[i].conns[j];
			const char *peer = ci->peer[0] ? ci->peer : "-";
			if (ci->kind == CONN_KIND_S2S)
				buf_printf(b, "s2s_%s %s %s %s\n",
					   ci->out ? "out" : "in",
					   host_name(ci->host_idx), peer,
					   ci->ready ? ci->auth : "connecting");
			else if (ci->kind == CONN_KIND_COMPONENT)
				buf_printf(b, "component %s %s\n", peer,
					   ci->ready ? "connected"
						     : "connecting");
		}
	}
}

void report_status(struct buf *b, const struct proc_snap *p,
		   const struct shard_snap *snaps)
{
	size_t *per_host = xcalloc(server.conf->nhosts + 1, sizeof(size_t));
	struct shard_stats t;
	struct tally n;
	sum_stats(p, snaps, &t);
	tally(p, snaps, &n, per_host);
	buf_printf(b, "version %s\n", STANZAD_VERSION);
	buf_printf(b, "pid %ld\n", p->pid);
	buf_printf(b, "uptime %" PRIu64 "\n", p->uptime_s);
	buf_printf(b, "shards %u\n", p->nshards);
	buf_printf(b, "connections %zu\n", p->connections);
	for (unsigned i = 0; i < p->nshards; i++)
		buf_printf(b, "shard_connections %u %zu\n", i, snaps[i].nconns);
	buf_printf(b, "c2s_connections %zu\n", n.c2s);
	buf_printf(b, "c2s_sessions %zu\n", p->sessions);
	for (size_t h = 0; h < server.conf->nhosts; h++)
		buf_printf(b, "c2s_host %s %zu\n", server.conf->hosts[h],
			   per_host[h]);
	buf_printf(b, "s2s_in_connections %zu\n", n.s2s_in);
	buf_printf(b, "s2s_out_connections %zu\n", n.s2s_out);
	buf_printf(b, "component_connections %zu\n", n.components);
	status_conns(b, p, snaps);
	buf_printf(b, "pool_jobs %" PRIu64 "\n", pool_in_flight(&t));
	buf_printf(b, "store_queue_accounts %zu\n", p->keyed_accounts);
	buf_printf(b, "store_queue_waiting %zu\n", p->keyed_waiting);
	buf_printf(b, "rss %" PRIu64 "\n", p->rss_bytes);
	free(per_host);
}

/* # HELP and # TYPE of a metric. */
static void metric_head(struct buf *b, const char *name, const char *type,
			const char *help)
{
	buf_printf(b, "# HELP stanzad_%s %s\n# TYPE stanzad_%s %s\n", name,
		   help, name, type);
}

static void metric(struct buf *b, const char *name, const char *type,
		   const char *help, uint64_t v)
{
	metric_head(b, name, type, help);
	buf_printf(b, "stanzad_%s %" PRIu64 "\n", name, v);
}

static void metrics_by_kind(struct buf *b, const char *name,
			    const char *help, const uint64_t *v)
{
	metric_head(b, name, "counter", help);
	for (size_t k = 0; k < STATS_KINDS; k++)
		buf_printf(b, "stanzad_%s{kind=\"%s\"} %" PRIu64 "\n", name,
			   kinds[k], v[k]);
}

static void metrics_conns(struct buf *b, const struct proc_snap *p,
			  const struct shard_snap *snaps, const struct tally *n)
{
	metric_head(b, "connections", "gauge",
		    "Open connections by type.");
	buf_printf(b, "stanzad_connections{type=\"c2s\"} %zu\n"
		      "stanzad_connections{type=\"s2s_in\"} %zu\n"
		      "stanzad_connections{type=\"s2s_out\"} %zu\n"
		      "stanzad_connections{type=\"component\"} %zu\n",
		   n->c2s, n->s2s_in, n->s2s_out, n->components);
	metric_head(b, "shard_connections", "gauge",
		    "Open connections by shard.");
	for (unsigned i = 0; i < p->nshards; i++)
		buf_printf(b, "stanzad_shard_connections{shard=\"%u\"} %zu\n",
			   i, snaps[i].nconns);
	metric_head(b, "c2s_sessions", "gauge",
		    "Bound client sessions by host.");
	for (size_t h = 0; h < server.conf->nhosts; h++)
		buf_printf(b, "stanzad_c2s_sessions{host=\"%s\"} %zu\n",
			   server.conf->hosts[h], n->host_sessions[h]);
	metric(b, "sessions", "gauge",
	       "Bound client resources in the session table.", p->sessions);
}

static void metrics_errors(struct buf *b, const struct shard_stats *t)
{
	metric_head(b, "stream_errors_total", "counter",
		    "Stream errors sent, by condition.");
	for (unsigned e = 1; e <= STREAM_ERR_UNSUPPORTED_VERSION; e++)
		buf_printf(b, "stanzad_stream_errors_total{condition=\"%s\"} "
			      "%" PRIu64 "\n",
			   stream_err_name((enum stream_err)e),
			   t->stream_errors[e]);
	metric(b, "stanza_errors_total", "counter",
	       "Error stanzas made by the server.", t->stanza_errors);
}

void report_metrics(struct buf *b, const struct proc_snap *p,
		    const struct shard_snap *snaps)
{
	size_t *per_host = xcalloc(server.conf->nhosts + 1, sizeof(size_t));
	struct shard_stats t;
	struct tally n;
	sum_stats(p, snaps, &t);
	tally(p, snaps, &n, per_host);
	metric_head(b, "info", "gauge", "The server's version.");
	buf_printf(b, "stanzad_info{version=\"%s\"} 1\n", STANZAD_VERSION);
	metric(b, "uptime_seconds", "gauge", "Seconds since start.",
	       p->uptime_s);
	metric(b, "shards", "gauge", "Shard threads.", p->nshards);
	metrics_conns(b, p, snaps, &n);
	metrics_by_kind(b, "stanzas_in_total",
			"Stanzas accepted from clients, servers and "
			"components.", t.stanzas_in);
	metrics_by_kind(b, "stanzas_out_total",
			"Stanzas handed to sessions, components and remote "
			"servers.", t.stanzas_out);
	metric(b, "bytes_in_total", "counter",
	       "Bytes read from sockets (TLS included).", t.bytes_in);
	metric(b, "bytes_out_total", "counter",
	       "Bytes written to sockets (TLS included).", t.bytes_out);
	metric_head(b, "logins_total", "counter",
		    "Client SASL authentications by result.");
	buf_printf(b, "stanzad_logins_total{result=\"ok\"} %" PRIu64 "\n"
		      "stanzad_logins_total{result=\"failed\"} %" PRIu64 "\n",
		   t.logins_ok, t.logins_failed);
	metrics_errors(b, &t);
	metric(b, "pool_jobs", "gauge",
	       "Storage jobs queued or running on the thread pool.",
	       pool_in_flight(&t));
	metric(b, "pool_jobs_total", "counter",
	       "Storage jobs run on the thread pool.", t.pool_done);
	metric(b, "shard_reads_total", "counter",
	       "Storage reads run on the shards themselves, without the "
	       "thread pool.", t.shard_reads);
	metric(b, "xml_parsers_total", "counter",
	       "XML parsers set up for streams' input: one each time input "
	       "arrives on a stream that is between stanzas (the records of "
	       "one read count once).", t.xml_parsers);
	metric(b, "xml_primes_total", "counter",
	       "Of those, parsers made and primed with the stream's header; "
	       "the rest were taken ready from another stream of the shard "
	       "with the same header.", t.xml_primes);
	metric(b, "tls_buffers_reused_total", "counter",
	       "TLS record buffers taken from the shard's cache instead of "
	       "allocated (connections give theirs up after every read and "
	       "write).", t.tls_bufs_reused);
	metric(b, "read_throttles_total", "counter",
	       "Streams whose reading stopped until the message archive's "
	       "writer caught up (back-pressure).", t.read_throttles);
	metric(b, "rate_limited_total", "counter",
	       "Times a client stream's reading stopped because it sent more "
	       "than limits.c2s_rate allows.", t.rate_limited);
	metric(b, "store_queue_waiting", "gauge",
	       "Storage jobs waiting behind another of their account.",
	       p->keyed_waiting);
	metric(b, "resident_memory_bytes", "gauge",
	       "Resident set size of the process.", p->rss_bytes);
	free(per_host);
}
