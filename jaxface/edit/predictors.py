"""The attribute predictors InterFaceGAN scores and edits with.

Predictor: anything with `names` (attribute names) that maps images [N, H, W, 3] float in [-1, 1] to scores
[N, len(names)]. `get_predictor(spec)` takes a registry name (`register_predictor`), `NAME@PATH` for a
registered predictor that loads from a path (e.g. `world_attributes@workdirs/attributes`), or
`package.module:attr`, where attr is a `Predictor`, a callable with an `attribute_names` attribute, or a
zero-argument factory that returns a `Predictor` (so a predictor can load its weights lazily). `@` cannot occur
in a registry name or a Python module path, so `NAME@PATH` never reads as `module:attr`, whatever PATH holds.
`A+B+...` joins several into one predictor: A's attributes, then those of B (and so on) that the ones before it
lack (an attribute two of them score is read by the first); a '+' inside a path cannot be given this way.

Registered here: brightness, rgb, toy_colour (pixel statistics for tests and smoke runs). The CLI
(jaxface/interfacegan.py) registers world_attributes, the synthetic world's attribute predictor
(jaxface/runs/attributes.py), since without @PATH it trains the configs/attributes.py bootstrap on first use.
The generators these predictors score come from jaxface/runs/latent_generators.py (a StyleGAN2 or a
DiscoFaceGAN).
"""

import importlib
import os
from typing import Callable, NamedTuple, Sequence

import numpy as np

from jaxface.errors import UserError


# ---------------------------------------------------------------------------------------------------------------
# Attribute predictors

class Predictor(NamedTuple):
  fn: Callable  # images [N, H, W, 3] float in [-1, 1] -> scores [N, len(names)]
  names: Sequence[str]
  batch_size: int = 64

  def __call__(self, images):
    images = np.asarray(images, np.float32)
    out = []
    for i in range(0, images.shape[0], self.batch_size):
      batch = images[i:i + self.batch_size]
      s = np.asarray(self.fn(batch), np.float64)
      if s.ndim == 1 and len(self.names) == 1:
        s = s[:, None]
      if s.shape != (batch.shape[0], len(self.names)):
        raise UserError(f"the attribute predictor returned scores of shape {s.shape} for {batch.shape[0]} images; "
                        f"a predictor must return [N, {len(self.names)}], one column per attribute "
                        f"{list(self.names)}.")
      out.append(s)
    return np.concatenate(out, 0) if out else np.zeros((0, len(self.names)))

  def index(self, attribute):
    if attribute not in self.names:
      raise UserError(f"unknown attribute {attribute!r}; this predictor scores: {', '.join(self.names)}.")
    return list(self.names).index(attribute)


_REGISTRY = {}
_TAKES_PATH = set()


def register_predictor(name, factory, takes_path=False):
  """Makes `--predictor NAME` build `factory()` (a callable returning a Predictor); with takes_path, also makes
  `--predictor NAME@PATH` build `factory(PATH)`."""
  if not name or "@" in name or ":" in name:
    raise ValueError(f"predictor name {name!r} must be non-empty and contain neither '@' nor ':'")
  _REGISTRY[name] = factory
  if takes_path:
    _TAKES_PATH.add(name)


def _brightness(images):
  return images.mean(axis=(1, 2, 3))[:, None]


def _toy_colour(images):
  """Three simple pixel statistics, for tests and smoke runs: brightness, warmth (red minus blue), and how much
  brighter the top half is than the bottom half."""
  h = images.shape[1] // 2
  mean = images.mean(axis=(1, 2))
  return np.stack([mean.mean(-1), mean[:, 0] - mean[:, 2],
                   images[:, :h].mean(axis=(1, 2, 3)) - images[:, h:].mean(axis=(1, 2, 3))], -1)


register_predictor("brightness", lambda: Predictor(_brightness, ("brightness",)))
register_predictor("rgb", lambda: Predictor(lambda x: x.mean(axis=(1, 2)), ("red", "green", "blue")))
register_predictor("toy_colour", lambda: Predictor(_toy_colour, ("brightness", "warmth", "top_bottom")))


def predictor_names():
  return sorted(_REGISTRY)


def combine(parts):
  """Predictors -> one Predictor: every attribute of the first, then each later one's attributes that the ones
  before it lack (the first to score an attribute reads it)."""
  names, picks = [], []
  for p in parts:
    cols = [i for i, n in enumerate(p.names) if n not in names]
    names += [p.names[i] for i in cols]
    picks.append((p, cols))

  def fn(images):
    return np.concatenate([p(images)[:, cols] for p, cols in picks if cols], -1)

  return Predictor(fn, tuple(names), batch_size=min(p.batch_size for p in parts))


def get_predictor(spec):
  """A registry name, `NAME@PATH`, `package.module:attribute`, or several of them joined by '+' -> Predictor
  (see module docstring)."""
  if "+" in spec:
    parts = spec.split("+")
    if not all(parts):
      raise UserError(f"--predictor {spec!r}: an empty name around '+'; join predictors as A+B, e.g. "
                      f"world_coefficients+world_attributes.")
    return combine([get_predictor(part) for part in parts])
  name, at, path = spec.partition("@")
  if spec in _REGISTRY:
    obj = _REGISTRY[spec]()
  elif at and name in _REGISTRY:
    if name not in _TAKES_PATH:
      raise UserError(f"--predictor {spec!r}: predictor {name!r} takes no path; pass just {name!r}. Predictors "
                      f"that load from a path: {', '.join(sorted(_TAKES_PATH)) or 'none'}.")
    if not path or not os.path.exists(path):
      raise UserError(f"--predictor {spec!r}: path {path!r} does not exist; pass {name}@DIR with the --workdir of "
                      f"a trained predictor run.")
    obj = _REGISTRY[name](path)
  elif at:
    raise UserError(f"--predictor {spec!r}: unknown predictor {name!r} before '@'; registered: "
                    f"{', '.join(predictor_names())}.")
  elif ":" in spec:
    module_name, _, attr = spec.partition(":")
    try:
      module = importlib.import_module(module_name)
    except ImportError as e:
      raise UserError(f"--predictor {spec!r}: cannot import {module_name!r} ({e}); put it on PYTHONPATH.") from None
    if not hasattr(module, attr):
      raise UserError(f"--predictor {spec!r}: module {module_name!r} has no attribute {attr!r}.")
    obj = getattr(module, attr)
    if not isinstance(obj, Predictor) and callable(obj):
      names = getattr(obj, "attribute_names", None)
      obj = Predictor(obj, tuple(names)) if names is not None else obj()
  else:
    raise UserError(f"unknown predictor {spec!r}; use one of {', '.join(predictor_names())}, NAME@PATH or "
                    f"package.module:attribute.")
  if not isinstance(obj, Predictor):
    raise UserError(f"--predictor {spec!r} gave a {type(obj).__name__}, not a jaxface.edit.predictors.Predictor; "
                    f"give a Predictor, a callable with `attribute_names`, or a factory returning a Predictor.")
  if not obj.names or len(set(obj.names)) != len(obj.names):
    raise UserError(f"--predictor {spec!r} has attribute names {list(obj.names)}; they must be non-empty and unique.")
  return obj
