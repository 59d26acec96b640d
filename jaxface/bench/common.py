"""Shared benchmark plumbing: timing, device facts, and the one results file.

Every benchmark prints a table and appends one JSON line per result to `bench/results.jsonl`
(device, commit, config, figure). Timings are only comparable within one run.
"""

import contextlib
import datetime
import json
import os
import subprocess
import tempfile
import time

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache

RESULTS = os.environ.get("JAXFACE_BENCH_RESULTS", os.path.join("bench", "results.jsonl"))

# Vendors' dense peak FLOP/s per accelerator (bf16 tensor-core peaks for GPUs, no sparsity). CPUs have no such
# figure: jaxface/bench/peak.py measures theirs.
PEAK_FLOPS = {
    "NVIDIA H100 80GB HBM3": {"bfloat16": 989e12, "float32": 67e12},
    "NVIDIA H100": {"bfloat16": 989e12, "float32": 67e12},
    "NVIDIA H200": {"bfloat16": 989e12, "float32": 67e12},
    "NVIDIA A100-SXM4-80GB": {"bfloat16": 312e12, "float32": 19.5e12},
    "NVIDIA A100-SXM4-40GB": {"bfloat16": 312e12, "float32": 19.5e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 2},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12 / 2},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12 / 2},
}


def device_name():
  d = jax.devices()[0]
  return getattr(d, "device_kind", d.platform)


def vendor_peak_flops(dtype="float32"):
  """The vendor's peak FLOP/s of all local accelerators for `dtype`, or None for CPUs and unlisted devices."""
  kind = device_name()
  for name, peaks in PEAK_FLOPS.items():
    if kind.startswith(name):
      return peaks.get(str(dtype), peaks["float32"]) * jax.local_device_count()
  return None


def commit():
  try:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    sha = out.stdout.strip() or "uncommitted"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, timeout=5).stdout.strip()
    return sha + ("+dirty" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def time_fn(fn, *args, warmup=2, iters=10, min_time=0.0):
  """Median seconds per call of `fn(*args)` (blocking on the outputs), after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  start = time.perf_counter()
  while len(times) < iters or time.perf_counter() - start < min_time:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def flops_of(jitted_fn, *args, **kwargs):
  """Model FLOPs of one call from XLA's cost analysis of the compiled function (None if unknown)."""
  try:
    cost = jitted_fn.lower(*args, **kwargs).compile().cost_analysis()
  except Exception:  # cost analysis is best-effort on some backends
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def mfu_fields(flops, step_s, batch, peak, peak_source):
  """Row fields of a step of `flops` FLOPs taking `step_s` seconds on `batch` images, against a roofline of `peak`
  FLOP/s (jaxface/bench/peak.py): GFLOP per image, MFU in percent, the peak and how it was obtained. A figure that
  needs an unknown (None) FLOP count or peak is None."""
  return dict(gflops_per_img=flops / batch / 1e9 if flops else None,
              mfu_pct=100 * flops / step_s / peak if (flops and peak) else None,
              peak_gflops=peak / 1e9 if peak else None, peak_source=peak_source)


# The options that decide whether and where compiled programs persist.
_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_enable_compilation_cache",
                  "jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def persistent_cache(path):
  """Inside, compiled programs persist in `path` and only there, however small or quick to compile (path None: no
  persistent cache at all); the process's own cache settings come back on the way out. JAX opens its cache once
  per process, on the first compile that asks for it, so it is reset on the way in and on the way out."""
  saved = {k: getattr(jax.config, k) for k in _CACHE_OPTIONS}
  try:
    jax.config.update("jax_enable_compilation_cache", path is not None)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    yield
  finally:
    for k, v in saved.items():
      jax.config.update(k, v)
    compilation_cache.reset_cache()


def _compile_seconds(jitted_fn, args, kwargs):
  jax.clear_caches()  # else the program is found traced, lowered and compiled in memory
  t0 = time.perf_counter()
  jitted_fn.lower(*args, **kwargs).compile()
  return time.perf_counter() - t0


def compile_seconds(jitted_fn, *args, **kwargs):
  """(cold, cached): seconds to trace, lower and compile `jitted_fn` for these arguments, what its first call costs
  on top of running it. Cold compiles with no persistent compilation cache; cached compiles again from a fresh
  temporary cache that a compile in between wrote (None when that wrote no entry: JAX skips programs with host
  callbacks). Clears JAX's in-memory caches first (not XLA's own, such as GPU autotuning results); the program stays
  compiled in memory, so its next call or compile does not compile again."""
  with persistent_cache(None):
    cold = _compile_seconds(jitted_fn, args, kwargs)
  with tempfile.TemporaryDirectory(prefix="jaxface-compile-") as path, persistent_cache(path):
    _compile_seconds(jitted_fn, args, kwargs)  # writes the entry
    written = any(name.endswith("-cache") for name in os.listdir(path))  # JAX names an entry <key>-cache
    cached = _compile_seconds(jitted_fn, args, kwargs)
  return cold, cached if written else None


def record(bench, config, figures, path=RESULTS):
  """Appends one JSON line {bench, device, commit, config, **figures} and returns it."""
  row = {
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "bench": bench,
      "device": device_name(),
      "num_devices": jax.device_count(),
      "platform": jax.devices()[0].platform,
      "commit": commit(),
      "config": config,
      **figures,
  }
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")
  return row


def print_table(rows, columns):
  """Prints `rows` (dicts) as an aligned text table of `columns`."""
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return str(v)
  widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  for r in rows:
    print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def time_steps(step_fn, state, batch, rng, phase, steps, warmup=2):
  """Mean seconds per training step over `steps` after `warmup` (the first compiles); returns (seconds, state)."""
  for _ in range(warmup):
    state, _ = step_fn(state, batch, rng, phase=phase)
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, _ = step_fn(state, batch, rng, phase=phase)
  jax.block_until_ready(state)
  return (time.perf_counter() - t0) / steps, state
