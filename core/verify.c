/* SPDX-License-Identifier: MIT */
/*
 * zf_verify(): the checks of verify.h.
 *
 * The metadata checks (sources, extents, overlap) run first, on the
 * calling thread; they read no data. The data checks are a list of work
 * items, one per virtual file (read it once through zf_vfile_read, the
 * FUSE read engine, feeding the file's digest, the current tensor's digest
 * and its NaN/Inf count from the same buffer) and one per source file
 * (CRC check), handed out largest first to the worker threads. Each item
 * writes only its own result slots, so the workers share nothing but the
 * item counter and the progress count; the report is assembled afterwards
 * in a fixed order, whatever the thread timing.
 *
 * Problems are findings, not failures: everything is checked and every
 * problem listed (up to ZF_VERIFY_MAX_LISTED per check, the rest
 * counted). Only running out of memory stops verify.
 */
#include "zerofs/verify.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ckd.h"
#include "grow.h"
#include "workers.h"

/* Bytes read per step of a data item, per thread. */
#define READ_BYTES ((size_t)4 << 20)

#define PROGRESS_NS 100000000L

/* --- the report ------------------------------------------------------- */

struct builder {
	struct zf_verify_report *r;
	size_t cap;
	size_t listed; /* findings of the current check with !ok */
	size_t extra;  /* problems of the current check beyond the listed */
	int rc;	       /* ZF_ENOMEM once an allocation failed */
};

static void __attribute__((format(printf, 5, 6)))
add(struct builder *b, const char *check, bool ok, const char *where,
    const char *fmt, ...)
{
	struct zf_verify_finding *f;
	va_list ap;
	char msg[1024];

	if (!ok) {
		b->r->n_problems++;
		if (b->listed >= ZF_VERIFY_MAX_LISTED) {
			b->extra++;
			return;
		}
		b->listed++;
	}
	if (b->rc)
		return;
	if (b->r->n_findings == b->cap &&
	    zf_grow(&b->r->findings, &b->cap, b->r->n_findings + 1, 32)) {
		b->rc = ZF_ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	f = &b->r->findings[b->r->n_findings];
	f->check = check;
	f->ok = ok;
	f->where = strdup(where ? where : "");
	f->msg = strdup(msg);
	if (!f->where || !f->msg) {
		free(f->where);
		free(f->msg);
		b->rc = ZF_ENOMEM;
		return;
	}
	b->r->n_findings++;
}

/* Starts a check: resets the listing cap. */
static void begin(struct builder *b)
{
	b->listed = 0;
	b->extra = 0;
}

/* Ends a check: says how many problems were not listed. The count is in
 * n_problems already. */
static void end(struct builder *b, const char *check)
{
	if (b->extra) {
		size_t extra = b->extra;

		b->listed = 0; /* room for the summary line */
		b->r->n_problems--; /* add() counts it again */
		add(b, check, false, "", "%zu more problem%s of this kind not listed",
		    extra, extra == 1 ? "" : "s");
	}
}

/* --- metadata checks -------------------------------------------------- */

static void check_sources(struct builder *b, const struct zf_ckpt *ck)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	size_t bad = 0;

	begin(b);
	for (size_t i = 0; i < ci->n_files; i++) {
		const struct zf_source *s = zf_ckpt_file(ck, i);

		if (!zf_source_size(s)) {
			bad++;
			add(b, "sources", false, zf_source_path(s), "the file is empty");
		}
	}
	end(b, "sources");
	if (!bad)
		add(b, "sources", true, "", "%zu files, %llu bytes, none empty",
		    ci->n_files, (unsigned long long)ci->files_bytes);
}

/* The torch files: all but a --base folder's safetensors files. */
static size_t n_torch_files(const struct zf_ckpt *ck)
{
	return zf_ckpt_info(ck)->n_files - zf_ckpt_info(ck)->n_base_files;
}

/* Two zip readers, ours and libzip, agree on every zip's directory. A
 * file in torch's legacy format has no directory for a second reader:
 * its pickles are parsed and its records walked again, and the report
 * says that this is all that was done. */
static void check_zip(struct builder *b, const struct zf_ckpt *ck)
{
	size_t bad = 0, legacy = 0, n = n_torch_files(ck);

	begin(b);
	for (size_t i = 0; i < n; i++) {
		struct zf_error e = { 0 };
		int rc = zf_ckpt_check_zip(ck, i, &e);

		if (zf_ckpt_file_kind(ck, i) == ZF_CONTAINER_LEGACY)
			legacy++;
		if (rc) {
			bad++;
			add(b, "zip", false, zf_source_path(zf_ckpt_file(ck, i)), "%s", e.msg);
		}
	}
	end(b, "zip");
	if (bad)
		return;
	if (legacy < n)
		add(b, "zip", true, "", "libzip reads the same entries as zerofs in all %zu %sfiles",
		    n - legacy, legacy ? "zip " : "");
	if (legacy)
		add(b, "zip", true, "",
		    "%zu file%s in torch's legacy format: no zip directory for libzip to cross-check; pickles parsed and records walked again",
		    legacy, legacy == 1 ? "" : "s");
}

/* Every byte of every tensor maps into its file, runs of whole elements
 * adding up to its shape (zf_ckpt_map(), the read engine's own map). */
static void check_extents(struct builder *b, const struct zf_ckpt *ck)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	size_t checked = 0, before = b->r->n_problems;

	begin(b);
	for (size_t i = 0; i < ci->n_tensors; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);
		uint64_t es = zf_dtype_size(t->src_dtype), want, off = 0;

		if (t->kind == ZF_KIND_ALIAS)
			continue;
		checked++;
		if (zf_ckd_mul(&want, t->numel, es)) {
			add(b, "extents", false, "", "tensor '%s': its size overflows", t->name);
			continue;
		}
		while (off < want) {
			struct zf_run run;
			const struct zf_source *s;
			uint64_t stop;

			if (zf_ckpt_map(ck, i, off, want - off, &run)) {
				add(b, "extents", false, "",
				    "tensor '%s': byte %llu of %llu maps to no file",
				    t->name, (unsigned long long)off, (unsigned long long)want);
				break;
			}
			s = zf_ckpt_file(ck, run.file);
			if (zf_ckd_add(&stop, run.offset, run.len) ||
			    stop > zf_source_size(s))
				add(b, "extents", false, zf_source_path(s),
				    "tensor '%s': bytes %llu..%llu lie past the end of the file (%llu bytes)",
				    t->name, (unsigned long long)run.offset,
				    (unsigned long long)(run.offset + run.len),
				    (unsigned long long)zf_source_size(s));
			if (es && run.len % es)
				add(b, "extents", false, zf_source_path(s),
				    "tensor '%s': a run of %llu bytes is not whole %s elements",
				    t->name, (unsigned long long)run.len,
				    zf_dtype_torch_name(t->src_dtype));
			off += run.len;
		}
	}
	end(b, "extents");
	if (b->r->n_problems == before)
		add(b, "extents", true, "", "%zu tensors, every byte inside its file", checked);
}

static int cmp_range(const void *a, const void *b)
{
	const struct zf_ckpt_range *x = a, *y = b;

	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Same bytes, same type: a tie DeepSpeed did not record, not corruption. */
static bool same_data(const struct zf_ckpt *ck, const struct zf_ckpt_range *a,
		      const struct zf_ckpt_range *b)
{
	return a->tensor != SIZE_MAX && b->tensor != SIZE_MAX &&
	       a->offset == b->offset && a->len == b->len &&
	       zf_ckpt_tensor(ck, a->tensor)->src_dtype ==
		       zf_ckpt_tensor(ck, b->tensor)->src_dtype;
}

static void describe(const struct zf_ckpt *ck, const struct zf_ckpt_range *r,
		     char *buf, size_t size)
{
	if (r->tensor != SIZE_MAX)
		snprintf(buf, size, "tensor '%s'", zf_ckpt_tensor(ck, r->tensor)->name);
	else
		snprintf(buf, size, "rank %u's fp32 group %u", r->rank, r->group);
}

static void check_overlap(struct builder *b, const struct zf_ckpt *ck)
{
	struct zf_ckpt_range *v;
	size_t n, before = b->r->n_problems;

	if (zf_ckpt_ranges(ck, &v, &n, NULL)) {
		b->rc = ZF_ENOMEM;
		return;
	}
	qsort(v, n, sizeof(*v), cmp_range);
	begin(b);
	/* Sorted by start: a range overlaps an earlier one exactly when it
	 * starts before the furthest end seen so far in its file. */
	for (size_t i = 1, far = 0; i < n; i++) {
		const struct zf_ckpt_range *p = &v[far], *c = &v[i];

		if (c->file != p->file) {
			far = i;
			continue;
		}
		if (c->offset < p->offset + p->len && !same_data(ck, p, c)) {
			uint64_t stop = p->offset + p->len < c->offset + c->len ?
					p->offset + p->len : c->offset + c->len;
			char x[300], y[300];

			describe(ck, p, x, sizeof(x));
			describe(ck, c, y, sizeof(y));
			add(b, "overlap", false, zf_source_path(zf_ckpt_file(ck, c->file)),
			    "%s and %s both use bytes %llu..%llu", x, y,
			    (unsigned long long)c->offset, (unsigned long long)stop);
		}
		if (c->offset + c->len > p->offset + p->len)
			far = i;
	}
	end(b, "overlap");
	if (b->r->n_problems == before)
		add(b, "overlap", true, "", "%zu ranges, no byte used by two tensors", n);
	free(v);
}

/* --- data checks ------------------------------------------------------ */

/* A tensor being scanned for NaN and Inf, fed any split of its bytes. */
struct scan {
	enum zf_dtype dt;
	size_t es;
	unsigned char part[8]; /* an element cut by a read boundary */
	size_t n_part;
	uint64_t nan, inf;
};

static void scan_elems(struct scan *s, const unsigned char *p, size_t n)
{
	switch (s->dt) {
	case ZF_DT_F32:
		for (size_t i = 0; i < n; i++) {
			uint32_t u;

			memcpy(&u, p + 4 * i, 4);
			if ((u & 0x7f800000u) == 0x7f800000u) {
				s->nan += (u & 0x007fffffu) != 0;
				s->inf += (u & 0x007fffffu) == 0;
			}
		}
		break;
	case ZF_DT_BF16:
	case ZF_DT_F16: {
		uint16_t expo = s->dt == ZF_DT_BF16 ? 0x7f80u : 0x7c00u;
		uint16_t mant = s->dt == ZF_DT_BF16 ? 0x007fu : 0x03ffu;

		for (size_t i = 0; i < n; i++) {
			uint16_t u;

			memcpy(&u, p + 2 * i, 2);
			if ((u & expo) == expo) {
				s->nan += (u & mant) != 0;
				s->inf += (u & mant) == 0;
			}
		}
		break;
	}
	case ZF_DT_F64:
		for (size_t i = 0; i < n; i++) {
			uint64_t u;

			memcpy(&u, p + 8 * i, 8);
			if ((u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull) {
				s->nan += (u & 0x000fffffffffffffull) != 0;
				s->inf += (u & 0x000fffffffffffffull) == 0;
			}
		}
		break;
	default:
		break;
	}
}

static void scan_feed(struct scan *s, const unsigned char *p, size_t n)
{
	if (!zf_dtype_is_float(s->dt) || !s->es)
		return;
	if (s->n_part) {
		size_t k = s->es - s->n_part < n ? s->es - s->n_part : n;

		memcpy(s->part + s->n_part, p, k);
		s->n_part += k;
		p += k;
		n -= k;
		if (s->n_part < s->es)
			return;
		scan_elems(s, s->part, 1);
		s->n_part = 0;
	}
	scan_elems(s, p, n / s->es);
	memcpy(s->part, p + n - n % s->es, n % s->es);
	s->n_part = n % s->es;
}

struct item {
	bool crc;     /* else a data item */
	size_t index; /* source (crc) or file (data) */
	uint64_t size;
};

struct job {
	const struct zf_hfdir *d;
	const struct zf_verify_options *o;
	struct item *items;
	size_t n_items;
	_Atomic size_t next;
	_Atomic uint64_t done;
	_Atomic int nomem;

	struct zf_error *crc_err;    /* per source */
	struct zf_error *read_err;   /* per file */
	struct zf_verify_file *files;
	struct zf_verify_tensor *tensors;
	size_t *first_tensor;	     /* per file: its first slot in tensors */

	uint64_t total;		     /* bytes the items read, for progress */
};

static bool stopped(const struct job *j)
{
	return j->o->stop && *j->o->stop;
}

static void digest_of(XXH3_state_t *st, struct zf_digest *dg)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	memcpy(dg->b, c.digest, sizeof(dg->b));
}

/* Reads file fi once: its digest, and its tensors' digests and scans. */
static void data_item(struct job *j, size_t fi, unsigned char *buf,
		      XXH3_state_t *fst, XXH3_state_t *tst)
{
	const struct zf_vfile *f = zf_hfdir_file(j->d, fi);
	struct zf_verify_tensor *res = j->tensors + j->first_tensor[fi];
	size_t ti = 0;
	struct scan sc = { 0 };
	uint64_t off = 0;

	XXH3_128bits_reset(fst);
	XXH3_128bits_reset(tst);
	if (f->n_tensors) {
		sc.dt = f->tensors[0].dtype;
		sc.es = zf_dtype_size(sc.dt);
	}
	while (off < f->size || ti < f->n_tensors) {
		size_t want = f->size - off < READ_BYTES ? (size_t)(f->size - off) : READ_BYTES;
		int64_t n = 0;

		if (stopped(j))
			return;
		if (want) {
			n = zf_vfile_read(j->d, f, buf, want, off, &j->read_err[fi]);
			if (n >= 0 && (size_t)n != want) {
				zf_fail(&j->read_err[fi], ZF_ECHANGED,
					"ended at byte %llu, expected %llu",
					(unsigned long long)(off + (uint64_t)n),
					(unsigned long long)f->size);
				n = -1;
			}
			if (n < 0)
				return; /* read_err says why; read stays false */
			XXH3_128bits_update(fst, buf, (size_t)n);
		}
		/* The tensors are back to back in offset order: finish each
		 * one whose last byte is in this piece. */
		while (ti < f->n_tensors) {
			const struct zf_vtensor *vt = &f->tensors[ti];
			uint64_t te = vt->offset + vt->nbytes, stop = off + (uint64_t)n;
			uint64_t a = vt->offset > off ? vt->offset : off;
			uint64_t b = te < stop ? te : stop;

			if (a < b) {
				XXH3_128bits_update(tst, buf + (a - off), (size_t)(b - a));
				scan_feed(&sc, buf + (a - off), (size_t)(b - a));
			}
			if (te > stop)
				break;
			digest_of(tst, &res[ti].digest);
			res[ti].n_nan = sc.nan;
			res[ti].n_inf = sc.inf;
			res[ti].read = true;
			XXH3_128bits_reset(tst);
			if (++ti < f->n_tensors) {
				sc = (struct scan){ 0 };
				sc.dt = f->tensors[ti].dtype;
				sc.es = zf_dtype_size(sc.dt);
			}
		}
		off += (uint64_t)n;
		atomic_fetch_add(&j->done, (uint64_t)n);
		if (!want)
			break;
	}
	digest_of(fst, &j->files[fi].digest);
	j->files[fi].read = true;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	unsigned char *buf = NULL;
	XXH3_state_t *fst = XXH3_createState(), *tst = XXH3_createState();

	if (!fst || !tst)
		atomic_store(&j->nomem, 1);
	while (!atomic_load(&j->nomem) && !stopped(j)) {
		size_t i = atomic_fetch_add(&j->next, 1);
		const struct item *it;

		if (i >= j->n_items)
			break;
		it = &j->items[i];
		if (it->crc) {
			zf_ckpt_check_crc(zf_hfdir_info(j->d)->ck, it->index, &j->crc_err[it->index]);
			atomic_fetch_add(&j->done, it->size);
			continue;
		}
		if (!buf && !(buf = malloc(READ_BYTES))) {
			atomic_store(&j->nomem, 1);
			break;
		}
		data_item(j, it->index, buf, fst, tst);
	}
	free(buf);
	XXH3_freeState(fst);
	XXH3_freeState(tst);
	return NULL;
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return x->size > y->size ? -1 : x->size < y->size;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct zf_verify_tensor *)a)->vt->name,
		      ((const struct zf_verify_tensor *)b)->vt->name);
}

static void tick(void *arg)
{
	struct job *j = arg;

	if (j->o->progress)
		j->o->progress(j->o->progress_arg, atomic_load(&j->done), j->total);
}

static void run_workers(struct job *j, unsigned threads)
{
	if (threads > j->n_items)
		threads = (unsigned)j->n_items;
	if (!zf_run_workers(threads, worker, j, tick, j, PROGRESS_NS))
		atomic_store(&j->nomem, 1);
}

/* Turns the workers' result slots into findings, in a fixed order. */
static void collect(struct builder *b, struct job *j)
{
	const struct zf_hfdir *d = j->d;
	const struct zf_hfdir_info *di = zf_hfdir_info(d);
	const struct zf_ckpt *ck = di->ck;
	struct zf_verify_report *r = b->r;
	size_t before;

	if (j->o->crc) {
		begin(b);
		for (size_t i = 0; i < n_torch_files(ck); i++) {
			const struct zf_error *e = &j->crc_err[i];
			const char *path = zf_source_path(zf_ckpt_file(ck, i));

			if (e->status)
				add(b, "crc", false, e->where[0] ? e->where : path, "%s", e->msg);
			else if (r->interrupted)
				continue;
			else if (zf_ckpt_file_kind(ck, i) == ZF_CONTAINER_LEGACY)
				add(b, "crc", true, path,
				    "every record read; none checked: torch's legacy format stores no CRC-32");
			else
				add(b, "crc", true, path, "every record's CRC-32 matches");
		}
		end(b, "crc");
	}
	if (!j->o->data)
		return;
	begin(b);
	for (size_t i = 0; i < di->n_files; i++) {
		const struct zf_error *e = &j->read_err[i];
		const char *name = zf_hfdir_file(d, i)->name;

		if (e->status)
			add(b, "read", false, e->where[0] ? e->where : name,
			    "reading '%s': %s", name, e->msg);
	}
	end(b, "read");
	before = r->n_problems;
	begin(b);
	for (size_t i = 0; i < r->n_tensors; i++) {
		const struct zf_verify_tensor *t = &r->tensors[i];

		if (t->n_nan || t->n_inf)
			add(b, "values", false, t->file->name,
			    "tensor '%s' (%s): %llu NaN, %llu Inf of %llu values",
			    t->vt->name, zf_dtype_torch_name(t->vt->dtype),
			    (unsigned long long)t->n_nan, (unsigned long long)t->n_inf,
			    (unsigned long long)(t->vt->nbytes / zf_dtype_size(t->vt->dtype)));
	}
	end(b, "values");
	if (r->n_problems == before && !r->interrupted)
		add(b, "values", true, "", "%zu tensors read, no NaN or Inf", r->n_tensors);
}

int zf_verify(const struct zf_hfdir *d, const struct zf_verify_options *o,
	      struct zf_verify_report **out, struct zf_error *err)
{
	struct zf_verify_options opts = o ? *o : (struct zf_verify_options){ 0 };
	const struct zf_hfdir_info *di = zf_hfdir_info(d);
	const struct zf_ckpt *ck = di->ck;
	size_t n_files = zf_ckpt_info(ck)->n_files;
	struct job j = { .d = d, .o = &opts };
	struct builder b = { 0 };
	unsigned threads = opts.threads ? opts.threads : ZF_VERIFY_THREADS;
	uint64_t total = 0;
	size_t nt = 0;
	int rc = ZF_OK;

	*out = NULL;
	if (threads > ZF_EXPORT_MAX_THREADS)
		return zf_fail(err, ZF_EUSAGE, "%u threads asked for, at most %u",
			       threads, ZF_EXPORT_MAX_THREADS);
	b.r = calloc(1, sizeof(*b.r));
	if (!b.r) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	b.r->cannot_judge = zf_ckpt_info(ck)->incomplete;
	check_sources(&b, ck);
	check_zip(&b, ck);
	check_extents(&b, ck);
	check_overlap(&b, ck);
	if (b.rc)
		goto nomem;

	for (size_t i = 0; i < di->n_files; i++)
		nt += zf_hfdir_file(d, i)->n_tensors;
	j.items = calloc(di->n_files + n_files + 1, sizeof(*j.items));
	j.crc_err = calloc(n_files + 1, sizeof(*j.crc_err));
	j.read_err = calloc(di->n_files + 1, sizeof(*j.read_err));
	j.first_tensor = calloc(di->n_files + 1, sizeof(*j.first_tensor));
	if (!j.items || !j.crc_err || !j.read_err || !j.first_tensor)
		goto nomem;
	if (opts.data) {
		b.r->files = calloc(di->n_files + 1, sizeof(*b.r->files));
		b.r->tensors = calloc(nt + 1, sizeof(*b.r->tensors));
		if (!b.r->files || !b.r->tensors)
			goto nomem;
		b.r->n_files = di->n_files;
		b.r->n_tensors = nt;
		j.files = b.r->files;
		j.tensors = b.r->tensors;
		nt = 0;
		for (size_t i = 0; i < di->n_files; i++) {
			const struct zf_vfile *f = zf_hfdir_file(d, i);

			b.r->files[i].f = f;
			j.first_tensor[i] = nt;
			for (size_t k = 0; k < f->n_tensors; k++) {
				b.r->tensors[nt].vt = &f->tensors[k];
				b.r->tensors[nt++].file = f;
			}
			j.items[j.n_items++] = (struct item){ false, i, f->size };
			total += f->size;
		}
	}
	if (opts.crc) {
		for (size_t i = 0; i < n_torch_files(ck); i++) {
			uint64_t size = zf_source_size(zf_ckpt_file(ck, i));

			j.items[j.n_items++] = (struct item){ true, i, size };
			total += size;
		}
	}
	/* Largest first, so the last item to finish is a small one. */
	qsort(j.items, j.n_items, sizeof(*j.items), cmp_item);
	if (opts.progress)
		opts.progress(opts.progress_arg, 0, total);
	j.total = total;
	if (j.n_items)
		run_workers(&j, threads);
	if (atomic_load(&j.nomem))
		goto nomem;
	b.r->interrupted = stopped(&j);
	if (b.r->tensors)
		qsort(b.r->tensors, b.r->n_tensors, sizeof(*b.r->tensors), cmp_tensor);
	collect(&b, &j);
	if (b.rc)
		goto nomem;
	if (opts.progress && !b.r->interrupted)
		opts.progress(opts.progress_arg, total, total);
	*out = b.r;
	b.r = NULL;
	goto out;
nomem:
	rc = zf_fail(err, ZF_ENOMEM, "out of memory");
out:
	zf_verify_free(b.r);
	free(j.items);
	free(j.crc_err);
	free(j.read_err);
	free(j.first_tensor);
	return rc;
}

void zf_verify_free(struct zf_verify_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_findings; i++) {
		free(r->findings[i].where);
		free(r->findings[i].msg);
	}
	free(r->findings);
	free(r->files);
	free(r->tensors);
	free(r);
}

void zf_digest_hex(const struct zf_digest *dg, char hex[33])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		hex[2 * i] = digits[dg->b[i] >> 4];
		hex[2 * i + 1] = digits[dg->b[i] & 15];
	}
	hex[32] = '\0';
}
