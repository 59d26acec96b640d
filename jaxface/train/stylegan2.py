"""StyleGAN2 (config F) on the shared loop: the baseline every other method builds on.

Per step, as in StyleGAN2-ADA's phases: G main update (non-saturating loss, style mixing), G path-length update
on every `pl_interval`-th step, D main update (logistic loss), D R1 update on every `r1_interval`-th step, then
the EMA generator and the running mean of W. Lazy regularization keeps the StyleGAN2 Adam correction: with
mb_ratio = k / (k + 1), lr *= mb_ratio and betas **= mb_ratio, and the regularizer is weighted by its interval k.
"""


import jax
import jax.numpy as jnp
import optax

from jaxface.data import batches as common
from jaxface.errors import ConfigError
from jaxface.losses import adversarial
from jaxface.models import stylegan2 as sg2
from jaxface.runs.stylegan2 import _dtype, generator


# ------------------------------------------------------------------------------------------------- models


def discriminator(config):
  m = config.model
  return sg2.Discriminator(resolution=m.resolution, channel_base=m.d_channel_base, channel_max=m.channel_max,
                           img_channels=3, mbstd_group_size=m.mbstd_group_size, dtype=_dtype(config))


def validate(config):
  res = config.model.resolution
  if res < 8 or res & (res - 1):
    raise ConfigError(f"config.model.resolution={res} must be a power of two >= 8 (e.g. 64, 128, 256).")
  if config.data.resolution != res:
    raise ConfigError(f"config.data.resolution={config.data.resolution} differs from config.model.resolution={res}; "
                      f"set both to the same value.")


def optimizer(opt_cfg, reg_interval):
  """Adam with the StyleGAN2 lazy-regularization correction of lr and betas."""
  ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
  return optax.adam(opt_cfg.lr * ratio, b1=opt_cfg.beta1 ** ratio, b2=opt_cfg.beta2 ** ratio, eps=opt_cfg.eps)


def d_updates(d_logits, tx_d, d, reals, fake_img, do_r1, loss_cfg, metrics):
  """D main (logistic loss on reals vs fakes) and, when `do_r1`, the lazy R1 update on reals weighted by
  gamma/2 and its interval. d: {"params", "opt"}; d_logits(params, images). Fills metrics (loss_D, D_real, D_fake,
  r1_penalty); returns (params, opt state)."""
  def d_loss(params):
    real_logits, fake_logits = d_logits(params, reals), d_logits(params, fake_img)
    return adversarial.d_logistic(real_logits, fake_logits), (real_logits.mean(), fake_logits.mean())
  (metrics["loss_D"], (metrics["D_real"], metrics["D_fake"])), grads = jax.value_and_grad(
      d_loss, has_aux=True)(d["params"])
  updates, opt = tx_d.update(grads, d["opt"], d["params"])
  params = optax.apply_updates(d["params"], updates)
  if do_r1:
    def r1_loss(params):
      penalty = adversarial.r1_penalty(lambda x: d_logits(params, x), reals)
      return penalty * (loss_cfg.r1_gamma / 2) * loss_cfg.r1_interval, penalty
    (_, metrics["r1_penalty"]), grads = jax.value_and_grad(r1_loss, has_aux=True)(params)
    updates, opt = tx_d.update(grads, opt, params)
    params = optax.apply_updates(params, updates)
  return params, opt


# ------------------------------------------------------------------------------------------------- state

def init_state(config, rng):
  validate(config)
  G, D = generator(config), discriminator(config)
  kg, kd = jax.random.split(rng)
  z = jnp.zeros((1, config.model.z_dim), jnp.float32)
  img = jnp.zeros((1, config.model.resolution, config.model.resolution, 3), jnp.float32)
  g_params = G.init({"params": kg, "noise": kg}, z)["params"]
  d_params = D.init(kd, img)["params"]
  tx_g = optimizer(config.optim_G, config.loss.pl_interval if config.loss.pl_weight > 0 else 0)
  tx_d = optimizer(config.optim_D, config.loss.r1_interval if config.loss.r1_gamma > 0 else 0)
  return {
      "G": {"params": g_params, "opt": tx_g.init(g_params)},
      "D": {"params": d_params, "opt": tx_d.init(d_params)},
      "G_ema": g_params,
      "w_avg": jnp.zeros((config.model.w_dim,), jnp.float32),
      "pl_mean": jnp.zeros((), jnp.float32),
      "step": jnp.zeros((), jnp.int32),
  }


def phase(config, step):
  """Which lazy regularizers run at `step` (1-based): (path_length, r1)."""
  loss = config.loss
  do_pl = loss.pl_weight > 0 and step % loss.pl_interval == 0
  do_r1 = loss.r1_gamma > 0 and step % loss.r1_interval == 0
  return (bool(do_pl), bool(do_r1))


# ------------------------------------------------------------------------------------------------- step

def ema_update(g_ema, g_params, step, batch_size, ema_kimg, ema_rampup):
  """G_ema after optimizer step `step` (0-based): half-life ema_kimg thousand images, optionally ramped up to
  `ema_rampup` x the images seen so far (StyleGAN2-ADA)."""
  nimg = (step + 1).astype(jnp.float32) * batch_size
  ema_nimg = ema_kimg * 1000.0
  if ema_rampup:
    ema_nimg = jnp.minimum(ema_nimg, nimg * ema_rampup)
  beta = 0.5 ** (batch_size / jnp.maximum(ema_nimg, 1e-8))
  return jax.tree_util.tree_map(lambda e, p: p + (e - p) * beta, g_ema, g_params)


def _mixed_ws(G, g_params, z1, z2, key, prob, num_ws):
  """Maps two latents and switches from the first to the second at a random layer with probability `prob`."""
  w1 = G.apply({"params": g_params}, z1, method="map")
  w2 = G.apply({"params": g_params}, z2, method="map")
  k1, k2 = jax.random.split(key)
  cutoff = jax.random.randint(k1, (), 1, num_ws)
  cutoff = jnp.where(jax.random.uniform(k2) < prob, cutoff, num_ws)
  layer = jnp.arange(num_ws)[None, :, None]
  return jnp.where(layer < cutoff, w1[:, None], w2[:, None]), w1


def train_step(config):
  G, D = generator(config), discriminator(config)
  loss_cfg, z_dim, num_ws = config.loss, config.model.z_dim, G.num_ws
  tx_g = optimizer(config.optim_G, loss_cfg.pl_interval if loss_cfg.pl_weight > 0 else 0)
  tx_d = optimizer(config.optim_D, loss_cfg.r1_interval if loss_cfg.r1_gamma > 0 else 0)
  batch_size = config.batch_size

  def fakes(g_params, key, n):
    kz1, kz2, kmix, knoise = jax.random.split(key, 4)
    z1 = jax.random.normal(kz1, (n, z_dim))
    z2 = jax.random.normal(kz2, (n, z_dim))
    ws, w = _mixed_ws(G, g_params, z1, z2, kmix, loss_cfg.style_mixing_prob, num_ws)
    img = G.apply({"params": g_params}, ws, rngs={"noise": knoise}, method="synthesize")
    return img, ws, w

  def d_logits(d_params, img):
    return D.apply({"params": d_params}, img)

  def step(state, batch, rng, phase):
    do_pl, do_r1 = phase
    rng = jax.random.fold_in(rng, state["step"])
    k_gmain, k_greg, k_dmain, k_pl = jax.random.split(rng, 4)
    reals = common.real_images(config, batch)
    metrics = {}
    g, d = state["G"], state["D"]

    # G main: non-saturating loss through a frozen D.
    def g_loss(g_params):
      img, _, w = fakes(g_params, k_gmain, batch_size)
      return adversarial.g_nonsaturating(d_logits(d["params"], img)), w
    (metrics["loss_G"], w), grads = jax.value_and_grad(g_loss, has_aux=True)(g["params"])
    updates, g_opt = tx_g.update(grads, g["opt"], g["params"])
    g_params = optax.apply_updates(g["params"], updates)

    # G reg: path-length penalty on a half batch, weighted by its interval.
    pl_mean = state["pl_mean"]
    if do_pl:
      n = max(batch_size // loss_cfg.pl_batch_shrink, 1)
      def pl_loss(g_params):
        kz, kn, kp = jax.random.split(k_greg, 3)
        _, ws, _ = fakes(g_params, kz, n)
        synth = lambda ws_: G.apply({"params": g_params}, ws_, rngs={"noise": kn}, method="synthesize")
        penalty, new_mean = adversarial.path_length_penalty(synth, ws, pl_mean, kp, decay=loss_cfg.pl_decay)
        return penalty * loss_cfg.pl_weight * loss_cfg.pl_interval, (penalty, new_mean)
      (_, (metrics["pl_penalty"], pl_mean)), grads = jax.value_and_grad(pl_loss, has_aux=True)(g_params)
      updates, g_opt = tx_g.update(grads, g_opt, g_params)
      g_params = optax.apply_updates(g_params, updates)

    # D main: logistic loss on reals vs fresh fakes from the updated G (no gradient into G).
    fake_img, _, _ = fakes(g_params, k_dmain, batch_size)
    d_params, d_opt = d_updates(d_logits, tx_d, d, reals, jax.lax.stop_gradient(fake_img), do_r1, loss_cfg, metrics)

    # EMA generator with ramp-up (StyleGAN2-ADA), and the running mean of W for truncation.
    g_ema = ema_update(state["G_ema"], g_params, state["step"], batch_size, loss_cfg.ema_kimg, loss_cfg.ema_rampup)
    w_avg = w.mean(0) + (state["w_avg"] - w.mean(0)) * loss_cfg.w_avg_beta

    new_state = {
        "G": {"params": g_params, "opt": g_opt},
        "D": {"params": d_params, "opt": d_opt},
        "G_ema": g_ema, "w_avg": w_avg, "pl_mean": pl_mean, "step": state["step"] + 1,
    }
    return new_state, metrics

  return step


# ------------------------------------------------------------------------------------------------- data, samples

def make_data(config):
  validate(config)
  return common.data_iterator(config)


def samples(config):
  """EMA generator at fixed latents (and constant noise), so grids are comparable across steps."""
  G = generator(config)
  z = jax.random.normal(jax.random.key(config.seed + 1), (config.log.num_samples, config.model.z_dim))

  def fn(state):
    return G.apply({"params": state["G_ema"]}, z, noise_mode="const")

  return fn
