/* SPDX-License-Identifier: MIT */
/*
 * Builds the virtual Hugging Face directory of a checkpoint: which tensors
 * are served and under which names (tied aliases left out as
 * save_pretrained does, a wrapper prefix such as XTuner's "llm." removed),
 * in which dtype, split into which shards (huggingface_hub's greedy split
 * over state_dict order), each shard's generated header, the index, and
 * the config and tokenizer files beside them.
 *
 * Everything that can fail on bad input fails here, at build time; the
 * read path (reader.c) then only does arithmetic proven safe here.
 */
#include "hfdir_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "strmap.h"
#include "zerofs/convert.h"
#include "zerofs/safetensors.h"

/*
 * The dtype tensor t is served in when floats are served as dtype, or,
 * with --dtype auto (dtype ZF_DT_INVALID), in the dtype the model itself
 * held it in: a float buffer a bf16 run kept in fp32 (DeepSpeed >= 0.19.2
 * casts params only) stays fp32.
 */
static enum zf_dtype served_dtype(const struct zf_tensor *t, enum zf_dtype dtype)
{
	enum zf_dtype own = t->model_dtype ? t->model_dtype : t->src_dtype;

	/* Integer buffers keep their type; so does float64, which the
	 * conversion kernels do not handle (torch would convert it). */
	if (!dtype || !zf_dtype_is_float(own) || own == ZF_DT_F64 || t->src_dtype == ZF_DT_F64)
		return own;
	return dtype;
}

static bool has_config(const char *dir)
{
	char *p = dir ? zf_absolute_path(dir, "config.json") : NULL;
	struct stat st;
	bool yes = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);

	free(p);
	return yes;
}

static int choose_prefix(const struct zf_ckpt *ck, const char *want,
			 char **prefix, struct zf_error *err)
{
	const char *p = want ? want : "llm.";
	size_t n = strlen(p), served = 0, with = 0;

	for (size_t i = 0; i < zf_ckpt_info(ck)->n_tensors; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);

		if (t->kind == ZF_KIND_ALIAS)
			continue;
		served++;
		with += !strncmp(t->name, p, n);
	}
	if (!want) /* auto: XTuner's wrapper, only when it wraps everything */
		p = served && with == served ? "llm." : "";
	else if (n && with != served)
		return zf_fail(err, ZF_EUSAGE,
			       "--strip-prefix '%s': %zu of %zu tensors do not start with it",
			       want, served - with, served);
	*prefix = strdup(p);
	return *prefix ? ZF_OK : zf_fail(err, ZF_ENOMEM, "out of memory");
}

/* Frees what file f and its data hold. */
static void free_file(struct zf_vfile *f, struct zf_vfile_data *data)
{
	free((char *)f->name);
	free(data->header);
	for (size_t j = 0; j < f->n_tensors; j++)
		free((char *)f->tensors[j].name);
	free((struct zf_vtensor *)f->tensors);
	free(data->data);
	zf_access_release(&data->access);
	zf_source_close(f->src);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct zf_vfile_entry *)a)->f.name,
		      ((const struct zf_vfile_entry *)b)->f.name);
}

/*
 * File order. An empty tensor shares its offset with the next one: it
 * must sort first, so that tensor ends ascend too (the read path's binary
 * search depends on it).
 */
static int cmp_vtensor(const void *a, const void *b)
{
	const struct zf_vtensor *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Builds shard k: its tensors, header and size. */
static int build_shard(struct zf_vfile_entry *e, struct zf_vtensor *all, size_t n_all,
		       const uint32_t *shard_of, uint32_t k, struct zf_error *err)
{
	struct zf_vfile *f = &e->f;
	struct zf_st_tensor *st = NULL;
	struct zf_vtensor *ts;
	uint64_t *offs = NULL;
	size_t n = 0, j = 0;
	int rc;

	for (size_t i = 0; i < n_all; i++)
		n += shard_of[i] == k;
	ts = calloc(n ? n : 1, sizeof(*ts));
	f->tensors = ts;
	st = calloc(n ? n : 1, sizeof(*st));
	offs = calloc(n ? n : 1, sizeof(*offs));
	if (!ts || !st || !offs) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_all; i++) {
		if (shard_of[i] != k)
			continue;
		ts[j] = all[i];
		ts[j].name = strdup(all[i].name);
		if (!ts[j].name) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		st[j] = (struct zf_st_tensor){ ts[j].name, all[i].dtype,
					       all[i].src->ndim, all[i].src->shape,
					       all[i].nbytes };
		j++;
		f->n_tensors = j;
	}
	rc = zf_st_layout(st, n, "pt", &e->data.header, &f->header_len, offs,
			  &f->size, err);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++)
		ts[i].offset = offs[i];
	qsort(ts, n, sizeof(*ts), cmp_vtensor);
	f->kind = ZF_VF_SAFETENSORS;
out:
	free(st);
	free(offs);
	return rc;
}

int zf_hfdir_build(const struct zf_ckpt *ck,
		   const struct zf_hfdir_options *opts, struct zf_hfdir **out,
		   struct zf_error *err)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	struct zf_hfdir_options o = opts ? *opts : (struct zf_hfdir_options){ 0 };
	struct zf_vfiles files = { 0 };
	struct zf_left_outs lo = { 0 };
	struct zf_vtensor *vt = NULL;
	uint64_t *sizes = NULL;
	uint32_t *shard_of = NULL, n_shards = 0;
	const char **names = NULL;
	struct zf_strmap seen = { 0 };
	struct zf_hfdir *d;
	size_t nt = ci->n_tensors, n = 0, plen;
	const char *meta_dir;
	int rc;

	*out = NULL;
	if (ci->incomplete && !o.allow_incomplete)
		return zf_fail_at(err, ZF_EUNSUPPORTED, ci->incomplete_where, "%s", ci->incomplete);
	d = calloc(1, sizeof(*d));
	if (!d)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	d->info.ck = ck;
	d->info.dtype = o.dtype ? o.dtype : ci->train_dtype;
	if (d->info.dtype != ZF_DT_F32 && d->info.dtype != ZF_DT_BF16 &&
	    d->info.dtype != ZF_DT_F16) {
		rc = zf_fail(err, ZF_EUSAGE, "cannot serve dtype '%s': choose fp32, bf16 or fp16",
			     zf_dtype_torch_name(d->info.dtype));
		goto out;
	}
	if (!o.max_shard_size)
		o.max_shard_size = ZF_DEFAULT_SHARD_SIZE;
	rc = choose_prefix(ck, o.strip_prefix, &d->prefix, err);
	if (rc)
		goto out;
	plen = strlen(d->prefix);

	vt = calloc(nt ? nt : 1, sizeof(*vt));
	sizes = calloc(nt ? nt : 1, sizeof(*sizes));
	shard_of = calloc(nt ? nt : 1, sizeof(*shard_of));
	names = calloc(nt ? nt : 1, sizeof(*names));
	if (!vt || !sizes || !shard_of || !names || zf_strmap_init(&seen, nt)) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nt; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);

		if (t->kind == ZF_KIND_ALIAS)
			continue;
		vt[n].name = t->name + plen;
		vt[n].tensor = i;
		vt[n].src = t;
		vt[n].dtype = served_dtype(t, o.dtype);
		vt[n].nbytes = t->numel * zf_dtype_size(vt[n].dtype);
		if (!vt[n].name[0]) {
			rc = zf_fail(err, ZF_EUSAGE, "stripping '%s' leaves tensor '%s' without a name",
				     d->prefix, t->name);
			goto out;
		}
		if (vt[n].dtype != t->src_dtype && !zf_convert_supported(vt[n].dtype, t->src_dtype)) {
			rc = zf_fail(err, ZF_EUNSUPPORTED, "cannot serve '%s' (%s) as %s",
				     t->name, zf_dtype_torch_name(t->src_dtype),
				     zf_dtype_torch_name(vt[n].dtype));
			goto out;
		}
		if (zf_strmap_put(&seen, vt[n].name, n)) {
			rc = zf_fail(err, ZF_EFORMAT, "two tensors would be served as '%s'",
				     vt[n].name);
			goto out;
		}
		sizes[n] = vt[n].nbytes;
		names[n] = vt[n].name;
		d->info.tensor_bytes += vt[n].nbytes;
		n++;
	}
	zf_st_plan_shards(sizes, n, o.max_shard_size, shard_of, &n_shards);
	if (!n_shards)
		n_shards = 1; /* an empty model still gets its (empty) file */
	d->info.n_shards = n_shards;
	for (uint32_t k = 0; k < n_shards; k++) {
		char name[64];
		struct zf_vfile_entry *e;

		zf_st_shard_name(k + 1, n_shards, name, sizeof(name));
		e = zf_vfiles_add(&files, name);
		if (!e) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		rc = build_shard(e, vt, n, shard_of, k, err);
		if (rc)
			goto out;
	}
	if (n_shards > 1) {
		struct zf_vfile_entry *e = zf_vfiles_add(&files, "model.safetensors.index.json");
		size_t len;

		if (!e) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		rc = zf_st_index_json(names, shard_of, n, n_shards, d->info.tensor_bytes,
				      &e->data.data, &len, err);
		if (rc)
			goto out;
		e->f.kind = ZF_VF_MEMORY;
		e->f.size = len;
	}

	/* The config and tokenizer beside the checkpoint, else those of
	 * the --base model it was completed from. */
	meta_dir = o.config_dir ? o.config_dir : ci->hf_dir;
	if (!o.config_dir && ci->base_dir && !has_config(ci->hf_dir))
		meta_dir = ci->base_dir;
	if (meta_dir) {
		bool found;

		rc = zf_hf_add_metadata(&files, &lo, meta_dir, o.config_dir != NULL,
					d->info.dtype, &found, err);
		if (rc)
			goto out;
		if (found && !(d->config_source = strdup(meta_dir))) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
	}

	d->info.mtime = ci->mtime;
	qsort(files.v, files.n, sizeof(*files.v), cmp_entry);
	d->files = calloc(files.n ? files.n : 1, sizeof(*d->files));
	d->data = calloc(files.n ? files.n : 1, sizeof(*d->data));
	if (!d->files || !d->data) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < files.n; i++) {
		struct zf_vfile *f = &files.v[i].f;

		f->ino = 2 + i;
		if (f->kind != ZF_VF_PASSTHROUGH && !f->mtime.tv_sec)
			f->mtime = d->info.mtime;
		d->info.total_bytes += f->size;
		d->files[i] = *f;
		d->data[i] = files.v[i].data;
	}
	d->info.n_files = files.n;
	d->info.prefix = d->prefix;
	d->info.config_source = d->config_source;
	files.n = 0;
	d->left_out = lo.v;
	d->info.left_out = lo.v;
	d->info.n_left_out = lo.n;
	lo.v = NULL;
	lo.n = 0;
	rc = zf_hfdir_set_access(d, err);
	if (rc)
		goto out;
	*out = d;
	d = NULL;
out:
	for (size_t i = 0; i < files.n; i++)
		free_file(&files.v[i].f, &files.v[i].data);
	free(files.v);
	for (size_t i = 0; i < lo.n; i++) {
		free((char *)lo.v[i].path);
		free((char *)lo.v[i].why);
	}
	free(lo.v);
	zf_hfdir_free(d);
	zf_strmap_release(&seen);
	free(vt);
	free(sizes);
	free(shard_of);
	free(names);
	return rc;
}

void zf_hfdir_free(struct zf_hfdir *d)
{
	if (!d)
		return;
	for (size_t i = 0; d->files && i < d->info.n_files; i++)
		free_file(&d->files[i], &d->data[i]);
	free(d->files);
	free(d->data);
	free(d->prefix);
	free(d->config_source);
	for (size_t i = 0; i < d->info.n_left_out; i++) {
		free((char *)d->left_out[i].path);
		free((char *)d->left_out[i].why);
	}
	free(d->left_out);
	zf_access_release(&d->ck_access);
	zf_access_release(&d->dir_access);
	free(d);
}

const struct zf_hfdir_info *zf_hfdir_info(const struct zf_hfdir *d)
{
	return &d->info;
}

const struct zf_vfile *zf_hfdir_file(const struct zf_hfdir *d, size_t i)
{
	return i < d->info.n_files ? &d->files[i] : NULL;
}

const struct zf_vfile *zf_hfdir_lookup(const struct zf_hfdir *d,
				       const char *name)
{
	size_t lo = 0, hi = d->info.n_files;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, d->files[mid].name);

		if (!c)
			return &d->files[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}
