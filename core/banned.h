/* SPDX-License-Identifier: MIT */
/*
 * Functions that have no place in code reading untrusted files: each use
 * becomes a compile error (the Makefile force-includes this header into
 * core/ and fs/). Use snprintf() into sized buffers, memcpy() with a
 * checked length, and digit loops or strtoull() with end and range checks.
 */
#ifndef ZEROFS_BANNED_H
#define ZEROFS_BANNED_H

/* The headers that declare them come first (their guards make later
 * includes no-ops), so the macros below only catch calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZF_BANNED(f) sorry_##f##_is_banned_in_zerofs

#undef strcpy
#define strcpy(x, y) ZF_BANNED(strcpy)
#undef strcat
#define strcat(x, y) ZF_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) ZF_BANNED(strncpy)
#undef sprintf
#define sprintf(...) ZF_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) ZF_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) ZF_BANNED(strtok)
#undef atoi
#define atoi(x) ZF_BANNED(atoi)
#undef atol
#define atol(x) ZF_BANNED(atol)
#undef gets
#define gets(x) ZF_BANNED(gets)

#endif /* ZEROFS_BANNED_H */
