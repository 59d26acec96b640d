"""Euler rotations, rigid transforms, pinhole/orthographic cameras and look-at, as pure functions.

Conventions (as in the Deep3DFaceRecon and DiscoFaceGAN code):
- R = Rz(γ)·Ry(β)·Rx(α) for angles (α, β, γ) = (x, y, z) in radians; points are row vectors transformed
  as V·Rᵀ + t.
- The face lives in world space facing +z; the default camera sits at (0, 0, d) looking at the origin
  with +y up (d = 10 dm), so camera depth is d - z.
- Pixel coordinates: x to the right, y down, pixel (c, r) spans [c, c+1)×[r, r+1), so pixel centres are at
  +0.5. The original code's v axis points up (row = H - v); that flip happens here once.
A `Camera` stores a world->camera `view` matrix (OpenGL style: the camera looks down its -z axis), a focal
length and principal point in pixels (principal point measured with y up, as in the original code), the
image size it was defined for and near/far planes. Rendering at another resolution rescales everything.
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxface.errors import ConfigError

_HP = jax.lax.Precision.HIGHEST


def euler_rotation(angles):
  """Rotation matrix [3,3] = Rz·Ry·Rx for angles [3] = (x, y, z) in radians."""
  ax, ay, az = angles[0], angles[1], angles[2]
  one, zero = jnp.ones_like(ax), jnp.zeros_like(ax)
  rx = jnp.stack([jnp.stack([one, zero, zero]), jnp.stack([zero, jnp.cos(ax), -jnp.sin(ax)]),
                  jnp.stack([zero, jnp.sin(ax), jnp.cos(ax)])])
  ry = jnp.stack([jnp.stack([jnp.cos(ay), zero, jnp.sin(ay)]), jnp.stack([zero, one, zero]),
                  jnp.stack([-jnp.sin(ay), zero, jnp.cos(ay)])])
  rz = jnp.stack([jnp.stack([jnp.cos(az), -jnp.sin(az), zero]), jnp.stack([jnp.sin(az), jnp.cos(az), zero]),
                  jnp.stack([zero, zero, one])])
  return jnp.matmul(rz, jnp.matmul(ry, rx, precision=_HP), precision=_HP)


def rigid_transform(verts, angles, trans):
  """V·Rᵀ + t for verts [V,3], angles [3] (radians), trans [3]."""
  return jnp.matmul(verts, euler_rotation(angles).T, precision=_HP) + trans


def look_at(eye, target, up=(0.0, 1.0, 0.0)):
  """World->camera view matrix [4,4] for a camera at `eye` looking at `target` (camera looks down -z)."""
  eye, target, up = (jnp.asarray(a, jnp.float32) for a in (eye, target, up))
  fwd = target - eye
  fwd = fwd / jnp.linalg.norm(fwd)
  right = jnp.cross(fwd, up)
  right = right / jnp.linalg.norm(right)
  true_up = jnp.cross(right, fwd)
  rot = jnp.stack([right, true_up, -fwd])
  top = jnp.concatenate([rot, -(rot @ eye)[:, None]], axis=1)
  return jnp.concatenate([top, jnp.array([[0.0, 0.0, 0.0, 1.0]], jnp.float32)], axis=0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Camera:
  """A camera: `view` [4,4], `focal` (pixels; for orthographic: pixels per world unit), principal point
  `cx`, `cy` (pixels, y measured upwards) — differentiable leaves; `width`, `height`, `near`, `far`,
  `ortho` static."""
  view: jax.Array
  focal: jax.Array
  cx: jax.Array
  cy: jax.Array
  width: int = dataclasses.field(default=256, metadata=dict(static=True))
  height: int = dataclasses.field(default=256, metadata=dict(static=True))
  near: float = dataclasses.field(default=5.0, metadata=dict(static=True))
  far: float = dataclasses.field(default=15.0, metadata=dict(static=True))
  ortho: bool = dataclasses.field(default=False, metadata=dict(static=True))

  @property
  def size(self):
    return (self.height, self.width)


def perspective(focal, cx, cy, width, height, distance=10.0, near=5.0, far=15.0, view=None):
  """Pinhole camera at (0, 0, distance) looking at the origin (or at `view`), focal/principal point in px."""
  if view is None:
    view = jnp.eye(4, dtype=jnp.float32).at[2, 3].set(-jnp.asarray(distance, jnp.float32))
  return Camera(view=jnp.asarray(view, jnp.float32), focal=jnp.asarray(focal, jnp.float32),
                cx=jnp.asarray(cx, jnp.float32), cy=jnp.asarray(cy, jnp.float32), width=int(width),
                height=int(height), near=float(near), far=float(far), ortho=False)


def orthographic(scale, width, height, cx=None, cy=None, distance=10.0, near=5.0, far=15.0, view=None):
  """Orthographic camera: `scale` pixels per world unit, looking down -z from (0, 0, distance)."""
  cam = perspective(scale, width / 2 if cx is None else cx, height / 2 if cy is None else cy, width, height,
                    distance, near, far, view)
  return dataclasses.replace(cam, ortho=True)


PRESETS = {
    # Deep3DFaceRecon / R-Net frame: 224², f = 1015, c = 112, camera distance 10 (fov 12.594°).
    "d3dfr224": dict(focal=1015.0, cx=112.0, cy=112.0, width=224, height=224),
    # DiscoFaceGAN GAN frame: 256², f = 1015·1.22, c = 128 (fov 11.80°).
    "disco256": dict(focal=1015.0 * 1.22, cx=128.0, cy=128.0, width=256, height=256),
}


def camera_preset(name, **overrides):
  """A named camera ("d3dfr224", "disco256"); keyword overrides go to `perspective`."""
  if name not in PRESETS:
    raise ConfigError(f"unknown camera preset {name!r}; choose one of {sorted(PRESETS)}.")
  return perspective(**{**PRESETS[name], **overrides})


def to_camera(cam: Camera, verts):
  """World points [V,3] -> camera-frame points [V,3] (camera looks down -z)."""
  return jnp.matmul(verts, cam.view[:3, :3].T, precision=_HP) + cam.view[:3, 3]


def project_clip(cam: Camera, verts):
  """World points [V,3] -> clip-space [V,4] for `rasterize` (resolution independent)."""
  pc = to_camera(cam, verts)
  depth = -pc[:, 2]
  w_, h_ = float(cam.width), float(cam.height)
  n, f = cam.near, cam.far
  if cam.ortho:
    x = (2.0 * cam.focal / w_) * pc[:, 0] + (2.0 * cam.cx / w_ - 1.0)
    y = (2.0 * cam.focal / h_) * pc[:, 1] + (2.0 * cam.cy / h_ - 1.0)
    z = (2.0 * depth - f - n) / (f - n)
    return jnp.stack([x, y, z, jnp.ones_like(z)], -1)
  x = (2.0 * cam.focal / w_) * pc[:, 0] + (2.0 * cam.cx / w_ - 1.0) * depth
  y = (2.0 * cam.focal / h_) * pc[:, 1] + (2.0 * cam.cy / h_ - 1.0) * depth
  z = ((f + n) * depth - 2.0 * f * n) / (f - n)
  return jnp.stack([x, y, z, depth], -1)


def clip_to_pixels(pos_clip, resolution):
  """Clip-space [V,4] -> pixel coordinates [V,2] (x right, y down, centres at +0.5) at (H, W)."""
  h, w = resolution
  ndc = pos_clip[:, :2] / pos_clip[:, 3:4]
  return jnp.stack([(ndc[:, 0] + 1.0) * (w / 2.0), (1.0 - ndc[:, 1]) * (h / 2.0)], -1)


def project_pixels(cam: Camera, verts, resolution=None):
  """World points [V,3] -> pixel coordinates [V,2] at `resolution` (default: the camera's own size)."""
  return clip_to_pixels(project_clip(cam, verts), cam.size if resolution is None else resolution)
