/*
 * mod_caps.c - XEP-0115: Entity Capabilities for the server itself.
 *
 * The server's disco#info (identities and features of every module) is
 * hashed once into a verification string (§5.1: identities sorted as
 * "category/type/lang/name<", then features sorted, each followed by "<";
 * SHA-1; base64). Streams advertise it in their features (§6.3) so clients
 * can skip the disco#info round trip, and mod_disco answers disco#info for
 * the node "NODE#VER" (§6.2).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <uv.h>

#include "../core/bug.h"
#include "../core/xmalloc.h"
#include "caps.h"
#include "module.h"

#define NS_CAPS "http://jabber.org/protocol/caps"

static char ver[40];
static uv_once_t ver_once = UV_ONCE_INIT;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted copies ("category/type/lang/name" per identity; features). */
static size_t collect(const char ***ids_r, const char ***feats_r)
{
	size_t nid = 0, nf = 0;
	for (const struct module *const *m = modules; *m; m++) {
		for (const struct disco_identity *i = (*m)->identities;
		     i && i->category; i++)
			nid++;
		for (const char *const *f = module_features(*m); f && *f; f++)
			nf++;
	}
	const char **ids = xcalloc(nid + 1, sizeof(*ids));
	const char **feats = xcalloc(nf + 1, sizeof(*feats));
	nid = nf = 0;
	for (const struct module *const *m = modules; *m; m++) {
		for (const struct disco_identity *i = (*m)->identities;
		     i && i->category; i++) {
			char *s = NULL;
			BUG_ON(asprintf(&s, "%s/%s//%s", i->category, i->type,
					i->name ? i->name : "") < 0);
			ids[nid++] = s;
		}
		for (const char *const *f = module_features(*m); f && *f; f++)
			feats[nf++] = *f;
	}
	qsort(ids, nid, sizeof(*ids), cmp_str);
	qsort(feats, nf, sizeof(*feats), cmp_str);
	*ids_r = ids;
	*feats_r = feats;
	return nid;
}

static void compute_ver(void)
{
	const char **ids, **feats;
	size_t nid = collect(&ids, &feats);
	struct buf s = { 0 };
	for (size_t i = 0; i < nid; i++) {
		buf_append_c(&s, ids[i]);
		buf_append_c(&s, "<");
		free((char *)ids[i]);
	}
	for (const char **f = feats; *f; f++) {
		buf_append_c(&s, *f);
		buf_append_c(&s, "<");
	}
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)s.data, s.len, md);
	EVP_EncodeBlock((unsigned char *)ver, md, sizeof(md));
	buf_reset(&s);
	free(ids);
	free(feats);
}

const char *caps_ver(void)
{
	uv_once(&ver_once, compute_ver);
	return ver;
}

bool caps_node_matches(struct str node)
{
	static const char prefix[] = CAPS_NODE "#";
	size_t n = sizeof(prefix) - 1;
	return node.len > n && memcmp(node.p, prefix, n) == 0 &&
	       str_eq_c(STR(node.p + n, node.len - n), caps_ver());
}

static void caps_features(struct buf *b, enum feature_phase phase,
			  size_t host_idx)
{
	(void)host_idx;
	if (phase == FEATURES_PRE_TLS)
		return;
	buf_printf(b, "<c xmlns='" NS_CAPS "' hash='sha-1' node='" CAPS_NODE
		      "' ver='%s'/>", caps_ver());
}

const struct module mod_caps = {
	.name = "caps",
	.spec = "XEP-0115",
	.stream_features = caps_features,
	.fini = caps_fini,
};
