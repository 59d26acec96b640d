"""Factor VAE training: the stage-1 loss vs a scipy reference, the data iterator, coefficient files, and a short
end-to-end training on the shared loop that must beat a fitted Gaussian on bimodal data."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import priors as priors_config
from jaxface.errors import CheckpointError, DataError
from jaxface.train import loop
from jaxface.train import priors
from jaxface.runs import priors_data as factor_sets
from jaxface.runs import priors as priors_run


def test_stage1_loss_matches_scipy_reference():
  r = np.random.default_rng(0)
  x, x_hat = r.normal(size=(5, 4)), r.normal(size=(5, 4))
  mu, log_sigma, loggamma = r.normal(size=(5, 3)), 0.3 * r.normal(size=(5, 3)), -0.7
  out = priors.stage1_loss(jnp.asarray(x), jnp.asarray(x_hat), jnp.asarray(mu), jnp.asarray(log_sigma), loggamma)
  gen = -stats.norm.logpdf(x, loc=x_hat, scale=np.exp(loggamma)).sum() / 5
  s2 = np.exp(2 * log_sigma)
  kl = (0.5 * (mu ** 2 + s2 - 1 - np.log(s2))).sum() / 5  # KL(N(mu, s2) || N(0, 1))
  np.testing.assert_allclose(out["gen"], gen, rtol=1e-5)
  np.testing.assert_allclose(out["kl"], kl, rtol=1e-5)
  np.testing.assert_allclose(out["loss"], gen + kl, rtol=1e-5)


def test_factor_batches_cover_epochs_and_resume():
  arrays = {"exp": np.arange(24, dtype=np.float32)[:, None], "id": np.arange(10, dtype=np.float32)[:, None]}
  it = priors.FactorBatches(arrays, global_batch_size=8, seed=3)
  epoch = np.concatenate([next(it)["exp"][:, 0] for _ in range(3)])
  assert sorted(epoch) == list(range(24))  # each row once per epoch
  state = it.get_state()
  want = next(it)
  again = priors.FactorBatches(arrays, global_batch_size=8, seed=3)
  again.set_state(json.loads(json.dumps(state)))
  got = next(again)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])
  # Two hosts see disjoint halves of the same global batch.
  h0 = next(iter(priors.FactorBatches(arrays, 8, 3, 0, 2)))["exp"]
  h1 = next(iter(priors.FactorBatches(arrays, 8, 3, 1, 2)))["exp"]
  np.testing.assert_array_equal(np.concatenate([h0, h1]), next(priors.FactorBatches(arrays, 8, 3))["exp"])


SMALL_DIMS = dict(id=2, tex=1, exp=2, gamma=2, angle=1)


def _coeff_file(path, n=6000, seed=0):
  """Coefficients whose expression and light blocks are bimodal (so a Gaussian prior is measurably wrong)."""
  r = np.random.default_rng(seed)
  mode = np.where(r.uniform(size=(n, 1)) < 0.5, -1.0, 1.0)
  arrays = {"id": r.normal(size=(n, 2)), "tex": r.normal(size=(n, 1)),
            "exp": 2.0 * mode + 0.5 * r.normal(size=(n, 2)),
            "gamma": 0.05 * np.concatenate([mode, -mode], 1) + 0.0125 * r.normal(size=(n, 2)),
            "angle": 0.3 * r.normal(size=(n, 1))}
  np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
  return str(path)


def _config(coeff_file, steps):
  c = priors_config.get_config(f"tiny,steps={steps}")
  c.data.coeff_file = coeff_file
  c.priors.face_dims = SMALL_DIMS
  for f, latent in (("id", 3), ("exp", 2), ("gamma", 2), ("angle", 1)):
    c.model[f].latent, c.model[f].width = latent, 32
  c.batch_size = 64
  c.optim.lr, c.optim.decay_every_steps = 3e-3, 400
  c.ckpt.every_steps, c.log.every_steps = 1000, 100
  c.eval.num_samples, c.eval.test_rows, c.eval.permutations = 4000, 300, 100
  c.wandb.mode = "disabled"
  c.ckpt.async_save = False
  return c


def test_train_beats_gaussian_and_load_priors(tmp_path):
  cfg = _config(_coeff_file(tmp_path / "coeffs.npz"), steps=1000)
  workdir = str(tmp_path / "run")
  state = loop.train(cfg, workdir)
  res = json.load(open(os.path.join(workdir, "eval", "step_1000.json")))
  for f in ("exp", "gamma"):  # bimodal blocks: the served prior must match moments and beat the fitted Gaussian
    r = res[f]["fitted"]
    assert r["moments"]["pass"], (f, r["moments"])
    assert r["beats_gaussian"] and r["p_gaussian"] < 0.05, (f, r)
    assert res[f]["prior"]["beats_gaussian"], (f, res[f]["prior"])  # plain z ~ N(0, I) decoding beats it too
  # Frozen decoders from the workdir reproduce the trained state's decoder, through the saved latent fit.
  p = priors_run.load_priors(workdir)
  assert p["step"] == 1000 and p["fitted"] and p["latent"] == {"id": 3, "exp": 2, "gamma": 2, "angle": 1}
  z = jax.random.normal(jax.random.key(0), (7, 2))
  plain = priors_run.decoder(cfg, "exp", jax.device_get(state["exp"]["params"]), jax.device_get(state["exp"]["stats"]))
  with np.load(os.path.join(workdir, priors_run.LATENT_FIT)) as fit:
    want = plain(fit["exp/mean"] + z @ fit["exp/chol"].T)
  np.testing.assert_allclose(jax.jit(p["decoders"]["exp"])(z), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(priors_run.load_priors(workdir, raw=True)["decoders"]["exp"](z), plain(z), rtol=1e-5,
                             atol=1e-6)
  ident = p["decoders"]["id"](jax.random.normal(jax.random.key(1), (7, 3)))
  blocks = p["split"]("id", ident)
  assert blocks["id"].shape == (7, 2) and blocks["tex"].shape == (7, 1)


def test_latent_fit_matches_aggregate_posterior():
  from jaxface.eval import priors as ev
  r = np.random.default_rng(0)
  mu = r.multivariate_normal([1.0, -2.0], [[1.0, 0.6], [0.6, 2.0]], size=20000)
  log_sigma = np.full_like(mu, np.log(0.5))
  mean, chol = ev.latent_fit(mu, log_sigma)
  np.testing.assert_allclose(mean, [1.0, -2.0], atol=0.05)
  np.testing.assert_allclose(chol @ chol.T, [[1.25, 0.6], [0.6, 2.25]], atol=0.08)  # cov(mu) + mean sigma^2


def test_bad_coefficient_files(tmp_path):
  cfg = _config(str(tmp_path / "missing.npz"), steps=1)
  with pytest.raises(DataError, match="does not exist"):
    factor_sets.dataset(cfg)
  np.savez(tmp_path / "bad.npz", id=np.zeros((10, 5)), tex=np.zeros((10, 1)), exp=np.zeros((10, 2)),
           gamma=np.zeros((10, 2)), angle=np.zeros((10, 1)))
  cfg = _config(str(tmp_path / "bad.npz"), steps=1)
  with pytest.raises(DataError, match=r"'id' must have shape \[N, 2\]"):
    factor_sets.dataset(cfg)
  with pytest.raises(CheckpointError, match="holds no training"):
    priors_run.load_priors(str(tmp_path))


def test_synthetic_truth_dataset_holds_out_identities():
  cfg = priors_config.get_config("tiny")
  train, held = factor_sets.dataset(cfg)
  assert train["id"].shape == (100, 96) and held["id"].shape == (100, 96)
  assert train["exp"].shape == (300, 20) and held["gamma"].shape == (200, 27) and held["angle"].shape == (200, 3)
  from jaxface.data import synthetic_factors as sf
  world = sf.as_world_config(cfg.data)
  np.testing.assert_array_equal(held["id"][0, :48], sf.identity_factors(100, world)["id"])
  np.testing.assert_array_equal(train["exp"][5], sf.sample_factors(5, world)["exp"])
