/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared between the cache's own files; not part of its interface. */

#include <stdint.h>

#include "cache/cache.h"

/* The cache directory as given to cache_open(). */
const char *cache_root_path(const struct cache *c);

/* ---- memo.c: what the cache remembers in memory (its own lock, taken alone) ---- */

/* Longest tag key remembered, NUL included: registry "\n" repository "\n" tag. */
#define CACHE_TAG_KEY_MAX 512

struct cache_memo;

/* The cache's memory, made by cache_open() and freed by cache_close(). */
struct cache_memo *cache_memo(struct cache *c);

/* Empty tables; NULL when out of memory. */
struct cache_memo *cache_memo_new(void);

/* Accepts NULL; returns NULL. */
struct cache_memo *cache_memo_free(struct cache_memo *m);

/* 0 with the remembered record of key (a canonical registry "\n" repository
 * "\n" tag); otherwise -ENOENT and the slot's version in *ret_version, for
 * cache_memo_tag_settle() after the file was read. */
int cache_memo_tag_get(struct cache_memo *m, const char *key, struct cache_tag *ret, uint64_t *ret_version);

/* Before a write of key's file: returns the version to settle with. */
uint64_t cache_memo_tag_begin(struct cache_memo *m, const char *key);

/* After a read or a write of key's file: remembers t when nothing else touched
 * the slot since version was taken; forgets key when t is NULL (the write
 * failed) or when something did (the file decides who won). */
void cache_memo_tag_settle(struct cache_memo *m, const char *key, uint64_t version, const struct cache_tag *t);
