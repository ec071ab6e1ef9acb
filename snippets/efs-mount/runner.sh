
# efs-mount
EFS_HOW={{ "nfs" if efs_utils == "never" else "" }}
{# no_tls WHY: plain NFS from now on, with a warning saying why (efs_utils: always refuses). #}
no_tls() {
{% if efs_utils == "always" %}
  fail mount_failed "no TLS mount (efs_utils: always): $1"
{% endif %}
  log "warning: mounting with plain NFS, without TLS: $1"
  EFS_HOW=nfs
  command -v mount.nfs4 >/dev/null || pkg nfs-utils {{ install_timeout_seconds }}
}
{# efs_mount FS_ID PATH MOUNT_POINT; TLS through amazon-efs-utils where it is or can be installed (once per boot). #}
efs_mount() {
  local fs=$1 sub=$2 at=$3 dns=$1.efs.{{ instance.region }}.amazonaws.com n=1 w=0
  until timeout 10 getent hosts "$dns" >/dev/null; do
    [ $w -ge {{ dns_wait_seconds }} ] && fail mount_failed "$dns did not resolve in ${w}s: is there a mount target in this zone?"
    sleep 5; w=$((w + 5))
  done
  mkdir -p "$at"
  if [ -z "$EFS_HOW" ]; then
    command -v mount.efs >/dev/null || pkg amazon-efs-utils {{ install_timeout_seconds }}
    if command -v mount.efs >/dev/null; then EFS_HOW=efs; else no_tls "amazon-efs-utils is missing"; fi
  fi
  while :; do
    if [ $EFS_HOW = efs ]; then set -- -t efs -o tls "$fs:$sub"; else set -- -t nfs4 -o {{ nfs_options }} "$dns:$sub"; fi
    timeout -k 5 {{ attempt_timeout_seconds }} mount "$@" "$at" 2>&1 | stamp
    mountpoint -q "$at" && log "mounted $fs:$sub on $at ($EFS_HOW, attempt $n)" && return
    [ $n -ge {{ attempts }} ] && fail mount_failed "could not mount $fs:$sub on $at ($EFS_HOW, $n attempts)"
    [ $EFS_HOW = efs ] && no_tls "the TLS mount failed"
    log "mount attempt $n failed; retrying in $((n * 5))s"
    sleep $((n++ * 5))
  done
}

phase mount
{% for m in mounts if job.log_dir is under(m.mount_point) %}
efs_mount {{ m.fs_id }} {{ m.path }} {{ m.mount_point }}
{% endfor %}
ensure_logs
{% for m in mounts if job.log_dir is not under(m.mount_point) %}
efs_mount {{ m.fs_id }} {{ m.path }} {{ m.mount_point }}
{% endfor %}
