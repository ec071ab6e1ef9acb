
# --- efs-mount: mount the file systems the job reads and writes ---
REGION={{ instance.region }}
EFS_UTILS={{ efs_utils }}
NFS_OPTIONS={{ nfs_options }}
DNS_WAIT_S={{ dns_wait_seconds }}
MOUNT_ATTEMPTS={{ attempts }}
INSTALL_TIMEOUT_S={{ install_timeout_seconds }}

have_efs_utils() {
  case $EFS_UTILS in
    never) return 1 ;;
  esac
  command -v mount.efs >/dev/null 2>&1 && return 0
  [ "$INSTALL_TIMEOUT_S" -gt 0 ] && command -v dnf >/dev/null 2>&1 || return 1
  log "installing amazon-efs-utils (at most ${INSTALL_TIMEOUT_S}s)"
  timeout -k 10 "$INSTALL_TIMEOUT_S" dnf -y -q install amazon-efs-utils 2>&1 | stamp
  command -v mount.efs >/dev/null 2>&1
}

# efs_mount FS_ID PATH MOUNT_POINT
efs_mount() {
  local fs=$1 sub=$2 at=$3
  local dns="$fs.efs.$REGION.amazonaws.com"
  if mountpoint -q "$at" 2>/dev/null; then
    log "$at is already a mount point"
    return 0
  fi
  local waited=0
  until getent hosts "$dns" >/dev/null 2>&1; do
    if [ "$waited" -ge "$DNS_WAIT_S" ]; then
      fail mount_failed "$dns did not resolve within ${DNS_WAIT_S}s: the file system needs a mount target in this instance's availability zone"
    fi
    sleep 5
    waited=$((waited + 5))
  done
  log "$dns resolves (after ${waited}s)"
  mkdir -p "$at" || fail mount_failed "cannot create mount point $at"
  local how=nfs
  if [ "$EFS_UTILS" != never ] && have_efs_utils; then
    how=efs
  elif [ "$EFS_UTILS" = always ]; then
    fail mount_failed "amazon-efs-utils is required (efs_utils: always) but could not be installed"
  elif [ "$INSTALL_TIMEOUT_S" -gt 0 ] && ! command -v mount.nfs4 >/dev/null 2>&1 && command -v dnf >/dev/null 2>&1; then
    log "installing nfs-utils (at most ${INSTALL_TIMEOUT_S}s)"
    timeout -k 10 "$INSTALL_TIMEOUT_S" dnf -y -q install nfs-utils 2>&1 | stamp
  fi
  local attempt=1 pause=2
  while :; do
    if [ "$how" = efs ]; then
      mount -t efs -o tls "$fs:$sub" "$at" 2>&1 | stamp
    else
      mount -t nfs4 -o "$NFS_OPTIONS" "$dns:$sub" "$at" 2>&1 | stamp
    fi
    if mountpoint -q "$at"; then
      log "mounted $fs:$sub on $at ($how, attempt $attempt)"
      return 0
    fi
    if [ "$attempt" -ge "$MOUNT_ATTEMPTS" ]; then
      fail mount_failed "could not mount $fs:$sub on $at ($how) after $attempt attempts"
    fi
    log "mount of $fs:$sub on $at failed (attempt $attempt); retrying in ${pause}s"
    sleep "$pause"
    attempt=$((attempt + 1))
    pause=$((pause * 2 > 30 ? 30 : pause * 2))
  done
}

phase mount
{% for m in mounts %}
efs_mount {{ m.fs_id }} {{ m.path }} {{ m.mount_point }}
{% endfor %}
phase_end
ensure_logs
