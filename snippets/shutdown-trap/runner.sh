#!/bin/bash
# bootforge job runner (generated from profile {{ profile.name }})
{#
  Phases run in order; every exit goes through finalize (the EXIT trap).
  docs/instance.md says what the runner does and why; the comments here say what
  a reader of this script on an instance needs to follow it.
#}
set -uo pipefail
umask 022
export LC_ALL=C TZ=UTC

JOB_ID={{ job.id }}
PROFILE={{ profile.name }}
JOB_DIR={{ job.log_dir ~ "/" ~ job.id }}
STATE_DIR={{ job.state_dir }}
LOCAL_DIR=$STATE_DIR/jobs/$JOB_ID
RUN_USER={{ job.user }}
TIMEOUT_S={{ job.timeout_seconds }}
KILL_AFTER_S={{ job.kill_after_seconds }}
FINAL_S={{ finalize_seconds }}
# The helpers written beside the runner (/usr/local/lib/bootforge).
LIB=$(cd "${BASH_SOURCE[0]%/*}/../lib/bootforge" 2>/dev/null && pwd) || LIB=/usr/local/lib/bootforge
BOOT_ID=$(</proc/sys/kernel/random/boot_id)

# Under systemd the runner is a service of its own, bootforge-job, ordered
# after the file systems that hold the job's directory: on any shutdown
# from outside (a terminate, a stop, a spot interruption) systemd stops it
# first, and gives it time to finalize, before it unmounts them. cloud-final
# waits for it, so power_state still comes after it, and its output goes
# to the console as before. Where systemd cannot start it, it runs here.
if [ -d /run/systemd/system ] && [ "${BOOTFORGE_UNIT:-}" != bootforge-job ]; then
  systemd-run --quiet --wait --pipe --collect --unit=bootforge-job \
    --property="RequiresMountsFor=\"$JOB_DIR\"" \
    --property=TimeoutStopSec=$((KILL_AFTER_S + FINAL_S + 15)) \
    --setenv=BOOTFORGE_UNIT=bootforge-job "$0"
  rc=$?
  [ "$(cat "$STATE_DIR/runner-boot" 2>/dev/null)" = "$BOOT_ID" ] && exit $rc
  echo "bootforge: warning: cannot run the job as the service bootforge-job (systemd-run: exit code $rc); running it in cloud-final"
fi
mkdir -p "$LOCAL_DIR"
echo "$BOOT_ID" >"$STATE_DIR/runner-boot"

OUTCOME='' EXIT_CODE='' MESSAGE='' PHASE='' PHASES='' LOGS_READY='' SHUTDOWN='' NOTICE='' TRAPPED=''
ENV_HOW='' ENV_FILES='' ENV_BYTES='' ENV_SECONDS='' MOUNTED_ENV=''
GPU_NAME='' GPU_DRIVER='' VENV='' RUN_NO='' i='' b='' t='' STALE=''
printf -v STARTED_AT '%(%FT%TZ)T' -1
AS=()
[ $UID = 0 ] && AS=(runuser -u "$RUN_USER" --)
LOG_FILE=$LOCAL_DIR/job.log

# This run's identity: the instance (from cloud-init's instance data) and
# this boot.
INSTANCE_ID=$(cloud-init query v1.instance_id) || INSTANCE_ID=unknown
INSTANCE_TYPE=$(cloud-init query ds.meta_data.instance-type) || INSTANCE_TYPE=unknown
RUN="$INSTANCE_ID $BOOT_ID"

# The budget counts from this boot's stamp (written by the dead-man's
# switch); another boot's or another instance's is ignored.
read -r i b t _ 2>/dev/null <"$STATE_DIR/boot"
if [ "$i $b" != "$RUN" ] || ! [[ $t =~ ^[0-9]+$ ]]; then
  STALE="no stamp of this boot (${i:-none}): counting from now"
  t=$EPOCHSECONDS
fi
DEADLINE=$((t + TIMEOUT_S))

# stamp: stdin's lines, timestamped, to the log and the console.
stamp() {
  python3 "$LIB/stamp" "$LOG_FILE"
}

log() {
  printf '%(%FT%TZ)T bootforge[%s] %s\n' -1 "$JOB_ID" "$*" | timeout 5 tee -a "$LOG_FILE" 2>/dev/null
}

own() {
  chown "$RUN_USER:" "$@"
}

# pkg PACKAGE SECONDS: PACKAGE installed by dnf (Amazon Linux), bounded;
# fails where there is no dnf, or no time for it (SECONDS 0).
pkg() {
  command -v dnf >/dev/null && [ "$2" -gt 0 ] || return 1
  log "installing $1"
  timeout -k 10 "$2" dnf -y -q install "$1" 2>&1 | stamp
}

# gone PID SECONDS: whether PID (or -PGID) ends within SECONDS.
gone() {
  local n
  for ((n = $2 * 10; n > 0; n--)); do
    kill -0 -- "$1" 2>/dev/null || return 0
    sleep .1
  done
  return 1
}

# arm SECONDS NAME: power off then, whatever happens: a timer of PID 1,
# outside every unit and every shutdown; without systemd, a detached sleep.
arm() {
  timeout 10 systemd-run -q --unit="bootforge-$2" --on-active="$1" --timer-property=AccuracySec=1s \
    --timer-property=DefaultDependencies=no -p DefaultDependencies=no /bin/systemctl poweroff --force 2>/dev/null ||
    { setsid sh -c "sleep $1; poweroff -f" </dev/null &>/dev/null & }
}

# phase NAME: the current phase ends (its seconds go to PHASES) and NAME
# starts. Every phase but the mounts writes to the job's directory.
phase_end() {
  [ -z "$PHASE" ] && return
  t=$((EPOCHSECONDS - t))
  PHASES+="${PHASES:+, }\"$PHASE\": $t"
  log "phase $PHASE: done in ${t}s"
  PHASE=
}

phase() {
  phase_end
  [ "$1" = mount ] || ensure_logs
  PHASE=$1 t=$EPOCHSECONDS
  log "phase $1: start"
}

# fail OUTCOME MESSAGE: end the job now with that outcome.
fail() {
  OUTCOME=$1 MESSAGE=$2
  log "error: $2"
  exit 1
}

# The run number of the job, from the launcher's claim in its directory
# (none without one): attempts of one run share its checkpoint folder. The
# claim is copied to local disk while the EFS answers, so that the status
# (attempt, market, price) never waits for a hung EFS.
claimed_run() {
  rm -f "$LOCAL_DIR/claim.json"
  timeout 10 cp "$JOB_DIR/claim.json" "$LOCAL_DIR/claim.json" 2>/dev/null &&
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["run"])' \
      "$LOCAL_DIR/claim.json" 2>/dev/null
}

# Once the file system holding the job's directory is there, the log and
# the status go to it. An earlier run's files go to runs/INSTANCE first
# (never over anything); the launcher's claim stays, and so does the
# checkpoint folder when the earlier files are an attempt of this run.
ensure_logs() {
  [ -n "$LOGS_READY" ] && return
  local old='' old_boot='' old_run='' f to n=1
  mkdir -p "$JOB_DIR" && read -r old old_boot old_run 2>/dev/null <"$JOB_DIR/run-id"
  RUN_NO=$(claimed_run)
  if [ "$old $old_boot" != "$RUN" ]; then
    set --
    for f in "$JOB_DIR"/* "$JOB_DIR"/.[!.]*; do
      case ${f##*/} in
        runs | claim.json | .claim* | '*' | '.[!.]*') ;;
        checkpoint) [ "$old_run" = "$RUN_NO" ] || set -- "$@" "$f" ;;
        *) set -- "$@" "$f" ;;
      esac
    done
    to=$JOB_DIR/runs/${old:-unknown}
    while [ -e "$to" ]; do
      to=$JOB_DIR/runs/${old:-unknown}.$((++n))
    done
    if [ $# != 0 ]; then
      mkdir -p "$to" && mv -- "$@" "$to" && own "$JOB_DIR/runs" "$to" && log "an earlier run's files are in $to"
    fi
  fi
  if echo "$RUN${RUN_NO:+ $RUN_NO}" >"$JOB_DIR/run-id" && cat "$LOG_FILE" >>"$JOB_DIR/job.log"; then
    own "${JOB_DIR%/*}" "$JOB_DIR" "$JOB_DIR/job.log" "$JOB_DIR/run-id"
    LOG_FILE=$JOB_DIR/job.log LOGS_READY=1
    log "logs go to $JOB_DIR${RUN_NO:+ (run $RUN_NO)}"
  else
    log "warning: cannot write to $JOB_DIR; logs stay in $LOCAL_DIR"
  fi
}

# status FINAL: the status document now (FINAL 0 for one written ahead of
# the end, on a spot notice).
status() {
  python3 "$LIB/status" final="$1" job_id="$JOB_ID" profile="$PROFILE" run="$RUN_NO" \
    instance_id="$INSTANCE_ID" boot_id="$BOOT_ID" instance_type="$INSTANCE_TYPE" \
    outcome="$OUTCOME" exit_code="$EXIT_CODE" message="$MESSAGE" phases="$PHASES" \
    gpu_name="$GPU_NAME" gpu_driver="$GPU_DRIVER" notice="$NOTICE" \
    started_at="$STARTED_AT" log="$JOB_DIR/job.log" claim="$LOCAL_DIR/claim.json" \
    env_how="$ENV_HOW" env_files="$ENV_FILES" env_bytes="$ENV_BYTES" \
    env_seconds="$ENV_SECONDS"
}

# put DIR TEXT: DIR/status.json, atomically.
put() {
  echo "$2" >"$1/.status.json.tmp" && mv -f "$1/.status.json.tmp" "$1/status.json"
}

# bounded SECONDS: the child just started in the background, which touches
# the EFS, is given SECONDS (a hung NFS cannot hold the runner); whether it
# ended in time and succeeded.
bounded() {
  local child=$!
  gone "$child" "$1" && wait "$child" && return
  pkill -9 -P "$child"
  kill -9 "$child" 2>/dev/null
  log "warning: the EFS did not answer within $1s, or refused the write"
  return 1
}

finalize() {
  local rc=$? s efs=$LOG_FILE
  # Only the runner itself finalizes: a child shell of it (a pipeline, a
  # process substitution) that a shutdown's SIGTERM ends must not write a
  # status of its own.
  [ "$BASHPID" = "$$" ] || exit "$rc"
  trap - EXIT
  trap '' TERM INT HUP USR1
{% if poweroff %}
  # Scheduled before anything touches the EFS: a hung NFS cannot hold the
  # instance.
  arm "$FINAL_S" finalize
{% endif %}
  [ -n "$LOGS_READY" ] && LOG_FILE=$LOCAL_DIR/final.log && : >"$LOG_FILE"
  phase_end
  # The requirements' environment mounted from the cache: unmounted once
  # the pipeline has ended, before the EFS is written to.
  if [ -n "$MOUNTED_ENV" ]; then
    timeout 10 umount "$MOUNTED_ENV" 2>/dev/null || umount -l "$MOUNTED_ENV"
    log "unmounted $MOUNTED_ENV"
  fi
  EXIT_CODE=${EXIT_CODE:-$rc}
  [ $rc = 0 ] && OUTCOME=${OUTCOME:-succeeded}
  OUTCOME=${OUTCOME:-failed}
  s=$(status 1)
  log "job $OUTCOME (exit code $EXIT_CODE)"
  echo "bootforge-status: $s"
  put "$LOCAL_DIR" "$s"
  if [ -n "$LOGS_READY" ]; then
    # Every EFS write in one child, given half the finalizer's time.
    (cat "$LOG_FILE" >>"$efs" && put "$JOB_DIR" "$s" && cp {{ cloud_init_log }} "$JOB_DIR" &&
      own "$JOB_DIR"/* && sync "$JOB_DIR/status.json" "$efs") 2>/dev/null &
    bounded $((FINAL_S / 2))
  fi
{% if poweroff %}
  shutdown -h now "bootforge: job $JOB_ID $OUTCOME"
{% else %}
  log "poweroff: false: staying up (the dead-man's switch still fires)"
{% endif %}
  exit "$EXIT_CODE"
}

# A shutdown from outside (systemd stopping the runner's service): the job
# is interrupted. While the pipeline runs, it gets SIGTERM too (systemd
# stops its unit; a session is signalled here) and the runner finalizes
# once it has ended; in any other phase the runner finalizes at once.
on_term() {
  [ "$BASHPID" = "$$" ] || exit 143
  SHUTDOWN=1 TRAPPED=1
  log "the instance is shutting down (SIGTERM) during phase ${PHASE:-start}"
  if [ "$PHASE" = run ] && [ -n "${pid:-}" ]; then
    signal_pipeline TERM
    return
  fi
  EXIT_CODE=143
  fail interrupted "the instance was shut down during phase ${PHASE:-start}"
}

trap finalize EXIT
trap on_term TERM INT HUP
log "job $JOB_ID starts (run $RUN); deadline in $((DEADLINE - EPOCHSECONDS))s"
[ -z "$STALE" ] || log "$STALE"
