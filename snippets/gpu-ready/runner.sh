
# gpu-ready
phase gpu
w=0
until g=$(timeout -k 5 {{ call_timeout_seconds }} nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null) && [ -n "$g" ]; do
{% if required %}
  [ $w -ge {{ wait_seconds }} ] && fail gpu_missing "nvidia-smi did not answer within {{ wait_seconds }}s"
{% else %}
  [ $w -ge {{ wait_seconds }} ] && log "warning: no GPU answered within {{ wait_seconds }}s; going on (required: false)" && break
{% endif %}
  sleep 5; w=$((w + 5))
done
{% if not required %}
if [ -n "$g" ]; then
{% endif %}
g=${g%%$'\n'*}
GPU_NAME=${g%%, *} GPU_DRIVER=${g##*, }
log "GPU ready after ${w}s: $GPU_NAME, driver $GPU_DRIVER"
{% if not required %}
fi
{% endif %}
