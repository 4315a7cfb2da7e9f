/* SPDX-License-Identifier: MIT */
/*
 * Where a mount's diagnostics go, and the one function that writes them.
 *
 * A mount in the foreground logs to stderr. In the background (the
 * serving process has no terminal) it logs to --log FILE when given;
 * else to syslog when a syslog daemon or journald listens on /dev/log;
 * else to $XDG_STATE_HOME/zerofs/zerofs.log (~/.local/state/...), so
 * that a machine without syslog still keeps the reason behind an EIO.
 * zerofs(1), LOGS, says the same.
 */
#ifndef ZEROFS_LOG_H
#define ZEROFS_LOG_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Chooses the target: file (NULL: the default for foreground or not).
 * A file is opened now (appending, created 0600), so a bad path fails
 * before anything is mounted. Returns 0, or -1 with a message in err.
 */
int log_setup(const char *file, bool foreground, char *err, size_t errsize);

/* Where lines go, for people: "stderr", "syslog (journalctl -t zerofs or
 * /var/log/syslog)", or the file's path. */
const char *log_where(void);

/* Where lines go, short: "stderr", "syslog" or the file's path. */
const char *log_place(void);

/*
 * Logs one line (escaped by cli_esc(): names in it come from the
 * checkpoint), with the time and process id when it goes to a file.
 */
void zf_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * zf_log() for a failed request: at most LOG_BURST lines a second, then
 * one line saying how many were left out, so a loader retrying in a
 * loop cannot fill a disk.
 */
void zf_log_eio(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define LOG_BURST 20

#endif /* ZEROFS_LOG_H */
