"""The frozen-expert bootstrap, one registry: an empty synthetic expert workdir is trained into the cache.

A method whose config names an expert workdir it does not have (DiscoFaceGAN's priors, R-Net, identity net and
parser; identity mapping's R-Net and identity net; SofGAN's evaluation parser; InterFaceGAN's attribute
predictor) trains that expert here first, once per expert config:

  REGISTRY      name -> `Expert`: the method that trains it, its loader (workdir -> the trained expert) and,
                for experts no preset table names, its default config spec
  bootstrap     specs + overrides -> a trained cache workdir (`trained_bootstrap`, which every caller goes
                through, so equal configs share one trained expert)
  resolve       DiscoFaceGAN: every empty config.experts.<name> filled with its trained bootstrap

Which spec and overrides each preset uses is the method's config (configs/disco.py's bootstrap table, read
into config.experts.bootstrap); the cache directory is jaxface/runs/expert_cache.py's. The loaders are the
runs' own (jaxface/runs/<name>.py).
"""

import dataclasses
from typing import Callable

import jax
import ml_collections

from jaxface import assets
from jaxface import config as config_lib
from jaxface.errors import ConfigError
from jaxface.runs import attributes as attributes_run
from jaxface.runs import idnet as idnet_run
from jaxface.runs import parser as parser_run
from jaxface.runs import priors as priors_run
from jaxface.runs import rnet as rnet_run
from jaxface.runs.disco_expert_configs import NAMES, needs_parser
from jaxface.runs.expert_cache import _finished, _spec_path, bootstrap_config, cache_workdir
from jaxface.train import loop


@dataclasses.dataclass(frozen=True)
class Expert:
  trainer: str          # the method that trains it: configs/<trainer>.py
  load: Callable        # workdir -> the trained expert (jaxface/runs/<trainer>.py)
  spec: str = ""        # the default bootstrap config spec, for experts no method's preset table names


REGISTRY = {
    "priors": Expert("priors", priors_run.load_priors),
    "rnet": Expert("rnet", rnet_run.load_rnet),
    "idnet": Expert("idnet", idnet_run.load_idnet),
    "parser": Expert("parser", parser_run.load_parser),
    "attributes": Expert("attributes", attributes_run.load_attributes, "configs/attributes.py"),
}


def trained_bootstrap(cfg, name, spec, log=print):
  """The cache workdir ($JAXFACE_CACHE/experts/<name>-<hash of cfg>) of an expert trained with config `cfg`
  (from `bootstrap_config`), training it first when it is not there yet. Every method that needs a synthetic
  expert goes through here, so equal configs share one trained expert."""
  if name not in REGISTRY:
    raise ConfigError(f"no expert is called {name!r}; the bootstrapped experts are {', '.join(REGISTRY)}.")
  if cfg.get("trainer") != REGISTRY[name].trainer:
    raise ConfigError(f"the {name} expert's bootstrap spec {spec!r} is a config for trainer "
                      f"{cfg.get('trainer')!r}; it must be a configs/{REGISTRY[name].trainer}.py preset.")
  workdir = cache_workdir(cfg, name)
  if not _finished(workdir, cfg.total_steps) and jax.process_count() > 1:
    raise ConfigError(f"expert {name!r} is not trained yet and multi-host runs do not bootstrap experts; train it "
                      f"once (python -m jaxface.main --config {spec} ...) and pass its workdir in the config.")

  def train():
    log(f"[experts] training the {name} bootstrap ({cfg.total_steps} steps of {spec}) into {workdir}")
    loop.train(cfg, workdir)

  key = workdir.rsplit("-", 1)[-1]
  assets.build_once(f"experts-{name}-{key}", lambda: _finished(workdir, cfg.total_steps), train)
  if not _finished(workdir, cfg.total_steps):
    # A SIGTERM during the bootstrap saves its checkpoint and ends that training early; an expert cut short must
    # not be trained against (or measure anything) as if it were finished.
    raise ConfigError(f"the {name} expert's bootstrap in {workdir} stopped before its {cfg.total_steps} steps "
                      f"(interrupted); rerun the same command to resume it from its last checkpoint.")
  return workdir


def bootstrap(name, spec=None, overrides=None, world=None, seed=None, log=print):
  """The trained cache workdir of expert `name` from `spec` (default: the registry's) with `overrides`
  ("group/field": value), in the synthetic world `world` (a data config; default: the spec's own)."""
  spec = spec or REGISTRY[name].spec
  if world is None:  # the spec's own world and seed: the config file exactly as written
    cfg = config_lib.load_config_file(_spec_path(spec))
    cfg.config_file = spec  # the cache key must not depend on where jaxface is checked out
    cfg.wandb.mode = "disabled"
    return trained_bootstrap(cfg, name, spec, log)
  shim = ml_collections.ConfigDict(dict(seed=seed, data=dict(world), experts=dict(
      bootstrap={name: spec, f"{name}_overrides": dict(overrides or {})})))
  return trained_bootstrap(bootstrap_config(shim, name), name, spec, log)


def preset_table(preset, resolution):
  """configs/disco.py's bootstrap specs and overrides of `preset` at `resolution` (config.experts.bootstrap)."""
  return config_lib.load_config_file(_spec_path(f"configs/disco.py:{preset},res={resolution}")).experts.bootstrap


def resolve(config, log=print):
  """Fills every empty synthetic expert workdir in config.experts with a trained bootstrap in the cache,
  training the ones that are not there yet. Returns the config (edited in place)."""
  if config.experts.source != "synthetic":
    return config
  for name in NAMES:
    if config.experts[name] or (name == "parser" and not needs_parser(config)):
      continue
    config.experts[name] = trained_bootstrap(bootstrap_config(config, name), name, config.experts.bootstrap[name],
                                             log)
  return config
