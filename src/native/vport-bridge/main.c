/* isola-vport-bridge --agent-port NAME --agent-socket PATH --client-port NAME --client-socket PATH
 * (tests: --agent-serial PATH / --client-serial PATH, unix sockets standing in for the ports).
 * Started by an hvm guest's init before the agent, as root. */
#include "bridge.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define NPORTS 2
static struct port ports[NPORTS];

static int usage(void)
{
	fprintf(stderr, "usage: isola-vport-bridge --agent-port NAME|--agent-serial PATH --agent-socket PATH "
			"--client-port NAME|--client-serial PATH --client-socket PATH\n");
	return 2;
}

/* Listens at path with mode; a stale socket (an earlier bridge) is replaced, anything else is left alone. */
static int listen_at(const char *path, mode_t mode)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof a.sun_path) return errno = ENAMETOOLONG, -1;
	memcpy(a.sun_path, path, strlen(path) + 1);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) return errno = EEXIST, -1;
		unlink(path);
	}
	char dir[sizeof a.sun_path];
	memcpy(dir, path, strlen(path) + 1);
	char *last = strrchr(dir, '/');
	if (last) *last = 0;
	/* mkdir -p of the socket's directory: the guest's /run is a fresh tmpfs. */
	for (char *s = dir + 1; last && s <= last; s++) {
		if (*s != '/' && *s != 0) continue;
		char c = *s;
		*s = 0;
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) return -1;
		*s = c;
		if (!c) break;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	/* Created as restrictive as asked from the start: no moment where anyone may connect. */
	mode_t old = umask(0777 & ~mode);
	int r = bind(fd, (struct sockaddr *)&a, sizeof a);
	umask(old);
	if (r != 0 || chmod(path, mode) != 0 || listen(fd, SOMAXCONN) != 0) {
		int e = errno;
		close(fd);
		return errno = e, -1;
	}
	return fd;
}

static int parse_args(int argc, char **argv)
{
	ports[0].what = "agent";
	ports[0].sock_mode = 0600;
	ports[1].what = "client";
	ports[1].sock_mode = 0666;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc) return -1;
		const char *v = argv[++i], *opt = argv[i - 1];
		struct port *p = strncmp(opt, "--agent-", 8) == 0 ? &ports[0] : strncmp(opt, "--client-", 9) == 0 ? &ports[1] : NULL;
		if (!p) return -1;
		const char *kind = opt + (p == &ports[0] ? 8 : 9);
		if (strcmp(kind, "port") == 0) p->name = v;
		else if (strcmp(kind, "serial") == 0) p->serial = v;
		else if (strcmp(kind, "socket") == 0) p->sock_path = v;
		else return -1;
	}
	for (int i = 0; i < NPORTS; i++)
		if (!ports[i].sock_path || !ports[i].name == !ports[i].serial) return -1;
	return 0;
}

static void port_events(struct port *p, short re, int64_t now)
{
	if (re & POLLIN) {
		ssize_t n = read(p->fd, p->in, sizeof p->in);
		if (n > 0) p->live = 1, relay_feed(p, p->in, (size_t)n);
		else if (n == 0 || (errno != EAGAIN && errno != EINTR)) return port_lost(p, now, n == 0 ? "the host hung up" : strerror(errno));
	}
	if ((re & (POLLHUP | POLLERR)) && !(re & POLLIN)) port_lost(p, now, "the host hung up");
}

int main(int argc, char **argv)
{
	if (parse_args(argc, argv) != 0) return usage();
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < NPORTS; i++) {
		struct port *p = &ports[i];
		p->fd = -1;
		relay_init(p);
		p->listen_fd = listen_at(p->sock_path, p->sock_mode);
		if (p->listen_fd < 0) {
			bridge_log("%s: %s", p->sock_path, strerror(errno));
			return 1;
		}
	}
	/* Per port: the port, its listening socket, its channels. */
	static struct pollfd pfd[NPORTS * (2 + MUX_MAX_CHANNELS)];
	static struct chan *who[NPORTS * (2 + MUX_MAX_CHANNELS)];
	for (;;) {
		int64_t now = now_ms();
		int timeout = TICK_MS;
		nfds_t n = 0;
		for (int i = 0; i < NPORTS; i++) {
			struct port *p = &ports[i];
			port_open(p, now);
			relay_service(p);
			relay_flush(p, now);
			int64_t wait = p->fd < 0 || now < p->retry_at ? p->retry_at - now : p->next_tick - now;
			if (wait < 0) wait = 0;
			if (wait < timeout) timeout = (int)wait;
			if (p->fd >= 0 && now >= p->retry_at) {
				pfd[n] = (struct pollfd){ .fd = p->fd, .events = (short)(POLLIN | (p->oend > p->ostart ? POLLOUT : 0)) };
				who[n++] = NULL;
			}
			int free_slot = 0;
			for (size_t k = 0; k < MUX_MAX_CHANNELS && !free_slot; k++) free_slot = !p->ch[k].used;
			if (p->m.up && free_slot && out_room(p) >= CTRL_ROOM) {
				pfd[n] = (struct pollfd){ .fd = p->listen_fd, .events = POLLIN };
				who[n++] = NULL;
			}
			for (size_t k = 0; k < MUX_MAX_CHANNELS; k++) {
				size_t j = (p->rr + k) % MUX_MAX_CHANNELS;
				int include;
				short ev = relay_chan_events(p, &p->ch[j], &include);
				if (!include) continue;
				pfd[n] = (struct pollfd){ .fd = p->ch[j].fd, .events = ev };
				who[n++] = &p->ch[j];
			}
			p->rr = (p->rr + 1) % MUX_MAX_CHANNELS;
		}
		if (poll(pfd, n, timeout) < 0) {
			if (errno == EINTR) continue;
			bridge_log("poll: %s", strerror(errno));
			return 1;
		}
		now = now_ms();
		for (nfds_t k = 0; k < n; k++) {
			if (!pfd[k].revents) continue;
			struct port *p = NULL;
			for (int i = 0; i < NPORTS && !p; i++)
				if (who[k] ? who[k] >= ports[i].ch && who[k] < ports[i].ch + MUX_MAX_CHANNELS
					   : pfd[k].fd == ports[i].fd || pfd[k].fd == ports[i].listen_fd) p = &ports[i];
			if (!p) continue;
			if (who[k]) {
				/* The channel may be gone (a reset in this round): its fd then differs or is closed. */
				if (who[k]->used && who[k]->fd == pfd[k].fd) relay_chan_io(p, who[k], pfd[k].revents);
			} else if (pfd[k].fd == p->listen_fd) {
				relay_accept(p);
			} else if (pfd[k].fd == p->fd) {
				port_events(p, pfd[k].revents, now);
				if (p->fd >= 0 && (pfd[k].revents & POLLOUT)) relay_flush(p, now);
			}
		}
	}
}
