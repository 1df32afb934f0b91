/* SPDX-License-Identifier: Apache-2.0 */
/* The private-content table: one string set (open addressing) holding
 * "r\tREG\tREPO" (a private repository), "p\tDIGEST\tREG\tREPO" (a digest
 * fetched for it) and the derived "d\tDIGEST" (a private digest). The file is
 * the "r" and "p" lines, in the order they were added: the same lines as
 * when it was rewritten whole for each entry, so either layerd reads it. */
#include "agent/private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/hash.h"
#include "common/macro.h"
#include "common/reference.h"
#include "common/time.h"

#define LINE_MAX_LEN 1024
#define REGISTRY_MAX (LINE_MAX_LEN / 4)
#define REPOSITORY_MAX (LINE_MAX_LEN / 2)
/* Appends go on until the file holds twice the live entries and this much. */
#define COMPACT_SLACK (64u * 1024)
#define PRUNE_CHUNK 256 /* entries read per hold of the lock while a prune asks the cache */

static const char sentinel_text[] =
        "layerd: " PRIVATE_FILE " is kept next to this file. Deleting it alone makes every cached blob\n"
        "private to an unknown repository; to start afresh, empty the whole cache directory.\n";

/* The entries: a string set, and the saved ones ("r" and "p") in order. */
struct table {
        char **slots;
        size_t n_slots, used;
        char **order; /* borrowed from slots */
        size_t n_order, cap_order;
        size_t live_bytes; /* the file's size with exactly these entries: at most PRIVATE_FILE_MAX */
};

/* Lock order: prune_lock, write_lock, lock. lock guards the table and the
 * pins and is all a lookup takes (on MHD's event loop): it is never held
 * across disk I/O. write_lock is held by a mark from its first addition to
 * its append being on disk, so a mark that finds its entries added by
 * another waits for that one's write too; every change of the table is made
 * under write_lock, so what holds it reads the table without lock. */
struct private_set {
        pthread_mutex_t prune_lock;
        pthread_mutex_t write_lock;
        pthread_mutex_t lock;
        char *path, *sentinel; /* NULL: memory only */
        struct table t;
        atomic_size_t n_entries;  /* t.n_order, for lookups that need no lock when it is 0 */
        atomic_bool any_notes;    /* a note was ever made */
        atomic_bool want_prune;   /* a mark failed for the caps */
        /* write_lock: the file. order[0, n_saved) is in it; disk_bytes is its
         * size; fd appends to it (-1: none, or memory only); rewrite says the
         * next write rewrites it whole (absent, torn, or a failed append that
         * could not be cut off). A failed write is tried again by the next
         * mark, even one that adds nothing (its retry must not pass for recorded). */
        size_t n_saved, disk_bytes;
        int fd;
        bool rewrite;
        bool lost, torn; /* what private_open() found */
        struct pin {
                struct digest d;
                unsigned n;
        } *pins; /* lock */
        size_t n_pins, cap_pins;
        /* Repositories the origin asked credentials for, with nothing of them
         * stored (yet): in memory for PRIVATE_NOTE_TTL_MS, by a hash of their
         * name. Anyone can make these (a 401 for a name that does not exist),
         * so they cost no disk write and no room in the file, and expire: the
         * origin is asked again. Stored content is what the file protects. */
        struct note {
                uint64_t h, until_ms;
        } notes[PRIVATE_NOTES_MAX];
};

static char **slot_of(const struct table *t, const char *k) {
        for (size_t i = hash_fnv1a_str(HASH_FNV1A_INIT, k) & (t->n_slots - 1);; i = (i + 1) & (t->n_slots - 1))
                if (!t->slots[i] || strcmp(t->slots[i], k) == 0)
                        return &t->slots[i];
}

static bool has(const struct table *t, const char *k) {
        return *slot_of(t, k) != NULL;
}

static int grow(struct table *t) {
        if ((t->used + 1) * 2 < t->n_slots)
                return 0;
        size_t n = t->n_slots ? t->n_slots * 2 : 1024;
        char **old = t->slots;
        size_t old_n = t->n_slots;
        t->slots = calloc(n, sizeof(char *));
        if (!t->slots) {
                t->slots = old;
                return -ENOMEM;
        }
        t->n_slots = n;
        for (size_t i = 0; i < old_n; i++)
                if (old[i])
                        *slot_of(t, old[i]) = old[i];
        free(old);
        return 0;
}

static void table_done(struct table *t) {
        for (size_t i = 0; i < t->n_slots; i++)
                free(t->slots[i]);
        free(t->slots);
        free(t->order);
        *t = (struct table) {};
}

/* Adds key k (copied); saved ones are remembered in order. 1 added, 0 there already. */
static int add(struct table *t, const char *k, bool saved) {
        if (t->n_slots && has(t, k))
                return 0;
        /* A table whose file would be too big to read back at start would stop layerd. */
        if (t->used >= 3 * (size_t) PRIVATE_ENTRIES_MAX ||
            (saved && t->live_bytes + strlen(k) + 1 > PRIVATE_FILE_MAX))
                return -ENOSPC;
        if (grow(t) < 0)
                return -ENOMEM;
        if (saved && t->n_order == t->cap_order) {
                size_t cap = t->cap_order ? t->cap_order * 2 : 256;
                char **o = realloc(t->order, cap * sizeof(char *));
                if (!o)
                        return -ENOMEM;
                t->order = o;
                t->cap_order = cap;
        }
        char *c = strdup(k);
        if (!c)
                return -ENOMEM;
        *slot_of(t, k) = c;
        t->used++;
        if (saved) {
                t->order[t->n_order++] = c;
                t->live_bytes += strlen(c) + 1;
        }
        return 1;
}

/* Adds an entry of the file, from its parts (checked by the caller): a
 * repository (ds NULL) or a digest fetched for it, with the derived "d" key.
 * 1 added, 0 known, -errno. */
static int add_entry(struct table *t, const char *ds, const char *registry, const char *repository) {
        char k[LINE_MAX_LEN];
        if (!ds) {
                snprintf(k, sizeof(k), "r\t%s\t%s", registry, repository);
                return add(t, k, true);
        }
        snprintf(k, sizeof(k), "d\t%s", ds);
        int r = add(t, k, false);
        if (r < 0)
                return r;
        snprintf(k, sizeof(k), "p\t%s\t%s\t%s", ds, registry, repository);
        return add(t, k, true);
}

static bool names_valid(const char *registry, const char *repository) {
        return registry[0] && strlen(registry) < REGISTRY_MAX && strlen(repository) < REPOSITORY_MAX &&
               !strpbrk(registry, "\t\n\r /") && reference_path_is_valid(repository);
}

/* Splits line (modified) at tabs into at most max fields; the count, or max + 1 for more. */
static size_t split(char *line, char **f, size_t max) {
        size_t n = 0;
        for (char *p = line; p; n++) {
                if (n == max)
                        return max + 1;
                f[n] = p;
                p = strchr(p, '\t');
                if (p)
                        *p++ = '\0';
        }
        return n;
}

/* Adds one file line (modified: "r\tREG\tREPO" or "p\tDIGEST\tREG\tREPO"),
 * validated whole. 1 added, 0 known, -errno. */
static int add_line(struct table *t, char *line) {
        char *f[4];
        size_t n = split(line, f, 4);
        bool repo_line = n == 3 && strcmp(f[0], "r") == 0, pair = n == 4 && strcmp(f[0], "p") == 0;
        if (!repo_line && !pair)
                return -EBADMSG;
        struct digest d;
        if (!names_valid(f[n - 2], f[n - 1]) || (pair && digest_parse(f[1], &d) < 0))
                return -EBADMSG;
        return add_entry(t, pair ? f[1] : NULL, f[n - 2], f[n - 1]);
}

struct private_set *private_free(struct private_set *s) {
        if (!s)
                return NULL;
        table_done(&s->t);
        if (s->fd >= 0)
                close(s->fd);
        free(s->pins);
        free(s->path);
        free(s->sentinel);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->write_lock);
        pthread_mutex_destroy(&s->prune_lock);
        free(s);
        return NULL;
}

/* Parses data (modified) into s's table: a last line without its newline is
 * dropped (s->torn). 0, or -EBADMSG with the line in *ret_line. */
static int parse(struct private_set *s, char *data, size_t size, unsigned *ret_line) {
        unsigned line = 0;
        int r = 0;
        for (char *p = data, *end = data + size, *nl; r >= 0 && p < end; p = nl + 1) {
                line++;
                nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl) {
                        /* Only an append cut short by a crash ends so, and it named
                         * nothing stored yet (the append comes first). */
                        s->torn = true;
                        break;
                }
                if ((size_t) (nl - p) >= LINE_MAX_LEN || memchr(p, '\0', (size_t) (nl - p)))
                        r = -EBADMSG;
                else {
                        *nl = '\0';
                        r = add_line(&s->t, p);
                }
        }
        if (r < 0)
                *ret_line = line;
        return r < 0 ? r : 0;
}

int private_open(const char *dir, struct private_set **ret, unsigned *ret_line) {
        struct private_set *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->write_lock, NULL);
        pthread_mutex_init(&s->prune_lock, NULL);
        if (grow(&s->t) < 0 || (dir && (asprintf(&s->path, "%s/%s", dir, PRIVATE_FILE) < 0 ||
                                        asprintf(&s->sentinel, "%s/%s", dir, PRIVATE_SENTINEL) < 0))) {
                private_free(s);
                return -ENOMEM;
        }
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r = s->path ? read_file_bounded(s->path, PRIVATE_FILE_MAX, &data, &size) : -ENOENT;
        unsigned line = 0;
        if (r == -ENOENT) {
                s->rewrite = true; /* made whole by the first write */
                s->lost = s->sentinel && access(s->sentinel, F_OK) == 0;
                r = 0;
        } else if (r >= 0) {
                r = parse(s, data, size, &line);
                s->disk_bytes = size;
                s->rewrite = s->torn; /* nothing may be appended after the torn bytes */
        }
        /* The file there without its sentinel (written by a layerd before it, or
         * a crash between the two): written now, or deleting the file would open. */
        if (r >= 0 && data && access(s->sentinel, F_OK) < 0)
                r = write_file_atomic(s->sentinel, sentinel_text, sizeof(sentinel_text) - 1, 0600);
        if (r >= 0 && data && !s->rewrite) {
                s->fd = open(s->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
                if (s->fd < 0)
                        s->rewrite = true;
        }
        if (r < 0) {
                if (ret_line)
                        *ret_line = line;
                private_free(s);
                return r;
        }
        s->n_saved = s->t.n_order; /* what was read is what the file holds */
        atomic_store(&s->n_entries, s->t.n_order);
        *ret = s;
        return 0;
}

bool private_lost(struct private_set *s) {
        return s->lost;
}

bool private_torn(struct private_set *s) {
        return s->torn;
}

#define NOTE_PROBE 8 /* slots a name may take, from its hash on */

static uint64_t note_hash(const char *registry, const char *repository) {
        uint64_t h = hash_fnv1a_str(hash_fnv1a_byte(hash_fnv1a_str(HASH_FNV1A_INIT, registry), '\t'), repository);
        return h | 1; /* never 0: 0 is a free slot */
}

/* Lock held. */
static bool noted(const struct private_set *s, uint64_t h, uint64_t now_ms) {
        for (size_t i = 0; i < NOTE_PROBE; i++) {
                const struct note *n = &s->notes[(h + i) % PRIVATE_NOTES_MAX];
                if (n->h == h && n->until_ms > now_ms)
                        return true;
        }
        return false;
}

void private_note(struct private_set *s, const char *registry, const char *repository, uint64_t now_ms) {
        uint64_t h = note_hash(registry, repository);
        pthread_mutex_lock(&s->lock);
        /* Its own slot, else a free or expired one, else the one that expires first. */
        struct note *pick = NULL;
        for (size_t i = 0; i < NOTE_PROBE; i++) {
                struct note *n = &s->notes[(h + i) % PRIVATE_NOTES_MAX];
                if (n->h == h) {
                        pick = n;
                        break;
                }
                if (!pick || n->until_ms < pick->until_ms)
                        pick = n;
        }
        *pick = (struct note) { .h = h, .until_ms = now_ms + PRIVATE_NOTE_TTL_MS };
        atomic_store(&s->any_notes, true);
        pthread_mutex_unlock(&s->lock);
}

/* The two short-cuts below read counts set under lock after what they
 * count was added: a lookup that sees none runs before any mark returned,
 * so before anything marked was stored (as it could have with the lock). */
bool private_repo(struct private_set *s, const char *registry, const char *repository) {
        if (atomic_load(&s->n_entries) == 0 && !atomic_load(&s->any_notes))
                return false;
        char k[LINE_MAX_LEN * 2 + 4];
        snprintf(k, sizeof(k), "r\t%s\t%s", registry, repository);
        uint64_t h = note_hash(registry, repository), now = time_now_ms();
        pthread_mutex_lock(&s->lock);
        bool r = has(&s->t, k) || noted(s, h, now);
        pthread_mutex_unlock(&s->lock);
        return r;
}

bool private_digest(struct private_set *s, const struct digest *d, const char *registry, const char *repository,
                    bool *ret_here) {
        bool priv = false, here = false;
        if (atomic_load(&s->n_entries) > 0) {
                char ds[DIGEST_STRING_MAX], k[LINE_MAX_LEN * 2 + DIGEST_STRING_MAX + 4];
                digest_to_string(d, ds);
                pthread_mutex_lock(&s->lock);
                snprintf(k, sizeof(k), "d\t%s", ds);
                priv = has(&s->t, k);
                snprintf(k, sizeof(k), "p\t%s\t%s\t%s", ds, registry, repository);
                here = priv && has(&s->t, k);
                pthread_mutex_unlock(&s->lock);
        }
        if (ret_here)
                *ret_here = here;
        return priv;
}

/* The lines of order[from, to) (malloc'd into *ret). write_lock held. */
static int text_of(const struct table *t, size_t from, size_t to, char **ret, size_t *ret_len) {
        size_t len = 0;
        for (size_t i = from; i < to; i++)
                len += strlen(t->order[i]) + 1;
        char *data = malloc(len + 1);
        if (!data)
                return -ENOMEM;
        char *p = data;
        for (size_t i = from; i < to; i++) {
                size_t n = strlen(t->order[i]);
                memcpy(p, t->order[i], n);
                p += n;
                *p++ = '\n';
        }
        *ret = data;
        *ret_len = len;
        return 0;
}

/* Rewrites the file whole (tmp + fsync + rename) and opens it for appends;
 * the sentinel goes with the first write. write_lock held. */
static int rewrite(struct private_set *s) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = text_of(&s->t, 0, s->t.n_order, &data, &len);
        if (r >= 0)
                r = write_file_atomic(s->path, data, len, 0600);
        if (r < 0)
                return r;
        if (s->fd >= 0)
                close(s->fd);
        /* Without a descriptor the next write rewrites it again: no harm. */
        s->fd = open(s->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
        s->rewrite = s->fd < 0;
        s->disk_bytes = len;
        /* After the file: a crash between the two leaves the file without the
         * sentinel, which the next open writes; never the sentinel alone. A
         * failure is tried again with the next write, whole. */
        r = write_file_atomic(s->sentinel, sentinel_text, sizeof(sentinel_text) - 1, 0600);
        if (r < 0)
                s->rewrite = true;
        return r;
}

/* Appends order[n_saved, n_order) (write + fdatasync). write_lock held. */
static int append(struct private_set *s) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = text_of(&s->t, s->n_saved, s->t.n_order, &data, &len);
        if (r < 0)
                return r;
        r = write_all(s->fd, data, len);
        if (r >= 0 && fdatasync(s->fd) < 0)
                r = -errno;
        if (r < 0) {
                /* A part of it may be there: cut it off, or the next append would
                 * follow a torn line (a bad line in the middle of the file). */
                if (ftruncate(s->fd, (off_t) s->disk_bytes) < 0)
                        s->rewrite = true;
                return r;
        }
        s->disk_bytes += len;
        return 0;
}

/* Puts the entries not in the file yet into it: appended, or the file
 * rewritten whole when it is to be (or would hold more than twice the live
 * entries, or too much to read back). write_lock held. */
static int save(struct private_set *s) {
        size_t to = s->t.n_order;
        if (s->path && (s->n_saved < to || s->rewrite)) {
                size_t pending = 0;
                for (size_t i = s->n_saved; i < to; i++)
                        pending += strlen(s->t.order[i]) + 1;
                size_t after = s->disk_bytes + pending;
                bool whole = s->rewrite || s->fd < 0 || after > PRIVATE_FILE_MAX ||
                             (after > 2 * s->t.live_bytes && after > COMPACT_SLACK);
                int r = whole ? rewrite(s) : append(s);
                if (r < 0)
                        return r;
        }
        s->n_saved = to;
        return 0;
}

/* Adds, under lock, then saves; write_lock held. What was added before a
 * failure stays (and is written): it only keeps more closed. */
static int add_and_save(struct private_set *s, const char *registry, const char *repository, bool repo_line,
                        const struct digest *ds, size_t n) {
        int r = 0;
        pthread_mutex_lock(&s->lock);
        if (repo_line)
                r = add_entry(&s->t, NULL, registry, repository);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                char d[DIGEST_STRING_MAX];
                r = add_entry(&s->t, digest_to_string(&ds[i], d), registry, repository);
        }
        atomic_store(&s->n_entries, s->t.n_order);
        pthread_mutex_unlock(&s->lock);
        if (r == -ENOSPC)
                atomic_store(&s->want_prune, true);
        int w = save(s);
        return r < 0 ? r : w;
}

static int mark(struct private_set *s, bool repo_line, const char *registry, const char *repository,
                const struct digest *ds, size_t n) {
        if (!names_valid(registry, repository))
                return -EINVAL;
        pthread_mutex_lock(&s->write_lock);
        int r = add_and_save(s, registry, repository, repo_line, ds, n);
        pthread_mutex_unlock(&s->write_lock);
        return r < 0 ? r : 0;
}

int private_mark(struct private_set *s, const char *registry, const char *repository, const struct digest *ds,
                 size_t n) {
        return mark(s, true, registry, repository, ds, n);
}

int private_confirm(struct private_set *s, const char *registry, const char *repository, const struct digest *d) {
        return mark(s, false, registry, repository, d, 1);
}

int private_adopt_lost(struct private_set *s, const struct digest *ds, size_t n) {
        pthread_mutex_lock(&s->write_lock);
        s->rewrite = true; /* one write for all of them, and one even for none */
        int r = add_and_save(s, PRIVATE_LOST_REGISTRY, PRIVATE_LOST_REPOSITORY, false, ds, n);
        pthread_mutex_unlock(&s->write_lock);
        return r < 0 ? r : 0;
}

/* Lock held. */
static struct pin *pin_of(struct private_set *s, const struct digest *d) {
        for (size_t i = 0; i < s->n_pins; i++)
                if (digest_equal(&s->pins[i].d, d))
                        return &s->pins[i];
        return NULL;
}

int private_pin(struct private_set *s, const struct digest *d) {
        int r = 0;
        pthread_mutex_lock(&s->lock);
        struct pin *p = pin_of(s, d);
        if (!p && s->n_pins == s->cap_pins) {
                size_t cap = s->cap_pins ? s->cap_pins * 2 : 16;
                struct pin *n = realloc(s->pins, cap * sizeof(*n));
                if (n) {
                        s->pins = n;
                        s->cap_pins = cap;
                } else
                        r = -ENOMEM;
        }
        if (r >= 0 && !p) {
                p = &s->pins[s->n_pins++];
                *p = (struct pin) { .d = *d };
        }
        if (p)
                p->n++;
        pthread_mutex_unlock(&s->lock);
        return r;
}

void private_unpin(struct private_set *s, const struct digest *d) {
        pthread_mutex_lock(&s->lock);
        struct pin *p = pin_of(s, d);
        if (p && --p->n == 0)
                *p = s->pins[--s->n_pins];
        pthread_mutex_unlock(&s->lock);
}

static bool pinned(struct private_set *s, const struct digest *d) {
        pthread_mutex_lock(&s->lock);
        bool r = pin_of(s, d) != NULL;
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* The digest of a "p" entry e; false for an "r" entry. */
static bool digest_of(const char *e, struct digest *ret) {
        if (e[0] != 'p')
                return false;
        char ds[DIGEST_STRING_MAX];
        const char *start = e + 2, *end = strchr(start, '\t');
        if (!end || (size_t) (end - start) >= sizeof(ds))
                return false; /* cannot be: add_line() checked it */
        memcpy(ds, start, (size_t) (end - start));
        ds[end - start] = '\0';
        return digest_parse(ds, ret) == 0;
}

/* The digests of "p" entries present() says the cache does not have, asked
 * PRUNE_CHUNK entries at a time without any lock held across present(). */
static int candidates(struct private_set *s, private_present_fn present, void *userdata, struct digest **ret,
                      size_t *ret_n) {
        _cleanup_free_ struct digest *chunk = malloc(PRUNE_CHUNK * sizeof(*chunk));
        struct digest *c = NULL;
        size_t n = 0, cap = 0;
        if (!chunk)
                return -ENOMEM;
        /* prune_lock held: the entries only grow meanwhile, order's indices hold. */
        for (size_t i = 0, k;; ) {
                pthread_mutex_lock(&s->lock);
                for (k = 0; i < s->t.n_order && k < PRUNE_CHUNK; i++)
                        if (digest_of(s->t.order[i], &chunk[k]))
                                k++;
                bool done = i >= s->t.n_order;
                pthread_mutex_unlock(&s->lock);
                for (size_t j = 0; j < k; j++) {
                        int r = present(userdata, &chunk[j]);
                        if (r == -ECANCELED) {
                                free(c);
                                return r;
                        }
                        if (r != -ENOENT || (n > 0 && digest_equal(&c[n - 1], &chunk[j])))
                                continue;
                        if (n == cap) {
                                cap = cap ? cap * 2 : 64;
                                struct digest *m = realloc(c, cap * sizeof(*m));
                                if (!m) {
                                        free(c);
                                        return -ENOMEM;
                                }
                                c = m;
                        }
                        c[n++] = chunk[j];
                }
                if (done)
                        break;
        }
        *ret = c;
        *ret_n = n;
        return 0;
}

/* Drops from s the "p" entries of the digests in drop ("d" keys); how many
 * in *ret_pruned. write_lock held. */
static int drop(struct private_set *s, const struct table *dropped, size_t *ret_pruned) {
        struct table n = {};
        size_t pruned = 0, saved = 0;
        int r = grow(&n);
        for (size_t i = 0; r >= 0 && i < s->t.n_order; i++) {
                const char *e = s->t.order[i];
                struct digest d;
                char k[LINE_MAX_LEN];
                if (digest_of(e, &d)) {
                        char ds[DIGEST_STRING_MAX];
                        snprintf(k, sizeof(k), "d\t%s", digest_to_string(&d, ds));
                        if (has(dropped, k)) {
                                pruned++;
                                continue;
                        }
                        r = add(&n, k, false);
                }
                if (r >= 0)
                        r = add(&n, e, true);
                if (r >= 0 && i < s->n_saved)
                        saved++;
        }
        if (r < 0) {
                table_done(&n);
                return r;
        }
        /* The new table in, the old out; the file follows (save()). */
        pthread_mutex_lock(&s->lock);
        struct table old = s->t;
        s->t = n;
        atomic_store(&s->n_entries, s->t.n_order);
        pthread_mutex_unlock(&s->lock);
        table_done(&old);
        s->n_saved = saved; /* the kept entries keep their order: the saved ones come first */
        s->rewrite = true;
        *ret_pruned = pruned;
        return 0;
}

int private_prune(struct private_set *s, private_present_fn present, void *userdata, size_t *ret_pruned) {
        size_t pruned = 0, n = 0;
        _cleanup_free_ struct digest *c = NULL;
        struct table dropped = {};
        pthread_mutex_lock(&s->prune_lock);
        atomic_store(&s->want_prune, false);
        int r = candidates(s, present, userdata, &c, &n);
        if (r >= 0 && n > 0) {
                /* Marks held off: a digest not pinned now is in no store under way,
                 * and one that is not in the cache now will be marked before it is. */
                pthread_mutex_lock(&s->write_lock);
                r = grow(&dropped);
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        if (pinned(s, &c[i]) || present(userdata, &c[i]) != -ENOENT)
                                continue;
                        char k[DIGEST_STRING_MAX + 2], ds[DIGEST_STRING_MAX];
                        snprintf(k, sizeof(k), "d\t%s", digest_to_string(&c[i], ds));
                        r = add(&dropped, k, false);
                }
                if (r >= 0 && dropped.used > 0)
                        r = drop(s, &dropped, &pruned);
                if (r >= 0 && pruned > 0)
                        r = save(s);
                pthread_mutex_unlock(&s->write_lock);
        }
        pthread_mutex_unlock(&s->prune_lock);
        table_done(&dropped);
        if (r < 0)
                return r;
        if (ret_pruned)
                *ret_pruned = pruned;
        return 0;
}

bool private_prune_wanted(struct private_set *s) {
        return atomic_load(&s->want_prune);
}

size_t private_count(struct private_set *s) {
        return atomic_load(&s->n_entries);
}
