"""StyleGAN latent codes as InterFaceGAN handles them (host-side numpy): the spaces Z, W, W+ (`SPACES`), sampling
and renormalising z, checking codes against a generator, [-1, 1] images -> uint8 as the original does, and
`LatentGenerator`, the Z / W / W+ paths every generator InterFaceGAN edits shares (runs/stylegan2.py's
`LoadedGenerator`, runs/disco_latents.py's `DiscoLatents`).
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


def check_codes(codes, space, dim, num_ws=None, what="latent codes", renormalize=True):
  """Validates user-supplied codes for `space` and returns them as float32 ([N, d] for z/w, [N, L, d] for wp);
  z codes renormalised to radius sqrt(d) unless `renormalize` is False (a generator whose z is not a direction)."""
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
  return renormalize_z(codes) if space == "z" and renormalize else codes


def parse_space(space):
  s = str(space).lower().replace("+", "p")
  if s not in SPACES:
    raise UserError(f"unknown latent space {space!r}; use one of z, w, wp (W+).")
  return s


def postprocess(images):
  """[-1, 1] floats -> uint8, the original's clip((x + 1) * 127.5 + 0.5)."""
  return np.clip((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


class LatentGenerator:
  """The Z / W / W+ paths of a generator with a mapping network, over what a subclass defines:

    z_dim, w_dim, num_ws, resolution, batch_size, truncation_psi, truncation_layers
    sample_z(num, seed) -> z [N, z_dim]        map(z) -> w [N, w_dim]
    truncate(w) -> wp [N, num_ws, w_dim]       synthesize_wp(wp) -> images [N, R, R, 3] in [-1, 1]
    describe() -> one line for the logs        RENORMALIZE_Z: whether z codes are directions (StyleGAN's)
  """

  RENORMALIZE_Z = True

  def dims(self, space):
    return self.z_dim if parse_space(space) == "z" else self.w_dim

  def check_codes(self, codes, space, what="latent codes"):
    return check_codes(codes, space, self.dims(space), self.num_ws, what, renormalize=self.RENORMALIZE_Z)

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

  def sample(self, num, space, seed=0):
    """`num` codes of `space`. W and W+ codes come from the mapping of sampled z (never from N(0, I), which is not
    the W distribution: the original's edit.py warns about exactly that)."""
    space = parse_space(space)
    z = self.sample_z(num, seed)
    if space == "z":
      return z
    w = self.map(z)
    return w if space == "w" else self.truncate(w)

  def synthesize(self, codes, space):
    """codes of `space` -> dict(image [N, R, R, 3] float32 in [-1, 1], plus the codes on the way: z, w, wp)."""
    space = parse_space(space)
    codes = self.check_codes(codes, space)
    out = {}
    if space == "z":
      out["z"] = codes
      codes, space = self.map(codes), "w"
    if space == "w":
      out["w"] = codes
      codes = self.truncate(codes)
    out["wp"] = codes
    out["image"] = self.synthesize_wp(codes)
    return out
