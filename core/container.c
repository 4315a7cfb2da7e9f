/* SPDX-License-Identifier: MIT */
/*
 * One interface over torch.save()'s two formats (container.h): the
 * format is sniffed from the first byte, and every call goes to that
 * format's ops table (container_zip.c, container_legacy.c). What both
 * formats share lives here: parsing the main pickle, and the element
 * size every storage is checked with.
 */
#include "container_i.h"

#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "zerofs/dtype.h"

/* Bytes of a file's head read to tell its format: a tar header's magic
 * ends at byte 262. */
#define HEAD_LEN 262

/* A legacy file starts with the pickle of torch's magic number, and so
 * with PROTO (0x80); a zip with a local header, "PK\3\4". torch before
 * 0.4 wrote a tar ("ustar" at byte 257), which the legacy reader names
 * and refuses. Anything else is left to the zip reader, which says what
 * is wrong with it. */
static const struct zf_container_ops *sniff(const unsigned char *head,
					    size_t len)
{
	struct zf_cursor c = zf_cursor_make(head, len);
	const unsigned char *tar = zf_cursor_span_at(&c, 257, 5);

	if (zf_cursor_u8_at(&c, 0) == 0x80 || (tar && !memcmp(tar, "ustar", 5)))
		return &zf_container_legacy_ops;
	return &zf_container_zip_ops;
}

int zf_container_open(struct zf_source *src, struct zf_container **out,
		      struct zf_error *err)
{
	uint64_t size = zf_source_size(src);
	unsigned char head[HEAD_LEN];
	size_t n = size < sizeof(head) ? (size_t)size : sizeof(head);
	struct zf_container *c;
	int rc;

	*out = NULL;
	rc = zf_source_pread(src, head, n, 0, err);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return zf_fail_at(err, ZF_ENOMEM, zf_source_path(src), "out of memory");
	c->src = src;
	c->ops = sniff(head, n);
	rc = c->ops->open(c, err);
	if (rc) {
		free(c);
		zf_error_where(err, zf_source_path(src));
		return rc;
	}
	*out = c;
	return ZF_OK;
}

int zf_container_open_path(const char *path, struct zf_container **out,
			   struct zf_error *err)
{
	struct zf_source *src;
	int rc;

	*out = NULL;
	rc = zf_source_open(path, &src, err);
	if (rc)
		return rc;
	rc = zf_container_open(src, out, err);
	if (rc) {
		zf_source_close(src);
		return rc;
	}
	(*out)->owns_src = true;
	return ZF_OK;
}

void zf_container_close(struct zf_container *c)
{
	if (!c)
		return;
	c->ops->drop_pickle(c);
	c->ops->close(c);
	if (c->owns_src)
		zf_source_close(c->src);
	free(c);
}

enum zf_container_kind zf_container_kind(const struct zf_container *c)
{
	return c->ops->kind;
}

const char *zf_container_kind_name(enum zf_container_kind kind)
{
	switch (kind) {
	case ZF_CONTAINER_ZIP:
		return "zip";
	case ZF_CONTAINER_LEGACY:
		return "legacy";
	}
	return "?";
}

struct zf_source *zf_container_source(const struct zf_container *c)
{
	return c->src;
}

const char *zf_container_path(const struct zf_container *c)
{
	return zf_source_path(c->src);
}

void zf_container_pickle(const struct zf_container *c, uint64_t *offset,
			 uint64_t *len)
{
	*offset = c->pkl_off;
	*len = c->pkl_len;
}

bool zf_container_pickle_id(const struct zf_container *c, uint64_t id[2])
{
	return c->ops->pickle_id(c, id);
}

int zf_container_parse(struct zf_container *c, struct zf_pickle **out,
		       struct zf_error *err)
{
	const unsigned char *data;
	size_t len;
	int rc;

	*out = NULL;
	rc = c->ops->load_pickle(c, &data, &len, err);
	if (!rc)
		rc = zf_pickle_load(data, len, NULL, out, err);
	/* Parsed values copy what they keep: the bytes can go. */
	c->ops->drop_pickle(c);
	zf_error_where(err, zf_source_path(c->src));
	return rc;
}

int zf_container_bind(struct zf_container *c, const struct zf_pickle *pk,
		      struct zf_error *err)
{
	int rc;

	if (c->bound)
		return zf_fail_at(err, ZF_EUSAGE, zf_source_path(c->src),
				  "records already bound");
	rc = c->ops->bind(c, pk, err);
	if (rc) {
		zf_error_where(err, zf_source_path(c->src));
		return rc;
	}
	c->bound = true;
	return ZF_OK;
}

int zf_container_record(const struct zf_container *c, const char *key,
			struct zf_record *rec, struct zf_error *err)
{
	int rc = c->ops->record(c, key, rec, err);

	zf_error_where(err, zf_source_path(c->src));
	return rc;
}

int zf_container_digest(const struct zf_container *c, uint64_t digest[2],
			struct zf_error *err)
{
	int rc = c->ops->digest(c, digest, err);

	zf_error_where(err, zf_source_path(c->src));
	return rc;
}

int zf_container_same_head(const struct zf_container *tmpl,
			   struct zf_source *src, bool *same,
			   struct zf_error *err)
{
	*same = false;
	return tmpl->ops->same_head(tmpl, src, same, err);
}

int zf_container_cross_check(const struct zf_container *c,
			     struct zf_error *err)
{
	int rc = c->ops->cross_check(c, err);

	zf_error_where(err, zf_source_path(c->src));
	return rc;
}

int zf_container_check_records(const struct zf_container *c,
			       struct zf_error *err)
{
	int rc = c->ops->check_records(c, err);

	zf_error_where(err, zf_source_path(c->src));
	return rc;
}

struct zf_ptfile *zf_container_zip(const struct zf_container *c)
{
	return c->ops->kind == ZF_CONTAINER_ZIP ? c->u.zip : NULL;
}

size_t zf_container_element_size(const struct zf_pv_storage *st)
{
	size_t size = zf_dtype_size(st->dtype);

	if (!size && st->class_name)
		size = zf_ptlegacy_element_size(st->class_name);
	return size;
}
