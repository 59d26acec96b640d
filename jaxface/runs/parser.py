"""A trained face parser: the network a config builds, `load_parser(workdir)` -> `ParserModel` (images -> the
synthetic world's part labels) and `hair_mask`. Training: jaxface/train/parser.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from jaxface.data import synthetic
from jaxface.models.parser import Parser
from jaxface.runs.workdir import read_run


def num_classes():
  return len(synthetic.CLASSES)


def network(config, train):
  m = config.model
  return Parser(num_classes=num_classes(), depth=m.depth, encoder_width=m.encoder_width, width=m.width,
                train=train, dtype=jnp.dtype(config.compute_dtype))


@dataclasses.dataclass
class ParserModel:
  """A trained parser: `logits(images)`, `labels(images)` (argmax) and `probs(images)`; images [N, R, R, 3] in
  [0, 1] at the training resolution."""
  config: ml_collections.ConfigDict
  variables: dict
  step: int

  def __post_init__(self):
    net = network(self.config, train=False)
    self.num_classes = num_classes()
    self._logits = jax.jit(lambda v, x: net.apply(v, x))

  def logits(self, images):
    return self._logits(self.variables, images)

  def labels(self, images):
    return jnp.argmax(self.logits(images), -1)

  def probs(self, images):
    return jax.nn.softmax(self.logits(images), -1)


def hair_mask(model, images):
  """DiscoFaceGAN's use of its parser: the hair-class probability [N, R, R]."""
  return model.probs(images)[..., list(synthetic.CLASSES).index("hair")]


def load_parser(workdir, step=None):
  """A trained parser (`ParserModel`) from a configs/parser.py workdir: config.json + the newest checkpoint."""
  config, state, step = read_run(workdir, step, trainer="parser")
  variables = jax.tree.map(jnp.asarray, {"params": state["params"], "batch_stats": state["batch_stats"]})
  return ParserModel(config, variables, step)
