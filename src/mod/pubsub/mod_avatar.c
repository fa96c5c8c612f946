/*
 * mod_avatar.c - XEP-0398: the account's XEP-0084 avatar (PEP nodes
 * urn:xmpp:avatar:data and urn:xmpp:avatar:metadata) and its vCard PHOTO
 * (XEP-0054, XEP-0153) kept the same, both ways, and the XEP-0153 hash
 * added to the account's available presence (§4).
 *
 * PEP to vCard (pep_sync_after): a publish to the metadata node takes
 * the <info/> without a url, finds the data item with its id, checks
 * that the bytes hash to it, and stores them as PHOTO (TYPE, BINVAL). As
 * §6 of XEP-0398 says, only when the data node's access model is open:
 * the vCard is readable by anyone, a presence-only avatar must not leak
 * through it. A metadata item with no <info/> (the avatar switched off,
 * XEP-0084 §4.7) removes the PHOTO.
 *
 * vCard to PEP (avatar_from_vcard, from mod_vcard's set): a PHOTO that
 * differs from the one stored before is published as a data item (id the
 * SHA-1 of the bytes) and then a metadata item with one <info/>, with
 * notifications; the nodes it creates are open, as the vCard is. A PHOTO
 * removed switches the avatar off if the metadata still points at it.
 * When the metadata already names the photo (it came from PEP), nothing
 * is published. Neither direction runs the other (pep_sync.h).
 *
 * The hash for presence: a table in memory (all shards, one mutex) of
 * the accounts with a session, bare JID -> hex SHA-1 of the vCard PHOTO
 * ("" for none). Filled when a session is bound (a keyed job reads the
 * vCard, so it runs before any later change of the account's avatar) and
 * on every change; dropped with the account's last session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <uv.h>

#include "../../core/bug.h"
#include "../../core/hmap.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/shard.h"
#include "../../core/xmalloc.h"
#include "../../router/sessions.h"
#include "../module.h"
#include "../vcard.h"
#include "pep_sync.h"
#include "pubsub-private.h"

/* ---- the hash table ---- */

static uv_mutex_t hlock;
static uv_once_t honce = UV_ONCE_INIT;
static struct hmap hashes; /* bare JID -> malloc'ed hex SHA-1 or "" */

static void hashes_init(void)
{
	BUG_ON(uv_mutex_init(&hlock) != 0);
}

/* Sets the hash of bare; only if it is in the table unless add. */
static void hash_put(struct str bare, const char *hash, bool add)
{
	uv_once(&honce, hashes_init);
	uv_mutex_lock(&hlock);
	char *old = hmap_get(&hashes, bare);
	if (old != NULL || add) {
		hmap_put(&hashes, bare, xstrdup(hash));
		free(old);
	}
	uv_mutex_unlock(&hlock);
}

void avatar_hash_update(struct str bare, const char *hash)
{
	hash_put(bare, hash, false);
}

/* The hash of bare into buf (SHA1_HEX_LEN + 1); false when unknown. */
static bool hash_get(struct str bare, char *buf)
{
	uv_once(&honce, hashes_init);
	uv_mutex_lock(&hlock);
	const char *h = hmap_get(&hashes, bare);
	bool found = h != NULL;
	if (found)
		snprintf(buf, SHA1_HEX_LEN + 1, "%s", h);
	uv_mutex_unlock(&hlock);
	return found;
}

static void hash_drop(struct str bare)
{
	uv_once(&honce, hashes_init);
	uv_mutex_lock(&hlock);
	free(hmap_del(&hashes, bare));
	uv_mutex_unlock(&hlock);
}

static void free_hash(struct str key, void *value, void *ud)
{
	(void)key, (void)ud;
	free(value);
}

static void avatar_fini(void)
{
	uv_once(&honce, hashes_init);
	hmap_foreach(&hashes, free_hash, NULL);
	hmap_clear(&hashes);
}

/* ---- images ---- */

bool avatar_photo_decode(struct arena *a, struct str b64,
			 struct avatar_photo *p)
{
	if (b64.len == 0 || b64.len > INT32_MAX)
		return false;
	p->bytes = arena_alloc(a, b64.len / 4 * 3 + 3);
	if (p->bytes == NULL)
		return false;
	EVP_ENCODE_CTX *c = EVP_ENCODE_CTX_new();
	int n1 = 0, n2 = 0;
	bool ok = c != NULL;
	if (ok) {
		EVP_DecodeInit(c);
		ok = EVP_DecodeUpdate(c, p->bytes, &n1,
				      (const unsigned char *)b64.p,
				      (int)b64.len) >= 0 &&
		     EVP_DecodeFinal(c, p->bytes + n1, &n2) == 1;
	}
	EVP_ENCODE_CTX_free(c);
	if (!ok || n1 + n2 == 0)
		return false;
	p->len = (size_t)(n1 + n2);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen;
	if (EVP_Digest(p->bytes, p->len, md, &mdlen, EVP_sha1(), NULL) != 1)
		return false;
	for (unsigned i = 0; i < mdlen && 2 * i < SHA1_HEX_LEN; i++)
		snprintf(p->hash + 2 * i, 3, "%02x", md[i]);
	return true;
}

struct str avatar_photo_b64(struct arena *a, const struct avatar_photo *p)
{
	char *out = arena_alloc(a, (p->len + 2) / 3 * 4 + 1);
	if (out == NULL)
		return STR_NULL;
	int n = EVP_EncodeBlock((unsigned char *)out, p->bytes, (int)p->len);
	return (struct str){ out, (size_t)n };
}

struct str avatar_photo_sniff(const struct avatar_photo *p)
{
	static const struct {
		const char *magic, *type;
		size_t off;
	} kinds[] = {
		{ "\x89PNG", "image/png", 0 },
		{ "\xff\xd8\xff", "image/jpeg", 0 },
		{ "GIF8", "image/gif", 0 },
		{ "WEBP", "image/webp", 8 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		size_t n = strlen(kinds[i].magic);
		if (p->len >= kinds[i].off + n &&
		    memcmp(p->bytes + kinds[i].off, kinds[i].magic, n) == 0)
			return str_c(kinds[i].type);
	}
	return STR_LIT("application/octet-stream");
}

bool avatar_vcard_photo(struct arena *a, const struct xml_elem *vcard,
			struct avatar_photo *p)
{
	memset(p, 0, sizeof(*p));
	const struct xml_elem *ph = vcard ? xml_child(vcard, NS_VCARD, "PHOTO")
					  : NULL;
	const struct xml_elem *bin = ph ? xml_child(ph, NS_VCARD, "BINVAL")
					: NULL;
	if (bin == NULL || !avatar_photo_decode(a, xml_text(a, bin), p))
		return false;
	const struct xml_elem *type = xml_child(ph, NS_VCARD, "TYPE");
	p->type = type ? xml_text(a, type) : STR_LIT("");
	if (p->type.len == 0)
		p->type = avatar_photo_sniff(p);
	return true;
}

/* ---- PEP to vCard ---- */

/* Replaces (p NULL: removes) the PHOTO of the account's vCard. */
static int vcard_put_photo(struct store *st, struct arena *a,
			   const struct ps_owner *o,
			   const struct avatar_photo *p)
{
	struct xml_elem *vcard;
	if (vcard_load(st, a, o->host, o->user, &vcard) < 0)
		return -1;
	if (vcard == NULL && p == NULL)
		return 0;
	if (vcard == NULL)
		vcard = xml_elem_new(a, STR_LIT(NS_VCARD), STR_LIT("vCard"));
	if (vcard == NULL)
		return -1;
	bool had = false;
	for (struct xml_elem *c = xml_first_child_elem(vcard), *next; c;
	     c = next) {
		next = xml_next_elem(c);
		if (str_eq_c(c->ns, NS_VCARD) && str_eq_c(c->name, "PHOTO")) {
			xml_remove_child(c);
			had = true;
		}
	}
	if (p == NULL && !had)
		return 0;
	if (p != NULL) {
		struct xml_elem *ph = xml_add_child(a, vcard, STR_LIT(NS_VCARD),
						    STR_LIT("PHOTO"));
		struct xml_elem *t = ph ? xml_add_child(a, ph,
			STR_LIT(NS_VCARD), STR_LIT("TYPE")) : NULL;
		struct xml_elem *b = t ? xml_add_child(a, ph,
			STR_LIT(NS_VCARD), STR_LIT("BINVAL")) : NULL;
		struct str b64 = avatar_photo_b64(a, p);
		if (b == NULL || b64.p == NULL ||
		    xml_add_text(a, t, p->type) < 0 ||
		    xml_add_text(a, b, b64) < 0)
			return -1;
	}
	int rc = vcard_save(st, o->host, o->user, vcard);
	if (rc == 1)
		log_warnx("avatar: %s@%s: the vCard with the avatar is too "
			  "large; not converted", o->user, o->host);
	return rc < 0 ? -1 : rc;
}

int avatar_from_pep(struct store *st, struct arena *a, struct pep_sync *s,
		    const struct xml_elem *metadata)
{
	const struct ps_owner *o = pep_sync_owner(s);
	const struct xml_elem *info = NULL;
	bool any = false;
	xml_foreach_child(c, metadata) {
		if (!str_eq_c(c->ns, NS_AVATAR_METADATA) ||
		    !str_eq_c(c->name, "info"))
			continue;
		any = true;
		if (info == NULL && xml_attr_get(c, "url").p == NULL)
			info = c;
	}
	if (!any) {
		/* XEP-0084 §4.7: no avatar any more. */
		int rc = vcard_put_photo(st, a, o, NULL);
		if (rc == 0)
			pep_sync_set_hash(a, s, "");
		return rc < 0 ? -1 : 0;
	}
	if (info == NULL)
		return 0; /* only images elsewhere: nothing to copy */
	struct str id = xml_attr_get(info, "id");
	struct ps_node *dn;
	int rc = ps_store_node_load(st, o, STR_LIT(NS_AVATAR_DATA), a, &dn);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (dn->cfg.access != PS_ACCESS_OPEN) {
		log_debug("avatar: %s@%s: data node not open; not copied to "
			  "the vCard", o->user, o->host);
		return 0;
	}
	struct ps_item *v;
	size_t nv;
	if (ps_store_items(st, o, STR_LIT(NS_AVATAR_DATA), a, &v, &nv) < 0)
		return -1;
	const struct xml_elem *data = NULL;
	for (size_t i = 0; i < nv && data == NULL; i++)
		if (str_eq(v[i].id, id))
			data = xml_first_child_elem(v[i].x);
	struct avatar_photo p;
	if (data == NULL || !str_eq_c(data->ns, NS_AVATAR_DATA) ||
	    !avatar_photo_decode(a, xml_text(a, data), &p) ||
	    !str_eq_nocase(str_c(p.hash), id)) {
		log_warnx("avatar: %s@%s: metadata %.*s names no data item "
			  "with those bytes; not copied to the vCard",
			  o->user, o->host, STR_FMT(id));
		return 0;
	}
	p.type = xml_attr_get(info, "type");
	if (p.type.len == 0)
		p.type = avatar_photo_sniff(&p);
	rc = vcard_put_photo(st, a, o, &p);
	if (rc == 0)
		pep_sync_set_hash(a, s, p.hash);
	return rc < 0 ? -1 : 0;
}

/* ---- vCard to PEP ---- */

/* The id of the <info/> without url in the newest metadata item, or
 * STR_NULL. */
static int metadata_current(struct store *st, struct arena *a,
			    struct pep_sync *s, struct str *id_r)
{
	*id_r = STR_NULL;
	struct ps_item *it;
	if (pep_sync_last(st, a, s, NS_AVATAR_METADATA, NULL, &it) < 0)
		return -1;
	const struct xml_elem *md = it ? xml_first_child_elem(it->x) : NULL;
	if (md != NULL)
		xml_foreach_child(c, md)
			if (str_eq_c(c->name, "info") &&
			    xml_attr_get(c, "url").p == NULL) {
				*id_r = xml_attr_get(c, "id");
				break;
			}
	return 0;
}

static struct xml_elem *item_new(struct arena *a, const char *id,
				 const char *ns, const char *name)
{
	struct xml_elem *it = xml_elem_new(a, STR_LIT(NS_PUBSUB),
					   STR_LIT("item"));
	if (it == NULL || (id != NULL && xml_attr_set(a, it, "id",
						       str_c(id)) < 0) ||
	    xml_add_child(a, it, str_c(ns), str_c(name)) == NULL)
		return NULL;
	return it;
}

int avatar_from_vcard(struct store *st, struct arena *a, struct pep_sync *s,
		      const struct xml_elem *old, const struct xml_elem *new)
{
	struct avatar_photo op, np;
	bool had = avatar_vcard_photo(a, old, &op);
	bool has = avatar_vcard_photo(a, new, &np);
	if (has && had && strcmp(op.hash, np.hash) == 0)
		return 0; /* the same photo (another field changed) */
	if (!has && !had)
		return 0;
	struct str cur;
	if (metadata_current(st, a, s, &cur) < 0)
		return -1;
	if (!has) {
		pep_sync_set_hash(a, s, "");
		if (!str_eq_nocase(cur, str_c(op.hash)))
			return 0; /* the PEP avatar is another image */
		struct xml_elem *off = item_new(a, NULL, NS_AVATAR_METADATA,
						"metadata");
		return off ? pep_sync_publish(st, a, s, NS_AVATAR_METADATA,
					      off, NULL) : -1;
	}
	pep_sync_set_hash(a, s, np.hash);
	if (str_eq_nocase(cur, str_c(np.hash)))
		return 0; /* it came from PEP */
	struct ps_config open;
	ps_config_default(&open, false);
	open.access = PS_ACCESS_OPEN;
	struct xml_elem *data = item_new(a, np.hash, NS_AVATAR_DATA, "data");
	struct xml_elem *md = item_new(a, np.hash, NS_AVATAR_METADATA,
				       "metadata");
	struct xml_elem *info = md ? xml_add_child(a, xml_first_child_elem(md),
		STR_LIT(NS_AVATAR_METADATA), STR_LIT("info")) : NULL;
	char *bytes = arena_printf(a, "%zu", np.len);
	struct str b64 = avatar_photo_b64(a, &np);
	if (data == NULL || info == NULL || bytes == NULL || b64.p == NULL ||
	    xml_add_text(a, xml_first_child_elem(data), b64) < 0 ||
	    xml_attr_set(a, info, "id", str_c(np.hash)) < 0 ||
	    xml_attr_set(a, info, "bytes", str_c(bytes)) < 0 ||
	    xml_attr_set(a, info, "type", np.type) < 0)
		return -1;
	/* §5.2: the data first, then the metadata that points at it. */
	if (pep_sync_publish(st, a, s, NS_AVATAR_DATA, data, &open) < 0)
		return -1;
	return pep_sync_publish(st, a, s, NS_AVATAR_METADATA, md, &open);
}

/* ---- presence ---- */

struct load_job {
	struct arena *a;
	struct jid bare;
	char hash[SHA1_HEX_LEN + 1];
};

static int load_work(struct store *st, void *ud)
{
	struct load_job *j = ud;
	struct xml_elem *vcard;
	if (vcard_load(st, j->a, j->bare.domain.p, j->bare.node.p,
		       &vcard) < 0)
		return -1;
	struct avatar_photo p;
	if (avatar_vcard_photo(j->a, vcard, &p))
		memcpy(j->hash, p.hash, sizeof(j->hash));
	return 0;
}

static void load_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct load_job *j = ud;
	struct str bare = jid_to_str(j->a, &j->bare, true);
	struct sess_ref ref;
	/* shard_self is NULL when cancelled at shutdown. */
	if (status == 0 && shard_self != NULL &&
	    sessions_find_all(bare, &ref, 1) > 0)
		hash_put(bare, j->hash, true);
	struct arena *a = j->a; /* j is in it */
	arena_destroy(&a);
}

static enum hook_ret avatar_bound(struct hook_ctx *ctx)
{
	struct arena *a = arena_new(0);
	struct load_job *j = arena_zalloc(a, sizeof(*j));
	j->a = a;
	j->bare = *ctx->user;
	j->bare.node = arena_strdup(a, ctx->user->node);
	j->bare.domain = arena_strdup(a, ctx->user->domain);
	j->bare.resource = STR_NULL;
	store_queue_keyed_read(server.store, jid_to_str(a, &j->bare, true),
			       load_work, load_done, j);
	return HOOK_PASS;
}

static enum hook_ret avatar_session_end(struct hook_ctx *ctx)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, ctx->user, true);
	struct sess_ref ref;
	if (sessions_find_all(bare, &ref, 1) == 0)
		hash_drop(bare);
	arena_destroy(&a);
	return HOOK_PASS;
}

/* §4: the hash in every available presence, unless the client put a
 * <photo/> of its own there (an empty one: it does not want one shown
 * yet). An <x/> without <photo/> gets ours. */
static enum hook_ret avatar_presence_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->type.len != 0)
		return HOOK_PASS;
	char hash[SHA1_HEX_LEN + 1];
	if (!hash_get(jid_to_str(st->a, ctx->user, true), hash) ||
	    hash[0] == '\0')
		return HOOK_PASS;
	struct xml_elem *x = xml_child(st->x, NS_VCARD_UPDATE, "x");
	if (x != NULL && xml_child(x, NS_VCARD_UPDATE, "photo") != NULL)
		return HOOK_PASS;
	if (x == NULL)
		x = xml_add_child(st->a, st->x, STR_LIT(NS_VCARD_UPDATE),
				  STR_LIT("x"));
	struct xml_elem *photo = x ? xml_add_child(st->a, x,
		STR_LIT(NS_VCARD_UPDATE), STR_LIT("photo")) : NULL;
	if (photo != NULL)
		xml_add_text(st->a, photo, str_c(hash));
	return HOOK_PASS;
}

static const struct hook avatar_hooks[] = {
	{ EV_SESSION_BOUND, 40, avatar_bound },
	{ EV_SESSION_END, 40, avatar_session_end },
	/* Before mod_presence (50) broadcasts it. */
	{ EV_PRESENCE_OUT, 20, avatar_presence_out },
	{ 0 },
};

const struct module mod_avatar = {
	.name = "avatar",
	.spec = "XEP-0398",
	.hooks = avatar_hooks,
	.account_features = (const char *const[]){ NS_PEP_VCARD_CONVERSION,
						   NULL },
	.fini = avatar_fini,
};
