/* SPDX-License-Identifier: MIT */
/*
 * The served config.json: the source's own bytes with only the dtype value
 * changed, so that `diff` against the original shows that one line (key
 * order, indentation, line endings, number forms and escapes all kept).
 */
#ifndef ZEROFS_CONFIG_DTYPE_H
#define ZEROFS_CONFIG_DTYPE_H

#include <stddef.h>

#include "zerofs/error.h"

/* Deepest nesting of objects and arrays accepted (Python's json module
 * gives up near 1,000 with its default recursion limit). */
#define ZF_CONFIG_MAX_DEPTH 512

/*
 * Checks that text (len bytes) is one JSON object as Python's json module
 * reads a file opened as UTF-8 (RFC 8259, plus NaN, Infinity and
 * -Infinity, which json.dumps writes; no byte order mark, no comments, no
 * trailing commas, no control characters inside strings, valid UTF-8),
 * then writes into *out (malloc'd, NUL-terminated, *out_len bytes) the same
 * bytes with the value of every top-level "torch_dtype" and "dtype" key
 * set to the JSON string dtype ("bfloat16"). Keys inside nested objects
 * (a multimodal model's text_config) are left as they are. A value that
 * already is exactly that string is not touched.
 *
 * When neither key is at the top level, "torch_dtype" (the key every
 * transformers release reads) is added as a top-level member, written the
 * way the file writes its members (the whitespace before a key and around
 * its colon are copied from the neighbouring member): at its sorted place
 * when the top-level keys are in sorted order, as save_pretrained writes
 * them, so that the diff is one added line; otherwise last.
 *
 * Errors: ZF_EFORMAT "not valid JSON: ... at line L, column C" (never
 * quoting the file's bytes), ZF_ENOMEM.
 */
int zf_config_set_dtype(const char *text, size_t len, const char *dtype,
			char **out, size_t *out_len, struct zf_error *err);

#endif /* ZEROFS_CONFIG_DTYPE_H */
