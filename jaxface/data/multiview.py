"""Multi-view label renders of synthetic-world instances: SofGAN's SOF data contract.

An instance is one synthetic-world sample (`synthetic.multiview_factors(index, ...)`): its head seen from
`num_views` cameras on a yaw sweep (±max_yaw) with alternating pitch (±max_pitch), at camera distance 10 dm.
Each view gives a label map (`synthetic.render_batch(...)["seg"]`), its cam2world (OpenCV: x right, y down,
z forward) and the intrinsics scaled to the resolution. `heldout_views` evenly spaced interior views of every
instance are held out of training (the novel-view test of a 3D field; a 2D decoder cannot fake them).

Label space: SOF predicts the world's 16 classes (`synthetic.CLASSES`: l/r brows, eyes, noses and ears split;
glasses; no cloth or hat). SofGAN's 17-class generator space is reached with `synthetic_world.TO_SOFGAN17`,
which the texture branch applies to SOF renders; SOF itself never sees it.
Camera: the world's renderer is perspective only (synthetic_render.camera: pinhole at 10 dm); rendering
orthographic truth would need a camera argument there, so SOF training on this world is perspective. The SOF
model and render/raymarch.py support orthographic rays (SofGAN's inference camera) for rendering.

Renders are cached as .npz under $JAXFACE_CACHE/multiview/, keyed by everything that changes them, so
training and evaluation never re-render.
"""

import hashlib
import json
import os

import numpy as np

from jaxface import assets
from jaxface.data import synthetic
from jaxface.data import synthetic_factors as sf
from jaxface.errors import ConfigError
from jaxface.render import raymarch

# A palette for label maps (synthetic.CLASSES order); background black.
PALETTE = np.array([
    [0, 0, 0], [224, 172, 140], [110, 60, 30], [150, 80, 40], [30, 120, 255], [0, 200, 200], [255, 140, 0],
    [255, 200, 60], [120, 0, 60], [230, 40, 80], [180, 20, 120], [120, 200, 60], [60, 160, 20], [200, 200, 255],
    [160, 120, 100], [80, 40, 160]], np.uint8)


def colourise(labels):
  """Label maps [..., H, W] (ints) -> uint8 colours [..., H, W, 3]."""
  return PALETTE[np.clip(np.asarray(labels), 0, len(PALETTE) - 1)]


def heldout_indices(num_views, heldout):
  """Evenly spaced interior view indices (never the sweep's ends, which a field cannot interpolate to)."""
  if heldout < 0 or heldout > max(num_views - 2, 0):
    raise ConfigError(f"heldout_views={heldout} must be in [0, num_views - 2] = [0, {max(num_views - 2, 0)}] "
                      f"(the first and last views always train).")
  if heldout == 0:
    return np.zeros(0, np.int64)
  idx = np.unique(np.round(np.linspace(1, num_views - 2, heldout + 2)[1:-1]).astype(np.int64)) if heldout < \
      num_views - 2 else np.arange(1, num_views - 1)
  return idx


def _world_cfg(data_cfg):
  return sf.as_world_config(data_cfg)


def cache_key(instances, num_views, resolution, data_cfg, max_yaw, max_pitch):
  cfg = _world_cfg(data_cfg)
  spec = json.dumps({"instances": [int(i) for i in instances], "views": int(num_views), "res": int(resolution),
                     "world": repr(cfg), "yaw": float(max_yaw), "pitch": float(max_pitch), "v": 1}, sort_keys=True)
  digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
  return os.path.join(assets.cache_dir(), "multiview", f"{digest}.npz")


def render_instances(instances, num_views, resolution, data_cfg=None, max_yaw=45.0, max_pitch=10.0, cache=True):
  """Label maps of each instance from each view, cached. Returns dict of numpy arrays:
  seg uint8 [I, V, R, R], c2w float32 [I, V, 4, 4], k float32 [3, 3] (at R), yaw/pitch float32 [V] (radians),
  instances int64 [I]."""
  import jax
  instances = np.asarray(list(instances), np.int64)
  if len(instances) < 1:
    raise ConfigError("multi-view data needs at least one instance.")
  resolution = synthetic._check_resolution(resolution)
  cfg = _world_cfg(data_cfg)
  path = cache_key(instances, num_views, resolution, data_cfg, max_yaw, max_pitch)
  if cache and os.path.exists(path):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  render = jax.jit(lambda f: synthetic.render_batch(f, resolution, cfg)["seg"])
  segs, cams = [], []
  k = None
  for index in instances:
    fs, c2w, k = synthetic.multiview_factors(int(index), num_views, cfg, max_yaw, max_pitch)
    segs.append(np.asarray(render({key: fs[key] for key in synthetic.RENDER_KEYS})).astype(np.uint8))
    cams.append(c2w)
  k = k.copy()
  k[:2] *= resolution / 256.0
  angles = np.asarray(fs["angle"], np.float32)
  out = {"seg": np.stack(segs), "c2w": np.stack(cams).astype(np.float32), "k": k.astype(np.float32),
         "pitch": angles[:, 0], "yaw": angles[:, 1], "instances": instances}
  if cache:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **out)
    os.replace(tmp, path)  # atomic: a concurrent reader sees a whole file or none
  return out


def load(config):
  """The training set of a configs/sof.py config: renders plus train/held-out view indices."""
  mv = config.multiview
  data = render_instances(range(mv.first_instance, mv.first_instance + mv.num_instances), mv.num_views,
                          config.data.resolution, config.data, mv.max_yaw, mv.max_pitch)
  held = heldout_indices(mv.num_views, mv.heldout_views)
  data["heldout_views"] = held
  data["train_views"] = np.setdiff1d(np.arange(mv.num_views), held)
  return data


class RayBatches:
  """Infinite, resumable batches of rays for SOF training: each of the `batch_size` elements is one (instance,
  training view) with `rays_per_view` pixels drawn uniformly (0 = the whole view, as released); a `balance`
  fraction of them is drawn class-balanced instead (a departure from the release, which sees whole views: at
  64² an eye is ~0.1% of a view's pixels and is otherwise never learned, while mIoU weighs it like the skin). Batch step n
  depends only on (seed, n), so `get_state`/`set_state` is just n. This process gets its slice of each global
  batch."""

  def __init__(self, data, batch_size, rays_per_view, seed, process_index=0, process_count=1, balance=0.0,
               balance_after=0):
    self.seg = data["seg"]
    self.c2w = data["c2w"]
    self.k = data["k"]
    self.train_views = data["train_views"]
    self.res = self.seg.shape[-1]
    self.rays = int(rays_per_view) if 0 < rays_per_view < self.res ** 2 else self.res ** 2
    self.batch_size, self.seed, self.n = int(batch_size), int(seed), 0
    if not 0.0 <= balance <= 1.0:
      raise ConfigError(f"multiview.balance={balance} must be in [0, 1].")
    self.balance = float(balance) if self.rays < self.res ** 2 else 0.0
    self.balance_after = int(balance_after)  # uniform rays for the first steps: balancing from step 0 can diverge
    per = self.batch_size // process_count
    self.lo, self.hi = process_index * per, (process_index + 1) * per
    self.grid = raymarch.pixel_grid(self.res, self.res)

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, self.n])
    self.n += 1
    inst = rng.integers(0, self.seg.shape[0], self.batch_size)
    view = self.train_views[rng.integers(0, len(self.train_views), self.batch_size)]
    if self.rays == self.res ** 2:
      pix = np.broadcast_to(np.arange(self.rays), (self.batch_size, self.rays))
    else:
      pix = rng.integers(0, self.res ** 2, (self.batch_size, self.rays))
    n_bal = int(round(self.balance * self.rays)) if self.n > self.balance_after else 0
    if n_bal:  # class-balanced rays: every class present in the view is drawn equally often
      for j in range(self.batch_size):
        lab = self.seg[inst[j], view[j]].reshape(-1)
        w = 1.0 / np.bincount(lab)[lab]
        pix[j, :n_bal] = rng.choice(lab.size, n_bal, p=w / w.sum())
    sl = slice(self.lo, self.hi)
    inst, view, pix = inst[sl], view[sl], pix[sl]
    labels = self.seg[inst, view].reshape(len(inst), -1)
    return {"inst": inst.astype(np.int32), "c2w": self.c2w[inst, view],
            "k": np.broadcast_to(self.k, (len(inst), 3, 3)).copy(), "uv": self.grid[pix],
            "labels": np.take_along_axis(labels, pix, 1).astype(np.int32)}

  def get_state(self):
    return {"n": self.n}

  def set_state(self, state):
    self.n = int(state["n"])
