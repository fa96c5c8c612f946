/*
 * muc_store.c - persistent rooms (XEP-0045 muc#roomconfig_persistentroom)
 * in the map table muc_rooms: host the service domain, user "", key the
 * room's localpart, value
 *
 *   <room xmlns='urn:stanzad:muc' name= desc= password= max= flags=
 *         secret= subject= subject-nick=>
 *     <aff jid='BARE' a='owner|admin|member|outcast' nick=/>...
 *   </room>
 *
 * The room lives on its shard; every change of a persistent room's
 * configuration, affiliations or subject writes the whole record in a
 * keyed job of the room's JID, so the writes land in the order they were
 * made. Rooms are read back once, at start-up (mod_muc.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/xmalloc.h"
#include "../../store/shapes.h"
#include "../../xml/parser.h"
#include "../../xml/stanza.h"
#include "../module.h"
#include "muc.h"

#define MUC_TABLE "muc_rooms"

static const char *const muc_migrations[] = {
	"CREATE TABLE muc_rooms (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY(host, user, key)) WITHOUT ROWID",
	NULL,
};

/* The rows belong to services, not accounts: user "" is no account, so
 * account removal has nothing to purge here. */
const struct store_schema muc_schema = {
	.name = "muc",
	.migrations = muc_migrations,
};

static const struct {
	const char *c;
	size_t off;
} flags[] = {
	{ "p", offsetof(struct room_cfg, persistent) },
	{ "u", offsetof(struct room_cfg, public_) },
	{ "m", offsetof(struct room_cfg, members_only) },
	{ "d", offsetof(struct room_cfg, moderated) },
	{ "k", offsetof(struct room_cfg, password_protected) },
	{ "w", offsetof(struct room_cfg, whois_anyone) },
	{ "s", offsetof(struct room_cfg, change_subject) },
	{ "A", offsetof(struct room_cfg, no_archive) },
};

struct aff_walk {
	struct arena *a;
	struct xml_elem *root;
	const struct room *r;
};

static void add_aff(struct str key, void *value, void *ud)
{
	struct aff_walk *w = ud;
	struct xml_elem *e = xml_add_child(w->a, w->root, STR_LIT(NS_MUC_STORE),
					   STR_LIT("aff"));
	xml_attr_set(w->a, e, "jid", key);
	xml_attr_set(w->a, e, "a",
		     str_c(muc_aff_name((enum muc_aff)(uintptr_t)value)));
	const char *nick = muc_nick_of(w->r, key);
	if (nick != NULL)
		xml_attr_set(w->a, e, "nick", str_c(nick));
}

static void set_opt(struct arena *a, struct xml_elem *x, const char *name,
		    const char *v)
{
	if (v != NULL)
		xml_attr_set(a, x, name, str_c(v));
}

char *muc_room_record(const struct room *r, size_t *len_r)
{
	struct arena *a = arena_new(0);
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_MUC_STORE),
					  STR_LIT("room"));
	set_opt(a, x, "name", r->cfg.name);
	set_opt(a, x, "desc", r->cfg.desc);
	set_opt(a, x, "password", r->cfg.password);
	set_opt(a, x, "subject", r->subject);
	set_opt(a, x, "subject-nick", r->subject_nick);
	xml_attr_set(a, x, "max",
		     str_c(arena_printf(a, "%u", r->cfg.max_users)));
	char fl[16];
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		if (*(const bool *)((const char *)&r->cfg + flags[i].off))
			fl[n++] = flags[i].c[0];
	fl[n] = '\0';
	xml_attr_set(a, x, "flags", str_c(fl));
	char hex[2 * sizeof(r->secret) + 1];
	for (size_t i = 0; i < sizeof(r->secret); i++)
		snprintf(hex + 2 * i, 3, "%02x", r->secret[i]);
	xml_attr_set(a, x, "secret", str_c(hex));
	struct aff_walk w = { a, x, r };
	hmap_foreach(&r->affs, add_aff, &w);
	struct buf b = { 0 };
	BUG_ON(xml_serialize(&b, x, STR_LIT(NS_MUC_STORE)) < 0);
	arena_destroy(&a);
	*len_r = b.len;
	return b.data;
}

static char *opt_dup(const struct xml_elem *x, const char *name)
{
	struct str v = xml_attr_get(x, name);
	return v.p != NULL ? xstrdup(v.p) : NULL;
}

int muc_room_from_record(struct room *r, const void *p, size_t len)
{
	struct arena *a = arena_new(0);
	struct xml_elem *x = xml_parse_elem(a, STR(p, len),
					    STR_LIT(NS_MUC_STORE));
	if (x == NULL || !str_eq_c(x->name, "room")) {
		arena_destroy(&a);
		return -1;
	}
	r->cfg.name = opt_dup(x, "name");
	r->cfg.desc = opt_dup(x, "desc");
	r->cfg.password = opt_dup(x, "password");
	r->subject = opt_dup(x, "subject");
	r->subject_nick = opt_dup(x, "subject-nick");
	struct str max = xml_attr_get(x, "max");
	r->cfg.max_users = max.p != NULL ? (unsigned)strtoul(max.p, NULL, 10)
					 : 100;
	struct str fl = xml_attr_get(x, "flags");
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		*(bool *)((char *)&r->cfg + flags[i].off) =
			fl.p != NULL && strchr(fl.p, flags[i].c[0]) != NULL;
	struct str hex = xml_attr_get(x, "secret");
	for (size_t i = 0; hex.p != NULL && i < sizeof(r->secret) &&
			   2 * i + 1 < hex.len;
	     i++) {
		unsigned v;
		if (sscanf(hex.p + 2 * i, "%2x", &v) == 1)
			r->secret[i] = (unsigned char)v;
	}
	xml_foreach_child(c, x)
	{
		enum muc_aff af;
		struct str jid = xml_attr_get(c, "jid");
		struct str an = xml_attr_get(c, "a");
		if (str_eq_c(c->name, "aff") && jid.p != NULL && an.p != NULL &&
		    muc_aff_parse(an.p, &af) == 0) {
			muc_aff_set(r, jid.p, af);
			struct str nick = xml_attr_get(c, "nick");
			if (nick.p != NULL && af >= AFF_MEMBER)
				muc_nick_set(r, jid.p, nick.p);
		}
	}
	arena_destroy(&a);
	return 0;
}

struct save_job {
	char *domain, *node;
	char *rec; /* NULL: delete */
	size_t len;
};

static int save_work(struct store *st, void *ud)
{
	struct save_job *j = ud;
	return store_map_set(st, MUC_TABLE, j->domain, "", j->node, j->rec,
			     j->len);
}

static void save_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct save_job *j = ud;
	if (status < 0 && status != UV_ECANCELED)
		log_warnx("muc: storing room %s@%s failed", j->node, j->domain);
	free(j->domain);
	free(j->node);
	free(j->rec);
	free(j);
}

void muc_store_save(struct room *r, bool del)
{
	struct save_job *j = xcalloc(1, sizeof(*j));
	j->domain = xstrdup(r->domain);
	j->node = xstrdup(r->node);
	if (!del)
		j->rec = muc_room_record(r, &j->len);
	store_queue_keyed(server.store, str_c(r->jid), save_work, save_done,
			  j);
}
