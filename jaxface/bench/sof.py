"""SOF benchmark: rays per second of a training step (forward + backward + Adam) and of a full-view render, at a
configs/sof.py preset's sizes (width, steps, batch, rays per view, resolution), on random data.

  python -m jaxface.bench.sof                       # presets one and multi (CPU sized)
  python -m jaxface.bench.sof --presets faithful    # 128², full views, width 256, batch 8 (GPU)
  python -m jaxface.bench.sof --presets one --steps 5

Prints a table and appends one line per preset to bench/results.jsonl.
"""

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
jnp = lazy_import("jax.numpy")
common = lazy_import("jaxface.bench.common")
raymarch = lazy_import("jaxface.render.raymarch")



def random_batch(config, seed=0):
  """A batch shaped like RayBatches' output, with random cameras on the training sweep (no rendering needed)."""
  rng = np.random.default_rng(seed)
  res, b, mv = config.data.resolution, config.batch_size, config.multiview
  n = mv.rays_per_view if 0 < mv.rays_per_view < res * res else res * res
  f = config.data.focal * res / 256.0
  k = np.array([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1]], np.float32)
  yaw = rng.uniform(-1, 1, b) * np.deg2rad(mv.max_yaw)
  c2w = np.stack([np.asarray(raymarch.yaw_pitch_c2w(y, 0.0, 10.0)) for y in yaw]).astype(np.float32)
  grid = raymarch.pixel_grid(res, res)
  return {"inst": rng.integers(0, mv.num_instances, b).astype(np.int32), "c2w": c2w,
          "k": np.broadcast_to(k, (b, 3, 3)).copy(), "uv": grid[rng.integers(0, res * res, (b, n))],
          "labels": rng.integers(0, 16, (b, n)).astype(np.int32)}


def run(presets, steps):
  from configs import sof as sof_config
  from jaxface.train import sof as sof_lib  # JAX: loaded once the command runs, not for --help
  from jaxface.runs import sof as sof_run  # JAX: loaded once the command runs, not for --help
  rows = []
  for preset in presets:
    config = sof_config.get_config(preset)
    state = jax.jit(lambda k: sof_lib.init_state(config, k))(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, random_batch(config))
    step = jax.jit(sof_lib.train_step(config), static_argnames=("phase",), donate_argnums=(0,))
    sec, state = common.time_steps(step, state, batch, jax.random.key(1), None, steps)
    rays = batch["labels"].size
    model = sof_run.SOFModel(config, state["params"], 0)
    res = config.data.resolution
    z, c2w = np.asarray(state["params"]["codes"][:1]), np.asarray(batch["c2w"][:1])
    render_sec = common.time_fn(lambda: model.logits(z, c2w, chunk=1), warmup=1, iters=max(2, steps // 2))
    row = {"preset": preset, "res": res, "width": config.model.width, "march_steps": config.model.steps,
           "rays_per_step": int(rays), "step_s": sec, "train_rays_per_s": rays / sec,
           "render_s": render_sec, "render_rays_per_s": res * res / render_sec}
    rows.append(row)
    common.record("sof", {"preset": preset, "res": res, "width": config.model.width,
                          "batch_size": config.batch_size, "rays_per_view": config.multiview.rays_per_view},
                  {k: v for k, v in row.items() if k not in ("preset", "res", "width")})
  common.print_table(rows, ["preset", "res", "width", "march_steps", "rays_per_step", "step_s", "train_rays_per_s",
                            "render_s", "render_rays_per_s"])
  return rows


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.bench.sof", description=__doc__.splitlines()[0])
  p.add_argument("--presets", nargs="+", default=["one", "multi"], help="configs/sof.py presets")
  p.add_argument("--steps", type=int, default=10, help="timed training steps per preset")
  args = p.parse_args(argv)
  run(args.presets, args.steps)


if __name__ == "__main__":
  main()
