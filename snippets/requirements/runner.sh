
# --- requirements: install the job's Python dependencies when it has some ---
phase deps
REQUIREMENTS={{ file }}
if [ -f "$REQUIREMENTS" ]; then
  log "installing $REQUIREMENTS with {{ python | safe }} -m pip (at most {{ timeout_minutes }} min)"
  PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    timeout -k 30 {{ timeout_minutes * 60 }} {{ python }} -m pip install --no-input -r "$REQUIREMENTS" {{ extra_args }} 2>&1 | stamp | tee -a "$LOG_FILE"
  rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
{% if on_failure == "stop" %}
    EXIT_CODE=$rc
    fail deps_failed "pip install -r $REQUIREMENTS failed (exit code $rc)"
{% else %}
    log "warning: pip install -r $REQUIREMENTS failed (exit code $rc); going on (on_failure: continue)"
{% endif %}
  fi
else
  log "no $REQUIREMENTS: nothing to install, step skipped"
fi
