/*
 * ctl_dns.h - `stanzactl dns`: the server's resolver, run once from the
 * command line so that an administrator sees what stanzad would see.
 */
#ifndef STANZAD_CLI_CTL_DNS_H
#define STANZAD_CLI_CTL_DNS_H

#include <stdint.h>
#include <stdio.h>

struct config;

/* Resolves domain as the server does before connecting to it and prints
 * the targets in order to out. Returns 0, or -1 with the reason printed
 * to stderr. */
int ctl_dns_server(const struct config *conf, const char *domain, FILE *out);
/* Prints the TLSA records of _PORT._tcp.HOST. Returns 0 or -1. */
int ctl_dns_tlsa(const struct config *conf, const char *host, uint16_t port,
		 FILE *out);

#endif
