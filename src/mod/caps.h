/*
 * caps.h - the server's XEP-0115 capabilities, for mod_disco.
 */
#ifndef STANZAD_MOD_CAPS_H
#define STANZAD_MOD_CAPS_H

#include "../core/str.h"

#define CAPS_NODE "https://stanzad.org"

/* The verification string of the server's disco#info (XEP-0115 §5.1),
 * computed once from the module table. Static storage. */
const char *caps_ver(void);
/* True if node is CAPS_NODE "#" caps_ver() (XEP-0115 §6.2). */
bool caps_node_matches(struct str node);

#endif
