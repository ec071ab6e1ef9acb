#!/bin/bash
# Builds the smoke-test image without a registry: a Debian root with real
# cloud-init made by debootstrap, the stand-ins below, packed by docker import.
# Usage: build-image.sh WORK_DIR FILES_DIR TAG
set -euo pipefail
work=$1 files=$2 tag=$3
rootfs=$work/rootfs

# The mirror this machine already uses (its apt sources), never a fixed one.
mirror=$(
    {
        grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
        grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    } | grep -v security | head -n 1
)
if [ -z "$mirror" ]; then
    echo "no Debian mirror in this machine's apt sources" >&2
    exit 2
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

rm -rf "$rootfs"
mkdir -p "$rootfs"
echo "debootstrap bookworm into $rootfs" >&2
debootstrap --variant=minbase \
    --include=cloud-init,python3,python3-cffi-backend,python3-pip,procps,util-linux,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

# The user the pipeline runs as on the Deep Learning AMI.
chroot "$rootfs" useradd --create-home --uid 1000 --shell /bin/bash ec2-user

# Stand-ins for what a container lacks or must not do for real.
for tool in shutdown poweroff halt reboot; do
    rm -f "$rootfs/sbin/$tool" "$rootfs/usr/sbin/$tool"
    install -m 0755 "$files/shutdown" "$rootfs/usr/sbin/$tool"
done
install -m 0755 "$files/mount-helper" "$rootfs/usr/sbin/mount.nfs4"
install -m 0755 "$files/mount-helper" "$rootfs/usr/sbin/mount.nfs"
install -m 0755 "$files/nvidia-smi" "$rootfs/usr/bin/nvidia-smi"
install -m 0755 "$files/smoke-init" "$rootfs/usr/local/sbin/smoke-init"
install -m 0644 "$files/99-smoke.cfg" "$rootfs/etc/cloud/cloud.cfg.d/99-smoke.cfg"
mkdir -p "$rootfs/var/lib/cloud/seed/nocloud" "$rootfs/smoke"
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*

tar -C "$rootfs" -c . | docker import -c 'CMD ["/usr/local/sbin/smoke-init"]' - "$tag" >/dev/null
rm -rf "$rootfs"
echo "built $tag" >&2
