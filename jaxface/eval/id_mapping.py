"""Metrics of an identity-mapping run (Nitzan et al.'s evaluation, plus truth-based ones on the synthetic world).

On held-out generated faces (rows after data.num_images; never trained on):
  cross pairs (I_id != I_attr), out = swap(I_id, I_attr):
    id_to_out, attr_to_out   mean identity cosine of the output to each source; their difference is the original's
                             "disentanglement score" (higher = identity from I_id, not leaked from I_attr)
    id_to_attr               the cosine of two different generated faces: the no-transfer floor
    yaw/pitch/roll_err_deg   median |R-Net angle(out) - R-Net angle(I_attr)|; *_vs_id the same to I_id (a mapper
                             that copied I_id's pose would score low there and high on the first)
    landmark_err_pct         mean landmark distance out vs I_attr, % of the image width (the loss's points)
  reconstructions (I_id = I_attr = x): psnr_db (images in [0, 1]), ms_ssim, id_cos.
On the synthetic world (when the generator was trained on it): real world renders as inputs, the attribute source's
TRUE pose known: world_yaw_err_deg = median |R-Net yaw(out) - true yaw(I_attr)|, next to rnet_yaw_err_deg, R-Net's
own error on the attribute renders (the floor of this measurement).
The identity network is the training one (config.experts.identity); the original tests with a second network.

  python -m jaxface.eval.id_mapping --workdir W [--step N] [--out JSON]     # re-score a trained mapper
"""

import json
import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.data import synthetic
from jaxface.errors import UserError, cli
from jaxface.runs import generator_samples as gs
from jaxface.runs.workdir import checkpoint_steps

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")
ssim_lib = lazy_import("jaxface.losses.ssim")

WORLD_HELDOUT = 2_000_000_000  # world indices far from anything an expert trained on


def _batched(fn, *arrays, batch):
  out = []
  for i in range(0, arrays[0].shape[0], batch):
    chunk = [a[i:i + batch] for a in arrays]
    k = chunk[0].shape[0]
    if k < batch:  # pad: one compiled shape
      chunk = [np.concatenate([c, np.repeat(c[-1:], batch - k, 0)], 0) for c in chunk]
    res = jax.device_get(fn(*[jnp.asarray(c) for c in chunk]))
    out.append(jax.tree.map(lambda a: np.asarray(a)[:k], res))
  return jax.tree.map(lambda *xs: np.concatenate(xs, 0), *out)


def _deg(a, b):
  d = np.rad2deg(np.asarray(a, np.float64) - np.asarray(b, np.float64))
  return np.abs((d + 180.0) % 360.0 - 180.0)


def measure_fn(config):
  """Jitted (state, uint8 I_id, uint8 I_attr) -> per-pair measurements of the swap; build once per evaluation."""
  from jaxface.runs import id_mapping as train_lib  # JAX: loaded once the command runs, not for --help
  from jaxface.runs import id_mapping_experts as experts_lib  # JAX: loaded once the command runs, not for --help
  ex, swap = experts_lib.functions(config), train_lib.swap_fn(config)

  @jax.jit
  def measure(state, a_u8, b_u8):
    frozen = state["frozen"]
    a, b = train_lib.to_float(a_u8), train_lib.to_float(b_u8)
    out = swap(state, a, b)
    ea, eb, eo = (ex.identity(frozen, x) for x in (a, b, out))
    return {"out": out, "id_to_out": jnp.sum(eo * ea, -1), "attr_to_out": jnp.sum(eo * eb, -1),
            "id_to_attr": jnp.sum(ea * eb, -1), "pose_out": ex.pose(frozen, out), "pose_id": ex.pose(frozen, a),
            "pose_attr": ex.pose(frozen, b), "lm_out": ex.landmarks(frozen, out), "lm_attr": ex.landmarks(frozen, b),
            "ms_ssim": ssim_lib.ms_ssim((out + 1) / 2, (b + 1) / 2, data_range=1.0),
            "mse": jnp.mean(jnp.square((jnp.clip(out, -1, 1) - b) / 2), axis=(1, 2, 3))}

  return measure


def measure_pairs(config, state, x_id, x_attr, measure=None):
  """Per-pair measurements of swap(x_id, x_attr) for uint8 image arrays [N, R, R, 3]."""
  measure = measure or measure_fn(config)
  return _batched(lambda a, b: measure(state, a, b), np.asarray(x_id), np.asarray(x_attr),
                  batch=int(config.eval.batch_size))


def summarize_cross(m, resolution):
  ang, ang_id = _deg(m["pose_out"], m["pose_attr"]), _deg(m["pose_out"], m["pose_id"])
  lm = np.linalg.norm(m["lm_out"] - m["lm_attr"], axis=-1).mean(-1) / resolution * 100.0
  out = {k: float(np.mean(m[k])) for k in ("id_to_out", "attr_to_out", "id_to_attr")}
  out["disentanglement"] = out["id_to_out"] - out["attr_to_out"]
  for i, name in enumerate(("pitch", "yaw", "roll")):
    out[f"{name}_err_deg"] = float(np.median(ang[:, i]))
    out[f"{name}_err_deg_vs_id"] = float(np.median(ang_id[:, i]))
  out["landmark_err_pct"] = float(np.mean(lm))
  return out


def evaluate(config, state, workdir, log=print):
  from jaxface.runs import id_mapping as train_lib  # JAX: loaded once the command runs, not for --help
  del workdir
  state = jax.device_get(state)
  gen = train_lib.generator(config)
  images, _, _ = gs.open_samples(config.samples.path)
  first, n = int(config.samples.num_images), int(config.eval.num_pairs)
  val = np.asarray(images[first:first + min(n, int(config.samples.num_val))])
  shift = np.roll(np.arange(len(val)), max(1, len(val) // 2))  # pair each held-out face with another one
  measure = measure_fn(config)  # one compiled program for every measurement below
  result = {"cross": summarize_cross(measure_pairs(config, state, val, val[shift], measure), gen.resolution)}
  rec = measure_pairs(config, state, val, val, measure)
  result["reconstruction"] = {"psnr_db": float(np.mean(-10.0 * np.log10(np.maximum(rec["mse"], 1e-10)))),
                              "ms_ssim": float(np.mean(rec["ms_ssim"])), "id_cos": float(np.mean(rec["id_to_out"]))}
  if gen.config.data.get("kind") == "synthetic" and config.eval.world_pairs > 0:
    result["world"] = _world(config, state, gen, measure)
  result["num_pairs"] = int(len(val))
  if log:
    c = result["cross"]
    log(f"  identity cos to I_id {c['id_to_out']:.3f}, to I_attr {c['attr_to_out']:.3f} (two faces "
        f"{c['id_to_attr']:.3f}); yaw err vs I_attr {c['yaw_err_deg']:.2f} deg (vs I_id {c['yaw_err_deg_vs_id']:.2f}); "
        f"recon PSNR {result['reconstruction']['psnr_db']:.2f} dB")
  return result


def _world(config, state, gen, measure):
  """Synthetic-world renders with known pose as the attribute (and identity) sources."""
  from jaxface.data import synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  n, wcfg = int(config.eval.world_pairs), sf.as_world_config(gen.config.data)
  attr_idx = [WORLD_HELDOUT + i for i in range(n)]
  id_idx = [WORLD_HELDOUT + 100_000 + i for i in range(n)]
  to_u8 = lambda idx: synthetic.to_uint8(synthetic.render_items(idx, gen.resolution, wcfg)["image"])
  attr, ids = to_u8(attr_idx), to_u8(id_idx)
  true = np.stack([sf.sample_factors(i, wcfg)["angle"] for i in attr_idx])
  m = measure_pairs(config, state, ids, attr, measure)
  return {"world_yaw_err_deg": float(np.median(_deg(m["pose_out"][:, 1], true[:, 1]))),
          "rnet_yaw_err_deg": float(np.median(_deg(m["pose_attr"][:, 1], true[:, 1]))),
          "world_pitch_err_deg": float(np.median(_deg(m["pose_out"][:, 0], true[:, 0]))),
          "id_to_out": float(np.mean(m["id_to_out"])), "attr_to_out": float(np.mean(m["attr_to_out"])),
          "id_to_attr": float(np.mean(m["id_to_attr"])), "pairs": n}




def run(config, state, workdir):
  return evaluate(config, state, workdir)


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.eval.id_mapping", description=__doc__)
  p.add_argument("--workdir", required=True, help="a configs/id_mapping.py training workdir")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--out", default="", help="JSON path (default: WORKDIR/eval/id_mapping_step_<step>.json)")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if args.step is not None and args.step < 0:
    raise UserError(f"--step {args.step}: checkpoint steps are >= 0.")
  from jaxface.runs import id_mapping as swap  # JAX: loaded once the command runs, not for --help
  config, state, _ = swap.load_run(args.workdir, args.step)
  step = args.step if args.step is not None else max(checkpoint_steps(args.workdir))
  result = evaluate(config, state, args.workdir)
  result["step"] = step
  out = args.out or os.path.join(args.workdir, "eval", f"id_mapping_step_{step}.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
