"""A tiny procedural image set that needs no files: colourful face-like cartoons.

Image i is a pure function of (i, resolution): its shape parameters come from a PRNG seeded with i alone,
and the drawing is done in continuous coordinates, so the same face appears at every resolution (only
sharper). This lets the `tiny` presets and the pipeline tests train and run anywhere without a dataset.
Edges are antialiased with a one-pixel linear ramp on an approximate signed distance, so downscaled and
natively rendered images agree closely.
"""

import numpy as np

from jaxface.data.images import check_resolution

DEFAULT_NUM_IMAGES = 4096
_SALT = 0x6A786663  # "jxfc": keeps these streams apart from any other default_rng(i) in the project


def _params(index):
  """All random choices for image `index` (a dict of floats/arrays), drawn in a fixed order."""
  r = np.random.default_rng([_SALT, int(index)])
  p = {}
  p["bg"] = r.uniform(0.0, 1.0, size=(2, 3))                  # two background colours
  p["bg_angle"] = r.uniform(0, 2 * np.pi)
  p["cx"], p["cy"] = r.uniform(-0.12, 0.12), r.uniform(-0.05, 0.15)
  p["a"], p["b"] = r.uniform(0.38, 0.52), r.uniform(0.50, 0.66)   # face half-width / half-height
  p["tilt"] = r.uniform(-0.3, 0.3)
  tone = r.uniform(0.0, 1.0)
  p["skin"] = (1 - tone) * np.array([0.96, 0.80, 0.69]) + tone * np.array([0.40, 0.26, 0.18])
  p["skin"] = np.clip(p["skin"] + r.normal(0, 0.03, size=3), 0, 1)
  p["hair"] = r.uniform(0.0, 1.0, size=3) ** 2 * r.uniform(0.3, 1.0)
  p["hair_size"] = r.uniform(1.02, 1.25)
  p["hair_drop"] = r.uniform(0.05, 0.35)                      # how far the hair reaches below the crown
  p["iris"] = r.uniform(0.0, 0.8, size=3)
  p["eye_y"], p["eye_dx"] = r.uniform(-0.22, -0.08), r.uniform(0.17, 0.26)
  p["eye_w"], p["eye_h"] = r.uniform(0.07, 0.11), r.uniform(0.035, 0.06)
  p["gaze"] = r.uniform(-0.4, 0.4, size=2)
  p["mouth_y"], p["mouth_w"], p["mouth_h"] = r.uniform(0.25, 0.38), r.uniform(0.10, 0.22), r.uniform(0.02, 0.07)
  p["lips"] = np.clip(np.array([0.75, 0.25, 0.30]) + r.normal(0, 0.08, size=3), 0, 1)
  p["light"] = r.uniform(-0.5, 0.5, size=2)
  return p


def _ellipse_coverage(x, y, cx, cy, a, b, angle, px):
  """Antialiased coverage in [0, 1] of a rotated ellipse, from an approximate signed distance."""
  c, s = np.cos(angle), np.sin(angle)
  u = (x - cx) * c + (y - cy) * s
  v = -(x - cx) * s + (y - cy) * c
  sdf = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)
  return np.clip(0.5 - sdf / px, 0.0, 1.0)


def _over(img, colour, alpha):
  alpha = alpha[..., None]
  return img * (1 - alpha) + np.asarray(colour) * alpha


def render(index, resolution):
  """The `index`-th image as uint8 [R, R, 3]; a pure function of (index, resolution)."""
  res = check_resolution(resolution)
  p = _params(index)
  px = 2.0 / res                                   # one pixel in the [-1, 1] frame
  t = (np.arange(res, dtype=np.float64) + 0.5) * px - 1.0
  y, x = np.meshgrid(t, t, indexing="ij")

  g = 0.5 + 0.5 * (x * np.cos(p["bg_angle"]) + y * np.sin(p["bg_angle"])) / np.sqrt(2)
  img = p["bg"][0] * (1 - g[..., None]) + p["bg"][1] * g[..., None]

  cx, cy, a, b, tilt = p["cx"], p["cy"], p["a"], p["b"], p["tilt"]
  c, s = np.cos(tilt), np.sin(tilt)

  def at(u, v):  # face-frame offset -> image coordinates (the face frame tilts with the head)
    return cx + u * c - v * s, cy + u * s + v * c

  hs = p["hair_size"]
  hx, hy = at(0.0, -p["hair_drop"] * b)
  img = _over(img, p["hair"], _ellipse_coverage(x, y, hx, hy, a * hs, b * hs * 0.9, tilt, px))

  face = _ellipse_coverage(x, y, cx, cy, a, b, tilt, px)
  # Lambert-like falloff towards the rim and a random light direction give the face some volume.
  u = ((x - cx) * c + (y - cy) * s) / a
  v = (-(x - cx) * s + (y - cy) * c) / b
  nz = np.sqrt(np.clip(1 - u ** 2 - v ** 2, 0, 1))
  shade = np.clip(0.55 + 0.45 * (nz + p["light"][0] * u + p["light"][1] * v), 0.3, 1.15)
  img = _over(img, np.clip(p["skin"] * shade[..., None], 0, 1), face)

  fringe = _ellipse_coverage(x, y, *at(0.0, -0.95 * b), a * 0.95, b * 0.35, tilt, px)
  img = _over(img, p["hair"], fringe * face)

  for side in (-1.0, 1.0):
    ex, ey = at(side * p["eye_dx"], p["eye_y"])
    img = _over(img, (0.97, 0.97, 0.95), _ellipse_coverage(x, y, ex, ey, p["eye_w"], p["eye_h"], tilt, px))
    ix, iy = at(side * p["eye_dx"] + p["gaze"][0] * p["eye_w"] * 0.4, p["eye_y"] + p["gaze"][1] * p["eye_h"] * 0.3)
    r_iris = p["eye_h"] * 0.85
    img = _over(img, p["iris"], _ellipse_coverage(x, y, ix, iy, r_iris, r_iris, 0.0, px))
    img = _over(img, (0.03, 0.03, 0.03), _ellipse_coverage(x, y, ix, iy, r_iris * 0.45, r_iris * 0.45, 0.0, px))
    bx, by = at(side * p["eye_dx"], p["eye_y"] - 2.2 * p["eye_h"])
    img = _over(img, p["hair"] * 0.8, _ellipse_coverage(x, y, bx, by, p["eye_w"] * 1.2, p["eye_h"] * 0.3, tilt, px))

  nx, ny = at(0.0, 0.08)
  img = _over(img, np.clip(p["skin"] * 0.78, 0, 1), _ellipse_coverage(x, y, nx, ny, 0.035, 0.07, tilt, px))
  mx, my = at(0.0, p["mouth_y"])
  img = _over(img, p["lips"], _ellipse_coverage(x, y, mx, my, p["mouth_w"], p["mouth_h"], tilt, px))
  return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


class GeneratedSource:
  """grain RandomAccessDataSource of `num_images` procedural faces rendered at `resolution`."""

  def __init__(self, resolution, num_images=DEFAULT_NUM_IMAGES):
    self.resolution = check_resolution(resolution)
    self.num_images = int(num_images)
    if self.num_images < 1:
      raise ValueError(f"num_images must be >= 1, got {num_images}")

  def __len__(self):
    return self.num_images

  def __getitem__(self, index):
    index = int(index)
    if not 0 <= index < self.num_images:
      raise IndexError(f"generated image {index} out of range [0, {self.num_images})")
    return {"image": render(index, self.resolution)}

  def describe(self, index):
    return f"generated image {int(index)}"

  def __repr__(self):
    return f"GeneratedSource(num_images={self.num_images}, resolution={self.resolution})"
