
# --- gpu-ready: wait for the driver to answer ---
phase gpu
GPU_WAIT_S={{ wait_seconds }}
gpu_waited=0
while :; do
  if gpu_info=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null) && [ -n "$gpu_info" ]; then
    gpu_info=${gpu_info%%$'\n'*}
    GPU_NAME=${gpu_info%%, *}
    GPU_DRIVER=${gpu_info##*, }
    log "GPU ready after ${gpu_waited}s: $GPU_NAME, driver $GPU_DRIVER"
    break
  fi
  if [ "$gpu_waited" -ge "$GPU_WAIT_S" ]; then
{% if required %}
    fail gpu_missing "nvidia-smi did not answer within ${GPU_WAIT_S}s"
{% else %}
    log "warning: no GPU answered within ${GPU_WAIT_S}s; going on (required: false)"
    break
{% endif %}
  fi
  sleep 5
  gpu_waited=$((gpu_waited + 5))
done
