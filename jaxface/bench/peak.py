"""The roofline MFU is reported against: measured on CPUs, the vendor's dense peak on accelerators.

A CPU has no single peak worth quoting (vector width, FMA ports, clocks under load and the BLAS all decide it),
so the benchmark measures it: the best FLOP/s of a large fp32 matmul and of a 3x3 convolution, jitted on all
local devices. The larger is the peak. It is measured once per machine and kept in $JAXFACE_CACHE/bench_peak.json
(keyed by device, core count, JAX version and dtype); `--remeasure` refreshes it. Measure on an idle machine: the
cache stores the load average seen while measuring, and every row that uses the peak carries it.

  python -m jaxface.bench.peak [--remeasure]
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp

from jaxface import assets
from jaxface import cli as cli_lib
from jaxface.bench import common
from jaxface.errors import cli

CACHE_NAME = "bench_peak.json"
MATMUL_N = 2048  # [N, N] @ [N, N]: 2 N^3 FLOPs
CONV_SHAPE = (8, 64, 64, 128)  # NHWC input of a 3x3, 128 -> 128 convolution


def matmul_flops(n):
  return 2.0 * n ** 3


def conv_flops(shape, k=3):
  b, h, w, c = shape
  return 2.0 * b * h * w * c * c * k * k


def best_seconds(fn, *args, repeats=7):
  """Fastest call of `fn(*args)` after one warm-up: a peak is what the machine can do, not what it usually does."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def measure(dtype="float32", n=MATMUL_N, conv_shape=CONV_SHAPE, repeats=7):
  """{"matmul_gflops", "conv_gflops", "peak_gflops", "load_avg"} of this machine, measured now."""
  key = jax.random.key(0)
  a = jax.random.normal(key, (n, n), dtype)
  x = jax.random.normal(key, conv_shape, dtype)
  w = jax.random.normal(key, (3, 3, conv_shape[-1], conv_shape[-1]), dtype)
  mm = jax.jit(lambda p, q: p @ q)
  conv = jax.jit(lambda p, q: jax.lax.conv_general_dilated(p, q, (1, 1), "SAME",
                                                           dimension_numbers=("NHWC", "HWIO", "NHWC")))
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  out = {"matmul_gflops": matmul_flops(n) / best_seconds(mm, a, a, repeats=repeats) / 1e9,
         "conv_gflops": conv_flops(conv_shape) / best_seconds(conv, x, w, repeats=repeats) / 1e9,
         "load_avg": load}
  out["peak_gflops"] = max(out["matmul_gflops"], out["conv_gflops"])
  return out


def _cache_path():
  return os.path.join(assets.cache_dir(), CACHE_NAME)


def _cache_key(dtype):
  return f"{common.device_name()}|{jax.local_device_count()}x|{os.cpu_count()} cores|jax {jax.__version__}|{dtype}"


def measured_peak(dtype="float32", remeasure=False):
  """This machine's cached measurement (measuring it first when there is none, or when asked)."""
  path, key = _cache_path(), _cache_key(str(dtype))
  table = {}
  if os.path.isfile(path):
    with open(path) as f:
      table = json.load(f)
  if remeasure or key not in table:
    table[key] = measure(jnp.dtype(dtype))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(table, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
  return table[key]


def roofline(dtype="float32"):
  """(peak FLOP/s of all local devices, how it was obtained) for MFU; (None, reason) when unknown."""
  if jax.devices()[0].platform == "cpu":
    m = measured_peak(dtype)
    return m["peak_gflops"] * 1e9, f"measured ({m['matmul_gflops']:.0f} GFLOP/s matmul, {m['conv_gflops']:.0f} " \
                                    f"conv, load {m['load_avg']})"
  vendor = common.vendor_peak_flops(dtype)
  return (vendor, "vendor dense peak") if vendor else (None, "unknown device")


@cli
def main(argv=None):
  parser = cli_lib.parser("jaxface.bench.peak", description=__doc__)
  parser.add_argument("--remeasure", action="store_true", help="measure again instead of reading the cache")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="operand dtype")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  row = measured_peak(args.dtype, remeasure=args.remeasure)
  common.record("peak", {"dtype": args.dtype, "matmul_n": MATMUL_N, "conv_shape": list(CONV_SHAPE)}, row)
  common.print_table([dict(device=common.device_name(), **row)],
                     ["device", "matmul_gflops", "conv_gflops", "peak_gflops", "load_avg"])
  return 0


if __name__ == "__main__":
  sys.exit(main())
