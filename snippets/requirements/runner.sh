
# requirements
{#
  The environment lives at one place on local disk. A cache entry on the
  EFS is a directory holding a compressed read-only image of it; a later
  job copies that image to local disk and mounts it there instead of
  installing (one read, whatever the number of files).
#}
phase deps
ENV_T0=${EPOCHREALTIME/./}
REQUIREMENTS={{ file }}
VENV=$STATE_DIR/venv
TOOLS=$STATE_DIR/tools
# What this job writes on the EFS before renaming it into place is named
# after this instance and boot: no other job writes there.
ME=$INSTANCE_ID.$BOOT_ID
{% if cache_dir is not none %}
CACHE={{ cache_dir }}
{% endif %}

# env_done: the seconds the environment took, to the millisecond, for the
# status (the phase's own figure is in whole seconds).
env_done() {
  local us=$((${EPOCHREALTIME/./} - ENV_T0))
  printf -v ENV_SECONDS '%d.%03d' $((us / 1000000)) $((us / 1000 % 1000))
}

# have_uv: uv {{ uv_version }} in $TOOLS/uv, from the cache or installed by pip
# (pinned and hashed) and kept there for later jobs; fails when it cannot
# be had.
have_uv() {
  local kept="${CACHE:-}/tools/uv-{{ uv_version }}" venv=$TOOLS/uv-venv
  mkdir -p "$TOOLS" && own "$TOOLS"
  if [ -n "${CACHE:-}" ] && timeout 120 cp "$kept" "$TOOLS/uv" 2>/dev/null && "$TOOLS/uv" --version >/dev/null 2>&1; then
    log "uv {{ uv_version }} from $kept"
    return 0
  fi
  log "installing uv {{ uv_version }} with pip"
  rm -rf "$venv"
  echo "uv=={{ uv_version }} --hash=sha256:{{ uv_sha256 }}" >"$TOOLS/uv.txt"
  { "${AS[@]}" timeout 300 {{ python }} -m venv "$venv" &&
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${AS[@]}" timeout 300 "$venv/bin/python" -m pip install \
      --quiet --require-hashes -r "$TOOLS/uv.txt"; } </dev/null 2>&1 | stamp
  [ "${PIPESTATUS[0]}" = 0 ] && cp "$venv/bin/uv" "$TOOLS/uv" && "$TOOLS/uv" --version >/dev/null || return 1
  rm -rf "$venv"
  # Kept on the EFS under a name of its own first, then renamed: a job
  # never runs a partial copy.
  if [ -n "${CACHE:-}" ] && mkdir -p "$CACHE/tools" && cp "$TOOLS/uv" "$kept.$ME" &&
    own "$CACHE" "$CACHE/tools" "$kept.$ME" && mv -f "$kept.$ME" "$kept"; then
    log "kept uv in $kept"
  fi
  rm -f "$kept.$ME" 2>/dev/null
  return 0
}

# install_env uv|pip: the requirements into a new $VENV, as the job's user,
# bounded; the installer's exit code. Bytecode is compiled now, once, so
# that a restored environment never compiles it again.
install_env() {
  rm -rf "$VENV" && mkdir "$VENV" && own "$VENV" || return 1
  if [ "$1" = uv ]; then
    mkdir -p "$TOOLS/uv-cache" && own "$TOOLS/uv-cache"
    local uv=("${AS[@]}" env UV_CACHE_DIR="$TOOLS/uv-cache" UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 "$TOOLS/uv")
    { timeout 300 "${uv[@]}" venv --quiet --python {{ python }} "$VENV" &&
      timeout -k 30 {{ timeout_minutes * 60 }} "${uv[@]}" pip install --python "$VENV/bin/python" \
        --compile-bytecode -r "$REQUIREMENTS" {{ extra_args }}; } </dev/null 2>&1 | stamp
  else
    { "${AS[@]}" timeout 300 {{ python }} -m venv "$VENV" && PIP_DISABLE_PIP_VERSION_CHECK=1 "${AS[@]}" \
      timeout -k 30 {{ timeout_minutes * 60 }} "$VENV/bin/python" -m pip install -r "$REQUIREMENTS" {{ extra_args }}; } </dev/null 2>&1 | stamp
  fi
  return "${PIPESTATUS[0]}"
}
{% if cache_dir is not none %}

# restore_env: the entry's image copied to local disk (read once from the
# EFS, hashed on the way), checked against its SHA-256 and mounted
# read-only at $VENV. Returns 1 when the entry is damaged or partial, 2
# when this machine cannot mount it.
restore_env() {
  local sum='' want=''
  read -r want _ 2>/dev/null <"$ENTRY/env.sha256"
  sum=$(timeout 600 tee "$STATE_DIR/venv.sqfs" <"$ENTRY/env.sqfs" | sha256sum)
  [ "${PIPESTATUS[0]}" = 0 ] && [ -n "$want" ] && [ "${sum%% *}" = "$want" ] || return 1
  rm -rf "$VENV" && mkdir "$VENV" || return 2
  timeout 60 mount -t squashfs -o loop,ro,nodev,nosuid "$STATE_DIR/venv.sqfs" "$VENV" || return 2
  MOUNTED_ENV=$VENV
  "$VENV/bin/python" -c '' || return 1
  read -r ENV_FILES ENV_BYTES 2>/dev/null <"$ENTRY/env.size"
  return 0
}

# fill_cache: the environment just installed, as a compressed read-only image,
# put in the cache as one directory filled aside and renamed into place: a
# partial entry is never seen, and of two jobs filling it at once one wins
# (a rename onto a directory that is there fails) and neither breaks.
fill_cache() {
  local part=$CACHE/.$KEY.$ME sum
  command -v mksquashfs >/dev/null || pkg squashfs-tools 300
  command -v mksquashfs >/dev/null || {
    log "warning: no mksquashfs (squashfs-tools): the environment is not cached"
    return
  }
  rm -f "$STATE_DIR/venv.sqfs"
  if timeout 600 mksquashfs "$VENV" "$STATE_DIR/venv.sqfs" -noappend -no-progress -quiet \
    -comp zstd -Xcompression-level 1 2>&1 | stamp && sum=$(sha256sum <"$STATE_DIR/venv.sqfs") &&
    mkdir -p "$part" && timeout 600 cp "$STATE_DIR/venv.sqfs" "$part/env.sqfs" &&
    echo "${sum%% *}  env.sqfs" >"$part/env.sha256" && echo "$ENV_FILES $ENV_BYTES" >"$part/env.size" &&
    own "$CACHE" "$part" "$part"/*; then
    if mv -T "$part" "$ENTRY" 2>/dev/null; then
      log "cached it in $ENTRY ($(du -b "$ENTRY/env.sqfs" | cut -f1) bytes)"
    else
      log "another job cached it in $ENTRY first: kept theirs"
    fi
  else
    log "warning: could not cache it in $CACHE"
  fi
  rm -rf "$part" "$STATE_DIR/venv.sqfs"
}
{% endif %}

if [ ! -f "$REQUIREMENTS" ]; then
  VENV=''
  log "no $REQUIREMENTS: nothing to install, step skipped"
else
{% if cache_dir is not none %}
  # The environment is keyed by the requirements, the installer's
  # arguments, the interpreter, its place and the machine.
  KEY=$({ cat "$REQUIREMENTS"; echo installer arguments: {{ extra_args }}; echo "$VENV"; {{ python }} -VV; uname -m; } 2>&1 | sha256sum)
  KEY=${KEY%% *}
  ENTRY=$CACHE/$KEY
  if [ -d "$ENTRY" ]; then
    restore_env
    case $? in
      0)
        ENV_HOW=restored
        log "restored $VENV from $ENTRY (mounted read-only)"
        ;;
      1)
        log "warning: the cache entry $ENTRY is damaged or partial: rebuilding it"
        ENV_HOW=rebuilt
        [ -n "$MOUNTED_ENV" ] && umount "$VENV" && MOUNTED_ENV=''
        mv -T "$ENTRY" "$CACHE/.$KEY.damaged.$ME" 2>/dev/null && rm -rf "$CACHE/.$KEY.damaged.$ME"
        ;;
      *) log "warning: cannot mount $ENTRY/env.sqfs here: installing instead" ;;
    esac
  fi
{% endif %}
  if [ -z "$ENV_HOW" ] || [ "$ENV_HOW" = rebuilt ]; then
    how={{ "uv" if installer == "auto" else installer }}
{% if installer == "auto" %}
    have_uv || {
      how=pip
      log "warning: uv cannot be had: installing with pip"
    }
{% elif installer == "uv" %}
    have_uv || {
      EXIT_CODE=1
      fail deps_failed "uv {{ uv_version }} cannot be had (installer: uv)"
    }
{% endif %}
    log "installing $REQUIREMENTS with $how (at most {{ timeout_minutes }} min)"
    install_env $how
    rc=$?
    ENV_HOW=${ENV_HOW:-installed}
    if [ "$rc" != 0 ]; then
      ENV_HOW=failed
{% if on_failure == "stop" %}
      EXIT_CODE=$rc
      env_done
      fail deps_failed "$how could not install $REQUIREMENTS (exit code $rc)"
{% else %}
      log "warning: $how could not install $REQUIREMENTS (exit code $rc); going on (on_failure: continue)"
{% endif %}
    fi
    # What the status tells of the environment: its files and bytes.
    ENV_FILES=$(find "$VENV" -type f | wc -l)
    ENV_BYTES=$(du -sb "$VENV" | cut -f1)
{% if cache_dir is not none %}
    [ "$rc" = 0 ] && [ ! -d "$ENTRY" ] && fill_cache
{% endif %}
  fi
fi
[ -n "$ENV_HOW" ] && env_done
