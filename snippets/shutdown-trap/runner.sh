#!/bin/bash
# shellcheck disable=SC2016 # profile values are quoted literals on purpose
# bootforge job runner for profile {{ profile.name }}. Generated: edit the profile, not this file.
# Phases run in order; every exit path goes through finalize (the EXIT trap).
set -uo pipefail
umask 022
export LC_ALL=C

JOB_ID={{ job.id }}
PROFILE={{ profile.name }}
JOB_DIR={{ job.log_dir ~ "/" ~ job.id }}
LOCAL_DIR={{ job.state_dir ~ "/jobs/" ~ job.id }}
STATE_DIR={{ job.state_dir }}
RUN_USER={{ job.user }}
TIMEOUT_S={{ job.timeout_seconds }}
KILL_AFTER_S={{ job.kill_after_seconds }}
POWEROFF={{ poweroff | string | lower }}
CLOUD_INIT_LOG={{ cloud_init_log }}

OUTCOME=
EXIT_CODE=
MESSAGE=
PHASE=
PHASE_START=0
PHASES=
LOGS_READY=0
GPU_NAME=
GPU_DRIVER=
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)

mkdir -p "$LOCAL_DIR"
LOG_FILE=$LOCAL_DIR/job.log

# The job's budget counts from boot, as stamped by the dead-man's switch.
BOOT_EPOCH=$(cat "$STATE_DIR/boot-epoch" 2>/dev/null) || BOOT_EPOCH=
case $BOOT_EPOCH in '' | *[!0-9]*) BOOT_EPOCH=$(date +%s) ;; esac
DEADLINE=$((BOOT_EPOCH + TIMEOUT_S))

stamp() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    TZ=UTC printf '%(%Y-%m-%dT%H:%M:%SZ)T %s\n' -1 "$line"
  done
}

log() {
  local line
  line=$(TZ=UTC printf '%(%Y-%m-%dT%H:%M:%SZ)T bootforge[%s] %s' -1 "$JOB_ID" "$*")
  printf '%s\n' "$line"
  printf '%s\n' "$line" >>"$LOG_FILE" 2>/dev/null || true
}

phase_end() {
  if [ -n "$PHASE" ]; then
    local took=$(($(date +%s) - PHASE_START))
    PHASES="$PHASES${PHASES:+, }\"$PHASE\": $took"
    log "phase $PHASE: done in ${took}s"
    PHASE=
  fi
}

phase() {
  phase_end
  [ "$1" = mount ] || ensure_logs
  PHASE=$1
  PHASE_START=$(date +%s)
  log "phase $PHASE: start"
}

# fail OUTCOME MESSAGE: end the job now with that outcome.
fail() {
  OUTCOME=$1
  MESSAGE=$2
  log "error: $MESSAGE"
  exit 1
}

# Move the log onto the job directory once the file system holding it is there.
ensure_logs() {
  [ "$LOGS_READY" = 1 ] && return 0
  if mkdir -p "$JOB_DIR" 2>/dev/null && cat "$LOG_FILE" >>"$JOB_DIR/job.log" 2>/dev/null; then
    chown "$RUN_USER" "$JOB_DIR" 2>/dev/null || true
    LOG_FILE=$JOB_DIR/job.log
    LOGS_READY=1
    log "logs go to $JOB_DIR"
  else
    log "warning: cannot write to $JOB_DIR; logs stay in $LOCAL_DIR"
  fi
}

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}

instance_data() {
  local v
  v=$(cloud-init query "$1" 2>/dev/null) && [ -n "$v" ] && { printf '%s' "$v"; return; }
  printf 'unknown'
}

finalize() {
  local rc=$?
  trap - EXIT
  trap '' TERM INT HUP
  set +e
  phase_end
  [ -n "$EXIT_CODE" ] || EXIT_CODE=$rc
  if [ -z "$OUTCOME" ]; then
    if [ "$rc" = 0 ]; then OUTCOME=succeeded; else OUTCOME=failed; fi
  fi
  local dest=$LOCAL_DIR
  [ "$LOGS_READY" = 1 ] && dest=$JOB_DIR
  local status
  status=$(printf '{"job_id": %s, "profile": %s, "instance_id": %s, "instance_type": %s, "outcome": %s, "exit_code": %s, "message": %s, "phases": %s, "gpu": {"name": %s, "driver": %s}, "started_at": %s, "ended_at": %s, "log": %s}' \
    "$(json_str "$JOB_ID")" "$(json_str "$PROFILE")" \
    "$(json_str "$(instance_data v1.instance_id)")" \
    "$(json_str "$(instance_data ds.meta_data.instance-type)")" \
    "$(json_str "$OUTCOME")" "$EXIT_CODE" "$(json_str "$MESSAGE")" "{$PHASES}" \
    "$(json_str "$GPU_NAME")" "$(json_str "$GPU_DRIVER")" \
    "$(json_str "$STARTED_AT")" "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" \
    "$(json_str "$dest/job.log")")
  log "job $OUTCOME (exit code $EXIT_CODE)"
  printf 'bootforge-status: %s\n' "$status"
  local d
  for d in "$LOCAL_DIR" "$dest"; do
    if ! { mkdir -p "$d" && printf '%s\n' "$status" >"$d/.status.json.tmp" &&
      mv -f "$d/.status.json.tmp" "$d/status.json"; }; then
      log "warning: could not write $d/status.json"
    fi
  done
  cp "$CLOUD_INIT_LOG" "$dest/cloud-init-output.log" 2>/dev/null ||
    log "note: no $CLOUD_INIT_LOG to copy"
  sync
  if [ "$POWEROFF" = true ]; then
    log "shutting down"
    shutdown -h now "bootforge: job $JOB_ID $OUTCOME"
  else
    log "poweroff is off: leaving the instance running (the dead-man's switch still fires)"
  fi
  exit "$EXIT_CODE"
}

trap finalize EXIT
trap 'MESSAGE="the runner received a signal"; exit 143' TERM INT HUP

log "job $JOB_ID (profile $PROFILE) starts; deadline in $((DEADLINE - $(date +%s)))s"
