/* SPDX-License-Identifier: Apache-2.0 */
/* The private-content table: one string set (open addressing) holding
 * "r\tREG\tREPO" (a private repository), "p\tDIGEST\tREG\tREPO" (a digest
 * fetched for it) and the derived "d\tDIGEST" (a private digest). The file is
 * the "r" and "p" lines, in the order they were added. */
#include "agent/private.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/macro.h"
#include "common/reference.h"
#include "common/time.h"

#define LINE_MAX_LEN 1024

/* Lock order: write_lock, then lock. lock guards the table and is all a
 * lookup takes (on MHD's event loop): it is never held across disk I/O.
 * write_lock is held by a mark from its first addition to its file being
 * on disk, so a mark that finds its entries added by another waits for
 * that one's write too. */
struct private_set {
        pthread_mutex_t write_lock;
        pthread_mutex_t lock;
        char *path; /* NULL: memory only */
        char **slots;
        size_t n_slots, used;
        char **order;                /* the "r" and "p" entries in order, borrowed from slots */
        size_t n_order, cap_order;
        size_t file_bytes; /* the file's size with every saved entry: at most PRIVATE_FILE_MAX */
        /* Entries in memory the file may not hold: a write that failed is
         * tried again by the next mark, even one that adds nothing (its retry
         * must not pass for recorded). Entries are added under write_lock only. */
        bool dirty;
        /* Repositories the origin asked credentials for, with nothing of them
         * stored (yet): in memory for PRIVATE_NOTE_TTL_MS, by a hash of their
         * name. Anyone can make these (a 401 for a name that does not exist),
         * so they cost no disk write and no room in the file, and expire: the
         * origin is asked again. Stored content is what the file protects. */
        struct note {
                uint64_t h, until_ms;
        } notes[PRIVATE_NOTES_MAX];
};

static uint64_t hash(const char *s) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}

static char **slot_of(struct private_set *s, const char *k) {
        for (size_t i = hash(k) & (s->n_slots - 1);; i = (i + 1) & (s->n_slots - 1))
                if (!s->slots[i] || strcmp(s->slots[i], k) == 0)
                        return &s->slots[i];
}

static bool has(struct private_set *s, const char *k) {
        return *slot_of(s, k) != NULL;
}

static int grow(struct private_set *s) {
        if ((s->used + 1) * 2 < s->n_slots)
                return 0;
        size_t n = s->n_slots ? s->n_slots * 2 : 1024;
        char **old = s->slots;
        size_t old_n = s->n_slots;
        s->slots = calloc(n, sizeof(char *));
        if (!s->slots) {
                s->slots = old;
                return -ENOMEM;
        }
        s->n_slots = n;
        for (size_t i = 0; i < old_n; i++)
                if (old[i])
                        *slot_of(s, old[i]) = old[i];
        free(old);
        return 0;
}

/* Adds key k (copied); saved ones are remembered in order. 1 added, 0 there already. */
static int add(struct private_set *s, const char *k, bool saved) {
        if (has(s, k))
                return 0;
        /* A table whose file would be too big to read back at start would stop layerd. */
        if (s->used >= 3 * (size_t) PRIVATE_ENTRIES_MAX || (saved && s->file_bytes + strlen(k) + 1 > PRIVATE_FILE_MAX))
                return -ENOSPC;
        if (grow(s) < 0)
                return -ENOMEM;
        if (saved && s->n_order == s->cap_order) {
                size_t cap = s->cap_order ? s->cap_order * 2 : 256;
                char **o = realloc(s->order, cap * sizeof(char *));
                if (!o)
                        return -ENOMEM;
                s->order = o;
                s->cap_order = cap;
        }
        char *c = strdup(k);
        if (!c)
                return -ENOMEM;
        *slot_of(s, k) = c;
        s->used++;
        if (saved) {
                s->order[s->n_order++] = c;
                s->file_bytes += strlen(c) + 1;
        }
        return 1;
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

/* Adds one file line ("r\tREG\tREPO" or "p\tDIGEST\tREG\tREPO"), validated
 * whole, and for a "p" line the derived "d\tDIGEST". 1 added, 0 known, -errno. */
static int add_line(struct private_set *s, const char *line) {
        char copy[LINE_MAX_LEN], *f[4];
        if (strlen(line) >= sizeof(copy))
                return -EBADMSG;
        strcpy(copy, line);
        size_t n = split(copy, f, 4);
        bool repo_line = n == 3 && strcmp(f[0], "r") == 0, pair = n == 4 && strcmp(f[0], "p") == 0;
        if (!repo_line && !pair)
                return -EBADMSG;
        const char *reg = f[n - 2], *repo = f[n - 1];
        struct digest d;
        if (!reg[0] || strpbrk(reg, " /\r\n") || !reference_path_is_valid(repo) ||
            (pair && digest_parse(f[1], &d) < 0))
                return -EBADMSG;
        if (pair) {
                char dk[DIGEST_STRING_MAX + 2];
                snprintf(dk, sizeof(dk), "d\t%s", f[1]);
                int r = add(s, dk, false);
                if (r < 0)
                        return r;
        }
        int r = add(s, line, true);
        if (r > 0)
                s->dirty = true;
        return r;
}

struct private_set *private_free(struct private_set *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_slots; i++)
                free(s->slots[i]);
        free(s->slots);
        free(s->order);
        free(s->path);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->write_lock);
        free(s);
        return NULL;
}

int private_open(const char *dir, struct private_set **ret, unsigned *ret_line) {
        struct private_set *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->write_lock, NULL);
        if (grow(s) < 0 || (dir && asprintf(&s->path, "%s/%s", dir, PRIVATE_FILE) < 0)) {
                s->path = NULL;
                private_free(s);
                return -ENOMEM;
        }
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r = s->path ? read_file_bounded(s->path, PRIVATE_FILE_MAX, &data, &size) : -ENOENT;
        if (r == -ENOENT)
                r = 0;
        unsigned line = 0;
        for (char *p = data, *nl; r >= 0 && p && *p; p = nl + 1) {
                line++;
                nl = strchr(p, '\n');
                if (!nl || (size_t) (nl - p) >= LINE_MAX_LEN) {
                        r = -EBADMSG; /* a line cut short is a file cut short */
                        break;
                }
                *nl = '\0';
                r = add_line(s, p);
        }
        if (r < 0) {
                if (ret_line)
                        *ret_line = line;
                private_free(s);
                return r;
        }
        s->dirty = false; /* what was read is what the file holds */
        *ret = s;
        return 0;
}

#define NOTE_PROBE 8 /* slots a name may take, from its hash on */

static uint64_t note_hash(const char *registry, const char *repository) {
        char k[LINE_MAX_LEN * 2 + 4];
        snprintf(k, sizeof(k), "%s\t%s", registry, repository);
        return hash(k) | 1; /* never 0: 0 is a free slot */
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
        pthread_mutex_unlock(&s->lock);
}

bool private_repo(struct private_set *s, const char *registry, const char *repository) {
        char k[LINE_MAX_LEN * 2 + 4];
        snprintf(k, sizeof(k), "r\t%s\t%s", registry, repository);
        uint64_t h = note_hash(registry, repository), now = time_now_ms();
        pthread_mutex_lock(&s->lock);
        bool r = has(s, k) || noted(s, h, now);
        pthread_mutex_unlock(&s->lock);
        return r;
}

bool private_digest(struct private_set *s, const struct digest *d, const char *registry, const char *repository,
                    bool *ret_here) {
        char ds[DIGEST_STRING_MAX], k[LINE_MAX_LEN * 2 + DIGEST_STRING_MAX + 4];
        digest_to_string(d, ds);
        pthread_mutex_lock(&s->lock);
        snprintf(k, sizeof(k), "d\t%s", ds);
        bool priv = has(s, k);
        snprintf(k, sizeof(k), "p\t%s\t%s\t%s", ds, registry, repository);
        bool here = priv && has(s, k);
        pthread_mutex_unlock(&s->lock);
        if (ret_here)
                *ret_here = here;
        return priv;
}

/* The file's text, made under lock (malloc'd into *ret). */
static int snapshot_locked(struct private_set *s, char **ret, size_t *ret_len) {
        char *data = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&data, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_order; i++)
                fprintf(f, "%s\n", s->order[i]);
        if (fclose(f) != 0) {
                free(data);
                return -ENOMEM;
        }
        *ret = data;
        *ret_len = len;
        return 0;
}

static int mark(struct private_set *s, bool repo_line, const char *registry, const char *repository,
                const struct digest *ds, size_t n) {
        if (strlen(registry) >= LINE_MAX_LEN / 4 || strlen(repository) >= LINE_MAX_LEN / 2 || !registry[0] ||
            strpbrk(registry, "\t\n\r /") || !reference_path_is_valid(repository))
                return -EINVAL;
        char line[LINE_MAX_LEN];
        pthread_mutex_lock(&s->write_lock);
        pthread_mutex_lock(&s->lock);
        int r = 0;
        if (repo_line) {
                snprintf(line, sizeof(line), "r\t%s\t%s", registry, repository);
                r = add_line(s, line);
        }
        for (size_t i = 0; r >= 0 && i < n; i++) {
                char d[DIGEST_STRING_MAX];
                snprintf(line, sizeof(line), "p\t%s\t%s\t%s", digest_to_string(&ds[i], d), registry, repository);
                r = add_line(s, line);
        }
        /* Written even after a failure half-way: what was added stays known.
         * And whenever the file lags behind memory, added now or not. */
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int w = s->path && s->dirty ? snapshot_locked(s, &data, &len) : 0;
        pthread_mutex_unlock(&s->lock);
        if (w >= 0 && data)
                w = write_file_atomic(s->path, data, len, 0600);
        if (w >= 0 && data) {
                pthread_mutex_lock(&s->lock);
                s->dirty = false; /* write_lock held: nothing was added since the snapshot */
                pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_unlock(&s->write_lock);
        if (r >= 0)
                r = w;
        return r < 0 ? r : 0;
}

/* Whether the "r" or "p" entry e is to be kept: a "p" entry whose digest the
 * cache has, or cannot say it has not. */
static bool keep(const char *e, private_present_fn present, void *userdata) {
        if (e[0] != 'p')
                return true;
        char ds[DIGEST_STRING_MAX];
        const char *start = e + 2, *end = strchr(start, '\t');
        struct digest d;
        if (!end || (size_t) (end - start) >= sizeof(ds))
                return true; /* cannot be: add_line() checked it */
        memcpy(ds, start, (size_t) (end - start));
        ds[end - start] = '\0';
        return digest_parse(ds, &d) < 0 || present(userdata, &d) != -ENOENT;
}

#define SWAP(a, b)                                                              \
        do {                                                                    \
                __typeof__(a) t_ = (a);                                         \
                (a) = (b);                                                      \
                (b) = t_;                                                       \
        } while (0)

int private_prune(struct private_set *s, private_present_fn present, void *userdata, size_t *ret_pruned) {
        struct private_set *n = NULL;
        size_t pruned = 0;
        /* write_lock keeps marks out: s's entries are read without lock (only a mark
         * changes them), so that lock is not held across present()'s disk I/O. */
        pthread_mutex_lock(&s->write_lock);
        int r = private_open(NULL, &n, NULL);
        for (size_t i = 0; r >= 0 && i < s->n_order; i++) {
                if (keep(s->order[i], present, userdata))
                        r = add_line(n, s->order[i]);
                else
                        pruned++;
        }
        if (r < 0)
                pruned = 0; /* s untouched */
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (pruned > 0) {
                /* The new table in, the old out (freed with n); the locks and the path stay. */
                pthread_mutex_lock(&s->lock);
                SWAP(s->slots, n->slots);
                SWAP(s->n_slots, n->n_slots);
                SWAP(s->used, n->used);
                SWAP(s->order, n->order);
                SWAP(s->n_order, n->n_order);
                SWAP(s->cap_order, n->cap_order);
                SWAP(s->file_bytes, n->file_bytes);
                r = s->path ? snapshot_locked(s, &data, &len) : 0;
                pthread_mutex_unlock(&s->lock);
        }
        if (r >= 0 && data)
                r = write_file_atomic(s->path, data, len, 0600);
        if (r >= 0 && data) {
                pthread_mutex_lock(&s->lock);
                s->dirty = false; /* the file holds the whole table now (write_lock: no mark since) */
                pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_unlock(&s->write_lock);
        private_free(n);
        if (r < 0)
                return r;
        if (ret_pruned)
                *ret_pruned = pruned;
        return 0;
}

int private_mark(struct private_set *s, const char *registry, const char *repository, const struct digest *ds,
                 size_t n) {
        return mark(s, true, registry, repository, ds, n);
}

int private_confirm(struct private_set *s, const char *registry, const char *repository, const struct digest *d) {
        return mark(s, false, registry, repository, d, 1);
}

size_t private_count(struct private_set *s) {
        pthread_mutex_lock(&s->lock);
        size_t n = s->n_order;
        pthread_mutex_unlock(&s->lock);
        return n;
}
