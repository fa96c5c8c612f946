/*
 * ctl_check.h - `stanzactl config check` and `stanzactl cert check`.
 */
#ifndef STANZAD_CLI_CTL_CHECK_H
#define STANZAD_CLI_CTL_CHECK_H

#include <stdio.h>

struct config;

/* Loads path as the server does and reports to out its errors (with the
 * key and line) and insecure settings. Returns 0, or -1 on any error. */
int ctl_config_check(const char *path, FILE *out);

/* Reports, for every host, its certificate's names, key, chain and
 * expiry. Returns 0, or -1 on any error (warnings do not count). */
int ctl_cert_check(const struct config *conf, FILE *out);

#endif
