"""What the InterFaceGAN CLIs edit and measure with: a trained jaxface generator and attribute predictors.

Generator: `load_generator(workdir)` reads `config.json` and the newest checkpoint of a StyleGAN2 run
(`python -m jaxface.main --config configs/stylegan2.py ...`) and keeps only the EMA generator and w_avg. Its
`synthesize(codes, space)` mirrors the original's paths (genforce/interfacegan models/stylegan_generator.py):
  z  -> renormalise to radius sqrt(d) -> mapping -> w -> repeat to L layers -> truncation -> synthesis
  w  ->                                            repeat to L layers -> truncation -> synthesis
  wp ->                                                                               synthesis  (no truncation)
with truncation w_avg + psi (w - w_avg) on the first `truncation_layers` layers (the original's psi = 0.7 on 8
layers) and constant per-layer noise (the original's randomize_noise=False), so an edit is the only change.

Predictor: anything with `names` (attribute names) that maps images [N, H, W, 3] float in [-1, 1] to scores
[N, len(names)]. `get_predictor(spec)` takes a registry name (`register_predictor`), `NAME@PATH` for a
registered predictor that loads from a path (e.g. `world_attributes@workdirs/attributes`), or
`package.module:attr`, where attr is a `Predictor`, a callable with an `attribute_names` attribute, or a
zero-argument factory that returns a `Predictor` (so a predictor can load its weights lazily). `@` cannot occur
in a registry name or a Python module path, so `NAME@PATH` never reads as `module:attr`, whatever PATH holds.

Registered: brightness, rgb, toy_colour (pixel statistics for tests and smoke runs) and world_attributes (the
synthetic world's attribute predictor, jaxface/train/attributes.py: glasses, smile, hair_lightness, gender,
age, skin_tone, light_x, yaw; without @PATH the configs/attributes.py bootstrap in $JAXFACE_CACHE, trained on
first use).
"""

import importlib
import json
import os
from typing import Callable, NamedTuple, Sequence

import numpy as np

from jaxface.edit import interfacegan as ifg
from jaxface.errors import CheckpointError, ConfigError, UserError

SUPPORTED_TRAINERS = ("stylegan2",)
TRUNCATION_PSI = 0.7  # the original's StyleGAN settings (models/model_settings.py)
TRUNCATION_LAYERS = 8


# ---------------------------------------------------------------------------------------------------------------
# Generator

class LoadedGenerator:
  """The EMA generator of a trained run, with the original's Z / W / W+ synthesis paths (see module docstring)."""

  def __init__(self, config, params, w_avg, step, workdir, truncation_psi=TRUNCATION_PSI,
               truncation_layers=TRUNCATION_LAYERS, batch_size=16):
    from jaxface.train import stylegan2 as sg2_train
    self.config, self.params, self.step, self.workdir = config, params, step, workdir
    self.w_avg = np.asarray(w_avg, np.float32)
    self.module = sg2_train.generator(config)
    self.z_dim, self.w_dim = int(config.model.z_dim), int(config.model.w_dim)
    self.num_ws, self.resolution = self.module.num_ws, int(config.model.resolution)
    self.truncation_psi, self.truncation_layers = float(truncation_psi), int(truncation_layers)
    self.batch_size = int(batch_size)
    if self.batch_size < 1:
      raise UserError(f"batch size must be >= 1, got {batch_size}")
    key = (json.dumps(config.model.to_dict(), sort_keys=True), str(config.compute_dtype), self.truncation_layers)
    self._map, self._synth, self._trunc = _programs(key, self.module, self.num_ws, self.truncation_layers)

  def dims(self, space):
    return self.z_dim if ifg.parse_space(space) == "z" else self.w_dim

  def _batched(self, fn, x):
    """Runs `fn` over fixed-size batches (the last one padded, so one compiled program serves any N)."""
    out, n, bs = [], x.shape[0], self.batch_size
    for i in range(0, n, bs):
      batch = x[i:i + bs]
      k = batch.shape[0]
      if k < bs:
        batch = np.concatenate([batch, np.repeat(batch[-1:], bs - k, 0)], 0)
      out.append(np.asarray(fn(batch))[:k])
    return np.concatenate(out, 0) if out else np.zeros((0,), np.float32)

  def map(self, z):
    return self._batched(lambda b: self._map(self.params, b), np.asarray(z, np.float32))

  def truncate(self, w):
    """w [N, w_dim] -> wp [N, num_ws, w_dim]: repeated to every layer, truncated on the first layers."""
    return self._batched(lambda b: self._trunc(b, self.w_avg, self.truncation_psi), np.asarray(w, np.float32))

  def sample(self, num, space, seed=0):
    """`num` codes of `space`. W and W+ codes come from the mapping of sampled z (never from N(0, I), which is not
    the W distribution: the original's edit.py warns about exactly that)."""
    space = ifg.parse_space(space)
    z = ifg.sample_z(seed, num, self.z_dim)
    if space == "z":
      return z
    w = self.map(z)
    return w if space == "w" else self.truncate(w)

  def synthesize(self, codes, space):
    """codes of `space` -> dict(image [N, R, R, 3] float32 in [-1, 1], plus the codes on the way: z, w, wp).

    Z codes are renormalised to radius sqrt(d) first (the original's preprocess); an edited z off that sphere
    gives the same image either way, because the mapping normalises its input's second moment.
    """
    space = ifg.parse_space(space)
    codes = ifg.check_codes(codes, space, self.dims(space), self.num_ws)
    out = {}
    if space == "z":
      out["z"] = codes
      codes, space = self.map(codes), "w"
    if space == "w":
      out["w"] = codes
      codes = self.truncate(codes)
    out["wp"] = codes
    out["image"] = self._batched(lambda b: self._synth(self.params, b), codes)
    return out


_PROGRAMS = {}


def _programs(key, G, num_ws, cutoff):
  """Jitted map / synthesize / truncate, shared by every LoadedGenerator of the same architecture (so loading a
  workdir twice in one process compiles nothing new)."""
  if key not in _PROGRAMS:
    import jax
    from jaxface.models import stylegan2 as sg2
    _PROGRAMS[key] = (
        jax.jit(lambda p, z: G.apply({"params": p}, z, method="map")),
        jax.jit(lambda p, ws: G.apply({"params": p}, ws, noise_mode="const", method="synthesize")),
        jax.jit(lambda w, w_avg, psi: sg2.truncate(
            jax.numpy.broadcast_to(w[:, None], (w.shape[0], num_ws, w.shape[-1])), w_avg, psi, cutoff)))
  return _PROGRAMS[key]


def _read_config(workdir):
  import ml_collections
  path = os.path.join(workdir, "config.json")
  if not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir!r} does not exist; pass the --workdir of a trained jaxface StyleGAN2 run.")
  if not os.path.isfile(path):
    raise UserError(f"{workdir!r} has no config.json, so it is not a jaxface training workdir. Train one with "
                    f"`python -m jaxface.main --config configs/stylegan2.py --workdir DIR` and pass that DIR.")
  try:
    with open(path) as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read {path} ({e}); it should be the config.json a training run wrote.") from None
  trainer = raw.get("trainer")
  if trainer not in SUPPORTED_TRAINERS:
    raise ConfigError(f"{workdir!r} was trained by trainer {trainer!r}; InterFaceGAN editing needs a generator with "
                      f"a mapping network, supported: {', '.join(SUPPORTED_TRAINERS)} (configs/stylegan2.py).")
  return ml_collections.ConfigDict(raw)


def checkpoint_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit() and os.path.isdir(os.path.join(d, n, "state")))


def load_generator(workdir, step=None, **kwargs):
  """Loads the EMA generator and w_avg of `workdir`'s newest (or given) checkpoint onto one device."""
  import jax
  import orbax.checkpoint as ocp
  from jaxface.train import stylegan2 as sg2_train
  config = _read_config(workdir)
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"{workdir!r} has a config.json but no checkpoint under checkpoints/; let the training run "
                          f"save one (rerun its command to resume; checkpoints are written every "
                          f"config.ckpt.every_steps and at the end).")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise CheckpointError(f"{workdir!r} has no checkpoint for step {step}; available: {steps}.")
  try:
    abstract = jax.eval_shape(lambda k: sg2_train.init_state(config, k), jax.random.key(0))
  except (AttributeError, KeyError) as e:
    raise ConfigError(f"{workdir}/config.json lacks a field the StyleGAN2 trainer needs ({e}); it was written by an "
                      f"incompatible jaxface version. Retrain, or fix the config.json.") from None
  path = os.path.abspath(os.path.join(workdir, "checkpoints", str(step), "state"))
  wanted = {"G_ema": abstract["G_ema"], "w_avg": abstract["w_avg"]}
  as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  try:  # only G_ema and w_avg, as host numpy arrays, whatever mesh the run was sharded over
    state = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
        item=wanted, restore_args=as_numpy, partial_restore=True))
  except Exception as e:  # an unreadable checkpoint is the user's to fix (move it away / pick another step)
    raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); pass another step or "
                          f"move the broken checkpoint away.") from None
  expected = wanted
  found = {k: state.get(k) for k in expected} if isinstance(state, dict) else {}
  shapes = lambda t: jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), t)
  if any(v is None for v in found.values()) or \
      jax.tree_util.tree_structure(shapes(found)) != jax.tree_util.tree_structure(shapes(expected)) or \
      shapes(found) != shapes(expected):
    raise CheckpointError(f"checkpoint {path} does not hold the generator that {workdir}/config.json builds (G_ema "
                          f"or w_avg differ in structure or shape); the config.json and checkpoints/ come from "
                          f"different runs. Use the workdir exactly as training left it.")
  params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), found["G_ema"])
  return LoadedGenerator(config, params, found["w_avg"], step, workdir, **kwargs)


def postprocess(images):
  """[-1, 1] floats -> uint8, the original's clip((x + 1) * 127.5 + 0.5)."""
  return np.clip((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


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


def _world_attributes(workdir=None):
  from jaxface.train import attributes  # lazy: importing generator_io must not import the trainer
  return attributes.predictor(workdir)


register_predictor("world_attributes", _world_attributes, takes_path=True)


def predictor_names():
  return sorted(_REGISTRY)


def get_predictor(spec):
  """A registry name, `NAME@PATH` or `package.module:attribute` -> Predictor (see module docstring)."""
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
    raise UserError(f"--predictor {spec!r} gave a {type(obj).__name__}, not a jaxface.edit.generator_io.Predictor; "
                    f"give a Predictor, a callable with `attribute_names`, or a factory returning a Predictor.")
  if not obj.names or len(set(obj.names)) != len(obj.names):
    raise UserError(f"--predictor {spec!r} has attribute names {list(obj.names)}; they must be non-empty and unique.")
  return obj
