/*
 * test_core.c - arenas, bounded buffers, XML escaping and the hash map.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/hmap.h"
#include "core/str.h"

static void arena_cap_is_enforced(void **state)
{
	(void)state;
	struct arena *a = arena_new(1000);
	size_t got = 0;
	void *p;
	while ((p = arena_alloc(a, 100)) != NULL) {
		memset(p, 0xaa, 100);
		got += 100;
	}
	/* Rounded to alignment, so fewer than 10 fit, but at least 6. */
	assert_true(got >= 600 && got <= 1000);
	assert_true(a->used <= 1000);
	assert_null(arena_alloc(a, 1000 - a->used + 1));
	assert_null(arena_alloc(a, SIZE_MAX - 8));
	arena_destroy(&a);
	assert_null(a);
}

/* Destroyed arenas' first chunks serve the thread's next arenas (one
 * arena per stanza, see arena.c), up to arena_cache_max of them; a chunk
 * grown past the first size is freed. Under ASan every chunk is freed. */
static void arena_first_chunks_kept(void **state)
{
	(void)state;
	struct arena *a[40];
	for (int i = 0; i < 40; i++) {
		a[i] = arena_new(0);
		assert_non_null(arena_alloc(a[i], 16));
	}
	assert_int_equal(arena_cached(), 0);
	for (int i = 0; i < 40; i++)
		arena_destroy(&a[i]);
	assert_int_equal(arena_cached(), arena_cache_max);
	struct arena *b = arena_new(0);
	assert_int_equal(arena_cached(), arena_cache_max);
	assert_non_null(arena_alloc(b, 16)); /* the first chunk: taken */
	unsigned left = arena_cache_max > 0 ? arena_cache_max - 1 : 0;
	assert_int_equal(arena_cached(), left);
	assert_non_null(arena_alloc(b, 3000)); /* a second, bigger one */
	assert_int_equal(arena_cached(), left);
	arena_destroy(&b); /* the first goes back, the second is freed */
	assert_int_equal(arena_cached(), arena_cache_max);
	/* an arena whose first request is bigger than a first chunk */
	b = arena_new(0);
	assert_non_null(arena_alloc(b, 5000));
	assert_int_equal(arena_cached(), arena_cache_max);
	arena_destroy(&b);
	assert_int_equal(arena_cached(), arena_cache_max);
}

static void *destroy_on_a_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10; i++) {
		struct arena *a = arena_new(0);
		assert_non_null(arena_alloc(a, 100));
		arena_destroy(&a);
	}
	assert_int_equal(arena_cached(), arena_cache_max > 0 ? 1 : 0);
	return NULL; /* the thread's cached chunks go with it */
}

static void arena_cache_freed_with_its_thread(void **state)
{
	(void)state;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, destroy_on_a_thread, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void arena_large_and_aligned(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	for (int i = 0; i < 100; i++) {
		char *p = arena_alloc(a, (size_t)i * 997 + 1);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
		memset(p, i, (size_t)i * 997 + 1);
	}
	struct str s = arena_strdup(a, STR_LIT("hello"));
	assert_int_equal(s.len, 5);
	assert_string_equal(s.p, "hello");
	assert_string_equal(arena_printf(a, "%d-%s", 42, "x"), "42-x");
	assert_null(arena_strdup(a, STR_NULL).p);
	arena_destroy(&a);
}

static void buf_respects_max(void **state)
{
	(void)state;
	struct buf b = { .max = 10 };
	assert_int_equal(buf_append_c(&b, "12345"), 0);
	assert_int_equal(buf_append_c(&b, "67890"), 0);
	assert_int_equal(buf_append_c(&b, "x"), -1);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, "1234567890", 10);
	assert_int_equal(buf_printf(&b, "%d", 1), -1);
	buf_consume(&b, 4);
	assert_memory_equal(b.data, "567890", 6);
	assert_int_equal(buf_printf(&b, "%s", "abcd"), 0);
	assert_memory_equal(b.data, "567890abcd", 10);
	buf_reset(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 10);
}

static void xml_escaping(void **state)
{
	(void)state;
	struct buf b = { 0 };
	assert_int_equal(buf_append_xml_escaped(&b, STR_LIT("a<b>&'\"c"), false),
			 0);
	assert_int_equal(b.len, strlen("a&lt;b&gt;&amp;'\"c"));
	assert_memory_equal(b.data, "a&lt;b&gt;&amp;'\"c", b.len);
	b.len = 0;
	assert_int_equal(buf_append_xml_escaped(&b, STR_LIT("'\"<"), true), 0);
	assert_memory_equal(b.data, "&apos;&quot;&lt;", b.len);
	b.len = 0;
	assert_int_equal(buf_append_xml_escaped(&b, STR_LIT("\r\n\t"), false), 0);
	assert_int_equal(b.len, strlen("&#13;\n\t"));
	assert_memory_equal(b.data, "&#13;\n\t", b.len);
	b.len = 0;
	assert_int_equal(buf_append_xml_escaped(&b, STR_LIT("\r\n\t"), true), 0);
	assert_memory_equal(b.data, "&#13;&#10;&#9;", b.len);
	b.len = 0;
	assert_int_equal(buf_append_xml_escaped(&b, STR_NULL, true), 0);
	assert_int_equal(buf_append_xml_escaped(&b, STR_LIT(""), true), 0);
	assert_int_equal(b.len, 0);
	/* every other byte, in both modes, is copied as it is */
	for (int c = 0; c < 256; c++) {
		char in = (char)c;
		bool special = strchr("&<>'\"\r\n\t", c) != NULL && c != 0;
		for (int attr = 0; attr < 2; attr++) {
			b.len = 0;
			assert_int_equal(buf_append_xml_escaped(&b, STR(&in, 1),
								attr),
					 0);
			if (!special)
				assert_true(b.len == 1 && b.data[0] == in);
			else
				assert_true(b.len > 1 || !attr);
		}
	}
	buf_reset(&b);
	struct buf small = { .max = 4 };
	assert_int_equal(buf_append_xml_escaped(&small, STR_LIT("&"), false),
			 -1);
	buf_reset(&small);
}

static void hmap_put_get_del(void **state)
{
	(void)state;
	struct hmap m = { 0 };
	char key[32];
	for (uintptr_t i = 1; i <= 5000; i++) {
		snprintf(key, sizeof(key), "user%lu@example.org",
			 (unsigned long)i);
		assert_null(hmap_put(&m, str_c(key), (void *)i));
	}
	assert_int_equal(m.count, 5000);
	for (uintptr_t i = 1; i <= 5000; i++) {
		snprintf(key, sizeof(key), "user%lu@example.org",
			 (unsigned long)i);
		assert_ptr_equal(hmap_get(&m, str_c(key)), (void *)i);
	}
	assert_null(hmap_get(&m, STR_LIT("nobody")));
	assert_ptr_equal(hmap_put(&m, STR_LIT("user7@example.org"), (void *)1),
			 (void *)7);
	for (uintptr_t i = 1; i <= 5000; i += 2) {
		snprintf(key, sizeof(key), "user%lu@example.org",
			 (unsigned long)i);
		assert_non_null(hmap_del(&m, str_c(key)));
	}
	assert_int_equal(m.count, 2500);
	assert_null(hmap_get(&m, STR_LIT("user1@example.org")));
	assert_ptr_equal(hmap_get(&m, STR_LIT("user2@example.org")),
			 (void *)2);
	uint64_t id = 99;
	hmap_put(&m, hmap_u64(&id), (void *)3);
	assert_ptr_equal(hmap_get(&m, hmap_u64(&id)), (void *)3);
	hmap_clear(&m);
	assert_int_equal(m.count, 0);
	assert_null(hmap_get(&m, hmap_u64(&id)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(arena_cap_is_enforced),
		cmocka_unit_test(arena_large_and_aligned),
		cmocka_unit_test(arena_first_chunks_kept),
		cmocka_unit_test(arena_cache_freed_with_its_thread),
		cmocka_unit_test(buf_respects_max),
		cmocka_unit_test(xml_escaping),
		cmocka_unit_test(hmap_put_get_del),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
