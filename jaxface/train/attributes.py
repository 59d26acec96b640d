"""Attribute predictor on the synthetic world: image -> glasses, smile, hair colour, gender, age, skin tone,
key-light side, yaw.

The scorer InterFaceGAN fits its boundaries to: each step renders its batch of world factors on the
device (synthetic.render_batch), maps the images to [-1, 1] (what generators emit), runs a narrow ResNet
(models/resnet.Encoder, BatchNorm in training mode) with one linear head per attribute, and minimises
  w_glasses·BCE(glasses logit) + w_hair·CE(6 hair colours) + Σ_a w_a·MSE(standardised a), a in REGRESSION
with the labels of synthetic_factors.attributes (yaw = the pose's y angle, in degrees). Regression targets are
standardised with the world's mean/std (from `stats_samples` training draws, kept in the state, as R-Net does).

`load_attributes(workdir)` gives an `AttributeModel`; `predictor(workdir=None)` wraps it as the InterFaceGAN
`world_attributes` predictor (jaxface/edit/generator_io.py) whose score columns are SCORE_NAMES:
  glasses         the glasses logit (unbounded, so the top/bottom 2% are ranked, not saturated at 0/1)
  smile           predicted smile amount (0 .. 1)
  hair_lightness  expected luma of the hair colour under the softmax, Σ_c p_c·luma(HAIR_RGB[c]). One scalar
                  per hair attribute: the six colours order along lightness (black < dark brown < brown < red
                  < blonde < grey), so one hyperplane can separate light from dark hair, while a single class's
                  probability (e.g. blonde) is ~0 for most samples and ranks its bottom 2% by noise.
  gender, age     predicted gender-like (bimodal around ±1) and age-like (0 young .. 1 old) factors
  skin_tone       predicted albedo lightness coefficient (tex[0]: dark < 0 < light)
  light_x         predicted horizontal component of the key light (synthetic_factors.attributes)
  yaw             predicted yaw in degrees
With no workdir, the predictor is the configs/attributes.py bootstrap in $JAXFACE_CACHE (trained on first use).
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxface.errors import CheckpointError, ConfigError
from jaxface.train import common
from jaxface.train import rnet as rnet_lib

REGRESSION = ("smile", "gender", "age", "skin_tone", "light_x", "yaw")  # yaw last: it comes from the pose angles
SCORE_NAMES = ("glasses", "smile", "hair_lightness", "gender", "age", "skin_tone", "light_x", "yaw")
BOOTSTRAP_SPEC = "configs/attributes.py"


def num_hair():
  from jaxface.data import synthetic_factors as sf
  return len(sf.HAIR_COLOURS)


def hair_luma():
  """Rec. 601 luma of each hair colour's albedo [6]: the scale of the hair_lightness score."""
  from jaxface.data import synthetic_factors as sf
  return (sf.HAIR_RGB @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- model

# The network is the narrow R-Net trunk with a zero-initialised linear head (models/rnet_small.NarrowRNet): outputs
# (N, 1 + 6 + 6) = [glasses logit | standardised REGRESSION | hair logits], so training starts at
# p(glasses) = 1/2, the mean of every regression target and uniform hair colours. Input range [-1, 1].


def network(config, train):
  m = config.model
  from jaxface.models.rnet_small import NarrowRNet
  return NarrowRNet(1 + len(REGRESSION) + num_hair(), m.depth, m.width, train, jnp.dtype(config.compute_dtype))


def split_head(out):
  """Raw head output -> (glasses logit [N], standardised regressions [N, R], hair logits [N, 6])."""
  return out[:, 0], out[:, 1:1 + len(REGRESSION)], out[:, 1 + len(REGRESSION):]


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

def targets(batch, xp=jnp):
  """A batch of world records -> (glasses 0/1 [N], regression targets [N, R] in REGRESSION order, hair [N]).
  xp = jnp inside a step, np on the host (host statistics must not become tracers while init_state is traced)."""
  glasses = (xp.asarray(batch["glasses"]) > 0).astype(xp.float32)
  yaw = xp.rad2deg(xp.asarray(batch["angle"], xp.float32)[:, 1])  # angle = (pitch x, yaw y, roll z) radians
  reg = xp.stack([xp.asarray(batch[k], xp.float32) for k in REGRESSION[:-1]] + [yaw], -1)
  return glasses, reg, xp.asarray(batch["hair_colour"], xp.int32)


def world_record(index, world_cfg):
  """Sample `index` exactly as training sees it (synthetic.SyntheticSource's record, without its index wrap, so
  held-out indices >= data.size stay unseen)."""
  from jaxface.data import synthetic
  return synthetic.SyntheticSource(world_cfg, size=2 ** 62)[index]


@functools.lru_cache(maxsize=8)
def _stats(world_cfg, num):
  from jaxface.data import synthetic_factors as sf
  recs = sf.stack([world_record(i, world_cfg) for i in range(num)])
  _, reg, _ = targets(recs, np)
  reg = np.asarray(reg, np.float64)
  return reg.mean(0).astype(np.float32), np.maximum(reg.std(0), 1e-3).astype(np.float32)


def target_stats(config):
  """Mean and std [R] of the regression targets over the first `stats_samples` world draws."""
  from jaxface.data import synthetic_factors as sf
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


def evaluate(config, state, workdir):
  del workdir
  model = AttributeModel(config, {"params": state["params"], "batch_stats": state["batch_stats"]},
                         np.asarray(state["target_mean"]), np.asarray(state["target_std"]), int(state["step"]))
  return evaluate_model(model, config.eval.num_samples, config.eval.start, config.eval.batch_size)


# ------------------------------------------------------------------------------------------------- metrics

def r2_score(pred, true):
  """Coefficient of determination 1 - SS_res / SS_tot (not the squared correlation: a biased predictor loses)."""
  pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
  ss_tot = ((true - true.mean()) ** 2).sum()
  return float(1.0 - ((true - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def roc_auc(scores, labels):
  """Area under the ROC curve = P(score of a random positive > score of a random negative), ties counted 1/2
  (the Mann-Whitney U statistic from average ranks). nan when one class is absent."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
  n_pos, n_neg = int(labels.sum()), int((~labels).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores), np.float64)
  ranks[order] = np.arange(1, len(scores) + 1)
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  rank_sum = np.bincount(inverse, weights=ranks)
  ranks = (rank_sum / counts)[inverse]  # tied scores share their average rank
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics_from(outputs, glasses, reg, hair):
  """Held-out metrics from the model's outputs (`AttributeModel.outputs`) and the truth (`targets`)."""
  glasses, reg, hair = np.asarray(glasses) > 0.5, np.asarray(reg, np.float64), np.asarray(hair)
  out = {"glasses_accuracy": float(((outputs["glasses_logit"] > 0) == glasses).mean()),
         "glasses_auc": roc_auc(outputs["glasses_logit"], glasses),
         "glasses_rate": float(glasses.mean()),
         "hair_accuracy": float((outputs["hair_logits"].argmax(-1) == hair).mean()),
         "hair_lightness_r2": r2_score(outputs["hair_lightness"], hair_luma()[hair])}
  for i, k in enumerate(REGRESSION):
    out[f"{k}_r2"] = r2_score(outputs["regression"][:, i], reg[:, i])
  out["yaw_median_error_deg"] = float(np.median(np.abs(outputs["regression"][:, -1] - reg[:, -1])))
  return out


def evaluate_model(model, num, start=10 ** 9, batch_size=64):
  """Scores `num` held-out world samples (indices from `start`) with a loaded model; returns metrics_from."""
  from jaxface.data import synthetic
  from jaxface.data import synthetic_factors as sf
  if num < 1:
    raise ConfigError(f"the number of held-out samples must be >= 1, got {num}")
  data_cfg = model.config.data
  world = sf.as_world_config(data_cfg)
  res = int(data_cfg.resolution)
  render = jax.jit(lambda f: synthetic.render_batch(f, res, data_cfg)["image"] * 2.0 - 1.0)
  outs, truth = [], []
  for s in range(0, num, batch_size):
    n = min(batch_size, num - s)
    recs = sf.stack([world_record(start + s + min(i, n - 1), world) for i in range(batch_size)])
    images = render({k: recs[k] for k in synthetic.RENDER_KEYS})
    outs.append({k: np.asarray(v)[:n] for k, v in model.outputs(images).items()})
    truth.append([t[:n] for t in targets(recs, np)])
  outputs = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
  glasses, reg, hair = (np.concatenate(t) for t in zip(*truth))
  return dict(metrics_from(outputs, glasses, reg, hair), num_samples=int(num), start=int(start))


# ------------------------------------------------------------------------------------------------- loading

@dataclasses.dataclass
class AttributeModel:
  """A trained predictor. `outputs(images)` -> dict (glasses_logit [N], regression [N, R] in label units,
  hair_logits [N, 6], hair_lightness [N]); `scores(images)` -> [N, len(SCORE_NAMES)] in SCORE_NAMES order.
  Images [N, H, W, 3] in [-1, 1]; other sizes than the training resolution are resized to it."""
  config: ml_collections.ConfigDict
  variables: dict
  target_mean: np.ndarray
  target_std: np.ndarray
  step: int

  def __post_init__(self):
    from jaxface import config as config_lib
    self._outputs = _outputs_program(config_lib.to_json(self.config))
    self._stats = (jnp.asarray(self.target_mean), jnp.asarray(self.target_std))

  def outputs(self, images):
    return self._outputs(self.variables, *self._stats, jnp.asarray(images, jnp.float32))

  def scores(self, images):
    o = self.outputs(images)
    cols = {"glasses": o["glasses_logit"], "hair_lightness": o["hair_lightness"],
            **{k: o["regression"][:, i] for i, k in enumerate(REGRESSION)}}
    return np.asarray(jnp.stack([cols[k] for k in SCORE_NAMES], -1))


@functools.lru_cache(maxsize=8)
def _outputs_program(config_json):
  """One jitted forward per architecture (the training run's evaluation and every later load share it)."""
  import json
  config = ml_collections.ConfigDict(json.loads(config_json))
  net, res, luma = network(config, train=False), int(config.data.resolution), jnp.asarray(hair_luma())

  def outputs(variables, mean, std, images):
    if images.shape[1:3] != (res, res):
      images = jax.image.resize(images, (images.shape[0], res, res, 3), "linear", antialias=True)
    g_logit, reg, hair_logits = split_head(net.apply(variables, images))
    return {"glasses_logit": g_logit, "regression": mean + std * reg, "hair_logits": hair_logits,
            "hair_lightness": jax.nn.softmax(hair_logits, -1) @ luma}

  return jax.jit(outputs)


def load_attributes(workdir, step=None):
  """A trained predictor (`AttributeModel`) from a configs/attributes.py workdir: config.json + newest checkpoint."""
  if not os.path.isdir(workdir):
    raise CheckpointError(f"attribute predictor workdir {workdir!r} does not exist; pass the --workdir of a "
                          f"`python -m jaxface.main --config configs/attributes.py` run.")
  config, state, step = rnet_lib.read_checkpoint(workdir, step, trainer="attributes")
  variables = jax.tree.map(jnp.asarray, {"params": state["params"], "batch_stats": state["batch_stats"]})
  return AttributeModel(config, variables, np.asarray(state["target_mean"]), np.asarray(state["target_std"]), step)


def bootstrap_workdir(log=print):
  """The configs/attributes.py default run in $JAXFACE_CACHE/experts/attributes-<hash>, trained on first use."""
  from jaxface import config as config_lib
  from jaxface.train import disco_experts
  cfg = config_lib.load_config_file(disco_experts._spec_path(BOOTSTRAP_SPEC))  # pylint: disable=protected-access
  cfg.config_file = BOOTSTRAP_SPEC  # the cache key must not depend on where jaxface is checked out
  cfg.wandb.mode = "disabled"
  return disco_experts.trained_bootstrap(cfg, "attributes", BOOTSTRAP_SPEC, log)


def predictor(workdir=None):
  """The InterFaceGAN `world_attributes` predictor (scores in SCORE_NAMES order) of `workdir`, or of the bootstrap."""
  from jaxface.edit.generator_io import Predictor
  model = load_attributes(workdir if workdir else bootstrap_workdir())
  return Predictor(model.scores, SCORE_NAMES, batch_size=64)
