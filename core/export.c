/* SPDX-License-Identifier: MIT */
/*
 * zf_export(): the virtual directory written to a real folder (export.h).
 *
 * The work is cut into CHUNK_BYTES pieces over all files, in file order,
 * and handed out from one atomic counter to the worker threads; each
 * worker reads its chunk with zf_vfile_read() (the FUSE read engine, so
 * the bytes are the mount's) into its own buffer and pwrite()s it at the
 * same offset into the file's temporary copy, except for runs that are
 * verbatim source bytes (zf_vfile_segment()), which copy_file_range()
 * copies in the kernel, as cp does. Handing chunks out in order
 * keeps only about one file per thread open at a time and lets the worker
 * that writes a file's last chunk fsync it while the others go on. The
 * calling thread only waits and reports progress.
 *
 * Nothing gets a real name until every byte of every file is written:
 * temporary files (".NAME.zerofs-tmp-PID") are created and preallocated
 * first (so a full disk shows up before any data is read), filled, then
 * renamed into place, shards first and the index after them, so a loader
 * that sees the index sees whole shards. Any failure before the renames
 * removes every temporary file.
 *
 * Workload: a few files of up to 5 GB each (sharded safetensors) plus a
 * handful of small text files; throughput is bounded by the disks, or by
 * the dtype conversion when one is asked for.
 */
#include "zerofs/export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "export_i.h"
#include "grow.h"
#include "workers.h"

/* Work unit and per-thread buffer: large enough that syscalls cost
 * nothing next to the copy, small enough that two threads keep both the
 * reads and the writes of a 2-core machine busy. */
#define CHUNK_BYTES ((uint64_t)8 << 20)

#define PROGRESS_NS 100000000L /* 0.1 s between progress calls */

#define TMP_TAG ZF_EXPORT_TMP_TAG

enum of_state {
	OF_WRITE,   /* to be written */
	OF_KEPT,    /* complete under its real name already */
	OF_ADOPTED, /* complete under a temporary name an earlier export left */
};

struct out_file {
	const struct zf_vfile *f;
	enum of_state state;
	unsigned char digest[16]; /* zf_vfile_digest(): what its bytes are */
	mode_t mode;		  /* its final permission bits */
	char *final;		  /* out_dir/name, for messages */
	char *tmp;		  /* temporary name inside out_dir, NULL if none */
	int fd;			  /* open for writing, -1 when closed */
	uint64_t first_chunk;	  /* global index of this file's first chunk */
	uint64_t n_chunks;
	_Atomic uint64_t left;	  /* chunks not yet written */
	_Atomic bool sealed;	  /* written, flushed and proven complete */
};

struct job {
	const struct zf_hfdir *d;
	const struct zf_export_options *o;
	int dirfd;
	struct out_file *files;
	size_t n_files;
	uint64_t n_chunks;
	_Atomic uint64_t next;	     /* next chunk to hand out */
	_Atomic uint64_t done_bytes; /* written so far */
	_Atomic int failed;
	_Atomic bool no_copy_range; /* copy_file_range() failed as unsupported */
	_Atomic bool no_proof;	    /* the folder keeps no extended attributes */
	int status;	      /* the first failure's, under lock */

	pthread_mutex_t lock; /* guards err, opening files */
	struct zf_error *err;
};

static bool stopped(const struct job *j)
{
	return j->o->stop && *j->o->stop;
}

/* Records e as the export's error, unless one is there already. */
static void job_fail(struct job *j, const struct zf_error *e)
{
	pthread_mutex_lock(&j->lock);
	if (!j->status) {
		j->status = e->status ? (int)e->status : ZF_EIO;
		if (j->err && j->err->status == ZF_OK)
			*j->err = *e;
	}
	atomic_store(&j->failed, 1);
	pthread_mutex_unlock(&j->lock);
}

static int write_full(int fd, const unsigned char *p, size_t len, uint64_t off,
		      const char *path, struct zf_error *err)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			zf_fail(err, ZF_EIO, "cannot write: %s",
				n < 0 ? strerror(errno) : "no progress");
			zf_error_where(err, path);
			return ZF_EIO;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return ZF_OK;
}

/* The file holding global chunk c (files are in chunk order). */
static struct out_file *chunk_file(struct job *j, uint64_t c)
{
	size_t lo = 0, hi = j->n_files;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (j->files[mid].first_chunk <= c)
			lo = mid;
		else
			hi = mid;
	}
	/* Files without chunks share first_chunk with the next one. */
	while (!j->files[lo].n_chunks || c >= j->files[lo].first_chunk + j->files[lo].n_chunks)
		lo++;
	return &j->files[lo];
}

/* of's descriptor, opened by the first worker that needs it. */
static int file_fd(struct job *j, struct out_file *of, int *fd,
		   struct zf_error *err)
{
	int rc = ZF_OK;

	pthread_mutex_lock(&j->lock);
	if (of->fd < 0) {
		of->fd = openat(j->dirfd, of->tmp, O_WRONLY | O_CLOEXEC);
		if (of->fd < 0) {
			zf_fail(err, ZF_EIO, "cannot open the temporary file '%s': %s",
				of->tmp, strerror(errno));
			zf_error_where(err, of->final);
			rc = ZF_EIO;
		}
	}
	*fd = of->fd;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

/*
 * A written file made final: flushed, given its mode, then proven
 * complete (export.h, Resume). The proof comes last, after the flush, so
 * a file that carries one holds all its bytes even after a power cut;
 * without fsync there is no such order, so no proof either.
 */
static int seal(struct job *j, struct out_file *of, int fd, struct zf_error *err)
{
	if (!j->o->no_fsync && fsync(fd) < 0) {
		zf_fail(err, ZF_EIO, "cannot write (fsync): %s", strerror(errno));
		zf_error_where(err, of->final);
		return ZF_EIO;
	}
	if (fchmod(fd, of->mode) < 0) {
		zf_fail(err, ZF_EIO, "cannot set the mode: %s", strerror(errno));
		zf_error_where(err, of->final);
		return ZF_EIO;
	}
	if (!j->o->no_fsync && !atomic_load(&j->no_proof)) {
		int e = zf_export_seal(fd, of->digest);

		if (e == ENOTSUP || e == EOPNOTSUPP)
			atomic_store(&j->no_proof, true);
		else if (e) {
			zf_fail(err, ZF_EIO, "cannot record that it is complete (%s): %s",
				ZF_EXPORT_XATTR, strerror(e));
			zf_error_where(err, of->final);
			return ZF_EIO;
		}
		if (!e)
			atomic_store(&of->sealed, true);
	}
	return ZF_OK;
}

/* Called by the worker that wrote of's last chunk. */
static int finish_file(struct job *j, struct out_file *of, struct zf_error *err)
{
	int rc;
	int fd;

	/* Take the descriptor under the lock, flush it outside: an fsync
	 * can take seconds and must not stall the other workers. */
	pthread_mutex_lock(&j->lock);
	fd = of->fd;
	of->fd = -1;
	pthread_mutex_unlock(&j->lock);
	rc = seal(j, of, fd, err);
	if (close(fd) < 0 && !rc) {
		zf_fail(err, ZF_EIO, "cannot write (close): %s", strerror(errno));
		zf_error_where(err, of->final);
		rc = ZF_EIO;
	}
	return rc;
}

/*
 * Copies n bytes of src at src_off to fd at off in the kernel, through a
 * descriptor the source lends for the copy, then checks that the source
 * is still the file opened: the bytes copied are of that file, or the
 * export fails with ZF_ECHANGED. *left is what was not copied (the
 * failure is then in *why), for the caller to copy through memory.
 */
static int copy_range(struct zf_source *src, uint64_t src_off, int fd,
		      uint64_t off, uint64_t n, uint64_t *left, int *why,
		      struct zf_error *e)
{
	loff_t in = (loff_t)src_off, out = (loff_t)off;
	int src_fd, rc;

	*left = n;
	*why = 0;
	rc = zf_source_pin_fd(src, &src_fd, e);
	if (rc)
		return rc;
	while (*left) {
		ssize_t k = copy_file_range(src_fd, &in, fd, &out, *left, 0);

		if (k > 0) {
			*left -= (uint64_t)k;
		} else if (k < 0 && errno == EINTR) {
			continue;
		} else {
			*why = k < 0 ? errno : 0;
			break;
		}
	}
	zf_source_unpin_fd(src);
	return zf_source_check(src, e);
}

/*
 * Copies len bytes of of's virtual file at off into fd. Runs that are
 * verbatim source bytes (fp32 served as fp32, passthrough files) are
 * copied in the kernel with copy_file_range(), as cp does, which skips
 * two copies through user memory (and may share blocks on file systems
 * that reflink); everything else goes through the read engine into buf.
 */
static int copy_chunk(struct job *j, struct out_file *of, int fd,
		      unsigned char *buf, uint64_t off, uint64_t len,
		      struct zf_error *e)
{
	uint64_t end = off + len;

	while (off < end) {
		struct zf_source *src;
		uint64_t src_off, n;
		int64_t got;
		int rc;

		zf_vfile_segment(j->d, of->f, off, end - off, &src, &src_off, &n);
		if (!n)
			return zf_fail(e, ZF_ECHANGED, "'%s' ended at byte %llu, expected %llu",
				       of->f->name, (unsigned long long)off,
				       (unsigned long long)of->f->size);
		if (src && !atomic_load(&j->no_copy_range)) {
			uint64_t left;
			int why;

			rc = copy_range(src, src_off, fd, off, n, &left, &why, e);
			if (rc)
				return rc;
			off += n - left;
			if (!left)
				continue;
			/* Not supported between these file systems: copy through
			 * memory from now on. Any other failure (a source cut
			 * short, a full disk) is met again below and reported
			 * with the file's name. */
			if (why == EXDEV || why == EINVAL || why == ENOSYS || why == EOPNOTSUPP)
				atomic_store(&j->no_copy_range, true);
			n = left;
		}
		if (n > CHUNK_BYTES)
			n = CHUNK_BYTES;
		got = zf_vfile_read(j->d, of->f, buf, (size_t)n, off, e);
		if (got < 0)
			return e->status;
		if ((uint64_t)got != n)
			return zf_fail(e, ZF_ECHANGED, "'%s' ended at byte %llu, expected %llu",
				       of->f->name, (unsigned long long)(off + (uint64_t)got),
				       (unsigned long long)of->f->size);
		rc = write_full(fd, buf, (size_t)n, off, of->final, e);
		if (rc)
			return rc;
		off += n;
	}
	return ZF_OK;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	struct zf_error e = { 0 };
	unsigned char *buf = malloc(CHUNK_BYTES);
	int rc = ZF_OK;

	if (!buf)
		rc = zf_fail(&e, ZF_ENOMEM, "out of memory");
	while (!rc && !atomic_load(&j->failed) && !stopped(j)) {
		uint64_t c = atomic_fetch_add(&j->next, 1), off, len;
		struct out_file *of;
		int fd;

		if (c >= j->n_chunks)
			break;
		of = chunk_file(j, c);
		off = (c - of->first_chunk) * CHUNK_BYTES;
		len = of->f->size - off < CHUNK_BYTES ? of->f->size - off : CHUNK_BYTES;
		rc = file_fd(j, of, &fd, &e);
		if (!rc)
			rc = copy_chunk(j, of, fd, buf, off, len, &e);
		if (rc)
			break;
		atomic_fetch_add(&j->done_bytes, len);
		if (atomic_fetch_sub(&of->left, 1) == 1)
			rc = finish_file(j, of, &e);
	}
	if (rc)
		job_fail(j, &e);
	free(buf);
	return NULL;
}

/* --- the output folder ----------------------------------------------- */

/* mkdir -p out_dir, then opens it. */
static int open_out_dir(const char *out_dir, int *dirfd, struct zf_error *err)
{
	char *p = strdup(out_dir);
	struct stat st;
	int rc = ZF_OK;

	if (!p)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (!p[0]) {
		free(p);
		return zf_fail(err, ZF_EUSAGE, "an empty folder name");
	}
	for (char *s = p + 1; ; s++) {
		char c = *s;

		if (c != '/' && c != '\0')
			continue;
		*s = '\0';
		if (mkdir(p, 0777) < 0 && errno != EEXIST) {
			zf_fail(err, ZF_EIO, "cannot create the folder: %s", strerror(errno));
			zf_error_where(err, p);
			rc = ZF_EIO;
			goto out;
		}
		*s = c;
		if (!c)
			break;
	}
	if (stat(out_dir, &st) < 0) {
		rc = zf_fail(err, ZF_EIO, "cannot stat: %s", strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = zf_fail(err, ZF_EUSAGE, "not a folder");
		goto out;
	}
	*dirfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		rc = zf_fail(err, ZF_EIO, "cannot open the folder: %s", strerror(errno));
out:
	zf_error_where(err, out_dir);
	free(p);
	return rc;
}

/* True for the names save_pretrained gives safetensors weights. */
static bool is_weight_name(const char *name)
{
	unsigned a, b;
	int n = -1;

	if (!strcmp(name, "model.safetensors") ||
	    !strcmp(name, "model.safetensors.index.json"))
		return true;
	return strlen(name) == 32 &&
	       sscanf(name, "model-%5u-of-%5u.safetensors%n", &a, &b, &n) == 2 &&
	       n == 32;
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s%s%s", dir,
			 dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
	return p;
}

/* Refuses (EEXIST) a file in the way; a folder in the way even with force. */
static int check_target(int dirfd, const char *out_dir, const char *name,
			bool force, const char *why, struct zf_error *err)
{
	struct stat st;
	char *p;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return ZF_OK;
		p = join(out_dir, name);
		zf_fail(err, ZF_EIO, "cannot stat: %s", strerror(errno));
		zf_error_where(err, p);
		free(p);
		return ZF_EIO;
	}
	if (force && !S_ISDIR(st.st_mode))
		return ZF_OK;
	p = join(out_dir, name);
	if (S_ISDIR(st.st_mode))
		zf_fail(err, ZF_EEXIST, "is a folder where export writes a file");
	else
		zf_fail(err, ZF_EEXIST, "already exists%s; replace it with --force", why);
	zf_error_where(err, p);
	free(p);
	return ZF_EEXIST;
}

/*
 * Weight files in out_dir that this export does not write but a loader
 * would read with (or instead of) it: a model.safetensors beside a new
 * index, shards of another count. Fills *stale (malloc'd names).
 */
static int find_stale(const struct zf_hfdir *d, int dirfd, char ***stale,
		      size_t *n_stale, struct zf_error *err)
{
	int fd = dup(dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t cap = 0;
	int rc = ZF_OK;

	*stale = NULL;
	*n_stale = 0;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return zf_fail(err, ZF_EIO, "cannot list the folder: %s", strerror(errno));
	}
	/* A dup shares the folder's read position with dirfd: start over. */
	rewinddir(dir);
	while ((de = readdir(dir))) {
		if (!is_weight_name(de->d_name) || zf_hfdir_lookup(d, de->d_name))
			continue;
		if ((*n_stale == cap && zf_grow(stale, &cap, *n_stale + 1, 8)) ||
		    !((*stale)[*n_stale] = strdup(de->d_name))) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			break;
		}
		(*n_stale)++;
	}
	closedir(dir);
	return rc;
}

/* Creates and preallocates of's temporary file, private (0600) until it
 * is complete, and decides its final mode from its owner and group. */
static int create_tmp(struct job *j, struct out_file *of, mode_t umask_bits,
		      struct zf_error *err)
{
	const char *name = of->f->name;
	size_t n = strlen(name) + sizeof(TMP_TAG) + 32;
	struct stat st;
	mode_t r;
	int fd = -1, rc = ZF_OK;

	of->tmp = malloc(n);
	if (!of->tmp)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	/* The pid keeps two exports into one folder apart; a leftover of a
	 * crashed run with the same pid only moves us to the next name. */
	for (unsigned k = 0; k < 1000; k++) {
		if (k)
			snprintf(of->tmp, n, ".%s" TMP_TAG "%ld-%u", name, (long)getpid(), k);
		else
			snprintf(of->tmp, n, ".%s" TMP_TAG "%ld", name, (long)getpid());
		fd = openat(j->dirfd, of->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		free(of->tmp);
		of->tmp = NULL; /* nothing to remove */
		zf_fail(err, ZF_EIO, "cannot create a temporary file: %s", strerror(errno));
		zf_error_where(err, of->final);
		return ZF_EIO;
	}
	/* What a mount would show this owner and group (never more than the
	 * sources allow), plus write for the owner, less the umask. */
	if (fstat(fd, &st) < 0) {
		rc = zf_fail(err, ZF_EIO, "cannot stat the temporary file: %s", strerror(errno));
		goto out;
	}
	r = zf_access_mode(of->f->access, of->f->n_access, st.st_uid, st.st_gid, geteuid());
	of->mode = (r | 0200) & ~umask_bits;
	/* Reserve the space now, so a full disk fails the export before any
	 * data is read; where the file system cannot, just set the size. */
	if (of->f->size && fallocate(fd, 0, 0, (off_t)of->f->size) < 0) {
		if (errno != EOPNOTSUPP && errno != ENOSYS) {
			rc = zf_fail(err, ZF_EIO, "cannot reserve %llu bytes: %s",
				     (unsigned long long)of->f->size, strerror(errno));
			goto out;
		}
		if (ftruncate(fd, (off_t)of->f->size) < 0) {
			rc = zf_fail(err, ZF_EIO, "cannot size the temporary file: %s",
				     strerror(errno));
			goto out;
		}
	}
	/* An empty file has no chunk for a worker to finish it. */
	if (!of->f->size)
		rc = seal(j, of, fd, err);
out:
	if (close(fd) < 0 && !rc)
		rc = zf_fail(err, ZF_EIO, "cannot write (close): %s", strerror(errno));
	zf_error_where(err, of->final);
	return rc;
}

static int rename_in(int dirfd, struct out_file *of, struct zf_error *err)
{
	if (renameat(dirfd, of->tmp, dirfd, of->f->name) < 0) {
		zf_fail(err, ZF_EIO, "cannot rename the finished temporary file '%s' into place: %s",
			of->tmp, strerror(errno));
		zf_error_where(err, of->final);
		return ZF_EIO;
	}
	free(of->tmp);
	of->tmp = NULL;
	return ZF_OK;
}

/*
 * Renames every file into place: shards first, then (with force) the
 * stale weight files are removed, then the index and the rest, so the
 * index never names a shard that is not there yet. Files kept from an
 * earlier export are in place already.
 */
static int publish(struct job *j, char **stale, size_t n_stale,
		   struct zf_error *err)
{
	int rc;

	for (size_t i = 0; i < j->n_files; i++)
		if (j->files[i].f->kind == ZF_VF_SAFETENSORS && j->files[i].tmp &&
		    (rc = rename_in(j->dirfd, &j->files[i], err)))
			return rc;
	for (size_t i = 0; i < n_stale; i++)
		if (unlinkat(j->dirfd, stale[i], 0) < 0 && errno != ENOENT)
			return zf_fail(err, ZF_EIO, "cannot remove the stale weight file '%s': %s",
				       stale[i], strerror(errno));
	for (size_t i = 0; i < j->n_files; i++)
		if (j->files[i].tmp && (rc = rename_in(j->dirfd, &j->files[i], err)))
			return rc;
	if (!j->o->no_fsync && fsync(j->dirfd) < 0)
		return zf_fail(err, ZF_EIO, "cannot sync the folder: %s", strerror(errno));
	return ZF_OK;
}

static void report(const struct job *j, uint64_t total)
{
	if (j->o->progress)
		j->o->progress(j->o->progress_arg, atomic_load(&j->done_bytes), total);
}

/* Runs the workers and reports progress until they end. */
static void tick(void *arg)
{
	struct job *j = arg;

	report(j, zf_hfdir_info(j->d)->total_bytes);
}

static int run_workers(struct job *j, unsigned threads, struct zf_error *err)
{
	if (!zf_run_workers(threads, worker, j, tick, j, PROGRESS_NS))
		return zf_fail(err, ZF_ENOMEM, "cannot start a thread");
	return ZF_OK;
}

/*
 * One export at a time per folder: an exclusive lock on the folder for
 * the export's life, so that every temporary file found is of an export
 * that is gone. Where the file system has no such locks, a temporary
 * file whose writer process still runs is left alone instead.
 */
static int lock_out_dir(int dirfd, const char *out_dir, bool *locked,
			struct zf_error *err)
{
	*locked = false;
	if (flock(dirfd, LOCK_EX | LOCK_NB) == 0) {
		*locked = true;
		return ZF_OK;
	}
	if (errno == EWOULDBLOCK)
		return zf_fail_at(err, ZF_EEXIST, out_dir,
				  "another zerofs export is writing into this folder");
	return ZF_OK;
}

/* Whether process pid may still be writing (without the folder lock). */
static bool writer_alive(long pid)
{
	return pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/*
 * Settles what is already in the folder. A file under its real name that
 * is complete and matching is kept; another is in the way (EEXIST unless
 * force). A temporary file of a dead export is adopted when it is a
 * complete copy of a file still to be written, removed otherwise; one that
 * is not ours (another user's, a live writer's) is left alone.
 */
static int settle(struct job *j, bool locked, struct zf_export_stats *st,
		  struct zf_error *err)
{
	int fd = dup(j->dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int rc = ZF_OK;

	for (size_t i = 0; i < j->n_files; i++) {
		struct out_file *of = &j->files[i];

		if (zf_export_is_complete(j->dirfd, of->f->name, of->digest, of->f->size))
			of->state = OF_KEPT;
	}
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return zf_fail(err, ZF_EIO, "cannot list the folder: %s", strerror(errno));
	}
	rewinddir(dir); /* the read position is shared with dirfd */
	while (!rc && (de = readdir(dir))) {
		struct out_file *of = NULL;
		struct stat sb;
		char *name;
		long pid;

		if (!zf_export_tmp_parse(de->d_name, &name, &pid))
			continue;
		for (size_t i = 0; i < j->n_files; i++)
			if (!strcmp(j->files[i].f->name, name))
				of = &j->files[i];
		free(name);
		if (fstatat(j->dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
		    (!locked && writer_alive(pid))) {
			st->leftovers_foreign++;
			continue;
		}
		if (of && of->state == OF_WRITE &&
		    zf_export_is_complete(j->dirfd, de->d_name, of->digest, of->f->size)) {
			of->tmp = strdup(de->d_name);
			if (!of->tmp)
				rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			of->state = OF_ADOPTED;
			atomic_store(&of->sealed, true);
			continue;
		}
		if (unlinkat(j->dirfd, de->d_name, 0) < 0)
			rc = zf_fail(err, ZF_EIO, "cannot remove the leftover temporary file '%s': %s",
				     de->d_name, strerror(errno));
		else
			st->leftovers_removed++;
	}
	closedir(dir);
	return rc;
}

int zf_export(const struct zf_hfdir *d, const char *out_dir,
	      const struct zf_export_options *o, struct zf_error *err)
{
	struct zf_export_options opts = o ? *o : (struct zf_export_options){ 0 };
	const struct zf_hfdir_info *di = zf_hfdir_info(d);
	struct job j = { .d = d, .o = &opts, .dirfd = -1, .err = err };
	struct zf_export_stats stats_local, *st = opts.stats ? opts.stats : &stats_local;
	char **stale = NULL;
	size_t n_stale = 0;
	unsigned threads = opts.threads ? opts.threads : ZF_EXPORT_THREADS;
	bool locked = false, published = false;
	mode_t umask_bits;
	int rc;

	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&j.lock, NULL);
	/* Read once, before any thread exists: umask() sets it too. */
	umask_bits = umask(022);
	umask(umask_bits);
	if (threads > ZF_EXPORT_MAX_THREADS) {
		rc = zf_fail(err, ZF_EUSAGE, "%u threads asked for, at most %u",
			     threads, ZF_EXPORT_MAX_THREADS);
		goto out;
	}
	/* Before anything is created, and again on what was opened. */
	rc = zf_export_check_out(d, out_dir, -1, err);
	if (!rc)
		rc = open_out_dir(out_dir, &j.dirfd, err);
	if (!rc)
		rc = zf_export_check_out(d, out_dir, j.dirfd, err);
	if (!rc)
		rc = lock_out_dir(j.dirfd, out_dir, &locked, err);
	if (rc)
		goto out;

	j.files = calloc(di->n_files ? di->n_files : 1, sizeof(*j.files));
	if (!j.files) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	j.n_files = di->n_files;
	for (size_t i = 0; i < di->n_files; i++) {
		struct out_file *of = &j.files[i];

		of->f = zf_hfdir_file(d, i);
		of->fd = -1;
		of->final = join(out_dir, of->f->name);
		if (!of->final) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		rc = zf_vfile_digest(d, of->f, of->digest, err);
		if (rc)
			goto out;
	}
	rc = settle(&j, locked, st, err);
	if (rc)
		goto out;
	for (size_t i = 0; i < j.n_files; i++) {
		if (j.files[i].state == OF_KEPT)
			continue;
		rc = check_target(j.dirfd, out_dir, j.files[i].f->name, opts.force, "", err);
		if (rc)
			goto out;
	}
	rc = find_stale(d, j.dirfd, &stale, &n_stale, err);
	for (size_t i = 0; !rc && i < n_stale; i++)
		rc = check_target(j.dirfd, out_dir, stale[i], opts.force,
				  " and would be loaded with or instead of the exported weights", err);
	if (rc)
		goto out;

	for (size_t i = 0; i < j.n_files; i++) {
		struct out_file *of = &j.files[i];

		of->first_chunk = j.n_chunks;
		if (of->state != OF_WRITE) {
			st->kept_files++;
			st->kept_bytes += of->f->size;
			atomic_fetch_add(&j.done_bytes, of->f->size);
			continue;
		}
		of->n_chunks = (of->f->size + CHUNK_BYTES - 1) / CHUNK_BYTES;
		atomic_init(&of->left, of->n_chunks);
		j.n_chunks += of->n_chunks;
		st->written_files++;
		st->written_bytes += of->f->size;
	}
	for (size_t i = 0; i < j.n_files; i++) {
		if (j.files[i].state != OF_WRITE)
			continue;
		rc = create_tmp(&j, &j.files[i], umask_bits, err);
		if (rc)
			goto out;
		if (stopped(&j))
			break;
	}

	report(&j, di->total_bytes);
	if (j.n_chunks && !stopped(&j)) {
		rc = run_workers(&j, threads, err);
		if (!rc && atomic_load(&j.failed))
			rc = j.status;
		if (rc)
			goto out;
	}
	if (stopped(&j)) {
		rc = zf_fail(err, ZF_EIO, "interrupted; nothing was written under a real name");
		zf_error_where(err, out_dir);
		goto out;
	}
	rc = publish(&j, stale, n_stale, err);
	published = !rc;
	if (rc) {
		zf_error_where(err, out_dir);
		goto out;
	}
	report(&j, di->total_bytes);
out:
	for (size_t i = 0; j.files && i < j.n_files; i++) {
		struct out_file *of = &j.files[i];

		if (of->fd >= 0)
			close(of->fd);
		/* A complete file stays (hidden) for a later export to keep;
		 * a partial one goes. */
		if (of->tmp && atomic_load(&of->sealed) && !published)
			st->complete_left++;
		else if (of->tmp)
			unlinkat(j.dirfd, of->tmp, 0);
		free(of->tmp);
		free(of->final);
	}
	st->no_proof = atomic_load(&j.no_proof) || opts.no_fsync;
	free(j.files);
	for (size_t i = 0; i < n_stale; i++)
		free(stale[i]);
	free(stale);
	if (j.dirfd >= 0)
		close(j.dirfd);
	pthread_mutex_destroy(&j.lock);
	return rc;
}
