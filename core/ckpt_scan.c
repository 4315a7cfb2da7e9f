/* SPDX-License-Identifier: MIT */
/*
 * The rank files of a tag folder, from their names alone (no file is
 * parsed here): every rank's optimizer states file and the model states
 * file(s), ordered by rank number (rank 10 after rank 9), every rank from
 * 0 to N-1 present. Mixture-of-experts, pipeline and tensor-parallel
 * checkpoints are told apart by their file names and refused, naming which
 * they are.
 */
#include "ckpt_scan_i.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

#define MAX_RANKS 65536

char *zf_ckpt_path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (!p)
		return NULL;
	memcpy(p, a, la);
	while (la > 1 && p[la - 1] == '/')
		la--;
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

/* Parses a decimal number of at most 9 digits at *s, advancing it. */
static bool parse_num(const char **s, uint32_t *v)
{
	const char *p = *s;
	uint32_t n = 0;
	int digits = 0;

	while (*p >= '0' && *p <= '9' && digits < 9) {
		n = n * 10 + (uint32_t)(*p - '0');
		p++;
		digits++;
	}
	if (!digits || (*p >= '0' && *p <= '9'))
		return false;
	*s = p;
	*v = n;
	return true;
}

static bool eat(const char **s, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*s, lit, n))
		return false;
	*s += n;
	return true;
}

enum rank_file {
	RF_NONE,
	RF_OPTIM,	/* [bf16_]zero_pp_rank_<r>_mp_rank_<m>_optim_states.pt */
	RF_MODEL_RANK,	/* zero_pp_rank_<r>_mp_rank_<m>_model_states.pt */
	RF_MODEL_MP,	/* mp_rank_<m>_model_states.pt */
	RF_MOE_EXPERT,	/* [layer_<l>_]expert_<e>_mp_rank_<m>_model_states.pt */
	RF_MOE_OPTIM,	/* expp_rank_<r>_mp_rank_<m>_optim_states.pt */
	RF_PIPE_LAYER,	/* layer_<l>-[model_<m>-]model_states.pt */
};

/* "expert_<e>_mp_rank_<m>_model_states.pt", the tail of an MoE expert
 * file's name (older releases wrote it without the "layer_<l>_" head). */
static bool is_expert_tail(const char *s, uint32_t *mp)
{
	uint32_t e;

	return eat(&s, "expert_") && parse_num(&s, &e) && eat(&s, "_mp_rank_") &&
	       parse_num(&s, mp) && !strcmp(s, "_model_states.pt");
}

/* After "layer_": an MoE expert file, a PipelineModule layer file (its
 * layer index in *l), or neither. */
static enum rank_file classify_layer(const char *s, uint32_t *l, uint32_t *mp)
{
	if (!parse_num(&s, l))
		return RF_NONE;
	if (eat(&s, "_"))
		return is_expert_tail(s, mp) ? RF_MOE_EXPERT : RF_NONE;
	if (!eat(&s, "-"))
		return RF_NONE;
	if (!strcmp(s, "model_states.pt"))
		return RF_PIPE_LAYER;
	/* A pipeline grid with a tensor-parallel axis adds "model_<m>-". */
	if (eat(&s, "model_") && parse_num(&s, mp) && !strcmp(s, "-model_states.pt"))
		return RF_PIPE_LAYER;
	return RF_NONE;
}

/*
 * Classifies a file name of a tag folder by the patterns DeepSpeed's engine
 * (_get_ckpt_name, _get_zero_ckpt_name, _get_expert_ckpt_name,
 * _get_optimizer_ckpt_name) and PipelineModule.ckpt_layer_path() write,
 * v0.9 to v0.19. *mp is the model-parallel rank the name carries: tensor
 * parallelism, or the pipeline stage (a pipeline grid numbers its stages
 * as model-parallel ranks in mp_rank_<m>). *rank is the data-parallel rank,
 * or a pipeline layer file's layer index.
 */
static enum rank_file classify(const char *name, uint32_t *rank, uint32_t *mp)
{
	const char *s = name;
	bool prefixed = eat(&s, "bf16_") || eat(&s, "fp16_");

	*rank = 0;
	*mp = 0;
	if (!prefixed) {
		if (eat(&s, "mp_rank_"))
			return parse_num(&s, mp) && !strcmp(s, "_model_states.pt")
				       ? RF_MODEL_MP
				       : RF_NONE;
		if (eat(&s, "expp_rank_"))
			return parse_num(&s, rank) && eat(&s, "_mp_rank_") &&
					       parse_num(&s, mp) &&
					       !strcmp(s, "_optim_states.pt")
				       ? RF_MOE_OPTIM
				       : RF_NONE;
		if (eat(&s, "layer_"))
			return classify_layer(s, rank, mp);
		if (is_expert_tail(s, mp))
			return RF_MOE_EXPERT;
	}
	if (!eat(&s, "zero_pp_rank_") || !parse_num(&s, rank) ||
	    !eat(&s, "_mp_rank_") || !parse_num(&s, mp))
		return RF_NONE;
	if (!strcmp(s, "_optim_states.pt"))
		return RF_OPTIM;
	if (!prefixed && !strcmp(s, "_model_states.pt"))
		return RF_MODEL_RANK;
	return RF_NONE;
}

struct found {
	char **names; /* indexed by rank, NULL when missing */
	size_t cap;
	uint32_t max_rank_plus1;
};

static int found_put(struct found *f, uint32_t rank, const char *name,
		     const char *dir, struct zf_error *err)
{
	if (rank >= MAX_RANKS) {
		zf_fail(err, ZF_EUNSUPPORTED, "rank %u in '%s' is beyond %u ranks",
			rank, name, MAX_RANKS);
		zf_error_where(err, dir);
		return ZF_EUNSUPPORTED;
	}
	if (rank >= f->cap) {
		size_t was = f->cap;

		if (zf_grow(&f->names, &f->cap, (size_t)rank + 1, 16))
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		memset(f->names + was, 0, (f->cap - was) * sizeof(*f->names));
	}
	if (f->names[rank]) {
		zf_fail(err, ZF_EFORMAT,
			"two files for rank %u: '%s' and '%s'", rank,
			f->names[rank], name);
		zf_error_where(err, dir);
		return ZF_EFORMAT;
	}
	f->names[rank] = strdup(name);
	if (!f->names[rank])
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (rank + 1 > f->max_rank_plus1)
		f->max_rank_plus1 = rank + 1;
	return ZF_OK;
}

static void found_release(struct found *f)
{
	for (size_t i = 0; i < f->cap; i++)
		free(f->names[i]);
	free(f->names);
	memset(f, 0, sizeof(*f));
}

/*
 * The name rank `rank`'s file would have, following the pattern of
 * `example` (another rank's file of the same kind): the digits after
 * "zero_pp_rank_" are replaced.
 */
void zf_rank_file_name(const char *example, uint32_t rank, char *buf,
		       size_t size)
{
	const char *p = strstr(example, "zero_pp_rank_");
	const char *q;

	if (!p) {
		snprintf(buf, size, "rank %u", rank);
		return;
	}
	p += strlen("zero_pp_rank_");
	for (q = p; *q >= '0' && *q <= '9'; q++)
		;
	snprintf(buf, size, "%.*s%u%s", (int)(p - example), example, rank, q);
}

/* Checks ranks 0..n-1 are all present; names the missing files. */
static int found_complete(const struct found *f, uint32_t n, const char *kind,
			  const char *dir, struct zf_error *err)
{
	char names[512] = "";
	const char *example = NULL;
	uint32_t missing = 0;
	size_t used = 0;

	for (uint32_t r = 0; r < n && r < f->cap && !example; r++)
		example = f->names[r];
	for (uint32_t r = 0; r < n; r++) {
		char one[256];

		if (r < f->cap && f->names[r])
			continue;
		if (missing++ < 4 && example) {
			zf_rank_file_name(example, r, one, sizeof(one));
			used += (size_t)snprintf(names + used, sizeof(names) - used,
						 "%s'%s'", used ? ", " : "", one);
		}
	}
	if (!missing)
		return ZF_OK;
	zf_fail(err, ZF_ENOTFOUND, "missing %u of %u %s files: %s%s", missing,
		n, kind, names, missing > 4 ? ", ..." : "");
	zf_error_where(err, dir);
	return ZF_ENOTFOUND;
}

/*
 * The files of a tag folder that make it a kind of checkpoint zerofs does
 * not serve, told apart by their names: DeepSpeed's MoE expert files,
 * PipelineModule layer files, and files of model-parallel ranks above 0
 * (tensor parallelism, or pipeline stages). The lowest name of each kind
 * is kept for messages, so that they do not depend on readdir order.
 */
struct others {
	uint32_t n_expert, n_expert_optim, n_layer;
	uint32_t mp_max;	/* highest mp_rank_<m> of any file */
	uint32_t layer_mp_max;	/* highest model_<m> of a layer file */
	char expert[256], expert_optim[256], layer[256], mp_file[256];
};

static void keep_lowest(char *slot, size_t size, const char *name)
{
	if (!slot[0] || strcmp(name, slot) < 0)
		snprintf(slot, size, "%s", name);
}

static void others_add(struct others *o, enum rank_file kind, uint32_t mp,
		       const char *name)
{
	switch (kind) {
	case RF_MOE_EXPERT:
		o->n_expert++;
		keep_lowest(o->expert, sizeof(o->expert), name);
		break;
	case RF_MOE_OPTIM:
		o->n_expert_optim++;
		keep_lowest(o->expert_optim, sizeof(o->expert_optim), name);
		break;
	case RF_PIPE_LAYER:
		o->n_layer++;
		keep_lowest(o->layer, sizeof(o->layer), name);
		if (mp > o->layer_mp_max)
			o->layer_mp_max = mp;
		return; /* its model_<m> is counted apart */
	default:
		break;
	}
	if (mp > o->mp_max)
		o->mp_max = mp;
	if (mp)
		keep_lowest(o->mp_file, sizeof(o->mp_file), name);
}

static const char *plural(uint32_t n)
{
	return n == 1 ? "" : "s";
}

/*
 * Refuses what zerofs does not serve, naming it; ZF_OK when none of it is
 * there. MoE first: an MoE run may also be pipelined or tensor-parallel,
 * and its expert files are what zerofs lacks above all. A pipeline's
 * layer files tell its stages (mp_rank_<m> files) from tensor-parallel
 * ranks, which a pipeline grid marks "model_<m>" in its layer files. A
 * one-stage pipeline (layer files, mp_rank_00 only) is served.
 */
static int refuse_others(const struct others *o, const char *dir,
			 struct zf_error *err)
{
	char what[768];

	if (o->n_expert || o->n_expert_optim) {
		if (o->n_expert && o->n_expert_optim)
			snprintf(what, sizeof(what),
				 "%u expert parameter file%s ('%s', ...) and %u expert optimizer file%s",
				 o->n_expert, plural(o->n_expert), o->expert,
				 o->n_expert_optim, plural(o->n_expert_optim));
		else if (o->n_expert)
			snprintf(what, sizeof(what), "%u expert parameter file%s ('%s', ...)",
				 o->n_expert, plural(o->n_expert), o->expert);
		else
			snprintf(what, sizeof(what), "%u expert optimizer file%s ('%s', ...)",
				 o->n_expert_optim, plural(o->n_expert_optim),
				 o->expert_optim);
		zf_fail(err, ZF_EUNSUPPORTED,
			"mixture-of-experts checkpoint: %s; zerofs does not serve mixture-of-experts (MoE) checkpoints",
			what);
	} else if (o->n_layer && o->layer_mp_max) {
		zf_fail(err, ZF_EUNSUPPORTED,
			"pipeline checkpoint with tensor parallelism: layer files of %u tensor-parallel ranks ('%s', ...); zerofs does not serve tensor-parallel checkpoints",
			o->layer_mp_max + 1, o->layer);
	} else if (o->n_layer && o->mp_max) {
		zf_fail(err, ZF_EUNSUPPORTED,
			"pipeline-parallel checkpoint with %u stages (mp_rank_00 to mp_rank_%02u, %u layer file%s); zerofs does not serve multi-stage pipelines",
			o->mp_max + 1, o->mp_max, o->n_layer, plural(o->n_layer));
	} else if (o->mp_max) {
		zf_fail(err, ZF_EUNSUPPORTED,
			"tensor-parallel checkpoint: files of model-parallel ranks up to %u ('%s', ...); zerofs does not serve tensor-parallel checkpoints (mp_rank_00 only)",
			o->mp_max, o->mp_file);
	} else {
		return ZF_OK;
	}
	zf_error_where(err, dir);
	return ZF_EUNSUPPORTED;
}

/* A one-stage pipeline's layer files, in layer order (a functional layer
 * has none: indexes may skip). */
static int take_layers(const struct found *l, const char *dir,
		       struct zf_ckpt_files *out, struct zf_error *err)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < l->max_rank_plus1; i++)
		n += l->names[i] != NULL;
	if (!n)
		return ZF_OK;
	out->layers = calloc(n, sizeof(*out->layers));
	out->layer_idx = calloc(n, sizeof(*out->layer_idx));
	if (!out->layers || !out->layer_idx)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < l->max_rank_plus1; i++) {
		if (!l->names[i])
			continue;
		out->layer_idx[out->n_layers] = i;
		out->layers[out->n_layers] = zf_ckpt_path_join(dir, l->names[i]);
		if (!out->layers[out->n_layers++])
			return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	return ZF_OK;
}

int zf_ckpt_scan_tag_dir(const char *dir, struct zf_ckpt_files *out,
			 struct zf_error *err)
{
	struct found optim = { 0 }, model = { 0 }, layers = { 0 };
	struct others others = { 0 };
	char *model_mp = NULL;
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = ZF_OK;

	if (!d) {
		zf_fail(err, errno == ENOENT ? ZF_ENOTFOUND : ZF_EIO,
			"cannot open folder: %s", strerror(errno));
		zf_error_where(err, dir);
		return err ? err->status : ZF_EIO;
	}
	while ((de = readdir(d))) {
		uint32_t rank, mp;
		enum rank_file kind = classify(de->d_name, &rank, &mp);

		if (kind == RF_NONE)
			continue;
		others_add(&others, kind, mp, de->d_name);
		if (mp != 0)
			continue;
		if (kind == RF_OPTIM)
			rc = found_put(&optim, rank, de->d_name, dir, err);
		else if (kind == RF_PIPE_LAYER)
			rc = found_put(&layers, rank, de->d_name, dir, err);
		else if (kind == RF_MODEL_RANK)
			rc = found_put(&model, rank, de->d_name, dir, err);
		else if (kind == RF_MODEL_MP && !model_mp &&
			 !(model_mp = strdup(de->d_name)))
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		if (rc)
			goto out;
	}
	rc = refuse_others(&others, dir, err);
	if (!rc)
		rc = take_layers(&layers, dir, out, err);
	if (rc)
		goto out;
	if (!optim.max_rank_plus1 && model_mp && !model.max_rank_plus1) {
		/* Without ZeRO (stage 0) the model states file is all there
		 * is; the loader says so if it is a ZeRO run's. */
		out->world_size = 0;
		out->n_model = 1;
		out->model = calloc(1, sizeof(char *));
		if (!out->model || !(out->model[0] = zf_ckpt_path_join(dir, model_mp)))
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	if (!optim.max_rank_plus1) {
		if (model.max_rank_plus1 || model_mp)
			zf_fail(err, ZF_ENOTFOUND,
				"no '*_optim_states.pt' files beside the model states: the fp32 weights live there; was the checkpoint saved without optimizer state, or only partly copied?");
		else
			zf_fail(err, ZF_ENOTFOUND,
				"no DeepSpeed checkpoint files ('*_model_states.pt', '*_optim_states.pt') in this folder");
		zf_error_where(err, dir);
		rc = err ? err->status : ZF_ENOTFOUND;
		goto out;
	}
	/* ZeRO-3 pairs a model and an optimizer file per rank: a rank with
	 * one but not the other beyond the other kind's last rank is an extra
	 * file (another run, or a copy in progress), not a missing one. */
	if (model.max_rank_plus1 && model.max_rank_plus1 != optim.max_rank_plus1) {
		bool more_optim = optim.max_rank_plus1 > model.max_rank_plus1;
		const struct found *big = more_optim ? &optim : &model;
		uint32_t r = big->max_rank_plus1 - 1;

		zf_fail(err, ZF_EFORMAT,
			"rank %u has '%s' but no %s states file, while ranks below %u have both: an extra file from another run, or a partial copy",
			r, big->names[r], more_optim ? "model" : "optimizer",
			more_optim ? model.max_rank_plus1 : optim.max_rank_plus1);
		zf_error_where(err, dir);
		rc = ZF_EFORMAT;
		goto out;
	}
	/* The highest rank seen of either kind sets the world size, so that
	 * a missing last rank is named rather than shrinking the world. */
	out->world_size = optim.max_rank_plus1;
	if (model.max_rank_plus1 > out->world_size)
		out->world_size = model.max_rank_plus1;
	rc = found_complete(&optim, out->world_size, "optimizer states", dir, err);
	if (rc)
		goto out;
	if (model.max_rank_plus1) {
		/* ZeRO-3: one model file per rank. */
		rc = found_complete(&model, out->world_size, "model states", dir, err);
		if (rc)
			goto out;
		out->n_model = out->world_size;
	} else if (model_mp) {
		out->n_model = 1;
	} else {
		zf_fail(err, ZF_ENOTFOUND,
			"no '*_model_states.pt' file: it holds the parameter names and shapes");
		zf_error_where(err, dir);
		rc = ZF_ENOTFOUND;
		goto out;
	}
	out->optim = calloc(out->world_size, sizeof(char *));
	out->model = calloc(out->n_model, sizeof(char *));
	if (!out->optim || !out->model) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t r = 0; r < out->world_size; r++)
		if (!(out->optim[r] = zf_ckpt_path_join(dir, optim.names[r]))) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
	for (uint32_t r = 0; r < out->n_model; r++)
		if (!(out->model[r] = zf_ckpt_path_join(dir, model_mp && !model.max_rank_plus1 ? model_mp : model.names[r]))) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
out:
	closedir(d);
	found_release(&optim);
	found_release(&model);
	found_release(&layers);
	free(model_mp);
	return rc;
}


bool zf_ckpt_has_rank_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool yes = false;

	if (!d)
		return false;
	while (!yes && (de = readdir(d))) {
		uint32_t r, mp;

		yes = classify(de->d_name, &r, &mp) != RF_NONE;
	}
	closedir(d);
	return yes;
}
