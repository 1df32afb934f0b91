/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The content-addressed store on node disk. Blobs and manifests are kept by
 * digest under ROOT/blobs/<algorithm>/<2 hex>/<hex>; downloads in progress
 * live in ROOT/tmp on the same file system and enter the store only by an
 * atomic rename after their size and digest were verified, so nothing in
 * blobs/ can differ from its name.
 *
 * A download is single-flight: the first cache_begin() for a digest makes the
 * caller its writer, later ones join it, and any number of follow readers
 * stream the bytes while they arrive. The entry carries everything about its
 * download that its readers need: the verdict (cache_fail()), who sends the
 * bytes (cache_entry_set_source()) and whether anyone still wants them
 * (cache_entry_wanted(), cache_entry_followers()). An entry with no disk
 * behind it (cache_begin_unstored(): the disk is full) streams one reader
 * through a bounded ring under the same rules. One process owns a cache
 * directory at a time (flock).
 *
 * Thread-safe: every function may be called from any thread. Locks: the
 * eviction lock (one pass at a time), then the cache's lock (the in-flight
 * table, the index, counters), then an entry's lock (its progress, references
 * and readers), never the other way round. No disk I/O runs under the cache's
 * lock on the way of a miss or a join (cache_begin() stats and creates files
 * outside it). The memory of tags and media types (memo.c) has a lock of its
 * own, taken alone.
 *
 * Not here: a persisted index snapshot (the index is rebuilt from the
 * blobs' inodes at each start, in the background). */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/budget.h"
#include "common/digest.h"
#include "common/error.h"

#define CACHE_FORMAT_VERSION 1
#define CACHE_SOURCE_MAX 256          /* cache_entry_source(), with its NUL */
#define CACHE_OWNER_SIZE 32           /* cache_entry_set_owner(): opaque bytes */
#define CACHE_UNSTORED_WAIT_MS 60000  /* a memory entry's reader that takes nothing this long is gone */

struct cache;
struct cache_entry;
struct cache_reader;

/* Why a blob was evicted (cache_stats.evicted_by, cache_set_evict_report()). */
enum cache_evict_reason {
        CACHE_EVICT_SIZE,      /* over cache_set_limits()'s max_bytes */
        CACHE_EVICT_FREE,      /* the file system below min_free_bytes */
        CACHE_EVICT_AGE,       /* not served for cache_set_max_age()'s age */
        _CACHE_EVICT_REASON_MAX,
};

/* What cache_open_with() may be given; every member may be left zero. */
struct cache_options {
        /* The wall clock in milliseconds since the epoch, only to write and
         * read last use in the files' mtimes (tests give a fake one); NULL:
         * the real clock. */
        int64_t (*now_ms)(void *userdata);
        /* A monotonic clock in milliseconds, for last use in memory and
         * retention by age, so that a wall-clock step after start changes
         * neither (tests give a fake one); NULL: CLOCK_MONOTONIC. */
        int64_t (*mono_ms)(void *userdata);
        void *now_userdata; /* given to both */
};

struct cache_stats {
        bool ready;             /* the counts below include every blob on disk (cache_wait_ready()) */
        uint64_t blobs;         /* committed blobs on disk */
        uint64_t pinned;        /* digests pinned (never evicted), stored or not */
        uint64_t evictions;     /* blobs evicted since open */
        uint64_t evicted_bytes; /* their bytes */
        uint64_t evict_errors;  /* blobs eviction could not remove (passed over) */
        uint64_t evicted_by[_CACHE_EVICT_REASON_MAX]; /* evictions by reason; they sum to evictions */
        uint64_t bytes;         /* their total size */
        uint64_t in_flight;     /* writes in progress */
        uint64_t committed;     /* writes committed since open */
        uint64_t aborted;       /* writes given up by their writer since open */
        uint64_t mismatched;    /* writes refused since open: wrong size or digest (memory entries' too) */
        uint64_t partials_removed; /* leftovers of an earlier process removed at open */
        uint64_t hits;          /* cache_open_blob() found the blob */
        uint64_t misses;        /* cache_begin() started a download */
        uint64_t joins;         /* cache_begin() joined one in flight */
        uint64_t bytes_written; /* bytes of committed downloads */
        uint64_t unstored;      /* memory entries begun (cache_begin_unstored()); counted in nothing above but mismatched */
        uint64_t tmp_bytes;     /* tmp/ bytes of downloads in progress, counted against max_bytes (see cache_set_limits()) */
        uint64_t tmp_refused;   /* downloads refused room in tmp/ since open (-ENOSPC) */
};

/* Opens (creating if needed) the cache at root: checks the format version,
 * takes the directory's lock (-EBUSY when another process holds it) and
 * removes partial downloads left by a crash. Everything stored can be served
 * at once; the in-memory index of what is stored (counts, recency for
 * eviction) is built by a background thread, see cache_wait_ready(). Problems
 * are described in errors. Returns 0 or -errno. */
int cache_open(const char *root, struct cache **ret, struct error_list *errors);

/* cache_open() with options (NULL: the defaults, as cache_open()). */
int cache_open_with(const char *root, const struct cache_options *opts, struct cache **ret,
                    struct error_list *errors);

/* Waits (at most timeout_ms; -1 for no limit) until the index knows every
 * blob on disk. Returns 0, -ETIMEDOUT, or why the index could not be built
 * (-errno; eviction then does nothing). */
int cache_wait_ready(struct cache *c, int timeout_ms);

/* Stops the eviction thread, closes the cache and releases its lock. Entries
 * and readers must all be released before this. Accepts NULL; returns NULL. */
struct cache *cache_close(struct cache *c);

/* Size of a committed blob; -ENOENT when it is not in the store. */
int cache_stat(struct cache *c, const struct digest *d, uint64_t *ret_size);

/* A read-only file descriptor (O_CLOEXEC) on a committed blob, and its size,
 * e.g. for sendfile(). The caller closes it. -ENOENT when absent. Counts as a
 * use (recency, retention by age); the use is also recorded on disk as the
 * file's mtime, at most once per CACHE_USE_RECORD_MS (less for a short
 * cache_set_max_age()) per blob, so a restart keeps the order of last use. */
int cache_open_blob(struct cache *c, const struct digest *d, int *ret_fd, uint64_t *ret_size);

/* Joins or starts the download of d. Returns -EEXIST when d is already
 * committed (read it with cache_open_blob()); otherwise 0 with an entry
 * reference in *ret, and *ret_writer true when the caller must write it (it
 * started the download; release with cache_writer_unref()) or false when it
 * joined one in flight (release with cache_entry_unref()). expected_size is
 * the size the blob must have, or -1 when unknown. The download's file is
 * made after the entry is listed, outside the cache's lock: when that fails
 * the caller gets the errno (-ENOSPC: stream through) and so do those who
 * joined meanwhile, from cache_entry_wait_size()/cache_reader_read()/
 * cache_entry_wait_end(); when the blob turns out committed after all (it
 * appeared on disk in that moment) the caller gets -EEXIST and the joiners'
 * calls return -EEXIST: look again with cache_open_blob(). */
int cache_begin(struct cache *c, const struct digest *d, int64_t expected_size, struct cache_entry **ret,
                bool *ret_writer);

/* Joins the stored download of d in flight, never starting one: 0 with a
 * reference in *ret (release with cache_entry_unref()), -ENOENT when none is
 * in flight. For a caller that may not start a download now (a cap). */
int cache_join(struct cache *c, const struct digest *d, struct cache_entry **ret);

/* A download with no disk behind it, for one reader (the cache cannot take
 * the blob: stream it through uncached). Never in the in-flight table (no one
 * joins it; cache_open_blob() and cache_stat() never see it); the caller is
 * its writer (release with cache_writer_unref()). Bytes pass through a ring
 * of window bytes; cache_write() waits for room. Everything else behaves as
 * for a stored entry: the size, the verdict, the source, cache_commit()'s
 * checks (nothing is stored) and the reader's last byte held back until they
 * passed. The ring is taken from budget (NULL: none) before it is allocated
 * and given back when the entry is freed. 0, -EINVAL (window 0,
 * expected_size below -1), -ENOBUFS (past the budget), -ENOMEM. */
int cache_begin_unstored(struct cache *c, const struct digest *d, int64_t expected_size, size_t window,
                         struct budget *budget, struct cache_entry **ret);

/* Writer only: appends bytes and wakes the readers. Returns 0 or -errno:
 * -EMSGSIZE beyond the expected size (the upstream sent too much: give up);
 * -ENOSPC when the disk (or a quota or file-size limit) is full, or tmp/ has
 * no room under the size limit (cache_set_limits()): the download
 * is then already given up, its readers get -ENOSPC with their offset intact,
 * and the caller streams the rest through without caching. A memory entry
 * waits while its ring is full: -EPIPE once it is not wanted any more (it had
 * a reader or another reference, and none is left; cache_entry_wanted()),
 * -ETIMEDOUT when the reader took nothing for CACHE_UNSTORED_WAIT_MS. After
 * any error but -ENOSPC the writer should cache_fail() or cache_abort(). */
int cache_write(struct cache_entry *e, const void *data, size_t size);

/* Writer only: the blob's size, once the upstream said it (when cache_begin()
 * did not know it); readers waiting in cache_entry_wait_size() wake.
 * -EMSGSIZE when it contradicts the size given before or the bytes written;
 * -ENOSPC when tmp/ has no room for it under the size limit (see
 * cache_set_limits(); the download is then given up as by cache_write()). */
int cache_entry_set_size(struct cache_entry *e, uint64_t size);

/* The blob's size as soon as it is known (given to cache_begin() or
 * cache_entry_set_size(), or the committed size), waiting at most timeout_ms
 * (-1: no limit). The download's verdict when it failed first (see
 * cache_fail(); -ENOSPC: the disk is full); -ETIMEDOUT. */
int cache_entry_wait_size(struct cache_entry *e, int timeout_ms, uint64_t *ret);

/* Waits (at most timeout_ms; -1 for no limit) until the download ended: 0
 * once its bytes verified (committed; for a stored entry stored too, unless
 * the store failed after verifying: cache_stat() tells), its verdict when it
 * failed (see cache_fail()), or -ETIMEDOUT. */
int cache_entry_wait_end(struct cache_entry *e, int timeout_ms);

/* Bytes written so far: where a resumed download (Range: bytes=N-) continues. */
uint64_t cache_entry_offset(struct cache_entry *e);

/* Writer only: who sends the bytes (e.g. the endpoint's URL), for the
 * readers' log lines; copied, cut to CACHE_SOURCE_MAX - 1 characters. */
void cache_entry_set_source(struct cache_entry *e, const char *source);

/* Copies the source into buf (size > 0: always terminated, cut to fit); ""
 * while unknown. */
void cache_entry_source(struct cache_entry *e, char *buf, size_t size);

/* Writer only: whom the download is for, as opaque bytes the cache only
 * compares (the agent's hash of the repository and credentials it fetches
 * with), so that a joiner can tell another's download from its own. */
void cache_entry_set_owner(struct cache_entry *e, const uint8_t owner[CACHE_OWNER_SIZE]);

/* Whether e's owner is set and equals owner; false while the writer has not
 * said (a joiner then takes the download for another's). */
bool cache_entry_owned_by(struct cache_entry *e, const uint8_t owner[CACHE_OWNER_SIZE]);

/* Whether anyone but the writer holds e: a joiner's or cache_entry_ref()'s
 * reference, or a reader. The writer polls it to cancel a download nobody
 * wants; before the writer's cache_writer_unref() its own reference never counts. */
bool cache_entry_wanted(struct cache_entry *e);

/* The number of live readers of e (cache_reader_new() not yet freed): a
 * prefetch download lifts its rate limit while a client follows it. */
unsigned cache_entry_followers(struct cache_entry *e);

/* Writer only: a flag that, once set, makes a cache_write() waiting for room
 * in a memory entry's ring give up with -ECANCELED within
 * CACHE_STOP_CHECK_MS (a shutdown must not wait for a reader that stalls).
 * The flag must outlive the entry's writer; NULL: none. */
#define CACHE_STOP_CHECK_MS 100
void cache_entry_set_stop(struct cache_entry *e, const atomic_bool *stop);

/* Writer only: verifies size and digest, makes the blob durable and puts it
 * in the store (a memory entry: stores nothing), and tells the readers. On a
 * wrong digest returns -EBADMSG with the digest the bytes have in *ret_got
 * (when given); on a wrong size -EMSGSIZE. Either way the bytes are discarded
 * and readers get the same error. A negative errno after the blob was stored
 * (a failing directory fsync) means it is served but may not survive a power
 * cut. -EINVAL when the download was already finished. */
int cache_commit(struct cache_entry *e, struct digest *ret_got);

/* Writer only: gives the download up with a reason, a negative errno that
 * every reader gets instead of bytes (e.g. -ENOENT: the upstream has no such
 * blob; -EHOSTUNREACH, -ETIMEDOUT, -ECANCELED, -EBADMSG; -ENOSPC keeps its
 * meaning: continue uncached). Nothing is stored. 0, or -EINVAL when the
 * download was already finished or error is not negative. */
int cache_fail(struct cache_entry *e, int error);

/* Writer only: cache_fail(e, -EIO), ignoring a download already finished. */
void cache_abort(struct cache_entry *e);

/* Another reference to e (e.g. for a thread that writes while this one
 * reads); released with cache_entry_unref(). Returns e. */
struct cache_entry *cache_entry_ref(struct cache_entry *e);

/* Releases a reference from cache_begin(); returns NULL. When the last one
 * goes while the download is still being written (a writer that neither
 * committed nor aborted), the download is aborted. */
struct cache_entry *cache_entry_unref(struct cache_entry *e);

/* The writer's release: aborts a download it neither committed nor aborted
 * (so followers learn at once), then drops its reference. Returns NULL. */
struct cache_entry *cache_writer_unref(struct cache_entry *e);

/* A reader from the first byte of an entry, in flight or finished (it holds
 * a reference). A memory entry has one reader ever: -EBUSY for a second. */
int cache_reader_new(struct cache_entry *e, struct cache_reader **ret);

/* Reads up to size bytes, waiting (at most timeout_ms; -1 for no limit) for
 * the writer when it has none yet. The last byte of a blob whose size is
 * known is held back until the blob is verified. Returns the number of
 * bytes; 0 at the end of a committed blob (or when size is 0); the
 * download's verdict when it failed (bytes already read must then be thrown
 * away): -EBADMSG or -EMSGSIZE when it failed verification, -ENOSPC when the
 * cache disk filled up (continue upstream from the offset read so far,
 * uncached), -EEXIST when it turned out committed meanwhile (see
 * cache_begin()), the writer's reason from cache_fail(), -EIO from
 * cache_abort(); -ETIMEDOUT. */
ssize_t cache_reader_read(struct cache_reader *r, void *buf, size_t size, int timeout_ms);

/* Moves the reader up to n bytes forward without reading them, as far as
 * cache_reader_read() could read now; returns how far. For a Range start.
 * On a memory entry the bytes skipped are dropped from its ring. */
uint64_t cache_reader_skip(struct cache_reader *r, uint64_t n);

/* Waits (at most timeout_ms; -1 for no limit) until cache_reader_read()
 * would not wait: bytes are readable, or the entry is no longer being
 * written (committed, failed). 0, or -ETIMEDOUT. Consumes nothing: for a
 * server that polls its readers without blocking and sleeps elsewhere. */
int cache_reader_wait(struct cache_reader *r, int timeout_ms);

/* Releases the reader and its reference (see cache_entry_wanted()). Accepts NULL; returns NULL. */
struct cache_reader *cache_reader_free(struct cache_reader *r);

void cache_get_stats(struct cache *c, struct cache_stats *ret);

/* Calls fn for every blob committed when the call began, least recently used
 * first, after the index is complete; fn runs without the store's lock (it may
 * call into the cache; a blob may be gone by then). Stops early when fn
 * returns non-zero and returns that; otherwise 0 (or the index error). */
int cache_foreach_blob(struct cache *c, int (*fn)(const struct digest *d, uint64_t size, bool pinned, void *userdata),
                       void *userdata);

/* Re-hashes every committed blob. One that does not match its name (disk
 * corruption, an outside writer) is moved to ROOT/quarantine/ and forgotten,
 * and reported through on_bad (may be NULL). Returns 0 with the numbers
 * checked and quarantined, or -errno. */
int cache_verify(struct cache *c, void (*on_bad)(const struct digest *want, const struct digest *got, void *userdata),
                 void *userdata, uint64_t *ret_checked, uint64_t *ret_quarantined);

/* Re-hashes one committed blob (not counted as a use). 0 with its size when
 * the bytes match d; -EBADMSG when not (it stays where it is: `layerd cache
 * verify` quarantines); -ENOENT when absent. */
int cache_verify_blob(struct cache *c, const struct digest *d, uint64_t *ret_size);

/* ---- the tag index: tag -> digest, for revalidation and stale-if-error ---- */

#define CACHE_MEDIA_TYPE_MAX 128

struct cache_tag {
        struct digest digest;
        char media_type[CACHE_MEDIA_TYPE_MAX]; /* e.g. application/vnd.oci.image.index.v1+json */
        uint64_t size;
        int64_t fetched_at; /* seconds since the epoch when upstream last confirmed it */
};

/* What registry/repository:tag pointed to when last fetched. The names are
 * validated (host[:port], the distribution grammar's repository and tag)
 * before any path is built: -EINVAL for anything else. -ENOENT when unknown;
 * -EBADMSG when the record on disk is damaged (treat it as unknown). Recent
 * records are answered from memory (256 of them, by name) without reading the
 * file: this process is the cache's only writer, so a record changed on disk
 * by anyone else is seen after the next cache_open() only. */
int cache_tag_get(struct cache *c, const char *registry, const char *repository, const char *tag,
                  struct cache_tag *ret);

/* Records (or replaces) a tag, atomically: a reader sees the old record or
 * the new one. -EINVAL for invalid names or a media type with characters a
 * media type cannot have. When the file cannot be written (-errno), the tag
 * is forgotten from memory too, so cache_tag_get() says what the disk holds. */
int cache_tag_put(struct cache *c, const char *registry, const char *repository, const char *tag,
                  const struct cache_tag *t);

/* The referrers index of registry/repository's manifest subject
 * (GET /v2/<repository>/referrers/<subject>) when last fetched: the digest,
 * size and fetched_at of the index, which is stored as content. Kept apart
 * from the tags (cache_tag_list() never lists it); errors as for the tags. */
int cache_referrers_get(struct cache *c, const char *registry, const char *repository, const struct digest *subject,
                        struct cache_tag *ret);
int cache_referrers_put(struct cache *c, const char *registry, const char *repository, const struct digest *subject,
                        const struct cache_tag *t);

/* The tags recorded for registry/repository (the node's own view, e.g. for
 * an offline check of a prefetch list), at most max, in no order. Returns 0
 * with a malloc'd array of malloc'd names (the caller frees both), -ENOENT
 * when none was ever recorded, -EINVAL for invalid names, -ENOMEM. */
int cache_tag_list(struct cache *c, const char *registry, const char *repository, size_t max, char ***ret_tags,
                   size_t *ret_n);

/* Forgets the record of registry/repository:tag (file and memory), for
 * `layerd cache rm`. Returns 0, -ENOENT when there was none, -EINVAL for
 * invalid names, -errno. */
int cache_tag_remove(struct cache *c, const char *registry, const char *repository, const char *tag);

/* Calls fn for every tag record in the store (the registry as the store
 * spells it), in no order, never under a lock, skipping damaged records and
 * ones removed meanwhile; stops at fn's first non-zero return and returns it;
 * 0 when done, -errno when the walk failed (a record or directory it could
 * not read: the caller must not take the walk as complete).
 * Repositories deeper than 64 components are not visited. */
int cache_foreach_tag(struct cache *c,
                      int (*fn)(const char *registry, const char *repository, const char *tag, const struct cache_tag *t,
                                void *userdata),
                      void *userdata);

/* ---- media types of manifests, remembered in memory only ---- */

/* The media type remembered for the manifest d, copied into buf (NUL
 * included). -ENOENT when not remembered; -ENOBUFS when size is too small. */
int cache_media_type_get(struct cache *c, const struct digest *d, char *buf, size_t size);

/* Remembers d's media type, e.g. worked out once from the manifest's JSON, so
 * serving it again needs no parsing. 256 are kept (direct-mapped by digest: a
 * collision replaces the older one); a media type of CACHE_MEDIA_TYPE_MAX
 * characters or more is not kept. */
void cache_media_type_remember(struct cache *c, const struct digest *d, const char *media_type);

/* Bounds the store: when its blobs and the downloads in progress in tmp/
 * exceed max_bytes (0: no bound), or the
 * file system has less than min_free_bytes available (0: no bound), the least
 * recently used unpinned blobs are evicted until the store is at 90 % of
 * max_bytes and the free space at min_free_bytes plus 10 %. Eviction runs on
 * a background thread, woken after each commit, when the disk fills, and
 * every 30 s; one pass runs at a time.
 * A blob a reader has open stays readable through its descriptor after it is
 * evicted (unlink semantics); in-flight downloads are never touched. Recency
 * is the order of last use, which survives a restart (cache_set_max_age()).
 * A download in progress counts its expected size (once known; its bytes
 * written until then) in tmp/: when that does not fit under max_bytes even
 * after an eviction pass in the writer's thread, cache_begin(),
 * cache_entry_set_size() or cache_write() fail with -ENOSPC as for a full
 * disk (the download is given up; its clients stream it through). Until the
 * index is complete (cache_wait_ready()) nothing is refused for this. */
int cache_set_limits(struct cache *c, uint64_t max_bytes, uint64_t min_free_bytes);

/* The max_bytes cache_set_limits() set last (0: no bound). */
uint64_t cache_max_bytes(struct cache *c);

/* Retention by age: a committed blob not used (cache_open_blob()) for
 * max_age_ms (0: no bound) is evicted, unless pinned, by the eviction thread
 * (started here when needed), which wakes when the oldest blob comes of age.
 * The last use survives a restart: it is recorded as the blob file's mtime
 * (a commit's mtime is its first use), batched as cache_open_blob() says, and
 * every use not yet recorded is written by cache_close(); a crash loses at
 * most CACHE_USE_RECORD_MS (or a quarter of max_age_ms) of them. Returns 0
 * or -errno (the thread could not start). */
#define CACHE_USE_RECORD_MS 60000
int cache_set_max_age(struct cache *c, uint64_t max_age_ms);

/* What one eviction pass took, by reason, for the caller's log line. */
struct cache_evict_report {
        uint64_t blobs[_CACHE_EVICT_REASON_MAX];
        uint64_t bytes[_CACHE_EVICT_REASON_MAX];
};

/* Calls fn (NULL: nobody) after each eviction pass that evicted something,
 * from the thread that ran it, with no lock of the cache held; fn must not
 * call back into the cache. Set it before the limits. */
void cache_set_evict_report(struct cache *c, void (*fn)(const struct cache_evict_report *r, void *userdata),
                            void *userdata);

/* Runs one eviction pass in the caller's thread; returns the number of blobs evicted. */
uint64_t cache_evict_now(struct cache *c);

/* Reads the stored blob d whole when it is at most max bytes (a manifest,
 * for `layerd cache rm`), without counting a use (recency and hits stay).
 * Returns 0 with *ret (malloc'd), -ENOENT, -EFBIG, -errno. */
int cache_read_blob(struct cache *c, const struct digest *d, size_t max, void **ret, size_t *ret_size);

/* Removes the stored blob d now (`layerd cache rm`); a reader that has it
 * open keeps reading it. Returns 0, -EBUSY when it is pinned, -ENOENT when
 * it is not stored, -errno. */
int cache_remove_blob(struct cache *c, const struct digest *d);

/* Pins or unpins a digest (the prefetch list's content), stored or not yet:
 * a pinned blob is never evicted; unpinning wakes the eviction thread. Pins
 * live in memory: pin before cache_set_limits() after every start (agent/
 * keeps the prefetch list's in CACHE_DIR/prefetch.pins). Returns 0 or -ENOMEM. */
int cache_pin(struct cache *c, const struct digest *d, bool pinned);

static inline void cache_closep(struct cache **c) {
        cache_close(*c);
}
static inline void cache_entry_unrefp(struct cache_entry **e) {
        cache_entry_unref(*e);
}
static inline void cache_reader_freep(struct cache_reader **r) {
        cache_reader_free(*r);
}
