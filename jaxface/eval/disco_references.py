"""The synthetic world's reference statistics for DiscoFaceGAN's evaluation (jaxface/eval/disco.py): R-Net's
control floor on real images of known λ, the same-identity cosine of real pairs, real Disentanglement-Score groups
(one true factor varies) and their spreads, and real images for FID. Also the control-error arithmetic both
sides share."""

import numpy as np

from jaxface.cli import lazy_import
from jaxface.eval.disentangle import FACTORS, spreads as _spreads
from jaxface.eval.identity import roc_auc

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")


def control_errors(rec, blocks, target_lm, width):
  deg = np.rad2deg(np.abs(rec["coeffs"]["angle"] - blocks["angle"]))
  lm = np.linalg.norm(rec["landmarks"] - target_lm, axis=-1).mean(-1) / width * 100.0
  out = {}
  for i, name in enumerate(("pitch", "yaw", "roll")):
    out[f"{name}_err_deg_median"], out[f"{name}_err_deg_mean"] = float(np.median(deg[:, i])), float(deg[:, i].mean())
  out["landmark_err_pct_mean"] = float(lm.mean())
  out["landmark_err_pct_median"] = float(np.median(lm))
  out["light_err_mean_abs"] = float(np.abs(rec["gamma"] - blocks["gamma"]).mean())
  return out


# ------------------------------------------------------------------------------------------------- real references

def world_images(config, factor_list):
  from jaxface.data import synthetic, synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  world = sf.as_world_config(config.data)
  fs = sf.stack(factor_list)
  fs["trans"] = np.zeros_like(fs["trans"])  # aligned, as the training reals
  out = synthetic._jitted(int(config.data.resolution), world)({k: fs[k] for k in synthetic.RENDER_KEYS})
  return np.asarray(out["image"]) * 2.0 - 1.0, fs


def world_sample(config, index):
  from jaxface.data import synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  return sf.sample_factors(index, sf.as_world_config(config.data))


def _with_identity(f, g, config):
  """Sample g with f's identity (all per-identity fields)."""
  from jaxface.data import synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  ident = sf.identity_factors(int(f["identity"]), sf.as_world_config(config.data))
  out = dict(g)
  out.update(ident)
  return out


def replace_factors(f, g, keys):
  out = dict(f)
  for k in keys:
    out[k] = g[k]
  return out


WORLD_FACTOR_KEYS = {"exp": ("exp",), "gamma": ("gamma",), "angle": ("angle",)}
HELDOUT = 2_000_000_000  # world indices far from anything trained on


def identity_scores(base, changed):
  """Identity cosines of unit embeddings `base` [N, E] with `changed` {"pose"|"expression"|"light": [N, E]} (the
  same identities, one factor changed), their mean, the cosine of different identities (`base` against itself
  shifted by one), and the verification ROC-AUC of same- against different-identity pairs: how clearly the
  identity net tells the two apart, not only how high the same-identity cosine is."""
  same = {name: np.sum(base * emb, -1) for name, emb in changed.items()}
  different = np.sum(base * np.roll(base, 1, 0), -1)
  out = {name: float(np.mean(v)) for name, v in same.items()}
  out["different_identity"] = float(np.mean(different))
  out["mean_same_identity"] = float(np.mean(list(out.values())[:len(same)]))
  positives = np.concatenate(list(same.values()))
  out["verification_auc"] = roc_auc(np.concatenate([positives, different]),
                                    np.concatenate([np.ones(len(positives)), np.zeros(len(different))]))
  return out


def real_references(config, measure, groups, size, n):
  """On the synthetic world: R-Net's control floor, real same-identity cosine, real DS groups and spreads."""
  per = measure.batch
  out = {}
  # Control floor: R-Net on aligned real images with known λ.
  facts = [world_sample(config, HELDOUT + i) for i in range(n)]
  recs, blocks, lms = [], [], []
  for i in range(0, n, per):
    imgs, fs = world_images(config, facts[i:i + per])
    recs.append(measure.recon(imgs))
    blocks.append({k: fs[k] for k in ("angle", "gamma")})
    lms.append(np.asarray(_world_landmarks(config, fs)))
  rec = jax.tree.map(lambda *xs: np.concatenate(xs), *recs)
  blk = {k: np.concatenate([b[k] for b in blocks]) for k in ("angle", "gamma")}
  out["control_floor"] = control_errors(rec, blk, np.concatenate(lms), int(config.data.resolution))
  # Same-identity cosine of real pairs: identity kept, pose / expression / light of another sample.
  base_imgs = np.concatenate([world_images(config, facts[i:i + per])[0] for i in range(0, n, per)])
  base = measure.embed(base_imgs)
  same = {}
  for j, (name, factor) in enumerate((("pose", "angle"), ("expression", "exp"), ("light", "gamma"))):
    other = [replace_factors(f, world_sample(config, HELDOUT + 10_000 * (j + 1) + i), WORLD_FACTOR_KEYS[factor])
             for i, f in enumerate(facts)]
    emb = measure.embed(np.concatenate([world_images(config, other[i:i + per])[0] for i in range(0, n, per)]))
    same[name] = emb
  out["identity_real"] = identity_scores(base, same)
  # Real spread (normalizer): random real images in groups; and real DS groups (one true factor varies).
  out["real_spread"] = _spreads(measure.attributes(base_imgs[:groups * size]), groups, size) \
      if n >= groups * size else None
  spreads = {}
  for fi, factor in enumerate(FACTORS):
    rows = []
    for g in range(groups):
      anchor = world_sample(config, HELDOUT + 500_000 + 1000 * fi + g)
      for k in range(size):
        other = world_sample(config, HELDOUT + 700_000 + 10_000 * fi + g * size + k)
        # Only `factor` changes: another identity on the anchor's sample, or the anchor with another's factor.
        rows.append(_with_identity(other, anchor, config) if factor == "id" else
                    replace_factors(anchor, other, WORLD_FACTOR_KEYS[factor]))
    imgs = np.concatenate([world_images(config, rows[i:i + per])[0] for i in range(0, len(rows), per)])
    spreads[factor] = _spreads(measure.attributes(imgs), groups, size)
  out["real_group_spreads"] = spreads
  return out


def _world_landmarks(config, fs):
  """The face model's 68 landmarks of world factors (translation 0) at the data resolution."""
  from jaxface.losses import recon as recon_losses  # JAX: loaded once the command runs, not for --help
  from jaxface.runs import rnet as rnet_lib  # JAX: loaded once the command runs, not for --help
  fm = rnet_lib.face_model(int(config.data.level))
  cam = rnet_lib.camera(config.data)
  coeffs = {k: jnp.asarray(fs[k]) for k in ("id", "exp", "angle", "trans")}
  return jax.vmap(lambda c: recon_losses.landmark_points(fm, c, cam, int(config.data.resolution)))(coeffs)


def real_images(config, n):
  if config.data.kind == "synthetic":
    facts = [world_sample(config, HELDOUT + 900_000 + i) for i in range(n)]
    return np.concatenate([world_images(config, facts[i:i + 32])[0] for i in range(0, n, 32)])
  from jaxface.data import batches as common  # JAX: loaded once the command runs, not for --help
  it = common.data_iterator(config)
  out = []
  while sum(len(x) for x in out) < n:
    out.append(np.asarray(next(it)["image"], np.float32) / 127.5 - 1.0)
  return np.concatenate(out)[:n]
