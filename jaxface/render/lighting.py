"""Spherical-harmonics (9 bands per colour channel) Lambertian shading, Deep3DFaceRecon's constants.

γ [27] is read as 3 channels × 9 bands (channel-major, as the original reshapes it) and an ambient prior of
+0.8 is added to band 0 of every channel before shading. With a unit normal n = (x, y, z):
  Y = [a0c0, -a1c1·y, a1c1·z, -a1c1·x, a2c2·x·y, -a2c2·y·z, a2c2·0.5/√3·(3z²-1), -a2c2·x·z, a2c2·0.5·(x²-y²)]
  a0 = π, a1 = 2π/√3, a2 = 2π/√8;  c0 = 1/√(4π), c1 = √3/√(4π), c2 = 3√5/√(12π)
  colour_c = (Y·γ_c) · albedo_c.
(As in DiscoFaceGAN; identical in Deep3DFaceRecon TF and PyTorch.)
"""

import math

import jax.numpy as jnp

A0, A1, A2 = math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0)
C0, C1, C2 = 1.0 / math.sqrt(4.0 * math.pi), math.sqrt(3.0) / math.sqrt(4.0 * math.pi), \
    3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi)
AMBIENT = 0.8


def sh_basis(normals):
  """The 9 SH basis values (with the Lambertian a_l factors) per normal: [...,3] -> [...,9]."""
  x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
  return jnp.stack([
      jnp.full_like(x, A0 * C0),
      -A1 * C1 * y, A1 * C1 * z, -A1 * C1 * x,
      A2 * C2 * x * y, -A2 * C2 * y * z, A2 * C2 * 0.5 / math.sqrt(3.0) * (3.0 * z * z - 1.0),
      -A2 * C2 * x * z, A2 * C2 * 0.5 * (x * x - y * y)], axis=-1)


def gamma_matrix(gamma):
  """γ [27] -> [3 channels, 9 bands] with the +0.8 ambient prior on band 0."""
  g = jnp.reshape(gamma, gamma.shape[:-1] + (3, 9))
  return g.at[..., 0].add(AMBIENT)


def irradiance(normals, gamma):
  """Per-channel shading factor [...,3] for unit normals [...,3] under SH lighting γ [27]."""
  return jnp.einsum("...k,ck->...c", sh_basis(normals), gamma_matrix(gamma))


def shade(albedo, normals, gamma):
  """Lambertian SH shading: albedo [...,3] · irradiance(normals, γ)."""
  return albedo * irradiance(normals, gamma)
