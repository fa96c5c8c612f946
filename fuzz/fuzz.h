/*
 * fuzz.h - one macro per libFuzzer target.
 *
 * FUZZ_TARGET(name) { ... } defines LLVMFuzzerTestOneInput with `data`,
 * `size` and a fresh uncapped arena `fuzz_arena`, destroyed after each input
 * so leaks and cross-input use-after-free show up under ASan.
 */
#ifndef STANZAD_FUZZ_H
#define STANZAD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TARGET(name)                                                  \
	static void fuzz_##name(const uint8_t *data, size_t size,          \
				struct arena *fuzz_arena);                 \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)       \
	{                                                                  \
		struct arena *a = arena_new(0);                            \
		fuzz_##name(data, size, a);                                \
		arena_destroy(&a);                                         \
		return 0;                                                  \
	}                                                                  \
	static void fuzz_##name(const uint8_t *data, size_t size,          \
				struct arena *fuzz_arena)

#endif
