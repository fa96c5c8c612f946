/*
 * errors.c - names and types of the conditions in errors.def.
 */
#include "errors.h"

static const char *const stream_names[] = {
	[STREAM_ERR_NONE] = "none",
#define STREAM_ERR(id, name) [STREAM_ERR_##id] = name,
#include "errors.def"
#undef STREAM_ERR
};

static const struct {
	const char *name, *type;
} stanza_errs[] = {
	[STANZA_ERR_NONE] = { "none", "cancel" },
#define STANZA_ERR(id, name, type) [STANZA_ERR_##id] = { name, type },
#include "errors.def"
#undef STANZA_ERR
};

const char *stream_err_name(enum stream_err e)
{
	return (unsigned)e < sizeof(stream_names) / sizeof(stream_names[0])
		       ? stream_names[e]
		       : "undefined-condition";
}

const char *stanza_err_name(enum stanza_err e)
{
	return (unsigned)e < sizeof(stanza_errs) / sizeof(stanza_errs[0])
		       ? stanza_errs[e].name
		       : "undefined-condition";
}

const char *stanza_err_type(enum stanza_err e)
{
	return (unsigned)e < sizeof(stanza_errs) / sizeof(stanza_errs[0])
		       ? stanza_errs[e].type
		       : "cancel";
}
