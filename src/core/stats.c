/*
 * stats.c - the per-shard counters; see stats.h.
 */
#include "stats.h"

struct shard_stats shard_stats[SHARDS_MAX];
