/* SPDX-License-Identifier: MIT */
/*
 * zf_vfile_digest(): a name for the exact bytes a file of the directory
 * serves, computed without reading them, so that export can tell a file
 * written earlier from the same inputs (and keep it) from one that must
 * be written again.
 *
 * The bytes of a file are a function of: zerofs's output rules
 * (ZF_OUTPUT_VERSION), the file's name and size, and
 *   shards       the generated header (every name, dtype, shape and
 *                offset), each tensor's source tensor and dtypes (the
 *                conversion), and the identity of every checkpoint file
 *                (device, inode, size, modification and change times:
 *                what the source layer checks on every read);
 *   text files   their bytes (the index, config.json);
 *   passthrough  the identity of the file copied.
 * Any change to a source's identity changes the digest: a resumed export
 * never keeps bytes of another save.
 */
#include "hfdir_i.h"

#include <string.h>
#include <xxhash.h>

static void put(XXH3_state_t *h, const void *p, size_t n)
{
	XXH3_128bits_update(h, p, n);
}

static void put_u64(XXH3_state_t *h, uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	put(h, b, 8);
}

static void put_str(XXH3_state_t *h, const char *s)
{
	size_t n = strlen(s);

	put_u64(h, n);
	put(h, s, n);
}

static void put_id(XXH3_state_t *h, const struct zf_source *src)
{
	const struct zf_source_id *id = zf_source_id(src);

	put_u64(h, (uint64_t)id->dev);
	put_u64(h, (uint64_t)id->ino);
	put_u64(h, id->size);
	put_u64(h, (uint64_t)id->mtime.tv_sec);
	put_u64(h, (uint64_t)id->mtime.tv_nsec);
	put_u64(h, (uint64_t)id->ctime.tv_sec);
	put_u64(h, (uint64_t)id->ctime.tv_nsec);
}

int zf_vfile_digest(const struct zf_hfdir *d, const struct zf_vfile *f,
		    unsigned char out[16], struct zf_error *err)
{
	const struct zf_vfile_data *data = &d->data[f - d->files];
	const struct zf_ckpt *ck = d->info.ck;
	XXH3_state_t *h = XXH3_createState();
	XXH128_canonical_t c;

	if (!h)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	XXH3_128bits_reset(h);
	put_str(h, "zerofs served bytes");
	put_u64(h, ZF_OUTPUT_VERSION);
	put_str(h, f->name);
	put_u64(h, (uint64_t)f->kind);
	put_u64(h, f->size);
	switch (f->kind) {
	case ZF_VF_SAFETENSORS:
		put(h, data->header, f->header_len);
		put_u64(h, f->n_tensors);
		for (size_t i = 0; i < f->n_tensors; i++) {
			const struct zf_vtensor *t = &f->tensors[i];

			put_u64(h, t->tensor);
			put_u64(h, (uint64_t)t->dtype);
			put_u64(h, (uint64_t)t->src->src_dtype);
			put_u64(h, t->offset);
			put_u64(h, t->nbytes);
		}
		put_u64(h, zf_ckpt_info(ck)->n_files);
		for (size_t i = 0; i < zf_ckpt_info(ck)->n_files; i++)
			put_id(h, zf_ckpt_file(ck, i));
		break;
	case ZF_VF_MEMORY:
		put(h, data->data, (size_t)f->size);
		break;
	case ZF_VF_PASSTHROUGH:
		put_id(h, f->src);
		break;
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h));
	XXH3_freeState(h);
	memcpy(out, c.digest, 16);
	return ZF_OK;
}
