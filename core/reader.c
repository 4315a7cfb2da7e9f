/* SPDX-License-Identifier: MIT */
/*
 * The read engine: (virtual file, offset, length) -> bytes. Header bytes
 * come from memory; tensor bytes are read with zf_ckpt_read() (the runs
 * zf_ckpt_map() gives, each read through its file's source) straight into
 * the caller's buffer, or, when the served dtype differs from the stored
 * one, read into a per-thread scratch buffer and converted into the
 * caller's buffer.
 *
 * Workload: FUSE sends 128 KiB to 1 MiB reads (mostly sequential, from
 * several threads); export and verify read 1 MiB chunks. Every range was
 * proven to lie inside its file when the checkpoint was opened, so the
 * only failures here are the operating system's, or a file that changed
 * since it was opened (every source read checks), and they are reported,
 * never papered over with zeros.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hfdir_i.h"
#include "zerofs/convert.h"

/* Source bytes converted per step; also the scratch buffer's size. */
#define SCRATCH_BYTES ((size_t)1 << 20)

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
	pthread_key_create(&scratch_key, free);
}

/* This thread's scratch buffer, allocated on first use, freed at exit. */
static unsigned char *scratch(void)
{
	unsigned char *p;

	pthread_once(&scratch_once, scratch_key_init);
	p = pthread_getspecific(scratch_key);
	if (!p) {
		p = malloc(SCRATCH_BYTES);
		if (p && pthread_setspecific(scratch_key, p)) {
			free(p);
			p = NULL;
		}
	}
	return p;
}

/* Converts served elements [e, e + count) of vt into out. */
static int convert_elems(const struct zf_ckpt *ck, const struct zf_vtensor *vt,
			 uint64_t e, uint64_t count, unsigned char *out,
			 struct zf_error *err)
{
	const struct zf_tensor *t = vt->src;
	size_t se = zf_dtype_size(t->src_dtype), oe = zf_dtype_size(vt->dtype);
	unsigned char *buf = scratch();
	uint64_t step = SCRATCH_BYTES / se;

	if (!buf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	while (count) {
		uint64_t k = count < step ? count : step;
		int rc = zf_ckpt_read(ck, vt->tensor, e * se, (size_t)(k * se), buf, err);

		if (rc)
			return rc;
		zf_convert(vt->dtype, out, t->src_dtype, buf, (size_t)k);
		out += k * oe;
		e += k;
		count -= k;
	}
	return ZF_OK;
}

/* Bytes [a, b) of vt's served data into out. */
static int read_tensor(const struct zf_ckpt *ck, const struct zf_vtensor *vt,
		       uint64_t a, uint64_t b, unsigned char *out,
		       struct zf_error *err)
{
	uint64_t oe = zf_dtype_size(vt->dtype), first, last;
	unsigned char one[16];
	int rc;

	if (vt->dtype == vt->src->src_dtype)
		return b > a ? zf_ckpt_read(ck, vt->tensor, a, (size_t)(b - a), out, err) : ZF_OK;

	/* A read may start or end inside an element: convert that one
	 * element aside and copy the part asked for. */
	if (a % oe) {
		uint64_t e = a / oe, lo = a % oe;
		uint64_t hi = b < (e + 1) * oe ? b - e * oe : oe;

		rc = convert_elems(ck, vt, e, 1, one, err);
		if (rc)
			return rc;
		memcpy(out, one + lo, (size_t)(hi - lo));
		out += hi - lo;
		a += hi - lo;
		if (a == b)
			return ZF_OK;
	}
	first = a / oe;
	last = b / oe;
	if (last > first) {
		rc = convert_elems(ck, vt, first, last - first, out, err);
		if (rc)
			return rc;
		out += (last - first) * oe;
	}
	if (b % oe) {
		rc = convert_elems(ck, vt, last, 1, one, err);
		if (rc)
			return rc;
		memcpy(out, one, (size_t)(b % oe));
	}
	return ZF_OK;
}

/* The tensor of f holding byte off of the data section, or NULL. */
static const struct zf_vtensor *tensor_at(const struct zf_vfile *f, uint64_t off)
{
	size_t lo = 0, hi = f->n_tensors;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct zf_vtensor *t = &f->tensors[mid];

		if (t->offset + t->nbytes <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->n_tensors && f->tensors[lo].offset <= off ? &f->tensors[lo] : NULL;
}

static int read_safetensors(const struct zf_hfdir *d, const struct zf_vfile *f,
			    unsigned char *out, uint64_t off, uint64_t len,
			    struct zf_error *err)
{
	const struct zf_vfile_data *data = &d->data[f - d->files];
	uint64_t end = off + len;
	const struct zf_vtensor *t;

	if (off < f->header_len) {
		uint64_t k = f->header_len - off < len ? f->header_len - off : len;

		memcpy(out, data->header + off, (size_t)k);
		out += k;
		off += k;
	}
	if (off >= end)
		return ZF_OK;
	/* Tensors tile the data section (proven at build time), in order. */
	t = tensor_at(f, off);
	if (!t)
		return zf_fail(err, ZF_EIO, "no tensor holds byte %llu of '%s'",
			       (unsigned long long)off, f->name);
	for (; t < f->tensors + f->n_tensors && off < end; t++) {
		uint64_t tend = t->offset + t->nbytes, stop = end < tend ? end : tend;
		int rc;

		if (!t->nbytes)
			continue;
		rc = read_tensor(d->info.ck, t, off - t->offset, stop - t->offset, out, err);
		if (rc)
			return rc;
		out += stop - off;
		off = stop;
	}
	return ZF_OK;
}

int64_t zf_vfile_read(const struct zf_hfdir *d, const struct zf_vfile *f,
		      void *dst, size_t len, uint64_t off,
		      struct zf_error *err)
{
	int rc = ZF_OK;

	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	switch (f->kind) {
	case ZF_VF_MEMORY:
		memcpy(dst, d->data[f - d->files].data + off, len);
		/* config.json: served from memory, but only while its source
		 * is the file it was made from (bytes from one save). */
		if (f->src)
			rc = zf_source_check(f->src, err);
		break;
	case ZF_VF_PASSTHROUGH:
		rc = zf_source_pread(f->src, dst, len, off, err);
		break;
	case ZF_VF_SAFETENSORS:
		rc = read_safetensors(d, f, dst, off, len, err);
		break;
	}
	return rc ? -1 : (int64_t)len;
}

void zf_vfile_segment(const struct zf_hfdir *d, const struct zf_vfile *f,
		      uint64_t off, uint64_t len, struct zf_source **src,
		      uint64_t *src_off, uint64_t *n)
{
	const struct zf_vtensor *t;
	struct zf_run run;

	*src = NULL;
	*src_off = 0;
	if (off >= f->size) {
		*n = 0;
		return;
	}
	if (len > f->size - off)
		len = f->size - off;
	*n = len;
	if (f->kind == ZF_VF_PASSTHROUGH) {
		*src = f->src;
		*src_off = off;
		return;
	}
	if (f->kind != ZF_VF_SAFETENSORS)
		return;
	if (off < f->header_len) {
		*n = f->header_len - off < len ? f->header_len - off : len;
		return;
	}
	t = tensor_at(f, off);
	if (!t)
		return;
	if (t->offset + t->nbytes - off < *n)
		*n = t->offset + t->nbytes - off;
	if (t->dtype != t->src->src_dtype || zf_ckpt_gathers(d->info.ck, t->tensor))
		return;
	if (zf_ckpt_map(d->info.ck, t->tensor, off - t->offset, *n, &run))
		return;
	*src = zf_ckpt_file(d->info.ck, run.file);
	*src_off = run.offset;
	*n = run.len;
}
