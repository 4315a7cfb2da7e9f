/* SPDX-License-Identifier: MIT */
/*
 * Loads a DeepSpeed ZeRO checkpoint into struct zf_ckpt (see ckpt.h).
 *
 * The work, in order: find the files (ckpt_find.c); open each .pt and
 * parse its pickle (ptfile.c, pickle.c); read what DeepSpeed recorded
 * (stage, world size, param_shapes, frozen params, tied params, buffers)
 * and check every rank agrees; list the tensors in the model's state_dict
 * order (the key order of `module`); then give each tensor its extents:
 * trainable params from the fp32 master partitions (layout_zero3.c,
 * layout_zero12.c), frozen params from their fragments (or, at stage 1,
 * where DeepSpeed records none, from `module`), buffers from `module`.
 * FORMAT.md records what these files hold; every fact used here is checked
 * rather than assumed, and every failure names the file.
 *
 * Workload: runs once per mount. A 64-rank checkpoint of a model with
 * thousands of tensors means ~130 files and ~10 MB of pickle; the cost is
 * dominated by parsing, so lookups use hash maps, never nested scans.
 */
#include "ckpt_i.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>

#include "io.h"
#include "strmap.h"
#include "text.h"

struct loader {
	struct zf_ckpt *ck;
	struct zf_ckpt_files files;
	struct zf_loaded *model; /* files.n_model */
	struct zf_loaded *optim; /* files.world_size */
	const struct zf_pv *module, *buffer_names, *param_shapes;
	const struct zf_pv *frozen_shapes, *shared;
	struct zf_strmap names; /* tensor name -> index in ck->tensors */
	size_t cap_tensors;
	struct zf_flat_param *params;
	size_t n_params;
	uint32_t n_groups;
	struct zf_rank_groups *ranks;
	double step0;	/* rank 0's optimizer step, when has_step0 */
	bool has_step0;
};

static const char *model_path(const struct loader *L, uint32_t i)
{
	return L->files.model[i];
}

static int open_one(struct loader *L, const char *path, struct zf_loaded *f,
		    struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	struct zf_source *s = &ck->sources[ck->n_sources];
	const unsigned char *pkl;
	size_t len;
	struct stat st;
	int rc;

	rc = zf_ptfile_open(path, &f->pf, err);
	if (rc)
		return rc;
	pkl = zf_ptfile_pickle(f->pf, &len);
	rc = zf_pickle_load(pkl, len, NULL, &f->pk, err);
	if (rc) {
		zf_error_where(err, path);
		return rc;
	}
	f->root = zf_pickle_root(f->pk);
	if (!zf_pv_is(f->root, ZF_PV_DICT)) {
		zf_fail(err, ZF_EFORMAT, "the pickle holds a value of type %s, not a dict",
			zf_pv_type_name(f->root));
		zf_error_where(err, path);
		return ZF_EFORMAT;
	}
	if (fstat(zf_ptfile_fd(f->pf), &st) < 0) {
		zf_fail(err, ZF_EIO, "cannot stat");
		zf_error_where(err, path);
		return ZF_EIO;
	}
	/* Absolute, so that checks still find it after a daemon's chdir. */
	s->path = realpath(path, NULL);
	if (!s->path)
		s->path = strdup(path);
	if (!s->path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	s->name = strrchr(s->path, '/') ? strrchr(s->path, '/') + 1 : s->path;
	s->fd = zf_ptfile_fd(f->pf);
	s->size = (uint64_t)st.st_size;
	s->mtime = st.st_mtim;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->fingerprint = zf_source_fingerprint(s->dev, s->ino, s->size, &s->mtime);
	f->source = (uint32_t)ck->n_sources++;
	return ZF_OK;
}

/* Records a format error in file path and returns ZF_EFORMAT. */
static int __attribute__((format(printf, 3, 4)))
bad(struct zf_error *err, const char *path, const char *fmt, ...)
{
	char msg[ZF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	zf_fail(err, ZF_EFORMAT, "%s", msg);
	zf_error_where(err, path);
	return ZF_EFORMAT;
}

/* Reads a torch.Size (tuple of ints) into a shape. */
static int read_shape(const struct zf_pv *v, const char *name, const char *path,
		      struct zf_tensor *t, struct zf_error *err)
{
	uint64_t numel = 1;

	if (!zf_pv_is(v, ZF_PV_TUPLE) && !zf_pv_is(v, ZF_PV_LIST))
		return bad(err, path, "the shape of '%s' is not a tuple of ints", name);
	if (v->u.seq.n > ZF_MAX_DIMS) {
		zf_fail(err, ZF_EUNSUPPORTED, "'%s' has %zu dimensions (at most %d)",
			name, v->u.seq.n, ZF_MAX_DIMS);
		zf_error_where(err, path);
		return ZF_EUNSUPPORTED;
	}
	for (size_t i = 0; i < v->u.seq.n; i++) {
		const struct zf_pv *d = v->u.seq.items[i];

		if (!zf_pv_is(d, ZF_PV_INT) || d->u.i < 0)
			return bad(err, path, "the shape of '%s' has a dimension that is not a non-negative int", name);
		t->shape[i] = (uint64_t)d->u.i;
		if (zf_mul_overflow(numel, t->shape[i], &numel) ||
		    numel > ((uint64_t)1 << 61))
			return bad(err, path, "the shape of '%s' is absurd: its element count overflows", name);
	}
	t->ndim = (uint32_t)v->u.seq.n;
	t->numel = numel;
	return ZF_OK;
}

/* Adds a tensor named name (borrowed from a pickle: copied) and returns
 * its index, or the index it already has. */
static int add_tensor(struct loader *L, const char *name, size_t *idx,
		      bool *is_new, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t i = zf_strmap_get(&L->names, name);
	struct zf_tensor *t;

	if (!zf_utf8_valid(name, strlen(name))) {
		char shown[256];

		zf_fail(err, ZF_EFORMAT,
			"tensor name '%s' is not valid UTF-8: it cannot be served under a Hugging Face name",
			zf_printable(name, shown, sizeof(shown)));
		zf_error_where(err, L->files.model[0]);
		return ZF_EFORMAT;
	}
	*is_new = i == ZF_STRMAP_NONE;
	if (!*is_new) {
		*idx = i;
		return ZF_OK;
	}
	if (ck->n_tensors == L->cap_tensors)
		return zf_fail(err, ZF_EFORMAT, "more tensor names than expected");
	t = &ck->tensors[ck->n_tensors];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	t->kind = ZF_KIND_PARAM;
	t->alias_of = (size_t)-1;
	if (zf_strmap_put(&L->names, t->name, ck->n_tensors))
		return zf_fail(err, ZF_ENOMEM, "name table full");
	*idx = ck->n_tensors++;
	return ZF_OK;
}

static size_t count_items(const struct zf_pv *v)
{
	if (zf_pv_is(v, ZF_PV_DICT))
		return v->u.dict.n;
	if (zf_pv_is(v, ZF_PV_LIST) || zf_pv_is(v, ZF_PV_TUPLE))
		return v->u.seq.n;
	return 0;
}

/* The stage an optimizer file declares; 0 when it has no zero_stage. */
static int read_stage(const struct zf_pv *osd, const char *path, int *stage,
		      struct zf_error *err)
{
	const struct zf_pv *zs = zf_pv_get(osd, "zero_stage");

	*stage = 0;
	if (!zs)
		return ZF_OK;
	if (zf_pv_is(zs, ZF_PV_INT)) {
		*stage = (int)zs->u.i;
	} else if (zf_pv_is(zs, ZF_PV_ENUM)) {
		const char *m = zs->u.enm.member;

		if (!m)
			*stage = (int)zs->u.enm.value;
		else if (!strcmp(m, "weights"))
			*stage = 3;
		else if (!strcmp(m, "gradients"))
			*stage = 2;
		else if (!strcmp(m, "optimizer_states"))
			*stage = 1;
		else if (!strcmp(m, "disabled"))
			*stage = 0;
		else
			return bad(err, path, "unknown ZeRO stage '%s'", m);
	} else {
		return bad(err, path, "zero_stage is of type %s, expected an int or ZeroStageEnum",
			   zf_pv_type_name(zs));
	}
	if (*stage < 1 || *stage > 3) {
		zf_fail(err, ZF_EUNSUPPORTED,
			"ZeRO stage %d: zerofs reads stages 1, 2 and 3", *stage);
		zf_error_where(err, path);
		return ZF_EUNSUPPORTED;
	}
	return ZF_OK;
}

/*
 * The optimizer's step count as the base optimizer recorded it: the first
 * "step" in its per-param state (ZeRO-3: optimizer_state_dict.state;
 * ZeRO-1/2 and BF16_Optimizer: base_optimizer_state), an int, a float or
 * a 0-dim tensor. Every rank of one save has the same; files from two
 * saves usually do not, which is how they are told apart. *found is false
 * when there is no step (a checkpoint saved before the first step).
 */
static int optim_step(const struct zf_loaded *f, const struct zf_pv *osd,
		      double *step, bool *found, struct zf_error *err)
{
	const struct zf_pv *st = zf_pv_get(zf_pv_get(osd, "optimizer_state_dict"), "state");
	const struct zf_pv *v = NULL;

	*found = false;
	if (!st)
		st = zf_pv_get(osd, "base_optimizer_state");
	if (zf_pv_is(st, ZF_PV_DICT) && zf_pv_get(st, "state"))
		st = zf_pv_get(st, "state");
	/* A dict of per-param states, or a list of them. */
	if (zf_pv_is(st, ZF_PV_DICT) && st->u.dict.n)
		v = zf_pv_get(st->u.dict.vals[0], "step");
	else if ((zf_pv_is(st, ZF_PV_LIST) || zf_pv_is(st, ZF_PV_TUPLE)) && st->u.seq.n)
		v = zf_pv_get(st->u.seq.items[0], "step");
	if (zf_pv_is(v, ZF_PV_INT)) {
		*step = (double)v->u.i;
	} else if (zf_pv_is(v, ZF_PV_FLOAT)) {
		*step = v->u.f;
	} else if (zf_pv_is(v, ZF_PV_TENSOR)) {
		struct zf_view view;
		unsigned char b[8];
		int rc = zf_view_resolve(f, v, "step", &view, err);

		if (rc)
			return rc;
		if (view.numel != 1)
			return ZF_OK;
		switch (view.dtype) {
		case ZF_DT_F32: {
			float x;

			if ((rc = zf_pread_full(zf_ptfile_fd(f->pf), b, 4, view.offset, err)))
				break;
			memcpy(&x, b, 4);
			*step = x;
			*found = true;
			break;
		}
		case ZF_DT_I64: {
			int64_t x;

			if ((rc = zf_pread_full(zf_ptfile_fd(f->pf), b, 8, view.offset, err)))
				break;
			memcpy(&x, b, 8);
			*step = (double)x;
			*found = true;
			break;
		}
		default:
			break;
		}
		if (rc)
			zf_error_where(err, zf_ptfile_path(f->pf));
		return rc;
	} else {
		return ZF_OK;
	}
	*found = true;
	return ZF_OK;
}

/* Reads the optimizer files: stage, world size, fp32 partitions. */
static int load_optim(struct loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	uint32_t ws = L->files.world_size;
	int rc;

	L->ranks = calloc(ws, sizeof(*L->ranks));
	if (!L->ranks)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (uint32_t r = 0; r < ws; r++) {
		const struct zf_loaded *f = &L->optim[r];
		const char *path = L->files.optim[r];
		const struct zf_pv *osd = zf_pv_get(f->root, "optimizer_state_dict");
		const struct zf_pv *pc, *groups;
		const char *gkey;
		int stage;

		if (!zf_pv_is(osd, ZF_PV_DICT))
			return bad(err, path, "no 'optimizer_state_dict' dict: not a DeepSpeed optimizer states file");
		rc = read_stage(osd, path, &stage, err);
		if (rc)
			return rc;
		if (!stage) {
			if (!zf_pv_get(osd, "single_partition_of_fp32_groups"))
				return bad(err, path, "no 'zero_stage' and no fp32 partitions: not a ZeRO or BF16_Optimizer checkpoint");
			stage = 1; /* BF16_Optimizer: ZeRO-1 layout */
			if (r == 0)
				ck->optimizer = ZF_OPT_BF16;
			else if (ck->optimizer != ZF_OPT_BF16)
				return bad(err, path, "written by a different optimizer than rank 0's file");
		} else if (r > 0 && ck->optimizer == ZF_OPT_BF16) {
			return bad(err, path, "written by a different optimizer than rank 0's file");
		}
		if (r == 0)
			ck->stage = stage;
		else if (stage != ck->stage) {
			zf_fail(err, ZF_EFORMAT, "ZeRO stage %d, but rank 0's file says %d: files from different runs",
				stage, ck->stage);
			zf_error_where(err, path);
			return ZF_EFORMAT;
		}

		pc = zf_pv_get(osd, "partition_count");
		int64_t count = -1;

		if (zf_pv_is(pc, ZF_PV_INT)) {
			count = pc->u.i;
		} else if (zf_pv_is(pc, ZF_PV_LIST) || zf_pv_is(pc, ZF_PV_TUPLE)) {
			for (size_t i = 0; i < pc->u.seq.n; i++) {
				const struct zf_pv *c = pc->u.seq.items[i];

				if (!zf_pv_is(c, ZF_PV_INT))
					return bad(err, path, "partition_count holds a non-int");
				if (c->u.i > count)
					count = c->u.i;
			}
		}
		if (count < 0)
			return bad(err, path, "no usable 'partition_count'");
		if (count > ws) {
			char first[256];

			zf_rank_file_name(strrchr(path, '/') ? strrchr(path, '/') + 1 : path,
					  ws, first, sizeof(first));
			zf_fail(err, ZF_ENOTFOUND,
				"saved by %lld ranks, but only %u rank files are here: missing '%s'%s",
				(long long)count, ws, first, count > ws + 1 ? " and more" : "");
			zf_error_where(err, L->files.tag_dir);
			return ZF_ENOTFOUND;
		}
		if ((uint64_t)count != ws) {
			zf_fail(err, ZF_EFORMAT,
				"saved by %lld ranks, but the folder holds %u rank files: files from different runs are mixed",
				(long long)count, ws);
			zf_error_where(err, path);
			return ZF_EFORMAT;
		}

		{
			double step = 0;
			bool found;

			rc = optim_step(f, osd, &step, &found, err);
			if (rc)
				return rc;
			if (r == 0) {
				L->step0 = step;
				L->has_step0 = found;
			} else if (found != L->has_step0 || (found && step != L->step0)) {
				zf_fail(err, ZF_EFORMAT,
					"optimizer is at step %.0f, but rank 0's file is at step %.0f: files from different saves are mixed",
					found ? step : 0.0, L->has_step0 ? L->step0 : 0.0);
				zf_error_where(err, path);
				return ZF_EFORMAT;
			}
		}
		gkey = stage == 3 ? "fp32_flat_groups" : "single_partition_of_fp32_groups";
		groups = zf_pv_get(osd, gkey);
		if (!zf_pv_is(groups, ZF_PV_LIST) && !zf_pv_is(groups, ZF_PV_TUPLE))
			return bad(err, path, "no '%s' list: the fp32 weights are missing", gkey);
		if (r > 0 && groups->u.seq.n != L->ranks[0].n) {
			zf_fail(err, ZF_EFORMAT, "%zu fp32 groups, but rank 0's file has %zu: files from different runs",
				groups->u.seq.n, L->ranks[0].n);
			zf_error_where(err, path);
			return ZF_EFORMAT;
		}
		L->ranks[r].path = path;
		L->ranks[r].n = groups->u.seq.n;
		L->ranks[r].v = calloc(groups->u.seq.n ? groups->u.seq.n : 1, sizeof(struct zf_view));
		if (!L->ranks[r].v)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		for (size_t g = 0; g < groups->u.seq.n; g++) {
			char what[64];

			snprintf(what, sizeof(what), "%s[%zu]", gkey, g);
			rc = zf_view_resolve(f, groups->u.seq.items[g], what,
					     &L->ranks[r].v[g], err);
			if (rc)
				return rc;
		}
	}
	if (ck->stage == 3 && L->files.n_model != ws) {
		zf_fail(err, ZF_ENOTFOUND,
			"ZeRO-3 optimizer states, but %u model states file(s) instead of one per rank (%u)",
			L->files.n_model, ws);
		zf_error_where(err, L->files.tag_dir);
		return ZF_ENOTFOUND;
	}
	if (ck->stage != 3 && L->files.n_model != 1) {
		zf_fail(err, ZF_EFORMAT,
			"ZeRO-%d optimizer states, but per-rank model states files (a ZeRO-3 layout)",
			ck->stage);
		zf_error_where(err, L->files.tag_dir);
		return ZF_EFORMAT;
	}
	return ZF_OK;
}

/* Reads rank 0's model states: names, shapes, metadata. */
static int load_model_meta(struct loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *root = L->model[0].root, *v;
	const char *path = model_path(L, 0);

	L->module = zf_pv_get(root, "module");
	if (L->module && !zf_pv_is(L->module, ZF_PV_DICT) && !zf_pv_is(L->module, ZF_PV_NONE))
		return bad(err, path, "'module' is of type %s, expected a state dict", zf_pv_type_name(L->module));
	if (zf_pv_is(L->module, ZF_PV_NONE))
		L->module = NULL;
	L->buffer_names = zf_pv_get(root, "buffer_names");
	if (L->buffer_names && !zf_pv_is(L->buffer_names, ZF_PV_LIST) &&
	    !zf_pv_is(L->buffer_names, ZF_PV_TUPLE) && !zf_pv_is(L->buffer_names, ZF_PV_NONE))
		return bad(err, path, "'buffer_names' is not a list");
	L->param_shapes = zf_pv_get(root, "param_shapes");
	if (!zf_pv_is(L->param_shapes, ZF_PV_LIST) && !zf_pv_is(L->param_shapes, ZF_PV_DICT))
		return bad(err, path, "no 'param_shapes': not a DeepSpeed ZeRO model states file");
	L->frozen_shapes = zf_pv_get(root, "frozen_param_shapes");
	if (L->frozen_shapes && !zf_pv_is(L->frozen_shapes, ZF_PV_DICT))
		L->frozen_shapes = NULL; /* None at stage 1 */
	L->shared = zf_pv_get(root, "shared_params");
	if (L->shared && !zf_pv_is(L->shared, ZF_PV_DICT))
		L->shared = NULL;

	v = zf_pv_get(root, "ds_version");
	if (!zf_pv_is(v, ZF_PV_STR))
		v = zf_pv_get(L->optim[0].root, "ds_version");
	ck->ds_version = strdup(zf_pv_is(v, ZF_PV_STR) ? v->u.str.s : "");
	if (!ck->ds_version)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	v = zf_pv_get(root, "global_steps");
	ck->global_steps = zf_pv_is(v, ZF_PV_INT) ? (uint64_t)v->u.i : (uint64_t)-1;

	/* Ranks of one save agree on the step and on param_shapes' size. */
	for (uint32_t r = 1; r < L->files.n_model; r++) {
		const struct zf_pv *rr = L->model[r].root;
		const struct zf_pv *gs = zf_pv_get(rr, "global_steps");
		const struct zf_pv *ps = zf_pv_get(rr, "param_shapes");

		if (zf_pv_is(gs, ZF_PV_INT) && gs->u.i != (int64_t)ck->global_steps) {
			zf_fail(err, ZF_EFORMAT,
				"saved at step %lld, but rank 0's file at step %lld: files from different saves are mixed",
				(long long)gs->u.i, (long long)ck->global_steps);
			zf_error_where(err, model_path(L, r));
			return ZF_EFORMAT;
		}
		if (count_items(ps) != count_items(L->param_shapes))
			return bad(err, model_path(L, r),
				   "param_shapes differs from rank 0's: files from different runs are mixed");
	}
	return ZF_OK;
}

static enum zf_dtype module_dtype(const struct loader *L, const char *name)
{
	const struct zf_pv *t = L->module ? zf_pv_get(L->module, name) : NULL;

	if (zf_pv_is(t, ZF_PV_TENSOR) && zf_pv_is(t->u.tensor.storage, ZF_PV_STORAGE))
		return t->u.tensor.storage->u.storage.dtype;
	return ZF_DT_INVALID;
}

static bool in_list(const struct zf_pv *list, const char *name)
{
	if (!list || (!zf_pv_is(list, ZF_PV_LIST) && !zf_pv_is(list, ZF_PV_TUPLE)))
		return false;
	for (size_t i = 0; i < list->u.seq.n; i++) {
		const struct zf_pv *s = list->u.seq.items[i];

		if (zf_pv_is(s, ZF_PV_STR) && !strcmp(s->u.str.s, name))
			return true;
	}
	return false;
}

/* Lists the trainable params in flat order and gives them their shapes. */
static int collect_params(struct loader *L, struct zf_error *err)
{
	const struct zf_pv *ps = L->param_shapes;
	const char *path = model_path(L, 0);
	size_t n_groups = zf_pv_is(ps, ZF_PV_DICT) ? 1 : ps->u.seq.n;
	size_t total = 0;

	for (size_t g = 0; g < n_groups; g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		if (!zf_pv_is(d, ZF_PV_DICT))
			return bad(err, path, "param_shapes holds a non-dict");
		total += d->u.dict.n;
	}
	L->params = calloc(total ? total : 1, sizeof(*L->params));
	if (!L->params)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L->n_groups = (uint32_t)n_groups;
	for (size_t g = 0; g < n_groups; g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		for (size_t i = 0; i < d->u.dict.n; i++) {
			const struct zf_pv *k = d->u.dict.keys[i];
			struct zf_flat_param *p = &L->params[L->n_params];
			struct zf_tensor *t;
			size_t idx;
			bool is_new;
			int rc;

			if (!zf_pv_is(k, ZF_PV_STR))
				return bad(err, path, "param_shapes has a non-string name");
			rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
			if (rc)
				return rc;
			if (!is_new)
				return bad(err, path, "parameter '%s' appears twice in param_shapes", k->u.str.s);
			t = &L->ck->tensors[idx];
			rc = read_shape(d->u.dict.vals[i], t->name, path, t, err);
			if (rc)
				return rc;
			t->kind = ZF_KIND_PARAM;
			t->src_dtype = ZF_DT_F32;
			p->name = t->name;
			p->numel = t->numel;
			p->group = (uint32_t)g;
			p->tensor = idx;
			L->n_params++;
		}
	}
	return ZF_OK;
}

/* Gives a tensor the extents of a whole view (buffers, stage 1/2 frozen). */
static int from_view(struct loader *L, const struct zf_loaded *f,
		     const struct zf_pv *pv, struct zf_tensor *t, bool set_shape,
		     struct zf_error *err)
{
	struct zf_view v;
	int rc = zf_view_resolve(f, pv, t->name, &v, err);

	if (rc)
		return rc;
	if (set_shape) {
		t->ndim = v.ndim;
		memcpy(t->shape, v.shape, sizeof(v.shape));
		t->numel = v.numel;
	} else if (v.numel != t->numel) {
		zf_fail(err, ZF_EFORMAT, "'%s' holds %llu elements, but its shape needs %llu",
			t->name, (unsigned long long)v.numel, (unsigned long long)t->numel);
		zf_error_where(err, zf_ptfile_path(f->pf));
		return ZF_EFORMAT;
	}
	t->src_dtype = v.dtype;
	(void)L;
	return zf_tensor_add_extent(t, v.source, v.offset,
				    v.numel * zf_dtype_size(v.dtype), err);
}

/*
 * Dict lookup that first tries position hint: every rank's
 * frozen_param_fragments lists names in frozen_param_shapes order, so with
 * thousands of frozen params (LoRA) and many ranks a plain scan would be
 * quadratic.
 */
static const struct zf_pv *get_hinted(const struct zf_pv *d, const char *key,
				      size_t hint)
{
	if (zf_pv_is(d, ZF_PV_DICT) && hint < d->u.dict.n &&
	    zf_pv_is(d->u.dict.keys[hint], ZF_PV_STR) &&
	    !strcmp(d->u.dict.keys[hint]->u.str.s, key))
		return d->u.dict.vals[hint];
	return zf_pv_get(d, key);
}

/* ZeRO-3 frozen param: rank r's fragment holds elements [r*p, (r+1)*p). */
static int frozen_zero3(struct loader *L, struct zf_tensor *t, size_t hint,
			struct zf_error *err)
{
	uint32_t ws = L->files.world_size;
	uint64_t n = t->numel, p = n / ws + (n % ws != 0);

	for (uint32_t r = 0; r < ws; r++) {
		const struct zf_pv *frags = zf_pv_get(L->model[r].root, "frozen_param_fragments");
		const struct zf_pv *fr = get_hinted(frags, t->name, hint);
		uint64_t start = (uint64_t)r * p, cnt, esz;
		struct zf_view v;
		int rc;

		if (start >= n)
			break;
		cnt = n - start < p ? n - start : p;
		if (!fr)
			return bad(err, model_path(L, r), "no fragment of frozen parameter '%s'", t->name);
		rc = zf_view_resolve(&L->model[r], fr, t->name, &v, err);
		if (rc)
			return rc;
		if (v.numel < cnt) {
			zf_fail(err, ZF_EFORMAT,
				"fragment of frozen parameter '%s' holds %llu elements, expected %llu (ceil(%llu/%u))",
				t->name, (unsigned long long)v.numel,
				(unsigned long long)p, (unsigned long long)n, ws);
			zf_error_where(err, model_path(L, r));
			return ZF_EFORMAT;
		}
		if (r == 0)
			t->src_dtype = v.dtype;
		else if (v.dtype != t->src_dtype)
			return bad(err, model_path(L, r), "fragments of '%s' differ in dtype across ranks", t->name);
		esz = zf_dtype_size(v.dtype);
		rc = zf_tensor_add_extent(t, v.source, v.offset, cnt * esz, err);
		if (rc)
			return rc;
	}
	return ZF_OK;
}

/*
 * Tensors were numbered as found: params, frozen params, then the rest of
 * `module`. Reorders them into the model's state_dict() order, the key
 * order of `module`; anything `module` lacks follows in zero_to_fp32's
 * order (frozen, params, aliases).
 */
static int put_in_model_order(struct loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t n = ck->n_tensors, k = 0;
	size_t *new_of = malloc((n ? n : 1) * sizeof(*new_of));
	struct zf_tensor *sorted = calloc(n ? n : 1, sizeof(*sorted));
	const struct zf_pv *mod = L->module;
	static const enum zf_tensor_kind rest[] = { ZF_KIND_BUFFER, ZF_KIND_FROZEN,
						    ZF_KIND_PARAM, ZF_KIND_ALIAS };

	if (!new_of || !sorted) {
		free(new_of);
		free(sorted);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++)
		new_of[i] = ZF_STRMAP_NONE;
	for (size_t i = 0; mod && i < mod->u.dict.n; i++) {
		size_t j = zf_strmap_get(&L->names, mod->u.dict.keys[i]->u.str.s);

		if (j != ZF_STRMAP_NONE && new_of[j] == ZF_STRMAP_NONE)
			new_of[j] = k++;
	}
	for (size_t r = 0; r < sizeof(rest) / sizeof(rest[0]); r++)
		for (size_t i = 0; i < n; i++)
			if (new_of[i] == ZF_STRMAP_NONE && ck->tensors[i].kind == rest[r])
				new_of[i] = k++;
	for (size_t i = 0; i < n; i++) {
		sorted[new_of[i]] = ck->tensors[i];
		if (sorted[new_of[i]].kind == ZF_KIND_ALIAS)
			sorted[new_of[i]].alias_of = new_of[ck->tensors[i].alias_of];
	}
	free(ck->tensors);
	ck->tensors = sorted;
	free(new_of);
	/* The name map and L->params index the old order: retire them. */
	zf_strmap_release(&L->names);
	return ZF_OK;
}

/*
 * Lists every tensor in state_dict order and gives frozen params and
 * buffers their data. Trainable params got their shapes in
 * collect_params(); their extents come from the layout step.
 */
static int collect_tensors(struct loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const char *path = model_path(L, 0);
	const struct zf_pv *mod = L->module;
	const struct zf_pv *frags0 = zf_pv_get(L->model[0].root, "frozen_param_fragments");
	size_t n_mod = mod ? mod->u.dict.n : 0;
	int rc;

	/* Frozen params named by frozen_param_shapes (stage 2/3). */
	if (L->frozen_shapes) {
		for (size_t i = 0; i < L->frozen_shapes->u.dict.n; i++) {
			const struct zf_pv *k = L->frozen_shapes->u.dict.keys[i];
			struct zf_tensor *t;
			size_t idx;
			bool is_new;

			if (!zf_pv_is(k, ZF_PV_STR))
				return bad(err, path, "frozen_param_shapes has a non-string name");
			rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
			if (rc)
				return rc;
			if (!is_new)
				return bad(err, path, "'%s' is both trainable and frozen", k->u.str.s);
			t = &ck->tensors[idx];
			rc = read_shape(L->frozen_shapes->u.dict.vals[i], t->name, path, t, err);
			if (rc)
				return rc;
			t->kind = ZF_KIND_FROZEN;
			if (ck->stage == 3)
				rc = frozen_zero3(L, t, i, err);
			else
				rc = from_view(L, &L->model[0], get_hinted(frags0, t->name, i), t, false, err);
			if (rc)
				return rc;
		}
	}

	/* Everything in `module`, in its order: buffers, stage-1 frozen
	 * params, tied aliases. Params seen above keep their index. */
	for (size_t i = 0; i < n_mod; i++) {
		const struct zf_pv *k = mod->u.dict.keys[i];
		const struct zf_pv *alias_src;
		struct zf_tensor *t;
		size_t idx;
		bool is_new;

		if (!zf_pv_is(k, ZF_PV_STR))
			return bad(err, path, "'module' has a non-string key");
		alias_src = zf_pv_get(L->shared, k->u.str.s);
		rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
		if (rc)
			return rc;
		t = &ck->tensors[idx];
		if (zf_pv_is(alias_src, ZF_PV_STR)) {
			if (!is_new)
				continue; /* listed as a param: DeepSpeed keeps the first name */
			t->kind = ZF_KIND_ALIAS;
			continue;
		}
		if (!is_new)
			continue;
		if (in_list(L->buffer_names, t->name)) {
			t->kind = ZF_KIND_BUFFER;
			rc = from_view(L, &L->model[0], mod->u.dict.vals[i], t, true, err);
		} else if (ck->stage != 3) {
			/* Stage 1 records no frozen params: `module` holds the
			 * only copy (in the training dtype). */
			t->kind = ZF_KIND_FROZEN;
			rc = from_view(L, &L->model[0], mod->u.dict.vals[i], t, true, err);
		} else {
			return bad(err, path,
				   "'%s' is in the model, but the checkpoint holds no data for it (not in param_shapes, frozen_param_shapes or buffer_names)",
				   t->name);
		}
		if (rc)
			return rc;
	}

	/* Buffers named but absent from `module` cannot be served. */
	if (zf_pv_is(L->buffer_names, ZF_PV_LIST) || zf_pv_is(L->buffer_names, ZF_PV_TUPLE)) {
		for (size_t i = 0; i < L->buffer_names->u.seq.n; i++) {
			const struct zf_pv *s = L->buffer_names->u.seq.items[i];

			if (zf_pv_is(s, ZF_PV_STR) && zf_strmap_get(&L->names, s->u.str.s) == ZF_STRMAP_NONE)
				return bad(err, path, "buffer '%s' is listed in buffer_names but missing from 'module'", s->u.str.s);
		}
	}

	/* Tied aliases not in `module` still exist in the model. */
	if (L->shared) {
		for (size_t i = 0; i < L->shared->u.dict.n; i++) {
			const struct zf_pv *k = L->shared->u.dict.keys[i];
			size_t idx;
			bool is_new;

			if (!zf_pv_is(k, ZF_PV_STR) || !zf_pv_is(L->shared->u.dict.vals[i], ZF_PV_STR))
				return bad(err, path, "shared_params holds a non-string");
			rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
			if (rc)
				return rc;
			if (is_new)
				ck->tensors[idx].kind = ZF_KIND_ALIAS;
		}
	}

	/* Resolve aliases to their sources (one level; chains are followed). */
	for (size_t i = 0; i < ck->n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		const char *src = t->name;
		size_t j = i, hops = 0;

		if (t->kind != ZF_KIND_ALIAS)
			continue;
		while (j != ZF_STRMAP_NONE && ck->tensors[j].kind == ZF_KIND_ALIAS && hops++ < 64) {
			const struct zf_pv *s = zf_pv_get(L->shared, src);

			src = s->u.str.s;
			j = zf_strmap_get(&L->names, src);
		}
		if (j == ZF_STRMAP_NONE || ck->tensors[j].kind == ZF_KIND_ALIAS)
			return bad(err, path, "tied parameter '%s' points at a parameter the checkpoint does not hold", t->name);
		t->alias_of = j;
	}
	return put_in_model_order(L, err);
}

static int find_train_dtype(struct loader *L)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *cfg = zf_pv_get(L->model[0].root, "ds_config");

	for (size_t i = 0; i < L->n_params; i++) {
		enum zf_dtype dt = module_dtype(L, L->params[i].name);

		if (zf_dtype_is_float(dt)) {
			ck->train_dtype = dt;
			return ZF_OK;
		}
	}
	ck->train_dtype = ZF_DT_F32;
	if (zf_pv_is(cfg, ZF_PV_DICT)) {
		const struct zf_pv *b = zf_pv_get(zf_pv_get(cfg, "bf16"), "enabled");
		const struct zf_pv *h = zf_pv_get(zf_pv_get(cfg, "fp16"), "enabled");

		if (zf_pv_is(b, ZF_PV_BOOL) && b->u.b)
			ck->train_dtype = ZF_DT_BF16;
		else if (zf_pv_is(h, ZF_PV_BOOL) && h->u.b)
			ck->train_dtype = ZF_DT_F16;
	}
	return ZF_OK;
}

static void finish_dtypes(struct loader *L)
{
	struct zf_ckpt *ck = L->ck;

	for (size_t i = 0; i < ck->n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		enum zf_dtype dt = module_dtype(L, t->name);

		if (t->kind == ZF_KIND_ALIAS) {
			const struct zf_tensor *s = &ck->tensors[t->alias_of];

			t->ndim = s->ndim;
			memcpy(t->shape, s->shape, sizeof(t->shape));
			t->numel = s->numel;
			t->src_dtype = s->src_dtype;
			t->model_dtype = s->model_dtype ? s->model_dtype : s->src_dtype;
			continue;
		}
		if (t->kind == ZF_KIND_PARAM)
			t->model_dtype = dt ? dt : ck->train_dtype;
		else
			t->model_dtype = dt ? dt : t->src_dtype;
	}
	for (size_t i = 0; i < ck->n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];

		if (t->kind == ZF_KIND_ALIAS)
			t->model_dtype = ck->tensors[t->alias_of].model_dtype;
		if (t->kind == ZF_KIND_PARAM || t->kind == ZF_KIND_FROZEN)
			ck->n_params += t->numel;
	}
}

static void loader_release(struct loader *L)
{
	for (uint32_t i = 0; L->model && i < L->files.n_model; i++) {
		zf_pickle_free(L->model[i].pk);
	}
	for (uint32_t i = 0; L->optim && i < L->files.world_size; i++) {
		zf_pickle_free(L->optim[i].pk);
	}
	if (L->ranks)
		for (uint32_t r = 0; r < L->files.world_size; r++)
			free(L->ranks[r].v);
	free(L->ranks);
	free(L->params);
	zf_strmap_release(&L->names);
}

/* Opened ptfiles are kept with the ckpt: they own the descriptors. */
struct zf_ckpt_private {
	struct zf_ptfile **pfs;
	size_t n;
};

int zf_ckpt_open(const char *path, const struct zf_ckpt_options *opts,
		 struct zf_ckpt **out, struct zf_error *err)
{
	struct loader L;
	struct zf_ckpt *ck;
	size_t n_files, max_names = 0;
	int rc;

	memset(&L, 0, sizeof(L));
	*out = NULL;
	ck = calloc(1, sizeof(*ck) + sizeof(struct zf_ckpt_private));
	if (!ck)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L.ck = ck;
	ck->path = strdup(path);
	rc = zf_ckpt_locate(path, opts ? opts->tag : NULL, &L.files, err);
	if (rc)
		goto out;
	ck->tag = strdup(L.files.tag);
	ck->tag_dir = strdup(L.files.tag_dir);
	ck->hf_dir = L.files.hf_dir ? strdup(L.files.hf_dir) : NULL;
	ck->layout = L.files.layout;
	ck->world_size = L.files.world_size;
	n_files = (size_t)L.files.n_model + L.files.world_size;
	ck->sources = calloc(n_files, sizeof(*ck->sources));
	L.model = calloc(L.files.n_model, sizeof(*L.model));
	L.optim = calloc(L.files.world_size, sizeof(*L.optim));
	if (!ck->path || !ck->tag || !ck->tag_dir || !ck->sources || !L.model || !L.optim) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_files; i++)
		ck->sources[i].fd = -1;
	for (uint32_t i = 0; i < L.files.n_model; i++)
		if ((rc = open_one(&L, L.files.model[i], &L.model[i], err)))
			goto out;
	for (uint32_t i = 0; i < L.files.world_size; i++)
		if ((rc = open_one(&L, L.files.optim[i], &L.optim[i], err)))
			goto out;

	rc = load_optim(&L, err);
	if (!rc)
		rc = load_model_meta(&L, err);
	if (rc)
		goto out;

	/* Every name comes from one of these; size the tables once. */
	max_names = count_items(L.module) + count_items(L.frozen_shapes) +
		    count_items(L.shared);
	{
		const struct zf_pv *ps = L.param_shapes;

		if (zf_pv_is(ps, ZF_PV_DICT))
			max_names += ps->u.dict.n;
		else
			for (size_t g = 0; g < ps->u.seq.n; g++)
				max_names += count_items(ps->u.seq.items[g]);
	}
	ck->tensors = calloc(max_names ? max_names : 1, sizeof(*ck->tensors));
	if (!ck->tensors || zf_strmap_init(&L.names, max_names)) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	L.cap_tensors = max_names;

	rc = collect_params(&L, err);
	if (!rc)
		rc = find_train_dtype(&L);
	if (!rc && ck->stage == 3)
		rc = zf_layout_zero3(ck, L.ranks, L.params, L.n_params, err);
	else if (!rc) {
		if (L.n_groups != L.ranks[0].n) {
			zf_fail(err, ZF_EFORMAT,
				"param_shapes has %u groups, but the optimizer files have %zu fp32 partitions per rank",
				L.n_groups, L.ranks[0].n);
			zf_error_where(err, model_path(&L, 0));
			rc = ZF_EFORMAT;
		} else {
			rc = zf_layout_zero12(ck, L.ranks, L.params, L.n_params, L.n_groups, err);
		}
	}
	if (!rc)
		rc = collect_tensors(&L, err);
	if (rc)
		goto out;
	finish_dtypes(&L);

	/* Keep the ptfiles (they own the descriptors); drop the pickles. */
	{
		struct zf_ckpt_private *priv = (struct zf_ckpt_private *)(ck + 1);

		priv->pfs = calloc(n_files, sizeof(*priv->pfs));
		if (!priv->pfs) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t i = 0; i < L.files.n_model; i++) {
			priv->pfs[priv->n++] = L.model[i].pf;
			L.model[i].pf = NULL;
		}
		for (uint32_t i = 0; i < L.files.world_size; i++) {
			priv->pfs[priv->n++] = L.optim[i].pf;
			L.optim[i].pf = NULL;
		}
	}
out:
	loader_release(&L);
	for (uint32_t i = 0; L.model && i < L.files.n_model; i++)
		zf_ptfile_close(L.model[i].pf);
	for (uint32_t i = 0; L.optim && i < L.files.world_size; i++)
		zf_ptfile_close(L.optim[i].pf);
	if (rc) {
		/* Descriptors belonged to the ptfiles just closed. */
		for (size_t i = 0; i < ck->n_sources; i++)
			ck->sources[i].fd = -1;
		zf_ckpt_free(ck);
	} else {
		*out = ck;
	}
	free(L.model);
	free(L.optim);
	zf_ckpt_files_release(&L.files);
	return rc;
}

void zf_ckpt_free(struct zf_ckpt *ck)
{
	struct zf_ckpt_private *priv;

	if (!ck)
		return;
	priv = (struct zf_ckpt_private *)(ck + 1);
	for (size_t i = 0; i < priv->n; i++)
		zf_ptfile_close(priv->pfs[i]);
	free(priv->pfs);
	for (size_t i = 0; i < ck->n_tensors; i++) {
		free(ck->tensors[i].name);
		free(ck->tensors[i].extents);
	}
	free(ck->tensors);
	for (size_t i = 0; i < ck->n_sources; i++)
		free(ck->sources[i].path);
	free(ck->sources);
	free(ck->path);
	free(ck->tag);
	free(ck->tag_dir);
	free(ck->hf_dir);
	free(ck->ds_version);
	free(ck);
}

size_t zf_ckpt_find(const struct zf_ckpt *ck, const char *name)
{
	for (size_t i = 0; i < ck->n_tensors; i++)
		if (!strcmp(ck->tensors[i].name, name))
			return i;
	return (size_t)-1;
}

const struct zf_tensor *zf_ckpt_data_of(const struct zf_ckpt *ck,
					const struct zf_tensor *t)
{
	return t->kind == ZF_KIND_ALIAS ? &ck->tensors[t->alias_of] : t;
}

const char *zf_kind_str(enum zf_tensor_kind kind)
{
	switch (kind) {
	case ZF_KIND_PARAM:
		return "param";
	case ZF_KIND_FROZEN:
		return "frozen";
	case ZF_KIND_BUFFER:
		return "buffer";
	case ZF_KIND_ALIAS:
		return "alias";
	}
	return "?";
}

const char *zf_layout_str(enum zf_layout layout)
{
	switch (layout) {
	case ZF_LAYOUT_DEEPSPEED:
		return "deepspeed";
	case ZF_LAYOUT_TRAINER:
		return "hf-trainer";
	case ZF_LAYOUT_TAGDIR:
		return "tag-folder";
	}
	return "?";
}

int zf_ckpt_check_crc(const struct zf_ckpt *ck, size_t source,
		      struct zf_error *err)
{
	const struct zf_ckpt_private *priv = (const struct zf_ckpt_private *)(ck + 1);

	if (source >= ck->n_sources)
		return zf_fail(err, ZF_EUSAGE, "no source file %zu (the checkpoint has %zu)",
			       source, ck->n_sources);
	/* The ptfiles were kept in source order; match by descriptor rather
	 * than trust that. */
	for (size_t i = 0; i < priv->n; i++) {
		size_t k = (source + i) % priv->n;

		if (zf_ptfile_fd(priv->pfs[k]) == ck->sources[source].fd)
			return zf_ptfile_check_crc(priv->pfs[k], err);
	}
	zf_fail(err, ZF_EUSAGE, "source file %zu has no open zip", source);
	zf_error_where(err, ck->sources[source].path);
	return ZF_EUSAGE;
}
