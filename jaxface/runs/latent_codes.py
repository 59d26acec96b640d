"""StyleGAN latent codes as InterFaceGAN handles them (host-side numpy): the spaces Z, W, W+ (`SPACES`), sampling
and renormalising z, checking codes against a generator, and [-1, 1] images -> uint8 as the original does.
"""

import numpy as np

from jaxface.errors import UserError


SPACES = ("z", "w", "wp")  # the original's names: Z, W (pre-truncation), W+ (per-layer, post-truncation)


def renormalize_z(z):
  """Projects Z codes onto the sphere of radius sqrt(d), as the original's preprocess does before synthesis and
  before boundaries are fitted (the generator only sees the direction of z: its mapping normalises it)."""
  z = np.asarray(z, np.float32)
  norm = np.linalg.norm(z, axis=-1, keepdims=True)
  return (z / np.maximum(norm, 1e-12) * np.sqrt(z.shape[-1])).astype(np.float32)


def sample_z(seed, num, dim):
  """`num` Z codes ~ N(0, I_dim), renormalised to radius sqrt(dim). JAX's counter-based PRNG, so a seed gives the
  same codes on every machine."""
  import jax
  z = np.asarray(jax.random.normal(jax.random.key(seed), (int(num), int(dim)), np.float32))
  return renormalize_z(z)


def check_codes(codes, space, dim, num_ws=None, what="latent codes"):
  """Validates user-supplied codes for `space` and returns them as float32 ([N, d] for z/w, [N, L, d] for wp)."""
  space = parse_space(space)
  codes = np.asarray(codes)
  if not np.issubdtype(codes.dtype, np.number):
    raise UserError(f"{what}: expected a numeric array, got dtype {codes.dtype}")
  want = f"[N, {dim}]" if space != "wp" else f"[N, {num_ws}, {dim}]"
  if space in ("z", "w") and codes.ndim == 1 and codes.shape[0] == dim:
    codes = codes[None]
  ok = (codes.ndim == 2 and codes.shape[1] == dim) if space != "wp" else (
      codes.ndim == 3 and codes.shape[1:] == (num_ws, dim))
  if not ok:
    raise UserError(f"{what} have shape {codes.shape}, but this generator's {space.upper()} space needs {want}. "
                    f"Use codes saved by generate_data for the same workdir and --latent_space_type {space}.")
  if not np.all(np.isfinite(codes)):
    raise UserError(f"{what} contain NaN or Inf values; regenerate them with generate_data.")
  codes = codes.astype(np.float32)
  return renormalize_z(codes) if space == "z" else codes


def parse_space(space):
  s = str(space).lower().replace("+", "p")
  if s not in SPACES:
    raise UserError(f"unknown latent space {space!r}; use one of z, w, wp (W+).")
  return s


def postprocess(images):
  """[-1, 1] floats -> uint8, the original's clip((x + 1) * 127.5 + 0.5)."""
  return np.clip((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
