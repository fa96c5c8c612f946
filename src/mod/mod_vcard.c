/*
 * mod_vcard.c - XEP-0054: vcard-temp. An account stores its vCard (§3.2,
 * replacing any previous one) and anyone may read it at the account's bare
 * JID (§3.3); the server answers for the account, never a resource.
 *
 * Storage: the keyval table `vcard`, value the <vCard/> element serialized
 * by xml_serialize (at most VCARD_MAX bytes of UTF-8). A set is stored only
 * if xml_parse_elem reads it back, so every stored vCard can be served.
 * A <vCard/> with no content deletes the stored one. With none stored, the
 * owner gets an empty <vCard/> (§3.1 allows it or an error) and others
 * <service-unavailable/>, the same as for a missing account (§3.3, v1.3:
 * no directory harvesting).
 *
 * XEP-0398: a set is a keyed job of the account (as PEP requests are), and
 * in its transaction a changed PHOTO is published as the account's
 * XEP-0084 avatar (pep_sync.h); the reverse, a PEP avatar into the PHOTO,
 * is done by mod_avatar with vcard_save().
 */
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../store/shapes.h"
#include "../xml/parser.h"
#include "module.h"
#include "pubsub/pep_sync.h"
#include "vcard.h"

#define VCARD_TABLE "vcard"
/* Serialized bytes; avatars (XEP-0153) fit, unbounded storage does not. */
#define VCARD_MAX (64 * 1024)

/* The per-request state across iq_defer, in the request's arena. */
struct vcard_req {
	const char *host, *user; /* the vCard's account, NUL-terminated */
	bool own;                /* the requester's own vCard */
	struct xml_elem *vcard;  /* get: the stored vCard, or NULL */
	enum stanza_err err;     /* set: refused */
	struct pep_sync *sync;   /* set: the avatar conversion */
};

static const char *const vcard_migrations[] = {
	"CREATE TABLE vcard (host TEXT NOT NULL, user TEXT NOT NULL, "
	"value BLOB NOT NULL, PRIMARY KEY (host, user)) WITHOUT ROWID",
	NULL,
};

static const struct store_schema vcard_schema = {
	.name = "vcard",
	.migrations = vcard_migrations,
	.user_tables = (const char *const[]){ VCARD_TABLE, NULL },
};

/* ---- storage (thread pool) ---- */

/* The stored vCard in value, parsed into *vcard_r; -1 if unreadable. */
static int vcard_parse(struct arena *a, struct buf *value,
		       struct xml_elem **vcard_r)
{
	*vcard_r = xml_parse_elem(a, buf_str(value), STR_LIT(""));
	if (*vcard_r == NULL || !str_eq_c((*vcard_r)->ns, NS_VCARD) ||
	    !str_eq_c((*vcard_r)->name, "vCard"))
		return -1;
	return 0;
}

int vcard_load(struct store *st, struct arena *a, const char *host,
	       const char *user, struct xml_elem **vcard_r)
{
	struct buf value = { .max = VCARD_MAX };
	*vcard_r = NULL;
	int rc = store_kv_get(st, VCARD_TABLE, host, user, &value);
	if (rc == 0 && vcard_parse(a, &value, vcard_r) < 0) {
		log_errx("vcard: %s@%s: stored vCard unreadable", user, host);
		rc = -1;
	}
	buf_reset(&value);
	return rc < 0 ? -1 : 0;
}

static int get_work(struct store *st, struct iq_ctx *ctx)
{
	struct vcard_req *r = ctx->ud;
	return vcard_load(st, ctx->st->a, r->host, r->user, &r->vcard);
}

int vcard_save(struct store *st, const char *host, const char *user,
	       const struct xml_elem *vcard)
{
	struct buf value = { .max = VCARD_MAX };
	int rc = 1;
	if (xml_serialize(&value, vcard, STR_LIT("")) == 0 &&
	    xml_elem_readable(buf_str(&value)))
		rc = store_kv_set(st, VCARD_TABLE, host, user, value.data,
				  value.len);
	buf_reset(&value);
	return rc;
}

static int set_locked(struct store *st, struct iq_ctx *ctx)
{
	struct vcard_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	struct xml_elem *old = NULL;
	struct buf value = { .max = VCARD_MAX };
	int rc = store_kv_get(st, VCARD_TABLE, r->host, r->user, &value);
	/* An unreadable old vCard only means no old PHOTO. */
	if (rc == 0 && vcard_parse(a, &value, &old) < 0)
		old = NULL;
	buf_reset(&value);
	if (rc < 0)
		return -1;
	if (xml_elem_is_blank(a, ctx->payload)) {
		if (store_kv_set(st, VCARD_TABLE, r->host, r->user, NULL,
				 0) < 0)
			return -1;
		return avatar_from_vcard(st, a, r->sync, old, NULL);
	}
	rc = vcard_save(st, r->host, r->user, ctx->payload);
	if (rc == 1)
		r->err = STANZA_ERR_NOT_ACCEPTABLE;
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	return avatar_from_vcard(st, a, r->sync, old, ctx->payload);
}

static int set_work(struct store *st, struct iq_ctx *ctx)
{
	struct vcard_req *r = ctx->ud;
	if (store_begin(st) < 0)
		return -1;
	int rc = set_locked(st, ctx);
	if (rc < 0 || r->err != STANZA_ERR_NONE) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

/* ---- on the shard ---- */

static void get_done(struct iq_ctx *ctx, int status)
{
	struct vcard_req *r = ctx->ud;
	if (iq_done_error(ctx, status, STANZA_ERR_NONE))
		return;
	if (r->vcard != NULL)
		iq_reply_result(ctx, r->vcard);
	else if (r->own)
		iq_reply_result(ctx, iq_payload_new(ctx, NS_VCARD, "vCard"));
	else
		iq_reply_error(ctx, STANZA_ERR_SERVICE_UNAVAILABLE);
}

static void set_done(struct iq_ctx *ctx, int status)
{
	struct vcard_req *r = ctx->ud;
	if (iq_done_error(ctx, status, r->err))
		return;
	pep_sync_send(r->sync);
	iq_reply_result(ctx, NULL);
}

static struct vcard_req *request(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct vcard_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->host = server.conf->hosts[ctx->host_idx];
	r->user = arena_strdup(st->a, st->to.node).p;
	r->own = jid_bare_eq(&st->from, &st->to);
	ctx->ud = r;
	return r->user != NULL ? r : NULL;
}

static enum hook_ret vcard_handle(struct iq_ctx *ctx)
{
	/* The server itself has no vCard (§3.3: as for anyone without
	 * one), and nobody may set one for it (§3.2). */
	if (ctx->target == TO_HOST && ctx->type == IQ_SET)
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	if (ctx->target == TO_HOST)
		return iq_reply_error(ctx, STANZA_ERR_SERVICE_UNAVAILABLE);
	struct vcard_req *r = request(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	if (ctx->type == IQ_GET)
		return iq_defer(ctx, get_work, get_done);
	/* §3.2: only the account itself updates its vCard. */
	if (!r->own)
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	r->sync = pep_sync_new(ctx->st->a, &ctx->st->to);
	if (r->sync == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_defer_keyed(ctx, jid_to_str(ctx->st->a, &ctx->st->to, true),
			      set_work, set_done);
}

static const struct iq_route vcard_iq[] = {
	{ IQ_GET | IQ_SET, TO_HOST | TO_BARE, NS_VCARD, "vCard",
	  vcard_handle },
	{ 0 },
};

const struct module mod_vcard = {
	.name = "vcard",
	.spec = "XEP-0054",
	.iq = vcard_iq,
	.features = (const char *const[]){ NS_VCARD, NULL },
	.store = &vcard_schema,
};
