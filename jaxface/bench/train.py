"""Training-step throughput: img/s, model FLOPs per image (XLA cost analysis) and MFU against the roofline of
jaxface/bench/peak.py (measured on CPUs; the peak and how it was obtained are in every row).

  python -m jaxface.bench.train --config configs/stylegan2.py:tiny [--steps 20] [--config.key=value ...]

Times the full step averaged over one lazy-regularization cycle (each phase variant weighted by how often it
runs), twice: with one batch already on the device ("memory") and with the real input pipeline feeding every step
("pipeline"), so a data bottleneck shows as the gap between the two.
"""

import collections
import sys
import time

import numpy as np

from jaxface import cli as cli_lib
from jaxface import config as config_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
parallel = lazy_import("jaxface.parallel")
programs = lazy_import("jaxface.programs")
common = lazy_import("jaxface.bench.common")
peak_lib = lazy_import("jaxface.bench.peak")
loop = lazy_import("jaxface.train.loop")


def run(config, steps):
  method = loop.get_method(config)
  if hasattr(method, "prepare"):
    config = method.prepare(config)
  mesh = parallel.make_mesh(config.mesh)
  rng = jax.random.key(config.seed)
  plan = loop.plan_state(method, config, mesh, rng)
  shardings = plan.shardings
  step_fn = programs.jit(method.train_step(config), donate_argnums=(0,),
                    out_shardings=(shardings, parallel.replicated(mesh)), static_argnames=("phase",))
  data = method.make_data(config)
  with jax.set_mesh(mesh):
    state = plan.create()
    batch = parallel.to_global(next(data), mesh)
    # Phase mix over one cycle of the lazy regularizers.
    cycle = [method.phase(config, s) for s in range(1, 1 + _cycle_length(config))]
    counts = collections.Counter(cycle)
    flops, secs = 0.0, {}
    for ph, n in counts.items():
      f = common.flops_of(step_fn, state, batch, rng, phase=ph)
      flops = None if (f is None or flops is None) else flops + f * n / len(cycle)
      secs[ph], state = common.time_steps(step_fn, state, batch, rng, ph, steps)
    mem_step = sum(secs[ph] * n for ph, n in counts.items()) / len(cycle)
    # The same steps with the pipeline feeding every batch (phases in their real order).
    t0 = time.perf_counter()
    n = max(steps, len(cycle))
    for i in range(n):
      batch = parallel.to_global(next(data), mesh)
      state, m = step_fn(state, batch, rng, phase=cycle[i % len(cycle)])
    jax.block_until_ready(state)
    pipe_step = (time.perf_counter() - t0) / n
  b = config.batch_size
  row = dict(
      img_per_s=b / mem_step, img_per_s_pipeline=b / pipe_step, step_ms=mem_step * 1e3,
      step_ms_pipeline=pipe_step * 1e3, pipeline_overhead_pct=100 * (pipe_step / mem_step - 1),
      **common.mfu_fields(flops, mem_step, b, *peak_lib.roofline(config.compute_dtype)),
      phases={str(k): v * 1e3 for k, v in secs.items()})
  return row


def _cycle_length(config):
  loss = config.get("loss", {})
  intervals = [int(loss.get(k, 1)) for k in ("r1_interval", "pl_interval") if k in loss]
  return int(np.lcm.reduce(intervals)) if intervals else 1


@cli
def main(argv=None):
  parser = cli_lib.parser("jaxface.bench.train", description=__doc__)
  parser.add_argument("--config", required=True, help="config file and optional :ARGS, e.g. configs/stylegan2.py:tiny")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per phase variant")
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  jax.config.update("jax_threefry_partitionable", True)
  config = config_lib.build(args.config, config_lib.parse_overrides(rest))
  row = run(config, args.steps)
  cfg = {"config": args.config, "overrides": rest, "batch_size": config.batch_size,
         "compute_dtype": config.compute_dtype,
         # methods on a frozen generator (id_mapping) take their resolution from it, not from config.model
         "resolution": config.model.get("resolution") if "model" in config else None}
  common.record("train", cfg, row)
  common.print_table([dict(config=args.config, device=common.device_name(), **row)],
                     ["config", "device", "img_per_s", "img_per_s_pipeline", "pipeline_overhead_pct",
                      "gflops_per_img", "mfu_pct", "peak_gflops"])


if __name__ == "__main__":
  main()
