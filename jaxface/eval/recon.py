"""R-Net metrics on held-out synthetic samples, against the world's ground truth.

  python -m jaxface.eval.recon --workdir WORKDIR [--num 1024] [--start 1000000000]

Metrics:
  yaw/pitch/roll error: median |Δangle| in degrees (wrapped to [-180, 180]);
  landmark error: mean distance between the 68 landmarks projected from the predicted coefficients (the
    renderer's landmark function) and the rendered truth, as % of the image width (mean over points, then
    over images; the median over images is reported too);
  expression / lighting R²: 1 - Σ_d SSE_d / Σ_d SST_d over the group's dimensions (variance-weighted, as
    sklearn's multioutput='variance_weighted'), with the per-dimension R² and their plain mean alongside.
Held-out samples are world indices from `start` on (default 1e9): training draws indices below data.size
(1e6), so no held-out image was seen; identities come from the same pool (identity is not what R-Net is
judged on here).
"""


import numpy as np

from jaxface.cli import progress
from jaxface.data import synthetic
from jaxface.errors import UserError, cli
from jaxface.eval import heldout

THRESHOLDS = {"yaw_deg": 2.0, "pitch_deg": 2.0, "roll_deg": 2.0, "landmark_pct": 1.5, "exp_r2": 0.8,
              "gamma_r2": 0.8}
HELDOUT_START = 10 ** 9


def angle_errors_deg(pred, true):
  """|pred - true| in degrees for angles in radians [N, 3], wrapped to [0, 180]."""
  d = np.rad2deg(np.asarray(pred, np.float64) - np.asarray(true, np.float64))
  return np.abs((d + 180.0) % 360.0 - 180.0)


def landmark_error_pct(pred, true, width):
  """Per-image mean landmark distance as % of the image width. pred, true [N, K, 2] pixels -> [N]."""
  d = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(true, np.float64), axis=-1)
  return 100.0 * d.mean(-1) / float(width)


def r2(pred, true):
  """(variance-weighted R², per-dimension R² [D]) of predictions [N, D] against truth [N, D].

  Dimensions with no variance in `true` get per-dimension R² nan and add nothing to the weighted score."""
  pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
  sse = ((pred - true) ** 2).sum(0)
  sst = ((true - true.mean(0)) ** 2).sum(0)
  with np.errstate(divide="ignore", invalid="ignore"):
    per_dim = np.where(sst > 0, 1.0 - sse / sst, np.nan)
  weighted = 1.0 - sse[sst > 0].sum() / sst[sst > 0].sum() if (sst > 0).any() else float("nan")
  return float(weighted), per_dim


def recon_metrics(pred, true, pred_lm, true_lm, width):
  """All R-Net metrics from predicted / true coefficient dicts ([N, ...] numpy) and landmarks [N, 68, 2]."""
  ang = angle_errors_deg(pred["angle"], true["angle"])
  lm = landmark_error_pct(pred_lm, true_lm, width)
  exp_r2, exp_dims = r2(pred["exp"], true["exp"])
  gam_r2, gam_dims = r2(pred["gamma"], true["gamma"])
  out = {
      "num_samples": int(len(lm)),
      "pitch_deg": float(np.median(ang[:, 0])), "yaw_deg": float(np.median(ang[:, 1])),
      "roll_deg": float(np.median(ang[:, 2])),
      "landmark_pct": float(lm.mean()), "landmark_pct_median": float(np.median(lm)),
      "exp_r2": exp_r2, "exp_r2_mean_dim": float(np.nanmean(exp_dims)),
      "exp_r2_per_dim": [round(float(v), 4) for v in exp_dims],
      "gamma_r2": gam_r2, "gamma_r2_mean_dim": float(np.nanmean(gam_dims)),
      "gamma_r2_per_dim": [round(float(v), 4) for v in gam_dims],
  }
  for name in ("id", "tex", "trans"):
    if name in pred:
      out[f"{name}_r2"] = r2(pred[name], true[name])[0]
  out["pass"] = {k: bool(out[k] <= t) if not k.endswith("r2") else bool(out[k] >= t) for k, t in THRESHOLDS.items()}
  return out


def heldout_factors(data_cfg, num, start=HELDOUT_START):
  """Factors of `num` held-out samples (dict of [num, ...] numpy arrays)."""
  from jaxface.data import synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  cfg = sf.as_world_config(data_cfg)
  return sf.stack([sf.sample_factors(start + i, cfg) for i in range(num)])


def evaluate(model, data_cfg, num=1024, start=HELDOUT_START, batch_size=64):
  """Runs a loaded R-Net (`train.rnet.RNetModel`) on `num` held-out renders; returns `recon_metrics`."""
  import jax
  if num < 1:
    raise UserError(f"the number of held-out samples must be >= 1, got {num}")
  res = int(data_cfg.resolution)
  render = jax.jit(lambda f: synthetic.render_batch(f, res, data_cfg))
  preds, trues, plm, tlm = [], [], [], []
  for s in progress(range(0, num, batch_size), "R-Net on held-out faces"):
    n = min(batch_size, num - s)
    f = heldout_factors(data_cfg, batch_size, start + s)  # full batches: one compiled shape
    out = render({k: f[k] for k in synthetic.RENDER_KEYS})
    coeffs, lm = model.predict(out["image"])
    preds.append({k: np.asarray(v)[:n] for k, v in coeffs.items()})
    trues.append({k: f[k][:n] for k in coeffs})
    plm.append(np.asarray(lm)[:n])
    tlm.append(np.asarray(out["landmarks68"])[:n])
  cat = lambda ds: {k: np.concatenate([d[k] for d in ds]) for k in ds[0]}
  result = recon_metrics(cat(preds), cat(trues), np.concatenate(plm), np.concatenate(tlm), res)
  result.update(resolution=res, heldout_start=int(start))
  return result




def run(config, state, workdir):
  from jaxface.runs.rnet import RNetModel  # JAX: `--help` answers without loading it
  del workdir
  model = RNetModel(config, {"params": state["params"], "batch_stats": state["batch_stats"]},
                    np.asarray(state["coeff_mean"]), np.asarray(state["coeff_std"]), int(state["step"]))
  return evaluate(model, config.data, config.eval.num_samples, config.eval.start, config.eval.batch_size)


@cli
def main(argv=None):

  def load(workdir, step):
    from jaxface.runs.rnet import load_rnet  # JAX: after the arguments parse
    return load_rnet(workdir, step)

  heldout.main(argv, module="jaxface.eval.recon", description=__doc__.splitlines()[0],
               workdir_help="an R-Net training workdir (configs/rnet.py)", default_num=1024,
               default_start=HELDOUT_START, load=load,
               evaluate=lambda model, num, start: evaluate(model, model.config.data, num, start),
               shown=lambda r: {k: v for k, v in r.items() if not k.endswith("per_dim")})


if __name__ == "__main__":
  main()
