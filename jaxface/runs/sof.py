"""A trained semantic occupancy field (SofGAN's geometry): the network a config builds, label and logit
renders of a code from a camera, and `load_sof(workdir)` -> `SOFModel`. Training: jaxface/train/sof.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface.data import synthetic
from jaxface.data import synthetic_factors as sf
from jaxface.models.sof import SOF
from jaxface.render import raymarch
from jaxface.runs.workdir import read_run


def num_classes():
  return len(synthetic.CLASSES)


def network(config):
  m = config.model
  return SOF(num_instances=config.multiview.num_instances, num_classes=num_classes(), latent_dim=m.latent_dim,
             width=m.width, hyper_hidden=m.hyper_hidden, head_hidden=m.head_hidden, step_hidden=m.step_hidden,
             steps=m.steps, radius=m.radius, center=tuple(float(c) for c in m.center), jitter=m.jitter)


def rays_of(batch, orthographic):
  """Per-element rays of a batch: origins, dirs [B,N,3]."""
  return jax.vmap(lambda uv, k, c: raymarch.rays(uv, k, c, orthographic))(batch["uv"], batch["k"], batch["c2w"])


def render_labels(net, params, z, c2w, k, res, orthographic=False):
  """Argmax label maps [B, R, R] of codes z [B, latent] from cameras c2w [B, 4, 4] (jittable)."""
  return render_logits(net, params, z, c2w, k, res, orthographic).argmax(-1).reshape(z.shape[0], res, res)


def render_logits(net, params, z, c2w, k, res, orthographic=False):
  """Logits [B, R*R, C] of full views (no jitter)."""
  uv = jnp.asarray(raymarch.pixel_grid(res, res))
  k = jnp.asarray(k, jnp.float32)
  origins, dirs = jax.vmap(lambda c: raymarch.rays(uv, k, c, orthographic))(c2w)
  return net.apply({"params": params}, z, origins, dirs, c2w, None, method=SOF.render)["logits"]


@dataclasses.dataclass
class SOFModel:
  """A trained SOF: frozen parameters, the learned code table and its training data's camera set-up.
  `labels(z, c2w)` renders label maps [B, R, R] at the training resolution (or `res`)."""
  config: ml_collections.ConfigDict
  params: dict
  step: int

  def __post_init__(self):
    self.net = network(self.config)
    self.num_classes = num_classes()
    self.res = int(self.config.data.resolution)
    self.orthographic = bool(self.config.multiview.orthographic)
    self._render = jax.jit(lambda p, z, c, k, res: render_logits(self.net, p, z, c, k, res, self.orthographic),
                           static_argnums=(4,))

  @property
  def codes(self):
    return np.asarray(self.params["codes"])

  def intrinsics(self, res=None):
    res = res or self.res
    f = sf.as_world_config(self.config.data).focal * res / 256.0
    return np.array([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1]], np.float32)

  def logits(self, z, c2w, res=None, chunk=8):
    """Logits [B, R, R, C] for codes [B, latent] and cameras [B, 4, 4], rendered `chunk` views at a time."""
    res = res or self.res
    z, c2w = np.asarray(z, np.float32), np.asarray(c2w, np.float32)
    m = self.config.model
    raymarch.check_camera(c2w, m.radius, tuple(m.center))  # a camera inside or facing away from the head: UserError
    outs = []
    for s in range(0, len(z), chunk):
      zc, cc = z[s:s + chunk], c2w[s:s + chunk]
      pad = chunk - len(zc)  # fixed shapes: one compile per (chunk, res)
      zc = np.concatenate([zc, np.repeat(zc[-1:], pad, 0)])
      cc = np.concatenate([cc, np.repeat(cc[-1:], pad, 0)])
      out = np.asarray(self._render(self.params, zc, cc, self.intrinsics(res), res))
      outs.append(out[:chunk - pad])
    return np.concatenate(outs).reshape(len(z), res, res, -1)

  def labels(self, z, c2w, res=None):
    return self.logits(z, c2w, res).argmax(-1)


def load_sof(workdir, step=None):
  """A trained SOF (`SOFModel`) from a configs/sof.py workdir: config.json + the newest checkpoint."""
  config, state, step = read_run(workdir, step, trainer="sof")
  return SOFModel(config, jax.tree.map(jnp.asarray, state["params"]), step)
