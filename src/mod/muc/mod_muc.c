/*
 * mod_muc.c - XEP-0045 group chat on conference.HOST (config muc), served
 * in the process through the subdomain service mechanism (services.h).
 *
 * Every room belongs to one shard, chosen by a hash of its JID; a stanza
 * for a room that arrives on another shard is handed over with the
 * stanza (shard_post), so a room's state is touched by one thread only
 * and needs no lock. Delivery to occupants goes through router/fanout.h:
 * a message is serialized once into a refcounted buffer, and each shard
 * that holds occupants' connections gets one message listing them.
 * Occupants whose session is not ours (remote, over s2s) get a stanza
 * routed as usual. docs/internals/muc.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/shard.h"
#include "../../core/xmalloc.h"
#include "../../router/route.h"
#include "../../router/services.h"
#include "../../router/sessions.h"
#include "../../store/shapes.h"
#include "../../xml/dataform.h"
#include "../../xml/parser.h"
#include "../../xmpp/datetime.h"
#include "../../xmpp/ns.h"
#include "../disco.h"
#include "../module.h"
#include "muc.h"

/* ---- rooms, per shard, and the directory ---- */

/* rooms[shard]: room JID -> struct room, touched by that shard only
 * (and by the main thread before the shards start and after they end). */
static struct hmap *rooms;
static unsigned nrooms_tables;

/*
 * The directory: what disco#items on the service lists, and the room
 * count per service, for every shard to read. Changed on room creation,
 * destruction and configuration, never per message.
 */
struct dir_room {
	char *jid, *domain, *name;
	bool public_;
};
static uv_mutex_t dir_lock;
static struct hmap dir;
static size_t *dir_per_host; /* rooms of each host's service */
static bool dir_init;

static unsigned room_shard(struct str jid)
{
	return (unsigned)(hash_bytes(jid.p, jid.len) % nrooms_tables);
}

static void dir_update(const struct room *r, bool gone)
{
	uv_mutex_lock(&dir_lock);
	struct dir_room *d = hmap_get(&dir, str_c(r->jid));
	if (gone) {
		if (d != NULL) {
			dir_per_host[r->host_idx]--;
			hmap_del(&dir, str_c(r->jid));
			free(d->jid);
			free(d->domain);
			free(d->name);
			free(d);
		}
	} else {
		if (d == NULL) {
			d = xcalloc(1, sizeof(*d));
			d->jid = xstrdup(r->jid);
			d->domain = xstrdup(r->domain);
			hmap_put(&dir, str_c(d->jid), d);
			dir_per_host[r->host_idx]++;
		}
		free(d->name);
		d->name = r->cfg.name ? xstrdup(r->cfg.name) : NULL;
		d->public_ = r->cfg.public_ && !r->locked;
	}
	uv_mutex_unlock(&dir_lock);
}

static size_t dir_count(size_t host_idx)
{
	uv_mutex_lock(&dir_lock);
	size_t n = dir_per_host[host_idx];
	uv_mutex_unlock(&dir_lock);
	return n;
}

/* ---- affiliations and roles ---- */

static const char *const aff_names[] = {
	[AFF_NONE] = "none",     [AFF_OUTCAST] = "outcast",
	[AFF_MEMBER] = "member", [AFF_ADMIN] = "admin",
	[AFF_OWNER] = "owner",
};
static const char *const role_names[] = {
	[ROLE_NONE] = "none",
	[ROLE_VISITOR] = "visitor",
	[ROLE_PARTICIPANT] = "participant",
	[ROLE_MODERATOR] = "moderator",
};

const char *muc_aff_name(enum muc_aff a)
{
	return aff_names[a];
}

int muc_aff_parse(const char *s, enum muc_aff *a_r)
{
	for (size_t i = 0; i < ARRAY_SIZE(aff_names); i++)
		if (strcmp(s, aff_names[i]) == 0) {
			*a_r = (enum muc_aff)i;
			return 0;
		}
	return -1;
}

static int role_parse(const char *s, enum muc_role *r_r)
{
	for (size_t i = 0; i < ARRAY_SIZE(role_names); i++)
		if (strcmp(s, role_names[i]) == 0) {
			*r_r = (enum muc_role)i;
			return 0;
		}
	return -1;
}

enum muc_aff muc_aff_of(const struct room *r, const char *bare)
{
	return (enum muc_aff)(uintptr_t)hmap_get(&r->affs, str_c(bare));
}

void muc_aff_set(struct room *r, const char *bare, enum muc_aff a)
{
	if (a == AFF_NONE)
		hmap_del(&r->affs, str_c(bare));
	else
		hmap_put(&r->affs, str_c(bare), (void *)(uintptr_t)a);
	/* §7.10: a registration is a membership with a nick; outcasts
	 * have no reserved nick (§17.4, affiliation lists). */
	if (a < AFF_MEMBER)
		muc_nick_set(r, bare, NULL);
}

const char *muc_nick_of(const struct room *r, struct str bare)
{
	return hmap_get(&r->nick_of, bare);
}

const char *muc_nick_owner(const struct room *r, struct str nick)
{
	return hmap_get(&r->nick_owner, nick);
}

void muc_nick_set(struct room *r, const char *bare, const char *nick)
{
	char *old = hmap_del(&r->nick_of, str_c(bare));
	if (old != NULL) {
		free(hmap_del(&r->nick_owner, str_c(old)));
		free(old);
	}
	if (nick == NULL)
		return;
	/* One owner per nick (callers refuse a taken one; a record read
	 * back could still name it twice). */
	const char *prev = hmap_get(&r->nick_owner, str_c(nick));
	if (prev != NULL) {
		char *pb = xstrdup(prev);
		muc_nick_set(r, pb, NULL);
		free(pb);
	}
	hmap_put(&r->nick_of, str_c(bare), xstrdup(nick));
	hmap_put(&r->nick_owner, str_c(nick), xstrdup(bare));
}

static void free_value(struct str key, void *value, void *ud)
{
	(void)key;
	(void)ud;
	free(value);
}

void muc_nicks_clear(struct room *r)
{
	hmap_foreach(&r->nick_of, free_value, NULL);
	hmap_clear(&r->nick_of);
	hmap_foreach(&r->nick_owner, free_value, NULL);
	hmap_clear(&r->nick_owner);
}

int muc_register_form(struct arena *a, const struct dataform *f,
		      struct str *nick_r)
{
	const char *why;
	struct str v = dataform_value(f, "muc#register_roomnick");
	if (f->type != DATAFORM_SUBMIT ||
	    !str_eq_c(f->form_type, NS_MUC_REGISTER) || v.len == 0 ||
	    jid_resourceprep(a, v, nick_r, &why) < 0)
		return -1;
	*nick_r = arena_strdup(a, *nick_r);
	return nick_r->p != NULL ? 0 : -1;
}

int muc_request_form(const struct dataform *f, bool *allow_r,
		     struct str *nick_r)
{
	if (f->type != DATAFORM_SUBMIT ||
	    !str_eq_c(f->form_type, NS_MUC_REQUEST))
		return -1;
	struct str allow = dataform_value(f, "muc#request_allow");
	if (allow.p == NULL)
		return str_eq_c(dataform_value(f, "muc#role"), "participant")
			       ? 0
			       : -1;
	*nick_r = dataform_value(f, "muc#roomnick");
	if (dataform_bool(allow, allow_r) < 0 || nick_r->len == 0)
		return -1;
	return 1;
}

/* XEP-0045 §5.1.2: the role an affiliation starts with. */
static enum muc_role default_role(const struct room *r, enum muc_aff a)
{
	if (a >= AFF_ADMIN)
		return ROLE_MODERATOR;
	if (r->cfg.moderated && a < AFF_MEMBER)
		return ROLE_VISITOR;
	return ROLE_PARTICIPANT;
}

/* ---- rooms ---- */

static struct room *room_new(const char *node, const char *domain,
			     size_t host_idx)
{
	struct room *r = xcalloc(1, sizeof(*r));
	r->node = xstrdup(node);
	r->domain = xstrdup(domain);
	BUG_ON(asprintf(&r->jid, "%s@%s", node, domain) < 0);
	r->host_idx = host_idx;
	unsigned max = server.conf->muc.max_occupants;
	r->cfg.max_users = max < 1000 ? max : 1000;
	r->cfg.public_ = true;
	r->cfg.whois_anyone = false;
	r->cfg.change_subject = false;
	RAND_bytes(r->secret, sizeof(r->secret));
	return r;
}

static void hist_clear(struct room *r)
{
	for (size_t i = 0; i < r->hist_n; i++)
		shared_unref(&r->hist[(r->hist_head + i) % r->hist_cap].b);
	r->hist_n = 0;
	r->hist_head = 0;
}

static void sess_free(struct occ_sess *s)
{
	free(s->jid);
	free(s->to_attr);
	free(s->payload);
}

static void fwd_free(struct iq_fwd *f)
{
	free(f->target);
	free(f->target_nick);
	free(f->from);
	free(f->orig_id);
	memset(f, 0, sizeof(*f));
}

static void occupant_free(struct occupant *o)
{
	free(o->nick);
	free(o->bare);
	for (size_t i = 0; i < o->ns; i++)
		sess_free(&o->s[i]);
	free(o->s);
	shared_unref(&o->pres[0]);
	shared_unref(&o->pres[1]);
	free(o);
}

static void room_free(struct room *r)
{
	for (size_t i = 0; i < r->nocc; i++)
		occupant_free(r->occ[i]);
	free(r->occ);
	hist_clear(r);
	free(r->hist);
	hmap_clear(&r->by_nick);
	hmap_clear(&r->by_jid);
	hmap_clear(&r->affs);
	muc_nicks_clear(r);
	for (size_t i = 0; r->fwd != NULL && i < MUC_IQ_FWD_MAX; i++)
		fwd_free(&r->fwd[i]);
	free(r->fwd);
	free(r->cfg.name);
	free(r->cfg.desc);
	free(r->cfg.password);
	free(r->subject);
	free(r->subject_nick);
	free(r->node);
	free(r->domain);
	free(r->jid);
	free(r);
}

static void room_destroy(struct room *r)
{
	muc_archive_drop(r);
	hmap_del(&rooms[room_shard(str_c(r->jid))], str_c(r->jid));
	dir_update(r, true);
	room_free(r);
}

static void room_changed(struct room *r)
{
	dir_update(r, false);
	if (r->cfg.persistent && !r->locked)
		muc_store_save(r, false);
}

/* ---- building and sending ---- */

static struct jid room_jid(const struct room *r, const char *nick)
{
	return (struct jid){
		.node = str_c(r->node),
		.domain = str_c(r->domain),
		.resource = nick ? str_c(nick) : STR_NULL,
	};
}

static struct xml_elem *new_elem(struct arena *a, const char *kind,
				 const struct room *r, const char *nick,
				 const char *type)
{
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_CLIENT), str_c(kind));
	struct jid from = room_jid(r, nick);
	xml_attr_set(a, x, "from", jid_to_str(a, &from, false));
	if (type != NULL)
		xml_attr_set(a, x, "type", str_c(type));
	return x;
}

/* Routes bytes serialized from one stanza to a session that is not
 * ours (server-to-server): parsed back, addressed, routed. */
static void route_bytes(const struct occ_sess *o,
			const struct shared_bytes *b)
{
	struct arena *a = arena_new(0);
	struct xml_elem *x = xml_parse_elem(a, STR(b->data, b->len),
					    STR_LIT(NS_CLIENT));
	struct jid from;
	const char *why;
	enum stanza_err err;
	struct str f = x ? xml_attr_get(x, "from") : STR_NULL;
	if (f.p == NULL || jid_parse(a, f, &from, &why) < 0) {
		arena_destroy(&a);
		return;
	}
	xml_attr_set(a, x, "to", str_c(o->jid));
	struct stanza *st = stanza_wrap(a, x, &from, &err);
	if (st == NULL) {
		arena_destroy(&a);
		return;
	}
	route(st);
}

/* b to session s: appended to out with s's 'to' spliced in (a joiner of
 * ours, whose join is one write), or, out NULL, routed. */
static void splice_or_route(struct buf *out, const struct occ_sess *s,
			    const struct shared_bytes *b)
{
	if (out != NULL) {
		buf_append(out, b->data, b->at);
		buf_append_c(out, s->to_attr);
		buf_append(out, b->data + b->at, b->len - b->at);
	} else {
		route_bytes(s, b);
	}
}

/* One stanza to one session. */
static void sess_send(const struct occ_sess *s, struct shared_bytes *b)
{
	if (!s->local) {
		route_bytes(s, b);
		return;
	}
	struct fanout f;
	fanout_init(&f, b);
	fanout_add(&f, s->shard, s->conn_id, s->to_attr);
	fanout_send(&f);
}

/* One stanza to every session of one occupant. */
static void send_bytes(const struct occupant *o, struct shared_bytes *b)
{
	struct fanout f;
	fanout_init(&f, b);
	for (size_t i = 0; i < o->ns; i++) {
		const struct occ_sess *s = &o->s[i];
		if (s->local)
			fanout_add(&f, s->shard, s->conn_id, s->to_attr);
		else
			route_bytes(s, b);
	}
	fanout_send(&f);
}

static void send_elem(const struct occupant *o, const struct xml_elem *x)
{
	struct shared_bytes *b = shared_from_elem(x);
	if (b != NULL) {
		send_bytes(o, b);
		shared_unref(&b);
	}
}

/* To every occupant but skip (may be NULL): b[1] to those who may see
 * real JIDs, b[0] to the rest (b[1] NULL: b[0] to all). */
static void broadcast(const struct room *r, struct shared_bytes *b0,
		      struct shared_bytes *b1, const struct occupant *skip)
{
	struct fanout f[2];
	fanout_init(&f[0], b0);
	if (b1 != NULL)
		fanout_init(&f[1], b1);
	for (size_t i = 0; i < r->nocc; i++) {
		const struct occupant *o = r->occ[i];
		if (o == skip)
			continue;
		int v = b1 != NULL && (r->cfg.whois_anyone ||
				       o->role == ROLE_MODERATOR);
		for (size_t k = 0; k < o->ns; k++) {
			const struct occ_sess *s = &o->s[k];
			if (s->local)
				fanout_add(&f[v], s->shard, s->conn_id,
					   s->to_attr);
			else
				route_bytes(s, v ? b1 : b0);
		}
	}
	fanout_send(&f[0]);
	if (b1 != NULL)
		fanout_send(&f[1]);
}

static void broadcast_elem(const struct room *r, const struct xml_elem *x)
{
	struct shared_bytes *b = shared_from_elem(x);
	if (b != NULL) {
		broadcast(r, b, NULL, NULL);
		shared_unref(&b);
	}
}

/* XEP-0421: the same real bare JID gets the same id in a room, and ids
 * differ between rooms (keyed by the room's secret). */
static void make_occupant_id(const struct room *r, const char *bare,
			     char out[48])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	HMAC(EVP_sha256(), r->secret, sizeof(r->secret),
	     (const unsigned char *)bare, strlen(bare), md, &mdlen);
	EVP_EncodeBlock((unsigned char *)out, md, 24); /* 32 chars */
}

static void add_occupant_id(struct arena *a, struct xml_elem *x,
			    const struct occupant *o)
{
	struct xml_elem *e = xml_add_child(a, x, STR_LIT(NS_OCCUPANT_ID),
					   STR_LIT("occupant-id"));
	xml_attr_set(a, e, "id", str_c(o->occupant_id));
}

static struct xml_elem *add_status(struct arena *a, struct xml_elem *ux,
				   int code)
{
	struct xml_elem *s = xml_add_child(a, ux, STR_LIT(NS_MUC_USER),
					   STR_LIT("status"));
	xml_attr_set(a, s, "code", str_c(arena_printf(a, "%d", code)));
	return s;
}

struct pres_extra {
	const char *type;     /* "unavailable" or NULL */
	const int *codes;     /* status codes for everyone */
	size_t ncodes;
	const char *new_nick; /* 303 */
	const char *actor, *reason;
	bool destroyed;
	const char *alt;      /* destroy: alternate venue */
};

/* The presence of o as others see it (with_jid: with the real JID), or
 * as o sees itself (self: status 110 and self_codes). */
static struct xml_elem *occ_presence(struct arena *a, const struct room *r,
				     const struct occupant *o, bool with_jid,
				     const struct pres_extra *e, bool self,
				     const int *self_codes, size_t nself)
{
	struct xml_elem *x = NULL;
	bool unavailable = e != NULL && e->type != NULL;
	if (!unavailable && o->s[0].payload != NULL)
		x = xml_parse_elem(a, str_c(o->s[0].payload),
				   STR_LIT(NS_CLIENT));
	if (x == NULL)
		x = xml_elem_new(a, STR_LIT(NS_CLIENT), STR_LIT("presence"));
	struct jid from = room_jid(r, o->nick);
	xml_attr_set(a, x, "from", jid_to_str(a, &from, false));
	if (unavailable)
		xml_attr_set(a, x, "type", str_c(e->type));
	struct xml_elem *ux = xml_add_child(a, x, STR_LIT(NS_MUC_USER),
					    STR_LIT("x"));
	if (e != NULL && e->destroyed) {
		struct xml_elem *d = xml_add_child(a, ux, STR_LIT(NS_MUC_USER),
						   STR_LIT("destroy"));
		if (e->alt != NULL)
			xml_attr_set(a, d, "jid", str_c(e->alt));
		if (e->reason != NULL)
			xml_add_text(a, xml_add_child(a, d,
						      STR_LIT(NS_MUC_USER),
						      STR_LIT("reason")),
				     str_c(e->reason));
	}
	struct xml_elem *it = xml_add_child(a, ux, STR_LIT(NS_MUC_USER),
					    STR_LIT("item"));
	xml_attr_set(a, it, "affiliation",
		     str_c(aff_names[muc_aff_of(r, o->bare)]));
	xml_attr_set(a, it, "role",
		     str_c(role_names[unavailable ? ROLE_NONE : o->role]));
	if (with_jid || self)
		xml_attr_set(a, it, "jid", str_c(o->s[0].jid));
	if (e != NULL && e->new_nick != NULL)
		xml_attr_set(a, it, "nick", str_c(e->new_nick));
	if (e != NULL && e->actor != NULL) {
		struct xml_elem *ac = xml_add_child(a, it, STR_LIT(NS_MUC_USER),
						    STR_LIT("actor"));
		xml_attr_set(a, ac, "nick", str_c(e->actor));
	}
	if (e != NULL && e->reason != NULL && !e->destroyed)
		xml_add_text(a, xml_add_child(a, it, STR_LIT(NS_MUC_USER),
					      STR_LIT("reason")),
			     str_c(e->reason));
	if (self) {
		/* §7.2.2: 100 tells a client in a non-anonymous room that its
		 * JID is visible to all. */
		for (size_t i = 0; i < nself; i++)
			add_status(a, ux, self_codes[i]);
		if (r->cfg.whois_anyone && (e == NULL || e->type == NULL))
			add_status(a, ux, 100);
	}
	for (size_t i = 0; e != NULL && i < e->ncodes; i++)
		add_status(a, ux, e->codes[i]);
	if (self)
		add_status(a, ux, 110);
	add_occupant_id(a, x, o);
	return x;
}

/* Rebuilds the two shared forms of o's presence. */
static void occ_rebuild(const struct room *r, struct occupant *o)
{
	struct arena *a = arena_new(0);
	for (int v = 0; v < 2; v++) {
		shared_unref(&o->pres[v]);
		o->pres[v] = shared_from_elem(
			occ_presence(a, r, o, v, NULL, false, NULL, 0));
		if (o->pres[v] == NULL) /* too big to happen: bounded input */
			o->pres[v] = shared_new("<presence/>", 11, 9);
	}
	arena_destroy(&a);
}

/* o's presence change to every other occupant, then to o itself (each
 * of its sessions but except, which may be NULL). */
static void announce(const struct room *r, const struct occupant *o,
		     const struct pres_extra *e, const int *self_codes,
		     size_t nself, const struct occ_sess *except)
{
	struct arena *a = arena_new(0);
	struct shared_bytes *b0, *b1;
	if (e == NULL) {
		b0 = shared_ref(o->pres[0]);
		b1 = shared_ref(o->pres[1]);
	} else {
		b0 = shared_from_elem(occ_presence(a, r, o, false, e, false,
						   NULL, 0));
		b1 = shared_from_elem(occ_presence(a, r, o, true, e, false,
						   NULL, 0));
	}
	if (b0 != NULL && b1 != NULL)
		broadcast(r, b0, b1, o);
	shared_unref(&b0);
	shared_unref(&b1);
	struct shared_bytes *b = shared_from_elem(
		occ_presence(a, r, o, true, e, true, self_codes, nself));
	for (size_t i = 0; b != NULL && i < o->ns; i++)
		if (&o->s[i] != except)
			sess_send(&o->s[i], b);
	shared_unref(&b);
	arena_destroy(&a);
}

/* ---- errors ---- */

/* Answers st (consumed) with an error from the room, presence too (a
 * refused join is a presence error, XEP-0045 §7.2); type: the error
 * type the XEP's examples give where it is not the condition's default
 * (NULL: the default). The error carries the original's children
 * (§7.2.6 shows the <x/>). */
static void reply_error(struct stanza *st, enum stanza_err err,
			const char *type)
{
	route_bounce_ex(st, err,
			&(const struct bounce_opts){ .type = type,
						     .presence = true });
}

static void iq_result(struct stanza *st, struct xml_elem *payload)
{
	struct stanza *r = stanza_new(STANZA_IQ, &st->to, &st->from,
				      "result");
	xml_attr_set(r->a, r->x, "id", xml_attr_get(st->x, "id"));
	if (payload != NULL)
		xml_append_elem(r->x, xml_copy(r->a, payload));
	stanza_free(&st);
	route(r);
}

void muc_iq_reply(struct stanza *st, struct xml_elem *payload, int err)
{
	if (err != STANZA_ERR_NONE)
		reply_error(st, (enum stanza_err)err, NULL);
	else
		iq_result(st, payload);
}

/* ---- joining ---- */

static bool occ_may_create(const struct stanza *st)
{
	/* Accounts of our hosts create rooms; others join existing ones. */
	return st->from.node.len > 0 &&
	       conf_find_host(server.conf, st->from.domain.p,
			      st->from.domain.len) >= 0;
}

/* The client's presence without what the room adds or reads. Each
 * occupant keeps it three times (this and the two shared forms), and a
 * join sends every occupant's: past MUC_PRESENCE_MAX it is kept without
 * its children (show, status, caps...) rather than multiplied. */
#define MUC_PRESENCE_MAX (8 * 1024)

static char *presence_payload(struct stanza *st)
{
	struct arena *a = st->a;
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_CLIENT),
					  STR_LIT("presence"));
	xml_foreach_child(c, st->x)
	{
		if (str_eq_c(c->ns, NS_MUC) || str_eq_c(c->ns, NS_MUC_USER) ||
		    str_eq_c(c->ns, NS_OCCUPANT_ID))
			continue;
		xml_append_elem(x, xml_copy(a, c));
	}
	struct buf b = { .max = MUC_PRESENCE_MAX };
	if (xml_serialize(&b, x, STR_LIT(NS_CLIENT)) < 0 ||
	    buf_append(&b, "", 1) < 0) {
		buf_reset(&b);
		return xstrdup("<presence/>");
	}
	return b.data;
}

static int64_t parse_stamp(struct str s)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec;
	if (s.p == NULL || sscanf(s.p, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d,
				  &h, &mi, &sec) != 6 ||
	    y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 ||
	    h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	return (int64_t)timegm(&tm);
}

static long attr_long(const struct xml_elem *e, const char *name)
{
	struct str v = e ? xml_attr_get(e, name) : STR_NULL;
	if (v.p == NULL)
		return -1;
	char *end;
	long n = strtol(v.p, &end, 10);
	return *end == '\0' && n >= 0 ? n : -1;
}

/* §7.2.15: which of r's kept messages a joiner's <history/> (h, may be
 * NULL: all) asks for, as the index of the oldest one to send (hist_n:
 * none). Limits combine: maxchars (counted over bodies), maxstanzas,
 * seconds, since. */
size_t muc_history_first(const struct room *r, const struct xml_elem *h,
			 int64_t now)
{
	long maxchars = attr_long(h, "maxchars");
	long maxst = attr_long(h, "maxstanzas");
	long secs = attr_long(h, "seconds");
	int64_t since = h ? parse_stamp(xml_attr_get(h, "since")) : -1;
	size_t first = r->hist_n, chars = 0;
	while (first > 0) {
		const struct hist *e =
			&r->hist[(r->hist_head + first - 1) % r->hist_cap];
		size_t taken = r->hist_n - first;
		if (maxst >= 0 && taken >= (size_t)maxst)
			break;
		if (secs >= 0 && e->ts < now - secs)
			break;
		if (since >= 0 && e->ts < since)
			break;
		if (maxchars >= 0 && chars + e->chars > (size_t)maxchars)
			break;
		chars += e->chars;
		first--;
	}
	return first;
}

/* Sends them, oldest first: into out (a joiner of ours, one write), or
 * routed one by one. */
static void send_history(const struct room *r, const struct occ_sess *o,
			 const struct xml_elem *h, struct buf *out)
{
	size_t first = muc_history_first(r, h, (int64_t)time(NULL));
	for (size_t i = first; i < r->hist_n; i++) {
		splice_or_route(out, o,
				r->hist[(r->hist_head + i) % r->hist_cap].b);
	}
}

static struct xml_elem *subject_message(struct arena *a,
					const struct room *r)
{
	struct xml_elem *m = new_elem(a, "message", r, r->subject_nick,
				      "groupchat");
	struct xml_elem *s = xml_add_child(a, m, STR_LIT(NS_CLIENT),
					   STR_LIT("subject"));
	if (r->subject != NULL)
		xml_add_text(a, s, str_c(r->subject));
	return m;
}

static void occ_add(struct room *r, struct occupant *o)
{
	if (r->nocc == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 8;
		r->occ = xrealloc(r->occ, r->cap * sizeof(*r->occ));
	}
	o->idx = r->nocc;
	r->occ[r->nocc++] = o;
	hmap_put(&r->by_nick, str_c(o->nick), o);
	for (size_t i = 0; i < o->ns; i++)
		hmap_put(&r->by_jid, str_c(o->s[i].jid), o);
}

static void occ_remove(struct room *r, struct occupant *o)
{
	hmap_del(&r->by_nick, str_c(o->nick));
	for (size_t i = 0; i < o->ns; i++)
		hmap_del(&r->by_jid, str_c(o->s[i].jid));
	struct occupant *last = r->occ[--r->nocc];
	r->occ[o->idx] = last;
	last->idx = o->idx;
	occupant_free(o);
}

/* Destroys r if nobody is left and it is not persistent (§10.9: a
 * temporary room goes with its last occupant). */
static void room_maybe_gone(struct room *r)
{
	if (r->nocc == 0 && (!r->cfg.persistent || r->locked))
		room_destroy(r);
}

static void occ_locate(struct occ_sess *o, const struct jid *real)
{
	struct sess_ref ref;
	o->local = false;
	if (conf_find_host(server.conf, real->domain.p, real->domain.len) < 0)
		return;
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, real, true);
	if (sessions_find(bare, real->resource, &ref)) {
		o->local = true;
		o->shard = ref.shard;
		o->conn_id = ref.conn_id;
	}
	arena_destroy(&a);
}

/* The session of o with real full JID jid. */
static struct occ_sess *sess_of(struct occupant *o, struct str jid)
{
	for (size_t i = 0; i < o->ns; i++)
		if (str_eq_c(jid, o->s[i].jid))
			return &o->s[i];
	return NULL;
}

/* Makes s (a session of o) the one whose presence the room shows. */
static struct occ_sess *sess_to_front(struct occupant *o, struct occ_sess *s)
{
	if (s != &o->s[0]) {
		struct occ_sess t = o->s[0];
		o->s[0] = *s;
		*s = t;
	}
	return &o->s[0];
}

/* Adds a session to o (in front) from a presence; o is in the room. */
static struct occ_sess *sess_add(struct room *r, struct occupant *o,
				 struct stanza *st)
{
	o->s = xrealloc(o->s, (o->ns + 1) * sizeof(*o->s));
	struct occ_sess *s = &o->s[o->ns++];
	memset(s, 0, sizeof(*s));
	s->jid = xstrdup(jid_to_str(st->a, &st->from, false).p);
	s->to_attr = shared_to_attr(str_c(s->jid));
	s->payload = presence_payload(st);
	occ_locate(s, &st->from);
	if (r != NULL)
		hmap_put(&r->by_jid, str_c(s->jid), o);
	return sess_to_front(o, s);
}

/* Drops session s of o (which keeps at least one other). */
static void sess_remove(struct room *r, struct occupant *o,
			struct occ_sess *s)
{
	hmap_del(&r->by_jid, str_c(s->jid));
	sess_free(s);
	*s = o->s[--o->ns];
}

/* Whether st (a join or nick change to st->to.resource by bare) may
 * take that nick: free, or held by another session of the same
 * account, and not registered by someone else (§7.12). */
static bool nick_free_for(const struct room *r, struct stanza *st,
			  const char *bare, struct occupant **holder_r)
{
	struct occupant *h = hmap_get(&r->by_nick, st->to.resource);
	*holder_r = h;
	if (h != NULL && strcmp(h->bare, bare) != 0)
		return false;
	const char *owner = muc_nick_owner(r, st->to.resource);
	return owner == NULL || strcmp(owner, bare) == 0;
}

/* Sends the joining session s of o what a join gets (§7.2.3): the
 * others' presence first, then its own, then history, then the subject.
 * A session of ours gets all of it as one write. */
static void join_send(const struct room *r, const struct occupant *o,
		      const struct occ_sess *s, const struct xml_elem *mx,
		      bool created)
{
	struct buf out = { 0 };
	struct buf *bp = s->local ? &out : NULL;
	bool see_jids = r->cfg.whois_anyone || o->role == ROLE_MODERATOR;
	for (size_t i = 0; i < r->nocc; i++) {
		const struct occupant *p = r->occ[i];
		if (p == o)
			continue;
		splice_or_route(bp, s, p->pres[see_jids]);
	}
	struct arena *a = arena_new(0);
	int codes[2];
	size_t n = 0;
	if (created)
		codes[n++] = 201;
	struct xml_elem *self = occ_presence(a, r, o, true, NULL, true, codes,
					     n);
	struct xml_elem *subj = subject_message(a, r);
	const struct xml_elem *h = mx ? xml_child(mx, NS_MUC, "history")
				      : NULL;
	if (bp != NULL) {
		xml_attr_set(a, self, "to", str_c(s->jid));
		xml_serialize(bp, self, STR_LIT(NS_CLIENT));
		send_history(r, s, h, bp);
		xml_attr_set(a, subj, "to", str_c(s->jid));
		xml_serialize(bp, subj, STR_LIT(NS_CLIENT));
		struct shared_bytes *all = shared_new(out.data, out.len,
						      SHARED_NO_SPLICE);
		sess_send(s, all);
		shared_unref(&all);
		buf_reset(&out);
	} else {
		struct shared_bytes *b = shared_from_elem(self);
		if (b != NULL)
			sess_send(s, b);
		shared_unref(&b);
		send_history(r, s, h, NULL);
		b = shared_from_elem(subj);
		if (b != NULL)
			sess_send(s, b);
		shared_unref(&b);
	}
	arena_destroy(&a);
}

static void join(struct room *r, struct stanza *st, bool created)
{
	struct xml_elem *mx = xml_child(st->x, NS_MUC, "x");
	const char *bare = jid_to_str(st->a, &st->from, true).p;
	enum muc_aff aff = muc_aff_of(r, bare);
	if (r->locked && aff != AFF_OWNER) {
		reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
		return;
	}
	if (aff == AFF_OUTCAST) {
		reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
		return;
	}
	if (r->cfg.members_only && aff < AFF_MEMBER) {
		reply_error(st, STANZA_ERR_REGISTRATION_REQUIRED, NULL);
		return;
	}
	/* A nick in use by another account, or registered by one, is
	 * refused (§7.2.9, §7.12); another session of the same account
	 * joins the occupant it already is (several sessions, one nick:
	 * docs/internals/muc.md). */
	struct occupant *same;
	if (!nick_free_for(r, st, bare, &same)) {
		reply_error(st, STANZA_ERR_CONFLICT, NULL);
		return;
	}
	if (r->cfg.password_protected && r->cfg.password != NULL &&
	    aff < AFF_OWNER) {
		struct xml_elem *pw = mx ? xml_child(mx, NS_MUC, "password")
					 : NULL;
		if (pw == NULL ||
		    !str_eq_c(xml_text(st->a, pw), r->cfg.password)) {
			reply_error(st, STANZA_ERR_NOT_AUTHORIZED, NULL);
			return;
		}
	}
	if (same == NULL && r->nocc >= r->cfg.max_users && aff < AFF_ADMIN) {
		reply_error(st, STANZA_ERR_SERVICE_UNAVAILABLE, "wait");
		return;
	}
	if (same != NULL) {
		/* One more session of an occupant: it shows this session's
		 * presence now; every session sees itself (110). */
		struct occ_sess *s = sess_add(r, same, st);
		occ_rebuild(r, same);
		announce(r, same, NULL, NULL, 0, s);
		join_send(r, same, s, mx, false);
		stanza_free(&st);
		return;
	}
	struct occupant *o = xcalloc(1, sizeof(*o));
	o->nick = xstrdup(arena_strdup(st->a, st->to.resource).p);
	o->bare = xstrdup(bare);
	o->role = default_role(r, aff);
	make_occupant_id(r, bare, o->occupant_id);
	struct occ_sess *s = sess_add(NULL, o, st);
	occ_rebuild(r, o);
	occ_add(r, o);
	join_send(r, o, s, mx, created);
	struct shared_bytes *b0 = shared_ref(o->pres[0]);
	struct shared_bytes *b1 = shared_ref(o->pres[1]);
	broadcast(r, b0, b1, o);
	shared_unref(&b0);
	shared_unref(&b1);
	stanza_free(&st);
}

static void create_and_join(struct stanza *st, size_t host_idx)
{
	if (!occ_may_create(st)) {
		reply_error(st, STANZA_ERR_NOT_ALLOWED, NULL);
		return;
	}
	const char *domain = arena_strdup(st->a, st->to.domain).p;
	if (dir_count(host_idx) >= server.conf->muc.max_rooms) {
		reply_error(st, STANZA_ERR_RESOURCE_CONSTRAINT, "wait");
		return;
	}
	struct room *r = room_new(arena_strdup(st->a, st->to.node).p, domain,
				  host_idx);
	/* §10.1.1: a room made by a MUC client stays locked until its owner
	 * configures it (or accepts the defaults: an instant room); one
	 * made by a groupchat 1.0 client is instant at once. */
	r->locked = xml_child(st->x, NS_MUC, "x") != NULL;
	muc_aff_set(r, jid_to_str(st->a, &st->from, true).p, AFF_OWNER);
	hmap_put(&rooms[shard_self->id], str_c(r->jid), r);
	dir_update(r, false);
	join(r, st, true);
	room_maybe_gone(r);
}

/* ---- leaving, nick change, presence update ---- */

static void leave(struct room *r, struct occupant *o, const int *codes,
		  size_t ncodes, const char *actor, const char *reason)
{
	struct pres_extra e = {
		.type = "unavailable",
		.codes = codes,
		.ncodes = ncodes,
		.actor = actor,
		.reason = reason,
	};
	announce(r, o, &e, NULL, 0, NULL);
	occ_remove(r, o);
	/* The caller ends the room if that was the last occupant
	 * (room_maybe_gone), once it is done with it. */
}

/* Session jid of o leaves: the occupant leaves with its last session;
 * before that the session alone gets its unavailable self-presence and
 * the others see the presence of the session that stays. */
static void sess_leave(struct room *r, struct occupant *o, struct str jid,
		       const int *codes, size_t ncodes)
{
	struct occ_sess *s = sess_of(o, jid);
	if (s == NULL || o->ns == 1) {
		leave(r, o, codes, ncodes, NULL, NULL);
		return;
	}
	struct pres_extra e = {
		.type = "unavailable",
		.codes = codes,
		.ncodes = ncodes,
	};
	struct arena *a = arena_new(0);
	struct shared_bytes *b = shared_from_elem(
		occ_presence(a, r, o, true, &e, true, NULL, 0));
	if (b != NULL)
		sess_send(s, b);
	shared_unref(&b);
	arena_destroy(&a);
	sess_remove(r, o, s);
	occ_rebuild(r, o);
	announce(r, o, NULL, NULL, 0, NULL);
}

static void change_nick(struct room *r, struct occupant *o,
			struct stanza *st)
{
	struct occupant *holder;
	if (!nick_free_for(r, st, o->bare, &holder) || holder != NULL) {
		reply_error(st, STANZA_ERR_CONFLICT, NULL);
		return;
	}
	if (o->ns > 1) {
		/* The nick is the occupant's, shared by its sessions: one
		 * of them cannot take it elsewhere alone. */
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, "cancel");
		return;
	}
	char *new_nick = xstrdup(arena_strdup(st->a, st->to.resource).p);
	/* §7.6: unavailable with 303 and the new nick from the old one,
	 * then available from the new one. */
	int c303 = 303;
	struct pres_extra e = {
		.type = "unavailable",
		.codes = &c303,
		.ncodes = 1,
		.new_nick = new_nick,
	};
	announce(r, o, &e, NULL, 0, NULL);
	hmap_del(&r->by_nick, str_c(o->nick));
	free(o->nick);
	o->nick = new_nick;
	hmap_put(&r->by_nick, str_c(o->nick), o);
	free(o->s[0].payload);
	o->s[0].payload = presence_payload(st);
	occ_rebuild(r, o);
	announce(r, o, NULL, NULL, 0, NULL);
	stanza_free(&st);
}

static void handle_presence(struct room *r, struct stanza *st,
			    size_t host_idx)
{
	struct occupant *o = NULL;
	struct str from = jid_to_str(st->a, &st->from, false);
	if (r != NULL)
		o = hmap_get(&r->by_jid, from);
	if (str_eq_c(st->type, "unavailable") || str_eq_c(st->type, "error")) {
		if (o != NULL) {
			sess_leave(r, o, from, NULL, 0);
			room_maybe_gone(r);
		}
		stanza_free(&st);
		return;
	}
	if (st->type.len > 0) { /* subscriptions, probes: not for rooms */
		stanza_free(&st);
		return;
	}
	if (st->to.resource.len == 0) {
		/* §7.2.1: a join needs a nick. */
		if (o == NULL)
			reply_error(st, STANZA_ERR_JID_MALFORMED, NULL);
		else
			stanza_free(&st);
		return;
	}
	if (o == NULL) {
		if (r == NULL)
			create_and_join(st, host_idx);
		else
			join(r, st, false);
		return;
	}
	if (!str_eq_c(st->to.resource, o->nick)) {
		change_nick(r, o, st);
		return;
	}
	/* §7.7: a presence update, broadcast to all; the room shows the
	 * presence of the session that sent the latest. */
	struct occ_sess *s = sess_of(o, from);
	BUG_ON(s == NULL); /* by_jid holds exactly the sessions */
	s = sess_to_front(o, s);
	free(s->payload);
	s->payload = presence_payload(st);
	occ_locate(s, &st->from);
	occ_rebuild(r, o);
	announce(r, o, NULL, NULL, 0, NULL);
	stanza_free(&st);
}

/* ---- messages ---- */

static void apply_role(struct room *r, struct occupant *o, enum muc_role ro,
		       const char *actor, const char *reason);
static void voice_request(struct room *r, struct stanza *st,
			  struct xml_elem *fx);

static void stanza_id(char out[33])
{
	unsigned char raw[16];
	RAND_bytes(raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static void hist_add(struct room *r, struct shared_bytes *b, size_t chars,
		     const char *sid)
{
	size_t max = server.conf->muc.max_history;
	if (max == 0) {
		shared_unref(&b);
		return;
	}
	if (r->hist_cap == 0) {
		r->hist_cap = max;
		r->hist = xcalloc(max, sizeof(*r->hist));
	}
	if (r->hist_n == r->hist_cap) {
		shared_unref(&r->hist[r->hist_head].b);
		r->hist_head = (r->hist_head + 1) % r->hist_cap;
		r->hist_n--;
	}
	struct hist *h = &r->hist[(r->hist_head + r->hist_n++) % r->hist_cap];
	h->b = b;
	h->ts = (int64_t)time(NULL);
	h->chars = chars;
	snprintf(h->sid, sizeof(h->sid), "%s", sid);
}

/* Drops the kept message with stanza id sid (moderated away); false if
 * none is kept. */
static bool hist_remove(struct room *r, struct str sid)
{
	for (size_t i = 0; i < r->hist_n; i++) {
		struct hist *h = &r->hist[(r->hist_head + i) % r->hist_cap];
		if (!str_eq_c(sid, h->sid))
			continue;
		shared_unref(&h->b);
		/* Close the gap: the newer ones move down by one. */
		for (size_t k = i; k + 1 < r->hist_n; k++)
			r->hist[(r->hist_head + k) % r->hist_cap] =
				r->hist[(r->hist_head + k + 1) % r->hist_cap];
		r->hist_n--;
		return true;
	}
	return false;
}

static void groupchat(struct room *r, struct stanza *st)
{
	struct occupant *o =
		hmap_get(&r->by_jid, jid_to_str(st->a, &st->from, false));
	if (o == NULL) {
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
		return;
	}
	if (o->role == ROLE_VISITOR) {
		reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
		return;
	}
	struct xml_elem *subject = xml_child(st->x, NS_CLIENT, "subject");
	struct xml_elem *body = xml_child(st->x, NS_CLIENT, "body");
	if (subject != NULL && body == NULL) {
		/* §8.1: moderators change the subject, participants too if
		 * the room lets them. */
		if (o->role != ROLE_MODERATOR && !r->cfg.change_subject) {
			reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
			return;
		}
		free(r->subject);
		free(r->subject_nick);
		r->subject = xstrdup(xml_text(st->a, subject).p);
		r->subject_nick = xstrdup(o->nick);
		if (r->cfg.persistent)
			muc_store_save(r, false);
	}
	struct arena *a = arena_new(0);
	struct xml_elem *m = new_elem(a, "message", r, o->nick, "groupchat");
	struct str id = xml_attr_get(st->x, "id");
	if (id.p != NULL)
		xml_attr_set(a, m, "id", id);
	xml_foreach_child(c, st->x)
	{
		/* Nobody forges the room's stanza ids or occupant ids. */
		if (str_eq_c(c->ns, NS_OCCUPANT_ID) ||
		    (str_eq_c(c->ns, NS_SID) &&
		     str_eq_c(c->name, "stanza-id")))
			continue;
		xml_append_elem(m, xml_copy(a, c));
	}
	add_occupant_id(a, m, o);
	char sid[33];
	int64_t aid = muc_archive_id(r, m, sid);
	if (aid == 0)
		stanza_id(sid);
	struct xml_elem *se = xml_add_child(a, m, STR_LIT(NS_SID),
					    STR_LIT("stanza-id"));
	xml_attr_set(a, se, "id", str_c(sid));
	xml_attr_set(a, se, "by", str_c(r->jid));
	struct shared_bytes *b = shared_from_elem(m);
	if (b == NULL) {
		arena_destroy(&a);
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
		return;
	}
	broadcast(r, b, NULL, NULL);
	shared_unref(&b);
	if (aid != 0)
		muc_archive_message(
			r, o, jid_to_str(st->a, &st->from, false).p, m, aid);
	if (body != NULL) {
		char stamp[XEP82_DATETIME_LEN];
		xep82_now(stamp);
		struct xml_elem *d = xml_add_child(a, m, STR_LIT(NS_DELAY),
						   STR_LIT("delay"));
		xml_attr_set(a, d, "from", str_c(r->jid));
		xml_attr_set(a, d, "stamp", str_c(stamp));
		struct shared_bytes *h = shared_from_elem(m);
		if (h != NULL)
			hist_add(r, h, xml_text(a, body).len, sid);
	}
	arena_destroy(&a);
	stanza_free(&st);
}

/* §7.5: a private message to one occupant, from the sender's nick. */
static void private_message(struct room *r, struct stanza *st)
{
	struct occupant *o =
		hmap_get(&r->by_jid, jid_to_str(st->a, &st->from, false));
	if (str_eq_c(st->type, "groupchat")) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, "modify");
		return;
	}
	if (o == NULL) {
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
		return;
	}
	struct occupant *to = hmap_get(&r->by_nick, st->to.resource);
	if (to == NULL) {
		reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
		return;
	}
	struct arena *a = arena_new(0);
	struct xml_elem *m = new_elem(a, "message", r, o->nick,
				      st->type.len ? st->type.p : NULL);
	struct str id = xml_attr_get(st->x, "id");
	if (id.p != NULL)
		xml_attr_set(a, m, "id", id);
	xml_foreach_child(c, st->x)
	{
		if (!str_eq_c(c->ns, NS_OCCUPANT_ID))
			xml_append_elem(m, xml_copy(a, c));
	}
	xml_add_child(a, m, STR_LIT(NS_MUC_USER), STR_LIT("x"));
	add_occupant_id(a, m, o);
	send_elem(to, m);
	arena_destroy(&a);
	stanza_free(&st);
}

/* §7.8.2: a mediated invitation, passed on from the room. */
static void invite(struct room *r, struct stanza *st, struct xml_elem *ux)
{
	struct occupant *o =
		hmap_get(&r->by_jid, jid_to_str(st->a, &st->from, false));
	if (o == NULL) {
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
		return;
	}
	const char *bare = o->bare;
	if (r->cfg.members_only && muc_aff_of(r, bare) < AFF_ADMIN) {
		reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
		return;
	}
	xml_foreach_child(inv, ux)
	{
		if (!str_eq_c(inv->name, "invite"))
			continue;
		struct jid to;
		const char *why;
		struct str tos = xml_attr_get(inv, "to");
		if (tos.p == NULL || jid_parse(st->a, tos, &to, &why) < 0)
			continue;
		/* §9.3: inviting to a members-only room makes a member. */
		if (r->cfg.members_only) {
			const char *tb = jid_to_str(st->a, &to, true).p;
			if (muc_aff_of(r, tb) == AFF_NONE) {
				muc_aff_set(r, tb, AFF_MEMBER);
				room_changed(r);
			}
		}
		struct jid rj = room_jid(r, NULL);
		struct stanza *m = stanza_new(STANZA_MESSAGE, &rj, &to, NULL);
		struct xml_elem *x = xml_add_child(m->a, m->x,
						   STR_LIT(NS_MUC_USER),
						   STR_LIT("x"));
		struct xml_elem *i = xml_add_child(m->a, x,
						   STR_LIT(NS_MUC_USER),
						   STR_LIT("invite"));
		xml_attr_set(m->a, i, "from",
			     jid_to_str(m->a, &st->from, false));
		struct xml_elem *reason = xml_child(inv, NS_MUC_USER, "reason");
		if (reason != NULL)
			xml_append_elem(i, xml_copy(m->a, reason));
		if (r->cfg.password_protected && r->cfg.password != NULL)
			xml_add_text(m->a,
				     xml_add_child(m->a, x,
						   STR_LIT(NS_MUC_USER),
						   STR_LIT("password")),
				     str_c(r->cfg.password));
		route(m);
	}
	stanza_free(&st);
}

static void handle_message(struct room *r, struct stanza *st)
{
	if (str_eq_c(st->type, "error")) {
		/* §18.1 (error handling): an occupant whose client bounces
		 * room traffic is gone. */
		struct str from = jid_to_str(st->a, &st->from, false);
		struct occupant *o = hmap_get(&r->by_jid, from);
		if (o != NULL) {
			int c = 333;
			sess_leave(r, o, from, &c, 1);
			room_maybe_gone(r);
		}
		stanza_free(&st);
		return;
	}
	if (st->to.resource.len > 0) {
		private_message(r, st);
		return;
	}
	struct xml_elem *ux = xml_child(st->x, NS_MUC_USER, "x");
	if (ux != NULL && xml_child(ux, NS_MUC_USER, "invite") != NULL) {
		invite(r, st, ux);
		return;
	}
	struct xml_elem *fx = dataform_find(st->x);
	if (!str_eq_c(st->type, "groupchat") && fx != NULL) {
		voice_request(r, st, fx);
		return;
	}
	if (!str_eq_c(st->type, "groupchat")) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	groupchat(r, st);
}

/* ---- disco ---- */

static void room_info(struct room *r, struct stanza *st)
{
	struct arena *a = st->a;
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_DISCO_INFO),
					  STR_LIT("query"));
	disco_add_identity(a, q, "conference", "text",
			   r->cfg.name ? r->cfg.name : r->node);
	disco_add_feature(a, q, NS_MUC);
	disco_add_feature(a, q, NS_DISCO_INFO);
	disco_add_feature(a, q, NS_DISCO_ITEMS);
	disco_add_feature(a, q, NS_OCCUPANT_ID);
	disco_add_feature(a, q, NS_SID);
	disco_add_feature(a, q, NS_MODERATE);
	disco_add_feature(a, q, NS_MODERATE_0);
	disco_add_feature(a, q, "urn:xmpp:ping");
	disco_add_feature(a, q, NS_REGISTER);
	muc_archive_features(r, a, q);
	disco_add_feature(a, q, r->cfg.persistent ? "muc_persistent"
					    : "muc_temporary");
	disco_add_feature(a, q, r->cfg.public_ ? "muc_public" : "muc_hidden");
	disco_add_feature(a, q, r->cfg.members_only ? "muc_membersonly"
					      : "muc_open");
	disco_add_feature(a, q, r->cfg.moderated ? "muc_moderated"
					   : "muc_unmoderated");
	disco_add_feature(a, q, r->cfg.password_protected ? "muc_passwordprotected"
						    : "muc_unsecured");
	disco_add_feature(a, q, r->cfg.whois_anyone ? "muc_nonanonymous"
					      : "muc_semianonymous");
	struct xml_elem *f = dataform_new(a, "result", NS_MUC_ROOMINFO);
	struct str v = str_c(arena_printf(a, "%zu", r->nocc));
	dataform_add_field(a, f, "muc#roominfo_occupants", NULL, NULL, &v, 1);
	if (r->cfg.desc != NULL) {
		v = str_c(r->cfg.desc);
		dataform_add_field(a, f, "muc#roominfo_description", NULL,
				   NULL, &v, 1);
	}
	v = str_c(r->subject ? r->subject : "");
	dataform_add_field(a, f, "muc#roominfo_subject", NULL, NULL, &v, 1);
	xml_append_elem(q, f);
	iq_result(st, q);
}

/* §6.5: the occupants, for occupants only (they see them anyway). */
static void room_items(struct room *r, struct stanza *st)
{
	struct arena *a = st->a;
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_DISCO_ITEMS),
					  STR_LIT("query"));
	bool inside = hmap_get(&r->by_jid,
			       jid_to_str(a, &st->from, false)) != NULL;
	for (size_t i = 0; inside && i < r->nocc; i++) {
		struct xml_elem *it = xml_add_child(a, q,
						    STR_LIT(NS_DISCO_ITEMS),
						    STR_LIT("item"));
		struct jid j = room_jid(r, r->occ[i]->nick);
		xml_attr_set(a, it, "jid", jid_to_str(a, &j, false));
	}
	iq_result(st, q);
}

/* ---- owner: configuration and destruction (§10) ---- */

static struct xml_elem *config_form(struct arena *a, const struct room *r)
{
	struct xml_elem *f = dataform_new(a, "form", NS_MUC_ROOMCONFIG);
	struct str v;
#define TEXT(var, label, val)                                            \
	v = str_c((val) ? (val) : "");                                   \
	dataform_add_field(a, f, var, "text-single", label, &v, 1)
#define BOOL(var, label, val)                                            \
	v = str_c((val) ? "1" : "0");                                    \
	dataform_add_field(a, f, var, "boolean", label, &v, 1)
	TEXT("muc#roomconfig_roomname", "Room name", r->cfg.name);
	TEXT("muc#roomconfig_roomdesc", "Description", r->cfg.desc);
	BOOL("muc#roomconfig_persistentroom", "Persistent",
	     r->cfg.persistent);
	BOOL("muc#roomconfig_publicroom", "Listed in the directory",
	     r->cfg.public_);
	BOOL("muc#roomconfig_membersonly", "Members only",
	     r->cfg.members_only);
	BOOL("muc#roomconfig_moderatedroom", "Moderated", r->cfg.moderated);
	BOOL("muc#roomconfig_enablearchiving", "Archive messages (XEP-0313)",
	     !r->cfg.no_archive);
	BOOL("muc#roomconfig_changesubject", "Participants set the subject",
	     r->cfg.change_subject);
	BOOL("muc#roomconfig_passwordprotectedroom", "Password protected",
	     r->cfg.password_protected);
	v = str_c(r->cfg.password ? r->cfg.password : "");
	dataform_add_field(a, f, "muc#roomconfig_roomsecret", "text-private",
			   "Password", &v, 1);
	v = str_c(arena_printf(a, "%u", r->cfg.max_users));
	dataform_add_field(a, f, "muc#roomconfig_maxusers", "text-single",
			   "Most occupants", &v, 1);
	v = str_c(r->cfg.whois_anyone ? "anyone" : "moderators");
	struct xml_elem *w = dataform_add_field(
		a, f, "muc#roomconfig_whois", "list-single",
		"Who may see real JIDs", &v, 1);
	dataform_add_option(a, w, "Moderators", STR_LIT("moderators"));
	dataform_add_option(a, w, "Anyone", STR_LIT("anyone"));
#undef TEXT
#undef BOOL
	return f;
}

/* Applies a submitted muc#roomconfig form to cfg; -1 for a value we
 * refuse (the whole form is refused: <not-acceptable/>). */
int muc_config_apply(const struct dataform *f, struct room_cfg *cfg)
{
	for (size_t i = 0; i < f->nfields; i++) {
		const struct dataform_field *d = &f->fields[i];
		const char *var = d->var.p;
		struct str v = d->nvalues ? d->values[0] : STR_LIT("");
		bool *flag = NULL;
		if (strcmp(var, "muc#roomconfig_persistentroom") == 0)
			flag = &cfg->persistent;
		else if (strcmp(var, "muc#roomconfig_publicroom") == 0)
			flag = &cfg->public_;
		else if (strcmp(var, "muc#roomconfig_membersonly") == 0)
			flag = &cfg->members_only;
		else if (strcmp(var, "muc#roomconfig_moderatedroom") == 0)
			flag = &cfg->moderated;
		else if (strcmp(var, "muc#roomconfig_changesubject") == 0)
			flag = &cfg->change_subject;
		else if (strcmp(var,
				"muc#roomconfig_passwordprotectedroom") == 0)
			flag = &cfg->password_protected;
		if (flag != NULL) {
			if (dataform_bool(v, flag) < 0)
				return -1;
		} else if (strcmp(var, "muc#roomconfig_enablearchiving") == 0 ||
			   strcmp(var, "mam") == 0) {
			/* Prosody's name, and ejabberd's. */
			bool on;
			if (dataform_bool(v, &on) < 0)
				return -1;
			cfg->no_archive = !on;
		} else if (strcmp(var, "muc#roomconfig_roomname") == 0) {
			free(cfg->name);
			cfg->name = v.len ? xstrdup(v.p) : NULL;
		} else if (strcmp(var, "muc#roomconfig_roomdesc") == 0) {
			free(cfg->desc);
			cfg->desc = v.len ? xstrdup(v.p) : NULL;
		} else if (strcmp(var, "muc#roomconfig_roomsecret") == 0) {
			free(cfg->password);
			cfg->password = v.len ? xstrdup(v.p) : NULL;
		} else if (strcmp(var, "muc#roomconfig_maxusers") == 0) {
			char *end;
			unsigned long n = strtoul(v.p ? v.p : "", &end, 10);
			if (v.len == 0 || *end != '\0' || n < 1 ||
			    n > server.conf->muc.max_occupants)
				return -1;
			cfg->max_users = (unsigned)n;
		} else if (strcmp(var, "muc#roomconfig_whois") == 0) {
			if (str_eq_c(v, "anyone"))
				cfg->whois_anyone = true;
			else if (str_eq_c(v, "moderators"))
				cfg->whois_anyone = false;
			else
				return -1;
		} else {
			/* Fields of other XEPs' extensions we do not have:
			 * XEP-0045 §10.2 lets a service ignore them. */
		}
	}
	if (cfg->password_protected && cfg->password == NULL)
		return -1;
	return 0;
}

void muc_cfg_free(struct room_cfg *c)
{
	free(c->name);
	free(c->desc);
	free(c->password);
}

static void destroy_room(struct room *r, struct xml_elem *d,
			 struct arena *a)
{
	struct pres_extra e = {
		.type = "unavailable",
		.destroyed = true,
	};
	struct str alt = d ? xml_attr_get(d, "jid") : STR_NULL;
	struct xml_elem *reason = d ? xml_child(d, NS_MUC_OWNER, "reason")
				    : NULL;
	e.alt = alt.p;
	e.reason = reason ? xml_text(a, reason).p : NULL;
	/* §10.9: every occupant is told, each as itself (110). */
	while (r->nocc > 0) {
		struct occupant *o = r->occ[r->nocc - 1];
		send_elem(o, occ_presence(a, r, o, true, &e, true, NULL, 0));
		occ_remove(r, o);
	}
	if (r->cfg.persistent)
		muc_store_save(r, true);
	room_destroy(r);
}

static void owner_iq(struct room *r, struct stanza *st,
		     struct xml_elem *q)
{
	const char *bare = jid_to_str(st->a, &st->from, true).p;
	if (muc_aff_of(r, bare) != AFF_OWNER) {
		reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
		return;
	}
	struct arena *a = st->a;
	if (str_eq_c(st->type, "get")) {
		struct xml_elem *res = xml_elem_new(a, STR_LIT(NS_MUC_OWNER),
						    STR_LIT("query"));
		xml_append_elem(res, config_form(a, r));
		iq_result(st, res);
		return;
	}
	struct xml_elem *d = xml_child(q, NS_MUC_OWNER, "destroy");
	if (d != NULL) {
		struct stanza *keep = st;
		destroy_room(r, d, a);
		iq_result(keep, NULL);
		return;
	}
	struct xml_elem *fx = dataform_find(q);
	struct dataform f;
	if (fx == NULL || dataform_parse(a, fx, &f) < 0) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	if (f.type == DATAFORM_CANCEL) {
		/* §10.1.3: cancelling the configuration of a new room
		 * destroys it. */
		if (r->locked) {
			destroy_room(r, NULL, a);
		}
		iq_result(st, NULL);
		return;
	}
	if (f.type != DATAFORM_SUBMIT ||
	    (f.form_type.p != NULL &&
	     !str_eq_c(f.form_type, NS_MUC_ROOMCONFIG))) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	struct room_cfg c = r->cfg;
	c.name = r->cfg.name ? xstrdup(r->cfg.name) : NULL;
	c.desc = r->cfg.desc ? xstrdup(r->cfg.desc) : NULL;
	c.password = r->cfg.password ? xstrdup(r->cfg.password) : NULL;
	if (muc_config_apply(&f, &c) < 0) {
		muc_cfg_free(&c);
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
		return;
	}
	bool was_persistent = r->cfg.persistent && !r->locked;
	bool whois_changed = c.whois_anyone != r->cfg.whois_anyone;
	bool moderated_changed = c.moderated != r->cfg.moderated;
	muc_cfg_free(&r->cfg);
	r->cfg = c;
	r->locked = false;
	if (was_persistent && !r->cfg.persistent)
		muc_store_save(r, true);
	room_changed(r);
	iq_result(st, NULL);
	/* §10.2.1: occupants are told of a change in what they see
	 * (172/173: the room became non-anonymous or semi-anonymous); a
	 * change of moderation moves participants and visitors. */
	if (whois_changed) {
		struct arena *ma = arena_new(0);
		struct xml_elem *m = new_elem(ma, "message", r, NULL,
					      "groupchat");
		struct xml_elem *ux = xml_add_child(ma, m, STR_LIT(NS_MUC_USER),
						    STR_LIT("x"));
		add_status(ma, ux, r->cfg.whois_anyone ? 172 : 173);
		broadcast_elem(r, m);
		arena_destroy(&ma);
	}
	for (size_t i = 0; moderated_changed && i < r->nocc; i++) {
		struct occupant *o = r->occ[i];
		enum muc_role nr = default_role(r, muc_aff_of(r, o->bare));
		if (o->role != ROLE_MODERATOR && nr != o->role) {
			o->role = nr;
			occ_rebuild(r, o);
			announce(r, o, NULL, NULL, 0, NULL);
		}
	}
	room_maybe_gone(r);
}

/* ---- admin: roles and affiliations (§8, §9) ---- */

struct list_walk {
	const struct room *r;
	struct arena *a;
	struct xml_elem *q;
	enum muc_aff want;
};

static void list_aff(struct str key, void *value, void *ud)
{
	struct list_walk *w = ud;
	if ((enum muc_aff)(uintptr_t)value != w->want)
		return;
	struct xml_elem *it = xml_add_child(w->a, w->q, STR_LIT(NS_MUC_ADMIN),
					    STR_LIT("item"));
	xml_attr_set(w->a, it, "affiliation", str_c(aff_names[w->want]));
	xml_attr_set(w->a, it, "jid", key);
	/* §17.4: the nick, when one is registered. */
	const char *nick = muc_nick_of(w->r, key);
	if (nick != NULL)
		xml_attr_set(w->a, it, "nick",
			     arena_strdup(w->a, str_c(nick)));
}

static void admin_get(struct room *r, struct stanza *st,
		      struct xml_elem *item, enum muc_aff my,
		      enum muc_role my_role)
{
	struct arena *a = st->a;
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_MUC_ADMIN),
					  STR_LIT("query"));
	struct str as = xml_attr_get(item, "affiliation");
	struct str rs = xml_attr_get(item, "role");
	enum muc_aff af;
	enum muc_role ro;
	if (as.p != NULL && muc_aff_parse(as.p, &af) == 0 && af != AFF_NONE) {
		/* §9.5, §10.5, §10.8: admins read members and outcasts,
		 * owners read owners and admins too. */
		enum muc_aff need = af >= AFF_ADMIN ? AFF_OWNER : AFF_ADMIN;
		if (my < need) {
			reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
			return;
		}
		struct list_walk w = { r, a, q, af };
		hmap_foreach(&r->affs, list_aff, &w);
	} else if (rs.p != NULL && role_parse(rs.p, &ro) == 0 &&
		   ro != ROLE_NONE) {
		if (my_role != ROLE_MODERATOR) {
			reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
			return;
		}
		for (size_t i = 0; i < r->nocc; i++) {
			struct occupant *o = r->occ[i];
			if (o->role != ro)
				continue;
			struct xml_elem *it = xml_add_child(
				a, q, STR_LIT(NS_MUC_ADMIN), STR_LIT("item"));
			xml_attr_set(a, it, "nick", str_c(o->nick));
			xml_attr_set(a, it, "role", str_c(role_names[ro]));
			xml_attr_set(a, it, "jid", str_c(o->s[0].jid));
			xml_attr_set(a, it, "affiliation",
				     str_c(aff_names[muc_aff_of(r, o->bare)]));
		}
	} else {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	iq_result(st, q);
}

struct owners_walk {
	size_t n;
};

static void count_owner(struct str key, void *value, void *ud)
{
	(void)key;
	if ((enum muc_aff)(uintptr_t)value == AFF_OWNER)
		((struct owners_walk *)ud)->n++;
}

/* Checks one admin item; returns STANZA_ERR_NONE or the error. */
static enum stanza_err admin_check(struct room *r, struct stanza *st,
				   struct xml_elem *it, enum muc_aff my,
				   const struct occupant *me)
{
	struct str nick = xml_attr_get(it, "nick");
	struct str jid = xml_attr_get(it, "jid");
	struct str rs = xml_attr_get(it, "role");
	struct str as = xml_attr_get(it, "affiliation");
	enum muc_role ro;
	enum muc_aff af;
	/* §17.4 (business rules, IQ): an item changes a role or an
	 * affiliation, never both. */
	if (rs.p != NULL && as.p != NULL)
		return STANZA_ERR_BAD_REQUEST;
	if (rs.p != NULL) {
		if (nick.p == NULL || role_parse(rs.p, &ro) < 0)
			return STANZA_ERR_BAD_REQUEST;
		if (me == NULL || me->role != ROLE_MODERATOR)
			return STANZA_ERR_FORBIDDEN;
		struct occupant *o = hmap_get(&r->by_nick, nick);
		if (o == NULL)
			return STANZA_ERR_ITEM_NOT_FOUND;
		enum muc_aff their = muc_aff_of(r, o->bare);
		/* §8.2: nobody is kicked by a moderator of a lower
		 * affiliation. */
		if (ro == ROLE_NONE && their > my)
			return STANZA_ERR_NOT_ALLOWED;
		/* §8.4: voice is never taken from an admin or owner, nor
		 * from anyone at or above the moderator's affiliation. */
		if (ro == ROLE_VISITOR && (their >= AFF_ADMIN || their >= my))
			return STANZA_ERR_NOT_ALLOWED;
		/* §9.6, §9.7: granting or revoking moderator is an admin's,
		 * and an admin or owner stays a moderator. */
		if ((ro == ROLE_MODERATOR || o->role == ROLE_MODERATOR) &&
		    my < AFF_ADMIN)
			return STANZA_ERR_NOT_ALLOWED;
		if (ro == ROLE_PARTICIPANT && o->role == ROLE_MODERATOR &&
		    their >= AFF_ADMIN)
			return STANZA_ERR_NOT_ALLOWED;
		return STANZA_ERR_NONE;
	}
	if (as.p == NULL || jid.p == NULL || muc_aff_parse(as.p, &af) < 0)
		return STANZA_ERR_BAD_REQUEST;
	struct jid j;
	const char *why;
	if (jid_parse(st->a, jid, &j, &why) < 0)
		return STANZA_ERR_JID_MALFORMED;
	const char *bare = jid_to_str(st->a, &j, true).p;
	enum muc_aff their = muc_aff_of(r, bare);
	if (my < AFF_ADMIN)
		return STANZA_ERR_FORBIDDEN;
	/* §9.1: an admin or owner does not ban itself. */
	if (af == AFF_OUTCAST &&
	    str_eq_c(jid_to_str(st->a, &st->from, true), bare))
		return STANZA_ERR_CONFLICT;
	/* §9: admins change none/outcast/member below admin; owners
	 * everything (§10.3-10.7). */
	if (my == AFF_ADMIN && (af >= AFF_ADMIN || their >= AFF_ADMIN))
		return STANZA_ERR_NOT_ALLOWED;
	if (their == AFF_OWNER && af != AFF_OWNER) {
		struct owners_walk w = { 0 };
		hmap_foreach(&r->affs, count_owner, &w);
		if (w.n <= 1) /* §10.6: the last owner stays */
			return STANZA_ERR_CONFLICT;
	}
	return STANZA_ERR_NONE;
}

/* The notice of a change of o's role or affiliation made by the occupant
 * actor (a nick; NULL: not an occupant) carries the actor and the reason,
 * as kicks and bans do (XEP-0045 §8.4 shows the reason in the notice of
 * voice). Only the notice: the presence kept for later joiners is o's as
 * it is now. */
static void change_notice(const struct room *r, const struct occupant *o,
			  const char *actor, const char *reason)
{
	struct pres_extra e = {
		.actor = actor,
		.reason = reason,
	};
	announce(r, o, e.actor || e.reason ? &e : NULL, NULL, 0, NULL);
}

/* actor is the caller's copy of the nick, not the occupant's own: the
 * actor may be among those that leave (an owner banning their own account
 * from one of its two occupants), and the others' notices still name it. */
static void apply_role(struct room *r, struct occupant *o, enum muc_role ro,
		       const char *actor, const char *reason)
{
	if (ro == ROLE_NONE) {
		int c = 307; /* §8.2: kicked */
		leave(r, o, &c, 1, actor, reason);
		return;
	}
	o->role = ro;
	occ_rebuild(r, o);
	change_notice(r, o, actor, reason);
}

static void apply_aff(struct room *r, const char *bare, enum muc_aff af,
		      const char *actor, const char *reason)
{
	muc_aff_set(r, bare, af);
	/* Everyone present with that bare JID learns the change. */
	for (size_t i = r->nocc; i-- > 0;) {
		if (i >= r->nocc)
			continue;
		struct occupant *o = r->occ[i];
		if (strcmp(o->bare, bare) != 0)
			continue;
		if (af == AFF_OUTCAST) {
			int c = 301; /* §9.1: banned */
			leave(r, o, &c, 1, actor, reason);
			continue;
		}
		if (af < AFF_MEMBER && r->cfg.members_only) {
			int c = 321; /* §9.4: no longer a member */
			leave(r, o, &c, 1, actor, reason);
			continue;
		}
		o->role = default_role(r, af);
		occ_rebuild(r, o);
		change_notice(r, o, actor, reason);
	}
}

static void admin_iq(struct room *r, struct stanza *st, struct xml_elem *q)
{
	const char *bare = jid_to_str(st->a, &st->from, true).p;
	enum muc_aff my = muc_aff_of(r, bare);
	struct occupant *me =
		hmap_get(&r->by_jid, jid_to_str(st->a, &st->from, false));
	struct xml_elem *first = xml_child(q, NS_MUC_ADMIN, "item");
	if (first == NULL) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	if (str_eq_c(st->type, "get")) {
		admin_get(r, st, first, my, me ? me->role : ROLE_NONE);
		return;
	}
	/* All items are checked before any is applied: a batch is all or
	 * nothing (§9.5 shows several items in one set). */
	xml_foreach_child(it, q)
	{
		if (!str_eq_c(it->name, "item"))
			continue;
		enum stanza_err e = admin_check(r, st, it, my, me);
		if (e != STANZA_ERR_NONE) {
			reply_error(st, e, NULL);
			return;
		}
	}
	bool aff_changed = false;
	char *me_nick = me ? xstrdup(me->nick) : NULL;
	xml_foreach_child(it, q)
	{
		if (!str_eq_c(it->name, "item"))
			continue;
		struct xml_elem *re = xml_child(it, NS_MUC_ADMIN, "reason");
		const char *reason = re ? xml_text(st->a, re).p : NULL;
		me = me_nick ? hmap_get(&r->by_nick, str_c(me_nick)) : NULL;
		const char *actor = me ? me_nick : NULL;
		struct str rs = xml_attr_get(it, "role");
		if (rs.p != NULL) {
			enum muc_role ro = ROLE_NONE;
			role_parse(rs.p, &ro);
			struct occupant *o = hmap_get(
				&r->by_nick, xml_attr_get(it, "nick"));
			if (o != NULL)
				apply_role(r, o, ro, actor, reason);
			continue;
		}
		enum muc_aff af = AFF_NONE;
		muc_aff_parse(xml_attr_get(it, "affiliation").p, &af);
		struct jid j;
		const char *why;
		jid_parse(st->a, xml_attr_get(it, "jid"), &j, &why);
		apply_aff(r, jid_to_str(st->a, &j, true).p, af, actor, reason);
		aff_changed = true;
	}
	free(me_nick);
	if (aff_changed)
		room_changed(r);
	iq_result(st, NULL);
	room_maybe_gone(r);
}

/* XEP-0425: a moderator retracts a message by the room's stanza id:
 * every occupant is told (XEP-0424 <retract/> with <moderated/>), and
 * the message leaves the history new joiners get and becomes its
 * tombstone in the archive. A message older than the history is
 * announced all the same: clients keep it.
 *
 * Two versions of the request are answered: 0.3 (message-moderate:1,
 * `<moderate id><retract/><reason/></moderate>`) and 0.2
 * (`<apply-to xmlns=fasten:0 id><moderate xmlns=message-moderate:0>
 * <retract xmlns=message-retract:0/><reason/></moderate></apply-to>`),
 * which clients in use still send. One announcement carries both forms
 * (as Prosody's does), so each occupant's client finds the one it reads,
 * whichever version the moderator's spoke. */
static void moderate(struct room *r, struct stanza *st, struct str id,
		     const struct xml_elem *retract, const struct xml_elem *why_el)
{
	struct occupant *me =
		hmap_get(&r->by_jid, jid_to_str(st->a, &st->from, false));
	if (me == NULL || me->role != ROLE_MODERATOR) {
		reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
		return;
	}
	if (id.p == NULL || id.len == 0 || retract == NULL) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	hist_remove(r, id);
	struct arena *a = arena_new(0);
	struct xml_elem *m = new_elem(a, "message", r, NULL, "groupchat");
	char mid[33];
	stanza_id(mid);
	xml_attr_set(a, m, "id", str_c(mid));
	struct jid by = room_jid(r, me->nick);
	struct str by_s = jid_to_str(a, &by, false);
	struct str why = why_el ? xml_text(st->a, why_el) : STR_NULL;
	/* 0.3 */
	struct xml_elem *rt = xml_add_child(a, m, STR_LIT(NS_RETRACT),
					    STR_LIT("retract"));
	xml_attr_set(a, rt, "id", id);
	struct xml_elem *md = xml_add_child(a, rt, STR_LIT(NS_MODERATE),
					    STR_LIT("moderated"));
	xml_attr_set(a, md, "by", by_s);
	add_occupant_id(a, md, me);
	if (why_el != NULL)
		xml_add_text(a, xml_add_child(a, rt, STR_LIT(NS_RETRACT),
					      STR_LIT("reason")),
			     why);
	/* 0.2 */
	struct xml_elem *ap = xml_add_child(a, m, STR_LIT(NS_FASTEN),
					    STR_LIT("apply-to"));
	xml_attr_set(a, ap, "id", id);
	struct xml_elem *md0 = xml_add_child(a, ap, STR_LIT(NS_MODERATE_0),
					     STR_LIT("moderated"));
	xml_attr_set(a, md0, "by", by_s);
	xml_add_child(a, md0, STR_LIT(NS_RETRACT_0), STR_LIT("retract"));
	if (why_el != NULL)
		xml_add_text(a, xml_add_child(a, md0, STR_LIT(NS_MODERATE_0),
					      STR_LIT("reason")),
			     why);
	muc_archive_retract(r, id, md, why);
	broadcast_elem(r, m);
	arena_destroy(&a);
	iq_result(st, NULL);
}

/* 0.3: <moderate xmlns=message-moderate:1 id><retract/>... */
static void moderate_1(struct room *r, struct stanza *st, struct xml_elem *q)
{
	moderate(r, st, xml_attr_get(q, "id"),
		 xml_child(q, NS_RETRACT, "retract"),
		 xml_child(q, NS_MODERATE, "reason"));
}

/* 0.2: <apply-to xmlns=fasten:0 id><moderate xmlns=message-moderate:0>
 * <retract xmlns=message-retract:0/>... (an apply-to with anything else
 * inside is not a moderation: feature-not-implemented). */
static void moderate_0(struct room *r, struct stanza *st, struct xml_elem *q)
{
	struct xml_elem *mo = xml_child(q, NS_MODERATE_0, "moderate");
	if (mo == NULL) {
		reply_error(st, STANZA_ERR_FEATURE_NOT_IMPLEMENTED, NULL);
		return;
	}
	moderate(r, st, xml_attr_get(q, "id"),
		 xml_child(mo, NS_RETRACT_0, "retract"),
		 xml_child(mo, NS_MODERATE_0, "reason"));
}

/* ---- voice requests (§7.13, §8.6) ---- */

/* The approval form a moderator gets for visitor v's request. */
static struct xml_elem *voice_form(struct arena *a, const struct room *r,
				   const struct occupant *v)
{
	struct xml_elem *m = new_elem(a, "message", r, NULL, NULL);
	char mid[33];
	stanza_id(mid);
	xml_attr_set(a, m, "id", arena_strdup(a, str_c(mid)));
	struct xml_elem *f = dataform_new(a, "form", NS_MUC_REQUEST);
	xml_add_text(a, xml_add_child(a, f, STR_LIT(NS_DATA),
				      STR_LIT("title")),
		     STR_LIT("Voice request"));
	struct str val = STR_LIT("participant");
	dataform_add_field(a, f, "muc#role", "list-single", "Requested role",
			   &val, 1);
	val = str_c(v->s[0].jid);
	dataform_add_field(a, f, "muc#jid", "jid-single", "User ID", &val, 1);
	val = str_c(v->nick);
	dataform_add_field(a, f, "muc#roomnick", "text-single",
			   "Room Nickname", &val, 1);
	val = STR_LIT("false");
	dataform_add_field(a, f, "muc#request_allow", "boolean",
			   "Grant voice to this person?", &val, 1);
	xml_append_elem(m, f);
	return m;
}

/* A muc#request form from an occupant: a visitor asking for voice
 * (passed on to every moderator), or a moderator's answer to such a
 * request (muc#request_allow; true grants voice, §8.6). */
static void voice_request(struct room *r, struct stanza *st,
			  struct xml_elem *fx)
{
	struct occupant *o =
		hmap_get(&r->by_jid, jid_to_str(st->a, &st->from, false));
	struct dataform f;
	bool yes = false;
	struct str nick = STR_NULL;
	int kind = dataform_parse(st->a, fx, &f) < 0
			   ? -1
			   : muc_request_form(&f, &yes, &nick);
	if (kind < 0) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	if (o == NULL) { /* §7.4: from occupants only */
		reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
		return;
	}
	if (kind == 1) {
		if (o->role != ROLE_MODERATOR) {
			reply_error(st, STANZA_ERR_FORBIDDEN, NULL);
			return;
		}
		struct occupant *v = hmap_get(&r->by_nick, nick);
		if (v == NULL) {
			reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
			return;
		}
		/* §8.3: granting voice is a moderator's; someone who
		 * already has it keeps what it has. */
		if (yes && v->role == ROLE_VISITOR)
			apply_role(r, v, ROLE_PARTICIPANT, o->nick, NULL);
		stanza_free(&st);
		return;
	}
	if (o->role != ROLE_VISITOR) { /* it has voice already */
		stanza_free(&st);
		return;
	}
	struct arena *a = arena_new(0);
	struct xml_elem *m = voice_form(a, r, o);
	for (size_t i = 0; i < r->nocc; i++)
		if (r->occ[i]->role == ROLE_MODERATOR)
			send_elem(r->occ[i], m);
	arena_destroy(&a);
	stanza_free(&st);
}

/* ---- nick registration (§7.10, §7.12) ---- */

static struct xml_elem *register_form(struct arena *a)
{
	struct xml_elem *f = dataform_new(a, "form", NS_MUC_REGISTER);
	struct xml_elem *fd = dataform_add_field(
		a, f, "muc#register_roomnick", "text-single",
		"Desired Nickname", NULL, 0);
	xml_add_child(a, fd, STR_LIT(NS_DATA), STR_LIT("required"));
	return f;
}

/* jabber:iq:register to the room: a registration reserves a nick and
 * makes a member (§7.10); <remove/> gives both up. */
static void register_iq(struct room *r, struct stanza *st,
			struct xml_elem *q)
{
	struct arena *a = st->a;
	const char *bare = jid_to_str(a, &st->from, true).p;
	enum muc_aff my = muc_aff_of(r, bare);
	if (my == AFF_OUTCAST) {
		reply_error(st, STANZA_ERR_NOT_ALLOWED, NULL);
		return;
	}
	const char *mine = muc_nick_of(r, str_c(bare));
	if (str_eq_c(st->type, "get")) {
		struct xml_elem *res = xml_elem_new(a, STR_LIT(NS_REGISTER),
						    STR_LIT("query"));
		if (mine != NULL) {
			xml_add_child(a, res, STR_LIT(NS_REGISTER),
				      STR_LIT("registered"));
			xml_add_text(a, xml_add_child(a, res,
						      STR_LIT(NS_REGISTER),
						      STR_LIT("username")),
				     arena_strdup(a, str_c(mine)));
		} else {
			xml_append_elem(res, register_form(a));
		}
		iq_result(st, res);
		return;
	}
	if (xml_child(q, NS_REGISTER, "remove") != NULL) {
		if (mine == NULL) {
			reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
			return;
		}
		muc_nick_set(r, bare, NULL);
		if (my == AFF_MEMBER)
			apply_aff(r, bare, AFF_NONE, NULL, NULL);
		room_changed(r);
		iq_result(st, NULL);
		room_maybe_gone(r);
		return;
	}
	struct xml_elem *fx = dataform_find(q);
	struct dataform f;
	struct str nick;
	if (fx == NULL || dataform_parse(a, fx, &f) < 0 ||
	    muc_register_form(a, &f, &nick) < 0) {
		reply_error(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	const char *owner = muc_nick_owner(r, nick);
	struct occupant *holder = hmap_get(&r->by_nick, nick);
	if ((owner != NULL && strcmp(owner, bare) != 0) ||
	    (holder != NULL && strcmp(holder->bare, bare) != 0)) {
		reply_error(st, STANZA_ERR_CONFLICT, NULL);
		return;
	}
	/* The membership first: an affiliation below member has no nick.
	 * Present sessions of the account see the change (§7.10). */
	if (my < AFF_MEMBER)
		apply_aff(r, bare, AFF_MEMBER, NULL, NULL);
	muc_nick_set(r, bare, nick.p);
	room_changed(r);
	iq_result(st, NULL);
}

/* §7.12: the nick bare registered, as the name of an identity (none:
 * an empty result). */
static void roomuser_item(struct room *r, struct stanza *st)
{
	struct arena *a = st->a;
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_DISCO_INFO),
					  STR_LIT("query"));
	xml_attr_set(a, q, "node", STR_LIT("x-roomuser-item"));
	const char *nick = muc_nick_of(r, jid_to_str(a, &st->from, true));
	if (nick != NULL)
		disco_add_identity(a, q, "conference", "text",
				   arena_strdup(a, str_c(nick)).p);
	iq_result(st, q);
}

/* ---- iqs to occupants (§17.4 business rules) ---- */

/* Gives st new addresses, both in the tree and parsed. */
static int readdress(struct stanza *st, struct str from, struct str to)
{
	struct jid f, t;
	const char *why;
	from = arena_strdup(st->a, from);
	to = arena_strdup(st->a, to);
	if (jid_parse(st->a, from, &f, &why) < 0 ||
	    jid_parse(st->a, to, &t, &why) < 0)
		return -1;
	st->from = f;
	st->to = t;
	xml_attr_set(st->a, st->x, "from", from);
	xml_attr_set(st->a, st->x, "to", to);
	return 0;
}

/* An iq request from occupant o to occupant t goes to t's real JID
 * from o's occupant JID, under an id of the room's: neither learns the
 * other's real JID. vCards are the account's, kept by its server: those
 * requests go to the bare JID. The oldest of MUC_IQ_FWD_MAX unanswered
 * requests is forgotten (its answer is then dropped). */
static void forward_iq(struct room *r, const struct occupant *o,
		       const struct occupant *t, struct stanza *st,
		       const struct xml_elem *q)
{
	if (r->fwd == NULL)
		r->fwd = xcalloc(MUC_IQ_FWD_MAX, sizeof(*r->fwd));
	struct iq_fwd *f = &r->fwd[r->fwd_next];
	r->fwd_next = (r->fwd_next + 1) % MUC_IQ_FWD_MAX;
	fwd_free(f);
	bool vcard = str_eq_c(q->ns, NS_VCARD_TEMP);
	struct str id = xml_attr_get(st->x, "id");
	stanza_id(f->id);
	f->target = xstrdup(vcard ? t->bare : t->s[0].jid);
	f->target_nick = xstrdup(t->nick);
	f->from = xstrdup(jid_to_str(st->a, &st->from, false).p);
	f->orig_id = id.p != NULL ? xstrdup(arena_strdup(st->a, id).p) : NULL;
	struct jid fj = room_jid(r, o->nick);
	if (readdress(st, jid_to_str(st->a, &fj, false), str_c(f->target)) <
	    0) {
		fwd_free(f);
		stanza_free(&st);
		return;
	}
	xml_attr_set(st->a, st->x, "id", arena_strdup(st->a, str_c(f->id)));
	route(st);
}

/* An answer to a forwarded iq goes back to the one who asked, from the
 * occupant JID it asked; anything else is dropped. */
static void forward_reply(struct room *r, struct stanza *st)
{
	struct str id = xml_attr_get(st->x, "id");
	struct str from = jid_to_str(st->a, &st->from, false);
	for (size_t i = 0; r->fwd != NULL && id.p != NULL &&
			   i < MUC_IQ_FWD_MAX;
	     i++) {
		struct iq_fwd *f = &r->fwd[i];
		if (f->id[0] == '\0' || !str_eq_c(id, f->id) ||
		    !str_eq_c(from, f->target))
			continue;
		struct jid fj = room_jid(r, f->target_nick);
		if (readdress(st, jid_to_str(st->a, &fj, false),
			      str_c(f->from)) < 0) {
			fwd_free(f);
			break;
		}
		xml_attr_set(st->a, st->x, "id",
			     f->orig_id ? arena_strdup(st->a, str_c(f->orig_id))
					: STR_NULL);
		fwd_free(f);
		route(st);
		return;
	}
	stanza_free(&st);
}

static void handle_iq(struct room *r, struct stanza *st)
{
	bool request = str_eq_c(st->type, "get") || str_eq_c(st->type, "set");
	if (!request) {
		if (st->to.resource.len > 0)
			forward_reply(r, st);
		else
			stanza_free(&st);
		return;
	}
	struct xml_elem *q = xml_first_child_elem(st->x);
	if (st->to.resource.len > 0) {
		/* XEP-0410: a client pings its own occupant JID to learn
		 * whether it is still joined. */
		struct occupant *o = hmap_get(
			&r->by_jid, jid_to_str(st->a, &st->from, false));
		if (o == NULL) {
			reply_error(st, STANZA_ERR_NOT_ACCEPTABLE, NULL);
			return;
		}
		struct occupant *t = hmap_get(&r->by_nick, st->to.resource);
		if (t == NULL) {
			reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
			return;
		}
		/* XEP-0410: the room answers a self-ping itself. */
		if (t == o && str_eq_c(q->ns, "urn:xmpp:ping"))
			iq_result(st, NULL);
		else
			forward_iq(r, o, t, st, q);
		return;
	}
	if (muc_archive_iq(r, st, q))
		return;
	bool get = str_eq_c(st->type, "get");
	if (get && str_eq_c(q->ns, NS_DISCO_INFO) &&
	    str_eq_c(xml_attr_get(q, "node"), "x-roomuser-item"))
		roomuser_item(r, st);
	else if (get && str_eq_c(q->ns, NS_DISCO_INFO) &&
		 xml_attr_get(q, "node").p != NULL)
		reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
	else if (str_eq_c(q->ns, NS_REGISTER) && str_eq_c(q->name, "query"))
		register_iq(r, st, q);
	else if (get && str_eq_c(q->ns, NS_DISCO_INFO))
		room_info(r, st);
	else if (get && str_eq_c(q->ns, NS_DISCO_ITEMS))
		room_items(r, st);
	else if (str_eq_c(q->ns, NS_MUC_OWNER) && str_eq_c(q->name, "query"))
		owner_iq(r, st, q);
	else if (str_eq_c(q->ns, NS_MUC_ADMIN) && str_eq_c(q->name, "query"))
		admin_iq(r, st, q);
	else if (!get && str_eq_c(q->ns, NS_MODERATE) &&
		 str_eq_c(q->name, "moderate"))
		moderate_1(r, st, q);
	else if (!get && str_eq_c(q->ns, NS_FASTEN) &&
		 str_eq_c(q->name, "apply-to"))
		moderate_0(r, st, q);
	else if (get && str_eq_c(q->ns, "urn:xmpp:ping"))
		iq_result(st, NULL);
	else
		reply_error(st, STANZA_ERR_FEATURE_NOT_IMPLEMENTED, NULL);
}

/* ---- dispatch ---- */

static void room_stanza(struct stanza *st, size_t host_idx)
{
	struct str jid = jid_to_str(st->a, &st->to, true);
	struct room *r = hmap_get(&rooms[shard_self->id], jid);
	if (st->kind == STANZA_PRESENCE) {
		handle_presence(r, st, host_idx);
		return;
	}
	if (r == NULL) {
		/* §6.3 / §7.2: no such room. */
		if (st->kind == STANZA_IQ && !str_eq_c(st->type, "get") &&
		    !str_eq_c(st->type, "set"))
			stanza_free(&st);
		else
			reply_error(st, STANZA_ERR_ITEM_NOT_FOUND, NULL);
		return;
	}
	if (st->kind == STANZA_MESSAGE)
		handle_message(r, st);
	else
		handle_iq(r, st);
}

struct room_msg {
	struct shard_msg m;
	struct stanza *st;
	size_t host_idx;
};

static void on_room_msg(struct shard *s, struct shard_msg *m)
{
	struct room_msg *rm = (struct room_msg *)m;
	struct stanza *st = rm->st;
	size_t host_idx = rm->host_idx;
	free(rm);
	if (s->stopped_hook_ran)
		stanza_free(&st);
	else
		room_stanza(st, host_idx);
}

static void muc_stanza(struct stanza *st, size_t host_idx)
{
	if (st->to.node.len == 0) {
		/* The service itself takes only iqs (its iq routes). */
		if (st->kind == STANZA_IQ)
			route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
		else
			stanza_free(&st);
		return;
	}
	unsigned owner = room_shard(jid_to_str(st->a, &st->to, true));
	if (owner == shard_self->id) {
		room_stanza(st, host_idx);
		return;
	}
	struct room_msg *rm = xcalloc(1, sizeof(*rm));
	rm->m.fn = on_room_msg;
	rm->st = st;
	rm->host_idx = host_idx;
	shard_post(&server.shards[owner], &rm->m);
}

/* ---- the service: disco ---- */

static const char *muc_label(void)
{
	return server.conf->muc.enabled ? server.conf->muc.subdomain : NULL;
}

static enum hook_ret svc_info(struct iq_ctx *ctx)
{
	if (xml_attr_get(ctx->payload, "node").p != NULL)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct arena *a = ctx->st->a;
	struct xml_elem *q = iq_payload_new(ctx, NS_DISCO_INFO, "query");
	disco_add_identity(a, q, "conference", "text", "Chatrooms");
	disco_add_feature(a, q, NS_DISCO_INFO);
	disco_add_feature(a, q, NS_DISCO_ITEMS);
	disco_add_feature(a, q, NS_MUC);
	disco_add_feature(a, q, NS_OCCUPANT_ID);
	disco_add_feature(a, q, NS_SID);
	return iq_reply_result(ctx, q);
}

struct items_walk {
	struct arena *a;
	struct xml_elem *q;
	const char *domain;
};

static void list_room(struct str key, void *value, void *ud)
{
	(void)key;
	struct items_walk *w = ud;
	struct dir_room *d = value;
	if (!d->public_ || strcmp(d->domain, w->domain) != 0)
		return;
	struct xml_elem *it = xml_add_child(w->a, w->q,
					    STR_LIT(NS_DISCO_ITEMS),
					    STR_LIT("item"));
	xml_attr_set(w->a, it, "jid", str_c(d->jid));
	if (d->name != NULL)
		xml_attr_set(w->a, it, "name", str_c(d->name));
}

/* §6.1: the public rooms. */
static enum hook_ret svc_items(struct iq_ctx *ctx)
{
	if (xml_attr_get(ctx->payload, "node").p != NULL)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct arena *a = ctx->st->a;
	struct xml_elem *q = iq_payload_new(ctx, NS_DISCO_ITEMS, "query");
	struct items_walk w = {
		a, q, arena_strdup(a, ctx->st->to.domain).p
	};
	uv_mutex_lock(&dir_lock);
	hmap_foreach(&dir, list_room, &w);
	uv_mutex_unlock(&dir_lock);
	return iq_reply_result(ctx, q);
}

static const struct iq_route service_iq[] = {
	{ IQ_GET, TO_SERVICE, NS_DISCO_INFO, "query", svc_info },
	{ IQ_GET, TO_SERVICE, NS_DISCO_ITEMS, "query", svc_items },
	{ 0 },
};

/* ---- start and end ---- */

struct load_walk {
	const char *domain;
	size_t host_idx;
	size_t n;
};

static int load_room(const char *key, const void *value, size_t len,
		     void *ud)
{
	struct load_walk *w = ud;
	struct room *r = room_new(key, w->domain, w->host_idx);
	if (muc_room_from_record(r, value, len) < 0) {
		log_warnx("muc: room %s: unreadable record, skipped", r->jid);
		room_free(r);
		return 0;
	}
	r->cfg.persistent = true;
	hmap_put(&rooms[room_shard(str_c(r->jid))], str_c(r->jid), r);
	dir_update(r, false);
	w->n++;
	return 0;
}

/* A room of w's service is still there (start-up: every room is a
 * persistent one just loaded). */
static bool room_kept(const char *node, void *ud)
{
	const struct load_walk *w = ud;
	char *jid = NULL;
	BUG_ON(asprintf(&jid, "%s@%s", node, w->domain) < 0);
	bool kept = hmap_get(&rooms[room_shard(str_c(jid))], str_c(jid));
	free(jid);
	return kept;
}

static int muc_start(const char **why_r)
{
	if (!dir_init) {
		uv_mutex_init(&dir_lock);
		dir_init = true;
	}
	nrooms_tables = server.nshards ? server.nshards : 1;
	dir_per_host = xcalloc(server.conf->nhosts, sizeof(*dir_per_host));
	rooms = xcalloc(nrooms_tables, sizeof(*rooms));
	const struct config *conf = server.conf;
	for (size_t h = 0; h < conf->nhosts; h++) {
		struct load_walk w = { NULL, h, 0 };
		char *d = NULL;
		BUG_ON(asprintf(&d, "%s.%s", conf->muc.subdomain,
				conf->hosts[h]) < 0);
		w.domain = d;
		if (store_map_all(server.store, "muc_rooms", d, "", load_room,
				  &w) < 0) {
			free(d);
			*why_r = "muc: cannot read the persistent rooms";
			return -1;
		}
		if (w.n > 0)
			log_info("muc: %zu persistent rooms on %s", w.n, d);
		if (muc_archive_sweep(server.store, d, room_kept, &w) < 0) {
			free(d);
			*why_r = "muc: cannot read the archives of rooms";
			return -1;
		}
		free(d);
	}
	return 0;
}

static void free_room(struct str key, void *value, void *ud)
{
	(void)key;
	(void)ud;
	room_free(value);
}

static void free_dir(struct str key, void *value, void *ud)
{
	(void)key;
	(void)ud;
	struct dir_room *d = value;
	free(d->jid);
	free(d->domain);
	free(d->name);
	free(d);
}

static void muc_fini(void)
{
	for (unsigned i = 0; rooms != NULL && i < nrooms_tables; i++) {
		hmap_foreach(&rooms[i], free_room, NULL);
		hmap_clear(&rooms[i]);
	}
	free(rooms);
	rooms = NULL;
	if (dir_init) {
		hmap_foreach(&dir, free_dir, NULL);
		hmap_clear(&dir);
	}
	free(dir_per_host);
	dir_per_host = NULL;
}

const struct module mod_muc = {
	.name = "muc",
	.spec = "XEP-0045",
	.store = &muc_schema,
	.service = &(const struct module_service){
		.label = muc_label,
		.iq = service_iq,
		.stanza = muc_stanza,
		.start = muc_start,
	},
	.fini = muc_fini,
};
