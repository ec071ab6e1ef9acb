#!/bin/bash
# bootforge job runner (generated from profile {{ profile.name }})
{#
  Phases run in order; every exit goes through finalize (the EXIT trap).
  Comments in these braces stay out of the payload: every byte of it counts
  against EC2's 16 KB, and the README says what the runner does and why.
#}
set -uo pipefail; umask 022
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
OUTCOME='' EXIT_CODE='' MESSAGE='' PHASE='' PHASES='' LOGS_READY='' GPU_NAME='' GPU_DRIVER='' VENV='' i='' b='' t='' STALE=
printf -v STARTED_AT '%(%FT%TZ)T' -1
AS=()
[ $UID = 0 ] && AS=(runuser -u "$RUN_USER" --)
mkdir -p "$LOCAL_DIR"
LOG_FILE=$LOCAL_DIR/job.log
{# This run's identity: the instance (from cloud-init's instance data) and this boot. #}
INSTANCE_ID=$(cloud-init query v1.instance_id) || INSTANCE_ID=unknown
INSTANCE_TYPE=$(cloud-init query ds.meta_data.instance-type) || INSTANCE_TYPE=unknown
BOOT_ID=$(</proc/sys/kernel/random/boot_id)
RUN="$INSTANCE_ID $BOOT_ID"
{# The budget counts from this boot's stamp (by the dead-man's switch); another boot's or instance's is ignored. #}
read -r i b t _ 2>/dev/null <"$STATE_DIR/boot"
[ "$i $b" = "$RUN" ] && [[ $t =~ ^[0-9]+$ ]] || STALE="no stamp of this boot (${i:-none}): counting from now" t=$EPOCHSECONDS
DEADLINE=$((t + TIMEOUT_S))

{# stamp: stdin's lines, timestamped, appended to LOG_FILE and copied to the console without ever waiting for it (a slow console misses lines, the log keeps them). #}
STAMP='import os,sys,time
def o(p,f,e):
 try:return os.open(p,os.O_WRONLY|os.O_APPEND|f,420)
 except OSError:return e
F=o(sys.argv[1],os.O_CREAT,-1),o("/proc/self/fd/1",os.O_NONBLOCK,1);p=b""
while 1:
 d=os.read(0,65536);l=(p+d).split(b"\n");p=l.pop()
 if p and not d:l+=[p]
 t=time.strftime("%FT%TZ ").encode();b=t+(b"\n"+t).join(l)+b"\n"
 for f in F:
  try:l and os.write(f,b)
  except OSError:pass
 if not d:break'
stamp() { python3 -c "$STAMP" "$LOG_FILE"; }
log() { printf '%(%FT%TZ)T bootforge[%s] %s\n' -1 "$JOB_ID" "$*" | timeout 5 tee -a "$LOG_FILE" 2>/dev/null; }
own() { chown "$RUN_USER:" "$@"; }
{# gone PID SECONDS: whether PID (or -PGID) ends within SECONDS. #}
gone() { for ((n = $2 * 10; n > 0; n--)); do kill -0 -- "$1" 2>/dev/null || return 0; sleep .1; done; return 1; }
{# arm SECONDS NAME: power off then, whatever happens: a timer of PID 1 outside every unit and every shutdown, else a detached sleep. #}
arm() {
  timeout 10 systemd-run -q --unit="bootforge-$2" --on-active="$1" --timer-property=AccuracySec=1s \
    --timer-property=DefaultDependencies=no -p DefaultDependencies=no /bin/systemctl poweroff --force 2>/dev/null ||
    { setsid sh -c "sleep $1; poweroff -f" </dev/null &>/dev/null & }
}

{# phase NAME: the last phase ends (its time goes to PHASES), NAME starts; every phase but the mounts writes to the job's directory. #}
phase_end() { [ -z "$PHASE" ] && return; t=$((EPOCHSECONDS - t)) PHASES+="${PHASES:+, }\"$PHASE\": $t"; log "phase $PHASE: done in ${t}s"; PHASE=; }
phase() { phase_end; [ "$1" = mount ] || ensure_logs; PHASE=$1 t=$EPOCHSECONDS; log "phase $1: start"; }

{# fail OUTCOME MESSAGE: end the job now with that outcome. #}
fail() { OUTCOME=$1 MESSAGE=$2; log "error: $2"; exit 1; }

{# Once the file system holding the job's directory is there, the log and status go to it; an earlier run's files go to runs/ID first (never over anything), the launcher's claim stays. #}
ensure_logs() {
  [ -n "$LOGS_READY" ] && return
  local old='' ob='' f to n=1
  mkdir -p "$JOB_DIR" && read -r old ob 2>/dev/null <"$JOB_DIR/run-id"
  if [ "$old $ob" != "$RUN" ]; then
    set --
    for f in "$JOB_DIR"/* "$JOB_DIR"/.[!.]*; do
      case ${f##*/} in runs | claim.json | .claim* | '*' | '.[!.]*') ;; *) set -- "$@" "$f" ;; esac
    done
    to=$JOB_DIR/runs/${old:-unknown}
    while [ -e "$to" ]; do to=$JOB_DIR/runs/${old:-unknown}.$((++n)); done
    [ $# = 0 ] || { mkdir -p "$to" && mv -- "$@" "$to" && own "$JOB_DIR/runs" "$to" && log "an earlier run's files are in $to"; }
  fi
  if echo "$RUN" >"$JOB_DIR/run-id" && cat "$LOG_FILE" >>"$JOB_DIR/job.log"; then
    own "${JOB_DIR%/*}" "$JOB_DIR" "$JOB_DIR/job.log" "$JOB_DIR/run-id"
    LOG_FILE=$JOB_DIR/job.log LOGS_READY=1
    log "logs go to $JOB_DIR"
  else
    log "warning: cannot write to $JOB_DIR; logs stay in $LOCAL_DIR"
  fi
}

{# put DIR TEXT: DIR/status.json, atomically. #}
put() { echo "$2" >"$1/.status.json.tmp" && mv -f "$1/.status.json.tmp" "$1/status.json"; }

finalize() {
  local rc=$? s efs=$LOG_FILE
  trap - EXIT; trap '' TERM INT HUP
  {# Scheduled before anything touches the EFS: a hung NFS cannot hold the instance. #}
{% if poweroff %}
  arm "$FINAL_S" finalize
{% endif %}
  [ -n "$LOGS_READY" ] && LOG_FILE=$LOCAL_DIR/final.log && : >"$LOG_FILE"
  phase_end
  EXIT_CODE=${EXIT_CODE:-$rc}
  [ $rc = 0 ] && OUTCOME=${OUTCOME:-succeeded}
  OUTCOME=${OUTCOME:-failed}
  s=$(python3 -c 'import json,sys,time;a=sys.argv;print(json.dumps(dict(job_id=a[1],profile=a[2],instance_id=a[3],boot_id=a[4],instance_type=a[5],outcome=a[6],exit_code=int(a[7]),message=a[8],phases=json.loads("{"+a[9]+"}"),gpu=dict(name=a[10],driver=a[11]),started_at=a[12],ended_at=time.strftime("%FT%TZ"),log=a[13])))' \
    "$JOB_ID" "$PROFILE" "$INSTANCE_ID" "$BOOT_ID" "$INSTANCE_TYPE" "$OUTCOME" "$EXIT_CODE" "$MESSAGE" "$PHASES" "$GPU_NAME" "$GPU_DRIVER" "$STARTED_AT" "$efs")
  log "job $OUTCOME (exit code $EXIT_CODE)"
  echo "bootforge-status: $s"
  put "$LOCAL_DIR" "$s"
  if [ -n "$LOGS_READY" ]; then
    {# Whatever touches the EFS runs in one child, given half the finalizer's time. #}
    (cat "$LOG_FILE" >>"$efs" && put "$JOB_DIR" "$s" && cp {{ cloud_init_log }} "$JOB_DIR" && own "$JOB_DIR"/* &&
      sync "$JOB_DIR/status.json" "$efs") 2>/dev/null &
    gone $! $((FINAL_S / 2)) || { pkill -9 -P $!; kill -9 $!; log "warning: the EFS did not answer"; }
  fi
{% if poweroff %}
  shutdown -h now "bootforge: job $JOB_ID $OUTCOME"
{% else %}
  log "poweroff: false: staying up (the dead-man's switch still fires)"
{% endif %}
  exit "$EXIT_CODE"
}

trap finalize EXIT
trap 'MESSAGE="the runner received a signal"; exit 143' TERM INT HUP
log "job $JOB_ID starts (run $RUN); deadline in $((DEADLINE - EPOCHSECONDS))s"
[ -z "$STALE" ] || log "$STALE"
