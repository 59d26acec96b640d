"""The frozen networks of identity mapping: identity encoder, landmark network, pose estimator.

`load(config)` reads them into a numpy pytree (state["frozen"] besides the generator); `functions(config)` gives
pure functions of (frozen, images [B, R, R, 3] in [-1, 1]):
  identity(frozen, x)  -> unit embeddings [B, E]
  landmarks(frozen, x) -> points [B, K, 2] in pixels of x's frame (the loss's K; the jaw/face outline dropped, as
                          the original drops its 17 jaw points: it carries face shape, i.e. identity)
  pose(frozen, x)      -> (pitch, yaw, roll) [B, 3] in radians, from the R-Net (metrics; always loaded)
Choices (config.experts): identity synthetic (configs/idnet.py workdir) | dlib (registry descriptor on a loose
0.1-0.9 centre crop, the original's framing for its VGGFace2 encoder) | arcface (user weights, same crop at 112);
landmarks rnet (the synthetic R-Net's 68 points) | mediapipe (registry 468-point mesh on the whole frame at 192).
"""

import functools
import json
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface import assets
from jaxface.convert import unflatten
from jaxface.errors import ConfigError
from jaxface.losses import identity as id_losses
from jaxface.losses import recon as recon_losses
from jaxface.models import idnet as idnet_models
from jaxface.models import landmarks as lm_lib
from jaxface.render import face_model as fm_lib
from jaxface.render import mp468
from jaxface.runs import idnet as idnet_lib
from jaxface.runs import rnet as rnet_lib
from jaxface.runs.workdir import read_run

IDENTITIES = ("synthetic", "dlib", "arcface")
LANDMARKS = ("rnet", "mediapipe")


class Experts(NamedTuple):
  identity: Callable
  landmarks: Callable
  pose: Callable
  id_dim: int


def validate(config):
  e = config.experts
  if e.identity not in IDENTITIES:
    raise ConfigError(f"experts.identity={e.identity!r}; use one of {', '.join(IDENTITIES)}.")
  if e.landmarks not in LANDMARKS:
    raise ConfigError(f"experts.landmarks={e.landmarks!r}; use one of {', '.join(LANDMARKS)}.")
  if e.identity == "arcface" and not e.idnet:
    raise ConfigError("experts.identity='arcface' needs your ArcFace weights: --config.experts.idnet=FILE "
                      "(insightface .onnx or PyTorch .pth).")


def resize(images, size):
  if images.shape[1] == size and images.shape[2] == size:
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[-1]), "linear", antialias=True)


def centre_crop(images, lo=0.1, hi=0.9):
  r = images.shape[1]
  a, b = int(lo * r), int(hi * r)
  return images[:, a:b, a:b]


@functools.lru_cache(maxsize=4)
def _rnet_config(workdir):
  config, _, _ = read_run(workdir, trainer="rnet")
  return config


def load(config):
  """The frozen pytree {"idnet": ..., "rnet": ..., "mediapipe": ...} (numpy leaves)."""
  with jax.ensure_compile_time_eval():
    return _load(json.dumps(config.experts.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=2)
def _load(experts_json):
  e = ml_collections.ConfigDict(json.loads(experts_json))
  frozen = {}
  _, st, _ = read_run(e.rnet, trainer="rnet")
  frozen["rnet"] = {"variables": {"params": st["params"], "batch_stats": st["batch_stats"]},
                    "mean": st["coeff_mean"], "std": st["coeff_std"]}
  if e.identity == "synthetic":
    cfg, st, _ = read_run(e.idnet)
    if cfg.get("trainer") != "idnet":
      raise ConfigError(f"experts.idnet={e.idnet!r} was trained by {cfg.get('trainer')!r}; pass a configs/idnet.py "
                        f"workdir.")
    frozen["idnet"] = {"params": st["params"]["net"], "batch_stats": st["batch_stats"]}
  elif e.identity == "dlib":
    flat = assets.load_params("dlib_resnet")
    frozen["idnet"] = {"params": unflatten({k: v for k, v in flat.items() if not k.startswith("__")})}
  else:
    flat = assets.load_params("arcface", e.idnet)
    frozen["idnet"] = {"params": unflatten({k: v for k, v in flat.items() if not k.startswith("__")})}
  if e.landmarks == "mediapipe":
    params, _ = lm_lib.split(assets.load_params("face_landmark"))
    frozen["mediapipe"] = params
  return jax.tree.map(np.asarray, frozen)


def functions(config):
  with jax.ensure_compile_time_eval():  # the cached constants (face model) must be concrete even under a trace
    return _functions(json.dumps(config.experts.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=4)
def _functions(experts_json):
  e = ml_collections.ConfigDict(json.loads(experts_json))

  rcfg = _rnet_config(e.rnet)
  rnet = rnet_lib.network(rcfg, train=False)
  r_size, order = int(rcfg.data.resolution), rcfg.model.order
  fm, cam, lay = rnet_lib.face_model(rcfg.data.level), rnet_lib.camera(rcfg.data), rnet_lib.layout()
  full = fm_lib.CoeffLayout(n_id=lay.n_id, n_exp=lay.n_exp, n_tex=lay.n_tex)

  def rnet_coeffs(frozen, images):
    r = frozen["rnet"]
    x = resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), r_size) * 0.5 + 0.5  # R-Net takes [0, 1] RGB
    return fm_lib.split_coeffs(r["mean"] + r["std"] * rnet.apply(r["variables"], x).astype(jnp.float32), full, order)

  def pose(frozen, images):
    return rnet_coeffs(frozen, images)["angle"]

  if e.landmarks == "rnet":
    def landmarks(frozen, images):
      c = rnet_coeffs(frozen, images)
      lm = jax.vmap(lambda ci: recon_losses.landmark_points(fm, ci, cam, r_size))(c)
      return lm[:, 17:] * (images.shape[1] / r_size)  # drop the 17 jaw points
  else:
    _, graph = lm_lib.split(assets.load_params("face_landmark"))
    keep = np.setdiff1d(np.arange(lm_lib.NUM_LANDMARKS), np.asarray(mp468.FACE_OVAL))

    def landmarks(frozen, images):
      x = resize(jnp.clip(images.astype(jnp.float32), -1.0, 1.0), 192) * 0.5 + 0.5
      lm, _ = lm_lib.face_mesh(frozen["mediapipe"], graph, x)
      return lm[:, keep, :2] * (images.shape[1] / 192.0)

  if e.identity == "synthetic":
    icfg, _, _ = read_run(e.idnet)
    net, size, id_dim = idnet_lib.network(icfg, train=False), int(icfg.data.resolution), int(icfg.model.embed)

    def raw_identity(frozen, x):  # the synthetic net sees the whole frame, as it was trained
      return net.apply(frozen["idnet"], resize(x, size))
  elif e.identity == "dlib":
    net, id_dim = idnet_models.DlibResNet(), 128

    def raw_identity(frozen, x):
      return net.apply(frozen["idnet"], resize(centre_crop(x), 150) * 127.5 + 127.5)
  else:
    net, _ = idnet_models.arcface_from_flat(assets.load_params("arcface", e.idnet))
    id_dim = 512

    def raw_identity(frozen, x):
      return net.apply(frozen["idnet"], resize(centre_crop(x), 112))

  def identity(frozen, images):
    return id_losses.l2_normalize(raw_identity(frozen, jnp.clip(images.astype(jnp.float32), -1.0, 1.0)))

  return Experts(identity=identity, landmarks=landmarks, pose=pose, id_dim=id_dim)
