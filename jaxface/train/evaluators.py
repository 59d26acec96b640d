"""The evaluators a run calls when its training ends, named in the config (big_vision style).

`config.evals` names modules of jaxface/eval/ (e.g. ("recon",) for jaxface/eval/recon.py); each has
`run(config, state, workdir) -> dict` and the loop merges their dicts into workdir/eval/step_N.json. A config
without the field (a run's config.json from before it existed, or an expert config whose hash names its cache
directory and so must not change) gets its method's `EVALS`. The loop imports an evaluator by its name when
the run ends, so no trainer imports jaxface/eval/.
"""

import importlib

from jaxface.errors import ConfigError


def evaluators(config, method=None):
  """The evaluator names of `config`: config.evals, else the method's EVALS."""
  names = config.get("evals", None)
  if names is None:
    if method is None:
      method = importlib.import_module(f"jaxface.train.{config.trainer}")
    names = getattr(method, "EVALS", ())
  return tuple(names)


def evaluator(name):
  """jaxface/eval/<name>.py's `run`."""
  try:
    module = importlib.import_module(f"jaxface.eval.{name}")
  except ModuleNotFoundError as e:
    if e.name == f"jaxface.eval.{name}":
      raise ConfigError(f"config.evals names {name!r}, which is no module of jaxface/eval/.") from None
    raise
  if not hasattr(module, "run"):
    raise ConfigError(f"config.evals names {name!r}, but jaxface/eval/{name}.py has no run(config, state, workdir).")
  return module.run


def run(config, state, workdir, method=None):
  """Every evaluator of `config` on the final `state`, their results merged into one dict."""
  results = {}
  for name in evaluators(config, method):
    results.update(evaluator(name)(config, state, workdir) or {})
  return results
