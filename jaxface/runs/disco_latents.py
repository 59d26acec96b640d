"""A DiscoFaceGAN in InterFaceGAN's latent spaces: `DiscoLatents`, the `LatentGenerator` of a `jaxface.Generator`
(an exported folder such as the bundled pretrained/disco_cpu64, or a configs/disco.py training workdir).

  z   the generator's whole input as one flat vector: λ in BLOCKS order (id, tex, exp, angle, gamma; angles in
      radians) followed by ε [noise_dim]. Sampled as the generator is: λ decoded by the frozen factor priors from
      N(0, I), ε ~ N(0, I). Not renormalised (λ is physical; its magnitudes mean something).
  w   the mapping network's output for z (the λ standardisation inside, as in training).
  wp  W+: w on every layer, truncated toward w_avg (the mean w over sampled z) on the first truncation_layers
      when truncation_psi < 1.

Truncation: DiscoFaceGAN's own (attribute-preserving, `disco_generator.attribute_preserving_ws`) pulls only the
identity part of w toward the mean identity, and that part is the mapping of the identity λ alone: it needs λ,
so it is not a function of a W code and an edited W code has none. The W and W+ paths here therefore use the
original InterFaceGAN's truncation, w_avg + ψ (w - w_avg), which is the same function of w on every path, and the
default is ψ = 1 (none): then z -> w -> wp -> image is exactly `Generator.generate(blocks, ε, psi=1)`. On the
bundled generator ψ = 0.7 changes its samples little either way.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.errors import UserError
from jaxface.models import stylegan2 as sg2
from jaxface.runs import disco_experts as dx
from jaxface.runs import disco_generator
from jaxface.runs import latent_codes

TRUNCATION_PSI = 1.0  # none: the W / W+ paths then reproduce Generator.generate exactly (module docstring)
W_AVG_SAMPLES = 4096  # sampled z whose mean w is the truncation's centre
W_AVG_SEED = 123_457


class DiscoLatents(latent_codes.LatentGenerator):
  """A `jaxface.Generator` (runs/disco_generator.py) with the Z / W / W+ paths of the module docstring."""

  RENORMALIZE_Z = False

  def __init__(self, gen, workdir, truncation_psi=TRUNCATION_PSI, truncation_layers=None, batch_size=16):
    self.gen, self.workdir, self.step, self.config = gen, workdir, gen.step, gen.config
    self.lambda_dim = sum(_block_sizes(gen.experts.layout).values())
    self.noise_dim = gen.noise_dim
    self.z_dim, self.w_dim = self.lambda_dim + self.noise_dim, int(gen.G.w_dim)
    self.num_ws, self.resolution = int(gen.num_ws), int(gen.resolution)
    self.truncation_psi = float(truncation_psi)
    self.truncation_layers = int(gen.trunc_layers if truncation_layers is None else truncation_layers)
    self.batch_size = int(batch_size)
    if self.batch_size < 1:
      raise UserError(f"batch size must be >= 1, got {batch_size}")
    if not 0 <= self.truncation_layers <= self.num_ws:
      raise UserError(f"--truncation-layers {truncation_layers}: this generator has {self.num_ws} style layers; "
                      f"pass 0 to {self.num_ws}.")
    self.module, self.params = gen.G, gen.params  # the synthesis network and its weights, as a StyleGAN2's
    self._w_avg = None
    G, cut, num_ws, lam_dim = gen.G, self.truncation_layers, self.num_ws, self.lambda_dim
    self._map = jax.jit(lambda params, frozen, z: G.apply(
        {"params": params}, dx.generator_input(frozen, z[:, :lam_dim], z[:, lam_dim:]), method="map"))
    self._trunc = jax.jit(lambda w, w_avg, psi: sg2.truncate(
        jnp.broadcast_to(w[:, None], (w.shape[0], num_ws, w.shape[-1])), w_avg, psi, cut))

  def describe(self):
    lay = self.gen.experts.layout
    return (f"DiscoFaceGAN {self.workdir} step {self.step}, {self.resolution}x{self.resolution}, z = λ ‖ ε: "
            f"{self.lambda_dim} λ (id {lay.n_id}, tex {lay.n_tex}, exp {lay.n_exp}, angle {lay.n_angle}, gamma "
            f"{lay.n_gamma}) + {self.noise_dim} ε = {self.z_dim}, w_dim {self.w_dim}, {self.num_ws} layers, "
            f"truncation psi {self.truncation_psi} toward w_avg on {self.truncation_layers} layers")

  # ------------------------------------------------------------------------------------------- z <-> λ, ε

  def codes(self, blocks, eps):
    """λ blocks {id, tex, exp, angle, gamma} [N, ...] and ε [N, noise_dim] -> z [N, z_dim]."""
    lam = np.asarray(dx.flat_lambda({b: jnp.asarray(blocks[b], jnp.float32) for b in dx.BLOCKS}))
    eps = np.asarray(eps, np.float32).reshape(lam.shape[0], self.noise_dim)
    return np.concatenate([lam, eps], -1).astype(np.float32)

  def blocks(self, z):
    """z [N, z_dim] -> (λ blocks, ε [N, noise_dim]), the inverse of `codes`."""
    z = self.check_codes(z, "z")
    sizes, out, at = _block_sizes(self.gen.experts.layout), {}, 0
    for b in dx.BLOCKS:
      out[b], at = z[:, at:at + sizes[b]], at + sizes[b]
    return out, z[:, self.lambda_dim:]

  # ------------------------------------------------------------------------------------------- the paths

  def sample_z(self, num, seed=0):
    blocks = self.gen.random_blocks(seed, int(num))
    eps = jax.random.normal(jax.random.fold_in(jax.random.key(int(seed)), 1 << 20), (int(num), self.noise_dim))
    return self.codes(blocks, eps)

  def map(self, z):
    return self._batched(lambda b: self._map(self.gen.params, self.gen.frozen, b), np.asarray(z, np.float32))

  @property
  def w_avg(self):
    """The mean w over W_AVG_SAMPLES sampled z (the truncation's centre; computed on first use)."""
    if self._w_avg is None:
      self._w_avg = self.map(self.sample_z(W_AVG_SAMPLES, W_AVG_SEED)).mean(0).astype(np.float32)
    return self._w_avg

  def truncate(self, w):
    """w [N, w_dim] -> wp [N, num_ws, w_dim]: repeated to every layer, truncated on the first layers."""
    w = np.asarray(w, np.float32)
    if self.truncation_psi == 1.0:
      return np.ascontiguousarray(np.broadcast_to(w[:, None], (w.shape[0], self.num_ws, self.w_dim)))
    return self._batched(lambda b: self._trunc(b, self.w_avg, self.truncation_psi), w)

  def synthesize_wp(self, wp):
    return self._batched(self.gen.synthesize, np.asarray(wp, np.float32))


def load(workdir, step=None, **kwargs):
  """`DiscoLatents` of an exported folder or a configs/disco.py training workdir (its newest or given step)."""
  return DiscoLatents(_generator(os.path.abspath(workdir), step, _stamp(workdir)), workdir, **kwargs)


@functools.lru_cache(maxsize=2)
def _generator(workdir, step, stamp):
  """One `Generator` (and its compiled programs) per folder state: the subcommands run in one process (tests,
  notebooks) compile once."""
  del stamp  # part of the cache key only
  return disco_generator.Generator.load(workdir, step)


def _stamp(workdir):
  """What changes when the folder's generator does: its files' modification times and the checkpoints present."""
  names = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
  ckpts = os.path.join(workdir, "checkpoints")
  return (tuple((n, os.stat(os.path.join(workdir, n)).st_mtime_ns) for n in names),
          tuple(sorted(os.listdir(ckpts))) if os.path.isdir(ckpts) else ())


def _block_sizes(layout):
  return dict(id=layout.n_id, tex=layout.n_tex, exp=layout.n_exp, angle=layout.n_angle, gamma=layout.n_gamma)
