"""Face parser on the synthetic world: image -> per-pixel class (synthetic.CLASSES), from rendered truth.

Each step renders its batch of world factors on the device (synthetic.render_batch: image and segmentation),
runs the encoder-decoder (models/parser.py, BatchNorm in training mode) and minimises
  w_ce·cross-entropy + w_dice·soft Dice (losses/segmentation.py).
DiscoFaceGAN reads the hair channel of its parser; `hair_mask(model, images)` gives that probability map.
Later methods load a trained parser with `load_parser(workdir)` (jaxface/runs/parser.py).
"""


import jax
import jax.numpy as jnp
import optax

from jaxface.data import batches as common
from jaxface.data import synthetic
from jaxface.errors import ConfigError
from jaxface.losses import segmentation as seg_loss
from jaxface.runs.parser import network
from jaxface.train import rnet as rnet_lib

EVALS = ("segmentation",)  # evaluators when the config names none (jaxface/train/evaluators.py)


def validate(config):
  if config.data.kind != "synthetic":
    raise ConfigError(f"configs/parser.py trains on the synthetic world's segmentation; data.kind="
                      f"{config.data.kind!r} has no labels. Use --config.data.kind=synthetic.")
  if config.data.resolution % 32:
    raise ConfigError(f"config.data.resolution={config.data.resolution} must be a multiple of 32 (the encoder "
                      f"downsamples 32x).")
  if config.model.depth not in (18, 34, 50, 101):
    raise ConfigError(f"config.model.depth={config.model.depth} must be 18, 34, 50 or 101.")


def optimizer(config):
  return rnet_lib.optimizer(config)


# ------------------------------------------------------------------------------------------------- state

def init_state(config, rng):
  validate(config)
  res = config.data.resolution
  variables = network(config, train=False).init(rng, jnp.zeros((1, res, res, 3), jnp.float32))
  return {"params": variables["params"], "batch_stats": variables["batch_stats"],
          "opt": optimizer(config).init(variables["params"]), "step": jnp.zeros((), jnp.int32)}


def phase(config, step):
  del config, step
  return None


def train_step(config):
  net = network(config, train=True)
  tx = optimizer(config)
  lc, res = config.loss, config.data.resolution

  def step(state, batch, rng, phase):
    del rng, phase
    world = synthetic.render_batch(batch, res, config.data)
    images, labels = world["image"], world["seg"]

    def loss_fn(params):
      logits, new_vars = net.apply({"params": params, "batch_stats": state["batch_stats"]}, images,
                                   mutable=["batch_stats"])
      ce, dice = seg_loss.cross_entropy(logits, labels), seg_loss.soft_dice(logits, labels)
      acc = (logits.argmax(-1) == labels).mean()
      return lc.w_ce * ce + lc.w_dice * dice, (ce, dice, acc, new_vars["batch_stats"])

    (loss, (ce, dice, acc, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "loss_ce": ce, "loss_dice": dice, "pixel_acc": acc,
               "grad_norm": optax.tree.norm(grads)}
    return dict(state, params=params, batch_stats=batch_stats, opt=opt, step=state["step"] + 1), metrics

  return step


def make_data(config):
  validate(config)
  return common.data_iterator(config)


# ------------------------------------------------------------------------------------------------- loading
