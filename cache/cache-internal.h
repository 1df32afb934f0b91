/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared between the cache's own files; not part of its interface. store.c
 * owns the store (layout, index, eviction); entry.c owns downloads and their
 * readers. */

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cache/cache.h"

/* "blobs/sha512/ab/" + 128 hex + NUL, and "tmp/sha512-<hex>.<n>". */
#define CACHE_PATH_MAX 192

struct blob_rec;
struct pin;

struct cache {
        char *root_path;
        int root_fd;
        int lock_fd;
        pthread_mutex_t lock; /* guards everything below; taken before any entry's lock */
        struct cache_entry *in_flight; /* stored downloads that may be joined */
        uint64_t tmp_counter;
        struct cache_stats stats; /* stats.tmp_bytes: the sum of in-flight entries' reserved */

        /* Pinned digests, present or not yet downloaded (prefetch content is
         * pinned before it arrives); records copy the flag when they appear. */
        struct pin **pins;         /* PIN_BUCKETS chains */

        struct blob_rec **buckets; /* n_buckets, a power of two */
        size_t n_buckets;
        struct blob_rec *oldest, *newest;

        /* The index is built by a thread after cache_open() returns: serving
         * needs only the file system, and only eviction needs the index. */
        pthread_t indexer;
        bool indexer_running;
        bool indexed;            /* the index knows every blob on disk */
        int index_error;         /* why it could not be built, or 0 */
        pthread_cond_t indexed_cond; /* with lock */
        atomic_bool closing;     /* tells the indexer to stop early */

        uint64_t max_bytes;      /* 0: unbounded */
        uint64_t min_free_bytes; /* 0: unbounded */
        uint64_t max_age_ms;     /* 0: unbounded (cache_set_max_age()) */
        struct cache_options opts; /* the clocks; set once by cache_open_with() */
        void (*evict_report)(const struct cache_evict_report *r, void *userdata);
        void *evict_report_userdata;
        pthread_t evictor;
        bool evictor_running;
        bool evictor_stop;
        bool evict_wanted;
        pthread_cond_t evict_cond; /* wakes the evictor; with lock; CLOCK_MONOTONIC */
        pthread_mutex_t evict_lock; /* one eviction pass at a time; taken before lock */

        struct cache_memo *memo; /* tags and media types remembered (memo.c; its own lock) */

        /* Tests only: called by cache_begin() after it listed a new entry and
         * before it looks at the disk (where joiners may come). */
        void (*test_listed)(void *userdata);
        void *test_listed_userdata;
};

enum entry_state {
        ENTRY_WRITING,
        ENTRY_VERIFIED,  /* size and digest checked: readers may have every byte while it is made durable */
        ENTRY_COMMITTED, /* verified and finished (stored, unless the store failed after verifying) */
        ENTRY_FAILED,
        _ENTRY_STATE_MAX,
};

struct cache_entry {
        struct cache *cache;
        struct digest digest;
        bool stored;                 /* false: a memory entry (cache_begin_unstored()); never changes */
        struct digester *hasher;     /* the writer's alone */
        bool finished;               /* the writer committed or failed it: the writer's alone */

        /* Stored entries: the file and the in-flight table. */
        int fd;                      /* the download; renamed into blobs/ at commit, so it stays valid */
        char tmp_name[CACHE_PATH_MAX]; /* relative to the root */
        uint64_t reserved;           /* bytes of tmp/ counted for it against max_bytes, under cache->lock */
        struct cache_entry *next;    /* the in-flight list, under cache->lock */
        bool listed;                 /* on that list, under cache->lock */

        pthread_mutex_t lock;        /* guards everything below */
        pthread_cond_t progress;     /* signalled when any of it changes */
        int64_t expected_size;       /* -1 until known; written by the writer only */
        uint64_t written;
        enum entry_state state;
        int fail_reason;             /* what readers of a failed download get (a negative errno) */
        unsigned refs;               /* a stored entry's also change under cache->lock (joins, last unref) */
        unsigned readers;            /* live cache_readers */
        bool writer_held;            /* the writer's reference is among refs */
        char source[CACHE_SOURCE_MAX];
        uint8_t owner[CACHE_OWNER_SIZE];
        bool has_owner;

        /* Memory entries: bytes [consumed, written) sit in ring[offset % window]. */
        char *ring;
        size_t window;
        struct budget_hold ring_held; /* the ring's share of the caller's budget */
        uint64_t consumed;
        bool had_reader;             /* its one reader was made (no second one) */
        bool had_interest;           /* someone but the writer held it once: from then on unwanted means -EPIPE */
        int stall_ms;                /* how long cache_write() waits for the reader to take bytes */
        const atomic_bool *stop;     /* set: a write waiting for room gives up (cache_entry_set_stop()) */
};

/* The cache directory as given to cache_open(). */
const char *cache_root_path(const struct cache *c);

/* ROOT-relative path of the committed blob d. */
void cache_blob_path(const struct digest *d, char buf[static CACHE_PATH_MAX]);

/* fsyncs path (relative to dirfd), or with parent set the directory holding it; 0 or -errno. */
int cache_fsync_at(int dirfd, const char *path, bool parent);

/* With c->lock held: whether the index knows d as committed (blobs not yet
 * indexed at start-up are not known). */
bool cache_index_has_locked(const struct cache *c, const struct digest *d);

/* With c->lock held: whether d is pinned (stored or not yet). */
bool cache_pinned_locked(struct cache *c, const struct digest *d);

/* The cache's wall clock (struct cache_options), in ms since the epoch. */
int64_t cache_now_ms(const struct cache *c);

/* The cache's monotonic clock (struct cache_options), in ms. */
int64_t cache_mono_ms(const struct cache *c);

/* With c->lock held: records a committed blob as the most recently used (its
 * file's mtime, just written, is that use on disk); 0 or -ENOMEM. */
int cache_index_add_locked(struct cache *c, const struct digest *d, uint64_t size);

/* With c->lock held: asks the eviction thread (when running) for a pass. */
void cache_evict_wake_locked(struct cache *c);

/* Runs one eviction pass in the caller's thread that also makes room for
 * extra more bytes under max_bytes; returns the number of blobs evicted. */
uint64_t cache_evict_for(struct cache *c, uint64_t extra);

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
