"""SIW-StyleGAN2 (SofGAN texture branch) training-step throughput at a configs/siw.py preset.

  python -m jaxface.bench.siw [--preset small] [--steps 5] [--flops] [--config.key=value ...]

Times the full step (G main, lazy path length, D main, lazy R1, EMA; world rendering of images and label maps
included) for each lazy-regularization phase variant, and reports img/s averaged over one regularization cycle
(each variant weighted by how often it runs). XLA's cost analysis (--flops) compiles every variant a second time,
so it is opt-in on CPU. Appends one JSON line to bench/results.jsonl (bench "siw").
"""

import collections
import os
import sys

from jaxface import cli as cli_lib
from jaxface import config as config_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
parallel = lazy_import("jaxface.parallel")
programs = lazy_import("jaxface.programs")
common = lazy_import("jaxface.bench.common")
train_bench = lazy_import("jaxface.bench.train")
loop = lazy_import("jaxface.train.loop")

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                      "siw.py")


def run(config, steps, flops=False):
  method = loop.get_method(config)
  mesh = parallel.make_mesh(config.mesh)
  rng = jax.random.key(config.seed)
  plan = loop.plan_state(method, config, mesh, rng)
  step_fn = programs.jit(method.train_step(config), donate_argnums=(0,),
                    out_shardings=(plan.shardings, parallel.replicated(mesh)), static_argnames=("phase",))
  data = method.make_data(config)
  cycle_length = train_bench._cycle_length(config)  # pylint: disable=protected-access
  cycle = [method.phase(config, s) for s in range(1, 1 + cycle_length)]
  counts = collections.Counter(cycle)
  secs, total_flops = {}, 0.0
  with jax.set_mesh(mesh):
    state = plan.create()
    batch = parallel.to_global(next(data), mesh)
    for ph, n in counts.items():
      if flops:
        f = common.flops_of(step_fn, state, batch, rng, phase=ph)
        total_flops = None if (f is None or total_flops is None) else total_flops + f * n / len(cycle)
      secs[ph], state = common.time_steps(step_fn, state, batch, rng, ph, steps, warmup=1)
  step_s = sum(secs[ph] * n for ph, n in counts.items()) / len(cycle)
  b = config.batch_size
  row = dict(img_per_s=b / step_s, step_ms=step_s * 1e3, phases_ms={str(k): v * 1e3 for k, v in secs.items()})
  if flops and total_flops:
    row["gflops_per_img"] = total_flops / b / 1e9
  return row


@cli
def main(argv=None):
  parser = cli_lib.parser("jaxface.bench.siw", description=__doc__)
  parser.add_argument("--preset", default="small", help="configs/siw.py preset (small, faithful, tiny)")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per phase variant")
  parser.add_argument("--flops", action="store_true", help="also report model GFLOPs per image (compiles twice)")
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  jax.config.update("jax_threefry_partitionable", True)
  config = config_lib.build(f"{CONFIG}:{args.preset}", config_lib.parse_overrides(rest))
  row = run(config, args.steps, args.flops)
  cfg = {"config": f"configs/siw.py:{args.preset}", "overrides": rest, "batch_size": config.batch_size,
         "compute_dtype": config.compute_dtype, "resolution": config.model.resolution}
  common.record("siw", cfg, row)
  common.print_table([dict(preset=args.preset, device=common.device_name(), **row)],
                     ["preset", "device", "img_per_s", "step_ms", "phases_ms"] + (["gflops_per_img"] if args.flops
                                                                                  else []))


if __name__ == "__main__":
  main()
