// The seccomp filter every sandbox qube runs under: an allow list modelled on Docker's default
// profile (anything not listed fails with EPERM), with namespace creation and kernel-wide knobs
// refused, for the x86-64 ABI only (a call through any other ABI kills the caller).

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: 'SCMP_CMP_EQ' | 'SCMP_CMP_NE' | 'SCMP_CMP_MASKED_EQ';
}

export interface SeccompRule {
  names: string[];
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO';
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: SeccompRule[];
}

export const EPERM = 1;
export const ENOSYS = 38;

/** Flags that would let the qube build new namespaces (and so new privilege domains) from inside. */
export const CLONE_NAMESPACE_FLAGS =
  0x00020000 /* NEWNS */ |
  0x04000000 /* NEWUTS */ |
  0x08000000 /* NEWIPC */ |
  0x10000000 /* NEWUSER */ |
  0x20000000 /* NEWPID */ |
  0x40000000 /* NEWNET */ |
  0x02000000; /* NEWCGROUP */

const AF_VSOCK = 40;

// Ordinary process life: files, memory, signals, time, IPC inside the qube, sockets. Everything a
// Debian userland and isola-agent (C: poll, fork, set*id, execve) need, nothing that reconfigures the shared kernel. Only x86-64
// names: the filter admits no other ABI (see ARCHITECTURES), so 32-bit-only names would be dead text.
const ALLOWED: readonly string[] = [
  // files and directories
  'access', 'chdir', 'chmod', 'chown', 'close', 'close_range', 'copy_file_range', 'creat', 'dup',
  'dup2', 'dup3', 'faccessat', 'faccessat2', 'fadvise64', 'fallocate', 'fanotify_mark', 'fchdir',
  'fchmod', 'fchmodat', 'fchmodat2', 'fchown', 'fchownat', 'fcntl', 'fdatasync', 'fgetxattr',
  'flistxattr', 'flock', 'fremovexattr', 'fsetxattr', 'fstat', 'fstatfs', 'fsync', 'ftruncate',
  'futimesat', 'getcwd', 'getdents', 'getdents64', 'getxattr', 'inotify_add_watch', 'inotify_init',
  'inotify_init1', 'inotify_rm_watch', 'lchown', 'lgetxattr', 'link', 'linkat', 'listxattr',
  'llistxattr', 'lremovexattr', 'lseek', 'lsetxattr', 'lstat', 'mkdir', 'mkdirat', 'mknod',
  'mknodat', 'name_to_handle_at', 'newfstatat', 'open', 'openat', 'openat2', 'pread64', 'preadv',
  'preadv2', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink', 'readlinkat',
  'readv', 'removexattr', 'rename', 'renameat', 'renameat2', 'rmdir', 'sendfile', 'setxattr',
  'splice', 'stat', 'statfs', 'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs',
  'tee', 'truncate', 'umask', 'unlink', 'unlinkat', 'utime', 'utimensat', 'utimes', 'vmsplice',
  'write', 'writev',
  // event loops and async io (io_uring is left out, as Docker does since 2023)
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2',
  'epoll_wait', 'epoll_wait_old', 'eventfd', 'eventfd2', 'io_cancel', 'io_destroy', 'io_getevents',
  'io_pgetevents', 'io_setup', 'io_submit', 'ioctl', 'pipe', 'pipe2', 'poll', 'ppoll', 'pselect6',
  'select', 'signalfd', 'signalfd4', 'timerfd_create', 'timerfd_gettime', 'timerfd_settime',
  // memory
  'brk', 'cachestat', 'madvise', 'map_shadow_stack', 'membarrier', 'memfd_create', 'memfd_secret',
  'mincore', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mprotect', 'mremap', 'msync', 'munlock',
  'munlockall', 'munmap', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'remap_file_pages',
  // processes, credentials inside the qube's user namespace, scheduling, limits (chroot as in
  // Docker: CAP_SYS_CHROOT is granted, and a chroot inside the qube's mount namespace escapes nothing)
  'capget', 'capset', 'chroot', 'execve', 'execveat', 'exit', 'exit_group', 'fork', 'vfork',
  'getcpu', 'getegid', 'geteuid', 'getgid', 'getgroups', 'getpgid', 'getpgrp', 'getpid', 'getppid',
  'getpriority', 'getresgid', 'getresuid', 'getrlimit', 'get_robust_list', 'getrusage', 'getsid',
  'get_thread_area', 'gettid', 'getuid', 'ioprio_get', 'ioprio_set', 'kill', 'landlock_add_rule',
  'landlock_create_ruleset', 'landlock_restrict_self', 'pidfd_getfd', 'pidfd_open',
  'pidfd_send_signal', 'prctl', 'prlimit64', 'process_mrelease', 'restart_syscall', 'rseq',
  'sched_getaffinity', 'sched_getattr', 'sched_getparam', 'sched_get_priority_max',
  'sched_get_priority_min', 'sched_getscheduler', 'sched_rr_get_interval', 'sched_setaffinity',
  'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp', 'setfsgid',
  'setfsuid', 'setgid', 'setgroups', 'setpgid', 'setpriority', 'setregid', 'setresgid',
  'setresuid', 'setreuid', 'setrlimit', 'set_robust_list', 'setsid', 'set_thread_area',
  'set_tid_address', 'setuid', 'sysinfo', 'tgkill', 'tkill', 'uname', 'wait4', 'waitid', 'futex',
  'futex_requeue', 'futex_wait', 'futex_waitv', 'futex_wake', 'arch_prctl',
  // ptrace: see ptraceNote below
  'ptrace', 'process_vm_readv', 'process_vm_writev',
  // signals and timers
  'alarm', 'getitimer', 'nanosleep', 'pause', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask',
  'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait', 'rt_tgsigqueueinfo',
  'setitimer', 'sigaltstack', 'clock_getres', 'clock_gettime', 'clock_nanosleep', 'gettimeofday',
  'time', 'times', 'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime',
  'timer_settime', 'getrandom',
  // System V and POSIX IPC (the qube has its own IPC namespace)
  'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'semctl', 'semget', 'semop', 'semtimedop', 'shmat',
  'shmctl', 'shmdt', 'shmget', 'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive',
  'mq_timedsend', 'mq_unlink',
  // sockets (socket() itself is filtered below)
  'accept', 'accept4', 'bind', 'connect', 'getpeername', 'getsockname', 'getsockopt', 'listen',
  'recvfrom', 'recvmmsg', 'recvmsg', 'sendmmsg', 'sendmsg', 'sendto', 'setsockopt', 'shutdown',
  'socketpair',
];

/**
 * Never allowed, whatever is added to ALLOWED later (checked by the unit tests): namespace
 * and mount manipulation, kernel modules and kexec, eBPF and perf, keyrings, raw io ports, swap,
 * clock and host-wide settings, open_by_handle_at (the "shocker" escape), modify_ldt (a 16-bit
 * segment surface behind several kernel bugs; Docker refuses it too), and the i386 multiplexers
 * socketcall and ipc, whose real arguments sit in memory that seccomp cannot read.
 */
export const FORBIDDEN: readonly string[] = [
  'modify_ldt', 'socketcall', 'ipc',
  'unshare', 'setns', 'mount', 'umount', 'umount2', 'pivot_root', 'move_mount',
  'open_tree', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr', 'bpf', 'perf_event_open',
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'keyctl',
  'add_key', 'request_key', 'userfaultfd', 'open_by_handle_at', 'iopl', 'ioperm', 'swapon',
  'swapoff', 'syslog', 'acct', 'settimeofday', 'stime', 'clock_settime', 'clock_settime64',
  'clock_adjtime', 'clock_adjtime64', 'adjtimex', 'reboot', 'quotactl', 'quotactl_fd',
  'lookup_dcookie', 'vm86', 'vm86old', 'nfsservctl', 'sethostname', 'setdomainname',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'uselib', '_sysctl', 'fanotify_init',
  'mbind', 'set_mempolicy', 'move_pages', 'migrate_pages', 'get_mempolicy', 'kcmp',
];

/**
 * ptrace is allowed, as Docker allows it on kernels >= 4.8: since 4.8 the kernel re-checks seccomp
 * after a tracer rewrites a syscall, so tracing cannot bypass this filter; the pid namespace limits
 * targets to the qube's own processes and CAP_SYS_PTRACE is not granted. Qubes users expect
 * gdb/strace to work inside a qube.
 */
export const ptraceNote = 'allowed (kernel >= 4.8 re-checks seccomp after ptrace)';

/** personality(2) values that only change reporting/ABI details (Docker's safe set). */
const SAFE_PERSONALITIES = [0x0, 0x0008, 0x20000, 0x20008, 0xffffffff];

/**
 * The only ABI a qube may call the kernel through. The host kernel also has the i386 table
 * (`int $0x80`, reachable from any 64-bit process) and may have x32 (numbers | 0x40000000): a rule
 * written for x86-64 numbers says nothing about them, so they are not filtered but refused as a
 * whole. libseccomp gives a syscall of an unlisted ABI the filter's bad-arch action, which runc
 * leaves at its default: the calling thread is killed with SIGSYS (test/integration/hostile-kernel).
 */
export const ARCHITECTURES: readonly string[] = ['SCMP_ARCH_X86_64'];

/** Builds a fresh copy of the profile (callers may serialise or extend it). */
export function seccompProfile(): SeccompProfile {
  const syscalls: SeccompRule[] = [{ names: [...ALLOWED], action: 'SCMP_ACT_ALLOW' }];
  for (const value of SAFE_PERSONALITIES) {
    syscalls.push({
      names: ['personality'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }],
    });
  }
  // AF_VSOCK would reach the hypervisor host of a VM-based host; nothing in a qube needs it.
  syscalls.push({
    names: ['socket'],
    action: 'SCMP_ACT_ALLOW',
    args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }],
  });
  // clone's flags are in arg 0 on x86; a masked compare lets plain fork/thread creation through.
  syscalls.push({
    names: ['clone'],
    action: 'SCMP_ACT_ALLOW',
    args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
  });
  // clone3 passes flags in memory that seccomp cannot inspect; ENOSYS makes glibc fall back to clone.
  syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: [...ARCHITECTURES],
    syscalls,
  };
}
