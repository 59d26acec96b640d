"""Every morphable face model jaxface reads, by name: `load_face_model("mp468" | "bfm_front" | "bfm09", ...)`.

The models themselves are render/mp468_bases.py (built in) and render/bfm.py (the Basel Face Model, user
supplied); the `FaceModel` pytree they all fill is render/face_model.py.
"""

from jaxface.errors import ConfigError
from jaxface.render import bfm, mp468_bases
from jaxface.render.face_model import FaceModel


def _cfg_get(cfg, key, default=None):
  if isinstance(cfg, dict):
    return cfg.get(key, default)
  return getattr(cfg, key, default) if cfg is not None else default


def load_face_model(cfg_or_name, **kwargs) -> FaceModel:
  """Loads a face model by name or from a config (`face_model.name`, `face_model.path`, ...).

  Names: "bfm_front" (Deep3DFaceRecon's BFM_model_front.mat, or DiscoFaceGAN's BFM_model_front_gan.mat),
  "bfm09" (converts the original 01_MorphableModel.mat + Exp_Pca.bin + std_exp.txt + BFM_front_idx.mat +
  BFM_exp_idx.mat + facemodel_info.mat found in `path`), "mp468" (the built-in synthetic model on the
  MediaPipe mesh). Extra keyword arguments (or config fields other than name) go to the loader.
  """
  if isinstance(cfg_or_name, str):
    name, opts = cfg_or_name, {}
  else:
    name = _cfg_get(cfg_or_name, "name")
    items = cfg_or_name.items() if hasattr(cfg_or_name, "items") else vars(cfg_or_name).items()
    opts = {k: v for k, v in items if k != "name" and v is not None}
  opts.update(kwargs)
  if name == "bfm_front":
    return bfm.load_bfm_front(**opts)
  if name == "bfm09":
    return bfm.load_bfm09(**opts)
  if name == "mp468":
    return mp468_bases.build_face_model(**opts)
  raise ConfigError(f"unknown face model {name!r}; set face_model.name to one of 'mp468' (built in), "
                    "'bfm_front' or 'bfm09' (Basel Face Model, user supplied via face_model.path).")
