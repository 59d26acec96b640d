"""The synthetic face world: a grain source of factors, a jittable renderer, items for `prepare`, a sheet.

Everything random is a pure function. `sample_factors(index, cfg)` (numpy, host) gives a sample's
factors from (cfg.seed, index) alone; `render_batch(factors, resolution)` (JAX, jittable) turns a batch of
them into images with ground truth (segmentation, landmarks, face mask, depth). Trainers take factors
from `make_source(cfg)` (cheap, random access) and render on device inside their jitted step.

    python -m jaxface.data.synthetic --sheet out.png [--n 64 --resolution 128 --seed 0 --start 0]
    python -m jaxface.data.prepare synthetic:N DST --resolution R       (uses `prepare_items`)

Sample contents: image, identity index, coefficients in the `FaceModel` layout of
`jaxface.render.mp468_bases.build_face_model(level=cfg.level)` (id 48, tex 48, exp 20 named, angle (x, y, z)
radians, gamma 27, trans 3 dm), landmarks 468 and 68 (pixels), segmentation (`synthetic_world.CLASSES`),
attribute labels (`synthetic_factors.attributes`). Multi-view mode (SofGAN): `multiview_factors`.
"""

import functools
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import ConfigError, UserError, cli

# Imported on first use, so that `python -m jaxface.data.synthetic --help` answers without loading JAX.
jax = lazy_import("jax")
jnp = lazy_import("jax.numpy")
sf = lazy_import("jaxface.data.synthetic_factors")
sr = lazy_import("jaxface.data.synthetic_render")
sw = lazy_import("jaxface.data.synthetic_world")
# Names this module re-exports from the world's modules, resolved on first access.
_EXPORTS = {"CLASSES": sw, "WorldConfig": sf, "sample_factors": sf, "identity_factors": sf, "attributes": sf}


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(_EXPORTS[name], name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Factor keys the renderer reads (others, e.g. labels, stay on the host).
RENDER_KEYS = ("id", "tex", "exp", "angle", "trans", "gamma", "gaze", "hair_style", "hair_rgb", "hair_volume",
               "hairline", "iris_rgb", "glasses", "glasses_shape", "glasses_size", "glasses_rgb", "freckles",
               "moles", "specular", "bg_kind", "bg_rgb", "bg_params")
MIN_RES, MAX_RES = 16, 1024


def _check_resolution(resolution):
  if not isinstance(resolution, (int, np.integer)) or not MIN_RES <= resolution <= MAX_RES:
    raise ConfigError(f"synthetic resolution must be an integer in [{MIN_RES}, {MAX_RES}], got {resolution!r}")
  return int(resolution)


def render_batch(factors, resolution, cfg=None):
  """Batched factors (dict of [B, ...] arrays) -> dict of [B, ...] JAX arrays. Jittable; `resolution`
  and `cfg` are static. Outputs: image [B,R,R,3] (0..1), seg [B,R,R] int32, face_mask [B,R,R] bool
  (visible face-model triangles), landmarks468 [B,468,2] / landmarks68 [B,68,2] (pixels, x right, y down),
  depth [B,R,R]."""
  cfg = sf.as_world_config(cfg)
  resolution = _check_resolution(resolution)
  f = {k: jnp.asarray(factors[k]) for k in RENDER_KEYS}
  return jax.vmap(lambda x: sr.render_one(x, resolution, cfg.level, cfg.focal))(f)


@functools.lru_cache(maxsize=16)
def _jitted(resolution, cfg):
  return jax.jit(lambda f: render_batch(f, resolution, cfg))


def render_items(indices, resolution, cfg=None, batch_size=32):
  """Renders samples by index on the default device; returns a dict of numpy arrays ([N, ...])."""
  cfg = sf.as_world_config(cfg)
  resolution = _check_resolution(resolution)
  indices = [int(i) for i in indices]
  outs = []
  for start in range(0, len(indices), batch_size):
    chunk = indices[start:start + batch_size]
    pad = batch_size - len(chunk)  # always full batches: one compiled shape per (resolution, batch_size)
    fs = sf.stack([sf.sample_factors(i, cfg) for i in chunk + chunk[-1:] * pad])
    out = jax.device_get(_jitted(resolution, cfg)({k: fs[k] for k in RENDER_KEYS}))
    outs.append({k: v[:len(chunk)] for k, v in out.items()})
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def to_uint8(image):
  return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


class SyntheticSource:
  """grain random-access source of factors: len, __getitem__(i) -> dict of numpy arrays (host-cheap).

  Indices wrap around `size`, which only sets the epoch length: any index is a valid sample."""

  def __init__(self, cfg=None, size=1_000_000):
    self.cfg = sf.as_world_config(cfg)
    if size < 1:
      raise ConfigError(f"synthetic source size must be >= 1, got {size}")
    self.size = int(size)

  def __len__(self):
    return self.size

  def __getitem__(self, index):
    f = sf.sample_factors(int(index) % self.size, self.cfg)
    # Labels only add keys: a label named like a factor (glasses 0/1 vs the rendered kind 0/1/2) must not
    # overwrite what the renderer reads.
    f.update({k: np.asarray(v) for k, v in sf.attributes(f).items() if k not in f})
    return f

  def __repr__(self):
    return f"SyntheticSource(size={self.size}, cfg={self.cfg})"


def make_source(data_cfg=None):
  """A SyntheticSource from a data config (fields of WorldConfig, plus optional `size`)."""
  size = 1_000_000
  if data_cfg is not None:
    items = dict(data_cfg.items()) if hasattr(data_cfg, "items") else dict(vars(data_cfg))
    size = int(items.get("size", size) or size)
  return SyntheticSource(data_cfg, size)


def multiview_factors(index, num_views, cfg=None, max_yaw=None, max_pitch=None):
  """One instance (sample `index`) seen from `num_views` cameras: the same factors with the pose replaced
  by a yaw sweep (±max_yaw degrees, default cfg.max_yaw) and alternating pitch; roll and translation 0.
  Returns (batched factors, cam2world [K,4,4] in the OpenCV convention SofGAN uses (x right, y down,
  z forward; the world is the face model frame), intrinsics [3,3] at 256² (scale by R/256))."""
  cfg = sf.as_world_config(cfg)
  if num_views < 1:
    raise ConfigError(f"num_views must be >= 1, got {num_views}")
  max_yaw = cfg.max_yaw if max_yaw is None else max_yaw
  max_pitch = cfg.max_pitch / 2 if max_pitch is None else max_pitch
  base = sf.sample_factors(index, cfg)
  yaws = np.deg2rad(np.linspace(-max_yaw, max_yaw, num_views)) if num_views > 1 else np.zeros(1)
  pitches = np.deg2rad(max_pitch) * np.where(np.arange(num_views) % 2 == 0, 1.0, -1.0) * (num_views > 1)
  views, cams = [], []
  for yaw, pitch in zip(yaws, pitches):
    f = dict(base)
    f["angle"] = np.array([pitch, yaw, 0.0], np.float32)
    f["trans"] = np.zeros(3, np.float32)
    views.append(f)
    # Rotating the head by R before a fixed camera = a camera at R^T·(0,0,10) looking at the origin.
    rot = np.asarray(sr.cam_lib.euler_rotation(jnp.asarray(f["angle"])))
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T @ np.diag([1.0, -1.0, -1.0])
    c2w[:3, 3] = rot.T @ np.array([0.0, 0.0, sr.CAMERA_Z])
    cams.append(c2w)
  k = np.array([[cfg.focal, 0, 128.0], [0, cfg.focal, 128.0], [0, 0, 1]])
  return sf.stack(views), np.stack(cams).astype(np.float32), k.astype(np.float32)


def prepare_items(n, resolution, cfg=None, batch_size=32):
  """Yields n dicts: image (uint8 [R,R,3]) plus numeric ground truth, for `jaxface.data.prepare`."""
  cfg = sf.as_world_config(cfg)
  if n < 1:
    raise UserError(f"synthetic:N needs N >= 1, got {n}")
  for start in range(0, n, batch_size):
    idx = list(range(start, min(n, start + batch_size)))
    out = render_items(idx, resolution, cfg, batch_size)
    for j, i in enumerate(idx):
      f = sf.sample_factors(i, cfg)
      meta = {k: f[k] for k in ("index", "identity", "id", "tex", "exp", "angle", "gamma", "trans")}
      meta.update({k: np.asarray(v) for k, v in sf.attributes(f).items()})
      meta.update(seg=out["seg"][j].astype(np.uint8), landmarks68=out["landmarks68"][j],
                  landmarks468=out["landmarks468"][j])
      yield {"image": to_uint8(out["image"][j]), **meta}


def contact_sheet(n=64, resolution=128, cfg=None, start=0):
  """uint8 grid of n samples (square-ish), for eyeballing the world."""
  out = render_items(range(start, start + n), resolution, cfg, batch_size=min(n, 32))
  cols = int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  grid = np.ones((rows * resolution, cols * resolution, 3), np.uint8) * 255
  for i, img in enumerate(to_uint8(out["image"])):
    r, c = divmod(i, cols)
    grid[r * resolution:(r + 1) * resolution, c * resolution:(c + 1) * resolution] = img
  return grid


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.data.synthetic", description=__doc__.splitlines()[0])
  p.add_argument("--sheet", required=True, help="output PNG path of the contact sheet")
  p.add_argument("--n", type=int, default=64, help="samples on the sheet, 1 to 4096")
  p.add_argument("--resolution", type=int, default=128, help="render resolution of each sample")
  p.add_argument("--seed", type=int, default=0, help="world seed")
  p.add_argument("--start", type=int, default=0, help="first sample index")
  args = p.parse_args(argv)
  if args.n < 1 or args.n > 4096:
    raise UserError(f"--n must be in [1, 4096], got {args.n}")
  import os
  from PIL import Image
  parent = os.path.dirname(os.path.abspath(args.sheet))
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise UserError(f"cannot write the sheet to {args.sheet!r}: {parent} is not a writable folder; create it "
                    "or pass another path")
  grid = contact_sheet(args.n, args.resolution, sf.WorldConfig(seed=args.seed), args.start)
  try:
    Image.fromarray(grid).save(args.sheet)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot write the sheet to {args.sheet!r} ({e}); pass a writable .png path") from e
  print(f"wrote {args.sheet}: {args.n} samples at {args.resolution}²")


if __name__ == "__main__":
  sys.exit(main())
