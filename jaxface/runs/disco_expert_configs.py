"""Which frozen experts a DiscoFaceGAN run uses and what they were trained as: the expert configs (recorded in the
run's own config by `record_configs`, so a checkpoint rebuilds them without the expert workdirs), the face
model, when the parser is needed, and the checks that the experts match the run's world and λ layout. Loading
them into the frozen pytree and the functions of it: runs/disco_experts.py.
"""

import functools
import json
import os

import jax
import ml_collections

from jaxface.errors import ConfigError
from jaxface.render import face_models
from jaxface.runs import priors as priors_lib
from jaxface.runs import rnet as rnet_lib


NAMES = ("priors", "rnet", "idnet", "parser")


def needs_parser(config):
  """The parser is loaded only when stage 2 runs with a hair term."""
  s = config.schedule
  kimg_total = config.total_steps * config.batch_size / 1000.0
  return config.loss.light_hair > 0 and config.loss.w_gamma_change > 0 and s.stage2_kimg < kimg_total


@functools.lru_cache(maxsize=16)
def _workdir_config(workdir, trainer):
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ConfigError(f"{workdir!r} is not a training workdir (no config.json); pass the --workdir of a finished "
                      f"configs/{trainer}.py run.")
  with open(path) as f:
    cfg = ml_collections.ConfigDict(json.load(f))
  if cfg.get("trainer") != trainer:
    raise ConfigError(f"{workdir!r} was trained by {cfg.get('trainer')!r}, not {trainer!r}; pass the workdir of a "
                      f"configs/{trainer}.py run.")
  return cfg


def expert_config(config, name):
  """The config an expert was trained with: the copy `record_configs` put in this run's config (so a run is
  self-contained), else its workdir's config.json."""
  recorded = json.loads(config.experts.get("configs", "") or "{}")
  if name in recorded:
    return ml_collections.ConfigDict(recorded[name])
  return _workdir_config(os.path.abspath(config.experts[name]), name)


def record_configs(config):
  """Copies the training configs of the jaxface-trained experts this run uses into config.experts.configs: the
  run's config.json then rebuilds their networks (Generator.load, evaluation) without the expert workdirs."""
  names = [n for n in ("priors", "rnet", "idnet", "parser")
           if config.experts[n] and (config.experts.source == "synthetic" or n in ("priors", "parser"))
           and (n != "parser" or needs_parser(config))]
  config.experts.configs = json.dumps({n: _workdir_config(os.path.abspath(config.experts[n]), n).to_dict()
                                       for n in names}, sort_keys=True)
  return config


def check_world(config, name):
  """A synthetic expert must come from the same world the generator trains on (same mesh level and camera)."""
  cfg = expert_config(config, name)
  for key in ("level", "focal"):
    if float(cfg.data[key]) != float(config.data[key]):
      raise ConfigError(f"expert {name} ({config.experts[name]}) was trained with data.{key}={cfg.data[key]}, "
                        f"this run uses {config.data[key]}; use matching settings or another expert.")
  return cfg


def user_file(config, key, what):
  path = config.experts[key]
  if not path:
    raise ConfigError(f"configs/disco.py with experts.source=bfm needs {what}: set --config.experts.{key}=PATH.")
  if not os.path.exists(path):
    raise ConfigError(f"--config.experts.{key}={path} does not exist; it should point at {what}.")
  return path


@functools.lru_cache(maxsize=4)
def _face_model(source, path, level):
  with jax.ensure_compile_time_eval():  # never cache tracers, whoever calls first
    return _build_face_model(source, path, level)


def _build_face_model(source, path, level):
  if source == "synthetic":
    return rnet_lib.face_model(level)
  return face_models.load_face_model("bfm_front", path=path)


def face_model(config):
  if config.experts.source == "bfm":
    return _face_model("bfm", user_file(config, "face_model", "BFM_model_front.mat (Deep3DFaceRecon) or "
                                         "BFM_model_front_gan.mat (DiscoFaceGAN)"), 0)
  return _face_model("synthetic", "", int(config.data.level))


def lambda_dim(config):
  """Size of λ (id + tex + exp + angle + gamma) from the priors' block sizes."""
  dims = priors_lib.face_dims(expert_config(config, "priors"))
  return sum(int(dims[b]) for b in BLOCKS)


def check_layout(config, frozen):
  fm = frozen["face"]
  dims = priors_lib.face_dims(expert_config(config, "priors"))
  want = dict(id=fm.n_id, tex=fm.n_tex, exp=fm.n_exp, angle=3, gamma=27)
  bad = {k: (dims.get(k), v) for k, v in want.items() if int(dims.get(k, -1)) != v}
  if bad:
    raise ConfigError(f"the priors run {config.experts.priors} models blocks {dims}, the face model has {want}; "
                      f"train the priors for this face model (mismatch (priors, face): {bad}).")


BLOCKS = ("id", "tex", "exp", "angle", "gamma")  # λ layout fed to the generator (DiscoFaceGAN: 254 = 80+80+64+3+27)
