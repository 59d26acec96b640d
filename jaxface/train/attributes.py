"""Attribute predictor on the synthetic world: image -> glasses, smile, hair colour, gender, age, skin tone,
key-light side, yaw.

The scorer InterFaceGAN fits its boundaries to: each step renders its batch of world factors on the
device (synthetic.render_batch), maps the images to [-1, 1] (what generators emit), runs a narrow ResNet
(models/resnet.Encoder, BatchNorm in training mode) with one linear head per attribute, and minimises
  w_glasses·BCE(glasses logit) + w_hair·CE(6 hair colours) + Σ_a w_a·MSE(standardised a), a in REGRESSION
with the labels of synthetic_factors.attributes (yaw = the pose's y angle, in degrees). Regression targets are
standardised with the world's mean/std (from `stats_samples` training draws, kept in the state, as R-Net does).

The trained predictor, its score columns (SCORE_NAMES) and `load_attributes(workdir)` are jaxface/runs/attributes.py;
the InterFaceGAN `world_attributes` predictor that wraps it is registered by jaxface/interfacegan.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.data import batches as common
from jaxface.data import synthetic_factors as sf
from jaxface.errors import ConfigError
from jaxface.runs.attributes import REGRESSION, network, split_head, targets, world_record
from jaxface.train import rnet as rnet_lib

EVALS = ("attributes",)  # evaluators when the config names none (jaxface/train/evaluators.py)


# ------------------------------------------------------------------------------------------------- model

# The network is the narrow R-Net trunk with a zero-initialised linear head (models/rnet_small.NarrowRNet): outputs
# (N, 1 + 6 + 6) = [glasses logit | standardised REGRESSION | hair logits], so training starts at
# p(glasses) = 1/2, the mean of every regression target and uniform hair colours. Input range [-1, 1].


def validate(config):
  if config.data.kind != "synthetic":
    raise ConfigError(f"configs/attributes.py trains on the synthetic world's labels; data.kind="
                      f"{config.data.kind!r} has none. Use --config.data.kind=synthetic.")
  if config.data.resolution % 32:
    raise ConfigError(f"config.data.resolution={config.data.resolution} must be a multiple of 32 (the encoder "
                      f"downsamples 32x).")
  if config.model.depth not in (18, 34, 50, 101):
    raise ConfigError(f"config.model.depth={config.model.depth} must be 18, 34, 50 or 101.")
  if config.model.width < 4:
    raise ConfigError(f"config.model.width={config.model.width} must be >= 4.")


# ------------------------------------------------------------------------------------------------- labels


@functools.lru_cache(maxsize=8)
def _stats(world_cfg, num):
  recs = sf.stack([world_record(i, world_cfg) for i in range(num)])
  _, reg, _ = targets(recs, np)
  reg = np.asarray(reg, np.float64)
  return reg.mean(0).astype(np.float32), np.maximum(reg.std(0), 1e-3).astype(np.float32)


def target_stats(config):
  """Mean and std [R] of the regression targets over the first `stats_samples` world draws."""
  return _stats(sf.as_world_config(config.data), int(config.model.stats_samples))


def loss(out, glasses, reg, hair, mean, std, w):
  """Total loss and its terms. out: raw head [N, 1 + R + 6]; w: weights of glasses, hair and each REGRESSION name."""
  g_logit, reg_pred, hair_logits = split_head(out)
  terms = {"glasses": optax.sigmoid_binary_cross_entropy(g_logit, glasses).mean(),
           "hair": optax.softmax_cross_entropy_with_integer_labels(hair_logits, hair).mean()}
  sq = ((reg_pred - (reg - mean) / std) ** 2).mean(0)
  terms.update({k: sq[i] for i, k in enumerate(REGRESSION)})
  return sum(w[k] * v for k, v in terms.items()), terms


# ------------------------------------------------------------------------------------------------- method

def init_state(config, rng):
  validate(config)
  res = config.data.resolution
  variables = network(config, train=False).init(rng, jnp.zeros((1, res, res, 3), jnp.float32))
  mean, std = target_stats(config)
  return {"params": variables["params"], "batch_stats": variables["batch_stats"],
          "opt": rnet_lib.optimizer(config).init(variables["params"]), "target_mean": jnp.asarray(mean),
          "target_std": jnp.asarray(std), "step": jnp.zeros((), jnp.int32)}


def phase(config, step):
  del config, step
  return None


def train_step(config):
  net = network(config, train=True)
  tx = rnet_lib.optimizer(config)
  weights = {k: float(config.loss[f"w_{k}"]) for k in ("glasses", "hair") + REGRESSION}

  def step(state, batch, rng, phase):
    del rng, phase
    images = common.real_images(config, batch)  # rendered on the device, in [-1, 1]
    glasses, reg, hair = targets(batch)

    def loss_fn(params):
      out, new_vars = net.apply({"params": params, "batch_stats": state["batch_stats"]}, images,
                                mutable=["batch_stats"])
      total, terms = loss(out, glasses, reg, hair, state["target_mean"], state["target_std"], weights)
      return total, (terms, out, new_vars["batch_stats"])

    (total, (terms, out, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    g_logit, _, hair_logits = split_head(out)
    metrics = {"loss": total, "grad_norm": optax.tree.norm(grads),
               "glasses_acc": ((g_logit > 0) == (glasses > 0.5)).mean(),
               "hair_acc": (hair_logits.argmax(-1) == hair).mean(),
               **{f"loss_{k}": v for k, v in terms.items()}}
    return dict(state, params=params, batch_stats=batch_stats, opt=opt, step=state["step"] + 1), metrics

  return step


def make_data(config):
  validate(config)
  return common.data_iterator(config)


# ------------------------------------------------------------------------------------------------- metrics


# ------------------------------------------------------------------------------------------------- loading
