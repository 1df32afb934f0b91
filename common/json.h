/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Writing JSON text by hand where a document is a few fixed keys (Docker's
 * daemon.json, layerd doctor's report): reading JSON is jansson's, in fallback/. */

#include <stdio.h>

/* Writes s as a JSON string: quoted, with quotes, backslashes and control
 * characters escaped (RFC 8259); well-formed UTF-8 as it is, and each byte of
 * anything else as U+FFFD, so the text is always valid JSON. */
void json_write_string(FILE *f, const char *s);
