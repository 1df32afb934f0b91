/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Unified diffs of small text files (configuration files, for `--diff`). */

#include <stddef.h>
#include <stdio.h>

#define TEXTDIFF_CONTEXT 3
#define TEXTDIFF_MAX_CELLS (4u * 1024 * 1024) /* n*m beyond which the diff is "replace everything" */

/* Writes the unified diff (diff -u style, TEXTDIFF_CONTEXT lines of context)
 * turning a into b, with "--- label_a" / "+++ label_b" headers; nothing when
 * they are equal. Texts are split at '\n'; a last line without one is marked
 * "\ No newline at end of file". Returns 1 when they differ, 0 when not,
 * -ENOMEM or -EIO. */
int text_diff_unified(const char *a, size_t a_size, const char *b, size_t b_size, const char *label_a,
                      const char *label_b, FILE *out);
