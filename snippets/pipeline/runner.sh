
# pipeline
phase run
SCRIPT={{ script }}
{% if workdir == "/" %}
WORKDIR=${SCRIPT%/*}
{% else %}
WORKDIR={{ workdir }}
{% endif %}
OUTPUT_DIR=${LOG_FILE%/*}/{{ output_dir }}
[ -f "$SCRIPT" ] || { EXIT_CODE=127; fail failed "$SCRIPT is missing: is its file system mounted?"; }
mkdir -p "$OUTPUT_DIR" && own "$OUTPUT_DIR" "$LOG_FILE"
left=$((DEADLINE - EPOCHSECONDS))
[ $left -gt 0 ] || { EXIT_CODE=124; fail timed_out "no time left for the pipeline"; }
{# Its user's login-like environment (HOME and SHELL from runuser or systemd), the requirements' environment active, CUDA on PATH. #}
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
[ -d /usr/local/cuda/bin ] && path=/usr/local/cuda/bin:$path
env=(PATH="${VENV:+$VENV/bin:}$path" ${VENV:+"VIRTUAL_ENV=$VENV"} USER="$RUN_USER" LOGNAME="$RUN_USER" LANG=C.UTF-8
  JOB_ID="$JOB_ID" JOB_DIR="$JOB_DIR" OUTPUT_DIR="$OUTPUT_DIR" LOG_FILE="$LOG_FILE"
{% for name, value in env | items %}
  {{ name ~ "=" ~ value }}
{% endfor %}
)
cmd=(timeout --foreground -k "$KILL_AFTER_S" "$left")
[ -x "$SCRIPT" ] || cmd+=(bash)
cmd+=("$SCRIPT" {{ args }})
{# Under systemd a unit of its own: when its main process ends, whatever it started ends too. Elsewhere a session of its own. #}
if [ -d /run/systemd/system ]; then
  how=unit run=(systemd-run -q --wait --pipe --collect --unit=bootforge-pipeline -p User="$RUN_USER"
    -p WorkingDirectory="$WORKDIR" -p TimeoutStopSec="$KILL_AFTER_S")
  for e in "${env[@]}"; do run+=(-E "$e"); done
  {# systemd counts a main process ended by SIGTERM as a success: a stopped unit must not say 0. #}
  run+=(sh -c 'trap "exit 143" TERM; "$@" & wait $!' sh "${cmd[@]}")
else
  how=session run=(setsid env -i "${env[@]}" "${AS[@]}" "${cmd[@]}")
fi
log "running $SCRIPT as $RUN_USER ($how) for at most ${left}s"
exec 3> >(stamp); sp=$!
(cd "$WORKDIR" && exec "${run[@]}") </dev/null >&3 2>&3 &
pid=$!; exec 3>&-
wait $pid
rc=$? end=$EPOCHSECONDS
{# What it left behind ends with it. #}
kill -- -$pid 2>/dev/null && log "ending what the pipeline left running" && { gone -$pid $KILL_AFTER_S || kill -9 -- -$pid; }
gone $sp 10 || kill $sp
EXIT_CODE=$rc OUTCOME=failed MESSAGE="the pipeline exited with code $rc"
[ $rc = 0 ] && OUTCOME=succeeded MESSAGE=
[ $end -ge $DEADLINE ] && [[ $rc =~ ^(124|137)$ ]] && OUTCOME=timed_out MESSAGE="the pipeline ran out of time"
{# Shut down from outside (terminated, stopped, a spot interruption): systemd stopped the pipeline, or refused to start it. #}
[ "$(systemctl is-system-running 2>/dev/null)" = stopping ] && EXIT_CODE=143 OUTCOME=interrupted MESSAGE="the instance was shut down while the pipeline ran"
