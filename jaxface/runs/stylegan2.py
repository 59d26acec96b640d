"""A trained StyleGAN2: the generator network of a config, and `load_generator(workdir)` -> `LoadedGenerator`,
its EMA weights with the original InterFaceGAN Z / W / W+ synthesis paths (truncation as the original's
StyleGAN settings). What trains it is jaxface/train/stylegan2.py.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.errors import CheckpointError, ConfigError, UserError
from jaxface.models import stylegan2 as sg2
from jaxface.runs import latent_codes as ifg
from jaxface.runs.workdir import read_config, read_run


def _dtype(config):
  return jnp.dtype(config.compute_dtype)


def generator(config):
  m = config.model
  return sg2.Generator(z_dim=m.z_dim, w_dim=m.w_dim, resolution=m.resolution, mapping_layers=m.mapping_layers,
                       mapping_lr_mul=m.mapping_lr_mul, normalize_z=True, channel_base=m.channel_base,
                       channel_max=m.channel_max, img_channels=3, dtype=_dtype(config))


SUPPORTED_TRAINERS = ("stylegan2",)


TRUNCATION_PSI = 0.7  # the original's StyleGAN settings (models/model_settings.py)


TRUNCATION_LAYERS = 8


class LoadedGenerator(ifg.LatentGenerator):
  """The EMA generator of a trained run, with the original's Z / W / W+ synthesis paths (see module docstring).

  Z codes are renormalised to radius sqrt(d) before synthesis (the original's preprocess); an edited z off that
  sphere gives the same image either way, because the mapping normalises its input's second moment."""

  def __init__(self, config, params, w_avg, step, workdir, truncation_psi=TRUNCATION_PSI,
               truncation_layers=TRUNCATION_LAYERS, batch_size=16):
    self.config, self.params, self.step, self.workdir = config, params, step, workdir
    self.w_avg = np.asarray(w_avg, np.float32)
    self.module = generator(config)
    self.z_dim, self.w_dim = int(config.model.z_dim), int(config.model.w_dim)
    self.num_ws, self.resolution = self.module.num_ws, int(config.model.resolution)
    self.truncation_psi, self.truncation_layers = float(truncation_psi), int(truncation_layers)
    self.batch_size = int(batch_size)
    if self.batch_size < 1:
      raise UserError(f"batch size must be >= 1, got {batch_size}")
    key = (json.dumps(config.model.to_dict(), sort_keys=True), str(config.compute_dtype), self.truncation_layers)
    self._map, self._synth, self._trunc = _programs(key, self.module, self.num_ws, self.truncation_layers)

  def describe(self):
    return (f"StyleGAN2 {self.workdir} step {self.step}, {self.resolution}x{self.resolution}, z_dim {self.z_dim}, "
            f"w_dim {self.w_dim}, {self.num_ws} layers, truncation psi {self.truncation_psi} on "
            f"{self.truncation_layers} layers")

  def sample_z(self, num, seed=0):
    return ifg.sample_z(seed, num, self.z_dim)

  def map(self, z):
    return self._batched(lambda b: self._map(self.params, b), np.asarray(z, np.float32))

  def truncate(self, w):
    """w [N, w_dim] -> wp [N, num_ws, w_dim]: repeated to every layer, truncated on the first layers."""
    return self._batched(lambda b: self._trunc(b, self.w_avg, self.truncation_psi), np.asarray(w, np.float32))

  def synthesize_wp(self, wp):
    return self._batched(lambda b: self._synth(self.params, b), np.asarray(wp, np.float32))


_PROGRAMS = {}


def _programs(key, G, num_ws, cutoff):
  """Jitted map / synthesize / truncate, shared by every LoadedGenerator of the same architecture (so loading a
  workdir twice in one process compiles nothing new)."""
  if key not in _PROGRAMS:
    import jax
    _PROGRAMS[key] = (
        jax.jit(lambda p, z: G.apply({"params": p}, z, method="map")),
        jax.jit(lambda p, ws: G.apply({"params": p}, ws, noise_mode="const", method="synthesize")),
        jax.jit(lambda w, w_avg, psi: sg2.truncate(
            jax.numpy.broadcast_to(w[:, None], (w.shape[0], num_ws, w.shape[-1])), w_avg, psi, cutoff)))
  return _PROGRAMS[key]


def load_generator(workdir, step=None, **kwargs):
  """Loads the EMA generator and w_avg of `workdir`'s newest (or given) checkpoint onto one device."""
  config = read_config(workdir)
  if config.get("trainer") not in SUPPORTED_TRAINERS:
    raise ConfigError(f"{workdir!r} was trained by trainer {config.get('trainer')!r}; InterFaceGAN editing needs a "
                      f"generator with a mapping network, supported: {', '.join(SUPPORTED_TRAINERS)} "
                      f"(configs/stylegan2.py).")
  try:
    G = generator(config)
    z = jnp.zeros((1, config.model.z_dim), jnp.float32)
    g_params = jax.eval_shape(lambda k: G.init({"params": k, "noise": k}, z)["params"], jax.random.key(0))
    w_avg = jax.ShapeDtypeStruct((config.model.w_dim,), jnp.float32)
  except (AttributeError, KeyError) as e:
    raise ConfigError(f"{workdir}/config.json lacks a field the StyleGAN2 trainer needs ({e}); it was written by an "
                      f"incompatible jaxface version. Retrain, or fix the config.json.") from None
  wanted = {"G_ema": g_params, "w_avg": w_avg}
  # only G_ema and w_avg, as host numpy arrays, whatever mesh the run was sharded over
  config, state, step = read_run(workdir, step, item=wanted)
  found = {k: state.get(k) for k in wanted} if isinstance(state, dict) else {}
  shapes = lambda t: jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), t)  # noqa: E731
  if any(v is None for v in found.values()) or \
      jax.tree_util.tree_structure(shapes(found)) != jax.tree_util.tree_structure(shapes(wanted)) or \
      shapes(found) != shapes(wanted):
    raise CheckpointError(f"checkpoint {step} of {workdir} does not hold the generator that its config.json builds "
                          f"(G_ema or w_avg differ in structure or shape); the config.json and checkpoints/ come "
                          f"from different runs. Use the workdir exactly as training left it.")
  params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), found["G_ema"])
  return LoadedGenerator(config, params, found["w_avg"], step, workdir, **kwargs)


