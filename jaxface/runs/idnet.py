"""A trained synthetic identity net: the ResNet + linear embedding a config builds, its embedding function,
`load_idnet(workdir)`, and `identity_sample` (one render of identity i, the pairs its training and verification
use). Training: jaxface/train/idnet.py.
"""

import jax.numpy as jnp

from jaxface.data import synthetic_factors as sf
from jaxface.errors import CheckpointError, ConfigError
from jaxface.losses import identity as id_losses
from jaxface.models import resnet
from jaxface.models.idnet import SyntheticIdNet
from jaxface.runs.workdir import read_run


def network(config, train=False):
  m = config.model
  if m.depth not in resnet.STAGES:
    raise ConfigError(f"config.model.depth={m.depth}; choose one of {sorted(resnet.STAGES)}.")
  return SyntheticIdNet(m.depth, m.embed, train, jnp.dtype(config.compute_dtype))


def embed_fn(config, params, batch_stats):
  """Pure function images [B, R, R, 3] in [-1, 1] -> unit embeddings [B, E] (frozen, eval-mode BatchNorm)."""
  net = network(config, train=False)
  variables = {"params": params, "batch_stats": batch_stats}
  return lambda images: id_losses.l2_normalize(net.apply(variables, images))


def load_idnet(workdir, step=None):
  """Frozen identity net of a `configs/idnet.py` training: {"embed": fn images -> unit [B, E], "resolution": R,
  "step": step}. Images are [B, R, R, 3] in [-1, 1], framed like the synthetic world's renders."""
  config, state, step = read_run(workdir, step)
  if config.get("trainer") != "idnet":
    raise CheckpointError(f"{workdir} was trained by {config.get('trainer')!r}, not the idnet method; pass the "
                          f"workdir of a configs/idnet.py run.")
  return {"embed": embed_fn(config, state["params"]["net"], state["batch_stats"]),
          "resolution": int(config.data.resolution), "step": step}


def identity_sample(identity, index, world):
  """Factors of sample `index` (expression, pose, light, background...) worn by identity `identity`."""
  f = sf.sample_factors(index, world)
  f.update(sf.identity_factors(identity, world))
  return f
