#!/usr/bin/env bash
# Trains on every worker of a Cloud TPU VM slice (v4-32, v5e-64, ...). Data and workdir must be on GCS.
#   TPU=my-tpu ZONE=us-central2-b launch/tpu_pod.sh --config configs/disco.py:ffhq256 --workdir gs://BUCKET/run \
#       --config.data.path=gs://BUCKET/ffhq256
# Copies this checkout to all workers, installs requirements (jax[tpu]) once into ~/jaxface_venv, then starts
# `python -m jaxface.main` on all workers at once; jax.distributed.initialize() finds the peers itself.
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
gcloud compute tpus tpu-vm scp --recurse "$HERE" "$TPU":~/jaxface --zone="$ZONE" --worker=all
ARGS=$(printf "%q " "$@")
JAX_VERSION=$(grep '^jax==' "$HERE/requirements.txt" | cut -d= -f3)
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command "
  set -e
  cd ~/jaxface
  if [ ! -d ~/jaxface_venv ]; then
    python3 -m venv ~/jaxface_venv
    ~/jaxface_venv/bin/pip install -q -r requirements.txt 'jax[tpu]==$JAX_VERSION'
    ~/jaxface_venv/bin/pip install -q -e .
  fi
  JAXFACE_DISTRIBUTED=1 ~/jaxface_venv/bin/python -m jaxface.main $ARGS"
