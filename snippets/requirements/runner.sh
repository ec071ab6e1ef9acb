
# requirements
phase deps
REQUIREMENTS={{ file }}
{% if cache_dir is not none %}
CACHE={{ cache_dir }}
{% endif %}
if [ ! -f "$REQUIREMENTS" ]; then
  log "no $REQUIREMENTS: nothing to install, step skipped"
else
  VENV=$STATE_DIR/venv
  {# The cache holds one environment per requirements, interpreter, place and machine; one failing its checksum is rebuilt. #}
  k=$({ cat "$REQUIREMENTS"; echo "$VENV"; {{ python }} -VV; uname -m; } 2>&1 | sha256sum)
{% if cache_dir is not none %}
  k=${k%% *} tar=$CACHE/$k.tar
  if [ -f "$tar" ] && (cd "$CACHE" && timeout 600 sha256sum -c --status "$k.sha256") && rm -rf "$VENV" && mkdir "$VENV" &&
    timeout 600 tar -C "$VENV" -xf "$tar" && "$VENV/bin/python" -c ''; then
    log "restored $VENV from $tar"
    ENV_HOW=restored
  else
    if [ -f "$tar" ]; then
      log "warning: $tar is damaged: rebuilding it"
      ENV_HOW=rebuilt
    fi
{% else %}
  {
{% endif %}
    log "installing $REQUIREMENTS (at most {{ timeout_minutes }} min)"
    rm -rf "$VENV" && mkdir "$VENV" && own "$VENV"
    { "${AS[@]}" timeout 300 {{ python }} -m venv "$VENV" && PIP_DISABLE_PIP_VERSION_CHECK=1 "${AS[@]}" \
      timeout -k 30 {{ timeout_minutes * 60 }} "$VENV/bin/python" -m pip install -r "$REQUIREMENTS" {{ extra_args }}; } </dev/null 2>&1 | stamp
    rc=${PIPESTATUS[0]}
    ENV_HOW=${ENV_HOW:-installed}
    if [ "$rc" != 0 ]; then
      ENV_HOW=failed
{% if on_failure == "stop" %}
      EXIT_CODE=$rc; fail deps_failed "pip install -r $REQUIREMENTS failed (exit code $rc)"
{% else %}
      log "warning: pip install -r $REQUIREMENTS failed (exit code $rc); going on (on_failure: continue)"
{% endif %}
{% if cache_dir is not none %}
    else
      {# Written aside, then renamed: a partial copy is never taken for a whole one. #}
      if mkdir -p "$CACHE" && (cd "$CACHE" && timeout 600 tar -C "$VENV" -cf "$k.$$" . && h=$(sha256sum <"$k.$$") &&
        echo "${h%% *}  $k.tar" >"$k.sha256" && mv "$k.$$" "$k.tar") && own "$CACHE" "$CACHE/$k".*; then
        log "cached it in $tar"
      else
        log "warning: could not cache it in $CACHE"
      fi
      rm -f "$CACHE/$k.$$"
{% endif %}
    fi
{% if cache_dir is not none %}
  fi
{% else %}
  }
{% endif %}
  # What the status tells of the environment: its files and bytes.
  ENV_FILES=$(find "$VENV" -type f | wc -l)
  ENV_BYTES=$(du -sb "$VENV" | cut -f1)
fi
