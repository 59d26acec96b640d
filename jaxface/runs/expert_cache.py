"""Where a bootstrapped expert lives: the config an empty expert workdir is trained with, and its cache workdir.

`bootstrap_config(config, name)` builds the expert config from the spec and overrides a method's config names
(config.experts.bootstrap.<name> and <name>_overrides) in that run's synthetic world; `cache_workdir(cfg, name)`
is $JAXFACE_CACHE/experts/<name>-<hash of the whole expert config>, so equal configs share one trained expert
and another world or preset gets its own. Training it is jaxface/train/experts.py; this half only names it,
so evaluators and loaders can find a finished one without importing the trainers.
"""

import hashlib
import os

from jaxface import assets
from jaxface import config as config_lib
from jaxface.errors import ConfigError


WORLD_KEYS = ("num_identities", "max_yaw", "max_pitch", "max_roll", "glasses_prob", "level", "focal")


def _set(config, dotted, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise ConfigError(f"bootstrap override {dotted!r} names no field of that expert config.")
  node[leaf] = value


def bootstrap_config(config, name):
  """The expert config `name` is trained with when its workdir is empty: the preset named in
  config.experts.bootstrap.<name>, its overrides, and the disco run's synthetic world."""
  b = config.experts.bootstrap
  cfg = config_lib.load_config_file(_spec_path(b[name]))
  for key, value in dict(b[f"{name}_overrides"]).items():
    _set(cfg, key.replace("/", "."), value)
  for key in WORLD_KEYS:
    cfg.data[key] = config.data[key]
  cfg.wandb.mode = "disabled"
  cfg.seed = config.seed
  return cfg


def _spec_path(spec):
  """A bootstrap config spec ('configs/rnet.py:small'), found relative to the jaxface checkout when the
  working directory has no such file."""
  path, _, arg = spec.partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(os.path.dirname(root), path)
  return f"{path}:{arg}" if arg else path


def _cache_root():
  return os.path.join(assets.cache_dir(), "experts")


def _finished(workdir, steps):
  ckpt = os.path.join(workdir, "checkpoints", str(steps))
  return os.path.isdir(ckpt) and os.path.isfile(os.path.join(workdir, "config.json"))


def cache_workdir(cfg, name):
  """$JAXFACE_CACHE/experts/<name>-<hash of cfg>: the workdir the bootstrap with config `cfg` trains into."""
  key = hashlib.sha256(config_lib.to_json(cfg).encode()).hexdigest()[:12]
  return os.path.join(_cache_root(), f"{name}-{key}")


def finished(cfg, name):
  """The cache workdir of a finished bootstrap with config `cfg`, or None when it is not trained (yet)."""
  workdir = cache_workdir(cfg, name)
  return workdir if _finished(workdir, cfg.total_steps) else None
