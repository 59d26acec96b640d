"""DiscoFaceGAN's four factor VAEs (identity, expression, light, pose), trained jointly on the shared loop.

The state holds one independent VAE per factor, {"id": {"params", "stats", "opt"}, "exp": ..., "step"}; each step
draws one minibatch per factor and updates all four (they share nothing but the step counter, so this is four
separate trainings, as DiscoFaceGAN's four `vae/demo.py` runs were).

Loss: the Two-Stage VAE stage-1 objective with a learned decoder std gamma_x (Dai & Wipf, ICLR 2019), per batch,
summed over dimensions and divided by the batch size:
  KL  = sum(mu^2 + sigma^2 - 2 log sigma - 1) / 2 / B
  gen = sum(((x - x_hat) / gamma_x)^2 / 2 + log gamma_x + log(2 pi) / 2) / B
Data: the synthetic world's true coefficients (identities: the identity pool's id||tex, one row per identity, as
the pool is what the world samples from; the rest: per-sample expression, light and pose), or R-Net estimates from
a coefficient file (`config.data.coeff_file`, .npz with arrays id, tex, exp, gamma, angle of shape [N, n]).
Either way the last rows are held out for `evaluate` (jaxface/eval/priors.py).

`load_priors(workdir)` gives DiscoFaceGAN the frozen decoders as pure functions z -> coefficients.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxface.errors import CheckpointError, ConfigError, DataError
from jaxface.models import vae as vae_lib

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)  # DiscoFaceGAN writes 0.91893


# ------------------------------------------------------------------------------------------------- loss

def stage1_loss(x, x_hat, mu, log_sigma, loggamma_x):
  """Two-Stage VAE stage-1 loss (Gaussian decoder with learned scalar std). Returns dict(loss, kl, gen)."""
  b = x.shape[0]
  kl = jnp.sum(mu ** 2 + jnp.exp(2 * log_sigma) - 2 * log_sigma - 1) / 2 / b
  gamma = jnp.exp(loggamma_x)
  gen = jnp.sum(((x - x_hat) / gamma) ** 2 / 2 + loggamma_x + HALF_LOG_2PI) / b
  return {"loss": kl + gen, "kl": kl, "gen": gen}


# ------------------------------------------------------------------------------------------------- models

def factors(config):
  fs = tuple(config.priors.factors)
  bad = [f for f in fs if f not in vae_lib.FACTORS]
  if bad or not fs:
    raise ConfigError(f"config.priors.factors={list(fs)} must be a non-empty subset of {list(vae_lib.FACTORS)}.")
  return fs


def face_dims(config):
  return {k: int(v) for k, v in config.priors.face_dims.items()}


def model(config, factor):
  m = config.model[factor]
  return vae_lib.FactorVAE(dim=vae_lib.factor_dims(face_dims(config))[factor], latent=m.latent, width=m.width,
                           depth=m.depth, init_loggamma=config.priors.init_loggamma,
                           max_loggamma=config.priors.max_loggamma,
                           dtype=jnp.dtype(config.compute_dtype))


def optimizer(config):
  o = config.optim
  lr = optax.exponential_decay(o.lr, transition_steps=o.decay_every_steps, decay_rate=o.decay_rate, staircase=True)
  return optax.adam(lr, b1=o.beta1, b2=o.beta2)


# ------------------------------------------------------------------------------------------------- data

def _synthetic_arrays(d):
  """(train, held-out) dicts of coefficient blocks from the synthetic world's truth."""
  from jaxface.data import synthetic_factors as sf
  world = sf.as_world_config(d)
  n_ids = world.num_identities
  n_train_ids = n_ids - d.heldout_identities
  if n_train_ids < 2 or d.num_samples < 2 or d.heldout_samples < 2 or d.heldout_identities < 2:
    raise ConfigError(f"config.data: need >= 2 training and held-out rows (num_identities={n_ids}, heldout_identities="
                      f"{d.heldout_identities}, num_samples={d.num_samples}, heldout_samples={d.heldout_samples}).")
  ids = [sf.identity_factors(k, world) for k in range(n_ids)]
  samples = [sf.sample_factors(i, world) for i in range(d.num_samples + d.heldout_samples)]
  out = {}
  for b in ("id", "tex"):
    out[b] = np.stack([f[b] for f in ids])
  for b in ("exp", "gamma", "angle"):
    out[b] = np.stack([f[b] for f in samples])
  split = {"id": n_train_ids, "tex": n_train_ids}
  split.update({b: d.num_samples for b in ("exp", "gamma", "angle")})
  return ({b: v[:split[b]] for b, v in out.items()}, {b: v[split[b]:] for b, v in out.items()})


def _file_arrays(d, dims):
  path = d.coeff_file
  if not os.path.isfile(path):
    raise DataError(f"config.data.coeff_file={path!r} does not exist; pass an .npz with arrays id, tex, exp, gamma, "
                    f"angle (e.g. R-Net estimates over a dataset), or leave it empty to use the synthetic world.")
  try:
    with np.load(path, allow_pickle=False) as z:
      out = {b: np.asarray(z[b], np.float32) for b in dims if b in z.files}
  except (OSError, ValueError) as e:
    raise DataError(f"config.data.coeff_file={path!r} is not a readable .npz ({e}); write it with numpy.savez.") \
        from None
  n = None
  for b, k in dims.items():
    if b not in out or out[b].ndim != 2 or out[b].shape[1] != k:
      raise DataError(f"{path}: array {b!r} must have shape [N, {k}] (face model block size), found "
                      f"{out[b].shape if b in out else 'nothing'}; the file needs id, tex, exp, gamma, angle.")
    if n is not None and out[b].shape[0] != n:
      raise DataError(f"{path}: arrays have different row counts ({n} vs {out[b].shape[0]} for {b!r}).")
    n = out[b].shape[0]
    if not np.all(np.isfinite(out[b])):
      raise DataError(f"{path}: array {b!r} has NaN/Inf entries; drop those rows.")
  n_eval = max(2, int(round(n * d.heldout_fraction)))
  if n - n_eval < 2:
    raise DataError(f"{path}: {n} rows are too few to train and hold out {n_eval}.")
  return {b: v[:-n_eval] for b, v in out.items()}, {b: v[-n_eval:] for b, v in out.items()}


@functools.lru_cache(maxsize=4)
def _dataset_cached(key):
  d = ml_collections.ConfigDict(json.loads(key[0]))
  dims = dict(key[1])
  blocks = _file_arrays(d, dims) if d.coeff_file else _synthetic_arrays(d)
  return tuple({f: np.concatenate([part[b] for b in vae_lib.FACTOR_BLOCKS[f]], -1).astype(np.float32)
                for f in vae_lib.FACTORS} for part in blocks)


def dataset(config):
  """(train, held-out): {factor: float32 [N, dim]} (cached per process: the world's truth takes a minute)."""
  train, held = _dataset_cached((config.data.to_json(sort_keys=True), tuple(sorted(face_dims(config).items()))))
  dims = vae_lib.factor_dims(face_dims(config))
  for f in factors(config):
    if train[f].shape[1] != dims[f]:
      raise ConfigError(f"factor {f}: data has {train[f].shape[1]} dims, config.priors.face_dims gives {dims[f]}.")
  return train, held


class FactorBatches:
  """Global batches {factor: [B, dim]}: each factor's rows reshuffled every epoch, this host's slice of each.

  Deterministic in (seed, step): the state is the step counter, so resume lands on the same batches."""

  def __init__(self, arrays, global_batch_size, seed, process_index=0, process_count=1):
    if global_batch_size % process_count:
      raise ConfigError(f"batch_size={global_batch_size} must divide over {process_count} processes.")
    self.arrays, self.batch, self.seed = arrays, global_batch_size, seed
    self.local = global_batch_size // process_count
    self.offset = process_index * self.local
    self.step = 0

  def _rows(self, name, n, start):
    idx = np.arange(start, start + self.batch)
    epochs, pos = idx // n, idx % n
    out = np.empty(self.batch, np.int64)
    for e in np.unique(epochs):  # a batch can straddle two epochs
      perm = np.random.default_rng([self.seed, vae_lib.FACTORS.index(name), int(e)]).permutation(n)
      out[epochs == e] = perm[pos[epochs == e]]
    return out[self.offset:self.offset + self.local]

  def __iter__(self):
    return self

  def __next__(self):
    start = self.step * self.batch
    self.step += 1
    return {f: a[self._rows(f, len(a), start)] for f, a in self.arrays.items()}

  def get_state(self):
    return {"step": self.step, "batch": self.batch, "sizes": {f: len(a) for f, a in self.arrays.items()}}

  def set_state(self, state):
    from jaxface.errors import UserError
    if state.get("batch") != self.batch or state.get("sizes") != {f: len(a) for f, a in self.arrays.items()}:
      raise UserError("the saved data position was made with another batch size or data set")
    self.step = int(state["step"])


def make_data(config):
  train, _ = dataset(config)
  return FactorBatches({f: train[f] for f in factors(config)}, config.batch_size, config.seed,
                       jax.process_index(), jax.process_count())


# ------------------------------------------------------------------------------------------------- state, step

def init_state(config, rng):
  train, _ = dataset(config)
  tx = optimizer(config)
  state = {"step": jnp.zeros((), jnp.int32)}
  for i, f in enumerate(factors(config)):
    vae = model(config, f)
    x = jnp.zeros((1, vae.dim), jnp.float32)
    variables = vae.init(jax.random.fold_in(rng, i), x, jax.random.key(0))
    stats = dict(variables["stats"])
    if config.priors.standardize:  # constants of the training data (numpy: baked into the init program)
      stats = {"shift": jnp.asarray(train[f].mean(0)), "scale": jnp.asarray(train[f].std(0) + 1e-6)}
    state[f] = {"params": variables["params"], "stats": stats, "opt": tx.init(variables["params"])}
  return state


def phase(config, step):
  return None


def train_step(config):
  tx = optimizer(config)
  vaes = {f: model(config, f) for f in factors(config)}

  def step(state, batch, rng, phase):
    rng = jax.random.fold_in(rng, state["step"])
    new_state, metrics = {"step": state["step"] + 1}, {}
    for i, (f, vae) in enumerate(vaes.items()):
      s = state[f]

      def loss_fn(params, s=s, vae=vae, x=batch[f], key=jax.random.fold_in(rng, i)):
        variables = {"params": params, "stats": s["stats"]}
        x_hat, mu, log_sigma, loggamma = vae.apply(variables, x, key)
        x_std = vae.apply(variables, x, method="standardize")
        terms = stage1_loss(x_std, x_hat, mu, log_sigma, loggamma)
        return terms["loss"], terms

      (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(s["params"])
      updates, opt = tx.update(grads, s["opt"], s["params"])
      new_state[f] = {"params": optax.apply_updates(s["params"], updates), "stats": s["stats"], "opt": opt}
      metrics.update({f"{f}_{k}": v for k, v in terms.items()})
      metrics[f"{f}_gamma_x"] = jnp.exp(jnp.minimum(s["params"]["loggamma_x"], config.priors.max_loggamma))
    return new_state, metrics

  return step


def evaluate(config, state, workdir):
  """The held-out check: per-dimension moments and the two-sample test vs a fitted Gaussian, for
  z ~ N(0, I) and for the latent Gaussian fit, which is written to workdir/latent_fit.npz for `load_priors`."""
  from jaxface.eval import priors as eval_priors
  train, held = dataset(config)
  params = {f: jax.device_get(state[f]["params"]) for f in factors(config)}
  stats = {f: jax.device_get(state[f]["stats"]) for f in factors(config)}
  decoders = {f: decoder(config, f, params[f], stats[f]) for f in params}
  fits = {}
  for f in params:
    mu, log_sigma = model(config, f).apply({"params": params[f], "stats": stats[f]}, jnp.asarray(train[f]),
                                           method="encode")
    fits[f] = eval_priors.latent_fit(mu, log_sigma)
  if workdir is not None and jax.process_index() == 0:
    np.savez(os.path.join(workdir, LATENT_FIT), **{f"{f}/{k}": v for f, (m, c) in fits.items()
                                                  for k, v in (("mean", m), ("chol", c))})
  fitted = {f: fitted_decoder(decoders[f], *fits[f]) for f in params}
  return eval_priors.evaluate(decoders, {f: config.model[f].latent for f in decoders}, train, held,
                              config.eval, seed=config.seed, fitted=fitted)


# ------------------------------------------------------------------------------------------------- frozen decoders

def decoder(config, factor, params, stats):
  """Pure function z [B, latent] -> coefficients [B, dim] (the decoder mean, float32)."""
  vae = model(config, factor)
  variables = {"params": params, "stats": stats}
  return lambda z: vae.apply(variables, z, method="decode")


LATENT_FIT = "latent_fit.npz"  # written by `evaluate`: per factor, the aggregate posterior's Gaussian fit


def fitted_decoder(decode, mean, chol):
  """z ~ N(0, I) -> decode(mean + chol z): samples the latent Gaussian the encoder actually filled."""
  mean, chol = jnp.asarray(mean), jnp.asarray(chol)
  return lambda z: decode(mean + z @ chol.T)


def restore_workdir(workdir, step=None):
  """(config, state as numpy, step) of a finished or running training in `workdir` (no shardings needed)."""
  cfg_path = os.path.join(workdir, "config.json")
  ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isfile(cfg_path) or not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"{workdir} holds no training (config.json and checkpoints/ expected); pass the --workdir "
                          f"of a finished `python -m jaxface.main` run.")
  with open(cfg_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  steps = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
  if not steps or (step is not None and step not in steps):
    raise CheckpointError(f"{ckpt_dir} has no checkpoint {'' if step is None else step} (found {steps}); "
                          f"train first or pick one of those steps.")
  step = steps[-1] if step is None else step
  from jaxface import checkpoint as ckpt_lib
  try:
    state = ckpt_lib.restore_numpy(os.path.join(ckpt_dir, str(step), "state"))
  except Exception as e:  # unreadable checkpoint: the user's file, not a bug here
    raise CheckpointError(f"checkpoint {ckpt_dir}/{step} cannot be read ({e}); retrain or pick another step.") from None
  return config, state, step


def load_priors(workdir, step=None, raw=False):
  """Frozen factor decoders of a `configs/priors.py` training.

  Returns {"decoders": {factor: fn z -> [B, dim]}, "latent": {factor: latent size},
  "split": fn(factor, x) -> {block: [B, n]}, "face_dims": {block: n}, "step": step, "fitted": bool}.
  With `fitted` (workdir/latent_fit.npz from the end-of-training evaluation, or `python -m jaxface.eval.priors`),
  each decoder maps z ~ N(0, I) through the aggregate posterior's Gaussian first; `raw=True` skips that."""
  config, state, step = restore_workdir(workdir, step)
  if config.get("trainer") != "priors":
    raise CheckpointError(f"{workdir} was trained by {config.get('trainer')!r}, not the priors method; pass the "
                          f"workdir of a configs/priors.py run.")
  dims = face_dims(config)
  fs = factors(config)
  decoders = {f: decoder(config, f, state[f]["params"], state[f]["stats"]) for f in fs}
  fit_path = os.path.join(workdir, LATENT_FIT)
  fitted = not raw and os.path.isfile(fit_path)
  if fitted:
    with np.load(fit_path) as z:
      decoders = {f: fitted_decoder(decoders[f], z[f"{f}/mean"], z[f"{f}/chol"]) for f in fs}
  return {"decoders": decoders, "fitted": fitted,
          "latent": {f: int(config.model[f].latent) for f in fs},
          "split": lambda factor, x: vae_lib.split_blocks(factor, x, dims), "face_dims": dims, "step": step}
