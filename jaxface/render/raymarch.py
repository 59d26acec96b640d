"""Camera rays and ray-marching geometry for the Semantic Occupancy Field (SofGAN), as pure functions.

Convention (SofGAN/SRN code): OpenCV cameras, x right, y down, z forward; `c2w` is a 4x4
camera-to-world matrix; intrinsics K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels. Pixel coordinates are
(u, v) = (column, row) + `offset`: the synthetic world's rasterizer puts pixel centres at +0.5 (pixel (c, r)
spans [c, c+1) x [r, r+1)), so 0.5 makes our rays hit the pixels its labels describe; SofGAN's own code uses 0.
- perspective: x_cam = ((u - cx)/fx · z, (v - cy)/fy · z, z); rays start at the camera centre.
- orthographic: x_cam = ((u - cx)/fx, (v - cy)/fy, z) (fx = pixels per world unit); every ray's direction is
  R·ẑ and starts on the image plane through the camera centre.
This module's cameras are a different convention from jaxface/render/camera.py (OpenGL, -z forward) on purpose:
it is the one SofGAN's data contract uses, and `synthetic.multiview_factors` already emits it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.errors import UserError

_HP = jax.lax.Precision.HIGHEST


def pixel_grid(height, width, offset=0.5):
  """(u, v) pixel coordinates [H*W, 2] in row-major order (u = column, v = row) plus `offset`."""
  v, u = np.mgrid[0:height, 0:width].astype(np.float32)
  return np.stack([u.reshape(-1), v.reshape(-1)], -1) + np.float32(offset)


def scale_intrinsics(k, scale):
  """K for an image `scale` times the size (fx, fy, cx, cy all scale; the last row stays [0, 0, 1])."""
  k = jnp.asarray(k, jnp.float32)
  return k.at[:2, :].multiply(scale)


def campos2matrix(cam_pos, look_at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)):
  """c2w [4,4] of an OpenCV camera at `cam_pos` looking at `look_at`; `up` is the world's up direction.
  Columns [right, down, forward, position]: forward points at the target, down = forward x right makes a
  right-handed frame (det +1) whose image y axis points against `up`."""
  pos, target, up = (jnp.asarray(a, jnp.float32) for a in (cam_pos, look_at, up))
  fwd = target - pos
  fwd = fwd / jnp.linalg.norm(fwd)
  right = jnp.cross(fwd, up)
  right = right / jnp.linalg.norm(right)
  down = jnp.cross(fwd, right)
  rot = jnp.stack([right, down, fwd], axis=1)
  top = jnp.concatenate([rot, pos[:, None]], axis=1)
  return jnp.concatenate([top, jnp.array([[0.0, 0.0, 0.0, 1.0]], jnp.float32)], axis=0)


def yaw_pitch_c2w(yaw, pitch, distance, look_at=(0.0, 0.0, 0.0)):
  """c2w of a camera on a sphere of radius `distance` around `look_at`: yaw about the world y axis and pitch
  about x (radians), the frontal camera (0, 0) on +z looking down -z. Differentiable in yaw and pitch.
  Matches `synthetic.multiview_factors`: a head rotated by R = Ry(yaw)·Rx(pitch) before the fixed camera is
  the camera at Rᵀ·(0, 0, d)."""
  cy, sy, cp, sp = jnp.cos(yaw), jnp.sin(yaw), jnp.cos(pitch), jnp.sin(pitch)
  ry = jnp.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
  rx = jnp.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
  rt = jnp.matmul(ry, rx, precision=_HP).T
  rot = rt @ jnp.diag(jnp.array([1.0, -1.0, -1.0]))
  pos = rt @ jnp.array([0.0, 0.0, distance]) + jnp.asarray(look_at, jnp.float32)
  top = jnp.concatenate([rot, pos[:, None]], axis=1)
  return jnp.concatenate([top, jnp.array([[0.0, 0.0, 0.0, 1.0]], jnp.float32)], axis=0)


def lift(uv, depth, k, c2w, orthographic=False):
  """Pixels [N,2] at camera depths [N] -> world points [N,3]."""
  x = (uv[:, 0] - k[0, 2]) / k[0, 0]
  y = (uv[:, 1] - k[1, 2]) / k[1, 1]
  if not orthographic:
    x, y = x * depth, y * depth
  cam = jnp.stack([x, y, depth], -1)
  return jnp.matmul(cam, c2w[:3, :3].T, precision=_HP) + c2w[:3, 3]


def world_to_camera(points, c2w):
  """World points [N,3] -> camera-frame points [N,3] (x right, y down, z forward)."""
  return jnp.matmul(points - c2w[:3, 3], c2w[:3, :3], precision=_HP)


def project(points, k, c2w, orthographic=False):
  """World points [N,3] -> (pixels [N,2], camera depth [N]); the inverse of `lift`."""
  cam = world_to_camera(points, c2w)
  z = cam[:, 2]
  x, y = (cam[:, 0], cam[:, 1]) if orthographic else (cam[:, 0] / z, cam[:, 1] / z)
  return jnp.stack([x * k[0, 0] + k[0, 2], y * k[1, 1] + k[1, 2]], -1), z


def depth_from_world(points, c2w):
  """Camera-space z (depth along the optical axis) of world points [N,3]."""
  return world_to_camera(points, c2w)[:, 2]


def rays(uv, k, c2w, orthographic=False):
  """Pixels [N,2] -> (origins [N,3], unit directions [N,3]) in world space."""
  if orthographic:
    origins = lift(uv, jnp.zeros(uv.shape[:1], jnp.float32), k, c2w, orthographic=True)
    return origins, jnp.broadcast_to(c2w[:3, 2], origins.shape)
  ends = lift(uv, jnp.ones(uv.shape[:1], jnp.float32), k, c2w)
  origins = jnp.broadcast_to(c2w[:3, 3], ends.shape)
  d = ends - origins
  return origins, d / jnp.linalg.norm(d, axis=-1, keepdims=True)


def sphere_init(origins, dirs, radius, center=(0.0, 0.0, 0.0), jitter=0.0, rng=None):
  """SOF's start points (as in SofGAN's code): the closest approach of each ray to `center`, moved back to
  the near intersection with the sphere of `radius` where the ray hits it, plus N(0, jitter²) along the ray.
  Returns (distances t [N] along the rays, points [N,3], hit [N] bool). `dirs` must be unit vectors."""
  c = jnp.asarray(center, jnp.float32)
  t_close = jnp.sum((c - origins) * dirs, -1)
  d2 = jnp.sum((origins + t_close[:, None] * dirs - c) ** 2, -1)
  hit = d2 < radius ** 2
  t = jnp.where(hit, t_close - jnp.sqrt(jnp.maximum(radius ** 2 - d2, 0.0)), t_close)
  if jitter and rng is not None:
    t = t + jitter * jax.random.normal(rng, t.shape)
  return t, origins + t[:, None] * dirs, hit


def check_camera(c2w, radius, center=(0.0, 0.0, 0.0), what="camera"):
  """UserError unless the camera (numpy c2w [4,4] or [V,4,4]) sits outside the scene sphere and looks at it:
  a camera inside the sphere or facing away renders nothing the field was trained on."""
  c2w = np.asarray(c2w, np.float64).reshape(-1, 4, 4)
  c = np.asarray(center, np.float64)
  for i, m in enumerate(c2w):
    if not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:3, :3]) - 1.0) > 1e-3:
      raise UserError(f"{what} {i}: cam2world must be a finite rigid transform (rotation det +1); got\n{m}")
    pos, fwd = m[:3, 3], m[:3, 2]
    dist = np.linalg.norm(pos - c)
    if dist <= radius:
      raise UserError(f"{what} {i} is out of range: it sits {dist:.3g} from the scene centre, inside the scene "
                      f"sphere of radius {radius:g}; place it farther than {radius:g} (the training cameras are at "
                      f"about 10).")
    closest = np.linalg.norm(pos + np.dot(c - pos, fwd) * fwd - c)
    if np.dot(c - pos, fwd) <= 0 or closest >= radius:
      raise UserError(f"{what} {i} is out of range: its optical axis misses the scene sphere (radius {radius:g} "
                      f"around {tuple(c)}); point it at the head.")
