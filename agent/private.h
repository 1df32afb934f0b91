/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What layerd knows to be private: the repositories whose origin asked for
 * credentials, and the digests of what it fetched for them (manifests, and
 * what they refer to) with the repositories each was fetched for. The cache
 * is keyed by digest and knows no repository: this is what keeps a private
 * layer from being served under another repository's name (agent/http.c).
 *
 * On disk: <cache dir>/private-content, one line per entry ("r", a
 * repository; "p", a digest and a repository), an append-only log. A new
 * entry is one append (write + fdatasync) before anything it names is
 * stored, so a restart forgets nothing. The file is rewritten whole (tmp +
 * fsync + rename) only when it holds more than twice the live entries, after
 * a prune, or when an append could not be undone. A crash can tear only the
 * last line, which names nothing stored yet: a last line without its newline
 * is dropped. Any other line that does not parse is an error, never an empty
 * table. No credential is in it.
 *
 * Deleting the file must not open what it named: its first write also writes
 * <cache dir>/PRIVATE_SENTINEL. Found without the file, every digest then in
 * the cache is recorded private to an unknown repository (private_lost(),
 * private_adopt_lost(): served under a name only once the origin confirms it
 * there). A cache without either file (fresh, or written before layerd knew
 * private content) starts with an empty table.
 *
 * Pruning (private_prune()) drops the digests the cache no longer has, while
 * serving: a digest about to be stored is pinned (private_pin()) before its
 * mark and until its store committed or failed, and a prune drops only an
 * unpinned digest the cache still does not have once marks are held off.
 * A repository with nothing stored is only noted in memory, for a while
 * (private_note()). Thread-safe. */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

#define PRIVATE_FILE "private-content"
#define PRIVATE_SENTINEL "private-content.sentinel"
/* The repository that digests found in the cache with the table deleted are
 * recorded for: no request can name it (no registry host has a "!"). */
#define PRIVATE_LOST_REGISTRY "!lost"
#define PRIVATE_LOST_REPOSITORY "deleted/private-content"
#define PRIVATE_ENTRIES_MAX (1u << 20) /* marks past it fail: the content is then not stored */
#define PRIVATE_FILE_MAX (128u * 1024 * 1024)
#define PRIVATE_NOTES_MAX 4096u           /* repositories noted private with nothing stored, in memory */
#define PRIVATE_NOTE_TTL_MS (60u * 1000)  /* how long such a note holds before the origin is asked again */
#define PRIVATE_PRUNE_INTERVAL_MS (3600u * 1000) /* the agent prunes this often */
#define PRIVATE_PRUNE_RETRY_MS (60u * 1000)      /* and, with the table full, at most this often */

struct private_set;

/* Loads dir/PRIVATE_FILE (absent: an empty table, lost if dir/PRIVATE_SENTINEL
 * is there) and writes the sentinel if the file is there without it. Returns
 * 0, -EBADMSG for a file that does not parse (line in *ret_line), -ENOMEM,
 * -errno. dir NULL: a table in memory only (tests, one-shot commands). */
int private_open(const char *dir, struct private_set **ret, unsigned *ret_line);
struct private_set *private_free(struct private_set *s);

/* Whether private_open() found the sentinel without the file: the caller
 * must then give private_adopt_lost() every digest in the cache before it
 * serves anything. */
bool private_lost(struct private_set *s);

/* Whether private_open() dropped a torn last line (a crash during an append). */
bool private_torn(struct private_set *s);

/* Records the n digests ds as fetched for PRIVATE_LOST_REPOSITORY, and
 * rewrites the file with them (written even for n 0: the table is not lost
 * any more). 0, -ENOSPC past the caps, -ENOMEM, the write's -errno. */
int private_adopt_lost(struct private_set *s, const struct digest *ds, size_t n);

/* Whether the origin asked for credentials for registry/repository: recorded
 * with content (private_mark() with digests), or noted lately (private_note()). */
bool private_repo(struct private_set *s, const char *registry, const char *repository);

/* Notes that the origin asked for credentials for registry/repository, with
 * nothing of it stored: in memory only, for PRIVATE_NOTE_TTL_MS from now_ms
 * (the first content stored for it records it for good). Past
 * PRIVATE_NOTES_MAX names the note expiring first gives way: a forgotten
 * note costs one more question to the origin, never a leak. */
void private_note(struct private_set *s, const char *registry, const char *repository, uint64_t now_ms);

/* Whether d was fetched for a private repository; *ret_here (may be NULL)
 * whether for registry/repository itself. */
bool private_digest(struct private_set *s, const struct digest *d, const char *registry, const char *repository,
                    bool *ret_here);

/* Records registry/repository as private, and the n digests ds (may be 0)
 * as fetched for it; on disk before it returns 0 (nothing is written when
 * all of it is recorded already). -ENOSPC past PRIVATE_ENTRIES_MAX or
 * PRIVATE_FILE_MAX (a prune is then wanted: private_prune_wanted()),
 * -ENOMEM, or the write's -errno (then the caller must not store or serve
 * what it was about to). A caller about to store a digest pins it first
 * (private_pin()). */
int private_mark(struct private_set *s, const char *registry, const char *repository, const struct digest *ds,
                 size_t n);

/* Records d as being in registry/repository too, which the origin confirmed
 * (the repository is not made private by it); on disk as private_mark(). */
int private_confirm(struct private_set *s, const char *registry, const char *repository, const struct digest *d);

/* Whether d is in the cache: 0 it is, -ENOENT it is not, another -errno
 * when that cannot be told (the entry is then kept). */
typedef int (*private_present_fn)(void *userdata, const struct digest *d);

/* Pins d: a prune keeps it until as many private_unpin(). Taken before the
 * mark of a digest about to be stored, released once the store committed or
 * failed. 0 or -ENOMEM. */
int private_pin(struct private_set *s, const struct digest *d);
void private_unpin(struct private_set *s, const struct digest *d);

/* Drops the digest/repository pairs whose digest present() says is not in
 * the cache (the private repositories stay), and rewrites the file if it
 * dropped any; *ret_pruned (may be NULL) gets how many. Safe while serving:
 * present() is asked first without holding marks off, then again, with
 * marks held off, for each digest to drop that is not pinned. A digest
 * dropped then is in no store under way (that one would be pinned) and any
 * later store marks it again first (agent/http.c, manifest.c, download.c).
 * One prune at a time. 0, -ECANCELED when present() said so (nothing
 * dropped), -ENOMEM (nothing dropped), or the write's -errno (the table in
 * memory is pruned all the same: the file then names more, which only
 * keeps more closed). */
int private_prune(struct private_set *s, private_present_fn present, void *userdata, size_t *ret_pruned);

/* Whether a mark failed for the caps since the last prune. */
bool private_prune_wanted(struct private_set *s);

/* Entries (repositories and digest/repository pairs), for /metrics. */
size_t private_count(struct private_set *s);
