/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The answer of containerd's version service (gRPC
 * containerd.services.version.v1.Version/Version), decoded without a
 * protobuf library: one length-prefixed gRPC message holding
 *
 *   message VersionResponse { string version = 1; string revision = 2; }
 *
 * Internal to fallback/ (fallback_containerd_version() in fallback.h asks
 * the socket); split out so the decoding is tested on its own. Pure. */

#include <stddef.h>

#define CONTAINERD_MESSAGE_MAX 4096 /* the answer is ~40 bytes; anything near this is not containerd */
#define CONTAINERD_VERSION_MAX 128  /* "1.6.20~ds1", "v2.0.7": a longer one is not a version */

/* Decodes one gRPC frame (1-byte compressed flag, 4-byte big-endian length,
 * that many bytes of protobuf: nothing before or after) into the version
 * string. Fields other than 1 are skipped whatever their wire type; the
 * version must be printable ASCII of 1..CONTAINERD_VERSION_MAX bytes.
 * Returns 0 with *ret_version malloc'd, -EPROTO with a reason (compressed,
 * truncated, over CONTAINERD_MESSAGE_MAX, malformed, no version), or -ENOMEM. */
int containerd_version_decode(const void *frame, size_t size, char **ret_version, char *reason, size_t reason_size);
