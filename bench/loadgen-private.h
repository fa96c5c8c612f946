/*
 * loadgen-private.h - shared by the files of the load generator (bench/).
 *
 * The load generator is a standalone XMPP client (RFC 6120 c2s with
 * STARTTLS, SCRAM-SHA-256/SHA-1, binding, RFC 6121 roster and presence)
 * that deliberately shares no code with stanzad, so that a server bug
 * cannot be hidden by the same bug on the client side. Everything runs on
 * one libuv loop (login: one loop per --threads thread, each with its own
 * connections, sharing only read-only set-up and the SCRAM cache entries
 * of its own users); connections are freed only from their close
 * callbacks, so a `struct lg_conn` stays valid for the whole of any
 * callback.
 */
#ifndef LOADGEN_PRIVATE_H
#define LOADGEN_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <expat.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <uv.h>

#define LG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- util.c: memory, strings, arena, counters, histogram ---- */

void *lg_xmalloc(size_t n);
void *lg_xcalloc(size_t n, size_t size);
void *lg_xrealloc(void *p, size_t n);
/* Returns a malloc'd copy (caller frees); aborts on OOM. */
char *lg_xstrdup(const char *s);
/* Returns a malloc'd formatted string (caller frees); aborts on OOM. */
char *lg_xasprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Growable byte string, always NUL-terminated when p != NULL. */
struct lg_sbuf {
	char *p;
	size_t len, cap;
};
void lg_sbuf_add(struct lg_sbuf *b, const void *data, size_t len);
void lg_sbuf_adds(struct lg_sbuf *b, const char *s);
void lg_sbuf_printf(struct lg_sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends `s` with XML character data escaping (& < > ' "). */
void lg_sbuf_add_xml(struct lg_sbuf *b, const char *s);
/* Appends v in decimal (what a message needs per send, without stdio). */
void lg_sbuf_add_u64(struct lg_sbuf *b, uint64_t v);
void lg_sbuf_free(struct lg_sbuf *b);

/* Bump allocator for one received stanza; allocation fails (NULL) past
 * `max` bytes, which the caller treats as the server's fault. */
struct lg_arena_chunk;
struct lg_arena {
	struct lg_arena_chunk *head;
	size_t used, max;
};
void *lg_arena_alloc(struct lg_arena *a, size_t n);
/* Frees every allocation; the arena can be used again. */
void lg_arena_reset(struct lg_arena *a);

/* Named counters (failure reasons, error conditions): few distinct names,
 * so a short list is enough. */
struct lg_count_item {
	char *name;
	uint64_t n;
};
struct lg_counts {
	struct lg_count_item *items;
	size_t len, cap;
};
void lg_counts_add(struct lg_counts *c, const char *name, uint64_t n);
uint64_t lg_counts_total(const struct lg_counts *c);
/* Prints " prefix<name>=<n>" for each name (names sanitised to [a-z0-9_-]). */
void lg_counts_print(const struct lg_counts *c, const char *prefix);
void lg_counts_free(struct lg_counts *c);

/* Log-linear latency histogram in microseconds (HDR-style, 64 sub-buckets
 * per power of two: percentiles are within 1.6 %, max is exact). */
#define LG_HIST_BUCKETS (128 + 58 * 64)
struct lg_hist {
	uint64_t n, max_us, sum_us;
	uint64_t bucket[LG_HIST_BUCKETS];
};
void lg_hist_add(struct lg_hist *h, uint64_t us);
/* Returns the latency (us) at or below which a fraction q of samples lie;
 * 0 if empty. */
uint64_t lg_hist_quantile(const struct lg_hist *h, double q);
/* Prints " NAME_p50_ms=… NAME_p99_ms=… NAME_max_ms=…" (for RESULT). */
void lg_hist_print(const struct lg_hist *h, const char *name);

/* Monotonic clock, nanoseconds. */
uint64_t lg_now_ns(void);

/* CPU time over a scenario's measured window: the server's (utime +
 * stime of all its threads from /proc/PID/stat, with --server-pid) and
 * the generator's own (getrusage, all its threads). */
struct lg_window {
	uint64_t t0, t1;         /* lg_now_ns */
	double srv0, srv1;       /* server CPU seconds; < 0: unknown */
	double self0, self1;     /* generator CPU seconds */
};
/* Returns the CPU seconds of process `pid`, or -1 if unreadable. */
double lg_proc_cpu_s(int pid);
void lg_window_begin(struct lg_window *w, int server_pid);
void lg_window_end(struct lg_window *w, int server_pid);
/* Prints " window_s=… server_cpu_s=… server_cpu_ms_per_OP=…
 * OPs_per_server_cpu_s=… gen_cpu_s=… gen_cpu_ms_per_OP=…" for `ops`
 * operations in the window (server fields only when known). */
void lg_window_print(const struct lg_window *w, double ops, const char *op);

/* ---- scram.c: SCRAM client (RFC 5802, RFC 7677) ---- */

enum lg_scram_hash { LG_SCRAM_SHA1, LG_SCRAM_SHA256 };

/* Per-user cache of what SCRAM derives from the password, salt and
 * iteration count alone (RFC 5802 §5.1 lets a client keep SaltedPassword,
 * and ClientKey, StoredKey and ServerKey follow from it): without it the
 * generator would spend more CPU on PBKDF2 than the server spends on the
 * whole login. What is left per login is the two HMACs over the
 * AuthMessage; their keyed HMAC states are kept too (created at first
 * use), so a login copies a state instead of fetching and keying HMAC.
 * A user belongs to one generator thread, so its cache needs no lock. */
struct lg_scram_cache {
	unsigned char salt[64];
	size_t salt_len;
	unsigned iter;
	int hash;            /* enum lg_scram_hash, -1 = empty */
	unsigned char client_key[64];
	EVP_MAC_CTX *stored_mac;   /* HMAC keyed with StoredKey */
	EVP_MAC_CTX *server_mac;   /* HMAC keyed with ServerKey */
};

struct lg_scram {
	enum lg_scram_hash hash;
	char *first_bare;    /* client-first-message-bare */
	char *nonce;         /* client nonce */
	unsigned char server_sig[64];
	size_t md_len;
};

/* Returns the mechanism name of `hash`. */
const char *lg_scram_mech(enum lg_scram_hash hash);
/* Starts an exchange; returns the client-first-message (malloc'd). */
char *lg_scram_first(struct lg_scram *s, enum lg_scram_hash hash,
		     const char *user);
/* Answers the server-first-message `in`; returns the client-final-message
 * (malloc'd), or NULL with *error_r (static) if the challenge is bad. */
char *lg_scram_final(struct lg_scram *s, const char *in, size_t in_len,
		     const char *password, struct lg_scram_cache *cache,
		     const char **error_r);
/* Checks the server-final-message (v=...); returns true if it proves the
 * server knows the password. */
bool lg_scram_verify(struct lg_scram *s, const char *in, size_t in_len);
void lg_scram_clear(struct lg_scram *s);
/* Fetches HMAC and the digests once (before any thread starts); frees
 * a user's cache. */
void lg_scram_init(void);
void lg_scram_cache_free(struct lg_scram_cache *cache);

/* Base64 helpers: results malloc'd (caller frees). lg_b64_decode returns
 * NULL on malformed input; `*len_r` gets the decoded length. */
char *lg_b64_encode(const void *data, size_t len);
unsigned char *lg_b64_decode(const char *s, size_t len, size_t *len_r);

/* ---- pubkey.c ---- */

/* Makes OpenSSL decode EC public keys of certificates directly, not
 * through the provider decoders (see pubkey.c); call before any thread
 * starts. Returns false when it cannot (the slower path stays). */
bool lg_pubkey_fast_decode(void);

/* ---- xconn.c: one XMPP client connection ---- */

/* A received element (stanza tree). Lives in the connection's arena
 * until the stanza callback returns. ns is "" when absent. */
struct lg_elem {
	const char *ns, *name;
	const char **attrs;  /* name, value, ..., NULL (expat names) */
	char *text;
	size_t text_len;
	struct lg_elem *parent, *child, *last, *next;
};

const char *lg_attr(const struct lg_elem *e, const char *name);
struct lg_elem *lg_child(const struct lg_elem *e, const char *ns,
			 const char *name);
/* Text of the element ("" if none); NUL-terminated. */
const char *lg_text(const struct lg_elem *e);
/* Name of the first child in `ns` (an error or SASL condition) or
 * "undefined-condition". */
const char *lg_condition(const struct lg_elem *e, const char *ns);

enum lg_phase {
	LG_CONNECTING,
	LG_FEATURES_PLAIN,   /* waiting for the first stream features */
	LG_STARTTLS,         /* waiting for <proceed/> */
	LG_HANDSHAKE,        /* TLS handshake */
	LG_FEATURES_TLS,     /* waiting for features after TLS */
	LG_REGISTER,         /* XEP-0077 set sent */
	LG_SASL,             /* SCRAM exchange */
	LG_FEATURES_AUTH,    /* waiting for features after SASL */
	LG_BIND,
	LG_SESSION,
	LG_ROSTER,
	LG_ONLINE,
	LG_CLOSING,          /* </stream:stream> sent */
	LG_CLOSED,
	LG_PHASE_COUNT
};
const char *lg_phase_name(enum lg_phase p);

struct lg_conn;
struct lg_run;

/* Callbacks of a connection's owner. All are optional but `closed`. */
struct lg_conn_ops {
	/* Bound; roster fetched (roster query or NULL) and initial presence
	 * sent when requested. */
	void (*online)(struct lg_conn *c, struct lg_elem *roster);
	/* Any stanza received once online (and while closing). Roster
	 * pushes and pings are answered by the connection afterwards. */
	void (*stanza)(struct lg_conn *c, struct lg_elem *st);
	/* XEP-0077 outcome: cond NULL on success, else the error condition. */
	void (*registered)(struct lg_conn *c, const char *cond);
	/* Last call: c->fail is NULL after a clean close, else the reason.
	 * The connection is freed right after it returns. */
	void (*closed)(struct lg_conn *c);
};

enum lg_conn_flag {
	LG_WANT_ROSTER = 1 << 0,
	LG_WANT_PRESENCE = 1 << 1,
	LG_DO_REGISTER = 1 << 2,
};

struct lg_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	struct lg_run *run;
	const struct lg_conn_ops *ops;
	void *owner;
	int user;            /* index into run->users */
	int slot;            /* owner's index */
	unsigned flags;
	enum lg_phase phase;
	const char *fail;    /* static or interned failure reason */
	char *fail_owned;
	char *jid;           /* full JID after binding */
	uint64_t t_start, t_online;
	bool session_required, server_ended, tcp_inited;
	bool in_parse, restart, tls_done;
	bool corked;         /* a read is being processed: writes wait */
	struct lg_sbuf out;  /* what they wrote, sent when the read ends */
	int handles, sasl_step;
	SSL *ssl;
	BIO *net_in, *net_out;
	XML_Parser xp;
	long restart_at, fed;
	int depth;
	struct lg_elem *cur;
	struct lg_sbuf text;
	struct lg_arena arena;
	struct lg_scram scram;
	unsigned id_seq;
	/* lg_conn_capture: received bytes kept raw, oldest chunk first */
	struct lg_chunk *cap_head, *cap_tail;
	size_t cap_chunk;        /* 0: not capturing */
	uint64_t cap_bytes, cap_last;  /* bytes kept; lg_now_ns of the last */
	int cap_end;             /* the read error or EOF seen, else 0 */
};

/* Opens a connection for user `user`; callbacks fire later (never from
 * inside this call), `closed` exactly once. The connection belongs to the
 * run; the owner may use it until its `closed` callback returns. */
struct lg_conn *lg_conn_open(struct lg_run *run, int user, unsigned flags,
			     const struct lg_conn_ops *ops, void *owner,
			     int slot);
/* Sends raw XML (must be complete stanzas) on an online connection. */
void lg_conn_send(struct lg_conn *c, const char *xml, size_t len);
void lg_conn_sends(struct lg_conn *c, const char *xml);
/* Ends the stream cleanly (</stream:stream>, waits for the server's, TLS
 * close_notify); `closed` fires later. Idempotent. */
void lg_conn_close(struct lg_conn *c);
/* Aborts the connection with `reason` (copied); `closed` fires later. */
void lg_conn_fail(struct lg_conn *c, const char *reason);
/* Returns a fresh iq id ("lgN") in `buf`. */
const char *lg_conn_next_id(struct lg_conn *c, char *buf, size_t size);

/* Pre-encrypted traffic (the burst scenario). lg_conn_seal encrypts
 * `xml` (complete stanzas) as one TLS record and appends the ciphertext
 * to `out` instead of sending it; false if the connection cannot (not
 * online, or TLS failed). The ciphertext must reach the socket before
 * anything else is sent on the connection: lg_conn_write_raw writes it
 * as it is (`data` must live until `cb`; req->data is the caller's).
 * lg_conn_capture stops the normal read path: received bytes are kept
 * raw, undecrypted, in chunks of `chunk` bytes that the kernel reads
 * into directly; lg_conn_replay feeds them through TLS and the parser
 * in order (stanza callbacks fire then), frees them and reads normally
 * again. */
bool lg_conn_seal(struct lg_conn *c, const char *xml, size_t len,
		  struct lg_sbuf *out);
int lg_conn_write_raw(struct lg_conn *c, uv_write_t *req, const char *data,
		      size_t len, uv_write_cb cb);
/* Bytes written but not yet taken by the peer (libuv's queue and the
 * socket's send queue: on loopback, what the server has not read). */
uint64_t lg_conn_unsent(struct lg_conn *c);
void lg_conn_capture(struct lg_conn *c, size_t chunk);
void lg_conn_replay(struct lg_conn *c);

/* ---- loadgen.c: the run ---- */

struct lg_user {
	char *name;          /* localpart */
	char *password;
	char *bare;          /* name@domain */
	struct lg_scram_cache cache;
};

struct lg_opts {
	const char *scenario;
	const char *host, *domain, *prefix, *password, *ca_file;
	const char *mechanism;    /* NULL: SCRAM-SHA-256, else SCRAM-SHA-1 */
	int port;
	int count, sessions, pairs, concurrency, window, contacts, togglers;
	int size, server_pid, threads;
	int fill, queries, page;  /* mam */
	int messages, quiet_ms, max_mem_mb, chunk_kb;  /* burst */
	double duration, rate, timeout, hold, grace, settle;
	bool tls_verify, warmup;
	uint32_t src_lo, src_hi;  /* host order; 0 = no source binding */
};

/* One loop's run. With --threads (login only) every thread has its own,
 * copied from the main one: options, accounts and the TLS context are
 * shared (read-only but for a user's SCRAM cache, which only the
 * thread owning that user touches); loop, counters and scenario state
 * are the thread's. */
struct lg_run {
	uv_loop_t *loop;
	SSL_CTX *ssl_ctx;
	struct sockaddr_storage dst;
	struct lg_opts o;
	struct lg_user *users;
	int nusers;
	int thread, nthreads;    /* this loop's index, and how many */
	void *sc;                /* the scenario's per-thread state */
	uint32_t src_next;
	unsigned live;       /* connections not yet freed */
	bool stopping;
	bool warmup;             /* login: the --warmup pass */
	uint64_t t0;
	struct lg_counts fails;  /* connection failures by reason */
	struct lg_window window; /* the measured phase's CPU (main run) */
};

/* Returns the user index of the local part `local` of `jid` (bare or
 * full) if it is one of ours, else -1. */
int lg_user_index(const struct lg_run *run, const char *jid);
/* Fills `sa` with the next source address (127.0.X.Y cycling); returns
 * false when source binding is off. */
bool lg_next_source(struct lg_run *run, struct sockaddr_in *sa);

/* Scenario entry points: each starts its work on run->loop and returns;
 * the loop ends when the scenario has closed everything. Its report
 * lands in *status_r at the end (0 ok, 1 failures seen). */
void lg_scenario_register(struct lg_run *run, int *status_r);
void lg_scenario_login(struct lg_run *run, int *status_r);
void lg_scenario_idle(struct lg_run *run, int *status_r);
void lg_scenario_roster(struct lg_run *run, int *status_r);
void lg_scenario_msg(struct lg_run *run, int *status_r);
void lg_scenario_fanout(struct lg_run *run, int *status_r);
/* After every thread's loop has ended: the login RESULT of all threads
 * (`runs`, n of them) with the CPU window of `base`; warmup_failed:
 * logins of the --warmup pass that failed (they fail the run). */
void lg_login_report(struct lg_run *base, struct lg_run *runs, int n,
		     uint64_t warmup_failed, int *status_r);
/* After a --warmup pass on `run`'s loop: frees its login state and
 * returns how many of its logins failed. */
uint64_t lg_login_forget(struct lg_run *run);
void lg_scenario_muc(struct lg_run *run, int *status_r);
void lg_scenario_mam(struct lg_run *run, int *status_r);
void lg_scenario_burst(struct lg_run *run, int *status_r);

/* ---- msgcheck.c: the 1:1 message accounting of msg and burst ---- */

struct lg_msg_pair {
	char *to_jid, *from_jid;  /* receiver's, sender's full JIDs */
	struct lg_sbuf head;      /* "<message ... to='TO_JID'><body>lg:P:" */
	uint32_t next_seq, max_seen;
	uint64_t received, dup, ooo;
	uint8_t *seen;            /* bit per sequence number */
	size_t seen_cap;          /* bytes */
};

struct lg_msgcheck {
	struct lg_msg_pair *pairs;
	int npairs;
	char *padding;            /* " xxx..." for --size, or "" */
	uint64_t sent, received, dup, ooo, errors, unexpected, bogus;
	struct lg_counts error_conds;
};

/* --pairs (default count/2; exits with a usage error below 1) and the
 * --size padding. */
void lg_msgcheck_init(struct lg_msgcheck *m, const struct lg_run *run,
		      const char *scenario);
void lg_msgcheck_free(struct lg_msgcheck *m);
/* Records the full JID of a session of a pair once it is online. */
void lg_msgcheck_up(struct lg_msgcheck *m, const struct lg_conn *c);
/* Appends pair p's next message (stamped `stamp`) to `b`; counts it sent. */
void lg_msgcheck_build(struct lg_msgcheck *m, int p, uint64_t stamp,
		       struct lg_sbuf *b);
/* Accounts a stanza received on `c`: the pair of a message delivered
 * for the first time (its stamp in *stamp_r), else -1 (not a message,
 * an error bounce, a duplicate, an unexpected or bogus one). */
int lg_msgcheck_stanza(struct lg_msgcheck *m, const struct lg_conn *c,
		       struct lg_elem *st, uint64_t *stamp_r);
/* Prints " sent=… RECEIVED_KEY=… lost=… duplicated=… out_of_order=…
 * errors=… unexpected=… bogus=…" and the error conditions (err_…). */
void lg_msgcheck_print(const struct lg_msgcheck *m, const char *received_key);
/* True when anything was lost, duplicated, out of order, bounced,
 * unexpected or bogus, or nothing arrived. */
bool lg_msgcheck_failed(const struct lg_msgcheck *m);

/* ---- pool.c: a set of sessions opened with a concurrency limit ---- */

struct lg_pool;
struct lg_pool_ops {
	void (*up)(struct lg_pool *p, struct lg_conn *c,
		   struct lg_elem *roster);
	void (*stanza)(struct lg_pool *p, struct lg_conn *c,
		       struct lg_elem *st);
	void (*all_up)(struct lg_pool *p);   /* every slot up or failed */
	void (*all_closed)(struct lg_pool *p);
};

struct lg_pool {
	struct lg_run *run;
	const struct lg_pool_ops *ops;
	void *ctx;
	struct lg_conn **conns;  /* per slot; NULL unless online */
	int count, next, opening, up, failed, dropped, live;
	unsigned flags;
	bool all_up_done, closing;
	uint64_t t_start, t_all_up;
};

/* Opens `count` sessions, slot i as user (i % run->nusers), at most
 * run->o.concurrency handshakes at a time. */
void lg_pool_start(struct lg_pool *p, struct lg_run *run, int count,
		   unsigned flags, const struct lg_pool_ops *ops, void *ctx);
/* Stops opening sessions and closes every open one cleanly.
 * ops->all_closed fires once all are gone: from a later callback, or
 * before this returns when nothing was open. */
void lg_pool_close(struct lg_pool *p);
void lg_pool_free(struct lg_pool *p);
/* Human + RESULT fragments shared by the pool scenarios. */
void lg_pool_print(const struct lg_pool *p);

/* Prints the common start of the RESULT line ("RESULT scenario=..."). */
void lg_result_begin(const struct lg_run *run);
/* Prints failures, ends the line and flushes. */
void lg_result_end(const struct lg_run *run);

#endif
