/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What layerd knows to be private: the repositories whose origin asked for
 * credentials, and the digests of what it fetched for them (manifests, and
 * what they refer to) with the repositories each was fetched for. The cache
 * is keyed by digest and knows no repository: this is what keeps a private
 * layer from being served under another repository's name (agent/http.c).
 * Kept in <cache dir>/private-content, rewritten whole (tmp + fsync +
 * rename) before anything it names is stored, so a restart forgets nothing;
 * pruned at start-up of what the cache no longer has (private_prune());
 * a file that does not parse is an error, never an empty table. No
 * credential is in it. A repository with nothing stored is only noted in
 * memory, for a while (private_note()). Thread-safe. */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

#define PRIVATE_FILE "private-content"
#define PRIVATE_ENTRIES_MAX (1u << 20) /* marks past it fail: the content is then not stored */
#define PRIVATE_FILE_MAX (128u * 1024 * 1024)
#define PRIVATE_NOTES_MAX 4096u           /* repositories noted private with nothing stored, in memory */
#define PRIVATE_NOTE_TTL_MS (60u * 1000)  /* how long such a note holds before the origin is asked again */

struct private_set;

/* Loads dir/PRIVATE_FILE (absent: an empty table). Returns 0, -EBADMSG for
 * a file that does not parse (line in *ret_line), -ENOMEM, -errno. dir NULL:
 * a table in memory only (tests, one-shot commands). */
int private_open(const char *dir, struct private_set **ret, unsigned *ret_line);
struct private_set *private_free(struct private_set *s);

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
 * as fetched for it; on disk before it returns 0. -ENOSPC past
 * PRIVATE_ENTRIES_MAX, -ENOMEM, or the write's -errno (then the caller must
 * not store or serve what it was about to). */
int private_mark(struct private_set *s, const char *registry, const char *repository, const struct digest *ds,
                 size_t n);

/* Records d as being in registry/repository too, which the origin confirmed
 * (the repository is not made private by it); on disk as private_mark(). */
int private_confirm(struct private_set *s, const char *registry, const char *repository, const struct digest *d);

/* Whether d is in the cache: 0 it is, -ENOENT it is not, another -errno
 * when that cannot be told (the entry is then kept). */
typedef int (*private_present_fn)(void *userdata, const struct digest *d);

/* Drops the digest/repository pairs whose digest present() says is not in
 * the cache (the private repositories stay), and rewrites the file if it
 * dropped any; *ret_pruned (may be NULL) gets how many. Only while nothing
 * can store into the cache (at start-up, the cache open and nothing served):
 * a digest being stored between its mark and its commit would lose its
 * mark. Safe then because every store of a private repository's content
 * marks it again first (agent/http.c, manifest.c, download.c). 0, -ENOMEM
 * (nothing dropped), or the write's -errno (the table in memory is pruned
 * all the same: the file then names more, which only keeps more closed). */
int private_prune(struct private_set *s, private_present_fn present, void *userdata, size_t *ret_pruned);

/* Entries (repositories and digest/repository pairs), for /metrics. */
size_t private_count(struct private_set *s);
