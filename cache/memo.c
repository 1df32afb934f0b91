/* SPDX-License-Identifier: Apache-2.0 */
/* What the cache remembers in memory in front of its files: recent tag
 * records (a manifest request by tag would otherwise read a file each time)
 * and the media types of recent manifests (parsing the JSON for it was a
 * third of a cached GET's CPU). Both are small direct-mapped tables: a
 * collision replaces the older entry, which only costs a later file read. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache-internal.h"

#define MEMO_TAG_SLOTS 256        /* tag records, direct-mapped by name */
#define MEMO_MEDIA_TYPE_SLOTS 256 /* manifests' media types, direct-mapped by digest */

struct cache_memo {
        pthread_mutex_t lock; /* everything below; taken alone */
        struct memo_tag {
                /* Bumped by every change to the slot: a file read or a disk
                 * write that raced with another one for this slot does not
                 * leave its (possibly older) record behind. */
                uint64_t version;
                bool used;
                char key[CACHE_TAG_KEY_MAX];
                struct cache_tag tag;
        } tags[MEMO_TAG_SLOTS];
        struct memo_media_type {
                bool used;
                struct digest digest;
                char media_type[CACHE_MEDIA_TYPE_MAX];
        } media_types[MEMO_MEDIA_TYPE_SLOTS];
};

struct cache_memo *cache_memo_new(void) {
        struct cache_memo *m = calloc(1, sizeof(*m));
        if (m)
                pthread_mutex_init(&m->lock, NULL);
        return m;
}

struct cache_memo *cache_memo_free(struct cache_memo *m) {
        if (m) {
                pthread_mutex_destroy(&m->lock);
                free(m);
        }
        return NULL;
}

/* ---- tag records --------------------------------------------------------------------- */

static struct memo_tag *tag_slot(struct cache_memo *m, const char *key) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const char *p = key; *p; p++)
                h = (h ^ (unsigned char) *p) * 16777619u;
        return &m->tags[h % MEMO_TAG_SLOTS];
}

int cache_memo_tag_get(struct cache_memo *m, const char *key, struct cache_tag *ret, uint64_t *ret_version) {
        struct memo_tag *slot = tag_slot(m, key);
        pthread_mutex_lock(&m->lock);
        bool hit = slot->used && strcmp(slot->key, key) == 0;
        if (hit)
                *ret = slot->tag;
        else
                *ret_version = slot->version;
        pthread_mutex_unlock(&m->lock);
        return hit ? 0 : -ENOENT;
}

uint64_t cache_memo_tag_begin(struct cache_memo *m, const char *key) {
        struct memo_tag *slot = tag_slot(m, key);
        pthread_mutex_lock(&m->lock);
        uint64_t v = ++slot->version;
        pthread_mutex_unlock(&m->lock);
        return v;
}

void cache_memo_tag_settle(struct cache_memo *m, const char *key, uint64_t version, const struct cache_tag *t) {
        struct memo_tag *slot = tag_slot(m, key);
        pthread_mutex_lock(&m->lock);
        if (slot->version == version && t) {
                slot->used = true;
                snprintf(slot->key, sizeof(slot->key), "%s", key);
                slot->tag = *t;
        } else if (slot->used && strcmp(slot->key, key) == 0)
                slot->used = false; /* raced or failed: the file decides, read it next time */
        slot->version++;
        pthread_mutex_unlock(&m->lock);
}

/* ---- media types of manifests ------------------------------------------------------- */

static struct memo_media_type *media_type_slot(struct cache_memo *m, const struct digest *d) {
        /* Digests are uniform already: their first bytes are as good as a hash. */
        return &m->media_types[(d->bytes[0] | (unsigned) d->bytes[1] << 8) % MEMO_MEDIA_TYPE_SLOTS];
}

int cache_media_type_get(struct cache *c, const struct digest *d, char *buf, size_t size) {
        struct cache_memo *m = cache_memo(c);
        struct memo_media_type *slot = media_type_slot(m, d);
        int r = -ENOENT;
        pthread_mutex_lock(&m->lock);
        if (slot->used && digest_equal(&slot->digest, d))
                r = strlen(slot->media_type) < size ? 0 : -ENOBUFS;
        if (r == 0)
                memcpy(buf, slot->media_type, strlen(slot->media_type) + 1);
        pthread_mutex_unlock(&m->lock);
        return r;
}

void cache_media_type_remember(struct cache *c, const struct digest *d, const char *media_type) {
        struct cache_memo *m = cache_memo(c);
        struct memo_media_type *slot = media_type_slot(m, d);
        size_t n = strlen(media_type);
        if (n >= sizeof(slot->media_type))
                return;
        pthread_mutex_lock(&m->lock);
        slot->used = true;
        slot->digest = *d;
        memcpy(slot->media_type, media_type, n + 1);
        pthread_mutex_unlock(&m->lock);
}
