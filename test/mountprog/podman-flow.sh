#!/usr/bin/env bash
# podman with tarstack-overlay as its mount_program, offline and without running a container (crun
# cannot start one in the sandbox): import a rootfs tar, create, mount, write and delete, umount,
# commit, image mount, and show what the new image holds. Runs inside `unshare -m` (a private mount
# namespace) with every podman path under $1, and /var/lib under a throwaway overlay, so the host's
# podman storage and caches are never touched.
# Usage: podman-flow.sh TMPROOT MOUNT_PROGRAM ROOTFS_TAR
set -euo pipefail
T=$1 PROG=$2 TAR=$3
mkdir -p "$T/varlib/upper" "$T/varlib/work" "$T/tmp"
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$T/varlib/upper,workdir=$T/varlib/work" /var/lib
cat > "$T/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$T/root"
runroot = "$T/runroot"
[storage.options.overlay]
mount_program = "$PROG"
mountopt = "nodev"
CONF
export CONTAINERS_STORAGE_CONF=$T/storage.conf TMPDIR=$T/tmp
p() { podman --tmpdir "$T/libpod" --events-backend=none --cgroup-manager=cgroupfs "$@"; }
cleanup() {
  local status=$?
  set +e
  p image umount --all >/dev/null 2>&1 || true
  p umount --all >/dev/null 2>&1 || true
  grep -o " $T/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  exit "$status"
}
trap cleanup EXIT
p import --quiet "$TAR" localhost/tarstack-base >/dev/null
p create --quiet --name c1 localhost/tarstack-base /bin/true >/dev/null
M=$(p mount c1)
echo "container-mount-type $(awk -v m="$M" '$2 == m { print $3 }' /proc/mounts)"
echo new > "$M/data/new"
echo changed >> "$M/data/modify"
rm "$M/data/gone"
rm -r "$M/data/sub"
mkdir "$M/data/newdir"
mv "$M/data/keepdir" "$M/data/moved"
p umount c1 >/dev/null
echo "after-umount-mounted $(awk -v m="$M" '$2 == m' /proc/mounts | wc -l)"
while pgrep -f -- "--serve-detached.*$M" >/dev/null; do sleep 0.1; done # it exits on the kernel's session end
echo "after-umount-daemons $(pgrep -f -- "--serve-detached.*$M" | wc -l)"
p commit --quiet c1 localhost/tarstack-committed >/dev/null
I=$(p image mount localhost/tarstack-committed)
echo "image-mount-type $(awk -v m="$I" '$2 == m { print $3 }' /proc/mounts)"
(cd "$I" && find . -mindepth 1 | LC_ALL=C sort | sed 's/^/entry /')
echo "modify $(tr '\n' '|' < "$I/data/modify")"
p image umount localhost/tarstack-committed >/dev/null
p rm c1 >/dev/null
p rmi --all >/dev/null
echo done
