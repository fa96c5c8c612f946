/*
 * components.h - the table of connected external components (XEP-0114):
 * the index of a configured component domain -> the (shard, connection
 * id) of the stream authenticated as it, like the session table for
 * accounts. src/stream/component.c fills it; route() asks it.
 *
 * It lives in the router, not with the component streams, because route()
 * needs it and the router sits below the stream layer.
 */
#ifndef STANZAD_ROUTER_COMPONENTS_H
#define STANZAD_ROUTER_COMPONENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sess_ref;
struct stanza;

/* After the configuration is loaded; before any shard starts. */
void components_init(void);
void components_fini(void);

/* Records ref as the stream of component idx (an index in
 * server.conf->components). Returns 0, or -1 when another stream has it
 * already: that one stays (see docs/internals/s2s.md). */
int components_attach(size_t idx, const struct sess_ref *ref);
/* Removes the entry if it still is conn_id's. */
void components_detach(size_t idx, uint64_t conn_id);

/* For route(): st (to a domain that is not one of our hosts) is for a
 * configured component: it is delivered to its stream, or, with none
 * connected, answered with <service-unavailable/> (RFC 6120 §10.4.3: the
 * domain is ours; presence is dropped, nothing is stored). Returns true
 * when it took st, false when the domain is no component's. */
bool component_route(struct stanza *st);

#endif
