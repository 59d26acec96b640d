"""Shared helpers for the training-stack tests: run `python -m jaxface.main` on a tiny StyleGAN2."""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# A StyleGAN2 small enough for CI: 16x16, both lazy regularizers every 2nd step (2 compiled step variants).
TINY = "configs/stylegan2.py:tiny,res=16"
TINY_OVERRIDES = [
    "--config.total_steps=6", "--config.ckpt.every_steps=2", "--config.log.every_steps=1",
    "--config.log.samples_every_steps=3", "--config.log.num_samples=4", "--config.loss.pl_interval=2",
    "--config.loss.r1_interval=2", "--config.model.channel_max=16", "--config.model.z_dim=16",
    "--config.model.w_dim=16", "--config.ckpt.async_save=false", "--config.wandb.mode=disabled",
    "--config.data.kind=generated",  # procedural images: keeps the stack tests about the stack
]


def main_cmd(workdir, *overrides, config=TINY):
  return [sys.executable, "-m", "jaxface.main", "--config", config, "--workdir", str(workdir), *TINY_OVERRIDES,
          *overrides]


def env(devices=2):
  """Subprocess environment: `devices` simulated CPU devices and a cheap XLA:CPU backend optimization level.

  The tiny StyleGAN2 step (with double-backward R1 and path length) spends far longer compiling than running;
  LLVM opt level 0 halves compilation. Runs that share a program hit the persistent compilation cache.
  """
  e = dict(os.environ)
  flags = [f for f in e.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  e["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}",
                                     "--xla_backend_optimization_level=0"])
  e["PYTHONUNBUFFERED"] = "1"
  e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
  return e


def run_main(workdir, *overrides, config=TINY, timeout=600):
  return subprocess.run(main_cmd(workdir, *overrides, config=config), cwd=ROOT, env=env(), capture_output=True,
                        text=True, timeout=timeout)


def metric_rows(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  rows = []
  for line in open(path):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:  # a row being written while we read
      pass
  return rows


def checkpoint_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def load_params(workdir, step=None):
  """Reads a checkpoint's state as numpy (no shardings needed), for comparisons."""
  import orbax.checkpoint as ocp
  step = step if step is not None else checkpoint_steps(workdir)[-1]
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.PyTreeCheckpointer().restore(path)
