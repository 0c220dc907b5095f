/* Stopping the qube: SIGTERM to every process (kill(-1) when the pid namespace is ours, else only the
 * process groups of our commands), wait until none is alive (zombies don't count) or the grace is over,
 * SIGKILL, exit 0 (which stops the container). As a VM's init (ISOLA_AGENT_POWEROFF=1) it powers off
 * instead: every filesystem remounted read-only first, so the run's changes are on their disk. */
#include "agent.h"
#include "clock.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

#define MAX_GROUPS_TRACKED 4096
#define TICK_MS 50

int shutting_down;
static pid_t groups[MAX_GROUPS_TRACKED];
static size_t ngroups;
static int64_t deadline, next_tick;
static int kill_phase, kill_checks;

/* Process groups with a live member, other than init and us, into a sorted array; returns the count. */
static size_t live_groups(pid_t **out) {
  size_t cap = 256, n = 0;
  pid_t *live = malloc(cap * sizeof *live);
  DIR *d = opendir("/proc");
  if (!live || !d) {
    if (d) closedir(d);
    *out = live;
    return 0;
  }
  pid_t self = getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 1 || pid == self) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue; /* exited while we looked */
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = '\0';
    char *paren = strrchr(buf, ')');
    char state;
    long ppid, pgrp;
    if (!paren || sscanf(paren + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3 || state == 'Z') continue;
    /* A VM's kernel threads (kthreadd, pid 2, and its children) are in /proc too, in no process group. */
    if (cfg.poweroff && pgrp == 0 && (pid == 2 || ppid == 2)) continue;
    if (n == cap) {
      pid_t *bigger = realloc(live, cap * 2 * sizeof *live);
      if (!bigger) break;
      live = bigger;
      cap *= 2;
    }
    live[n++] = (pid_t)pgrp;
  }
  closedir(d);
  *out = live;
  return n;
}

static int cmp_pid(const void *a, const void *b) {
  pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
  return (x > y) - (x < y);
}

/* Forgets groups that emptied, so a recycled pgid of some unrelated process is never signalled. */
static size_t prune_groups(void) {
  pid_t *live;
  size_t n = live_groups(&live);
  if (live) qsort(live, n, sizeof *live, cmp_pid);
  size_t j = 0;
  for (size_t i = 0; i < ngroups; i++) {
    if (live && bsearch(&groups[i], live, n, sizeof *live, cmp_pid)) groups[j++] = groups[i];
  }
  ngroups = j;
  free(live);
  return n;
}

void track_group(pid_t pgid) {
  if (cfg.kill_all) return;
  if (ngroups >= 256) prune_groups();
  if (ngroups < MAX_GROUPS_TRACKED) groups[ngroups++] = pgid;
}

static int others_alive(void) {
  if (cfg.kill_all) {
    pid_t *live;
    size_t n = live_groups(&live);
    free(live);
    return n > 0;
  }
  prune_groups();
  return ngroups > 0;
}

static void signal_all(int sig) {
  if (cfg.kill_all) {
    kill(-1, sig); /* ESRCH: nobody else left */
    return;
  }
  prune_groups();
  for (size_t i = 0; i < ngroups; i++) kill(-groups[i], sig);
}

/* Mount points from /proc/self/mounts, newest last (octal escapes of spaces etc. decoded). */
static size_t mount_points(char points[][256], size_t max) {
  FILE *f = fopen("/proc/self/mounts", "re");
  size_t n = 0;
  char line[1024];
  while (f && n < max && fgets(line, sizeof line, f)) {
    char *p = strchr(line, ' ');
    if (!p) continue;
    char *out = points[n], *end = out + 255;
    for (p++; *p && *p != ' ' && out < end; p++) {
      if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
        *out++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
        p += 3;
      } else *out++ = *p;
    }
    *out = 0;
    n++;
  }
  if (f) fclose(f);
  return n;
}

static void finish(void) {
  if (!cfg.poweroff) exit(0);
  static char points[256][256];
  sync();
  /* Newest first: the overlays before the disks beneath them. Busy ones are at least flushed by sync. */
  for (size_t i = mount_points(points, 256); i-- > 0;) {
    if (umount2(points[i], 0) && mount(NULL, points[i], NULL, MS_REMOUNT | MS_RDONLY, NULL) && errno != EINVAL)
      agent_log("cannot unmount or remount read-only %s: %s", points[i], strerror(errno));
  }
  sync();
  agent_log("powering off");
  reboot(RB_POWER_OFF);
  exit(1); /* not PID 1 of a kernel after all: the caller's problem, not a hang */
}

void start_shutdown(unsigned timeout_sec, const char *why) {
  if (shutting_down) return;
  shutting_down = 1;
  agent_log("shutdown (%s): SIGTERM to every process, %us before SIGKILL", why, timeout_sec);
  signal_all(SIGTERM);
  int64_t now = now_ms();
  deadline = now + (int64_t)timeout_sec * 1000;
  next_tick = now;
}

int64_t shutdown_next_timer(void) {
  return shutting_down ? next_tick : -1;
}

void shutdown_tick(int64_t now) {
  if (!shutting_down || now < next_tick) return;
  next_tick = now + TICK_MS;
  if (!kill_phase) {
    if (others_alive() && now < deadline) return;
    if (!others_alive()) finish();
    agent_log("processes left after the grace period: SIGKILL");
    signal_all(SIGKILL);
    kill_phase = 1;
    return;
  }
  if (!others_alive() || ++kill_checks >= 20) finish();
}
