/*
 * report.h - the answers to `status` and `metrics`, formatted from a
 * snapshot of every shard (control.c gathers it).
 */
#ifndef STANZAD_ADMIN_REPORT_H
#define STANZAD_ADMIN_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/stats.h"
#include "../net/conn.h"

/* One shard's part, copied on that shard's thread. */
struct shard_snap {
	struct shard_stats stats;
	struct conn_info *conns; /* connections that describe themselves */
	size_t nconns;
};

/* What is read on the main thread, outside the shards. */
struct proc_snap {
	unsigned nshards;
	uint64_t uptime_s;
	long pid;
	size_t connections;  /* open connections in the process */
	size_t sessions;     /* bound c2s resources (session table) */
	size_t keyed_accounts, keyed_waiting;
	uint64_t rss_bytes;  /* 0: unknown */
};

/* Fills the fields of p that need no shard (all but nshards). */
void report_proc(struct proc_snap *p);

/* Appends the status lines ("key value...") to b. */
void report_status(struct buf *b, const struct proc_snap *p,
		   const struct shard_snap *snaps);
/* Appends the Prometheus text exposition (format 0.0.4) to b. */
void report_metrics(struct buf *b, const struct proc_snap *p,
		    const struct shard_snap *snaps);

#endif
