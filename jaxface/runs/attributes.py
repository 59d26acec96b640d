"""A trained attribute predictor on the synthetic world (glasses, smile, hair colour, gender, age, skin tone,
key-light side, yaw): the network a config builds, the targets it regresses, and `load_attributes(workdir)` ->
`AttributeModel`, whose `scores` are the SCORE_NAMES columns InterFaceGAN's `world_attributes` predictor
(registered by jaxface/interfacegan.py) fits its boundaries to:
  glasses         the glasses logit (unbounded, so the top/bottom 2% are ranked, not saturated at 0/1)
  smile           predicted smile amount (0 .. 1)
  hair_lightness  expected luma of the hair colour under the softmax, Σ_c p_c·luma(HAIR_RGB[c]): the six colours
                  order along lightness, so one hyperplane can separate light from dark hair
  gender, age     predicted gender-like (bimodal around ±1) and age-like (0 young .. 1 old) factors
  skin_tone       predicted albedo lightness coefficient (tex[0]: dark < 0 < light)
  light_x         predicted horizontal component of the key light (synthetic_factors.attributes)
  yaw             predicted yaw in degrees
Training: jaxface/train/attributes.py.
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface import config as config_lib
from jaxface.data import synthetic
from jaxface.data import synthetic_factors as sf
from jaxface.errors import CheckpointError
from jaxface.models.rnet_small import NarrowRNet
from jaxface.runs.workdir import read_run


REGRESSION = ("smile", "gender", "age", "skin_tone", "light_x", "yaw")  # yaw last: it comes from the pose angles


SCORE_NAMES = ("glasses", "smile", "hair_lightness", "gender", "age", "skin_tone", "light_x", "yaw")


def num_hair():
  return len(sf.HAIR_COLOURS)


def hair_luma():
  """Rec. 601 luma of each hair colour's albedo [6]: the scale of the hair_lightness score."""
  return (sf.HAIR_RGB @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def network(config, train):
  m = config.model
  return NarrowRNet(1 + len(REGRESSION) + num_hair(), m.depth, m.width, train, jnp.dtype(config.compute_dtype))


def split_head(out):
  """Raw head output -> (glasses logit [N], standardised regressions [N, R], hair logits [N, 6])."""
  return out[:, 0], out[:, 1:1 + len(REGRESSION)], out[:, 1 + len(REGRESSION):]


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
  config, state, step = read_run(workdir, step, trainer="attributes")
  variables = jax.tree.map(jnp.asarray, {"params": state["params"], "batch_stats": state["batch_stats"]})
  return AttributeModel(config, variables, np.asarray(state["target_mean"]), np.asarray(state["target_std"]), step)


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
  return synthetic.SyntheticSource(world_cfg, size=2 ** 62)[index]
