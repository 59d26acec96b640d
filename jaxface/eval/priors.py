"""Are the factor VAEs good priors? Per factor:

1. Moments: decode z ~ N(0, I) and compare each dimension with the training data: the mean gap in units of the
   data's std, |mean_s - mean_d| / std_d, and the relative std error |std_s / std_d - 1|; both must be <= tol (0.1).
   (A gap relative to the mean itself is meaningless for dimensions whose mean is ~0, like most shape coefficients.)
2. Two-sample test against held-out data: the energy distance (Szekely & Rizzo)
     E(X, Y) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|    (V-statistics; Euclidean distance after z-scoring each
                                                       dimension with the training data, so every dimension counts)
   with a permutation p-value, for the VAE's samples and for a Gaussian with the training data's mean and full
   covariance. The VAE "beats" the Gaussian when its distance is smaller. The same statistic between training rows
   and held-out rows is reported as the floor a perfect model would reach.
Each factor is evaluated twice: decoding z ~ N(0, I) as DiscoFaceGAN does ("prior"), and decoding z mapped through
a Gaussian fitted to the aggregate posterior of the training data ("fitted", a closed-form stand-in for the
Two-Stage VAE's second stage; `latent_fit`). `load_priors` uses the fitted map when the workdir has one.

    python -m jaxface.eval.priors --workdir workdirs/priors     (fits, evaluates, writes latent_fit.npz + eval JSON)
"""

import json
import os

import numpy as np

from jaxface import cli as cli_lib
from jaxface.errors import cli
from jaxface.runs.workdir import read_run


def moments(samples, data, tol=0.1):
  """Per-dimension moment agreement of `samples` [N, D] with `data` [M, D]."""
  samples, data = np.asarray(samples, np.float64), np.asarray(data, np.float64)
  sd = data.std(0)
  mean_gap = np.abs(samples.mean(0) - data.mean(0)) / sd
  std_err = np.abs(samples.std(0) / sd - 1)
  ok = (mean_gap <= tol) & (std_err <= tol)
  return {"max_mean_gap": float(mean_gap.max()), "max_std_rel_err": float(std_err.max()),
          "worst_mean_dim": int(mean_gap.argmax()), "worst_std_dim": int(std_err.argmax()),
          "dims_ok": int(ok.sum()), "dims": int(ok.size), "pass": bool(ok.all())}


def _pairwise(z):
  sq = (z * z).sum(1)
  d2 = sq[:, None] + sq[None, :] - 2 * z @ z.T
  return np.sqrt(np.maximum(d2, 0))


def _energy_from(dist, a):
  """Energy distance between the rows with label a (bool [N]) and the rest, from the pooled distance matrix."""
  a = a.astype(np.float64)
  b = 1 - a
  n, m = a.sum(), b.sum()
  da = dist @ a
  xy = (b @ da) / (n * m)
  xx = (a @ da) / (n * n)
  yy = (b @ (dist @ b)) / (m * m)
  return 2 * xy - xx - yy


def energy_test(x, y, permutations=200, seed=0):
  """(energy distance, permutation p-value) of samples x [N, D] vs y [M, D] (already on a common scale)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  dist = _pairwise(np.concatenate([x, y]))
  labels = np.arange(len(x) + len(y)) < len(x)
  stat = _energy_from(dist, labels)
  rng = np.random.default_rng(seed)
  perm_labels = np.stack([rng.permutation(labels) for _ in range(permutations)], 1).astype(np.float64)
  # All permutations at once: three matrix products instead of a loop over permutations.
  a, b = perm_labels, 1 - perm_labels
  n, m = len(x), len(y)
  da, db = dist @ a, dist @ b
  perm = 2 * (b * da).sum(0) / (n * m) - (a * da).sum(0) / (n * n) - (b * db).sum(0) / (m * m)
  p = (1 + np.sum(perm >= stat - 1e-12)) / (1 + permutations)
  return float(stat), float(p)


def gaussian_fit(data, n, rng):
  """n samples of the Gaussian with the data's mean and full covariance (the baseline prior)."""
  data = np.asarray(data, np.float64)
  return rng.multivariate_normal(data.mean(0), np.atleast_2d(np.cov(data, rowvar=False)), size=n, method="eigh")


def evaluate_factor(decode, latent, train, held, cfg, seed=0):
  """Moments and two-sample tests of one factor VAE (`decode`: z [B, latent] -> [B, D])."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((int(cfg.num_samples), latent)).astype(np.float32)
  samples = np.asarray(decode(z), np.float64)
  out = {"moments": moments(samples, train, cfg.tolerance)}
  mu, sd = train.mean(0), train.std(0) + 1e-12
  n = min(int(cfg.test_rows), len(held), len(samples))
  scale = lambda a: (np.asarray(a, np.float64)[:n] - mu) / sd
  ref = scale(held[rng.permutation(len(held))])
  tests = {"vae": samples[rng.permutation(len(samples))],
           "gaussian": gaussian_fit(train, n, rng),
           "train_rows": train[rng.permutation(len(train))]}
  for name, s in tests.items():
    stat, p = energy_test(scale(s), ref, int(cfg.permutations), seed)
    out[f"energy_{name}"], out[f"p_{name}"] = stat, p
  out["test_rows"] = n
  out["beats_gaussian"] = bool(out["energy_vae"] < out["energy_gaussian"])
  out["pass"] = bool(out["moments"]["pass"] and out["beats_gaussian"])
  return out


def latent_fit(mu, log_sigma):
  """Gaussian fit of the aggregate posterior q(z) = mean_x N(mu(x), sigma(x)^2): (mean [L], lower Cholesky [L, L])."""
  mu, s2 = np.asarray(mu, np.float64), np.exp(2 * np.asarray(log_sigma, np.float64))
  cov = np.atleast_2d(np.cov(mu, rowvar=False)) + np.diag(s2.mean(0))
  return mu.mean(0).astype(np.float32), np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov))).astype(np.float32)


def evaluate(decoders, latents, train, held, cfg, seed=0, fitted=None):
  """{factor: {"prior": evaluate_factor(...), "fitted": ... (when `fitted` has decoders)}, "all_pass": ...}.
  "all_pass" judges the variant `load_priors` serves (fitted when given)."""
  results = {}
  for f in decoders:
    results[f] = {"prior": evaluate_factor(decoders[f], latents[f], train[f], held[f], cfg, seed)}
    if fitted:
      results[f]["fitted"] = evaluate_factor(fitted[f], latents[f], train[f], held[f], cfg, seed)
  key = "fitted" if fitted else "prior"
  results["all_pass"] = all(r[key]["pass"] for r in results.values())
  return results




def run(config, state, workdir):
  """The held-out check: per-dimension moments and the two-sample test vs a fitted Gaussian, for
  z ~ N(0, I) and for the latent Gaussian fit, which is written to workdir/latent_fit.npz for `load_priors`."""
  # JAX: `--help` answers without loading it
  from jaxface.runs.priors import LATENT_FIT, decoder, factors, fitted_decoder, model
  from jaxface.runs.priors_data import dataset  # JAX: `--help` answers without loading it
  import jax.numpy as jnp  # JAX: `--help` answers without loading it
  import jax  # JAX: `--help` answers without loading it
  train, held = dataset(config)
  params = {f: jax.device_get(state[f]["params"]) for f in factors(config)}
  stats = {f: jax.device_get(state[f]["stats"]) for f in factors(config)}
  decoders = {f: decoder(config, f, params[f], stats[f]) for f in params}
  fits = {}
  for f in params:
    mu, log_sigma = model(config, f).apply({"params": params[f], "stats": stats[f]}, jnp.asarray(train[f]),
                                           method="encode")
    fits[f] = latent_fit(mu, log_sigma)
  if workdir is not None and jax.process_index() == 0:
    np.savez(os.path.join(workdir, LATENT_FIT), **{f"{f}/{k}": v for f, (m, c) in fits.items()
                                                  for k, v in (("mean", m), ("chol", c))})
  fitted = {f: fitted_decoder(decoders[f], *fits[f]) for f in params}
  return evaluate(decoders, {f: config.model[f].latent for f in decoders}, train, held,
                              config.eval, seed=config.seed, fitted=fitted)


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.eval.priors", description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="workdir of a configs/priors.py training")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  args = p.parse_args(argv)
  config, state, step = read_run(args.workdir, args.step, trainer="priors")
  results = run(config, state, args.workdir)
  os.makedirs(os.path.join(args.workdir, "eval"), exist_ok=True)
  with open(os.path.join(args.workdir, "eval", f"priors_step_{step}.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  main()
