/* SPDX-License-Identifier: MIT */
/*
 * Text checks for names that come from untrusted pickles: UTF-8 validity
 * (safetensors and JSON need it) and a printable form for messages, so an
 * error never writes raw control or invalid bytes to a terminal. The
 * command line's own escaping (fs/cli_esc.c) decodes by the same rules.
 */
#ifndef ZEROFS_TEXT_H
#define ZEROFS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Decodes the code point at s[*i] (n bytes in all) into *cp and moves *i
 * past it, strictly: no overlong forms, no surrogates, nothing past
 * U+10FFFF, which is what Rust's str::from_utf8 (and so a safetensors
 * reader) accepts. False, *i unchanged, on bad or truncated input.
 */
bool zf_utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp);

/* True when s (len bytes) is valid UTF-8, by zf_utf8_next()'s rules. */
bool zf_utf8_valid(const char *s, size_t len);

/* Copies s into buf (always NUL-terminated), writing control bytes,
 * backslashes and bytes of invalid UTF-8 as \xNN; long names are cut with
 * "...". Returns buf. */
char *zf_printable(const char *s, char *buf, size_t size);

/* zf_printable() of the n bytes at s, NULs included (as \x00). */
char *zf_printable_n(const char *s, size_t n, char *buf, size_t size);

/* "[4096, 11008]": a shape as messages show it, cut to fit size. */
void zf_shape_text(const uint64_t *shape, uint32_t nd, char *buf, size_t size);

#endif /* ZEROFS_TEXT_H */
