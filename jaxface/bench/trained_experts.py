"""Throughput of the experts trained on the synthetic world (R-Net, face parser) at their training batch sizes:
the full training step (on-device render + forward + backward + AdamW) and inference (forward only).

  python -m jaxface.bench.trained_experts                      # both, their configs' `small` presets
  python -m jaxface.bench.trained_experts --only rnet --preset faithful --batch 16 --iters 3

Random initial weights time the same as trained ones. One row per (expert, mode) in bench/results.jsonl.
"""

import importlib

import numpy as np

from jaxface import cli as cli_lib
from jaxface import config as config_lib
from jaxface.cli import lazy_import
from jaxface.errors import UserError, cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
jnp = lazy_import("jax.numpy")
common = lazy_import("jaxface.bench.common")
synthetic = lazy_import("jaxface.data.synthetic")

EXPERTS = ("rnet", "parser")


def synthetic_batch(data_cfg, batch, start=0):
  """A training batch of world factors (what the data pipeline delivers), as numpy arrays."""
  src = synthetic.make_source(data_cfg)
  items = [src[start + i] for i in range(batch)]
  return {k: np.stack([np.asarray(it[k]) for it in items]) for k in items[0]
          if np.asarray(items[0][k]).dtype.kind in "biuf"}


def run(name, preset="small", batch=None, iters=5, overrides=(), results=None):
  """Times one expert's training step and forward pass; returns the table rows (also appended to `results`,
  default bench/results.jsonl)."""
  config = config_lib.build(f"configs/{name}.py:{preset}", list(overrides))
  if batch:
    with config.unlocked():
      config.batch_size = int(batch)
  method = importlib.import_module(f"jaxface.train.{name}")
  state = jax.jit(lambda r: method.init_state(config, r))(jax.random.key(0))
  data = jax.device_put(synthetic_batch(config.data, config.batch_size))
  step = jax.jit(method.train_step(config), static_argnames=("phase",))
  rng = jax.random.key(1)
  train = lambda s, d: step(s, d, rng, phase=None)[1]
  res = config.data.resolution
  net = method.network(config, train=False)
  images = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (config.batch_size, res, res, 3)), jnp.float32)
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  fwd = jax.jit(net.apply)
  rows = []
  for mode, fn, args in (("train_step", jax.jit(train), (state, data)), ("forward", fwd, (variables, images))):
    sec = common.time_fn(fn, *args, warmup=1, iters=iters)
    flops = common.flops_of(fn, *args)
    row = {"expert": name, "preset": preset, "mode": mode, "batch": config.batch_size, "resolution": res,
           "ms": sec * 1e3, "img_s": config.batch_size / sec}
    if flops:
      row["gflops_per_img"] = flops / config.batch_size / 1e9
    rows.append(row)
    common.record("trained_experts", {k: row[k] for k in ("expert", "preset", "mode", "batch", "resolution")},
                  {k: v for k, v in row.items() if k in ("ms", "img_s", "gflops_per_img")},
                  **({"path": results} if results else {}))
  return rows


@cli
def main(argv=None):
  ap = cli_lib.parser("jaxface.bench.trained_experts", description=__doc__)
  ap.add_argument("--only", default="", help="comma-separated experts (rnet, parser; default: both)")
  ap.add_argument("--preset", default="small", help="config preset (small | faithful)")
  ap.add_argument("--batch", type=int, default=0, help="batch size (default: the config's training batch)")
  ap.add_argument("--iters", type=int, default=5, help="timed calls per measurement")
  args = ap.parse_args(argv)
  names = [n for n in args.only.split(",") if n] or list(EXPERTS)
  bad = [n for n in names if n not in EXPERTS]
  if bad:
    raise UserError(f"unknown expert(s) {bad}; choose from {list(EXPERTS)}")
  if args.batch < 0 or args.iters < 1:
    raise UserError("--batch must be >= 0 and --iters >= 1")
  rows = [r for n in names for r in run(n, args.preset, args.batch or None, args.iters)]
  common.print_table(rows, ["expert", "preset", "mode", "batch", "resolution", "ms", "img_s", "gflops_per_img"])
  return rows


if __name__ == "__main__":
  main()
