"""A trained R-Net: the synthetic face model and camera its coefficients live in, the network a config builds,
and `load_rnet(workdir)` -> `RNetModel` (images -> coefficients and landmarks). Coefficients are laid out as the
FaceModel layout of mp468_bases.build_face_model(level) in `config.model.order` ("disco" = [id, tex, exp, angle,
gamma, trans], what DiscoFaceGAN's R-Net and VAEs use). Training: jaxface/train/rnet.py.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface.data import synthetic_factors as sf
from jaxface.data import synthetic_render as sr
from jaxface.losses import recon
from jaxface.models.rnet import RNet
from jaxface.models.rnet_small import NarrowRNet
from jaxface.render import face_model as fm_lib
from jaxface.render import mp468_bases
from jaxface.runs.workdir import read_run


GROUP_NAMES = ("id", "tex", "exp", "angle", "gamma", "trans")


@functools.lru_cache(maxsize=4)
def face_model(level):
  return mp468_bases.build_face_model(level=level, n_id=sf.N_ID, n_exp=sf.N_EXP, n_tex=sf.N_TEX)


def layout():
  return fm_lib.CoeffLayout(n_id=sf.N_ID, n_exp=sf.N_EXP, n_tex=sf.N_TEX)


def network(config, train):
  """models/rnet.RNet at the torchvision width 64; the narrow ResNet-layout variant below it."""
  dtype, n, depth = jnp.dtype(config.compute_dtype), layout().total, config.model.depth
  if config.model.width == 64:
    return RNet(num_coeffs=n, depth=depth, train=train, dtype=dtype)
  return NarrowRNet(num_coeffs=n, depth=depth, width=config.model.width, train=train, dtype=dtype)


def camera(data_cfg):
  return sr.camera(float(data_cfg.focal))


@dataclasses.dataclass
class RNetModel:
  """A trained R-Net: `coeffs(images)` -> flat coefficients; `predict(images)` -> (coefficient dict, landmarks)."""
  config: ml_collections.ConfigDict
  variables: dict
  coeff_mean: np.ndarray
  coeff_std: np.ndarray
  step: int

  def __post_init__(self):
    net = network(self.config, train=False)
    fm, cam, lay = face_model(self.config.data.level), camera(self.config.data), layout()
    res, order = self.config.data.resolution, self.config.model.order
    mean, std = jnp.asarray(self.coeff_mean), jnp.asarray(self.coeff_std)
    self.layout, self.order, self.face_model, self.camera = lay, order, fm, cam

    def coeffs(variables, images):
      return mean + std * net.apply(variables, images)

    def predict(variables, images):
      c = fm_lib.split_coeffs(coeffs(variables, images), lay, order)
      return c, jax.vmap(lambda x: recon.landmark_points(fm, x, cam, res))(c)

    self._coeffs, self._predict = jax.jit(coeffs), jax.jit(predict)

  def coeffs(self, images):
    """images [N, R, R, 3] RGB in [0, 1] -> [N, C] coefficients in `self.order`."""
    return self._coeffs(self.variables, images)

  def predict(self, images):
    return self._predict(self.variables, images)


def load_rnet(workdir, step=None):
  """A trained R-Net (`RNetModel`) from a configs/rnet.py workdir: config.json + the newest checkpoint."""
  config, state, step = read_run(workdir, step, trainer="rnet")
  variables = jax.tree.map(jnp.asarray, {"params": state["params"], "batch_stats": state["batch_stats"]})
  return RNetModel(config, variables, np.asarray(state["coeff_mean"]), np.asarray(state["coeff_std"]), step)
