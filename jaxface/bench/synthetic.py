"""Throughput of the synthetic face world's renderer: images/s at 64² and 256² (batch 16).

    python -m jaxface.bench.synthetic [--resolutions 64 256] [--batch 16] [--level 1]

Times the jitted `synthetic.render_batch` (factors already on the device; the rasterizer, shading,
antialiasing and ground truth are all included) with bench.common.time_fn, and records one row per
resolution in bench/results.jsonl.
"""

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
common = lazy_import("jaxface.bench.common")
syn = lazy_import("jaxface.data.synthetic")
sf = lazy_import("jaxface.data.synthetic_factors")



def run(resolutions=(64, 256), batch=16, level=1, iters=5):
  cfg = sf.WorldConfig(level=level)
  fs = sf.stack([sf.sample_factors(i, cfg) for i in range(batch)])
  factors = jax.device_put({k: np.asarray(fs[k]) for k in syn.RENDER_KEYS})
  rows = []
  for res in resolutions:
    fn = jax.jit(lambda f, r=res: syn.render_batch(f, r, cfg))
    sec = common.time_fn(fn, factors, warmup=1, iters=iters)
    row = {"resolution": res, "batch": batch, "level": level, "sec_per_batch": sec, "images_per_s": batch / sec}
    common.record("synthetic", {"resolution": res, "batch": batch, "level": level},
                  {"images_per_s": batch / sec, "sec_per_batch": sec})
    rows.append(row)
  common.print_table(rows, ["resolution", "batch", "level", "sec_per_batch", "images_per_s"])
  return rows


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.bench.synthetic", description=__doc__.splitlines()[0])
  p.add_argument("--resolutions", type=int, nargs="+", default=[64, 256], help="render resolutions")
  p.add_argument("--batch", type=int, default=16, help="samples per call")
  p.add_argument("--level", type=int, default=1, help="mesh subdivision level (0, 1, 2)")
  p.add_argument("--iters", type=int, default=5, help="timed calls per resolution")
  a = p.parse_args(argv)
  run(tuple(a.resolutions), a.batch, a.level, a.iters)


if __name__ == "__main__":
  main()
