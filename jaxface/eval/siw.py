"""SIW-StyleGAN2 evaluation: segmentation consistency, region-edit locality, FID, and a region-edit grid.

  python -m jaxface.eval.siw --workdir WORKDIR [--parser PARSER_WORKDIR] [--out JSON]

  seg_consistency  mIoU(parser(G(seg, W)), seg) over SofGAN's 17 classes on `eval.num_samples` held-out world
                   label maps (z pairs and random group masks as in training, EMA generator, const noise). The
                   parser (configs/parser.py, the world's 16 classes) is mapped to 17 classes. Reference: the same
                   parser on the real world images of the same label maps (`parser_real`), its own ceiling.
  locality         per region (hair, complexion, background): one image pair per label map with the region
                   restyled (jaxface.edit.region.region_edit, alpha 1): mean |delta| inside the region /
                   mean |delta| outside it (>> 1 = local edits).
  fid              Inception pool3 (jaxface.assets "fid_inception") of `eval.fid_samples` fakes vs as many held-out
                   world images (0 = skipped).
The grid (rows: label map, base image, hair / complexion / background restyled) goes to
WORKDIR/samples/region_edit.png.
"""

import json
import os

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import, progress
from jaxface.data import synthetic
from jaxface.errors import UserError, cli
from jaxface.eval import segmentation
from jaxface.eval.fid import frechet_distance
from jaxface.runs import expert_cache
from jaxface.runs.workdir import read_run

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")
region = lazy_import("jaxface.edit.region")

EDIT_REGIONS = ("hair", "complexion", "background")


# ------------------------------------------------------------------------------------------------- parser

def resolve_parser(config):
  """config.eval.parser, or the finished parser bootstrap in the cache (training fills config.eval.parser before
  it starts, jaxface/train/siw.py `prepare`; a run's config.json from before that finds it here)."""
  from jaxface.runs import siw as siw_run  # JAX: `--help` answers without loading it
  if config.eval.parser:
    return config.eval.parser
  found = expert_cache.finished(siw_run.parser_bootstrap_config(config), "parser")
  if found is None:
    raise UserError("this SofGAN run names no evaluation parser and its bootstrap is not in the cache; pass "
                    "--parser WORKDIR (a configs/parser.py run), or rerun the training command to train it.")
  return found


def _parse17(parser, images):
  """Parser labels in SofGAN's 17 classes for images [N, R, R, 3] in [-1, 1] (resized to the parser's size)."""
  res = int(parser.config.data.resolution)
  x = jnp.clip((jnp.asarray(images) + 1.0) / 2.0, 0.0, 1.0)
  if x.shape[1] != res:
    x = jax.image.resize(x, (x.shape[0], res, res, 3), "bilinear")
  return region.world_to_sofgan17(np.asarray(parser.labels(x)))


# ------------------------------------------------------------------------------------------------- generation

def _world(config, start, n):
  """Held-out world renders: real images [n, R, R, 3] in [-1, 1] and 17-class labels [n, R, R] (numpy)."""
  out = synthetic.render_items(range(start, start + n), config.data.resolution, config.data,
                               batch_size=min(int(config.eval.batch_size), 32))
  return out["image"] * 2.0 - 1.0, region.world_to_sofgan17(out["seg"].astype(np.int32))


class Sampler:
  """Jitted EMA-generator calls at the config's shapes: fakes with z pairs + group masks, and region edits."""

  def __init__(self, config, params):
    from jaxface.runs import siw as siw_train  # JAX: loaded once the command runs, not for --help
    self.config, self.params = config, params
    self.G, m = siw_train.generator(config), config.model
    self.m = m

    def fake(params, labels, key):
      kz, km = jax.random.split(key)
      seg_labels = region.nearest_resize(labels, m.seg_res)
      seg = jax.nn.one_hot(seg_labels, 17, dtype=jnp.float32)
      z = siw_train.sample_z_pairs(kz, labels.shape[0], m.z_dim, config.loss.distinct_prob)
      mask = region.random_group_masks(km, seg_labels)
      return self.G.apply({"params": params}, seg, z, mask, "const")

    self.fake = jax.jit(fake)
    self.map = jax.jit(lambda params, z: self.G.apply({"params": params}, z, method="map"))

  def fakes(self, labels, seed):
    bs, out = int(self.config.eval.batch_size), []
    for i in progress(range(0, len(labels), bs), "painting label maps"):
      chunk = labels[i:i + bs]
      pad = bs - len(chunk)  # full batches: one compile
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
      out.append(np.asarray(self.fake(self.params, jnp.asarray(chunk), jax.random.key(seed + i)))[:bs - pad])
    return np.concatenate(out)

  def ws(self, n, seed):
    z = jax.random.normal(jax.random.key(seed), (n, self.m.z_dim))
    return np.asarray(self.map(self.params, z))

  def edit(self, labels, w_base, w_new, regions):
    return np.asarray(region.region_edit(self.G, self.params, labels, w_base, w_new, regions, 1.0))


# ------------------------------------------------------------------------------------------------- metrics

def seg_consistency(sampler, parser, labels, reals, seed=11):
  """mIoU of the parser on fakes G(labels) and, as the reference, on the real images of the same labels."""
  fakes = sampler.fakes(labels, seed)
  res = int(parser.config.data.resolution)
  truth = np.asarray(region.nearest_resize(jnp.asarray(labels), res))
  out = {}
  for name, images in (("fake", fakes), ("real", reals)):
    conf = np.zeros((17, 17), np.int64)
    for i in range(0, len(images), 32):
      conf += segmentation.confusion_matrix(_parse17(parser, images[i:i + 32]), truth[i:i + 32], 17)
    iou = segmentation.iou_per_class(conf)
    out[name] = {"miou": float(np.nanmean(iou)),
                 "pixel_accuracy": float(np.diag(conf).sum() / conf.sum()),
                 "iou": {c: (None if np.isnan(v) else round(float(v), 4)) for c, v in zip(region.CLASSES17, iou)}}
  return out, fakes


def locality(sampler, labels, seed=12):
  """Per region: mean |delta| inside / outside the region (pixels of the output-size label map), and both means."""
  n, out = len(labels), {}
  w_base, w_new = sampler.ws(n, seed), sampler.ws(n, seed + 1)
  base = sampler.edit(labels, w_base, w_new, [])  # empty region: the base image
  res = base.shape[1]
  lab = np.asarray(region.nearest_resize(jnp.asarray(labels), res))
  edits = {}
  for name in progress(EDIT_REGIONS, "region edits", unit="region"):
    edited = np.concatenate([sampler.edit(labels[i:i + 32], w_base[i:i + 32], w_new[i:i + 32], name)
                             for i in range(0, n, 32)])
    edits[name] = edited
    delta = np.abs(edited - base).mean(-1)
    inside = np.isin(lab, region.REGIONS[name])
    d_in = float(delta[inside].mean()) if inside.any() else float("nan")
    d_out = float(delta[~inside].mean()) if (~inside).any() else float("nan")
    out[name] = {"inside": d_in, "outside": d_out, "ratio": d_in / max(d_out, 1e-12),
                 "area": float(inside.mean())}
  return out, base, edits


def fid(fakes, reals):
  from jaxface.models import inception  # JAX: loaded once the command runs, not for --help
  apply, variables = inception.load()
  feats = jax.jit(lambda x: apply(variables, x))
  f = [np.concatenate([np.asarray(feats((x[i:i + 16] + 1.0) * 127.5)) for i in range(0, len(x), 16)])
       for x in (fakes, reals)]
  return float(frechet_distance(*f))


def edit_grid(labels, base, edits, rows=6):
  """uint8 grid: one row per label map: [label map | base | hair | complexion | background restyled]."""
  from jaxface.metrics import image_grid  # JAX: loaded once the command runs, not for --help
  n = min(rows, len(base))
  res = base.shape[1]
  colours = np.asarray(region.colorize(labels[:n], res)) * 2.0 - 1.0
  cols = [colours, base[:n]] + [edits[r][:n] for r in EDIT_REGIONS]
  return image_grid(np.stack(cols, axis=1).reshape((-1,) + base.shape[1:]), cols=len(cols))


# ------------------------------------------------------------------------------------------------- all

def evaluate(config, state, workdir=None, parser_workdir=None, log=print):
  from jaxface.runs import parser as parser_lib  # JAX: loaded once the command runs, not for --help
  e = config.eval
  params = jax.tree.map(jnp.asarray, state["G_ema"])
  sampler = Sampler(config, params)
  n = int(e.num_samples)
  reals, labels = _world(config, int(e.start), n)
  parser_dir = parser_workdir or resolve_parser(config)
  parser = parser_lib.load_parser(parser_dir)
  out = {"step": int(np.asarray(state["step"])), "num_samples": n, "parser": os.path.abspath(parser_dir)}
  seg, fakes = seg_consistency(sampler, parser, labels, reals)
  out["seg_consistency"] = {"miou": seg["fake"]["miou"], "parser_real_miou": seg["real"]["miou"],
                            "ratio": seg["fake"]["miou"] / max(seg["real"]["miou"], 1e-12),
                            "iou": seg["fake"]["iou"], "iou_real": seg["real"]["iou"]}
  loc, base, edits = locality(sampler, labels[:min(n, 64)])
  out["locality"] = loc
  nf = int(e.fid_samples)
  if nf > 0:
    f_labels = _world(config, int(e.start) + 500_000, nf)[1]
    f_reals = _world(config, int(e.start) + 700_000, nf)[0]
    out["fid"] = fid(sampler.fakes(f_labels, 13), f_reals)
    out["fid_samples"] = nf
  if workdir and jax.process_index() == 0:
    from jaxface.metrics import save_png  # JAX: loaded once the command runs, not for --help
    save_png(os.path.join(workdir, "samples", "region_edit.png"), edit_grid(labels, base, edits))
  return out




def run(config, state, workdir):
  return evaluate(config, state, workdir)


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.eval.siw", description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="a configs/siw.py training workdir")
  p.add_argument("--parser", default="", help="configs/parser.py workdir (default: the run's eval.parser or the "
                                              "bootstrap)")
  p.add_argument("--num", type=int, default=0,
                 help="label maps for mIoU/locality (default: the run's eval.num_samples)")
  p.add_argument("--fid", type=int, default=-1, help="FID samples (default: the run's eval.fid_samples; 0 = skip)")
  p.add_argument("--out", default="", help="JSON output path (default: WORKDIR/eval/siw_step_N.json)")
  args = p.parse_args(argv)
  if args.num < 0:
    raise UserError(f"--num must be >= 1 (or 0 for the run's eval.num_samples), got {args.num}")
  config, state, step = read_run(args.workdir, trainer="siw")
  if args.num:
    config.eval.num_samples = args.num
  if args.fid >= 0:
    config.eval.fid_samples = args.fid
  out = evaluate(config, state, args.workdir, args.parser or None)
  path = args.out or os.path.join(args.workdir, "eval", f"siw_step_{step}.json")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(out, f, indent=2)
  print(json.dumps({k: v for k, v in out.items() if k not in ("seg_consistency",)}, indent=1))
  print(f"seg consistency mIoU {out['seg_consistency']['miou']:.3f} (parser on real: "
        f"{out['seg_consistency']['parser_real_miou']:.3f}); written to {path}")


if __name__ == "__main__":
  main()
