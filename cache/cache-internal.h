/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared between the cache's own files; not part of its interface. */

#include "cache/cache.h"

/* The cache directory as given to cache_open(). */
const char *cache_root_path(const struct cache *c);
