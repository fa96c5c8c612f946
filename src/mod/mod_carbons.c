/*
 * mod_carbons.c - XEP-0280: Message Carbons.
 *
 * A resource that enabled carbons gets a forwarded copy (XEP-0297) of every
 * IM message its account sends from another resource (<sent/>, §8) and of
 * every one the account receives that went to another resource, or to
 * offline storage (<received/>, §7). Which messages are copied: §6.1, see
 * carbons_eligible(). The switch is per session and lives in the session
 * table (sessions.h), so whichever shard routes a message sees it.
 */
#include "../core/bug.h"
#include "../core/str.h"
#include "../router/sessions.h"
#include "../xmpp/ns.h"
#include "module.h"

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_MARKERS "urn:xmpp:chat-markers:0"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_X_CONFERENCE "jabber:x:conference"

/* §4, §5: only the account itself, from the resource concerned. */
static enum hook_ret carbons_toggle(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (!jid_bare_eq(&st->from, &st->to))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	bool on = str_eq_c(ctx->payload->name, "enable");
	struct str bare = jid_to_str(st->a, &st->from, true);
	if (!sessions_set_carbons(bare, st->from.resource, on))
		return iq_reply_error(ctx, STANZA_ERR_NOT_ALLOWED);
	return iq_reply_result(ctx, NULL);
}

/* An instant-messaging payload of §6.1: receipts (XEP-0184), chat states
 * (XEP-0085), markers (XEP-0333), or an invitation to a room (XEP-0249,
 * XEP-0045 mediated). */
static bool has_im_payload(const struct xml_elem *x)
{
	static const char *const ns[] = {
		NS_RECEIPTS, NS_CHATSTATES, NS_MARKERS, NS_X_CONFERENCE,
	};
	for (size_t i = 0; i < ARRAY_SIZE(ns); i++)
		if (xml_child(x, ns[i], NULL) != NULL)
			return true;
	const struct xml_elem *muc = xml_child(x, NS_MUC_USER, "x");
	return muc != NULL && xml_child(muc, NS_MUC_USER, "invite") != NULL;
}

/*
 * §6.1. Groupchat is never copied; a private message from a room occupant
 * (it carries muc#user) is not copied to the receiver's other resources,
 * since the room sends it to each of them. Nothing marked <private/> (§9),
 * and no message that already is a carbon (from the account's own server,
 * or forged by someone else: clients must not trust those anyway, §11).
 * An error is copied when it carries an eligible payload: the error the
 * server bounces keeps the original's children, and without tracking what
 * was sent that is the closest reading of "in response to an eligible
 * message".
 */
static bool carbons_eligible(const struct stanza *st, bool inbound)
{
	const struct xml_elem *x = st->x;
	if (xml_child(x, NS_CARBONS, NULL) != NULL)
		return false; /* <private/>, <sent/> or <received/> */
	if (str_eq_c(st->type, "groupchat"))
		return false;
	if (inbound && xml_child(x, NS_MUC_USER, "x") != NULL &&
	    !has_im_payload(x))
		return false;
	if (str_eq_c(st->type, "chat"))
		return true;
	bool body = xml_child(x, NS_CLIENT, "body") != NULL;
	if (body && (st->type.len == 0 || str_eq_c(st->type, "normal") ||
		     str_eq_c(st->type, "error")))
		return true;
	return has_im_payload(x) && !str_eq_c(st->type, "headline");
}

/* <message from=ACCOUNT type=TYPE><DIR xmlns=carbons><forwarded
 * xmlns=forward>ORIGINAL</forwarded></DIR></message>, addressed on delivery
 * to the receiving session's full JID (§7, §8). */
static struct stanza *carbons_wrap(const struct stanza *st,
				   const struct jid *account, const char *dir)
{
	struct jid bare = *account;
	bare.resource = STR_NULL;
	struct stanza *c = stanza_new(STANZA_MESSAGE, &bare, NULL, NULL);
	if (st->type.len > 0) {
		c->type = arena_strdup(c->a, st->type);
		xml_attr_set(c->a, c->x, "type", c->type);
	}
	c->to = bare;
	c->to_session = true;
	struct xml_elem *d = xml_add_child(c->a, c->x, STR_LIT(NS_CARBONS),
					   str_c(dir));
	struct xml_elem *f = xml_add_child(c->a, d, STR_LIT(NS_FORWARD),
					   STR_LIT("forwarded"));
	xml_append_elem(f, xml_copy(c->a, st->x));
	return c;
}

static bool listed(const struct sess_ref *refs, size_t n, uint64_t conn_id)
{
	for (size_t i = 0; i < n; i++)
		if (refs[i].conn_id == conn_id)
			return true;
	return false;
}

/* Sends a copy of st to every carbons-enabled resource of account except
 * those in skip[]. */
static void carbons_copy(const struct stanza *st, const struct jid *account,
			 const char *dir, const struct sess_ref *skip,
			 size_t nskip)
{
	char bare[JID_TEXT_MAX]; /* twice per message: no allocation */
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(jid_to_text(account, true, bare), refs,
				     ARRAY_SIZE(refs));
	for (size_t i = 0; i < n; i++)
		if (refs[i].carbons && !listed(skip, nskip, refs[i].conn_id))
			route_deliver(&refs[i], carbons_wrap(st, account, dir));
}

/* §8: a local client sent a message. */
static enum hook_ret carbons_sent(struct hook_ctx *ctx)
{
	if (carbons_eligible(ctx->st, false)) {
		struct sess_ref self = { .conn_id = ctx->conn_id };
		carbons_copy(ctx->st, ctx->user, "sent", &self, 1);
	}
	return HOOK_PASS;
}

/* §7: a message reaches a local account; refs get the original. */
static enum hook_ret carbons_received(struct hook_ctx *ctx)
{
	if (carbons_eligible(ctx->st, true))
		carbons_copy(ctx->st, &ctx->st->to, "received", ctx->refs,
			     ctx->nrefs);
	return HOOK_PASS;
}

static const struct iq_route carbons_iq[] = {
	{ IQ_SET, TO_BARE, NS_CARBONS, "enable", carbons_toggle },
	{ IQ_SET, TO_BARE, NS_CARBONS, "disable", carbons_toggle },
	{ 0 },
};

static const struct hook carbons_hooks[] = {
	/* After blocking (5): a refused message is not copied. */
	{ EV_MESSAGE_OUT, 20, carbons_sent },
	{ EV_MESSAGE_DELIVER, 20, carbons_received },
	{ 0 },
};

const struct module mod_carbons = {
	.name = "carbons",
	.spec = "XEP-0280",
	.iq = carbons_iq,
	.features = (const char *const[]){ NS_CARBONS, NULL },
	.hooks = carbons_hooks,
};
