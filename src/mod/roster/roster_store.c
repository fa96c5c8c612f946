/*
 * roster_store.c - roster items in storage; see roster-private.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../router/route.h"
#include "../../router/sessions.h"
#include "../../store/shapes.h"
#include "../../xml/parser.h"
#include "roster-private.h"

struct xml_elem *roster_item_new(struct arena *a, struct str contact)
{
	struct xml_elem *it = xml_elem_new(a, STR_LIT(NS_ROSTER),
					   STR_LIT("item"));
	xml_attr_set(a, it, "jid", contact);
	xml_attr_set(a, it, "subscription", STR_LIT("none"));
	return it;
}

struct sub_item roster_item_state(const struct xml_elem *it)
{
	struct sub_item s = { .state = SUB_NONE };
	if (it == NULL)
		return s;
	const char *why;
	bool pending = str_eq_c(xml_attr_get(it, "pending-in"), "true");
	bool in = !str_eq_c(xml_attr_get(it, "in-roster"), "false");
	if (sub_item_parse(xml_attr_get(it, "subscription"),
			   xml_attr_get(it, "ask"), xml_attr_get(it, "approved"),
			   pending, in, &s, &why) < 0)
		s = (struct sub_item){ .state = SUB_NONE, .in_roster = in };
	return s;
}

void roster_item_set_state(struct arena *a, struct xml_elem *it,
			   struct sub_item s)
{
	struct sub_attrs at = sub_item_attrs(s);
	xml_attr_set(a, it, "subscription", str_c(at.subscription));
	xml_attr_set(a, it, "ask", at.ask ? str_c(at.ask) : STR_NULL);
	xml_attr_set(a, it, "approved",
		     at.approved ? str_c(at.approved) : STR_NULL);
	xml_attr_set(a, it, "pending-in",
		     sub_state_pending_in(s.state) ? STR_LIT("true") : STR_NULL);
	xml_attr_set(a, it, "in-roster",
		     s.in_roster ? STR_NULL : STR_LIT("false"));
}

struct xml_elem *roster_item_client(struct arena *a,
				    const struct xml_elem *it)
{
	struct xml_elem *c = xml_copy(a, it);
	xml_attr_set(a, c, "pending-in", STR_NULL);
	xml_attr_set(a, c, "in-roster", STR_NULL);
	return c;
}

int roster_item_load(struct store *st, const char *host, const char *user,
		     const char *contact, struct arena *a,
		     struct xml_elem **it_r)
{
	struct buf b = { .max = ROSTER_ITEM_MAX };
	int rc = store_map_get(st, "roster", host, user, contact, &b);
	*it_r = NULL;
	if (rc == 0) {
		*it_r = xml_parse_elem(a, buf_str(&b), STR_LIT(NS_ROSTER));
		if (*it_r == NULL)
			rc = -1;
	}
	buf_reset(&b);
	return rc;
}

int roster_item_save(struct store *st, const char *host, const char *user,
		     const char *contact, const struct xml_elem *it)
{
	if (it == NULL || sub_item_blank(roster_item_state(it)))
		return store_map_set(st, "roster", host, user, contact, NULL, 0);
	struct buf b = { .max = ROSTER_ITEM_MAX };
	int rc = xml_serialize(&b, it, STR_LIT(NS_ROSTER));
	if (rc == 0)
		rc = store_map_set(st, "roster", host, user, contact, b.data,
				   b.len);
	buf_reset(&b);
	return rc;
}

int roster_version_load(struct store *st, const char *host, const char *user,
			uint64_t *ver_r)
{
	struct buf b = { .max = 32 };
	int rc = store_kv_get(st, "roster_version", host, user, &b);
	*ver_r = 0;
	if (rc == 0) {
		char tmp[33];
		memcpy(tmp, b.data, b.len);
		tmp[b.len] = '\0';
		*ver_r = strtoull(tmp, NULL, 10);
	}
	buf_reset(&b);
	return rc < 0 ? -1 : 0;
}

int roster_version_bump(struct store *st, const char *host, const char *user,
			uint64_t *ver_r)
{
	if (roster_version_load(st, host, user, ver_r) < 0)
		return -1;
	++*ver_r;
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, *ver_r);
	return store_kv_set(st, "roster_version", host, user, tmp, (size_t)n);
}

struct each {
	struct arena *a;
	roster_each_fn *fn;
	void *ud;
};

static int each_item(const char *key, const void *value, size_t len,
		     void *ud)
{
	(void)key;
	struct each *e = ud;
	struct xml_elem *it = xml_parse_elem(e->a, STR(value, len),
					     STR_LIT(NS_ROSTER));
	return it != NULL ? e->fn(it, e->ud) : 0;
}

int roster_each(struct store *st, const char *host, const char *user,
		struct arena *a, roster_each_fn *fn, void *ud)
{
	struct each e = { a, fn, ud };
	return store_map_all(st, "roster", host, user, each_item, &e);
}

void roster_push(const struct jid *user, const struct xml_elem *item,
		 uint64_t ver)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, user, true);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	struct jid bare_jid = *user;
	bare_jid.resource = STR_NULL;
	for (size_t i = 0; i < n; i++) {
		if (!refs[i].interested)
			continue; /* §2.1.6: only resources that asked */
		struct stanza *st = stanza_new(STANZA_IQ, &bare_jid, NULL,
					       "set");
		st->to_session = true;
		xml_attr_set(st->a, st->x, "id",
			     str_c(arena_printf(st->a, "push%" PRIu64 "-%zu",
						ver, i)));
		struct xml_elem *q = xml_add_child(st->a, st->x,
						   STR_LIT(NS_ROSTER),
						   STR_LIT("query"));
		xml_attr_set(st->a, q, "ver",
			     str_c(arena_printf(st->a, "%" PRIu64, ver)));
		xml_append_elem(q, xml_copy(st->a, item));
		route_deliver(&refs[i], st);
	}
	arena_destroy(&a);
}
