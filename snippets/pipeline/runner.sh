
# --- pipeline: the job itself, under the time budget ---
phase run
SCRIPT={{ script }}
WORKDIR={{ workdir }}
[ "$WORKDIR" = / ] && WORKDIR=$(dirname "$SCRIPT")
ARGS=({{ args }})
if [ "$LOGS_READY" = 1 ]; then OUTPUT_DIR=$JOB_DIR/{{ output_dir }}; else OUTPUT_DIR=$LOCAL_DIR/{{ output_dir }}; fi
[ -f "$SCRIPT" ] || {
  EXIT_CODE=127
  fail failed "$SCRIPT does not exist: is its file system mounted?"
}
mkdir -p "$OUTPUT_DIR" && chown "$RUN_USER" "$OUTPUT_DIR" 2>/dev/null
remaining=$((DEADLINE - $(date +%s)))
if [ "$remaining" -le 0 ]; then
  EXIT_CODE=124
  fail timed_out "the job's ${TIMEOUT_S}s budget ran out before the pipeline could start"
fi
run=(env JOB_ID="$JOB_ID" JOB_DIR="$JOB_DIR" OUTPUT_DIR="$OUTPUT_DIR" LOG_FILE="$LOG_FILE"
{% for name, value in env | items %}
  {{ name ~ "=" ~ value }}
{% endfor %}
  timeout -k "$KILL_AFTER_S" "$remaining")
if [ -x "$SCRIPT" ]; then run+=("$SCRIPT"); else run+=(bash "$SCRIPT"); fi
run+=("${ARGS[@]}")
if [ "$(id -u)" = 0 ] && [ "$RUN_USER" != root ]; then
  run=(runuser -u "$RUN_USER" -- "${run[@]}")
fi
log "running $SCRIPT as $RUN_USER in $WORKDIR (at most ${remaining}s, then SIGTERM, SIGKILL ${KILL_AFTER_S}s later)"
run_start=$(date +%s)
(cd "$WORKDIR" && exec "${run[@]}") 2>&1 </dev/null | stamp | tee -a "$LOG_FILE"
rc=${PIPESTATUS[0]}
EXIT_CODE=$rc
if [ "$rc" = 0 ]; then
  OUTCOME=succeeded
elif { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ $(($(date +%s) - run_start)) -ge "$remaining" ]; then
  OUTCOME=timed_out
  MESSAGE="the pipeline ran past the job's budget and was stopped"
else
  OUTCOME=failed
  MESSAGE="the pipeline exited with code $rc"
fi
