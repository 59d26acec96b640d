"""SofGAN's texture branch (SIW-StyleGAN2, jaxface.models.siw) on the shared loop.

As released: real images and label maps are drawn UNPAIRED (images of world index
i, label maps of an independent index stream, seed + 1); every fake gets a pair of z (distinct with probability
`distinct_prob` = 0.9, else one z repeated), both mapped to W and broadcast over the layers (no layer crossover),
and a random group mask (half of the label map's semantic groups take style 0). Losses: non-saturating G,
logistic D, lazy R1 on reals, lazy path length w.r.t. the W pair [B, 2, num_ws, w_dim]; StyleGAN2 lazy-reg Adam,
EMA generator. Augmentation: independent horizontal flips of images and of label maps (with the l/r nose swap).

Where this departs from the release: per-sample style pairs and masks at any batch size (the release's region mixing
only works at batch 1); minibatch-stddev over groups of `mbstd_group_size` (the release's per-GPU batch 1 makes it
a constant); const noise by default, as released; no segmentation loss (the release has none); plain pixel norm of
z (the release normalises the two 256-d halves separately in training only); no random scale-crop augmentation
(the synthetic world is already framed; flips are done).

The phases, optimizer, EMA and discriminator are jaxface/train/stylegan2.py's; evaluation is jaxface/eval/siw.py.
The batch is flat: "img/<field>" (the image stream) and "seg/<field>" (world factors whose label map is used).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.data import batches as common
from jaxface.data import pipeline, synthetic
from jaxface.edit import region
from jaxface.errors import ConfigError
from jaxface.losses import adversarial
from jaxface.models import siw as siw_lib
from jaxface.runs.siw import generator, parser_bootstrap_config, sample_z_pairs
from jaxface.train import experts
from jaxface.train import stylegan2 as sg2_train
from jaxface.train.evaluators import evaluators

EVALS = ("siw",)  # evaluators when the config names none (jaxface/train/evaluators.py)

SEG_SEED_OFFSET = 1  # the label-map stream's seed is config.seed + this (independent of the image stream)

# ------------------------------------------------------------------------------------------------- models


discriminator = sg2_train.discriminator
phase = sg2_train.phase


def prepare(config, log=print):
  """Trains the evaluation parser's bootstrap (when config.eval.parser is empty) before the run starts, and
  records its workdir in the config, so the evaluator after training only reads it."""
  if "siw" in evaluators(config) and not config.eval.parser:
    cfg = parser_bootstrap_config(config)
    config.eval.parser = experts.trained_bootstrap(cfg, "parser", config.eval.parser_bootstrap, log)
  return config


def validate(config):
  sg2_train.validate(config)
  m = config.model
  if m.seg_res < siw_lib.ENC_RES or m.seg_res & (m.seg_res - 1):
    raise ConfigError(f"config.model.seg_res={m.seg_res} must be a power of two >= {siw_lib.ENC_RES} (label maps "
                      f"are one-hot encoded at this size; 128 as released).")
  if m.noise_mode not in ("const", "random", "none"):
    raise ConfigError(f"config.model.noise_mode={m.noise_mode!r} must be const (released), random or none.")
  if not 0.0 <= config.loss.distinct_prob <= 1.0:
    raise ConfigError(f"config.loss.distinct_prob={config.loss.distinct_prob} must be a probability in [0, 1].")


# ------------------------------------------------------------------------------------------------- state

def init_state(config, rng):
  validate(config)
  G, D = generator(config), discriminator(config)
  m = config.model
  kg, kd = jax.random.split(rng)
  seg = jnp.zeros((1, m.seg_res, m.seg_res, siw_lib.NUM_CLASSES), jnp.float32)
  mask = jnp.ones((1, 2, m.seg_res, m.seg_res), jnp.float32) * 0.5
  g_params = G.init({"params": kg, "noise": kg}, seg, jnp.zeros((1, 2, m.z_dim)), mask)["params"]
  d_params = D.init(kd, jnp.zeros((1, m.resolution, m.resolution, 3), jnp.float32))["params"]
  tx_g = sg2_train.optimizer(config.optim_G, config.loss.pl_interval if config.loss.pl_weight > 0 else 0)
  tx_d = sg2_train.optimizer(config.optim_D, config.loss.r1_interval if config.loss.r1_gamma > 0 else 0)
  return {
      "G": {"params": g_params, "opt": tx_g.init(g_params)},
      "D": {"params": d_params, "opt": tx_d.init(d_params)},
      "G_ema": g_params,
      "w_avg": jnp.zeros((m.w_dim,), jnp.float32),
      "pl_mean": jnp.zeros((), jnp.float32),
      "step": jnp.zeros((), jnp.int32),
  }


# ------------------------------------------------------------------------------------------------- pieces

def split_batch(batch):
  """The flat batch -> (image-stream fields, label-stream fields)."""
  img = {k[4:]: v for k, v in batch.items() if k.startswith("img/")}
  seg = {k[4:]: v for k, v in batch.items() if k.startswith("seg/")}
  return img, seg


def reals_and_labels(config, img_batch, seg_batch):
  """Real images [B, R, R, 3] in [-1, 1] and unpaired 17-class label maps [B, R, R] from the two streams. With
  the synthetic world as the image source both streams go through ONE render call (half the compiled graph)."""
  res, b = config.data.resolution, next(iter(seg_batch.values())).shape[0]
  if "image" in img_batch:
    reals = common.real_images(config, img_batch)
    seg = synthetic.render_batch(seg_batch, res, config.data)["seg"]
  else:
    both = {k: jnp.concatenate([img_batch[k], seg_batch[k]]) for k in synthetic.RENDER_KEYS}
    out = synthetic.render_batch(both, res, config.data)
    reals, seg = out["image"][:b].astype(jnp.float32) * 2.0 - 1.0, out["seg"][b:]
  return reals, region.world_to_sofgan17(seg)


def random_flip(key, images):
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def train_step(config):
  G, D = generator(config), discriminator(config)
  m, loss_cfg = config.model, config.loss
  tx_g = sg2_train.optimizer(config.optim_G, loss_cfg.pl_interval if loss_cfg.pl_weight > 0 else 0)
  tx_d = sg2_train.optimizer(config.optim_D, loss_cfg.r1_interval if loss_cfg.r1_gamma > 0 else 0)
  batch_size, num_ws = config.batch_size, G.num_ws

  def synth(g_params, seg, ws, mask, key):
    return G.apply({"params": g_params}, seg, ws, mask, m.noise_mode, method="synthesize", rngs={"noise": key})

  def fakes(g_params, key, labels):
    kz, kmask, knoise = jax.random.split(key, 3)
    z = sample_z_pairs(kz, labels.shape[0], m.z_dim, loss_cfg.distinct_prob)
    w = G.apply({"params": g_params}, z, method="map")  # [n, 2, w_dim]
    ws = siw_lib.broadcast_ws(w, num_ws)
    seg_labels = region.nearest_resize(labels, m.seg_res)
    seg = jax.nn.one_hot(seg_labels, siw_lib.NUM_CLASSES, dtype=jnp.float32)
    mask = region.random_group_masks(kmask, seg_labels)
    return synth(g_params, seg, ws, mask, knoise), (ws, w, seg, mask, knoise)

  def d_logits(d_params, img):
    return D.apply({"params": d_params}, img)

  def step(state, batch, rng, phase):
    do_pl, do_r1 = phase
    rng = jax.random.fold_in(rng, state["step"])
    k_gmain, k_greg, k_dmain, k_pl, k_flip_img, k_flip_seg = jax.random.split(rng, 6)
    img_batch, seg_batch = split_batch(batch)
    reals, labels = reals_and_labels(config, img_batch, seg_batch)
    if config.aug.flip:
      reals = random_flip(k_flip_img, reals)
      labels = region.flip17(labels, jax.random.bernoulli(k_flip_seg, 0.5, (labels.shape[0],)))
    metrics = {}
    g, d = state["G"], state["D"]

    # G main: non-saturating loss through a frozen D.
    def g_loss(g_params):
      img, (_, w, _, _, _) = fakes(g_params, k_gmain, labels)
      return adversarial.g_nonsaturating(d_logits(d["params"], img)), w
    (metrics["loss_G"], w), grads = jax.value_and_grad(g_loss, has_aux=True)(g["params"])
    updates, g_opt = tx_g.update(grads, g["opt"], g["params"])
    g_params = optax.apply_updates(g["params"], updates)

    # G reg: path length w.r.t. the W pair on a shrunken batch, weighted by its interval.
    pl_mean = state["pl_mean"]
    if do_pl:
      n = max(batch_size // loss_cfg.pl_batch_shrink, 1)
      def pl_loss(g_params):
        _, (ws, _, seg, mask, knoise) = fakes(g_params, k_greg, labels[:n])
        penalty, new_mean = adversarial.path_length_penalty(
            lambda ws_: synth(g_params, seg, ws_, mask, knoise), ws, pl_mean, k_pl, decay=loss_cfg.pl_decay)
        return penalty * loss_cfg.pl_weight * loss_cfg.pl_interval, (penalty, new_mean)
      (_, (metrics["pl_penalty"], pl_mean)), grads = jax.value_and_grad(pl_loss, has_aux=True)(g_params)
      updates, g_opt = tx_g.update(grads, g_opt, g_params)
      g_params = optax.apply_updates(g_params, updates)

    # D main (logistic loss on reals vs fresh fakes from the updated G), then lazy R1 on reals.
    fake_img = jax.lax.stop_gradient(fakes(g_params, k_dmain, labels)[0])
    d_params, d_opt = sg2_train.d_updates(d_logits, tx_d, d, reals, fake_img, do_r1, loss_cfg, metrics)

    g_ema = sg2_train.ema_update(state["G_ema"], g_params, state["step"], batch_size, loss_cfg.ema_kimg,
                                 loss_cfg.ema_rampup)
    w_mean = w.reshape(-1, w.shape[-1]).mean(0)
    w_avg = w_mean + (state["w_avg"] - w_mean) * loss_cfg.w_avg_beta
    return {
        "G": {"params": g_params, "opt": g_opt},
        "D": {"params": d_params, "opt": d_opt},
        "G_ema": g_ema, "w_avg": w_avg, "pl_mean": pl_mean, "step": state["step"] + 1,
    }, metrics

  return step


# ------------------------------------------------------------------------------------------------- data

class UnpairedIterator:
  """Images of one index stream and label-map factors of an independent one, as one flat batch; its state is
  both streams' states (resumable)."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels

  def __iter__(self):
    return self

  def __next__(self):
    img = next(self.images)
    if "image" in img:
      img = {"image": img["image"]}
    else:
      img = {k: img[k] for k in synthetic.RENDER_KEYS}
    seg = next(self.labels)
    out = {f"img/{k}": v for k, v in img.items()}
    out.update({f"seg/{k}": seg[k] for k in synthetic.RENDER_KEYS})
    return out

  def get_state(self):
    return {"images": self.images.get_state(), "labels": self.labels.get_state()}

  def set_state(self, state):
    self.images.set_state(state["images"])
    self.labels.set_state(state["labels"])

  @property
  def stats(self):
    return getattr(self.images, "stats", {})


def label_data_config(config):
  """The label-map stream: the synthetic world with the run's world settings (kind forced to synthetic)."""
  cfg = config.data.copy_and_resolve_references()
  cfg.kind = "synthetic"
  return cfg


def make_data(config):
  validate(config)
  images = common.data_iterator(config)
  labels = pipeline.make_iterator(label_data_config(config), global_batch_size=config.batch_size,
                                  seed=config.seed + SEG_SEED_OFFSET)
  return UnpairedIterator(images, labels)


# ------------------------------------------------------------------------------------------------- samples, eval

def sample_labels(config, n, start=None):
  """17-class label maps [n, R, R] of held-out world indices (numpy), for grids and evaluation."""
  start = config.eval.start if start is None else start
  seg = synthetic.render_items(range(start, start + n), config.data.resolution, config.data,
                               batch_size=min(int(config.eval.batch_size), 32))["seg"]  # eval's compiled shape
  return region.world_to_sofgan17(seg.astype(np.int32))


def samples(config):
  """Grid of (label map, EMA image) pairs at fixed label maps, z pairs, group masks and const noise."""
  G, m = generator(config), config.model
  n = max(config.log.num_samples // 2, 1)
  labels = jnp.asarray(sample_labels(config, n))
  seg_labels = region.nearest_resize(labels, m.seg_res)
  seg = jax.nn.one_hot(seg_labels, siw_lib.NUM_CLASSES, dtype=jnp.float32)
  key = jax.random.key(config.seed + 1)
  z = sample_z_pairs(key, n, m.z_dim, 1.0)
  mask = region.random_group_masks(jax.random.fold_in(key, 1), seg_labels)
  colours = region.colorize(labels, m.resolution) * 2.0 - 1.0

  def fn(state):
    img = G.apply({"params": state["G_ema"]}, seg, z, mask, "const")
    return jnp.stack([colours, img], axis=1).reshape((2 * n,) + img.shape[1:])

  return fn
