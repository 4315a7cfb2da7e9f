/* SPDX-License-Identifier: MIT */
/*
 * Private to the container implementations (container.c and one file per
 * format): the layout of a container and the operations a format
 * provides. A new format is a new file with its own ops table and a test
 * in container.c's sniff.
 */
#ifndef ZEROFS_CONTAINER_I_H
#define ZEROFS_CONTAINER_I_H

#include "zerofs/container.h"
#include "zerofs/ptlegacy.h"

struct zf_container_ops {
	enum zf_container_kind kind;
	/* Opens c->src into c (c->u); fills c->pkl_off and c->pkl_len. */
	int (*open)(struct zf_container *c, struct zf_error *err);
	/* Reads the main pickle into memory: *data (*len bytes) stays valid
	 * until drop_pickle(). */
	int (*load_pickle)(struct zf_container *c, const unsigned char **data,
			   size_t *len, struct zf_error *err);
	void (*drop_pickle)(struct zf_container *c);
	bool (*pickle_id)(const struct zf_container *c, uint64_t id[2]);
	int (*bind)(struct zf_container *c, const struct zf_pickle *pk,
		    struct zf_error *err);
	int (*record)(const struct zf_container *c, const char *key,
		      struct zf_record *rec, struct zf_error *err);
	int (*digest)(const struct zf_container *c, uint64_t digest[2],
		      struct zf_error *err);
	int (*same_head)(const struct zf_container *tmpl, struct zf_source *src,
			 bool *same, struct zf_error *err);
	int (*cross_check)(const struct zf_container *c, struct zf_error *err);
	int (*check_records)(const struct zf_container *c, struct zf_error *err);
	void (*close)(struct zf_container *c);
};

struct zf_container {
	const struct zf_container_ops *ops;
	struct zf_source *src;	/* borrowed, or owned when owns_src */
	bool owns_src;
	bool bound;		/* zf_container_bind() succeeded */
	uint64_t pkl_off;	/* the main pickle: absolute offset */
	uint64_t pkl_len;	/* bytes */
	unsigned char *pkl_buf; /* the main pickle while parsed (legacy) */
	union {
		struct zf_ptfile *zip;
		struct zf_ptlegacy *legacy;
	} u;
};

extern const struct zf_container_ops zf_container_zip_ops;
extern const struct zf_container_ops zf_container_legacy_ops;

/*
 * Bytes per element of storage st: its dtype's size, or for a class
 * zerofs serves no dtype of (quantized storages), the size torch gives
 * the class; 0 when neither is known.
 */
size_t zf_container_element_size(const struct zf_pv_storage *st);

#endif /* ZEROFS_CONTAINER_I_H */
