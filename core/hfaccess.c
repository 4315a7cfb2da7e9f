/* SPDX-License-Identifier: MIT */
/*
 * Who may read each file of the virtual directory, and the directory
 * itself (access.h): the rules of what each is made of.
 *
 *   shards   every file of the checkpoint: a shard's tensor bytes come
 *            from some rank files, but where they lie (and the header's
 *            names and shapes) is learned from all of them, ZeRO-3's
 *            names from every rank's model states, ZeRO-1/2's placement
 *            from every rank's partition sizes;
 *   index    the same (it lists every shard's tensors);
 *   config.json and passthrough files
 *            their source file (the dtype written into config.json is no
 *            secret: the mount shows it in its attributes);
 *   the folder
 *            the checkpoint folder named and its tag folder (listing and
 *            searching them), and every folder above them.
 *
 * Every rule includes the folders on the way to the file, so a 0644 file
 * in a 0700 home folder is not readable by others through the mount
 * either. A later place kind that reads other files (a --base model's
 * safetensors) adds those files' rules to the shards that use them.
 */
#include "hfdir_i.h"

int zf_hfdir_set_access(struct zf_hfdir *d, struct zf_error *err)
{
	const struct zf_ckpt *ck = d->info.ck;
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	int rc;

	for (size_t i = 0; i < ci->n_files; i++) {
		rc = zf_access_add_source(&d->ck_access, zf_ckpt_file(ck, i), err);
		if (rc)
			return rc;
	}
	rc = zf_access_add_folder(&d->dir_access, ci->path, err);
	if (!rc)
		rc = zf_access_add_folder(&d->dir_access, ci->tag_dir, err);
	if (rc)
		return rc;
	d->info.dir_access = d->dir_access.v;
	d->info.n_dir_access = d->dir_access.n;

	for (size_t i = 0; i < d->info.n_files; i++) {
		struct zf_vfile *f = &d->files[i];
		struct zf_access_set *own = &d->data[i].access;

		if (f->src) {
			rc = zf_access_add_source(own, f->src, err);
			if (rc)
				return rc;
			f->access = own->v;
			f->n_access = own->n;
		} else {
			f->access = d->ck_access.v;
			f->n_access = d->ck_access.n;
		}
	}
	return ZF_OK;
}
