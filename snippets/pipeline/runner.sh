
# pipeline
pid=''
phase run
SCRIPT={{ script }}
{% if workdir == "/" %}
WORKDIR=${SCRIPT%/*}
{% else %}
WORKDIR={{ workdir }}
{% endif %}
OUTPUT_DIR=${LOG_FILE%/*}/{{ output_dir }}
# Kept across the attempts of one run (a retry after a spot interruption
# finds what the last attempt wrote); a new run starts with an empty one.
CHECKPOINT_DIR=${LOG_FILE%/*}/checkpoint
NOTICE_FILE=$LOCAL_DIR/notice.json
[ -f "$SCRIPT" ] || {
  EXIT_CODE=127
  fail failed "$SCRIPT is missing: is its file system mounted?"
}
mkdir -p "$OUTPUT_DIR" "$CHECKPOINT_DIR" && own "$OUTPUT_DIR" "$CHECKPOINT_DIR" "$LOG_FILE"
left=$((DEADLINE - EPOCHSECONDS))
[ $left -gt 0 ] || {
  EXIT_CODE=124
  fail timed_out "no time left for the pipeline"
}

# Its user's login-like environment (HOME and SHELL from runuser or
# systemd), the requirements' environment active, CUDA on PATH.
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
[ -d /usr/local/cuda/bin ] && path=/usr/local/cuda/bin:$path
env=(
  PATH="${VENV:+$VENV/bin:}$path" ${VENV:+"VIRTUAL_ENV=$VENV"}
  USER="$RUN_USER" LOGNAME="$RUN_USER" LANG=C.UTF-8
  JOB_ID="$JOB_ID" JOB_DIR="$JOB_DIR" OUTPUT_DIR="$OUTPUT_DIR" LOG_FILE="$LOG_FILE"
  CHECKPOINT_DIR="$CHECKPOINT_DIR"
{% for name, value in env | items %}
  {{ name ~ "=" ~ value }}
{% endfor %}
)
cmd=(timeout --foreground -k "$KILL_AFTER_S" "$left")
[ -x "$SCRIPT" ] || cmd+=(bash)
cmd+=("$SCRIPT" {{ args }})

# Under systemd a unit of its own: when its main process ends, whatever it
# started ends too, and a shutdown stops it before the file systems it
# uses are unmounted. Elsewhere a session of its own.
if [ -d /run/systemd/system ]; then
  how=unit
  run=(systemd-run -q --wait --pipe --collect --unit=bootforge-pipeline -p User="$RUN_USER"
    -p WorkingDirectory="$WORKDIR" -p TimeoutStopSec="$KILL_AFTER_S"
    -p "RequiresMountsFor=\"$JOB_DIR\" \"$WORKDIR\"${MOUNTED_ENV:+ \"$MOUNTED_ENV\"}")
  for e in "${env[@]}"; do
    run+=(-E "$e")
  done
  # systemd counts a main process ended by SIGTERM as a success: a stopped
  # unit must not say 0.
  run+=(sh -c 'trap "exit 143" TERM; "$@" & wait $!' sh "${cmd[@]}")
else
  how=session
  run=(setsid env -i "${env[@]}" "${AS[@]}" "${cmd[@]}")
fi

# signal_pipeline SIGNAL: to every process of the pipeline. Its unit gets
# SIGTERM as a stop job: a shutdown stops the unit too, and the two jobs
# merge into one SIGTERM (a second one could end what the pipeline's own
# SIGTERM handler starts).
signal_pipeline() {
  if [ $how = unit ] && [ "$1" = TERM ]; then
    systemctl stop --no-block bootforge-pipeline.service 2>/dev/null
  elif [ $how = unit ]; then
    systemctl kill --signal="$1" bootforge-pipeline.service 2>/dev/null
  else
    kill -"$1" -- -"$pid" 2>/dev/null
  fi
}

# A spot interruption notice (from spot-watch): the status says
# `interrupted` on the EFS at once, the pipeline gets SIGTERM (its cue to
# checkpoint into CHECKPOINT_DIR), and SIGKILL at kill_after or before the
# action time, leaving the finalizer its margin, whichever comes first.
on_notice() {
  local action_at=$EPOCHSECONDS kill_in s
  [ "$BASHPID" = "$$" ] || return
  TRAPPED=1
  NOTICE=$(<"$NOTICE_FILE") || return
  [[ $NOTICE =~ \"action_epoch\":\ ([0-9]+) ]] && action_at=${BASH_REMATCH[1]}
  OUTCOME=interrupted EXIT_CODE=143 MESSAGE="spot interruption notice: the instance goes at $(date -u -d "@$action_at" +%FT%TZ)"
  log "$MESSAGE; asking the pipeline to checkpoint (SIGTERM)"
  s=$(status 0)
  put "$JOB_DIR" "$s" 2>/dev/null &
  bounded $((FINAL_S / 2)) && log "the status on the EFS says interrupted"
  signal_pipeline TERM
  kill_in=$((action_at - EPOCHSECONDS - FINAL_S / 2 - 10))
  [ $kill_in -gt "$KILL_AFTER_S" ] && kill_in=$KILL_AFTER_S
  [ $kill_in -lt 1 ] && kill_in=1
  log "SIGKILL in ${kill_in}s if the pipeline has not ended"
  {
    trap - EXIT TERM INT HUP USR1
    sleep "$kill_in" && signal_pipeline KILL && log "SIGKILL to the pipeline"
  } &
  killer=$!
}

log "running $SCRIPT as $RUN_USER ($how) for at most ${left}s"
rm -f "$NOTICE_FILE"
killer=''
trap on_notice USR1
# The stamp's own process (exec), so that $! is what the end of the run
# may have to end.
exec 3> >(exec python3 "$LIB/stamp" "$LOG_FILE")
sp=$!
(cd "$WORKDIR" && exec "${run[@]}") </dev/null >&3 2>&3 &
pid=$!
# While it runs, IMDSv2 is asked every 5 s for a spot interruption notice.
python3 "$LIB/spot-watch" "$NOTICE_FILE" $$ </dev/null >&3 2>&3 &
watch=$!
exec 3>&-

# A trap (a notice, a shutdown) interrupts `wait`: then wait again, for
# the pipeline's own exit code.
TRAPPED=1
while [ -n "$TRAPPED" ]; do
  TRAPPED=''
  wait $pid
  rc=$?
done
end=$EPOCHSECONDS
trap '' USR1
kill "$watch" 2>/dev/null
if [ -n "$killer" ]; then
  pkill -P "$killer"
  kill "$killer"
fi 2>/dev/null
# Its unit may still be stopping (a shutdown's SIGTERM, a notice): the
# status comes after its last write.
if [ $how = unit ]; then
  for ((n = (KILL_AFTER_S + 5) * 10; n > 0; n--)); do
    case $(systemctl is-active bootforge-pipeline.service 2>/dev/null) in
      active | activating | deactivating | reloading) sleep .1 ;;
      *) break ;;
    esac
  done
fi

# What it left behind ends with it.
if kill -- -$pid 2>/dev/null; then
  log "ending what the pipeline left running"
  gone -$pid "$KILL_AFTER_S" || kill -9 -- -$pid
fi
# The stamp ends with its input. One stuck writing to an EFS that stopped
# answering gets SIGTERM (5 s to write what it holds), then SIGKILL: the
# one signal that ends a wait on a hard NFS mount. Left alive, it would
# hold the runner's service, and the shutdown, until the finalizer's timer.
if ! gone $sp 10; then
  kill $sp
  gone $sp 6 || kill -9 $sp
fi

EXIT_CODE=$rc OUTCOME=failed MESSAGE="the pipeline exited with code $rc"
[ "$rc" = 0 ] && OUTCOME=succeeded MESSAGE=
if [ $end -ge $DEADLINE ] && [[ $rc =~ ^(124|137)$ ]]; then
  OUTCOME=timed_out MESSAGE="the pipeline ran out of time"
fi
# Shut down from outside (terminated, stopped, a spot interruption):
# systemd stopped the runner and the pipeline, or refused to start it.
if [ -n "$SHUTDOWN" ] || [ "$(systemctl is-system-running 2>/dev/null)" = stopping ]; then
  EXIT_CODE=143 OUTCOME=interrupted MESSAGE="the instance was shut down while the pipeline ran"
fi
# A pipeline that checkpointed and exited 0 after a notice is interrupted
# all the same: its work is not done.
if [ -n "$NOTICE" ]; then
  EXIT_CODE=143 OUTCOME=interrupted MESSAGE="spot interruption notice: the pipeline stopped (exit code $rc)"
fi
