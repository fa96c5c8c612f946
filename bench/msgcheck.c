/*
 * msgcheck.c - the 1:1 message accounting shared by the msg and burst
 * scenarios. Pair p is session 2p (sender) and 2p+1 (receiver); message
 * SEQ of pair p goes to the receiver's full JID with body
 * "lg:PAIR:SEQ:T[ padding]" (T a timestamp, 0 when unused). Every
 * sequence number is tracked in a bitmap per pair: a message is
 * delivered once, duplicated if it arrives again, out of order if after
 * a later one, and lost if it never arrived; a message the pair's sender
 * did not send (wrong pair, other sender, a sequence number not sent yet)
 * is unexpected or bogus. Invariant: delivered + lost == sent per pair.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

void lg_msgcheck_init(struct lg_msgcheck *m, const struct lg_run *run,
		      const char *scenario)
{
	*m = (struct lg_msgcheck){ 0 };
	m->npairs = run->o.pairs ? run->o.pairs : run->nusers / 2;
	if (m->npairs < 1) {
		fprintf(stderr, "loadgen: %s needs --pairs >= 1 (or --count "
			">= 2)\n", scenario);
		exit(2);
	}
	m->pairs = lg_xcalloc((size_t)m->npairs, sizeof(*m->pairs));
	/* Padding to reach --size bytes of body, after a space. */
	int pad = run->o.size > 40 ? run->o.size - 40 : 0;
	m->padding = lg_xcalloc((size_t)pad + 2, 1);
	if (pad) {
		m->padding[0] = ' ';
		memset(m->padding + 1, 'x', (size_t)pad - 1);
	}
}

void lg_msgcheck_free(struct lg_msgcheck *m)
{
	for (int p = 0; p < m->npairs; p++) {
		free(m->pairs[p].to_jid);
		free(m->pairs[p].from_jid);
		lg_sbuf_free(&m->pairs[p].head);
		free(m->pairs[p].seen);
	}
	free(m->pairs);
	free(m->padding);
	lg_counts_free(&m->error_conds);
	m->pairs = NULL;
	m->padding = NULL;
}

void lg_msgcheck_up(struct lg_msgcheck *m, const struct lg_conn *c)
{
	int p = c->slot / 2;
	if (p >= m->npairs)
		return;
	char **jid = c->slot % 2 ? &m->pairs[p].to_jid :
				   &m->pairs[p].from_jid;
	free(*jid);
	*jid = lg_xstrdup(c->jid);
	if (c->slot % 2 == 0)
		return;
	/* Everything of pair p's messages before the sequence number,
	 * written once. */
	struct lg_sbuf *h = &m->pairs[p].head;
	h->len = 0;
	lg_sbuf_adds(h, "<message type='chat' to='");
	lg_sbuf_add_xml(h, c->jid);
	lg_sbuf_adds(h, "'><body>lg:");
	lg_sbuf_add_u64(h, (uint64_t)p);
	lg_sbuf_adds(h, ":");
}

void lg_msgcheck_build(struct lg_msgcheck *m, int p, uint64_t stamp,
		       struct lg_sbuf *b)
{
	struct lg_msg_pair *mp = &m->pairs[p];
	uint32_t seq = mp->next_seq++;
	lg_sbuf_add(b, mp->head.p, mp->head.len);
	lg_sbuf_add_u64(b, seq);
	lg_sbuf_adds(b, ":");
	lg_sbuf_add_u64(b, stamp);
	lg_sbuf_adds(b, m->padding);
	lg_sbuf_adds(b, "</body></message>");
	m->sent++;
}

/* Marks `seq` seen; returns false if it already was. */
static bool msgcheck_mark(struct lg_msg_pair *mp, uint32_t seq)
{
	size_t byte = seq / 8;
	if (byte >= mp->seen_cap) {
		size_t cap = mp->seen_cap ? mp->seen_cap : 64;
		while (cap <= byte)
			cap *= 2;
		mp->seen = lg_xrealloc(mp->seen, cap);
		memset(mp->seen + mp->seen_cap, 0, cap - mp->seen_cap);
		mp->seen_cap = cap;
	}
	uint8_t bit = (uint8_t)(1u << (seq % 8));
	if (mp->seen[byte] & bit)
		return false;
	mp->seen[byte] |= bit;
	return true;
}

/* A decimal number at *s, digits only and at most max: advances *s past
 * it. */
static bool read_num(const char **s, uint64_t max, uint64_t *v)
{
	const char *p = *s;
	uint64_t x = 0;
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (x > (max - (uint64_t)(*p - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	*s = p;
	*v = x;
	return true;
}

/* "lg:PAIR:SEQ:T", then the end or a space (padding). */
static bool parse_body(const char *s, uint64_t *p, uint64_t *seq,
		       uint64_t *t)
{
	if (s == NULL || strncmp(s, "lg:", 3) != 0)
		return false;
	s += 3;
	return read_num(&s, INT32_MAX, p) && *s++ == ':' &&
	       read_num(&s, UINT32_MAX, seq) && *s++ == ':' &&
	       read_num(&s, UINT64_MAX, t) && (*s == '\0' || *s == ' ');
}

/* A message on receiver slot `slot`: the pair index, or -1. */
static int msgcheck_receive(struct lg_msgcheck *m, int slot,
			    struct lg_elem *st, uint64_t *stamp_r)
{
	uint64_t p64, seq64, t;
	const char *body = lg_text(lg_child(st, NULL, "body"));
	const char *from = lg_attr(st, "from");
	if (!parse_body(body, &p64, &seq64, &t) || p64 != (uint64_t)slot / 2 ||
	    !from || !m->pairs[p64].from_jid ||
	    strcmp(from, m->pairs[p64].from_jid) != 0) {
		m->unexpected++;
		return -1;
	}
	int p = (int)p64;
	uint32_t seq = (uint32_t)seq64;
	struct lg_msg_pair *mp = &m->pairs[p];
	if (seq >= mp->next_seq) {
		m->bogus++; /* never sent */
		return -1;
	}
	if (!msgcheck_mark(mp, seq)) {
		mp->dup++;
		m->dup++;
		return -1;
	}
	mp->received++;
	m->received++;
	if (seq + 1 < mp->max_seen) {
		mp->ooo++;
		m->ooo++;
	} else {
		mp->max_seen = seq + 1;
	}
	*stamp_r = t;
	return p;
}

int lg_msgcheck_stanza(struct lg_msgcheck *m, const struct lg_conn *c,
		       struct lg_elem *st, uint64_t *stamp_r)
{
	const char *type = lg_attr(st, "type");
	if (strcmp(st->name, "message") != 0)
		return -1;
	if (type && !strcmp(type, "error")) {
		m->errors++;
		lg_counts_add(&m->error_conds,
			      lg_condition(lg_child(st, NULL, "error"),
					   "urn:ietf:params:xml:ns:xmpp-stanzas"),
			      1);
		return -1;
	}
	if (c->slot % 2 == 1 && c->slot / 2 < m->npairs)
		return msgcheck_receive(m, c->slot, st, stamp_r);
	m->unexpected++;
	return -1;
}

void lg_msgcheck_print(const struct lg_msgcheck *m, const char *received_key)
{
	printf(" sent=%llu %s=%llu lost=%llu duplicated=%llu "
	       "out_of_order=%llu errors=%llu unexpected=%llu bogus=%llu",
	       (unsigned long long)m->sent, received_key,
	       (unsigned long long)m->received,
	       (unsigned long long)(m->sent - m->received),
	       (unsigned long long)m->dup, (unsigned long long)m->ooo,
	       (unsigned long long)m->errors,
	       (unsigned long long)m->unexpected,
	       (unsigned long long)m->bogus);
	lg_counts_print(&m->error_conds, "err_");
}

bool lg_msgcheck_failed(const struct lg_msgcheck *m)
{
	return m->sent != m->received || m->dup || m->ooo || m->errors ||
	       m->unexpected || m->bogus || !m->received;
}
