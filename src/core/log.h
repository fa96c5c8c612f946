/*
 * log.h - logging to stderr with levels.
 *
 * log_warn() appends strerror(errno); log_warnx() does not (OpenSMTPD).
 * Lines about a connection carry its context through the conn's log prefix
 * (see net/conn.h, conn_log*). Never log passwords, SASL payloads or message
 * bodies above debug level.
 */
#ifndef STANZAD_LOG_H
#define STANZAD_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

const char *log_level_name(enum log_level l);
/* Returns 0 and sets *l_r, or -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *l_r);
void log_set_level(enum log_level l);
enum log_level log_get_level(void);
/* Names the calling thread in log lines ("main", "s0", "s1"...). */
void log_set_thread_name(const char *name);

void log_msg(enum log_level l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level l, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#define log_enabled(l) ((l) <= log_get_level())
#define log_debug(...)                                      \
	do {                                                \
		if (log_enabled(LOG_LEVEL_DEBUG))           \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warnx(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_errx(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs at error level and exits(1). For start-up failures only. */
_Noreturn void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif
