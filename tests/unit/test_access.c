/* SPDX-License-Identifier: MIT */
/*
 * The served-mode rule (core/access.c, access.h): for sources of every
 * usual mode, owned by the served owner or not, in the served group or
 * not, the read bits shown are exactly what every member of each class
 * could read; several sources and the folders on the way combine by AND;
 * a 0700 folder above keeps everyone else out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "zerofs/access.h"

#define ROOT 0
#define ALICE 1000
#define BOB 1001
#define STAFF 50
#define ML 60

static mode_t one(uid_t uid, gid_t gid, mode_t mode, uid_t owner, gid_t group, uid_t opener)
{
	struct zf_access a = { uid, gid, mode & 0444 };

	return zf_access_mode(&a, 1, owner, group, opener);
}

int main(void)
{
	struct zf_access two[2];
	struct zf_access_set set = { 0 };
	struct zf_error err = { 0 };
	char top[] = "/tmp/zf-test-access-XXXXXX", path[256];
	mode_t m;

	/* Served owner and group are the sources': their bits, exactly. */
	tap_ok(one(ALICE, STAFF, 0644, ALICE, STAFF, ALICE) == 0444, "0644, same owner and group: 0444");
	tap_ok(one(ALICE, STAFF, 0600, ALICE, STAFF, ALICE) == 0400, "0600: 0400");
	tap_ok(one(ALICE, STAFF, 0640, ALICE, STAFF, ALICE) == 0440, "0640: 0440");
	tap_ok(one(ALICE, STAFF, 0400, ALICE, STAFF, ALICE) == 0400, "0400: 0400");
	tap_ok(one(ALICE, STAFF, 0000, ALICE, STAFF, ALICE) == 0000, "0000: nothing");
	/* Unusual modes keep Unix's meaning: a class is judged alone. */
	tap_ok(one(ALICE, STAFF, 0604, ALICE, STAFF, ALICE) == 0404,
	       "0604: the group (not others) is shut out, as on the file");
	tap_ok(one(ALICE, STAFF, 0044, ALICE, STAFF, ROOT) == 0044,
	       "0044 read by root's mount as alice: the owner class stays shut");

	/* root mounts alice's files (owner root = opener, group root). */
	tap_ok(one(ALICE, STAFF, 0644, ROOT, ROOT, ROOT) == 0444, "root mounts alice's 0644: 0444");
	tap_ok(one(ALICE, STAFF, 0640, ROOT, ROOT, ROOT) == 0400,
	       "root mounts alice's 0640: only the owner (root): root's group may not be staff");
	tap_ok(one(ALICE, STAFF, 0600, ROOT, ROOT, ROOT) == 0400, "root mounts alice's 0600: 0400");
	/* bob (the opener) mounts alice's 0640 as a member of staff. */
	tap_ok(one(ALICE, STAFF, 0640, BOB, BOB, BOB) == 0400,
	       "bob, who could open alice's 0640 file, reads his mount; nobody else does");

	/* -o uid=, gid=: narrowing only. */
	tap_ok(one(ROOT, ROOT, 0644, 1234, 5678, ROOT) == 0444, "uid=1234,gid=5678 of a 0644 file: 0444");
	tap_ok(one(ROOT, ROOT, 0640, 1234, 5678, ROOT) == 0000,
	       "uid=1234,gid=5678 of root's 0640 file: no class may be sure to read it");
	tap_ok(one(ALICE, ML, 0640, ROOT, ML, ROOT) == 0440,
	       "gid=ml when the file's group is ml: the group keeps its read");
	tap_ok(one(ALICE, STAFF, 0640, ROOT, ML, ROOT) == 0400,
	       "gid=ml when the file's group is staff: ml gets nothing");
	tap_ok(one(ALICE, STAFF, 0640, ALICE, STAFF, ROOT) == 0440, "uid=alice,gid=staff: 0440 exactly");

	/* Several rules: AND. */
	two[0] = (struct zf_access){ ALICE, STAFF, 0444 };
	two[1] = (struct zf_access){ ALICE, STAFF, 0400 };
	tap_ok(zf_access_mode(two, 2, ALICE, STAFF, ALICE) == 0400,
	       "a shard of a 0644 and a 0600 rank file: 0400 (the most restrictive)");
	tap_ok(zf_access_mode(NULL, 0, ALICE, STAFF, ALICE) == 0444, "no rules: 0444");

	/* Folders on the way: real ones. */
	if (!mkdtemp(top)) {
		tap_ok(0, "mkdtemp");
		return tap_done();
	}
	chmod(top, 0755);
	snprintf(path, sizeof(path), "%s/private", top);
	mkdir(path, 0700);
	chmod(path, 0700);
	snprintf(path, sizeof(path), "%s/private/ckpt", top);
	mkdir(path, 0755);
	chmod(path, 0755);
	tap_ok(zf_access_add_folder(&set, path, &err) == ZF_OK, "the rules of a folder and its way");
	m = zf_access_mode(set.v, set.n, getuid(), getgid(), geteuid());
	tap_ok((m & 0044) == 0, "a 0755 folder under a 0700 one: others may not search it (got %04o)",
	       (unsigned)m);
	zf_access_release(&set);
	snprintf(path, sizeof(path), "%s/private", top);
	chmod(path, 0755);
	snprintf(path, sizeof(path), "%s/private/ckpt", top);
	tap_ok(zf_access_add_folder(&set, path, &err) == ZF_OK, "again, the folder above opened");
	m = zf_access_mode(set.v, set.n, getuid(), getgid(), geteuid());
	/* /tmp is 1777 and / 0755: all may search. */
	tap_ok(m == 0444, "then all may list it (got %04o)", (unsigned)m);
	zf_access_release(&set);
	snprintf(path, sizeof(path), "%s/missing", top);
	tap_ok(zf_access_add_folder(&set, path, &err) == ZF_EIO && strstr(err.msg, "cannot resolve"),
	       "a missing folder: ZF_EIO naming it ('%s')", err.msg);
	zf_access_release(&set);
	snprintf(path, sizeof(path), "%s/private/ckpt", top);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/private", top);
	rmdir(path);
	rmdir(top);
	return tap_done();
}
