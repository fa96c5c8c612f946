/*
 * sc_roster.c - the load generator's presence scenarios (RFC 6121).
 * `roster` makes user i a mutual contact (subscription both) of K others
 * by subscribe/subscribed exchanges over XMPP, then verifies with a
 * roster get per user. `fanout` brings users with such rosters online and
 * has a subset change presence (available/away) at a rate; it counts the
 * broadcasts every session receives against the number expected from the
 * rosters. Contacts form a ring: user i's contacts are i±1..i±K/2 (mod
 * N), plus i+N/2 when K is odd, so every user has exactly K of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

#define NS_ROSTER "jabber:iq:roster"

static void close_timer(uv_timer_t *t)
{
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, NULL);
}

/* ---- the contact ring ---- */

static int ring_n, ring_k;

static void ring_init(const struct lg_run *run)
{
	ring_n = run->nusers;
	ring_k = run->o.contacts;
	if (ring_k > ring_n - 1 || (ring_k % 2 && ring_n % 2)) {
		fprintf(stderr, "loadgen: --contacts %d needs --count > %d "
			"(and an even --count when odd)\n", ring_k, ring_k);
		exit(2);
	}
}

/* Slot of contact j in user i's list, or -1 if j is not a contact. */
static int ring_slot(int i, int j)
{
	int h = ring_k / 2;
	if (i < 0 || j < 0 || i == j)
		return -1;
	int d = ((j - i) % ring_n + ring_n) % ring_n;
	if (d <= h)
		return d - 1;
	if (ring_n - d <= h)
		return h + (ring_n - d) - 1;
	if (ring_k % 2 && d == ring_n / 2)
		return 2 * h;
	return -1;
}

/* User in slot s of user i's list. */
static int ring_contact(int i, int s)
{
	int h = ring_k / 2;
	int d = s < h ? s + 1 : s < 2 * h ? -(s - h + 1) : ring_n / 2;
	return ((i + d) % ring_n + ring_n) % ring_n;
}

/* RFC 6121 §2.1.2.5 subscription states as two bits. */
enum { SUB_TO = 1, SUB_FROM = 2, SUB_BOTH = 3 };

static unsigned sub_bits(const char *s)
{
	if (!s)
		return 0;
	if (!strcmp(s, "both"))
		return SUB_BOTH;
	if (!strcmp(s, "to"))
		return SUB_TO;
	return !strcmp(s, "from") ? SUB_FROM : 0;
}

static const char *bare_of(const char *jid, char *buf, size_t size)
{
	snprintf(buf, size, "%s", jid ? jid : "");
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	return buf;
}

/* ---- roster ---- */

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	unsigned char *sub;      /* [user * K + slot] */
	uint64_t both, subscribes, approvals, pushes, foreign;
	uint64_t verified_both, verified_users;
	int verify_pending;
	size_t cursor;           /* next (user, slot) to subscribe */
	bool verifying, reported;
	uv_timer_t tick, end;
	uint64_t t_start;
} ros;

static void roster_set(int i, int j, const char *subscription)
{
	int s = ring_slot(i, j);
	if (s < 0) {
		ros.foreign++;
		return;
	}
	unsigned char *st = &ros.sub[(size_t)i * ring_k + s];
	unsigned v = sub_bits(subscription);
	ros.both += (v == SUB_BOTH) - (*st == SUB_BOTH);
	*st = (unsigned char)v;
}

static void roster_items(int i, const struct lg_elem *query)
{
	for (struct lg_elem *it = query->child; it; it = it->next) {
		if (strcmp(it->name, "item") != 0)
			continue;
		int j = lg_user_index(ros.run, lg_attr(it, "jid"));
		roster_set(i, j, lg_attr(it, "subscription"));
	}
}

static void roster_up(struct lg_pool *p, struct lg_conn *c,
		      struct lg_elem *roster)
{
	if (roster)
		roster_items(c->slot, roster);
}

static void roster_verify(void);

static void roster_check_done(void)
{
	if (!ros.verifying &&
	    ros.both == (uint64_t)ring_n * (uint64_t)ring_k)
		roster_verify();
}

/* Approves subscription requests from planned contacts only. */
static void roster_presence(struct lg_conn *c, struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	char bare[512];
	bare_of(lg_attr(st, "from"), bare, sizeof(bare));
	int j = lg_user_index(ros.run, bare);
	if (!type || strcmp(type, "subscribe") || ring_slot(c->slot, j) < 0)
		return;
	char *xml = lg_xasprintf("<presence to='%s' type='subscribed'/>",
				 ros.run->users[j].bare);
	lg_conn_sends(c, xml);
	free(xml);
	ros.approvals++;
}

static void roster_verified(struct lg_conn *c, struct lg_elem *st)
{
	struct lg_elem *q = lg_child(st, NS_ROSTER, "query");
	const char *type = lg_attr(st, "type");
	ros.verify_pending--;
	if (q && type && !strcmp(type, "result")) {
		ros.verified_users++;
		for (struct lg_elem *it = q->child; it; it = it->next) {
			int j = lg_user_index(ros.run, lg_attr(it, "jid"));
			if (!strcmp(it->name, "item") &&
			    ring_slot(c->slot, j) >= 0 &&
			    sub_bits(lg_attr(it, "subscription")) == SUB_BOTH)
				ros.verified_both++;
		}
	}
	if (ros.verify_pending == 0)
		lg_pool_close(&ros.pool);
}

static void roster_stanza(struct lg_pool *p, struct lg_conn *c,
			  struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	const char *id = lg_attr(st, "id");
	if (!strcmp(st->name, "presence")) {
		roster_presence(c, st);
	} else if (!strcmp(st->name, "iq") && type && !strcmp(type, "set") &&
		   lg_child(st, NS_ROSTER, "query")) {
		ros.pushes++;
		roster_items(c->slot, lg_child(st, NS_ROSTER, "query"));
		roster_check_done();
	} else if (!strcmp(st->name, "iq") && id && !strcmp(id, "verify") &&
		   ros.verifying) {
		roster_verified(c, st);
	}
}

/* Sends up to `budget` subscribes for pairs not yet subscribed "to". */
static void roster_send(uint64_t budget)
{
	size_t total = (size_t)ring_n * ring_k;
	while (budget && ros.cursor < total) {
		size_t at = ros.cursor++;
		int i = (int)(at / ring_k), s = (int)(at % ring_k);
		struct lg_conn *c = ros.pool.conns[i];
		if (!c || (ros.sub[at] & SUB_TO))
			continue;
		int j = ring_contact(i, s);
		char *xml = lg_xasprintf("<presence to='%s' type='subscribe'/>",
					 ros.run->users[j].bare);
		lg_conn_sends(c, xml);
		free(xml);
		ros.subscribes++;
		budget--;
	}
}

static void roster_tick(uv_timer_t *t)
{
	double rate = ros.run->o.rate > 0 ? ros.run->o.rate : 2000;
	uint64_t due = (uint64_t)(rate * (lg_now_ns() - ros.t_start) / 1e9);
	if (due > ros.subscribes)
		roster_send(due - ros.subscribes);
	if (ros.cursor >= (size_t)ring_n * ring_k)
		uv_timer_stop(&ros.tick);
}

static void roster_report(void)
{
	struct lg_run *run = ros.run;
	uint64_t expected = (uint64_t)ring_n * ring_k;
	if (ros.reported)
		return;
	ros.reported = true;
	printf("roster: %d users x %d contacts: %llu of %llu items 'both' "
	       "after %.2f s (%llu subscribes, %llu approvals, %llu pushes)\n",
	       ring_n, ring_k, (unsigned long long)ros.verified_both,
	       (unsigned long long)expected,
	       (lg_now_ns() - ros.t_start) / 1e9,
	       (unsigned long long)ros.subscribes,
	       (unsigned long long)ros.approvals,
	       (unsigned long long)ros.pushes);
	lg_result_begin(run);
	lg_pool_print(&ros.pool);
	printf(" contacts=%d expected=%llu both=%llu missing=%llu "
	       "verified_users=%llu subscribes=%llu approvals=%llu "
	       "pushes=%llu foreign_items=%llu", ring_k,
	       (unsigned long long)expected,
	       (unsigned long long)ros.verified_both,
	       (unsigned long long)(expected - ros.verified_both),
	       (unsigned long long)ros.verified_users,
	       (unsigned long long)ros.subscribes,
	       (unsigned long long)ros.approvals,
	       (unsigned long long)ros.pushes,
	       (unsigned long long)ros.foreign);
	lg_result_end(run);
	*ros.status_r = ros.verified_both != expected || run->fails.len;
}

static void roster_all_closed(struct lg_pool *p)
{
	roster_report();
	close_timer(&ros.tick);
	close_timer(&ros.end);
	lg_pool_free(p);
	free(ros.sub);
}

/* Verification gets at most --grace seconds, then the pool closes. */
static void roster_verify_timeout(uv_timer_t *t)
{
	lg_pool_close(&ros.pool);
}

static void roster_verify(void)
{
	ros.verifying = true;
	uv_timer_stop(&ros.tick);
	for (int i = 0; i < ros.pool.count; i++) {
		struct lg_conn *c = ros.pool.conns[i];
		if (!c)
			continue;
		lg_conn_sends(c, "<iq type='get' id='verify'><query xmlns='"
				 NS_ROSTER "'/></iq>");
		ros.verify_pending++;
	}
	uv_timer_start(&ros.end, roster_verify_timeout,
		       (uint64_t)(ros.run->o.grace * 1e3) + 1, 0);
	if (ros.verify_pending == 0)
		lg_pool_close(&ros.pool);
}

static void roster_end(uv_timer_t *t)
{
	if (!ros.verifying)
		roster_verify();
}

static void roster_all_up(struct lg_pool *p)
{
	ros.t_start = lg_now_ns();
	uv_timer_start(&ros.end, roster_end,
		       (uint64_t)(ros.run->o.duration * 1e3), 0);
	uv_timer_start(&ros.tick, roster_tick, 1, 10);
	roster_check_done();
}

static const struct lg_pool_ops roster_ops = {
	.up = roster_up,
	.stanza = roster_stanza,
	.all_up = roster_all_up,
	.all_closed = roster_all_closed,
};

void lg_scenario_roster(struct lg_run *run, int *status_r)
{
	ring_init(run);
	ros.run = run;
	ros.status_r = status_r;
	ros.sub = lg_xcalloc((size_t)ring_n * ring_k, 1);
	uv_timer_init(run->loop, &ros.tick);
	uv_timer_init(run->loop, &ros.end);
	lg_pool_start(&ros.pool, run, run->nusers,
		      LG_WANT_ROSTER | LG_WANT_PRESENCE, &roster_ops, NULL);
}

/* ---- fanout ---- */

struct fan_user {
	int *audience;       /* users who get our presence, sorted */
	int n_audience;
	unsigned seq;
	bool away;
};

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	struct fan_user *users;
	int togglers, next_toggler;
	uint64_t toggles, expected, received, unexpected;
	uint64_t *per_sec;
	size_t n_sec;
	struct lg_hist hist;
	bool toggling, reported;
	uv_timer_t tick, end, settle;
	uint64_t t_start, t_stop, t_last;
	uint64_t received_at_go, received_at_stop; /* the CPU window's */
} fan;

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* Our presence goes to contacts with subscription from or both (RFC
 * 6121 §4.2.2, §4.4.2): their user indexes, from the roster result. */
static void fan_up(struct lg_pool *p, struct lg_conn *c,
		   struct lg_elem *roster)
{
	struct fan_user *u = &fan.users[c->slot];
	for (struct lg_elem *it = roster ? roster->child : NULL; it;
	     it = it->next) {
		int j = lg_user_index(fan.run, lg_attr(it, "jid"));
		if (strcmp(it->name, "item") || j < 0 || j == c->slot ||
		    !(sub_bits(lg_attr(it, "subscription")) & SUB_FROM))
			continue;
		size_t n = (size_t)u->n_audience + 1;
		u->audience = lg_xrealloc(u->audience, n * sizeof(int));
		u->audience[u->n_audience++] = j;
	}
	qsort(u->audience, (size_t)u->n_audience, sizeof(int), cmp_int);
}

/* One broadcast, if it is one of ours: "lg:SEQ:T" in <status>. */
static void fan_stanza(struct lg_pool *p, struct lg_conn *c,
		       struct lg_elem *st)
{
	char bare[512];
	unsigned seq;
	unsigned long long t;
	const char *status = lg_text(lg_child(st, NULL, "status"));
	if (strcmp(st->name, "presence") || lg_attr(st, "type") ||
	    sscanf(status, "lg:%u:%llu", &seq, &t) != 2)
		return;
	bare_of(lg_attr(st, "from"), bare, sizeof(bare));
	int j = lg_user_index(fan.run, bare);
	if (j == c->slot)
		return; /* our own presence, echoed to our resource */
	struct fan_user *sender = j >= 0 ? &fan.users[j] : NULL;
	if (!sender || !bsearch(&c->slot, sender->audience,
				(size_t)sender->n_audience, sizeof(int),
				cmp_int)) {
		fan.unexpected++;
		return;
	}
	uint64_t now = lg_now_ns();
	fan.received++;
	fan.t_last = now;
	lg_hist_add(&fan.hist, now > t ? (now - t) / 1000 : 0);
	size_t sec = (size_t)((now - fan.t_start) / 1000000000u);
	if (sec < fan.n_sec)
		fan.per_sec[sec]++;
}

static void fan_toggle(int i)
{
	struct fan_user *u = &fan.users[i];
	struct lg_conn *c = fan.pool.conns[i];
	if (!c)
		return;
	u->away = !u->away;
	char *xml = lg_xasprintf("<presence>%s<status>lg:%u:%llu</status>"
				 "</presence>", u->away ? "<show>away</show>" :
				 "", ++u->seq,
				 (unsigned long long)lg_now_ns());
	lg_conn_sends(c, xml);
	free(xml);
	fan.toggles++;
	for (int k = 0; k < u->n_audience; k++)
		if (fan.pool.conns[u->audience[k]])
			fan.expected++;
}

static void fan_tick(uv_timer_t *t)
{
	double rate = fan.run->o.rate > 0 ? fan.run->o.rate : fan.togglers;
	uint64_t due = (uint64_t)(rate * (lg_now_ns() - fan.t_start) / 1e9);
	while (fan.toggling && fan.toggles < due) {
		fan_toggle(fan.next_toggler);
		fan.next_toggler = (fan.next_toggler + 1) % fan.togglers;
	}
}

static void fan_report(void)
{
	struct lg_run *run = fan.run;
	double secs = (fan.t_stop - fan.t_start) / 1e9;
	double per_s = secs > 0 ? fan.received / secs : 0;
	uint64_t lost = fan.expected > fan.received ?
			fan.expected - fan.received : 0;
	printf("fanout: %llu toggles by %d users, %llu of %llu broadcasts "
	       "received (%.1f/s), %llu unexpected\n  per second:",
	       (unsigned long long)fan.toggles, fan.togglers,
	       (unsigned long long)fan.received,
	       (unsigned long long)fan.expected, per_s,
	       (unsigned long long)fan.unexpected);
	for (size_t s = 0; s < fan.n_sec; s++)
		printf(" %llu", (unsigned long long)fan.per_sec[s]);
	printf("\n");
	lg_result_begin(run);
	lg_pool_print(&fan.pool);
	printf(" togglers=%d toggles=%llu expected=%llu received=%llu "
	       "lost=%llu extra=%llu unexpected=%llu broadcasts_per_s=%.1f",
	       fan.togglers, (unsigned long long)fan.toggles,
	       (unsigned long long)fan.expected,
	       (unsigned long long)fan.received, (unsigned long long)lost,
	       (unsigned long long)(fan.received > fan.expected ?
				    fan.received - fan.expected : 0),
	       (unsigned long long)fan.unexpected, per_s);
	lg_hist_print(&fan.hist, "lat");
	/* CPU while toggling, per broadcast received in that time. */
	lg_window_print(&run->window,
			(double)(fan.received_at_stop - fan.received_at_go),
			"broadcast");
	lg_result_end(run);
	*fan.status_r = fan.received != fan.expected || fan.unexpected ||
			!fan.toggles || run->fails.len;
}

static void fan_all_closed(struct lg_pool *p)
{
	fan_report();
	for (int i = 0; i < fan.pool.count; i++)
		free(fan.users[i].audience);
	free(fan.users);
	free(fan.per_sec);
	lg_pool_free(p);
	close_timer(&fan.tick);
	close_timer(&fan.end);
	close_timer(&fan.settle);
}

/* After the toggling: wait until every broadcast is in, or --grace. */
static void fan_grace(uv_timer_t *t)
{
	uint64_t waited = lg_now_ns() - fan.t_stop;
	if (fan.received >= fan.expected || waited >= fan.run->o.grace * 1e9)
		lg_pool_close(&fan.pool);
}

static void fan_end(uv_timer_t *t)
{
	fan.toggling = false;
	fan.t_stop = lg_now_ns();
	lg_window_end(&fan.run->window, fan.run->o.server_pid);
	fan.received_at_stop = fan.received;
	uv_timer_stop(&fan.tick);
	uv_timer_start(&fan.end, fan_grace, 10, 10);
}

static void fan_go(uv_timer_t *t)
{
	fan.toggling = true;
	lg_window_begin(&fan.run->window, fan.run->o.server_pid);
	fan.received_at_go = fan.received;
	fan.t_start = lg_now_ns();
	uv_timer_start(&fan.tick, fan_tick, 1, 1);
	uv_timer_start(&fan.end, fan_end,
		       (uint64_t)(fan.run->o.duration * 1e3), 0);
}

/* Initial presence floods (probes, broadcasts) settle before we count. */
static void fan_all_up(struct lg_pool *p)
{
	uv_timer_start(&fan.settle, fan_go,
		       (uint64_t)(fan.run->o.settle * 1e3), 0);
}

static const struct lg_pool_ops fan_ops = {
	.up = fan_up,
	.stanza = fan_stanza,
	.all_up = fan_all_up,
	.all_closed = fan_all_closed,
};

void lg_scenario_fanout(struct lg_run *run, int *status_r)
{
	fan.run = run;
	fan.status_r = status_r;
	fan.togglers = run->o.togglers ? run->o.togglers : run->nusers / 10;
	if (fan.togglers < 1)
		fan.togglers = 1;
	if (fan.togglers > run->nusers)
		fan.togglers = run->nusers;
	fan.users = lg_xcalloc((size_t)run->nusers, sizeof(*fan.users));
	fan.n_sec = (size_t)(run->o.duration + run->o.grace) + 2;
	fan.per_sec = lg_xcalloc(fan.n_sec, sizeof(*fan.per_sec));
	uv_timer_init(run->loop, &fan.tick);
	uv_timer_init(run->loop, &fan.end);
	uv_timer_init(run->loop, &fan.settle);
	lg_pool_start(&fan.pool, run, run->nusers,
		      LG_WANT_ROSTER | LG_WANT_PRESENCE, &fan_ops, NULL);
}
