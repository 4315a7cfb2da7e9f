/* SPDX-License-Identifier: MIT */
/* A mount's log (log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

enum target { TO_STDERR, TO_FILE, TO_SYSLOG };

static enum target target = TO_STDERR;
static int log_fd = -1;
static char log_path[4096];

/* True when something accepts syslog datagrams on /dev/log (rsyslog,
 * journald): without it, syslog() drops every line silently. */
static bool syslog_listens(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX, .sun_path = "/dev/log" };
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	bool ok = false;

	for (int i = 0; i < 2 && !ok; i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);

		if (fd < 0)
			continue;
		ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
	}
	return ok;
}

/* mkdir -p for the folders of path (each 0700 when made). */
static void make_parents(char *path)
{
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		mkdir(path, 0700);
		*p = '/';
	}
}

/* $XDG_STATE_HOME/zerofs/zerofs.log, else ~/.local/state/zerofs/zerofs.log
 * (HOME, else the password database: mount(8) runs its helpers without
 * HOME). */
static int default_file(char *out, size_t size)
{
	const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	struct passwd *pw;

	if (state && state[0] == '/')
		return (size_t)snprintf(out, size, "%s/zerofs/zerofs.log", state) < size ? 0 : -1;
	if (!home || home[0] != '/') {
		pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || home[0] != '/')
		return -1;
	return (size_t)snprintf(out, size, "%s/.local/state/zerofs/zerofs.log", home) < size ? 0 : -1;
}

static int open_file(const char *path, char *err, size_t errsize)
{
	char abs[sizeof(log_path)];

	if (path[0] != '/') {
		/* The daemon changes to /: keep the name absolute. */
		if (!getcwd(abs, sizeof(abs)) ||
		    (size_t)snprintf(log_path, sizeof(log_path), "%s/%s", abs, path) >= sizeof(log_path)) {
			snprintf(err, errsize, "'%s': path too long", path);
			return -1;
		}
	} else if ((size_t)snprintf(log_path, sizeof(log_path), "%s", path) >= sizeof(log_path)) {
		snprintf(err, errsize, "'%s': path too long", path);
		return -1;
	}
	log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (log_fd < 0) {
		snprintf(err, errsize, "'%s': cannot open the log: %s", log_path, strerror(errno));
		return -1;
	}
	target = TO_FILE;
	return 0;
}

int log_setup(const char *file, bool foreground, char *err, size_t errsize)
{
	if (file)
		return open_file(file, err, errsize);
	if (foreground) {
		target = TO_STDERR;
		return 0;
	}
	if (syslog_listens()) {
		openlog("zerofs", LOG_PID, LOG_DAEMON);
		target = TO_SYSLOG;
		return 0;
	}
	if (default_file(log_path, sizeof(log_path))) {
		snprintf(err, errsize, "no syslog here and no home folder for a log: give --log FILE");
		return -1;
	}
	make_parents(log_path);
	{
		char path[sizeof(log_path)];

		memcpy(path, log_path, sizeof(path));
		return open_file(path, err, errsize);
	}
}

const char *log_where(void)
{
	switch (target) {
	case TO_SYSLOG:
		return "syslog (journalctl -t zerofs, or /var/log/syslog)";
	case TO_FILE:
		return log_path;
	case TO_STDERR:
		break;
	}
	return "stderr";
}

const char *log_place(void)
{
	switch (target) {
	case TO_SYSLOG:
		return "syslog";
	case TO_FILE:
		return log_path;
	case TO_STDERR:
		break;
	}
	return "stderr";
}

static void vlog(const char *fmt, va_list ap)
{
	char msg[4096], line[8192];
	const char *text;
	struct timespec now;
	struct tm tm;
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	text = cli_esc(msg);
	switch (target) {
	case TO_SYSLOG:
		syslog(LOG_ERR, "%s", text);
		return;
	case TO_FILE:
		clock_gettime(CLOCK_REALTIME, &now);
		localtime_r(&now.tv_sec, &tm);
		n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - (size_t)n, " zerofs[%ld]: %s\n",
			      (long)getpid(), text);
		if (n >= (int)sizeof(line))
			n = (int)sizeof(line) - 1, line[n - 1] = '\n';
		/* One write per line: O_APPEND keeps lines whole across
		 * threads and processes sharing the file. */
		if (write(log_fd, line, (size_t)n) < 0) {
			/* Nowhere left to say it. */
		}
		return;
	case TO_STDERR:
		break;
	}
	fprintf(stderr, "zerofs: %s\n", text);
}

void zf_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

static pthread_mutex_t burst_lock = PTHREAD_MUTEX_INITIALIZER;
static time_t burst_second;
static unsigned burst_count;
static unsigned long burst_dropped;

void zf_log_eio(const char *fmt, ...)
{
	unsigned long dropped = 0;
	bool keep;
	time_t now = time(NULL);
	va_list ap;

	pthread_mutex_lock(&burst_lock);
	if (now != burst_second) {
		dropped = burst_dropped;
		burst_dropped = 0;
		burst_second = now;
		burst_count = 0;
	}
	keep = burst_count++ < LOG_BURST;
	if (!keep)
		burst_dropped++;
	pthread_mutex_unlock(&burst_lock);
	if (dropped)
		zf_log("%lu more failed request(s) not logged (more than %d a second)", dropped,
		       LOG_BURST);
	if (!keep)
		return;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}
