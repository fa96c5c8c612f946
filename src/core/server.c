/*
 * server.c - the one process-wide struct server (see server.h). stanzad
 * fills it at start-up; tools that link the server's libraries (stanzactl,
 * tests) get an empty one.
 */
#include "server.h"

struct server server;
