"""A trained identity mapping (Nitzan et al.): the frozen generator it maps into (a StyleGAN2's or a DiscoFaceGAN's
W), the mapper a config builds, the swap function, and `load_run(workdir)` (config, state with the mapper and the
frozen networks, generator), checked against the generator it was trained with. Training: jaxface/train/id_mapping.py.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import pretrained
from jaxface.errors import CheckpointError, ConfigError
from jaxface.models import id_mapper
from jaxface.runs import generator_samples as gs
from jaxface.runs import id_mapping as train_lib
from jaxface.runs import id_mapping_experts as experts_lib
from jaxface.runs import latent_generators
from jaxface.runs.workdir import read_run


TARGETS = ("w", "z")  # what the mapper outputs: w itself (Nitzan et al.), or z through the frozen mapping network


def target(config):
  """config.model.target, checked; runs older than the option mapped into w."""
  t = config.model.get("target", "w")
  if t not in TARGETS:
    raise ConfigError(f"model.target={t!r}: the mapper outputs one of {', '.join(TARGETS)}.")
  return t


@functools.lru_cache(maxsize=4)
def _generator(workdir, step, psi, layers):
  # an exported folder holds one step, which its loader refuses to be asked for
  step = None if step < 0 or pretrained.is_export(workdir) else step
  return latent_generators.load(workdir, step=step, truncation_psi=None if psi < 0 else psi,
                                truncation_layers=None if layers < 0 else layers, batch_size=32)


def generator(config):
  """The frozen `LatentGenerator` (runs/latent_generators.py: a StyleGAN2 or a DiscoFaceGAN) this run maps into."""
  g = config.generator
  if not g.workdir:
    raise ConfigError("no generator: pass a trained configs/stylegan2.py or configs/disco.py workdir, or an exported "
                      "DiscoFaceGAN folder such as pretrained/disco_cpu64, with --config configs/id_mapping.py:gen=DIR "
                      "(or --config.generator.workdir=DIR).")
  d = config.samples
  return _generator(os.path.abspath(g.workdir), int(g.step), float(d.truncation_psi), int(d.truncation_layers))


def synthesize_fn(gen):
  """(G params, w [B, w_dim]) -> images [B, R, R, 3] in [-1, 1], w copied to every layer, constant noise."""
  module, num_ws = gen.module, gen.num_ws

  def synth(params, w):
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws, w.shape[-1]))
    return module.apply({"params": params}, ws, noise_mode="const", method="synthesize").astype(jnp.float32)

  return synth


def mapper_fn(config):
  """(params, frozen, x_id, x_attr) -> (w [B, w_dim], z_id): the identity code is a constant. With model.target
  "z" the mapper's output is the generator's input, turned into w by its frozen mapping network."""
  enc, mapper, _ = networks(config)
  ex = experts_lib.functions(config)
  through_mapping = target(config) == "z"
  module = generator(config).module

  def forward(params, frozen, x_id, x_attr):
    z_id = jax.lax.stop_gradient(ex.identity(frozen, x_id))
    z_attr = enc.apply({"params": params["enc"]}, x_attr).astype(jnp.float32)
    out = mapper.apply({"params": params["map"]}, jnp.concatenate([z_id, z_attr], -1))
    if through_mapping:
      out = module.apply({"params": frozen["G"]}, out, method="map").astype(jnp.float32)
    return out, z_id

  return forward


def swap_fn(config):
  """(state, x_id, x_attr) -> swapped images [B, R, R, 3] in [-1, 1] (pure; jit it)."""
  forward, synth = mapper_fn(config), synthesize_fn(generator(config))

  def swap(state, x_id, x_attr):
    w, _ = forward(state["params"], state["frozen"], x_id, x_attr)
    return synth(state["frozen"]["G"], w)

  return swap


def load_run(workdir, step=None):
  """(config, state with params and frozen nets) of a finished id-mapping run, checked against its generator."""
  import jax
  config, st, step = read_run(workdir, step, trainer="id_mapping")
  gen = train_lib.generator(config)
  if str(gs.fingerprint(gen.params)) != config.generator.fingerprint:
    raise CheckpointError(f"the generator checkpoint {config.generator.workdir} step {config.generator.step} is not "
                          f"the one this mapper was trained against (its parameters changed); the mapper only works "
                          f"with that exact generator. Restore it, or retrain the mapping.")
  state = {"params": st["params"], "frozen": dict(experts_lib.load(config), G=gen.params)}
  return config, jax.tree.map(np.asarray, state), gen


def to_float(images):
  return images.astype(jnp.float32) / 127.5 - 1.0


def networks(config):
  m = config.model
  dtype = jnp.dtype(config.compute_dtype)
  gen = generator(config)
  out_dim = gen.w_dim if target(config) == "w" else gen.z_dim
  return (id_mapper.attr_encoder(m.attr_encoder, int(m.attr_dim), m.attr_widths, dtype),
          id_mapper.Mapper(tuple(m.mapper_hidden), out_dim), id_mapper.LatentDiscriminator(tuple(m.disc_hidden)))
