/* SPDX-License-Identifier: MIT */
/*
 * Turns a tensor from a pickle (storage key, offset, size, stride) into
 * the bytes that hold it. All the checks that make a view trustworthy
 * live here: the record exists and is stored, the storage length agrees
 * with the record, and every element the view reaches lies inside its
 * storage.
 *
 * Most views are contiguous (row-major). DeepSpeed saves frozen params
 * and buffers as the model held them, without a clone, so a transposed or
 * strided one keeps its strides (torch.save writes size, stride and offset
 * of the view and the whole storage): zf_view_resolve_any() takes those,
 * and zf_place_view() gives such a tensor a strided place.
 */
#include "ckpt_i.h"

#include <string.h>

#include "ckd.h"

static int resolve(const struct zf_loaded *f, const struct zf_pv *t,
		   const char *what, bool any, struct zf_view *v,
		   struct zf_error *err)
{
	const struct zf_pv_tensor *tt;
	const struct zf_pv_storage *st;
	struct zf_record rec;
	uint64_t esize, numel = 1, expect = 1, nbytes, off_bytes, end, last = 0;
	const char *path = zf_container_path(f->ct);
	bool contiguous = true;
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
		if (zf_ckd_mul(&numel, numel, (uint64_t)tt->size[i])) {
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
				contiguous = false;
				if (!any) {
					zf_fail(err, ZF_EUNSUPPORTED,
						"tensor '%s' is not contiguous (stride %lld in dimension %u, expected %llu)",
						what, (long long)tt->stride[i], i,
						(unsigned long long)expect);
					goto fail;
				}
			}
			expect *= (uint64_t)tt->size[i];
		}
	}
	/* The last element a strided view reaches: sum of (size-1)*stride. */
	if (!contiguous) {
		for (uint32_t i = 0; i < tt->ndim; i++) {
			uint64_t step;

			if (tt->stride[i] < 0) {
				zf_fail(err, ZF_EFORMAT,
					"tensor '%s' has a negative stride (%lld in dimension %u)",
					what, (long long)tt->stride[i], i);
				goto fail;
			}
			if (zf_ckd_mul(&step, (uint64_t)tt->size[i] - 1, (uint64_t)tt->stride[i]) ||
			    zf_ckd_add(&last, last, step)) {
				zf_fail(err, ZF_EFORMAT, "tensor '%s' has strides that overflow 64 bits",
					what);
				goto fail;
			}
		}
	}
	rc = zf_container_record(f->ct, st->key, &rec, err);
	if (rc)
		goto fail_rc;
	if (st->numel < 0 || zf_ckd_mul(&nbytes, (uint64_t)st->numel, esize) ||
	    nbytes != rec.size) {
		zf_fail(err, ZF_EFORMAT,
			"storage '%s' of tensor '%s' claims %lld elements of %llu bytes, but its record holds %llu bytes",
			st->key, what, (long long)st->numel,
			(unsigned long long)esize, (unsigned long long)rec.size);
		goto fail;
	}
	/* Contiguous: numel elements from the offset; strided: up to and
	 * including the last element reached. Empty views reach nothing. */
	if (numel && !contiguous && zf_ckd_add(&last, last, 1))
		goto past;
	if (zf_ckd_mul(&nbytes, contiguous ? numel : (numel ? last : 0), esize) ||
	    zf_ckd_mul(&off_bytes, (uint64_t)tt->offset, esize) ||
	    zf_ckd_add(&end, off_bytes, nbytes) || end > rec.size)
		goto past;
	v->file = f->file;
	v->dtype = st->dtype;
	v->offset = rec.offset + off_bytes;
	v->numel = numel;
	v->ndim = tt->ndim;
	v->strided = !contiguous;
	for (uint32_t i = 0; i < tt->ndim; i++) {
		v->shape[i] = (uint64_t)tt->size[i];
		v->stride[i] = (uint64_t)tt->stride[i];
	}
	return ZF_OK;
past:
	zf_fail(err, ZF_EFORMAT,
		"tensor '%s' (offset %lld, %llu elements) runs past the end of its storage '%s' (%lld elements)",
		what, (long long)tt->offset, (unsigned long long)numel,
		st->key, (long long)st->numel);
fail:
	rc = err ? err->status : ZF_EFORMAT;
fail_rc:
	zf_error_where(err, path);
	return rc ? rc : ZF_EFORMAT;
}

int zf_view_resolve(const struct zf_loaded *f, const struct zf_pv *t,
		    const char *what, struct zf_view *v, struct zf_error *err)
{
	return resolve(f, t, what, false, v, err);
}

int zf_view_resolve_any(const struct zf_loaded *f, const struct zf_pv *t,
			const char *what, struct zf_view *v, struct zf_error *err)
{
	return resolve(f, t, what, true, v, err);
}

int zf_place_view(struct zf_rank_tables *lay, const struct zf_view *v,
		  struct zf_place *pl, struct zf_error *err)
{
	if (!v->strided) {
		pl->kind = ZF_PLACE_WHOLE;
		pl->u.whole.file = v->file;
		pl->u.whole.offset = v->offset;
		return ZF_OK;
	}
	return zf_place_strided(lay, v->file, v->offset, v->ndim, v->shape, v->stride,
				pl, err);
}
