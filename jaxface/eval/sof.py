"""Evaluation of a trained Semantic Occupancy Field.

  python -m jaxface.eval.sof --workdir WORKDIR [--samples 32 --components 16 --views 5 --invert 4]

- held-out-view mIoU: the training instances' held-out views (never trained on) rendered vs truth; IoU over the
  whole set per class, mIoU over classes present in truth or render (eval/segmentation.py).
- GMM sampling: a mixture fitted to the learned codes (edit/sof_codes.py), samples rendered frontally; a sample
  "has all major parts" when its render shows skin, hair, both eyes (l_eye, r_eye), both brows (l_brow, r_brow),
  a nose (l_nose or r_nose) and a mouth (mouth, u_lip or l_lip), each with >= `min_pixels` pixels. The same test
  on the truth renders of the training instances is reported beside it (glasses hide eyes in some heads).
- inversion: new instances (world indices from 10**9) fitted from their frontal view with frozen networks; the
  mIoU of their other views is the novel-view mIoU of an inverted code.
Writes WORKDIR/eval/sof_<step>.json, sof_samples_<step>.png (GMM samples x views) and sof_heldout_<step>.png
(truth | render for held-out views).
"""

import json
import os

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import progress
from jaxface.data import synthetic
from jaxface.errors import UserError, cli
from jaxface.eval import segmentation

HELDOUT_INSTANCES = 10 ** 9
THRESHOLD = 0.8
MAJOR_PARTS = {"skin": ("skin",), "hair": ("hair",), "l_eye": ("l_eye",), "r_eye": ("r_eye",),
               "l_brow": ("l_brow",), "r_brow": ("r_brow",), "nose": ("l_nose", "r_nose"),
               "mouth": ("mouth", "u_lip", "l_lip")}


def miou_of(pred, true, num_classes, names=None):
  conf = segmentation.confusion_matrix(pred, true, num_classes)
  iou = segmentation.iou_per_class(conf)
  names = names or [str(i) for i in range(num_classes)]
  return float(np.nanmean(iou)), {n: (None if np.isnan(v) else round(float(v), 4)) for n, v in zip(names, iou)}


def heldout_view_miou(model, num_instances=None, data=None):
  """mIoU of the training instances' held-out views (and of their training views, for contrast)."""
  from jaxface.data import multiview, synthetic  # JAX: loaded once the command runs, not for --help
  data = multiview.load(model.config) if data is None else data
  n = min(num_instances or len(data["seg"]), len(data["seg"]))
  names = list(synthetic.CLASSES)
  out = {"num_instances": int(n), "resolution": int(model.res), "step": int(model.step)}
  for name, views in (("heldout_view", data["heldout_views"]), ("train_view", data["train_views"])):
    if not len(views):
      continue
    inst, view = np.repeat(np.arange(n), len(views)), np.tile(views, n)
    pred = model.labels(model.params["codes"][inst], data["c2w"][inst, view])
    miou, iou = miou_of(pred, data["seg"][inst, view], model.num_classes, names)
    out[f"{name}_miou"] = miou
    out[f"{name}_iou"] = iou
  if "heldout_view_miou" in out:
    out["pass"] = {"heldout_view_miou": bool(out["heldout_view_miou"] >= THRESHOLD)}
  return out


def major_parts(labels, min_pixels=3):
  """Per label map [N, H, W]: dict part -> bool [N], and "all" -> bool [N] (see the module docstring)."""
  c = {n: i for i, n in enumerate(synthetic.CLASSES)}
  labels = np.asarray(labels)
  counts = np.stack([(labels == i).sum((-2, -1)) for i in range(len(synthetic.CLASSES))], -1)
  parts = {p: counts[:, [c[x] for x in names]].sum(-1) >= min_pixels for p, names in MAJOR_PARTS.items()}
  parts["all"] = np.all(np.stack(list(parts.values())), 0)
  return parts


def sweep_cameras(model, views, pitch=0.0):
  """c2w [V, 4, 4] over yaw ±max_yaw (the training range) at `pitch` radians."""
  import jax  # JAX: `--help` answers without loading it
  from jaxface.data import synthetic_render as sr  # JAX: loaded once the command runs, not for --help
  from jaxface.render import raymarch  # JAX: loaded once the command runs, not for --help
  lim = np.deg2rad(model.config.multiview.max_yaw)
  yaws = np.linspace(-lim, lim, views) if views > 1 else np.zeros(1)
  return np.stack([np.asarray(jax.device_get(raymarch.yaw_pitch_c2w(y, pitch, sr.CAMERA_Z))) for y in yaws])


def frontal(model):
  return sweep_cameras(model, 1)[0]


def gmm_sampling(model, samples=32, components=16, views=5, seed=0, min_pixels=3):
  """Fits the GMM to the code table, renders `samples` frontal heads; returns (results, grid labels [S, V, R, R])."""
  from jaxface.data import multiview  # JAX: loaded once the command runs, not for --help
  from jaxface.edit import sof_codes  # JAX: loaded once the command runs, not for --help
  gmm = sof_codes.fit_gmm(model.codes, components, seed=seed)
  z, _ = sof_codes.sample_gmm(gmm, samples, seed=seed)
  front = model.labels(z, np.repeat(frontal(model)[None], samples, 0))
  parts = major_parts(front, min_pixels)
  data = multiview.load(model.config)
  truth_front = multiview.render_instances(data["instances"][:samples], 1, model.res, model.config.data, 0.0,
                                           0.0)["seg"][:, 0]
  truth_parts = major_parts(truth_front, min_pixels)
  cams = sweep_cameras(model, views)
  grid = model.labels(np.repeat(z, views, 0), np.tile(cams, (samples, 1, 1))).reshape(samples, views, model.res,
                                                                                       model.res)
  res = {"samples": int(samples), "components": int(len(gmm["weights"])), "gmm_log_likelihood":
         float(gmm["log_likelihood"]), "all_major_parts_fraction": float(parts["all"].mean()),
         "per_part_fraction": {p: float(v.mean()) for p, v in parts.items() if p != "all"},
         "truth_all_major_parts_fraction": float(truth_parts["all"].mean()), "min_pixels": int(min_pixels),
         "parts": {p: list(n) for p, n in MAJOR_PARTS.items()}}
  return res, grid


def inversion(model, num=4, steps=200, lr=1e-2, opt_cam=False, seed=0):
  """Novel-view mIoU of codes inverted from one frontal view of new instances (world indices from 10**9)."""
  from jaxface.data import multiview, synthetic  # JAX: loaded once the command runs, not for --help
  from jaxface.edit import sof_codes  # JAX: loaded once the command runs, not for --help
  mv = model.config.multiview
  data = multiview.render_instances(range(HELDOUT_INSTANCES, HELDOUT_INSTANCES + num), mv.num_views, model.res,
                                    model.config.data, mv.max_yaw, mv.max_pitch)
  fit_view = int(np.argmin(np.abs(data["yaw"])))
  others = np.setdiff1d(np.arange(mv.num_views), [fit_view])
  z_mean = model.codes.mean(0)
  preds, preds_mean, fitted_before, fitted_after = [], [], [], []
  for i in progress(range(num), "inverting held-out heads", unit="head"):
    r = sof_codes.invert(model, data["seg"][i, fit_view], float(data["yaw"][fit_view]),
                         float(data["pitch"][fit_view]), steps=steps, lr=lr, opt_cam=opt_cam, seed=seed + i,
                         z_init=z_mean)
    preds.append(model.labels(np.repeat(r["z"][None], len(others), 0), data["c2w"][i, others]))
    preds_mean.append(model.labels(np.repeat(z_mean[None], len(others), 0), data["c2w"][i, others]))
    fitted_before.append(model.labels(z_mean[None], data["c2w"][i, fit_view][None])[0])
    fitted_after.append(model.labels(r["z"][None], data["c2w"][i, fit_view][None])[0])
  names, truth = list(synthetic.CLASSES), data["seg"][:, others]
  n = model.num_classes
  return {"instances": int(num), "steps": int(steps), "fit_view_yaw_deg": float(np.rad2deg(data["yaw"][fit_view])),
          "novel_view_miou": miou_of(np.stack(preds), truth, n, names)[0],
          "novel_view_miou_mean_code": miou_of(np.stack(preds_mean), truth, n, names)[0],
          "fit_view_miou_before": miou_of(np.stack(fitted_before), data["seg"][:, fit_view], n)[0],
          "fit_view_miou_after": miou_of(np.stack(fitted_after), data["seg"][:, fit_view], n)[0]}


def heldout_grid(model, num_instances=4):
  """uint8 grid: per instance a row of (truth | render) pairs over its held-out views."""
  from jaxface.data import multiview  # JAX: loaded once the command runs, not for --help
  data = multiview.load(model.config)
  n, views = min(num_instances, len(data["seg"])), data["heldout_views"]
  inst, view = np.repeat(np.arange(n), len(views)), np.tile(views, n)
  pred = model.labels(model.params["codes"][inst], data["c2w"][inst, view])
  pairs = np.stack([data["seg"][inst, view], pred], 1).reshape(n, len(views) * 2, model.res, model.res)
  return label_grid(pairs)


def label_grid(labels, gap=2):
  """Label maps [rows, cols, H, W] -> uint8 colour grid with white gaps."""
  from jaxface.data import multiview  # JAX: loaded once the command runs, not for --help
  rows, cols, h, w = labels.shape
  out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
  col = multiview.colourise(labels)
  for r in range(rows):
    for c in range(cols):
      out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = col[r, c]
  return out




def run(config, state, workdir):
  from jaxface.runs.sof import SOFModel  # JAX: `--help` answers without loading it
  import jax  # JAX: `--help` answers without loading it
  del workdir
  model = SOFModel(config, jax.device_get(state["params"]), int(state["step"]))
  return heldout_view_miou(model, config.eval.num_instances)


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.eval.sof", description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="a configs/sof.py training workdir")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--samples", type=int, default=32, help="GMM samples rendered")
  p.add_argument("--components", type=int, default=16, help="GMM components (SofGAN: 16)")
  p.add_argument("--views", type=int, default=5, help="views per sample in the PNG grid")
  p.add_argument("--grid-samples", type=int, default=8, help="GMM samples (rows) in the PNG grid")
  p.add_argument("--invert", type=int, default=0, help="new instances to invert (0 = skip)")
  p.add_argument("--invert-steps", type=int, default=200, help="Adam steps per inversion")
  p.add_argument("--opt-cam", action="store_true", help="also optimise the camera's yaw and pitch")
  p.add_argument("--seed", type=int, default=0, help="seed of the GMM samples and inversions")
  args = p.parse_args(argv)
  if args.samples < 1 or args.views < 1 or args.components < 1 or args.invert < 0:
    raise UserError("--samples, --views and --components must be >= 1 and --invert >= 0")
  from jaxface import metrics  # JAX: loaded once the command runs, not for --help
  from jaxface.runs import sof as sof_lib  # JAX: loaded once the command runs, not for --help
  model = sof_lib.load_sof(args.workdir, args.step)
  results = {"heldout": heldout_view_miou(model, model.config.eval.num_instances)}
  gmm, grid = gmm_sampling(model, args.samples, args.components, args.views, args.seed)
  results["gmm"] = gmm
  if args.invert:
    results["inversion"] = inversion(model, args.invert, args.invert_steps, opt_cam=args.opt_cam, seed=args.seed)
  out = os.path.join(args.workdir, "eval")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"sof_{model.step}.json"), "w") as f:
    json.dump(results, f, indent=2)
  metrics.save_png(os.path.join(out, f"sof_samples_{model.step}.png"), label_grid(grid[:args.grid_samples]))
  metrics.save_png(os.path.join(out, f"sof_heldout_{model.step}.png"), heldout_grid(model))
  print(json.dumps({"heldout_view_miou": results["heldout"].get("heldout_view_miou"),
                    "all_major_parts_fraction": gmm["all_major_parts_fraction"],
                    "novel_view_miou": results.get("inversion", {}).get("novel_view_miou")}))
  print(f"wrote {out}/sof_{model.step}.json, sof_samples_{model.step}.png, sof_heldout_{model.step}.png")


if __name__ == "__main__":
  main()
