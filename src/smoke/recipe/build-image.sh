#!/bin/bash
# Builds the smoke-test image without a registry: a Debian bookworm root made
# by debootstrap, booting systemd as PID 1 with the distribution's own
# cloud-init units, plus the stand-ins below; packed by `docker import`.
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
# systemd as PID 1 with cloud-init's own units; python3-venv and sshd as on
# Amazon Linux; fuse and python3-fusepy for the EFS stand-in; iproute2 to
# give the loopback the metadata service's address; squashfs-tools for the
# requirements' cache images (the runner installs it on Amazon Linux).
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,cloud-init,python3,python3-cffi-backend,python3-venv,python3-pip,procps,util-linux,ca-certificates,openssh-server,fuse3,python3-fusepy,iproute2,squashfs-tools \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

# A machine id per boot, as an AMI has none until it first boots.
: >"$rootfs/etc/machine-id"
# The user the pipeline runs as on the Deep Learning AMI.
chroot "$rootfs" useradd --create-home --uid 1000 --shell /bin/bash ec2-user

# What a container has no use for, masked so the boot is quick.
for unit in getty@tty1.service console-getty.service systemd-logind.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer systemd-tmpfiles-clean.timer \
    cloud-init-hotplugd.socket; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done

# The shutdown family stays the real systemctl; a shim records each call
# first (the container stopping is the power-off itself).
for tool in shutdown poweroff halt reboot; do
    rm -f "$rootfs/sbin/$tool" "$rootfs/usr/sbin/$tool"
    install -m 0755 "$files/record-shutdown" "$rootfs/usr/sbin/$tool"
done
# Stand-ins only for what a container cannot have: the NFS mount of the EFS
# (a FUSE server of a host folder) and the GPU.
install -m 0755 "$files/mount-helper" "$rootfs/usr/sbin/mount.nfs4"
install -m 0755 "$files/mount-helper" "$rootfs/usr/sbin/mount.nfs"
install -m 0755 "$files/smoke-efs" "$rootfs/usr/local/sbin/smoke-efs"
install -m 0755 "$files/nvidia-smi" "$rootfs/usr/bin/nvidia-smi"
install -m 0644 "$files/99-smoke.cfg" "$rootfs/etc/cloud/cloud.cfg.d/99-smoke.cfg"
# The instance metadata service where the payload looks for it,
# 169.254.169.254:80, given to the loopback (the container needs
# CAP_NET_ADMIN; without it there is no metadata service, as off EC2).
install -m 0755 "$files/smoke-imds" "$rootfs/usr/local/sbin/smoke-imds"
cat >"$rootfs/etc/systemd/system/smoke-imds.service" <<'UNIT'
[Unit]
Description=Instance metadata service stand-in (IMDSv2)
DefaultDependencies=no
Before=cloud-init-local.service

[Service]
ExecStartPre=/sbin/ip addr replace 169.254.169.254/32 dev lo
ExecStart=/usr/local/sbin/smoke-imds

[Install]
WantedBy=sysinit.target
UNIT
mkdir -p "$rootfs/etc/systemd/system/sysinit.target.wants"
ln -sf /etc/systemd/system/smoke-imds.service "$rootfs/etc/systemd/system/sysinit.target.wants/smoke-imds.service"
# Amazon Linux 2023's ordering of cloud-init's units, for the boots that
# ask for it (a generator puts them in place; see recipe/al2023/README.md).
mkdir -p "$rootfs/usr/local/share/smoke/al2023" "$rootfs/etc/systemd/system-generators"
for unit in cloud-init-local cloud-init cloud-config cloud-final; do
    install -m 0644 "$files/al2023-$unit.service" "$rootfs/usr/local/share/smoke/al2023/$unit.service"
done
install -m 0755 "$files/smoke-ordering" "$rootfs/etc/systemd/system-generators/smoke-ordering"
# When cloud-init starts, for the timings.
mkdir -p "$rootfs/etc/systemd/system/cloud-init-local.service.d"
cat >"$rootfs/etc/systemd/system/cloud-init-local.service.d/smoke.conf" <<'UNIT'
[Service]
ExecStartPre=/bin/sh -c 'echo "cloud-init-start $(date +%%s.%%N)" >>/smoke/records/timeline'
UNIT

# A local wheelhouse (pip never reaches the network here): one package of
# 2,000 modules, as heavy to install as a real dependency.
mkdir -p "$rootfs/opt/wheels"
chroot "$rootfs" python3 - <<'PY'
import base64, hashlib, zipfile
name, version = "bootforge_fixture", "1.0"
files = {f"{name}/__init__.py": "VERSION = '1.0'\n"}
for i in range(2000):
    files[f"{name}/m{i:04}.py"] = "".join(f"def f{j}(x):\n    return x + {j}\n" for j in range(60))
dist = f"{name}-{version}.dist-info"
files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: bootforge\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
def record(path, text):
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(text.encode())}\n"
rec = "".join(record(p, t) for p, t in files.items()) + f"{dist}/RECORD,,\n"
files[f"{dist}/RECORD"] = rec
with zipfile.ZipFile(f"/opt/wheels/{name}-{version}-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        z.writestr(path, text)
PY
# A real computer-vision stack beside it (numpy, pandas, scipy, pillow,
# opencv: 121 MB of wheels, about 9,700 files installed), pinned with their
# hashes, for the requirements benchmark: fetched by this machine's pip for
# the image's Python, since the image never reaches the network.
python=$(chroot "$rootfs" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
download() {
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        --only-binary=:all: --implementation cp --python-version "$python" \
        --platform manylinux2014_x86_64 -d "$@"
}
download "$rootfs/opt/wheels" -r "$files/requirements-cv.txt"
# uv, as the runner installs it (pip, pinned and hashed), in a folder of
# its own: a scenario leaves it out of pip's index to take uv away.
download "$rootfs/opt/uv" -r "$files/uv.txt"

mkdir -p "$rootfs/var/lib/cloud/seed/nocloud" "$rootfs/smoke"
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*

tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
    - "$tag" >/dev/null
rm -rf "$rootfs"
echo "built $tag" >&2
