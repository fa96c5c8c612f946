/*
 * subscription.c - RFC 6121 presence subscription states (Appendix A) as
 * eight tables, one per RFC table (Tables 2-9), one cell per state.
 *
 * Each cell holds the RFC's new state and routing/delivery verdict plus the
 * side effects §3.1-§3.4 attach to that transition. Everything the cell
 * alone cannot say (pre-approval, roster membership, whether anything
 * changed) is applied after the lookup by apply(), so the tables read like
 * the RFC. Pure: no I/O, no allocation, no globals beyond const tables.
 */
#include "subscription.h"

#include "../../core/bug.h"

/* Short names keep each cell on one line, next to its RFC row. */
#define ROUTE SUB_ACT_ROUTE
#define DELIVER SUB_ACT_DELIVER
#define PUSH SUB_ACT_PUSH
#define PRES SUB_ACT_SEND_PRESENCE
#define UNAV SUB_ACT_SEND_UNAVAILABLE
#define R_SUBD SUB_ACT_REPLY_SUBSCRIBED
#define R_UNSUBD SUB_ACT_REPLY_UNSUBSCRIBED
#define STORE_REQ SUB_ACT_STORE_REQUEST
#define DROP_REQ SUB_ACT_DROP_REQUEST

/* What a cell's footnote adds, resolved by apply(). */
enum cell_note {
	NOTE_NONE,
	/* The contact enters the roster if it was not there (§3.1.2 roster
	 * push of the new item; Appendix A.1 state 3: add on approval). */
	NOTE_ADD,
	/* Table 4 [1]: pre-approval (§3.4.2 steps 3 and 4). */
	NOTE_PREAPPROVE,
	/* Table 5 [1]: an "unsubscribed" cancels a pre-approval (§3.2.2
	 * step 2, §3.4 second implementation note). */
	NOTE_UNAPPROVE,
	/* Table 6 [1]: when pre-approved, auto-reply and take the state of
	 * in_subscribe_preapproved[] instead (§3.4.2, last paragraph). */
	NOTE_AUTOAPPROVE,
};

struct cell {
	enum sub_state next; /* same as the row for "no state change" */
	unsigned actions;
	enum cell_note note;
};

#define SAME(s) [s] = { s, 0, NOTE_NONE }

/* A.2.1, Table 2: outbound "subscribe". Route: MUST on every row. */
static const struct cell out_subscribe[SUB_STATE_COUNT] = {
	[SUB_NONE] = { SUB_NONE_PENDING_OUT, ROUTE | PUSH, NOTE_ADD },
	[SUB_NONE_PENDING_OUT] = { SUB_NONE_PENDING_OUT, ROUTE, NOTE_NONE },
	[SUB_NONE_PENDING_IN] = { SUB_NONE_PENDING_OUT_IN, ROUTE | PUSH,
				  NOTE_ADD },
	[SUB_NONE_PENDING_OUT_IN] = { SUB_NONE_PENDING_OUT_IN, ROUTE,
				      NOTE_NONE },
	[SUB_TO] = { SUB_TO, ROUTE, NOTE_NONE },
	[SUB_TO_PENDING_IN] = { SUB_TO_PENDING_IN, ROUTE, NOTE_NONE },
	[SUB_FROM] = { SUB_FROM_PENDING_OUT, ROUTE | PUSH, NOTE_NONE },
	[SUB_FROM_PENDING_OUT] = { SUB_FROM_PENDING_OUT, ROUTE, NOTE_NONE },
	[SUB_BOTH] = { SUB_BOTH, ROUTE, NOTE_NONE },
};

/* A.2.2, Table 3: outbound "unsubscribe". Route: MUST on every row; the
 * roster push is §3.3.2's. */
static const struct cell out_unsubscribe[SUB_STATE_COUNT] = {
	[SUB_NONE] = { SUB_NONE, ROUTE, NOTE_NONE },
	[SUB_NONE_PENDING_OUT] = { SUB_NONE, ROUTE | PUSH, NOTE_NONE },
	[SUB_NONE_PENDING_IN] = { SUB_NONE_PENDING_IN, ROUTE, NOTE_NONE },
	[SUB_NONE_PENDING_OUT_IN] = { SUB_NONE_PENDING_IN, ROUTE | PUSH,
				      NOTE_NONE },
	[SUB_TO] = { SUB_NONE, ROUTE | PUSH, NOTE_NONE },
	[SUB_TO_PENDING_IN] = { SUB_NONE_PENDING_IN, ROUTE | PUSH,
				NOTE_NONE },
	[SUB_FROM] = { SUB_FROM, ROUTE, NOTE_NONE },
	[SUB_FROM_PENDING_OUT] = { SUB_FROM, ROUTE | PUSH, NOTE_NONE },
	[SUB_BOTH] = { SUB_FROM, ROUTE | PUSH, NOTE_NONE },
};

/* A.2.3, Table 4: outbound "subscribed". An approval (§3.1.5) routes,
 * pushes and sends the user's presence; M.N. rows route nothing. */
#define APPROVE (ROUTE | PUSH | PRES | DROP_REQ)
static const struct cell out_subscribed[SUB_STATE_COUNT] = {
	[SUB_NONE] = { SUB_NONE, 0, NOTE_PREAPPROVE },
	[SUB_NONE_PENDING_OUT] = { SUB_NONE_PENDING_OUT, 0, NOTE_PREAPPROVE },
	[SUB_NONE_PENDING_IN] = { SUB_FROM, APPROVE, NOTE_ADD },
	[SUB_NONE_PENDING_OUT_IN] = { SUB_FROM_PENDING_OUT, APPROVE,
				      NOTE_NONE },
	[SUB_TO] = { SUB_TO, 0, NOTE_PREAPPROVE },
	[SUB_TO_PENDING_IN] = { SUB_BOTH, APPROVE, NOTE_NONE },
	SAME(SUB_FROM),
	SAME(SUB_FROM_PENDING_OUT),
	SAME(SUB_BOTH),
};
#undef APPROVE

/* A.2.4, Table 5: outbound "unsubscribed". S.N. rows route nothing. A
 * denial (Pending In rows) drops the stored request; a cancellation (From
 * rows) first sends unavailable presence (§3.2.2). */
#define DENY (ROUTE | PUSH | DROP_REQ)
#define CANCEL (ROUTE | PUSH | UNAV)
static const struct cell out_unsubscribed[SUB_STATE_COUNT] = {
	[SUB_NONE] = { SUB_NONE, 0, NOTE_UNAPPROVE },
	[SUB_NONE_PENDING_OUT] = { SUB_NONE_PENDING_OUT, 0, NOTE_UNAPPROVE },
	[SUB_NONE_PENDING_IN] = { SUB_NONE, DENY, NOTE_NONE },
	[SUB_NONE_PENDING_OUT_IN] = { SUB_NONE_PENDING_OUT, DENY, NOTE_NONE },
	[SUB_TO] = { SUB_TO, 0, NOTE_UNAPPROVE },
	[SUB_TO_PENDING_IN] = { SUB_TO, DENY, NOTE_NONE },
	[SUB_FROM] = { SUB_NONE, CANCEL, NOTE_NONE },
	[SUB_FROM_PENDING_OUT] = { SUB_NONE_PENDING_OUT, CANCEL, NOTE_NONE },
	[SUB_BOTH] = { SUB_TO, CANCEL, NOTE_NONE },
};
#undef DENY
#undef CANCEL

/* A.3.1, Table 6: inbound "subscribe". MUST rows deliver and keep the
 * request (§3.1.3 rule 4); S.N. [2] rows auto-reply (§3.1.3 rule 2). */
#define ASK (DELIVER | STORE_REQ)
static const struct cell in_subscribe[SUB_STATE_COUNT] = {
	[SUB_NONE] = { SUB_NONE_PENDING_IN, ASK, NOTE_AUTOAPPROVE },
	[SUB_NONE_PENDING_OUT] = { SUB_NONE_PENDING_OUT_IN, ASK,
				   NOTE_AUTOAPPROVE },
	SAME(SUB_NONE_PENDING_IN),
	SAME(SUB_NONE_PENDING_OUT_IN),
	[SUB_TO] = { SUB_TO_PENDING_IN, ASK, NOTE_AUTOAPPROVE },
	SAME(SUB_TO_PENDING_IN),
	[SUB_FROM] = { SUB_FROM, R_SUBD | PRES, NOTE_NONE },
	[SUB_FROM_PENDING_OUT] = { SUB_FROM_PENDING_OUT, R_SUBD | PRES,
				   NOTE_NONE },
	[SUB_BOTH] = { SUB_BOTH, R_SUBD | PRES, NOTE_NONE },
};
#undef ASK

/* Table 6 [1] taken: the user pre-approved, so the server approves on the
 * user's behalf (§3.4.2) exactly as an outbound approval would (§3.1.5).
 * Only the rows where a pre-approval can exist are filled. */
#define AUTO (R_SUBD | PRES | PUSH)
static const struct cell in_subscribe_preapproved[SUB_STATE_COUNT] = {
	[SUB_NONE] = { SUB_FROM, AUTO, NOTE_NONE },
	[SUB_NONE_PENDING_OUT] = { SUB_FROM_PENDING_OUT, AUTO, NOTE_NONE },
	[SUB_TO] = { SUB_BOTH, AUTO, NOTE_NONE },
};
#undef AUTO

/* A.3.2, Table 7: inbound "unsubscribe". MUST [1] rows deliver and
 * auto-reply "unsubscribed"; losing From also pushes and sends unavailable
 * presence (§3.3.3 steps 2-3); a withdrawn request is dropped. */
#define WITHDRAW (DELIVER | R_UNSUBD | DROP_REQ)
#define LEAVE (DELIVER | PUSH | UNAV | R_UNSUBD)
static const struct cell in_unsubscribe[SUB_STATE_COUNT] = {
	SAME(SUB_NONE),
	SAME(SUB_NONE_PENDING_OUT),
	[SUB_NONE_PENDING_IN] = { SUB_NONE, WITHDRAW, NOTE_NONE },
	[SUB_NONE_PENDING_OUT_IN] = { SUB_NONE_PENDING_OUT, WITHDRAW,
				      NOTE_NONE },
	SAME(SUB_TO),
	[SUB_TO_PENDING_IN] = { SUB_TO, WITHDRAW, NOTE_NONE },
	[SUB_FROM] = { SUB_NONE, LEAVE, NOTE_NONE },
	[SUB_FROM_PENDING_OUT] = { SUB_NONE_PENDING_OUT, LEAVE, NOTE_NONE },
	[SUB_BOTH] = { SUB_TO, LEAVE, NOTE_NONE },
};
#undef WITHDRAW
#undef LEAVE

/* A.3.3, Table 8: inbound "subscribed"; deliver then push (§3.1.6). */
static const struct cell in_subscribed[SUB_STATE_COUNT] = {
	SAME(SUB_NONE),
	[SUB_NONE_PENDING_OUT] = { SUB_TO, DELIVER | PUSH, NOTE_NONE },
	SAME(SUB_NONE_PENDING_IN),
	[SUB_NONE_PENDING_OUT_IN] = { SUB_TO_PENDING_IN, DELIVER | PUSH,
				      NOTE_NONE },
	SAME(SUB_TO),
	SAME(SUB_TO_PENDING_IN),
	SAME(SUB_FROM),
	[SUB_FROM_PENDING_OUT] = { SUB_BOTH, DELIVER | PUSH, NOTE_NONE },
	SAME(SUB_BOTH),
};

/* A.3.4, Table 9: inbound "unsubscribed"; deliver then push (§3.2.3). */
static const struct cell in_unsubscribed[SUB_STATE_COUNT] = {
	SAME(SUB_NONE),
	[SUB_NONE_PENDING_OUT] = { SUB_NONE, DELIVER | PUSH, NOTE_NONE },
	SAME(SUB_NONE_PENDING_IN),
	[SUB_NONE_PENDING_OUT_IN] = { SUB_NONE_PENDING_IN, DELIVER | PUSH,
				      NOTE_NONE },
	[SUB_TO] = { SUB_NONE, DELIVER | PUSH, NOTE_NONE },
	[SUB_TO_PENDING_IN] = { SUB_NONE_PENDING_IN, DELIVER | PUSH,
				NOTE_NONE },
	SAME(SUB_FROM),
	[SUB_FROM_PENDING_OUT] = { SUB_FROM, DELIVER | PUSH, NOTE_NONE },
	[SUB_BOTH] = { SUB_FROM, DELIVER | PUSH, NOTE_NONE },
};
#undef SAME

static const struct cell *const out_tables[SUB_TYPE_COUNT] = {
	[SUB_SUBSCRIBE] = out_subscribe,
	[SUB_SUBSCRIBED] = out_subscribed,
	[SUB_UNSUBSCRIBE] = out_unsubscribe,
	[SUB_UNSUBSCRIBED] = out_unsubscribed,
};

static const struct cell *const in_tables[SUB_TYPE_COUNT] = {
	[SUB_SUBSCRIBE] = in_subscribe,
	[SUB_SUBSCRIBED] = in_subscribed,
	[SUB_UNSUBSCRIBE] = in_unsubscribe,
	[SUB_UNSUBSCRIBED] = in_unsubscribed,
};

/* The components of each state: To, From, Pending Out, Pending In. */
static const struct {
	bool to, from, out, in;
} parts[SUB_STATE_COUNT] = {
	[SUB_NONE] = { false, false, false, false },
	[SUB_NONE_PENDING_OUT] = { false, false, true, false },
	[SUB_NONE_PENDING_IN] = { false, false, false, true },
	[SUB_NONE_PENDING_OUT_IN] = { false, false, true, true },
	[SUB_TO] = { true, false, false, false },
	[SUB_TO_PENDING_IN] = { true, false, false, true },
	[SUB_FROM] = { false, true, false, false },
	[SUB_FROM_PENDING_OUT] = { false, true, true, false },
	[SUB_BOTH] = { true, true, false, false },
};

static const char *const state_names[SUB_STATE_COUNT] = {
	[SUB_NONE] = "None",
	[SUB_NONE_PENDING_OUT] = "None + Pending Out",
	[SUB_NONE_PENDING_IN] = "None + Pending In",
	[SUB_NONE_PENDING_OUT_IN] = "None + Pending Out+In",
	[SUB_TO] = "To",
	[SUB_TO_PENDING_IN] = "To + Pending In",
	[SUB_FROM] = "From",
	[SUB_FROM_PENDING_OUT] = "From + Pending Out",
	[SUB_BOTH] = "Both",
};

static const char *const type_names[SUB_TYPE_COUNT] = {
	[SUB_SUBSCRIBE] = "subscribe",
	[SUB_SUBSCRIBED] = "subscribed",
	[SUB_UNSUBSCRIBE] = "unsubscribe",
	[SUB_UNSUBSCRIBED] = "unsubscribed",
};

_Static_assert(SUB_ACT_SAVE == 1u << (SUB_ACT_COUNT - 1),
	       "SUB_ACT_COUNT must follow the last action bit");

/* Indexed by bit number. */
static const char *const action_names[SUB_ACT_COUNT] = {
	"route",
	"deliver",
	"push",
	"send-presence",
	"send-unavailable",
	"reply-subscribed",
	"reply-unsubscribed",
	"store-request",
	"drop-request",
	"create-item",
	"save",
};

static bool state_ok(enum sub_state s)
{
	return (unsigned)s < SUB_STATE_COUNT;
}

const char *sub_state_name(enum sub_state s)
{
	return state_ok(s) ? state_names[s] : "unknown";
}

const char *sub_type_name(enum sub_type t)
{
	return (unsigned)t < SUB_TYPE_COUNT ? type_names[t] : "unknown";
}

const char *sub_action_name(enum sub_action a)
{
	unsigned v = (unsigned)a;

	/* Exactly one known bit. */
	if (v == 0 || (v & (v - 1)) != 0 || v >= 1u << SUB_ACT_COUNT)
		return "unknown";
	return action_names[__builtin_ctz(v)];
}

int sub_actions_to_buf(struct buf *b, unsigned actions)
{
	bool first = true;

	if (actions == 0)
		return buf_append_c(b, "-");
	for (unsigned i = 0; i < 32; i++) {
		if (!(actions & (1u << i)))
			continue;
		if (!first && buf_append_c(b, "|") != 0)
			return -1;
		if (buf_append_c(b, sub_action_name(1u << i)) != 0)
			return -1;
		first = false;
	}
	return 0;
}

int sub_type_parse(struct str s, enum sub_type *t_r)
{
	for (unsigned i = 0; i < SUB_TYPE_COUNT; i++) {
		if (str_eq_c(s, type_names[i])) {
			*t_r = (enum sub_type)i;
			return 0;
		}
	}
	return -1;
}

bool sub_state_has_to(enum sub_state s)
{
	return state_ok(s) && parts[s].to;
}

bool sub_state_has_from(enum sub_state s)
{
	return state_ok(s) && parts[s].from;
}

bool sub_state_pending_out(enum sub_state s)
{
	return state_ok(s) && parts[s].out;
}

bool sub_state_pending_in(enum sub_state s)
{
	return state_ok(s) && parts[s].in;
}

/* A pre-approval means "approve when asked": meaningless once the contact
 * has From or has already asked (§3.4.2 steps 1-2 handle those). */
static bool may_preapprove(enum sub_state s)
{
	return !parts[s].from && !parts[s].in;
}

bool sub_item_valid(struct sub_item it)
{
	if (!state_ok(it.state))
		return false;
	if (it.pre_approved && (!it.in_roster || !may_preapprove(it.state)))
		return false;
	/* Outside the roster only a pending request can exist: an outbound
	 * subscribe or a pre-approval creates the item (§3.1.2, §3.4.2),
	 * and nothing but an approval grants From (A.1 state 3). */
	if (!it.in_roster && it.state != SUB_NONE &&
	    it.state != SUB_NONE_PENDING_IN)
		return false;
	return true;
}

bool sub_item_eq(struct sub_item a, struct sub_item b)
{
	return a.state == b.state && a.pre_approved == b.pre_approved &&
	       a.in_roster == b.in_roster;
}

bool sub_item_blank(struct sub_item it)
{
	return !it.in_roster && it.state == SUB_NONE && !it.pre_approved;
}

/* Resolves the cell's footnote against cur, then derives the actions that
 * follow from the item alone: no push without an item, create and save
 * when the item appears or changes. */
static struct sub_result apply(const struct cell *c, struct sub_item cur,
			       bool preapproval)
{
	struct sub_result r = { .item = cur, .actions = c->actions };

	r.item.state = c->next;
	switch (c->note) {
	case NOTE_NONE:
		break;
	case NOTE_ADD:
		r.item.in_roster = true;
		break;
	case NOTE_PREAPPROVE:
		if (preapproval && !cur.pre_approved) {
			r.item.pre_approved = true;
			r.item.in_roster = true;
			r.actions |= PUSH;
		}
		break;
	case NOTE_UNAPPROVE:
		if (cur.pre_approved) {
			r.item.pre_approved = false;
			r.actions |= PUSH;
		}
		break;
	case NOTE_AUTOAPPROVE:
		if (cur.pre_approved) {
			c = &in_subscribe_preapproved[cur.state];
			r.item.state = c->next;
			r.item.pre_approved = false;
			r.actions = c->actions;
		}
		break;
	}
	if (!r.item.in_roster)
		r.actions &= ~(unsigned)PUSH;
	if (!cur.in_roster && r.item.in_roster)
		r.actions |= SUB_ACT_CREATE_ITEM;
	if (!sub_item_eq(cur, r.item))
		r.actions |= SUB_ACT_SAVE;
	BUG_ON(!sub_item_valid(r.item));
	return r;
}

struct sub_result sub_outbound(struct sub_item cur, enum sub_type t,
			       bool preapproval)
{
	BUG_ON(!sub_item_valid(cur));
	BUG_ON((unsigned)t >= SUB_TYPE_COUNT);
	return apply(&out_tables[t][cur.state], cur, preapproval);
}

struct sub_result sub_inbound(struct sub_item cur, enum sub_type t)
{
	BUG_ON(!sub_item_valid(cur));
	BUG_ON((unsigned)t >= SUB_TYPE_COUNT);
	return apply(&in_tables[t][cur.state], cur, false);
}

struct sub_attrs sub_item_attrs(struct sub_item it)
{
	static const char *const subs[2][2] = {
		{ "none", "from" }, /* [to][from] */
		{ "to", "both" },
	};
	struct sub_attrs a = { 0 };

	BUG_ON(!state_ok(it.state));
	a.subscription = subs[parts[it.state].to][parts[it.state].from];
	a.ask = parts[it.state].out ? "subscribe" : NULL;
	a.approved = it.pre_approved ? "true" : NULL;
	return a;
}

/* xs:boolean (XML Schema Part 2 §3.2.2): "true", "false", "1", "0". */
static int parse_bool(struct str s, bool *b_r)
{
	if (str_is_null(s) || str_eq_c(s, "false") || str_eq_c(s, "0")) {
		*b_r = false;
		return 0;
	}
	if (str_eq_c(s, "true") || str_eq_c(s, "1")) {
		*b_r = true;
		return 0;
	}
	return -1;
}

/* Finds the state with these components; -1 if none has them. */
static int state_from_parts(bool to, bool from, bool out, bool in)
{
	for (unsigned s = 0; s < SUB_STATE_COUNT; s++) {
		if (parts[s].to == to && parts[s].from == from &&
		    parts[s].out == out && parts[s].in == in)
			return (int)s;
	}
	return -1;
}

int sub_item_parse(struct str subscription, struct str ask,
		   struct str approved, bool pending_in, bool in_roster,
		   struct sub_item *it_r, const char **error_r)
{
	struct sub_item it;
	bool to, from, out, appr;
	int s;

	if (str_is_null(subscription) || str_eq_c(subscription, "none")) {
		to = from = false;
	} else if (str_eq_c(subscription, "to")) {
		to = true;
		from = false;
	} else if (str_eq_c(subscription, "from")) {
		to = false;
		from = true;
	} else if (str_eq_c(subscription, "both")) {
		to = from = true;
	} else {
		*error_r = "unknown subscription value";
		return -1;
	}
	if (!str_is_null(ask) && !str_eq_c(ask, "subscribe")) {
		*error_r = "unknown ask value";
		return -1;
	}
	out = !str_is_null(ask);
	if (parse_bool(approved, &appr) != 0) {
		*error_r = "approved is not a boolean";
		return -1;
	}
	s = state_from_parts(to, from, out, pending_in);
	if (s < 0) {
		*error_r = "no subscription state has these attributes";
		return -1;
	}
	it = (struct sub_item){ (enum sub_state)s, appr, in_roster };
	if (!sub_item_valid(it)) {
		*error_r = "state not possible with approval or outside roster";
		return -1;
	}
	*it_r = it;
	return 0;
}
