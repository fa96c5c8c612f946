/*
 * subscription.h - the presence subscription state machine of RFC 6121
 * (Appendix A, with §3.1-§3.4), as pure functions: no I/O, no allocation.
 *
 * The roster module loads a contact's state, asks sub_outbound() or
 * sub_inbound() what a subscription stanza does to it, then carries out the
 * returned actions (docs/internals/subscription.md). States are always seen
 * from the roster owner ("user"); the other party is the "contact".
 * Invariants (sub_item_valid()): pre-approval only in None, None + Pending
 * Out and To, and only for an item in the roster; a contact outside the
 * roster is None or None + Pending In, without pre-approval.
 */
#ifndef STANZAD_MOD_ROSTER_SUBSCRIPTION_H
#define STANZAD_MOD_ROSTER_SUBSCRIPTION_H

#include <stdbool.h>

#include "../../core/buf.h"
#include "../../core/str.h"

/* The nine states of RFC 6121 Appendix A.1, in its order. */
enum sub_state {
	SUB_NONE,
	SUB_NONE_PENDING_OUT,
	SUB_NONE_PENDING_IN,
	SUB_NONE_PENDING_OUT_IN,
	SUB_TO,
	SUB_TO_PENDING_IN,
	SUB_FROM,
	SUB_FROM_PENDING_OUT,
	SUB_BOTH,
};
#define SUB_STATE_COUNT 9

/* The 'type' of a subscription presence stanza (RFC 6121 §4.7.1). */
enum sub_type {
	SUB_SUBSCRIBE,
	SUB_SUBSCRIBED,
	SUB_UNSUBSCRIBE,
	SUB_UNSUBSCRIBED,
};
#define SUB_TYPE_COUNT 4

/*
 * What the roster module must do, as a bit mask. "Contact" presence goes
 * from the user's bare JID to the contact's bare JID (RFC 6121 §3).
 */
enum sub_action {
	/* Outbound: stamp the stanza with the user's bare JID and route it
	 * to the contact (deliver locally if the contact is ours). */
	SUB_ACT_ROUTE = 1u << 0,
	/* Inbound: deliver the stanza to the user's available resources. */
	SUB_ACT_DELIVER = 1u << 1,
	/* Roster push of the new item to the user's interested resources. */
	SUB_ACT_PUSH = 1u << 2,
	/* Send the current presence of each of the user's available
	 * resources to the contact (RFC 6121 §3.1.5). */
	SUB_ACT_SEND_PRESENCE = 1u << 3,
	/* Send unavailable presence from each of the user's available
	 * resources to the contact (§3.2.2, §3.3.3). */
	SUB_ACT_SEND_UNAVAILABLE = 1u << 4,
	/* Reply to the contact on the user's behalf with type "subscribed"
	 * (§3.1.3, §3.4.2) or "unsubscribed" (Appendix A.3.2). */
	SUB_ACT_REPLY_SUBSCRIBED = 1u << 5,
	SUB_ACT_REPLY_UNSUBSCRIBED = 1u << 6,
	/* Keep this subscribe stanza (whole) and deliver it again whenever
	 * the user makes a resource available, until answered (§3.1.3). */
	SUB_ACT_STORE_REQUEST = 1u << 7,
	/* Forget the stored subscribe stanza: it was answered or withdrawn. */
	SUB_ACT_DROP_REQUEST = 1u << 8,
	/* The contact was not in the roster and now is: create the item. */
	SUB_ACT_CREATE_ITEM = 1u << 9,
	/* The item changed (state, pre-approval or roster membership):
	 * persist the result's item. */
	SUB_ACT_SAVE = 1u << 10,
};
#define SUB_ACT_COUNT 11

/* A contact's subscription state in the user's roster. */
struct sub_item {
	enum sub_state state;
	bool pre_approved; /* RFC 6121 §3.4 'approved' flag */
	bool in_roster;    /* false: known only by a pending inbound request,
			      or not known at all (Appendix A.1 note) */
};

struct sub_result {
	struct sub_item item; /* the new state */
	unsigned actions;     /* enum sub_action bits */
};

/* Names for logs: the RFC's ("None + Pending Out+In"), the stanza type
 * ("subscribe"), one action ("route"). Out of range: "unknown". */
const char *sub_state_name(enum sub_state s);
const char *sub_type_name(enum sub_type t);
const char *sub_action_name(enum sub_action a);
/* Appends the names of the bits of actions joined by '|', or "-" for 0.
 * Returns 0, or -1 if the buffer's max was reached. */
int sub_actions_to_buf(struct buf *b, unsigned actions);

/* Parses a presence 'type' value. Returns 0, or -1 for any other type
 * (available, unavailable, probe, error, unknown). */
int sub_type_parse(struct str s, enum sub_type *t_r);

/* The four primary states of Appendix A.1, as components. */
bool sub_state_has_to(enum sub_state s);
bool sub_state_has_from(enum sub_state s);
bool sub_state_pending_out(enum sub_state s);
bool sub_state_pending_in(enum sub_state s);

bool sub_item_valid(struct sub_item it);
bool sub_item_eq(struct sub_item a, struct sub_item b);
/* True for "nothing to remember" (not in roster, None, no pre-approval):
 * the store can drop its record of the contact. */
bool sub_item_blank(struct sub_item it);

/*
 * The user sent a presence of type t to the contact (Appendix A.2).
 * preapproval: the server supports and advertises RFC 6121 §3.4
 * pre-approvals; if false, an outbound "subscribed" that would pre-approve
 * is ignored. cur must be valid (BUG_ON); so is the result's item.
 */
struct sub_result sub_outbound(struct sub_item cur, enum sub_type t,
			       bool preapproval);
/* The contact sent the user a presence of type t (Appendix A.3). */
struct sub_result sub_inbound(struct sub_item cur, enum sub_type t);

/*
 * Roster item attributes (RFC 6121 §2.1.2): subscription is "none", "to",
 * "from" or "both"; ask is "subscribe" or NULL (omit the attribute);
 * approved is "true" or NULL. Pending In has no attribute: it is stored
 * beside them and given back to sub_item_parse().
 */
struct sub_attrs {
	const char *subscription;
	const char *ask;
	const char *approved;
};
struct sub_attrs sub_item_attrs(struct sub_item it);

/*
 * Rebuilds an item from stored attribute values (STR_NULL: absent; an
 * absent subscription means "none", §2.1.2.5; approved is an xs:boolean).
 * Returns 0, or -1 (*it_r untouched) with a static reason in *error_r for
 * an unknown value or a combination no state has (ask with 'to', Pending
 * In with 'from', approved beside From or Pending In, or outside the
 * roster).
 */
int sub_item_parse(struct str subscription, struct str ask,
		   struct str approved, bool pending_in, bool in_roster,
		   struct sub_item *it_r, const char **error_r);

#endif
