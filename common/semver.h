/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Versions in image tags ("v1.2.3", "1.27", "1.2.3-rc.1") and the version
 * ranges of the spec's prefetch tag filter (npm-style: ">=1.7 <2",
 * "~1.27 || ^2", "1.x"). Pure functions, no allocation. */

#include <stdbool.h>
#include <stdint.h>

#define SEMVER_PRE_MAX 128

struct semver {
        uint64_t major, minor, patch;
        unsigned parts;             /* 1..3: how many the tag spelled out (missing ones are 0) */
        char pre[SEMVER_PRE_MAX];   /* the prerelease after '-' ("rc.1"), "" for a release */
};

/* A tag as a version: an optional 'v', one to three dot-separated decimal
 * numbers, and after all three optionally '-' and a prerelease of
 * [0-9A-Za-z.-]. 0, or -EINVAL for anything else ("latest", "1.2.3.4",
 * "1.2_3", "2024-06-01"); *ret written only on success. */
int semver_parse(const char *tag, struct semver *ret);

/* Precedence per semver.org 2.0.0 section 11: numbers, then a release above
 * its prereleases, prerelease identifiers numeric-below-alphanumeric. <0, 0, >0. */
int semver_compare(const struct semver *a, const struct semver *b);

/* A range: comparators separated by spaces, all of which must hold,
 * alternatives joined by "||"; a comparator is [op][v]MAJOR[.MINOR[.PATCH]]
 * with op one of = > >= < <= ~ ^ (none: =) and x, X or * as a wildcard part. */
bool semver_range_is_valid(const char *range);

/* Whether v satisfies range (which must be valid: false otherwise). As in
 * npm, a prerelease matches no range here: ranges cannot name one, so
 * "1.3.0-rc1" never passes ">=1.2". */
bool semver_range_match(const char *range, const struct semver *v);
