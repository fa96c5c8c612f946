/*
 * test_subscription.c - the RFC 6121 subscription state machine
 * (src/mod/roster/subscription.c): every row of Appendix A Tables 2-9,
 * contacts outside the roster, pre-approval (§3.4), cross-checks of the
 * actions over every valid item, and the roster attribute mapping (§2.1.2).
 *
 * Expected values are written out from the RFC, never computed from the
 * module's own tables, so a one-cell change in a table fails a row here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mod/roster/subscription.h"

#define RT SUB_ACT_ROUTE
#define DLV SUB_ACT_DELIVER
#define PUSH SUB_ACT_PUSH
#define PRES SUB_ACT_SEND_PRESENCE
#define UNAV SUB_ACT_SEND_UNAVAILABLE
#define RSUBD SUB_ACT_REPLY_SUBSCRIBED
#define RUNSUBD SUB_ACT_REPLY_UNSUBSCRIBED
#define KEEP SUB_ACT_STORE_REQUEST
#define DROP SUB_ACT_DROP_REQUEST
#define NEW SUB_ACT_CREATE_ITEM
#define SAVE SUB_ACT_SAVE

#define S_N SUB_NONE
#define S_NPO SUB_NONE_PENDING_OUT
#define S_NPI SUB_NONE_PENDING_IN
#define S_NPOI SUB_NONE_PENDING_OUT_IN
#define S_T SUB_TO
#define S_TPI SUB_TO_PENDING_IN
#define S_F SUB_FROM
#define S_FPO SUB_FROM_PENDING_OUT
#define S_B SUB_BOTH

enum dir { OUT, IN };

/* One transition: the item before, the stanza, the item and actions
 * after. */
struct tcase {
	int line;
	enum dir dir;
	enum sub_type type;
	bool preapproval; /* outbound only: server supports §3.4 */
	struct sub_item cur;
	struct sub_item want;
	unsigned acts;
};

/* An item in the roster, without pre-approval: the tables' own case. */
#define IT(s) ((struct sub_item){ (s), false, true })
/* Pre-approved (§3.4), hence in the roster. */
#define AP(s) ((struct sub_item){ (s), true, true })
/* Not in the roster (Appendix A.1 implementation note, state 3). */
#define OUTR(s) ((struct sub_item){ (s), false, false })

static void describe(char *out, size_t n, struct sub_item it)
{
	snprintf(out, n, "%s%s%s", sub_state_name(it.state),
		 it.pre_approved ? " approved" : "",
		 it.in_roster ? "" : " (not in roster)");
}

static const char *acts_str(unsigned acts, char *out, size_t n)
{
	struct buf b = { 0 };

	assert_int_equal(sub_actions_to_buf(&b, acts), 0);
	snprintf(out, n, "%.*s", STR_FMT(buf_str(&b)));
	buf_reset(&b);
	return out;
}

static void check_case(const struct tcase *c)
{
	struct sub_result r;
	char cur[80], want[80], got[80], wa[200], ga[200];

	if (c->dir == OUT)
		r = sub_outbound(c->cur, c->type, c->preapproval);
	else
		r = sub_inbound(c->cur, c->type);
	if (sub_item_eq(r.item, c->want) && r.actions == c->acts)
		return;
	describe(cur, sizeof(cur), c->cur);
	describe(want, sizeof(want), c->want);
	describe(got, sizeof(got), r.item);
	fail_msg("line %d: %s %s from \"%s\": want \"%s\" %s, got \"%s\" %s",
		 c->line, c->dir == OUT ? "outbound" : "inbound",
		 sub_type_name(c->type), cur, want,
		 acts_str(c->acts, wa, sizeof(wa)), got,
		 acts_str(r.actions, ga, sizeof(ga)));
}

/* A row of one RFC table, for an item in the roster without
 * pre-approval. */
struct row {
	int line;
	enum sub_state from;
	enum sub_state to;
	unsigned acts;
};

#define ROW(f, t, a) { __LINE__, (f), (t), (a) }

/* Runs every row and checks the table has each of the nine states once. */
static void run_table(enum dir d, enum sub_type t, bool preapproval,
		      const struct row *rows, size_t n)
{
	bool seen[SUB_STATE_COUNT] = { false };

	assert_int_equal(n, SUB_STATE_COUNT);
	for (size_t i = 0; i < n; i++) {
		struct tcase c = { rows[i].line, d, t, preapproval,
				   IT(rows[i].from), IT(rows[i].to),
				   rows[i].acts };

		assert_false(seen[rows[i].from]);
		seen[rows[i].from] = true;
		check_case(&c);
	}
}

#define RUN(d, t, pre, rows) \
	run_table((d), (t), (pre), (rows), sizeof(rows) / sizeof((rows)[0]))

/*
 * RFC 6121 A.2.1, Table 2: outbound "subscribe". ROUTE? is MUST on every
 * row; a change to Pending Out sets ask='subscribe' [1], which the roster
 * push of §3.1.2 carries.
 */
static void test_a21_out_subscribe(void **state)
{
	static const struct row rows[] = {
		/* "None": MUST [1], -> "None + Pending Out" */
		ROW(S_N, S_NPO, RT | PUSH | SAVE),
		/* "None + Pending Out": MUST, no state change */
		ROW(S_NPO, S_NPO, RT),
		/* "None + Pending In": MUST [1], -> "None + Pending Out+In" */
		ROW(S_NPI, S_NPOI, RT | PUSH | SAVE),
		/* "None + Pending Out+In": MUST, no state change */
		ROW(S_NPOI, S_NPOI, RT),
		/* "To": MUST, no state change */
		ROW(S_T, S_T, RT),
		/* "To + Pending In": MUST, no state change */
		ROW(S_TPI, S_TPI, RT),
		/* "From": MUST [1], -> "From + Pending Out" */
		ROW(S_F, S_FPO, RT | PUSH | SAVE),
		/* "From + Pending Out": MUST, no state change */
		ROW(S_FPO, S_FPO, RT),
		/* "Both": MUST, no state change */
		ROW(S_B, S_B, RT),
	};
	(void)state;
	RUN(OUT, SUB_SUBSCRIBE, false, rows);
	RUN(OUT, SUB_SUBSCRIBE, true, rows);
}

/*
 * RFC 6121 A.2.2, Table 3: outbound "unsubscribe". ROUTE? is MUST on
 * every row; §3.3.2 pushes the item whose state changed.
 */
static void test_a22_out_unsubscribe(void **state)
{
	static const struct row rows[] = {
		/* "None": MUST, no state change */
		ROW(S_N, S_N, RT),
		/* "None + Pending Out": MUST, -> "None" */
		ROW(S_NPO, S_N, RT | PUSH | SAVE),
		/* "None + Pending In": MUST, no state change */
		ROW(S_NPI, S_NPI, RT),
		/* "None + Pending Out+In": MUST, -> "None + Pending In" */
		ROW(S_NPOI, S_NPI, RT | PUSH | SAVE),
		/* "To": MUST, -> "None" */
		ROW(S_T, S_N, RT | PUSH | SAVE),
		/* "To + Pending In": MUST, -> "None + Pending In" */
		ROW(S_TPI, S_NPI, RT | PUSH | SAVE),
		/* "From": MUST, no state change */
		ROW(S_F, S_F, RT),
		/* "From + Pending Out": MUST, -> "From" */
		ROW(S_FPO, S_F, RT | PUSH | SAVE),
		/* "Both": MUST, -> "From" */
		ROW(S_B, S_F, RT | PUSH | SAVE),
	};
	(void)state;
	RUN(OUT, SUB_UNSUBSCRIBE, false, rows);
	RUN(OUT, SUB_UNSUBSCRIBE, true, rows);
}

/*
 * RFC 6121 A.2.3, Table 4: outbound "subscribed", on a server without
 * pre-approval support (the pre-approval rows [1] are then no-ops; with
 * support see test_preapproval_grant). An approval routes, pushes, sends
 * the user's presence (§3.1.5) and drops the stored request.
 */
static void test_a23_out_subscribed(void **state)
{
	static const struct row rows[] = {
		/* "None": M.N., pre-approval [1] */
		ROW(S_N, S_N, 0),
		/* "None + Pending Out": M.N., pre-approval [1] */
		ROW(S_NPO, S_NPO, 0),
		/* "None + Pending In": MUST, -> "From" */
		ROW(S_NPI, S_F, RT | PUSH | PRES | DROP | SAVE),
		/* "None + Pending Out+In": MUST, -> "From + Pending Out" */
		ROW(S_NPOI, S_FPO, RT | PUSH | PRES | DROP | SAVE),
		/* "To": M.N., pre-approval [1] */
		ROW(S_T, S_T, 0),
		/* "To + Pending In": MUST, -> "Both" */
		ROW(S_TPI, S_B, RT | PUSH | PRES | DROP | SAVE),
		/* "From": M.N., no state change (§3.4.2 step 1: ignore) */
		ROW(S_F, S_F, 0),
		/* "From + Pending Out": M.N., no state change */
		ROW(S_FPO, S_FPO, 0),
		/* "Both": M.N., no state change */
		ROW(S_B, S_B, 0),
	};
	(void)state;
	RUN(OUT, SUB_SUBSCRIBED, false, rows);
}

/*
 * RFC 6121 A.2.4, Table 5: outbound "unsubscribed" (no pre-approval
 * present; with one see test_preapproval_cancel). Cancelling From sends
 * unavailable presence first (§3.2.2); denying drops the stored request.
 */
static void test_a24_out_unsubscribed(void **state)
{
	static const struct row rows[] = {
		/* "None": S.N., no state change [1] */
		ROW(S_N, S_N, 0),
		/* "None + Pending Out": S.N., no state change [1] */
		ROW(S_NPO, S_NPO, 0),
		/* "None + Pending In": MUST, -> "None" */
		ROW(S_NPI, S_N, RT | PUSH | DROP | SAVE),
		/* "None + Pending Out+In": MUST, -> "None + Pending Out" */
		ROW(S_NPOI, S_NPO, RT | PUSH | DROP | SAVE),
		/* "To": S.N., no state change [1] */
		ROW(S_T, S_T, 0),
		/* "To + Pending In": MUST, -> "To" */
		ROW(S_TPI, S_T, RT | PUSH | DROP | SAVE),
		/* "From": MUST, -> "None" */
		ROW(S_F, S_N, RT | PUSH | UNAV | SAVE),
		/* "From + Pending Out": MUST, -> "None + Pending Out" */
		ROW(S_FPO, S_NPO, RT | PUSH | UNAV | SAVE),
		/* "Both": MUST, -> "To" */
		ROW(S_B, S_T, RT | PUSH | UNAV | SAVE),
	};
	(void)state;
	RUN(OUT, SUB_UNSUBSCRIBED, false, rows);
	RUN(OUT, SUB_UNSUBSCRIBED, true, rows);
}

/*
 * RFC 6121 A.3.1, Table 6: inbound "subscribe" (no pre-approval; with one
 * see test_preapproval_auto_reply). A delivered request is kept for
 * redelivery (§3.1.3 rule 4); rows [2] auto-reply "subscribed" (§3.1.3
 * rule 2) with the user's presence.
 */
static void test_a31_in_subscribe(void **state)
{
	static const struct row rows[] = {
		/* "None": MUST [1], -> "None + Pending In" */
		ROW(S_N, S_NPI, DLV | KEEP | SAVE),
		/* "None + Pending Out": MUST, -> "None + Pending Out+In" */
		ROW(S_NPO, S_NPOI, DLV | KEEP | SAVE),
		/* "None + Pending In": S.N., no state change */
		ROW(S_NPI, S_NPI, 0),
		/* "None + Pending Out+In": S.N., no state change */
		ROW(S_NPOI, S_NPOI, 0),
		/* "To": MUST, -> "To + Pending In" */
		ROW(S_T, S_TPI, DLV | KEEP | SAVE),
		/* "To + Pending In": S.N., no state change */
		ROW(S_TPI, S_TPI, 0),
		/* "From": S.N. [2], no state change */
		ROW(S_F, S_F, RSUBD | PRES),
		/* "From + Pending Out": S.N. [2], no state change */
		ROW(S_FPO, S_FPO, RSUBD | PRES),
		/* "Both": S.N. [2], no state change */
		ROW(S_B, S_B, RSUBD | PRES),
	};
	(void)state;
	RUN(IN, SUB_SUBSCRIBE, false, rows);
}

/*
 * RFC 6121 A.3.2, Table 7: inbound "unsubscribe". MUST [1] rows deliver
 * and auto-reply "unsubscribed"; losing From pushes and sends unavailable
 * presence (§3.3.3 steps 2-3); a withdrawn request is dropped.
 */
static void test_a32_in_unsubscribe(void **state)
{
	static const struct row rows[] = {
		/* "None": S.N., no state change */
		ROW(S_N, S_N, 0),
		/* "None + Pending Out": S.N., no state change */
		ROW(S_NPO, S_NPO, 0),
		/* "None + Pending In": MUST [1], -> "None" */
		ROW(S_NPI, S_N, DLV | RUNSUBD | DROP | SAVE),
		/* "None + Pending Out+In": MUST [1], -> "None + Pending Out" */
		ROW(S_NPOI, S_NPO, DLV | RUNSUBD | DROP | SAVE),
		/* "To": S.N., no state change */
		ROW(S_T, S_T, 0),
		/* "To + Pending In": MUST [1], -> "To" */
		ROW(S_TPI, S_T, DLV | RUNSUBD | DROP | SAVE),
		/* "From": MUST [1], -> "None" */
		ROW(S_F, S_N, DLV | PUSH | UNAV | RUNSUBD | SAVE),
		/* "From + Pending Out": MUST [1], -> "None + Pending Out" */
		ROW(S_FPO, S_NPO, DLV | PUSH | UNAV | RUNSUBD | SAVE),
		/* "Both": MUST [1], -> "To" */
		ROW(S_B, S_T, DLV | PUSH | UNAV | RUNSUBD | SAVE),
	};
	(void)state;
	RUN(IN, SUB_UNSUBSCRIBE, false, rows);
}

/*
 * RFC 6121 A.3.3, Table 8: inbound "subscribed". MUST rows deliver, then
 * push (§3.1.6 steps 1-2); S.N. rows are silently ignored.
 */
static void test_a33_in_subscribed(void **state)
{
	static const struct row rows[] = {
		/* "None": S.N., no state change */
		ROW(S_N, S_N, 0),
		/* "None + Pending Out": MUST, -> "To" */
		ROW(S_NPO, S_T, DLV | PUSH | SAVE),
		/* "None + Pending In": S.N., no state change */
		ROW(S_NPI, S_NPI, 0),
		/* "None + Pending Out+In": MUST, -> "To + Pending In" */
		ROW(S_NPOI, S_TPI, DLV | PUSH | SAVE),
		/* "To": S.N., no state change */
		ROW(S_T, S_T, 0),
		/* "To + Pending In": S.N., no state change */
		ROW(S_TPI, S_TPI, 0),
		/* "From": S.N., no state change */
		ROW(S_F, S_F, 0),
		/* "From + Pending Out": MUST, -> "Both" */
		ROW(S_FPO, S_B, DLV | PUSH | SAVE),
		/* "Both": S.N., no state change */
		ROW(S_B, S_B, 0),
	};
	(void)state;
	RUN(IN, SUB_SUBSCRIBED, false, rows);
}

/*
 * RFC 6121 A.3.4, Table 9: inbound "unsubscribed". MUST rows deliver, then
 * push (§3.2.3 steps 1-2); S.N. rows are silently ignored.
 */
static void test_a34_in_unsubscribed(void **state)
{
	static const struct row rows[] = {
		/* "None": S.N., no state change */
		ROW(S_N, S_N, 0),
		/* "None + Pending Out": MUST, -> "None" */
		ROW(S_NPO, S_N, DLV | PUSH | SAVE),
		/* "None + Pending In": S.N., no state change */
		ROW(S_NPI, S_NPI, 0),
		/* "None + Pending Out+In": MUST, -> "None + Pending In" */
		ROW(S_NPOI, S_NPI, DLV | PUSH | SAVE),
		/* "To": MUST, -> "None" */
		ROW(S_T, S_N, DLV | PUSH | SAVE),
		/* "To + Pending In": MUST, -> "None + Pending In" */
		ROW(S_TPI, S_NPI, DLV | PUSH | SAVE),
		/* "From": S.N., no state change */
		ROW(S_F, S_F, 0),
		/* "From + Pending Out": MUST, -> "From" */
		ROW(S_FPO, S_F, DLV | PUSH | SAVE),
		/* "Both": MUST, -> "From" */
		ROW(S_B, S_F, DLV | PUSH | SAVE),
	};
	(void)state;
	RUN(IN, SUB_UNSUBSCRIBED, false, rows);
}

#define CASE(d, t, pre, cur, want, acts) \
	{ __LINE__, (d), (t), (pre), cur, want, (acts) }

static void run_cases(const struct tcase *cs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_case(&cs[i]);
}

#define RUN_CASES(cs) run_cases((cs), sizeof(cs) / sizeof((cs)[0]))

/*
 * A contact outside the roster is in "None", or in "None + Pending In"
 * when it asked first (Appendix A.1 note and state 3). The item is created
 * by the user's own subscribe (§3.1.2 push) or approval (A.1 state 3), and
 * never by the contact (§3.1.3 security warning); nothing is pushed while
 * there is no item.
 */
static void test_outside_roster(void **state)
{
	static const struct tcase cs[] = {
		/* A.2.1 "None" / "None + Pending In": the item is created
		 * with ask='subscribe' (§3.1.2). */
		CASE(OUT, SUB_SUBSCRIBE, false, OUTR(S_N), IT(S_NPO),
		     RT | PUSH | NEW | SAVE),
		CASE(OUT, SUB_SUBSCRIBE, false, OUTR(S_NPI), IT(S_NPOI),
		     RT | PUSH | NEW | SAVE),
		/* A.2.2 "None" / "None + Pending In": MUST route, no item. */
		CASE(OUT, SUB_UNSUBSCRIBE, false, OUTR(S_N), OUTR(S_N), RT),
		CASE(OUT, SUB_UNSUBSCRIBE, false, OUTR(S_NPI), OUTR(S_NPI),
		     RT),
		/* A.2.3 "None": nothing without pre-approval support. */
		CASE(OUT, SUB_SUBSCRIBED, false, OUTR(S_N), OUTR(S_N), 0),
		/* A.2.3 "None + Pending In": approving adds the contact
		 * (A.1 state 3: "wait until the user has approved"). */
		CASE(OUT, SUB_SUBSCRIBED, false, OUTR(S_NPI), IT(S_F),
		     RT | PUSH | PRES | DROP | NEW | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, OUTR(S_NPI), IT(S_F),
		     RT | PUSH | PRES | DROP | NEW | SAVE),
		/* A.2.4 "None": S.N.; "None + Pending In": a denial routes
		 * and forgets the request but adds nothing to the roster. */
		CASE(OUT, SUB_UNSUBSCRIBED, false, OUTR(S_N), OUTR(S_N), 0),
		CASE(OUT, SUB_UNSUBSCRIBED, false, OUTR(S_NPI), OUTR(S_N),
		     RT | DROP | SAVE),
		/* A.3.1 "None": deliver and keep the request; the item is
		 * not created (§3.1.3 security warning). */
		CASE(IN, SUB_SUBSCRIBE, false, OUTR(S_N), OUTR(S_NPI),
		     DLV | KEEP | SAVE),
		CASE(IN, SUB_SUBSCRIBE, false, OUTR(S_NPI), OUTR(S_NPI), 0),
		/* A.3.2 "None + Pending In": MUST [1]; §3.3.3 "remove any
		 * record of the inbound presence subscription request". */
		CASE(IN, SUB_UNSUBSCRIBE, false, OUTR(S_N), OUTR(S_N), 0),
		CASE(IN, SUB_UNSUBSCRIBE, false, OUTR(S_NPI), OUTR(S_N),
		     DLV | RUNSUBD | DROP | SAVE),
		/* A.3.3 and A.3.4: S.N. for both states (§3.1.6 and §3.2.3
		 * "if the contact is not in the user's roster ... silently
		 * ignore"). */
		CASE(IN, SUB_SUBSCRIBED, false, OUTR(S_N), OUTR(S_N), 0),
		CASE(IN, SUB_SUBSCRIBED, false, OUTR(S_NPI), OUTR(S_NPI), 0),
		CASE(IN, SUB_UNSUBSCRIBED, false, OUTR(S_N), OUTR(S_N), 0),
		CASE(IN, SUB_UNSUBSCRIBED, false, OUTR(S_NPI), OUTR(S_NPI),
		     0),
	};
	(void)state;
	RUN_CASES(cs);
}

/* §3.4.2 steps 1-4 and Table 4 [1], on a server that supports it. */
static void test_preapproval_grant(void **state)
{
	static const struct tcase cs[] = {
		/* Step 3: "To", "None", "None + Pending Out": set approved,
		 * push, MUST NOT route. */
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_N), AP(S_N), PUSH | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_NPO), AP(S_NPO),
		     PUSH | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_T), AP(S_T), PUSH | SAVE),
		/* Step 4: not in the roster: create it with "None" and
		 * approved, push, MUST NOT route. */
		CASE(OUT, SUB_SUBSCRIBED, true, OUTR(S_N), AP(S_N),
		     PUSH | NEW | SAVE),
		/* Already pre-approved: nothing changes, nothing to push. */
		CASE(OUT, SUB_SUBSCRIBED, true, AP(S_N), AP(S_N), 0),
		CASE(OUT, SUB_SUBSCRIBED, true, AP(S_T), AP(S_T), 0),
		/* Step 2: a pending request makes it a normal approval. */
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_NPI), IT(S_F),
		     RT | PUSH | PRES | DROP | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_NPOI), IT(S_FPO),
		     RT | PUSH | PRES | DROP | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_TPI), IT(S_B),
		     RT | PUSH | PRES | DROP | SAVE),
		/* Step 1: "Both", "From", "From + Pending Out": ignore. */
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_F), IT(S_F), 0),
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_FPO), IT(S_FPO), 0),
		CASE(OUT, SUB_SUBSCRIBED, true, IT(S_B), IT(S_B), 0),
		/* Without support (§3.4.1: the client MUST NOT try), the
		 * stanza is dropped and the pre-approval never set. */
		CASE(OUT, SUB_SUBSCRIBED, false, IT(S_NPO), IT(S_NPO), 0),
		CASE(OUT, SUB_SUBSCRIBED, false, OUTR(S_N), OUTR(S_N), 0),
	};
	(void)state;
	RUN_CASES(cs);
}

/* Table 5 [1], §3.2.2 step 2 and §3.4's second implementation note: an
 * outbound "unsubscribed" cancels a pre-approval, is not routed, and the
 * push removes approved='true'. */
static void test_preapproval_cancel(void **state)
{
	static const struct tcase cs[] = {
		CASE(OUT, SUB_UNSUBSCRIBED, true, AP(S_N), IT(S_N),
		     PUSH | SAVE),
		CASE(OUT, SUB_UNSUBSCRIBED, true, AP(S_NPO), IT(S_NPO),
		     PUSH | SAVE),
		CASE(OUT, SUB_UNSUBSCRIBED, true, AP(S_T), IT(S_T),
		     PUSH | SAVE),
		/* Cancelling needs no server support flag. */
		CASE(OUT, SUB_UNSUBSCRIBED, false, AP(S_T), IT(S_T),
		     PUSH | SAVE),
	};
	(void)state;
	RUN_CASES(cs);
}

/* Table 6 [1] with §3.4.2's last paragraph: a pre-approved contact's
 * subscribe is not delivered; the server replies "subscribed" for the user
 * and the state gains From. */
static void test_preapproval_auto_reply(void **state)
{
	static const struct tcase cs[] = {
		/* "None" -> "From" rather than "None + Pending In" */
		CASE(IN, SUB_SUBSCRIBE, false, AP(S_N), IT(S_F),
		     RSUBD | PRES | PUSH | SAVE),
		CASE(IN, SUB_SUBSCRIBE, false, AP(S_NPO), IT(S_FPO),
		     RSUBD | PRES | PUSH | SAVE),
		CASE(IN, SUB_SUBSCRIBE, false, AP(S_T), IT(S_B),
		     RSUBD | PRES | PUSH | SAVE),
	};
	(void)state;
	RUN_CASES(cs);
}

/*
 * Every table for each of the three states that can carry a pre-approval
 * (§3.4.2 step 3). The flag is kept through changes that leave the contact
 * without From, leaves with the contact's subscribe (Table 6 [1]) and with
 * the user's "unsubscribed" (Table 5 [1]); the tables' actions apply as
 * they are otherwise.
 */
static void test_preapproved_rows(void **state)
{
	static const struct tcase cs[] = {
		/* "None", approved */
		CASE(OUT, SUB_SUBSCRIBE, true, AP(S_N), AP(S_NPO),
		     RT | PUSH | SAVE),
		CASE(OUT, SUB_UNSUBSCRIBE, true, AP(S_N), AP(S_N), RT),
		CASE(OUT, SUB_SUBSCRIBED, true, AP(S_N), AP(S_N), 0),
		CASE(OUT, SUB_UNSUBSCRIBED, true, AP(S_N), IT(S_N),
		     PUSH | SAVE),
		CASE(IN, SUB_SUBSCRIBE, false, AP(S_N), IT(S_F),
		     RSUBD | PRES | PUSH | SAVE),
		CASE(IN, SUB_UNSUBSCRIBE, false, AP(S_N), AP(S_N), 0),
		CASE(IN, SUB_SUBSCRIBED, false, AP(S_N), AP(S_N), 0),
		CASE(IN, SUB_UNSUBSCRIBED, false, AP(S_N), AP(S_N), 0),
		/* "None + Pending Out", approved */
		CASE(OUT, SUB_SUBSCRIBE, true, AP(S_NPO), AP(S_NPO), RT),
		CASE(OUT, SUB_UNSUBSCRIBE, true, AP(S_NPO), AP(S_N),
		     RT | PUSH | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, AP(S_NPO), AP(S_NPO), 0),
		CASE(OUT, SUB_UNSUBSCRIBED, true, AP(S_NPO), IT(S_NPO),
		     PUSH | SAVE),
		CASE(IN, SUB_SUBSCRIBE, false, AP(S_NPO), IT(S_FPO),
		     RSUBD | PRES | PUSH | SAVE),
		CASE(IN, SUB_UNSUBSCRIBE, false, AP(S_NPO), AP(S_NPO), 0),
		CASE(IN, SUB_SUBSCRIBED, false, AP(S_NPO), AP(S_T),
		     DLV | PUSH | SAVE),
		CASE(IN, SUB_UNSUBSCRIBED, false, AP(S_NPO), AP(S_N),
		     DLV | PUSH | SAVE),
		/* "To", approved */
		CASE(OUT, SUB_SUBSCRIBE, true, AP(S_T), AP(S_T), RT),
		CASE(OUT, SUB_UNSUBSCRIBE, true, AP(S_T), AP(S_N),
		     RT | PUSH | SAVE),
		CASE(OUT, SUB_SUBSCRIBED, true, AP(S_T), AP(S_T), 0),
		CASE(OUT, SUB_UNSUBSCRIBED, true, AP(S_T), IT(S_T),
		     PUSH | SAVE),
		CASE(IN, SUB_SUBSCRIBE, false, AP(S_T), IT(S_B),
		     RSUBD | PRES | PUSH | SAVE),
		CASE(IN, SUB_UNSUBSCRIBE, false, AP(S_T), AP(S_T), 0),
		CASE(IN, SUB_SUBSCRIBED, false, AP(S_T), AP(S_T), 0),
		CASE(IN, SUB_UNSUBSCRIBED, false, AP(S_T), AP(S_N),
		     DLV | PUSH | SAVE),
	};
	(void)state;
	RUN_CASES(cs);
}

/* Every valid item: all 2^3 combinations of the flags for each state. */
static size_t all_items(struct sub_item *out)
{
	size_t n = 0;

	for (unsigned s = 0; s < SUB_STATE_COUNT; s++) {
		for (unsigned f = 0; f < 4; f++) {
			struct sub_item it = { (enum sub_state)s, f & 1,
					       (f & 2) != 0 };

			if (sub_item_valid(it))
				out[n++] = it;
		}
	}
	return n;
}

/* The pre-approved and outside-roster invariants, stated from the RFC
 * rather than taken from the module: 9 states in the roster, 3 of them
 * pre-approvable (§3.4.2 step 3), 2 outside it (A.1). */
static void test_item_valid(void **state)
{
	struct sub_item items[SUB_STATE_COUNT * 4];
	(void)state;

	assert_int_equal(all_items(items), 9 + 3 + 2);
	assert_true(sub_item_valid(AP(S_N)));
	assert_true(sub_item_valid(AP(S_NPO)));
	assert_true(sub_item_valid(AP(S_T)));
	assert_false(sub_item_valid(AP(S_NPI)));
	assert_false(sub_item_valid(AP(S_NPOI)));
	assert_false(sub_item_valid(AP(S_TPI)));
	assert_false(sub_item_valid(AP(S_F)));
	assert_false(sub_item_valid(AP(S_FPO)));
	assert_false(sub_item_valid(AP(S_B)));
	assert_true(sub_item_valid(OUTR(S_N)));
	assert_true(sub_item_valid(OUTR(S_NPI)));
	assert_false(sub_item_valid(OUTR(S_NPO)));
	assert_false(sub_item_valid(OUTR(S_T)));
	assert_false(sub_item_valid(OUTR(S_F)));
	assert_false(sub_item_valid(
		(struct sub_item){ SUB_NONE, true, false }));
	assert_false(sub_item_valid(
		(struct sub_item){ (enum sub_state)SUB_STATE_COUNT, 0, 1 }));
	assert_true(sub_item_blank(OUTR(S_N)));
	assert_false(sub_item_blank(OUTR(S_NPI)));
	assert_false(sub_item_blank(IT(S_N)));
}

static bool lost(bool before, bool after)
{
	return before && !after;
}

/* Checks the rules that tie actions to the state change, for one
 * transition. */
static void check_coherent(enum dir d, enum sub_type t, struct sub_item c,
			   struct sub_result r)
{
	unsigned a = r.actions;
	bool had_from = sub_state_has_from(c.state);
	bool has_from = sub_state_has_from(r.item.state);
	bool had_in = sub_state_pending_in(c.state);
	bool has_in = sub_state_pending_in(r.item.state);

	assert_true(sub_item_valid(r.item));
	assert_true(a < (1u << SUB_ACT_COUNT));
	/* SAVE exactly when something changed; CREATE exactly when the
	 * contact entered the roster; the roster never loses it here. */
	assert_int_equal(!!(a & SAVE), !sub_item_eq(c, r.item));
	assert_int_equal(!!(a & NEW), !c.in_roster && r.item.in_roster);
	assert_false(c.in_roster && !r.item.in_roster);
	assert_false((a & PUSH) && !r.item.in_roster);
	/* Routing is for outbound stanzas, delivery for inbound ones. */
	assert_false(d == OUT && (a & (DLV | RSUBD | RUNSUBD | KEEP)));
	assert_false(d == IN && (a & RT));
	/* Presence goes out exactly when the contact gains From, or is
	 * told "subscribed" again; unavailable exactly when From is lost
	 * (§3.1.5, §3.2.2, §3.3.3). */
	assert_int_equal(!!(a & PRES), (!had_from && has_from) ||
						(a & RSUBD) != 0);
	assert_int_equal(!!(a & UNAV), lost(had_from, has_from));
	/* The stored request follows Pending In (§3.1.3 rule 4). */
	assert_int_equal(!!(a & KEEP), !had_in && has_in);
	assert_int_equal(!!(a & DROP), lost(had_in, has_in));
	assert_false(has_in && !had_in && t != SUB_SUBSCRIBE);
	/* Pending In never appears silently: the request is delivered. */
	assert_false((a & KEEP) && !(a & DLV));
}

/* Every valid item through every stanza in both directions, with and
 * without pre-approval support. */
static void test_coherence(void **state)
{
	struct sub_item items[SUB_STATE_COUNT * 4];
	size_t n = all_items(items);
	unsigned runs = 0;
	(void)state;

	for (size_t i = 0; i < n; i++) {
		for (unsigned t = 0; t < SUB_TYPE_COUNT; t++) {
			for (unsigned pre = 0; pre < 2; pre++) {
				struct sub_result r = sub_outbound(
					items[i], (enum sub_type)t, pre);

				check_coherent(OUT, t, items[i], r);
				runs++;
			}
			check_coherent(IN, t, items[i],
				       sub_inbound(items[i], (enum sub_type)t));
			runs++;
		}
	}
	assert_int_equal(runs, 14 * 4 * 3);
}

/* Appendix A.1: the 'subscription' and 'ask' attributes of each state. */
static void test_attrs(void **state)
{
	static const struct {
		enum sub_state s;
		const char *subscription, *ask;
	} want[] = {
		{ S_N, "none", NULL },	     { S_NPO, "none", "subscribe" },
		{ S_NPI, "none", NULL },     { S_NPOI, "none", "subscribe" },
		{ S_T, "to", NULL },	     { S_TPI, "to", NULL },
		{ S_F, "from", NULL },	     { S_FPO, "from", "subscribe" },
		{ S_B, "both", NULL },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct sub_attrs a = sub_item_attrs(IT(want[i].s));

		assert_string_equal(a.subscription, want[i].subscription);
		if (want[i].ask == NULL)
			assert_null(a.ask);
		else
			assert_string_equal(a.ask, want[i].ask);
		assert_null(a.approved);
	}
	/* §2.1.2.1, §3.4.2: approved='true' marks a pre-approval. */
	assert_string_equal(sub_item_attrs(AP(S_T)).approved, "true");
	assert_string_equal(sub_item_attrs(AP(S_T)).subscription, "to");
	assert_string_equal(sub_item_attrs(AP(S_NPO)).ask, "subscribe");
}

/* Every valid item survives attrs -> parse with Pending In stored beside. */
static void test_attrs_round_trip(void **state)
{
	struct sub_item items[SUB_STATE_COUNT * 4];
	size_t n = all_items(items);
	(void)state;

	for (size_t i = 0; i < n; i++) {
		struct sub_attrs a = sub_item_attrs(items[i]);
		struct sub_item back = { SUB_BOTH, true, false };
		const char *err = NULL;
		int rc = sub_item_parse(str_c(a.subscription), str_c(a.ask),
					str_c(a.approved),
					sub_state_pending_in(items[i].state),
					items[i].in_roster, &back, &err);

		if (rc != 0)
			fail_msg("%s refused: %s",
				 sub_state_name(items[i].state), err);
		assert_true(sub_item_eq(back, items[i]));
	}
}

static int parse(const char *sub, const char *ask, const char *appr,
		 bool pin, bool in_roster, struct sub_item *it)
{
	const char *err = NULL;
	int rc = sub_item_parse(str_c(sub), str_c(ask), str_c(appr), pin,
				in_roster, it, &err);

	if (rc != 0)
		assert_non_null(err);
	return rc;
}

static void test_attrs_parse(void **state)
{
	struct sub_item it;
	(void)state;

	/* §2.1.2.5: no subscription attribute means "none". */
	assert_int_equal(parse(NULL, NULL, NULL, false, true, &it), 0);
	assert_true(sub_item_eq(it, IT(S_N)));
	assert_int_equal(parse(NULL, "subscribe", NULL, true, true, &it), 0);
	assert_true(sub_item_eq(it, IT(S_NPOI)));
	/* xs:boolean accepts 1 and 0 as well as true and false. */
	assert_int_equal(parse("to", NULL, "1", false, true, &it), 0);
	assert_true(sub_item_eq(it, AP(S_T)));
	assert_int_equal(parse("to", NULL, "false", false, true, &it), 0);
	assert_true(sub_item_eq(it, IT(S_T)));
	assert_int_equal(parse("none", NULL, "0", true, false, &it), 0);
	assert_true(sub_item_eq(it, OUTR(S_NPI)));
	/* Unknown values: attribute values are case-sensitive. */
	assert_int_equal(parse("remove", NULL, NULL, false, true, &it), -1);
	assert_int_equal(parse("None", NULL, NULL, false, true, &it), -1);
	assert_int_equal(parse("", NULL, NULL, false, true, &it), -1);
	assert_int_equal(parse("none", "unsubscribe", NULL, 0, 1, &it), -1);
	assert_int_equal(parse("none", "", NULL, false, true, &it), -1);
	assert_int_equal(parse("none", NULL, "yes", false, true, &it), -1);
	/* No state has Pending Out with To, or Pending In with From. */
	assert_int_equal(parse("to", "subscribe", NULL, 0, 1, &it), -1);
	assert_int_equal(parse("both", "subscribe", NULL, 0, 1, &it), -1);
	assert_int_equal(parse("from", NULL, NULL, true, true, &it), -1);
	assert_int_equal(parse("both", NULL, NULL, true, true, &it), -1);
	/* approved beside From or Pending In, or outside the roster. */
	assert_int_equal(parse("from", NULL, "true", false, true, &it), -1);
	assert_int_equal(parse("both", NULL, "true", false, true, &it), -1);
	assert_int_equal(parse("none", NULL, "true", true, true, &it), -1);
	assert_int_equal(parse("none", NULL, "true", false, false, &it), -1);
	/* Outside the roster: only None and None + Pending In. */
	assert_int_equal(parse("to", NULL, NULL, false, false, &it), -1);
	assert_int_equal(parse("none", "subscribe", NULL, 0, 0, &it), -1);
	/* A refused item leaves the output alone. */
	it = AP(S_NPO);
	assert_int_equal(parse("from", NULL, "true", false, true, &it), -1);
	assert_true(sub_item_eq(it, AP(S_NPO)));
}

static void test_names(void **state)
{
	static const char *const states[] = {
		"None",	"None + Pending Out", "None + Pending In",
		"None + Pending Out+In", "To", "To + Pending In",
		"From", "From + Pending Out", "Both",
	};
	static const char *const acts[] = {
		"route", "deliver", "push", "send-presence",
		"send-unavailable", "reply-subscribed", "reply-unsubscribed",
		"store-request", "drop-request", "create-item", "save",
	};
	(void)state;

	for (unsigned s = 0; s < SUB_STATE_COUNT; s++)
		assert_string_equal(sub_state_name(s), states[s]);
	assert_string_equal(sub_state_name(SUB_STATE_COUNT), "unknown");
	assert_string_equal(sub_state_name((enum sub_state)-1), "unknown");
	assert_string_equal(sub_type_name(SUB_SUBSCRIBE), "subscribe");
	assert_string_equal(sub_type_name(SUB_SUBSCRIBED), "subscribed");
	assert_string_equal(sub_type_name(SUB_UNSUBSCRIBE), "unsubscribe");
	assert_string_equal(sub_type_name(SUB_UNSUBSCRIBED), "unsubscribed");
	assert_string_equal(sub_type_name(SUB_TYPE_COUNT), "unknown");
	assert_int_equal(sizeof(acts) / sizeof(acts[0]), SUB_ACT_COUNT);
	for (unsigned i = 0; i < SUB_ACT_COUNT; i++)
		assert_string_equal(sub_action_name(1u << i), acts[i]);
	assert_string_equal(sub_action_name(0), "unknown");
	assert_string_equal(sub_action_name(RT | PUSH), "unknown");
	assert_string_equal(sub_action_name(1u << SUB_ACT_COUNT), "unknown");
}

static void test_actions_to_buf(void **state)
{
	struct buf b = { 0 };
	(void)state;

	assert_int_equal(sub_actions_to_buf(&b, 0), 0);
	assert_true(str_eq_c(buf_str(&b), "-"));
	buf_reset(&b);
	assert_int_equal(sub_actions_to_buf(&b, RT | PUSH | SAVE), 0);
	assert_true(str_eq_c(buf_str(&b), "route|push|save"));
	buf_reset(&b);
	b.max = 8;
	assert_int_equal(sub_actions_to_buf(&b, RT | PUSH | SAVE), -1);
	buf_reset(&b);
}

static void test_type_parse(void **state)
{
	static const char *const bad[] = {
		"", "available", "unavailable", "probe", "error",
		"Subscribe", "subscribe ", "subscrib", "unsubscribedx",
	};
	enum sub_type t;
	(void)state;

	for (unsigned i = 0; i < SUB_TYPE_COUNT; i++) {
		t = (enum sub_type)99;
		assert_int_equal(sub_type_parse(str_c(sub_type_name(i)), &t),
				 0);
		assert_int_equal(t, i);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sub_type_parse(str_c(bad[i]), &t), -1);
	assert_int_equal(sub_type_parse(STR_NULL, &t), -1);
}

/* Runs fn in a child; true if it died of SIGABRT (BUG_ON). */
static bool aborts(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* Keep the expected BUG line out of the test log. */
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(3);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void bad_preapproved_from(void)
{
	(void)sub_inbound(AP(S_F), SUB_SUBSCRIBE);
}

static void bad_outside_to(void)
{
	(void)sub_outbound(OUTR(S_T), SUB_UNSUBSCRIBE, false);
}

static void bad_type(void)
{
	(void)sub_outbound(IT(S_N), (enum sub_type)SUB_TYPE_COUNT, false);
}

static void good_call(void)
{
	(void)sub_inbound(IT(S_B), SUB_UNSUBSCRIBED);
}

/* Invalid items and types are bugs in the caller: BUG_ON, not garbage. */
static void test_invalid_input_aborts(void **state)
{
	(void)state;
	assert_false(aborts(good_call));
	assert_true(aborts(bad_preapproved_from));
	assert_true(aborts(bad_outside_to));
	assert_true(aborts(bad_type));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a21_out_subscribe),
		cmocka_unit_test(test_a22_out_unsubscribe),
		cmocka_unit_test(test_a23_out_subscribed),
		cmocka_unit_test(test_a24_out_unsubscribed),
		cmocka_unit_test(test_a31_in_subscribe),
		cmocka_unit_test(test_a32_in_unsubscribe),
		cmocka_unit_test(test_a33_in_subscribed),
		cmocka_unit_test(test_a34_in_unsubscribed),
		cmocka_unit_test(test_outside_roster),
		cmocka_unit_test(test_preapproval_grant),
		cmocka_unit_test(test_preapproval_cancel),
		cmocka_unit_test(test_preapproval_auto_reply),
		cmocka_unit_test(test_preapproved_rows),
		cmocka_unit_test(test_item_valid),
		cmocka_unit_test(test_coherence),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_attrs_round_trip),
		cmocka_unit_test(test_attrs_parse),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_actions_to_buf),
		cmocka_unit_test(test_type_parse),
		cmocka_unit_test(test_invalid_input_aborts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
