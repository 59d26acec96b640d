"""Real-photo embedding into a trained DiscoFaceGAN's W+ and factor editing (Deng et al., CVPR 2020).

The authors' method, which they described but never released: align the photo (5 points, the generator's
framing), estimate its coefficients λ with R-Net, optimize a per-layer latent w+ (and the per-layer noise maps)
so that the generator reproduces the photo, then edit one factor by moving w+ along the mapping network's
offset between the new and the old coefficients:

    w+' = w+ + Φ(λ') − Φ(λ)        (Φ: the mapping network with the same ε, broadcast to every layer)

The optimization starts from Φ(λ) truncated as in generation, and minimizes, per photo,
    w_pix·MSE + w_msssim·(1 − MS-SSIM) + w_id·(1 − cos(id(G), id(x))) + w_lm·‖lm(G) − lm(x)‖²/R²
  + w_noise·noise autocorrelation (StyleGAN2's projector regularizer; maps are renormalized after each step)
  + w_anchor·mean‖w+ − Φ(λ)‖² over the first anchor_layers layers (optional: the further w+ leaves the
    mapping's range, the less a λ edit moves it; pose lives in the coarse layers, detail in the fine ones)
with Adam and the projector's learning-rate ramp (up over the first 5%, cosine down over the last 25%).
Photos are independent (Adam is element-wise), so a batch embeds many photos at the cost of one.

  emb = embed_photos(gen, [photo_uint8, ...])
  images = gen.synthesize(edit_ws(gen, emb.ws, emb.blocks, new_blocks), emb.noise)
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from jaxface.data import align as align_lib
from jaxface.data import images
from jaxface.errors import DataError
from jaxface.losses import ssim as ssim_lib
from jaxface.runs.disco_factors import ANGLES
from jaxface.runs.disco_generator import apply_setting, to_uint8


class NoFaceError(DataError):
  """The photo has no face the detector can find."""


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
  steps: int = 600          # optimizer steps per batch of photos
  lr: float = 0.1           # Adam peak learning rate (w+ and noise maps)
  batch_size: int = 16      # photos optimized together (one compiled program per batch size)
  w_pix: float = 1.0        # pixel MSE in [-1, 1]
  w_msssim: float = 1.0     # 1 − MS-SSIM
  w_id: float = 0.5         # 1 − cosine of the identity network's embeddings
  w_lm: float = 100.0       # R-Net landmark distance², in units of the image side
  w_noise: float = 1e3      # noise-map autocorrelation (keeps the maps noise, not image content)
  # Mean squared distance of w+ from its start Φ(λ): keeps w+ where λ edits still act. On the bundled generator
  # (8 held-out world images, docs/results_disco.md) 1 meets a ±20° yaw edit within 5° at 19.5 dB; 0 fits closest
  # (24.7 dB) but the edit turns the head only 8-11°.
  w_anchor: float = 1.0
  anchor_layers: int = 0    # anchor only the first (coarsest) this many w+ layers, where pose lives; 0 = all
  noise: bool = True        # optimize the noise maps too (False: the generator's constant maps)
  align: bool = True        # detect + 5-point align; False: the photos are already aligned crops


class Embedding(NamedTuple):
  ws: np.ndarray        # [N, num_ws, w_dim] the optimized w+
  noise: object         # the per-sample "noise" collection (pytree of [N, h, w, 1]) or None
  blocks: dict          # λ blocks {id, tex, exp, angle, gamma} [N, ...] R-Net estimated from the photos
  target: np.ndarray    # [N, R, R, 3] uint8: the aligned photos
  recon: np.ndarray     # [N, R, R, 3] uint8: the reconstructions
  losses: dict          # final loss terms, each [N]


# ------------------------------------------------------------------------------------------------- photos

def read_photo(source, max_pixels=None):
  """A photo file (path or bytes) -> (H, W, 3) uint8: `jaxface.data.images.read_photo` (safe decoding)."""
  return images.read_photo(source, images.MAX_PHOTO_PIXELS if max_pixels is None else max_pixels)


def as_rgb(image):
  """(H, W[, C]) uint8 array or PIL image -> (H, W, 3) uint8; DataError for anything else."""
  if isinstance(image, Image.Image):
    image = np.asarray(image.convert("RGB"))
  a = np.asarray(image)
  if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
    raise DataError(f"expected an (H, W, 3) uint8 RGB image, got {a.dtype} {a.shape}")
  if a.ndim == 2:
    a = a[..., None]
  if a.shape[2] == 1:
    a = np.repeat(a, 3, 2)
  if min(a.shape[:2]) < 16:
    raise DataError(f"the image is {a.shape[1]}x{a.shape[0]} pixels; a face photo needs at least 16x16")
  return np.ascontiguousarray(a[..., :3])


def framing(gen):
  """Pixels per decimetre at the generator's resolution: the alignment scale that frames a face as the
  generator was trained (camera focal / distance; 10 dm for both the synthetic world and BFM)."""
  cam = gen.experts.camera(gen.resolution)
  return float(cam.focal) * gen.resolution / cam.width / 10.0


def align_photo(gen, image, align=True):
  """One photo -> [R, R, 3] uint8 framed like the generator's training images."""
  return align_to(image, gen.resolution, framing(gen), align)


def align_to(image, resolution, rescale_factor, align=True):
  """One photo -> [R, R, 3] uint8: detected, 5-point aligned and cropped at `rescale_factor` pixels per dm (or
  just resized when align is False). No face -> NoFaceError."""
  img = as_rgb(image)
  if not align:
    return np.asarray(Image.fromarray(img).resize((resolution, resolution), Image.BICUBIC))
  try:
    return align_lib.align_image(img, target_size=resolution, rescale_factor=rescale_factor)
  except DataError as e:
    if "no face" in str(e):
      raise NoFaceError(f"no face found in the photo ({img.shape[1]}x{img.shape[0]}); use a photo with a visible, "
                        f"roughly frontal face, or pass an aligned crop with align=False (--no-align)") from None
    raise


# ------------------------------------------------------------------------------------------------- losses

def noise_regularizer(noise):
  """Per-sample sum over maps and their 2x-downsampled pyramids (down to 8²) of the squared 1-pixel
  autocorrelations along x and y (StyleGAN2 projector)."""
  total = 0.0
  for n in jax.tree.leaves(noise):
    while True:
      total = total + jnp.mean(n * jnp.roll(n, 1, axis=1), (1, 2, 3)) ** 2 \
          + jnp.mean(n * jnp.roll(n, 1, axis=2), (1, 2, 3)) ** 2
      if n.shape[1] <= 8:
        break
      b, h, w, c = n.shape
      n = n.reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))
  return total


def normalize_noise(noise):
  def norm(n):
    n = n - n.mean((1, 2, 3), keepdims=True)
    return n * jax.lax.rsqrt(jnp.mean(n * n, (1, 2, 3), keepdims=True) + 1e-8)
  return jax.tree.map(norm, noise)


def _lr_schedule(peak, steps, rampup=0.05, rampdown=0.25):
  def lr(step):
    t = step / max(steps, 1)
    down = 0.5 - 0.5 * jnp.cos(jnp.pi * jnp.minimum(1.0, (1.0 - t) / rampdown))
    return peak * down * jnp.minimum(1.0, t / rampup + 1e-3)
  return lr


def _programs(gen, cfg):
  """(targets -> λ blocks, identity, landmarks) and one jitted optimizer step, for this generator and config."""
  G, ex, params, frozen, res = gen.G, gen.experts, gen.params, gen.frozen, gen.resolution
  opt = optax.adam(_lr_schedule(cfg.lr, cfg.steps))

  @jax.jit
  def analyse(x):
    rec = ex.recon(frozen, x)
    blocks = {b: rec["coeffs"][b] for b in ("id", "tex", "exp", "angle", "gamma")}
    return blocks, ex.identity(frozen, x), rec["landmarks"]

  def terms(var, x, id_x, lm_x, w0):
    if cfg.noise:
      img = G.apply({"params": params, "noise": var["noise"]}, var["ws"], noise_mode="given", method="synthesize")
    else:
      img = G.apply({"params": params}, var["ws"], noise_mode="const", method="synthesize")
    out = {"pix": jnp.mean((img - x) ** 2, (1, 2, 3)), "msssim": 1.0 - ssim_lib.ms_ssim(img, x),
           "id": 1.0 - jnp.sum(ex.identity(frozen, img) * id_x, -1),
           "lm": jnp.mean(jnp.sum((ex.recon(frozen, img)["landmarks"] - lm_x) ** 2, -1), -1) / res ** 2}
    out["noise"] = noise_regularizer(var["noise"]) if cfg.noise else jnp.zeros_like(out["pix"])
    out["anchor"] = jnp.mean((var["ws"] - w0)[:, :cfg.anchor_layers or None] ** 2, (1, 2))
    return out

  weights = {"pix": cfg.w_pix, "msssim": cfg.w_msssim, "id": cfg.w_id, "lm": cfg.w_lm, "noise": cfg.w_noise,
             "anchor": cfg.w_anchor}

  def loss(var, x, id_x, lm_x, w0):
    t = terms(var, x, id_x, lm_x, w0)
    per_image = sum(weights[k] * v for k, v in t.items())
    return jnp.sum(per_image), t  # photos are independent: the sum's gradient is each photo's own

  @jax.jit
  def step(var, opt_state, x, id_x, lm_x, w0):
    (_, t), g = jax.value_and_grad(loss, has_aux=True)(var, x, id_x, lm_x, w0)
    upd, opt_state = opt.update(g, opt_state, var)
    var = optax.apply_updates(var, upd)
    if cfg.noise:
      var = dict(var, noise=normalize_noise(var["noise"]))
    return var, opt_state, t

  return analyse, opt, step


def embed_photos(gen, images, config=None, progress=False, **overrides):
  """Embeds photos (uint8 arrays or PIL images, any size) into `gen`'s W+. Returns an `Embedding` with a
  leading axis over the photos. Raises NoFaceError / DataError for a photo that cannot be used."""
  cfg = dataclasses.replace(config or EmbedConfig(), **overrides)
  if cfg.steps < 1 or cfg.batch_size < 1:
    raise DataError(f"embedding needs steps >= 1 and batch_size >= 1, got {cfg.steps} and {cfg.batch_size}")
  if not len(images):
    raise DataError("no photos to embed")
  aligned = np.stack([align_photo(gen, im, cfg.align) for im in images])
  cache = gen.__dict__.setdefault("_embed_programs", {})  # compiled once per generator and config
  if cfg not in cache:
    cache[cfg] = _programs(gen, cfg)
  analyse, opt, step = cache[cfg]
  parts = []
  for start in range(0, len(aligned), cfg.batch_size):
    chunk = aligned[start:start + cfg.batch_size]
    n = len(chunk)
    pad = min(cfg.batch_size, len(aligned)) - n  # pad the last chunk: one compiled program for every chunk
    x = jnp.asarray(np.concatenate([chunk, chunk[:1].repeat(pad, 0)]), jnp.float32) / 127.5 - 1.0
    blocks, id_x, lm_x = analyse(x)
    w0 = gen.ws(blocks, noise=0)
    var = {"ws": w0, "noise": gen.noise_maps(x.shape[0]) if cfg.noise else None}
    opt_state = opt.init(var)
    steps = range(cfg.steps)
    if progress:
      from tqdm import tqdm
      steps = tqdm(steps, desc=f"embedding photos {start + 1}-{start + n} of {len(aligned)}", unit="step")
    for _ in steps:
      var, opt_state, t = step(var, opt_state, x, id_x, lm_x, w0)
    recon = gen.synthesize(var["ws"], var["noise"])
    parts.append(jax.tree.map(lambda a: np.asarray(a)[:n], (var, blocks, recon, t)))
  var, blocks, recon, t = jax.tree.map(lambda *a: np.concatenate(a), *parts)
  return Embedding(ws=var["ws"], noise=var["noise"], blocks=blocks, target=aligned, recon=to_uint8(recon),
                   losses=t)


# ------------------------------------------------------------------------------------------------- edits

def edit_ws(gen, ws, blocks_old, blocks_new):
  """w+' = w+ + Φ(λ') − Φ(λ): the mapping's offset between new and old coefficients (same ε, no truncation)."""
  new = {k: jnp.asarray(v) for k, v in blocks_new.items()}
  old = {k: jnp.asarray(v) for k, v in blocks_old.items()}
  return jnp.asarray(ws) + gen.ws(new, noise=0, psi=1.0) - gen.ws(old, noise=0, psi=1.0)


def edited(gen, emb, settings):
  """Images [N, R, R, 3] in [-1, 1] of every embedded photo with `settings` applied: ((key, value), ...) as in
  `jaxface.runs.disco_generator.apply_setting` (absolute angles in degrees, factor seeds, named expression units), plus
  ("d_yaw" | "d_pitch" | "d_roll", degrees) for changes relative to the photo's own pose."""
  new = {k: np.array(v, np.float32) for k, v in emb.blocks.items()}
  n = len(emb.ws)
  for key, value in settings:
    if key.startswith("d_") and key[2:] in ANGLES:
      new["angle"][:, ANGLES.index(key[2:])] += np.deg2rad(value)
    else:
      apply_setting(gen, new, key, value, n)
  return gen.synthesize(edit_ws(gen, emb.ws, emb.blocks, new), emb.noise)


# ------------------------------------------------------------------------------------------------- files

def save(path, emb):
  """The latent for reuse: w+, noise maps, λ blocks, aligned photos and reconstructions in one .npz."""
  arrays = {"ws": emb.ws, "target": emb.target, "recon": emb.recon}
  arrays.update({f"lam_{k}": v for k, v in emb.blocks.items()})
  arrays.update({f"loss_{k}": v for k, v in emb.losses.items()})
  if emb.noise is not None:
    arrays.update({f"noise_{i:03d}": v for i, v in enumerate(jax.tree.leaves(emb.noise))})
  np.savez_compressed(path, **arrays)


def load(path, gen):
  """An Embedding saved by `save`, checked against `gen` (same w+ shape and noise layout)."""
  try:
    z = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f"cannot read the embedding file {path}: {e}") from None
  ws = z["ws"]
  if ws.shape[1:] != (gen.num_ws, gen.G.w_dim):
    raise DataError(f"{path} holds w+ of shape {ws.shape[1:]}, but this generator takes "
                    f"({gen.num_ws}, {gen.G.w_dim}); embed the photo again with this workdir")
  noise = None
  leaves = [z[k] for k in sorted(k for k in z.files if k.startswith("noise_"))]
  if leaves:
    ref = gen.noise_maps(len(ws))
    ref_leaves, tree = jax.tree.flatten(ref)
    if [a.shape[1:] for a in ref_leaves] != [a.shape[1:] for a in leaves]:
      raise DataError(f"{path}: its noise maps do not fit this generator; embed the photo again")
    noise = jax.tree.unflatten(tree, [jnp.asarray(a) for a in leaves])
  blocks = {k[4:]: z[k] for k in z.files if k.startswith("lam_")}
  losses = {k[5:]: z[k] for k in z.files if k.startswith("loss_")}
  return Embedding(ws=ws, noise=noise, blocks=blocks, target=z["target"], recon=z["recon"], losses=losses)
