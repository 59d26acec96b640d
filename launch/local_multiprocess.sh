#!/usr/bin/env bash
# Runs N jaxface processes on this machine that form one JAX cluster over CPU collectives (gloo):
# the real multi-host code path (jax.distributed, per-host data shards, global arrays, Orbax from every process).
#   launch/local_multiprocess.sh N python -m jaxface.main --config configs/stylegan2.py:tiny --workdir W [...]
# Each process gets JAX_NUM_CPU_DEVICES devices (default 2). Exits with the first non-zero status.
set -euo pipefail
N=${1:?usage: launch/local_multiprocess.sh N COMMAND...}
shift
PORT=${JAXFACE_PORT:-$((20000 + RANDOM % 20000))}
export JAXFACE_DISTRIBUTED=1 JAXFACE_COORDINATOR="127.0.0.1:${PORT}" JAXFACE_NUM_PROCESSES="$N"
export JAX_PLATFORMS=cpu
# Each process simulates its own CPU devices; drop any device count inherited from the caller.
export XLA_FLAGS="$(echo "${XLA_FLAGS:-}" | sed 's/--xla_force_host_platform_device_count=[0-9]*//') --xla_force_host_platform_device_count=${JAX_NUM_CPU_DEVICES:-2}"
pids=()
for ((i = 0; i < N; i++)); do
  JAXFACE_PROCESS_ID=$i "$@" > >(sed "s/^/[p$i] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || { s=$?; [ $status -eq 0 ] && status=$s; }
done
exit $status
