/* The port: a virtio-serial device found by its name in sysfs, or (tests) a unix socket standing in for it.
 * While no host is connected a device reports POLLHUP at once; we then look again every RETRY_MS, never spin. */
#include "bridge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VPORTS "/sys/class/virtio-ports"

void port_random(uint8_t *out, void *ctx)
{
	(void)ctx;
	size_t got = 0;
	while (got < MUX_SESSION_SIZE) {
		ssize_t n = getrandom(out + got, MUX_SESSION_SIZE - got, 0);
		if (n > 0) got += (size_t)n;
		else if (errno != EINTR) break;
	}
	if (got < MUX_SESSION_SIZE) {
		/* No entropy source at all: a session only needs to differ from the last one, not be secret. */
		uint64_t t = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32);
		for (size_t i = 0; i < MUX_SESSION_SIZE; i++) out[i] ^= (uint8_t)(t >> (8 * (i % 8))) + (uint8_t)i;
	}
}

/* /dev/vportNpM of the port whose sysfs name is name, opened; -1 if there is none (yet). */
static int open_named(const char *name)
{
	DIR *d = opendir(VPORTS);
	if (!d) return -1;
	int fd = -1;
	struct dirent *e;
	while (fd < 0 && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "vport", 5) != 0 || strlen(e->d_name) > 64) continue;
		char path[128], buf[256];
		snprintf(path, sizeof path, VPORTS "/%s/name", e->d_name);
		int nf = open(path, O_RDONLY | O_CLOEXEC);
		if (nf < 0) continue;
		ssize_t n = read(nf, buf, sizeof buf - 1);
		close(nf);
		if (n <= 0) continue;
		if (buf[n - 1] == '\n') n--;
		buf[n] = 0;
		if ((size_t)n != strlen(name) || memcmp(buf, name, (size_t)n) != 0) continue;
		snprintf(path, sizeof path, "/dev/%s", e->d_name);
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) bridge_log("%s port: %s: %s", name, path, strerror(errno));
	}
	closedir(d);
	return fd;
}

static int connect_serial(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof a.sun_path) return -1;
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void port_open(struct port *p, int64_t now)
{
	if (p->fd >= 0 || now < p->retry_at) return;
	p->fd = p->serial ? connect_serial(p->serial) : open_named(p->name);
	if (p->fd >= 0) return;
	p->retry_at = now + RETRY_MS;
}

/* The host end went away (isolad or QEMU restarted, or no host yet): every channel goes, a new session starts. */
void port_lost(struct port *p, int64_t now, const char *why)
{
	if (p->live) bridge_log("%s port: %s; every channel dropped", p->what, why);
	p->live = 0;
	relay_drop_all(p);
	mux_reset(&p->m);
	p->ostart = p->oend = 0; /* half-sent frames of the old connection mean nothing to the next host */
	/* A device stays open (it reports the host's return); a stand-in socket is connected again. */
	if (p->serial && p->fd >= 0) {
		close(p->fd);
		p->fd = -1;
	}
	p->retry_at = now + RETRY_MS;
}
