"""R-Net on the synthetic world: image -> the synthetic face model's coefficients, supervised by ground truth.

Each step renders its batch of world factors on the device (synthetic.render_batch, vmapped), runs the ResNet
(BatchNorm in training mode) and minimises
  Σ_g w_g·mse_g(standardised coefficients) + w_landmark·landmark + w_photo·photometric + w_gamma_mono·mono-light
(the photometric term renders the predicted face with jaxface.render and compares it inside the world's face
mask; it costs a differentiable render per step, so the CPU preset leaves it off; all terms in losses/recon.py).
The head predicts standardised coefficients: coeffs = mean + std·head(features), with the
world's per-dimension mean/std (estimated once from `stats_samples` training draws and kept in the state), so
the zero-initialised head starts at the mean face and every group trains at the same scale. Coefficients are
laid out as the FaceModel layout of mp468_bases.build_face_model(level) in `config.model.order` ("disco" = [id, tex,
exp, angle, gamma, trans], what DiscoFaceGAN's R-Net and VAEs use).

Later methods load a trained R-Net with `load_rnet(workdir)` (jaxface/runs/rnet.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.data import batches as common
from jaxface.data import synthetic
from jaxface.data import synthetic_factors as sf
from jaxface.errors import ConfigError
from jaxface.losses import recon
from jaxface.render import face_model as fm_lib
from jaxface.runs import render_mix as render_mix_lib
from jaxface.runs.rnet import GROUP_NAMES, camera, face_model, layout, network

EVALS = ("recon",)  # evaluators when the config names none (jaxface/train/evaluators.py)


# ------------------------------------------------------------------------------------------------- model


def validate(config):
  if config.data.kind != "synthetic":
    raise ConfigError(f"configs/rnet.py trains on the synthetic world's ground truth; data.kind="
                      f"{config.data.kind!r} has no coefficients. Use --config.data.kind=synthetic.")
  if config.model.depth not in (18, 34, 50, 101):
    raise ConfigError(f"config.model.depth={config.model.depth} must be 18, 34, 50 or 101.")
  if config.model.width < 8:
    raise ConfigError(f"config.model.width={config.model.width} must be >= 8 (64 = torchvision ResNet).")
  if config.model.order not in fm_lib.COEFF_ORDERS:
    raise ConfigError(f"config.model.order={config.model.order!r} must be one of {sorted(fm_lib.COEFF_ORDERS)} "
                      f"('disco' = [id, tex, exp, angle, gamma, trans], 'd3dfr' = [id, exp, tex, ...]).")


def flat_targets(batch, order):
  """A batch's true coefficients as a flat [B, C] vector in `order`."""
  return jnp.concatenate([jnp.asarray(batch[g], jnp.float32).reshape(batch[g].shape[0], -1)
                          for g in fm_lib.COEFF_ORDERS[order]], -1)


@functools.lru_cache(maxsize=8)
def _stats(world_cfg, order, num):
  fs = sf.stack([sf.sample_factors(i, world_cfg) for i in range(num)])
  flat = np.concatenate([fs[g].reshape(num, -1) for g in fm_lib.COEFF_ORDERS[order]], -1).astype(np.float64)
  return flat.mean(0).astype(np.float32), np.maximum(flat.std(0), 1e-3).astype(np.float32)


def coeff_stats(config):
  """Per-dimension mean and std [C] of the world's coefficients (from the first `stats_samples` draws)."""
  return _stats(sf.as_world_config(config.data), config.model.order, int(config.model.stats_samples))


def optimizer(config):
  o = config.optim
  warmup = max(1, min(o.warmup_steps, config.total_steps // 2))  # short (test) runs still decay
  schedule = optax.warmup_cosine_decay_schedule(0.0, o.lr, warmup, max(config.total_steps, warmup + 1),
                                                o.lr * o.final_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip), optax.adamw(schedule, weight_decay=o.weight_decay))


# ------------------------------------------------------------------------------------------------- state

def init_state(config, rng):
  validate(config)
  res = config.data.resolution
  variables = network(config, train=False).init(rng, jnp.zeros((1, res, res, 3), jnp.float32))
  mean, std = coeff_stats(config)
  return {"params": variables["params"], "batch_stats": variables["batch_stats"],
          "opt": optimizer(config).init(variables["params"]), "coeff_mean": jnp.asarray(mean),
          "coeff_std": jnp.asarray(std), "step": jnp.zeros((), jnp.int32)}


def phase(config, step):
  del config, step
  return None


# ------------------------------------------------------------------------------------------------- step

def train_step(config):
  net = network(config, train=True)
  tx = optimizer(config)
  lc, order, res = config.loss, config.model.order, config.data.resolution
  fm, cam, lay = face_model(config.data.level), camera(config.data), layout()
  slices = recon.group_slices(lay, fm_lib.COEFF_ORDERS[order])
  weights = {g: lc[f"w_{g}"] for g in GROUP_NAMES}

  render_mix = float(config.get("render_mix", 0.0))  # configs from before the field: no renders

  def step(state, batch, rng, phase):
    del phase
    world = synthetic.render_batch(batch, res, config.data)
    images, true_lm = world["image"], world["landmarks68"]
    target = flat_targets(batch, order)
    if render_mix > 0:
      renders, masks = render_mix_lib.true_renders(batch, config.data, res)
      images = render_mix_lib.mix_in_renders(images, renders, masks, rng, render_mix)
    mean, std = state["coeff_mean"], state["coeff_std"]

    def loss_fn(params):
      out, new_vars = net.apply({"params": params, "batch_stats": state["batch_stats"]}, images,
                                mutable=["batch_stats"])
      pred = mean + std * out
      total, terms = recon.coefficient_loss(pred, target, std, slices, weights)
      coeffs = fm_lib.split_coeffs(pred, lay, order)
      lm = jax.vmap(lambda c: recon.landmark_points(fm, c, cam, res))(coeffs)
      terms["landmark"] = recon.landmark_loss(lm, true_lm, res)
      total = total + lc.w_landmark * terms["landmark"]
      if lc.w_photo > 0:
        rendered, mask = jax.vmap(lambda c: render_mix_lib.render_display(fm, c, cam, res))(coeffs)
        terms["photo"] = recon.photometric_loss(rendered, images, mask * world["face_mask"])
        total = total + lc.w_photo * terms["photo"]
      if lc.w_gamma_mono > 0:
        terms["gamma_mono"] = recon.gamma_mono_loss(coeffs["gamma"])
        total = total + lc.w_gamma_mono * terms["gamma_mono"]
      yaw_err = jnp.abs(coeffs["angle"][:, 1] - batch["angle"][:, 1]).mean()
      return total, (terms, new_vars["batch_stats"], yaw_err)

    (loss, (terms, batch_stats, yaw_err)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "yaw_err_deg": jnp.rad2deg(yaw_err), "grad_norm": optax.tree.norm(grads),
               **{f"loss_{k}": v for k, v in terms.items()}}
    new_state = dict(state, params=params, batch_stats=batch_stats, opt=opt, step=state["step"] + 1)
    return new_state, metrics

  return step


# ------------------------------------------------------------------------------------------------- data, eval

def make_data(config):
  validate(config)
  return common.data_iterator(config)


# ------------------------------------------------------------------------------------------------- loading
