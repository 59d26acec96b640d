"""Geometry codes of a trained SOF: a Gaussian mixture for sampling new heads, interpolation, and inversion of a
new label map into a code (SofGAN, Chen et al., ACM TOG 2022).

SofGAN is not a GAN: its "geometry latent space" is a GMM (16 components, full covariance; sklearn in the
release) fitted to the auto-decoded code table. `fit_gmm` is a small seeded EM in numpy with sklearn's
conventions (k-means initialisation, covariance regularisation 1e-6·I added to every component).
Inversion freezes the networks and optimises only a new code (optionally the camera's yaw and pitch, SofGAN's
opt_cam) with Adam on the released cross-entropy + code prior.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.data import synthetic_render as sr
from jaxface.errors import DataError, UserError
from jaxface.losses import sof as sof_losses
from jaxface.models.sof import SOF
from jaxface.render import raymarch

# ------------------------------------------------------------------------------------------------- GMM


def _kmeans(x, k, rng, iters=20):
  centers = x[rng.choice(len(x), k, replace=False)]
  for _ in range(iters):
    assign = ((x[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
    centers = np.stack([x[assign == j].mean(0) if np.any(assign == j) else centers[j] for j in range(k)])
  return assign


def _log_gauss(x, means, covs):
  """log N(x | mean_k, cov_k) [N, K] via Cholesky."""
  n, d = x.shape
  out = np.empty((n, len(means)))
  for j, (m, c) in enumerate(zip(means, covs)):
    chol = np.linalg.cholesky(c)
    sol = np.linalg.solve(chol, (x - m).T)
    out[:, j] = -0.5 * (sol ** 2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)
  return out


def fit_gmm(x, k=16, iters=100, reg=1e-6, seed=0, tol=1e-4):
  """EM for a full-covariance Gaussian mixture on rows of x [N, D]. Returns dict(weights [K], means [K, D],
  covs [K, D, D], log_likelihood (mean per sample), iterations). K is capped at N."""
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 1:
    raise DataError(f"a GMM needs codes as a [N, D] array with N >= 1, got shape {x.shape}")
  k = int(min(k, len(x)))
  rng = np.random.default_rng(seed)
  resp = np.eye(k)[_kmeans(x, k, rng)]
  ll_old, it = -np.inf, 0
  for it in range(1, iters + 1):
    nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
    weights = nk / len(x)
    means = resp.T @ x / nk[:, None]
    covs = np.stack([((resp[:, j, None] * (x - means[j])).T @ (x - means[j])) / nk[j] + reg * np.eye(x.shape[1])
                     for j in range(k)])
    logp = _log_gauss(x, means, covs) + np.log(weights)
    norm = np.logaddexp.reduce(logp, axis=1)
    resp = np.exp(logp - norm[:, None])
    ll = float(norm.mean())
    if abs(ll - ll_old) < tol:
      break
    ll_old = ll
  return {"weights": weights, "means": means, "covs": covs, "log_likelihood": ll, "iterations": it}


def sample_gmm(gmm, n, seed=0):
  """n samples [n, D] (and their components [n]) from a fitted mixture, seeded."""
  rng = np.random.default_rng(seed)
  comp = rng.choice(len(gmm["weights"]), size=n, p=gmm["weights"] / gmm["weights"].sum())
  chols = np.linalg.cholesky(gmm["covs"])
  eps = rng.standard_normal((n, gmm["means"].shape[1]))
  return gmm["means"][comp] + np.einsum("nij,nj->ni", chols[comp], eps), comp


def log_likelihood(gmm, x):
  logp = _log_gauss(np.asarray(x, np.float64), gmm["means"], gmm["covs"]) + np.log(gmm["weights"])
  return np.logaddexp.reduce(logp, axis=1)


def save_gmm(path, gmm):
  np.savez(path, **{k: np.asarray(v) for k, v in gmm.items()})


def load_gmm(path):
  try:
    with np.load(path) as f:
      g = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise DataError(f"cannot read a GMM from {path!r} ({e}); pass a file written by save_gmm") from None
  missing = {"weights", "means", "covs"} - set(g)
  if missing:
    raise DataError(f"{path!r} is not a GMM file: it lacks {sorted(missing)}")
  return g


def interpolate(z0, z1, num):
  """Codes on the straight line z0 -> z1, endpoints included: [num, D]."""
  t = np.linspace(0.0, 1.0, num)[:, None]
  return (1 - t) * np.asarray(z0)[None] + t * np.asarray(z1)[None]


# ------------------------------------------------------------------------------------------------- inversion


def check_label_map(seg, num_classes, resolution):
  """UserError unless seg is an integer [R, R] label map of the model's resolution with known class ids."""
  seg = np.asarray(seg)
  if seg.shape != (resolution, resolution):
    raise UserError(f"label map has shape {seg.shape}; this SOF renders {resolution}x{resolution} label maps: "
                    f"resize it (nearest neighbour) to ({resolution}, {resolution}).")
  if not np.issubdtype(seg.dtype, np.integer):
    if not np.all(np.isfinite(seg)) or np.any(seg != np.round(seg)):
      raise UserError("label map must hold integer class ids (synthetic.CLASSES order), not colours or "
                      "probabilities.")
  bad = np.setdiff1d(np.unique(seg), np.arange(num_classes))
  if bad.size:
    raise UserError(f"label map holds unknown class ids {bad.tolist()[:10]}; valid ids are 0..{num_classes - 1} "
                    f"(synthetic.CLASSES). Remap your labels (e.g. SofGAN's 17/20-class maps) first.")
  return seg.astype(np.int32)


def check_yaw_pitch(yaw, pitch, max_yaw, max_pitch):
  """UserError unless |yaw| <= max_yaw and |pitch| <= max_pitch (radians): outside the trained views the field's
  geometry is unconstrained."""
  for name, v, lim in (("yaw", yaw, max_yaw), ("pitch", pitch, max_pitch)):
    if not np.isfinite(v) or abs(v) > lim + 1e-6:
      raise UserError(f"camera {name} {np.rad2deg(v):.1f}° is out of range: the SOF was trained on views within "
                      f"±{np.rad2deg(lim):.1f}°; pass a {name} inside that range.")


def invert(model, seg, yaw=0.0, pitch=0.0, steps=200, lr=1e-2, opt_cam=False, rays=1024, seed=0, z_init=None,
           w_latent=None):
  """Fits a code (and with `opt_cam` the camera's yaw/pitch) to one label map [R, R] seen from (yaw, pitch)
  radians, networks frozen. Returns dict(z [D], yaw, pitch, losses [steps]). `model` is a runs.sof.SOFModel."""
  cfg = model.config
  mv = cfg.multiview
  seg = check_label_map(seg, model.num_classes, model.res)
  max_yaw, max_pitch = np.deg2rad(mv.max_yaw), np.deg2rad(mv.max_pitch)
  check_yaw_pitch(yaw, pitch, max_yaw, max_pitch)
  distance = sr.CAMERA_Z
  k = jnp.asarray(model.intrinsics())
  grid = jnp.asarray(raymarch.pixel_grid(model.res, model.res))
  labels = jnp.asarray(seg.reshape(-1))
  w_latent = cfg.loss.w_latent if w_latent is None else w_latent
  lco = types.SimpleNamespace(w_ce=cfg.loss.w_ce, w_latent=w_latent, w_depth=cfg.loss.w_depth)
  z0 = np.zeros(cfg.model.latent_dim, np.float32) if z_init is None else np.asarray(z_init, np.float32)
  var = {"z": jnp.asarray(z0), "cam": jnp.array([yaw, pitch], jnp.float32)}
  tx = optax.adam(lr)
  n_rays = min(int(rays), model.res ** 2) if rays else model.res ** 2

  def loss_fn(v, key):
    cam = v["cam"] if opt_cam else jax.lax.stop_gradient(v["cam"])
    c2w = raymarch.yaw_pitch_c2w(cam[0], cam[1], distance)
    pix = jax.random.randint(key, (n_rays,), 0, model.res ** 2) if n_rays < model.res ** 2 else jnp.arange(
        n_rays)
    o, d = raymarch.rays(grid[pix], k, c2w, model.orthographic)
    out = model.net.apply({"params": model.params}, v["z"][None], o[None], d[None], c2w[None], None,
                          method=SOF.render)
    return sof_losses.losses(out, v["z"][None], labels[pix][None], lco)[0]

  @jax.jit
  def step(v, opt, key):
    loss, g = jax.value_and_grad(loss_fn)(v, key)
    upd, opt = tx.update(g, opt, v)
    v = optax.apply_updates(v, upd)
    # keep the camera inside the trained range
    v["cam"] = jnp.clip(v["cam"], jnp.array([-max_yaw, -max_pitch]), jnp.array([max_yaw, max_pitch]))
    return v, opt, loss

  opt = tx.init(var)
  key = jax.random.key(seed)
  hist = []
  for i in range(steps):
    var, opt, loss = step(var, opt, jax.random.fold_in(key, i))
    hist.append(loss)
  hist = [float(h) for h in jax.device_get(hist)]
  return {"z": np.asarray(var["z"]), "yaw": float(var["cam"][0]), "pitch": float(var["cam"][1]), "losses": hist}
