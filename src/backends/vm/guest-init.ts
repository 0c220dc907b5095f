// The first program of an hvm qube, run from its initramfs: loads the drivers, mounts the qube's disks
// (found by serial, `isola-d<N>`), stacks its volumes as the host does for a sandbox (overlay of the
// layers, the run's changes on their scratch disk), and hands PID 1 to the agent. Its inputs are the
// host's: /isola/boot.conf, appended to the initramfs per start (boot-config.ts).

/** Where the guest library (agent, vport bridge, in-qube tools) is in the initramfs. */
export const INITRAMFS_GUEST_LIB = '/isola/lib';
/** The per-start settings the init sources. */
export const BOOT_CONF = '/isola/boot.conf';

export const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
fail() {
  echo "isola-init: $*; powering off" >&2
  poweroff -f
  sleep 5
}
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev || fail "cannot mount /proc, /sys and /dev"
# ctrl-alt-del (the host's graceful stop on q35) becomes SIGINT to PID 1 (the agent, once it runs) instead of
# an instant reset: set before any disk is mounted read-write, so that a stop during boot never resets under one.
echo 0 > /proc/sys/kernel/ctrl-alt-del || fail "cannot turn ctrl-alt-del into a signal"
while read -r m; do
  insmod "/lib/isola-modules/$m" || fail "cannot load the module $m"
done < /lib/isola-modules/modules.order
. ${BOOT_CONF} || fail "cannot read ${BOOT_CONF}"
ip link set lo up || fail "cannot bring up lo"
# The card, when the qube has a netvm: a /32 address, the gateway its only neighbour and its default
# route, as a sandbox's eth0 gets them (src/net/client-link.ts). The link behind it is the host's to make.
if [ -n "\${ISOLA_NET_IP:-}" ]; then
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  ip link set eth0 up && ip addr add "$ISOLA_NET_IP/32" dev eth0 && ip route add "$ISOLA_NET_GATEWAY/32" dev eth0 \
    && ip route add default via "$ISOLA_NET_GATEWAY" dev eth0 || fail "cannot configure eth0"
fi

# virtio-blk devices are probed as their modules load; give a slow host a moment all the same.
dev_of() {
  for i in 1 2 3 4 5 6 7 8 9 10; do
    for b in /sys/block/vd*; do
      [ "$(cat "$b/serial" 2>/dev/null)" = "isola-d$1" ] && { echo "/dev/\${b##*/}"; return 0; }
    done
    sleep 0.2
  done
  return 1
}
D=/run-disks
mkdir -p $D
for d in $ISOLA_DISKS; do
  n=\${d%%:*}
  dev=$(dev_of "$n") || fail "disk $n is missing"
  mkdir -p "$D/$n"
  # A read-only disk is a volume the host keeps mounted: its journal is the host's, never replayed here.
  if [ "\${d#*:}" = ro ]; then opts=ro,noload; else opts=rw; fi
  mount -t ext4 -o "$opts" "$dev" "$D/$n" || fail "cannot mount disk $n"
done

# stack TARGET "DISK:DIR ..." DISK:DIR: an overlay of the lower dirs (top first) with the run's upper.
stack() {
  lower=
  for l in $2; do lower="$lower\${lower:+:}$D/\${l%%:*}/\${l#*:}"; done
  up="$D/\${3%%:*}/\${3#*:}"
  mount -t overlay isola -o "lowerdir=$lower,upperdir=$up,workdir=\${up%/*}/work,index=off,xino=off,redirect_dir=off,metacopy=off" "$1"
}
R=/newroot
mkdir -p $R
stack $R "$ISOLA_ROOT_LOWER" "$ISOLA_ROOT_UPPER" || fail "cannot assemble the root volume"
mkdir -p $R/rw $R/home $R/run $R/usr/lib/isola
stack $R/rw "$ISOLA_PRIVATE_LOWER" "$ISOLA_PRIVATE_UPPER" || fail "cannot assemble the private volume"
mkdir -p $R/rw/home
mount --bind $R/rw/home $R/home || fail "cannot mount /home"

mount -t tmpfs -o nosuid,nodev,mode=755 run $R/run || fail "cannot mount /run"
mkdir -p $R/run/isola/disks $R/run/qubes
chmod 700 $R/run/isola/disks
# Kept reachable after switch_root: the agent remounts them read-only before it powers off.
for d in $ISOLA_DISKS; do
  n=\${d%%:*}
  mkdir -p "$R/run/isola/disks/$n" && mount --move "$D/$n" "$R/run/isola/disks/$n" || fail "cannot move disk $n"
done
mount -t tmpfs -o mode=755,size=64m isola-lib $R/usr/lib/isola && cp -a ${INITRAMFS_GUEST_LIB}/. $R/usr/lib/isola/ \\
  && mount -o remount,ro,bind,nodev,nosuid $R/usr/lib/isola || fail "cannot install the guest library"
echo "$ISOLA_HOSTNAME" > /proc/sys/kernel/hostname
mount --move /dev $R/dev && mount --move /proc $R/proc && mount --move /sys $R/sys || fail "cannot move /dev, /proc, /sys"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts $R/dev/pts
rm -f $R/dev/ptmx && ln -s pts/ptmx $R/dev/ptmx
mount -t tmpfs -o nosuid,nodev,mode=1777 shm $R/dev/shm

# A background job's stdin is the shell's /dev/null: the initramfs' own, since its /dev moved above.
mknod -m 666 /dev/null c 1 3
chroot $R /usr/lib/isola/isola-vport-bridge --agent-port org.isola.agent --agent-socket /run/isola/agent.sock \\
  --client-port org.isola.client --client-socket /run/qubes/qrexec-client.sock &
# The channel's endpoints in the guest are the bridge's sockets: each is bound onto itself, so that no file
# operation of a guest process (rm, rename, a symlink in its place) can remove or swap it, as a sandbox's
# are bound in from the host (channel-endpoint-swap). The guest's root could still unmount them: it owns
# this kernel, and breaking its own channel reaches nothing of the host's.
for s in $R/run/isola/agent.sock $R/run/qubes/qrexec-client.sock; do
  i=0
  while [ ! -S "$s" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
  mount --bind "$s" "$s" || fail "the vport bridge did not listen at \${s#$R}"
done
exec switch_root $R /usr/lib/isola/isola-agent
fail "cannot start the agent"
`;
