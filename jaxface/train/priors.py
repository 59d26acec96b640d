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
Either way the last rows are held out for the evaluator (jaxface/eval/priors.py).

`load_priors(workdir)` (jaxface/runs/priors.py) gives DiscoFaceGAN the frozen decoders as pure functions
z -> coefficients.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.errors import ConfigError, UserError
from jaxface.models import vae as vae_lib
from jaxface.runs.priors import factors, model
from jaxface.runs.priors_data import dataset

EVALS = ("priors",)  # evaluators when the config names none (jaxface/train/evaluators.py)

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


def optimizer(config):
  o = config.optim
  lr = optax.exponential_decay(o.lr, transition_steps=o.decay_every_steps, decay_rate=o.decay_rate, staircase=True)
  return optax.adam(lr, b1=o.beta1, b2=o.beta2)


# ------------------------------------------------------------------------------------------------- data


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
