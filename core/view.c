/* SPDX-License-Identifier: MIT */
/*
 * Turns a tensor from a pickle (storage key, offset, size, stride) into
 * the absolute byte range that holds it. All the checks that make a view
 * trustworthy live here: the record exists and is stored, the storage
 * length agrees with the record, the view is contiguous and lies inside
 * its storage.
 */
#include "ckpt_i.h"

#include <string.h>

int zf_view_resolve(const struct zf_loaded *f, const struct zf_pv *t,
		    const char *what, struct zf_view *v, struct zf_error *err)
{
	const struct zf_pv_tensor *tt;
	const struct zf_pv_storage *st;
	struct zf_record rec;
	uint64_t esize, numel = 1, expect = 1, nbytes, off_bytes, end;
	const char *path = zf_container_path(f->ct);
	int rc;

	memset(v, 0, sizeof(*v));
	if (!zf_pv_is(t, ZF_PV_TENSOR)) {
		zf_fail(err, ZF_EFORMAT, "'%s' is of type %s, expected a tensor", what,
			zf_pv_type_name(t));
		goto fail;
	}
	tt = &t->u.tensor;
	if (!zf_pv_is(tt->storage, ZF_PV_STORAGE)) {
		zf_fail(err, ZF_EFORMAT, "tensor '%s' has no storage", what);
		goto fail;
	}
	st = &tt->storage->u.storage;
	esize = zf_dtype_size(st->dtype);
	if (!esize) {
		zf_fail(err, ZF_EUNSUPPORTED,
			"tensor '%s' uses storage type '%s', which zerofs does not know",
			what, st->class_name ? st->class_name : "?");
		goto fail;
	}
	if (tt->ndim > ZF_MAX_DIMS) {
		zf_fail(err, ZF_EUNSUPPORTED, "tensor '%s' has %u dimensions (at most %d)",
			what, tt->ndim, ZF_MAX_DIMS);
		goto fail;
	}
	for (uint32_t i = tt->ndim; i-- > 0;) {
		if (tt->size[i] < 0) {
			zf_fail(err, ZF_EFORMAT, "tensor '%s' has a negative size", what);
			goto fail;
		}
		if (zf_mul_overflow(numel, (uint64_t)tt->size[i], &numel)) {
			zf_fail(err, ZF_EFORMAT,
				"tensor '%s' has a shape whose element count overflows 64 bits",
				what);
			goto fail;
		}
	}
	/* Row-major check; dimensions of size 1 may carry any stride. */
	if (numel > 1) {
		for (uint32_t i = tt->ndim; i-- > 0;) {
			if (tt->size[i] != 1 && (uint64_t)tt->stride[i] != expect) {
				zf_fail(err, ZF_EUNSUPPORTED,
					"tensor '%s' is not contiguous (stride %lld in dimension %u, expected %llu)",
					what, (long long)tt->stride[i], i,
					(unsigned long long)expect);
				goto fail;
			}
			expect *= (uint64_t)tt->size[i];
		}
	}
	rc = zf_container_record(f->ct, st->key, &rec, err);
	if (rc)
		goto fail_rc;
	if (st->numel < 0 || zf_mul_overflow((uint64_t)st->numel, esize, &nbytes) ||
	    nbytes != rec.size) {
		zf_fail(err, ZF_EFORMAT,
			"storage '%s' of tensor '%s' claims %lld elements of %llu bytes, but its record holds %llu bytes",
			st->key, what, (long long)st->numel,
			(unsigned long long)esize, (unsigned long long)rec.size);
		goto fail;
	}
	if (zf_mul_overflow(numel, esize, &nbytes) ||
	    zf_mul_overflow((uint64_t)tt->offset, esize, &off_bytes) ||
	    zf_add_overflow(off_bytes, nbytes, &end) || end > rec.size) {
		zf_fail(err, ZF_EFORMAT,
			"tensor '%s' (offset %lld, %llu elements) runs past the end of its storage '%s' (%lld elements)",
			what, (long long)tt->offset, (unsigned long long)numel,
			st->key, (long long)st->numel);
		goto fail;
	}
	v->file = f->file;
	v->dtype = st->dtype;
	v->offset = rec.offset + off_bytes;
	v->numel = numel;
	v->ndim = tt->ndim;
	for (uint32_t i = 0; i < tt->ndim; i++)
		v->shape[i] = (uint64_t)tt->size[i];
	return ZF_OK;
fail:
	rc = err ? err->status : ZF_EFORMAT;
fail_rc:
	zf_error_where(err, path);
	return rc ? rc : ZF_EFORMAT;
}
