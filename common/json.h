/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Writing JSON text by hand where a document is a few fixed keys (Docker's
 * daemon.json, layerd doctor's report): reading JSON is jansson's, in fallback/. */

#include <stdio.h>

/* Writes s as a JSON string: quoted, with quotes, backslashes and control
 * characters escaped (RFC 8259); other bytes as they are (UTF-8 passes through). */
void json_write_string(FILE *f, const char *s);
