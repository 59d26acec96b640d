"""A DiscoFaceGAN's networks and what it is measured against: the generator a config builds, λ sampled from
the frozen priors, and the 3DMM render targets of λ (image, landmarks, masks). The frozen experts are
runs/disco_experts.py; the Python API on top is runs/disco_generator.py; training is jaxface/train/disco.py.
"""

import jax
import jax.numpy as jnp

from jaxface.models import stylegan2 as sg2
from jaxface.render import render as render_lib
from jaxface.runs import disco_expert_configs as dxc
from jaxface.runs import disco_experts as dx


def generator(config):
  m = config.model
  return sg2.Generator(z_dim=dxc.lambda_dim(config) + m.noise_dim, w_dim=m.w_dim, resolution=m.resolution,
                       mapping_layers=m.mapping_layers, mapping_lr_mul=m.mapping_lr_mul, normalize_z=False,
                       channel_base=m.channel_base, channel_max=m.channel_max, img_channels=3,
                       dtype=jnp.dtype(config.compute_dtype))


def sample_z(experts, key, n):
  """One z per factor, {factor: [n, latent]} ~ N(0, I)."""
  keys = jax.random.split(key, len(experts.latent))
  return {f: jax.random.normal(k, (n, size)) for k, (f, size) in zip(keys, experts.latent.items())}


def render_targets(experts, frozen, blocks, res):
  """Batched render of λ (translation 0) at `res`: image [0, 1] in the reals' display space (black outside the
  face), mask, landmarks. No gradient is needed."""
  cam = experts.camera(res)
  coeffs = dx.full_coeffs(jax.lax.stop_gradient(blocks))
  out = jax.vmap(lambda c: render_lib.render(frozen["face"], c, cam, res))(coeffs)
  return dict(out, image=jnp.where(out["mask"][..., None] > 0, experts.display(out["image"]), 0.0))
