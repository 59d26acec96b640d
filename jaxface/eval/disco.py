"""DiscoFaceGAN evaluation: control accuracy, identity consistency, Disentanglement Score, FID.

All measured with the run's own frozen experts (R-Net re-estimates pose, expression, light and landmarks; the
identity net embeds), on G_ema without truncation unless config.eval says otherwise:
  control     request λ (drawn from the priors), generate, re-estimate: yaw/pitch/roll error (degrees), landmark
              error (% of the image width, R-Net landmarks of the fake vs the render of λ), light error
              (mean |γ̃ - γ|). On the synthetic world also the floor: the same R-Net on real images of known λ.
  identity    mean identity cosine between two fakes that share identity and differ in pose, expression or
              light; on the synthetic world divided by the same statistic of real image pairs (same identity,
              another pose/expression/light).
  DS          GAN-Control's Disentanglement Score (Shoshan et al. 2021): for factor i, groups where only i varies;
              per attribute (identity embedding, R-Net expression, angles, light) the mean pairwise distance
              within a group, averaged over groups and normalized by the same statistic over real images;
              DS_i = Π_{j≠i} σ_i / σ_j. Synthetic world: also the DS of real groups (only one true factor
              varies), the ceiling the generator is compared with.
  FID         Inception pool3 (jaxface.assets "fid_inception") of eval.fid_samples fakes vs as many reals.
`evaluate(config, state, workdir)` runs them all, writes factor-sweep grids to workdir/samples/ and returns one
dict (the loop writes it to workdir/eval/step_N.json).
  python -m jaxface.eval.disco --workdir W [--step N] [--groups G] [--samples N] [--rnet R] [--idnet I]
"""

import json
import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import UserError, cli
from jaxface.eval.disco_references import control_errors, identity_scores, real_images, real_references
from jaxface.eval.disentangle import FACTORS, ds_from_spreads, ds_intervals, group_spreads, mean_spreads, \
    spreads as _spreads
from jaxface.eval.fid import frechet_distance
from jaxface.runs.disco_factors import ANGLES

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")


# ------------------------------------------------------------------------------------------------- measuring

class Measure:
  """Expert read-outs of images in [-1, 1], batched and jitted once."""

  def __init__(self, gen):
    ex, self.frozen = gen.experts, gen.frozen
    self._recon = jax.jit(ex.recon)  # the weights are arguments, not constants compiled into the program
    self._embed = jax.jit(ex.identity)
    from jaxface.runs import disco  # JAX: loaded once the command runs, not for --help
    # One program for every batch of renders the evaluation asks for (control and identity both render).
    self._render = jax.jit(lambda f, b: disco.render_targets(ex, f, b, gen.resolution))
    self.batch = int(gen.config.eval.batch_size)

  def _batched(self, fn, images):
    outs = [jax.device_get(fn(self.frozen, jnp.asarray(images[i:i + self.batch])))
            for i in range(0, len(images), self.batch)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)

  def recon(self, images):
    return self._batched(self._recon, images)

  def embed(self, images):
    return self._batched(self._embed, images)

  def renders(self, blocks):
    """The exact renders of λ (the imitation targets) in [-1, 1], and their landmarks."""
    images, landmarks = [], []
    for i in range(0, len(blocks["id"]), self.batch):
      out = self._render(self.frozen, {k: jnp.asarray(v[i:i + self.batch]) for k, v in blocks.items()})
      images.append(np.asarray(out["image"]) * 2.0 - 1.0)
      landmarks.append(np.asarray(out["landmarks"]))
    return np.concatenate(images), np.concatenate(landmarks)

  def attributes(self, images):
    r = self.recon(images)
    return {"id": self.embed(images), "exp": r["coeffs"]["exp"], "gamma": r["gamma"], "angle": r["coeffs"]["angle"]}


def _generate(gen, blocks, noise, psi):
  n, out = len(blocks["id"]), []
  b = int(gen.config.eval.batch_size)
  for i in range(0, n, b):
    part = {k: v[i:i + b] for k, v in blocks.items()}
    out.append(np.asarray(gen.generate(part, noise[i:i + b], psi)))
  return np.concatenate(out)


def _draw(gen, seed, n):
  blocks = gen.random_blocks(seed, n)
  noise = np.asarray(jax.random.normal(jax.random.key(seed + 555), (n, gen.noise_dim)))
  return blocks, noise


def control(gen, measure, n, psi, seed=101):
  """Requested vs re-estimated factors of n fakes, and of the exact renders of the same λ (the imitation targets:
  the measuring R-Net's own error on the kind of image the generator is taught to make)."""
  blocks, noise = _draw(gen, seed, n)
  fakes = _generate(gen, blocks, noise, psi)
  renders, lm = measure.renders(blocks)
  return (control_errors(measure.recon(fakes), blocks, lm, gen.resolution),
          control_errors(measure.recon(renders), blocks, lm, gen.resolution))


def identity_consistency(gen, measure, n, psi, seed=202):
  """Mean identity cosine of fake pairs sharing identity (and ε) but not pose / expression / light, and of fakes
  of different identities; the same of the exact renders of those λ ("render": what the identity net can tell
  apart in images that look like the imitation targets)."""
  blocks, noise = _draw(gen, seed, n)
  images = {"fake": lambda b: _generate(gen, b, noise, psi), "render": lambda b: measure.renders(b)[0]}
  out = {}
  for kind, make in images.items():
    changed = {}
    for i, (factor, name) in enumerate((("angle", "pose"), ("exp", "expression"), ("gamma", "light"))):
      other = dict(blocks)
      other.update(gen.factor_blocks(factor, seed + 1000 + i, n))
      changed[name] = measure.embed(make(other))
    scores = identity_scores(measure.embed(make(blocks)), changed)
    if kind == "fake":
      out.update(scores)
    else:
      out["render"] = scores
  return out


def generated_groups(gen, measure, groups, size, psi, seed=303):
  """{factor: {attr: [groups] σ}}: for each factor, `groups` groups of `size` fakes in which only that factor
  varies, each group's spread."""
  spreads = {}
  for fi, factor in enumerate(FACTORS):
    base, noise = _draw(gen, seed + fi, groups)
    rows = {k: np.repeat(v, size, 0) for k, v in base.items()}
    rows.update(gen.factor_blocks(factor, seed + 100 + fi, groups * size))
    images = _generate(gen, rows, np.repeat(noise, size, 0), psi)
    spreads[factor] = group_spreads(measure.attributes(images), groups, size)
  return spreads


# ------------------------------------------------------------------------------------------------- FID

def fid(gen, n, psi, config, seed=404):
  from jaxface.models import inception  # JAX: loaded once the command runs, not for --help
  apply, variables = inception.load()
  feats = jax.jit(lambda x: apply(variables, x))
  blocks, noise = _draw(gen, seed, n)
  fake = _generate(gen, blocks, noise, psi)
  real = real_images(config, n)
  f_fake = np.concatenate([np.asarray(feats((fake[i:i + 16] + 1) * 127.5)) for i in range(0, n, 16)])
  f_real = np.concatenate([np.asarray(feats((real[i:i + 16] + 1) * 127.5)) for i in range(0, n, 16)])
  return float(frechet_distance(f_fake, f_real))


# ------------------------------------------------------------------------------------------------- all

def evaluate_generator(gen, workdir=None):
  config, e = gen.config, gen.config.eval
  psi = float(e.get("psi", 1.0))
  measure = Measure(gen)
  out = {"step": gen.step, "psi": psi}
  bar = cli_lib.progress(None, "evaluating", total=4 + (int(e.fid_samples) > 0) + (workdir is not None), unit="stage")
  out["control"], out["control_render_floor"] = control(gen, measure, int(e.control_samples), psi)
  bar.update()
  out["identity"] = identity_consistency(gen, measure, int(e.control_samples), psi)
  bar.update()
  per_group = generated_groups(gen, measure, int(e.groups), int(e.group_size), psi)
  spreads = mean_spreads(per_group)
  bar.update()
  if config.data.kind == "synthetic":
    ref = real_references(config, measure, int(e.groups), int(e.group_size),
                          max(int(e.control_samples), int(e.groups) * int(e.group_size)))
    out["control_floor"] = ref["control_floor"]
    out["identity_real"] = ref["identity_real"]
    out["identity_ratio"] = out["identity"]["mean_same_identity"] / ref["identity_real"]["mean_same_identity"]
    real_spread = ref["real_spread"]
    out["disentanglement"] = ds_from_spreads(spreads, real_spread)
    out["disentanglement_real"] = ds_from_spreads(ref["real_group_spreads"], real_spread)
  else:
    imgs = real_images(config, int(e.groups) * int(e.group_size))
    real_spread = _spreads(measure.attributes(imgs), int(e.groups), int(e.group_size))
    out["disentanglement"] = ds_from_spreads(spreads, real_spread)
  intervals = ds_intervals(per_group, real_spread)
  out["disentanglement"]["ds_mean_interval90"] = intervals.pop("mean")
  out["disentanglement"]["ds_interval90"] = intervals
  bar.update()
  out["spreads"] = spreads
  if int(e.fid_samples) > 0:
    out["fid"] = fid(gen, int(e.fid_samples), psi, config)
    bar.update()
  if workdir is not None:
    out["sweeps"] = write_sweeps(gen, workdir)
    bar.update()
  bar.close()
  return out


SWEEPS = (("yaw", "-40:40"), ("pitch", "-20:20"), ("expression", "0:1000"), ("lighting", "0:1000"),
          ("identity", "0:1000"))


def write_sweeps(gen, workdir):
  """Factor-sweep grids (identities in rows) in workdir/samples/, with the configured truncation."""
  from jaxface.runs import disco_generator  # JAX: loaded once the command runs, not for --help
  e, paths = gen.config.eval, []
  cols = int(e.sweep_steps)
  for key, rng in SWEEPS:
    lo, hi = (float(v) for v in rng.split(":"))
    values = list(np.linspace(lo, hi, cols)) if key in ANGLES else list(range(cols))
    path = os.path.join(workdir, "samples", f"sweep_{key}_{gen.step:07d}.png")
    disco_generator.write_sweep(gen, path, (key, values), rows=int(e.sweep_identities))
    paths.append(os.path.relpath(path, workdir))
  return paths


def evaluate(config, state, workdir):
  """The method's `evaluate` hook: the in-memory final state, scored."""
  from jaxface.runs.disco_generator import Generator  # JAX: loaded once the command runs, not for --help
  from jaxface.runs import disco_experts as dx  # JAX: loaded once the command runs, not for --help
  state = jax.device_get({"G_ema": state["G_ema"], "frozen": state["frozen"], "step": state["step"]})
  state["frozen"] = dx.restored(state["frozen"])
  gen = Generator(config, state, int(state["step"]))
  results = evaluate_generator(gen, workdir)
  summary = summarize(results)
  if workdir is not None and jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    with open(os.path.join(workdir, "eval", "summary.txt"), "w") as f:
      f.write(summary + "\n")
    print(summary)
  return results


def summarize(r):
  c = r["control"]
  lines = [f"step {r['step']} (psi {r['psi']}):",
           f"  control: yaw {c['yaw_err_deg_median']:.2f} deg, pitch {c['pitch_err_deg_median']:.2f} deg (medians); "
           f"landmarks {c['landmark_err_pct_mean']:.2f}% of width; light |dγ| {c['light_err_mean_abs']:.4f}"]
  if "control_floor" in r:
    f = r["control_floor"]
    lines.append(f"  R-Net floor on real images: yaw {f['yaw_err_deg_median']:.2f} deg, landmarks "
                 f"{f['landmark_err_pct_mean']:.2f}%, light {f['light_err_mean_abs']:.4f}")
  if "control_render_floor" in r:  # older eval files have none
    f = r["control_render_floor"]
    lines.append(f"  R-Net on the exact renders of the same λ: yaw {f['yaw_err_deg_median']:.2f} deg, pitch "
                 f"{f['pitch_err_deg_median']:.2f} deg, landmarks {f['landmark_err_pct_mean']:.2f}%, light "
                 f"{f['light_err_mean_abs']:.4f}")
  for label, i in (("identity cos across pose/exp/light", r["identity"]),
                   ("the same on the exact renders of those λ", r["identity"].get("render")),
                   ("the same on real images", r.get("identity_real"))):
    if i:  # older eval files lack the render and AUC entries
      auc = f", verification AUC {i['verification_auc']:.3f}" if "verification_auc" in i else ""
      lines.append(f"  {label}: {i['pose']:.3f}/{i['expression']:.3f}/{i['light']:.3f} (different identities "
                   f"{i['different_identity']:.3f}{auc})")
  if "identity_ratio" in r:
    lines.append(f"  same-identity ratio to real: {r['identity_ratio']:.3f}")
  d = r["disentanglement"]
  interval = (" (90% interval, groups resampled: {:.3g}-{:.3g})".format(*d["ds_mean_interval90"])
              if "ds_mean_interval90" in d else "")  # older eval files have none
  per = d.get("ds_interval90", {})  # older eval files have none
  lines.append("  DS: " + ", ".join(f"{k} {v:.3g}" + (" ({:.3g}-{:.3g})".format(*per[k]) if k in per else "")
                                    for k, v in d["ds"].items()) + f"; mean {d['ds_mean']:.3g}" + interval)
  if "disentanglement_real" in r:
    lines.append(f"  DS of real groups: mean {r['disentanglement_real']['ds_mean']:.3g}")
  if "fid" in r:
    lines.append(f"  FID: {r['fid']:.2f}")
  return "\n".join(lines)


def run(config, state, workdir):
  """Control accuracy, identity consistency, Disentanglement Score (and FID when eval.fid_samples > 0), plus
  factor-sweep grids in workdir/samples/ (jaxface/eval/disco.py)."""
  return evaluate(config, state, workdir)


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.eval.disco", description=__doc__)
  p.add_argument("--workdir", required=True, help="a configs/disco.py training workdir")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--groups", type=int, default=None, help="DS groups per factor (default: the config's eval.groups)")
  p.add_argument("--samples", type=int, default=None,
                 help="control and identity samples (default: the config's eval.control_samples)")
  p.add_argument("--rnet", default=None, help="measure with this configs/rnet.py workdir's R-Net (same architecture; "
                 "e.g. one trained with render_mix) instead of the generator's own; eval files get a suffix")
  p.add_argument("--idnet", default=None, help="measure identity with this configs/idnet.py workdir's net (same "
                 "architecture; e.g. one trained with render_mix) instead of the generator's own")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if args.step is not None and args.step < 0:
    raise UserError(f"--step {args.step}: checkpoint steps are >= 0.")
  for name in ("groups", "samples"):
    if getattr(args, name) is not None and getattr(args, name) < 2:
      raise UserError(f"--{name} {getattr(args, name)}: needs at least 2.")
  from jaxface.runs.disco_generator import Generator  # JAX: loaded once the command runs, not for --help
  gen = Generator.load(args.workdir, args.step)
  gen = gen.measure_with(args.rnet, args.idnet)
  with gen.config.unlocked():
    gen.config.eval.groups = args.groups or gen.config.eval.groups
    gen.config.eval.control_samples = args.samples or gen.config.eval.control_samples
  results = evaluate_generator(gen, args.workdir)
  os.makedirs(os.path.join(args.workdir, "eval"), exist_ok=True)
  tag = "".join(f"_{name}_{os.path.basename(os.path.normpath(path))}"
                for name, path in (("rnet", args.rnet), ("idnet", args.idnet)) if path)
  results["measured_with"] = args.rnet or "the generator's own R-Net"
  results["identity_measured_with"] = args.idnet or "the generator's own identity net"
  path = os.path.join(args.workdir, "eval", f"step_{gen.step}{tag}.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(args.workdir, "eval", f"summary{tag}.txt"), "w") as f:
    f.write(summarize(results) + "\n")
  print(summarize(results))
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
