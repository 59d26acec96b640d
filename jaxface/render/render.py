"""Coefficients -> image, mask, landmarks, depth; and the dense flow between two renders.

Composes face_model (shape, albedo, normals), camera (rigid pose, projection), lighting (SH) and
rasterize (rasterize -> interpolate -> antialias). Unbatched: vmap over a batch of coefficient dicts.
Coefficient dicts hold the groups id, exp, tex, angle (radians, x/y/z), gamma (27), trans (3); make them
from flat vectors with `face_model.split_coeffs(x, layout, order)` and an explicit order.
"""

import jax
import jax.numpy as jnp

from jaxface.render import camera as cam_lib
from jaxface.render import face_model as fm_lib
from jaxface.render import lighting
from jaxface.render import rasterize as rast


DISPLAY_GAMMA = 2.2  # the synthetic world's display transfer: albedo and light are linear, images are ^(1/2.2)


def to_display(image, gamma=DISPLAY_GAMMA, floor=1e-4):
  """Linear radiance -> display values, clip(image, floor, 1) ** (1/gamma). The floor keeps the gradient finite
  where the image is black (R-Net's photometric loss differentiates through it)."""
  return jnp.clip(image, floor, 1.0) ** (1.0 / gamma)


def _resolution(camera, resolution):
  if resolution is None:
    return camera.size
  if isinstance(resolution, int):
    return (resolution, resolution)
  return (int(resolution[0]), int(resolution[1]))


def face_geometry(fm, coeffs):
  """World-space vertices [V,3] and rotated unit normals [V,3] for a coefficient dict."""
  verts = fm_lib.shape(fm, coeffs["id"], coeffs["exp"])
  normals = fm_lib.vertex_normals(fm, verts)
  rot = cam_lib.euler_rotation(coeffs["angle"])
  verts_w = jnp.matmul(verts, rot.T, precision=jax.lax.Precision.HIGHEST) + coeffs["trans"]
  normals_w = jnp.matmul(normals, rot.T, precision=jax.lax.Precision.HIGHEST)
  return verts_w, normals_w


def vertex_colors(fm, coeffs, normals_w):
  """SH-shaded per-vertex colours [V,3] (0..1 scale before clipping)."""
  return lighting.shade(fm_lib.albedo(fm, coeffs["tex"]), normals_w, coeffs["gamma"])


def render(fm, coeffs, camera, resolution=None, *, antialias=True, background=0.0, window=None,
           capacity=None, clip=True):
  """Renders one face. Returns a dict:

    image [H,W,3] (0..1; background `background`, clipped to [0,1] when `clip`), mask [H,W] (coverage,
    soft at silhouettes when `antialias`), landmarks [68,2] (pixels at this resolution: x right, y down,
    pixel centres at +0.5), depth [H,W] (camera-space distance of the visible surface, 0 on background),
    verts_ndc [V,3] (x/w, y/w, z/w of all vertices), tri_id [H,W] and overflow (from the rasterizer).
  resolution: (H, W) or an int; default the camera's size (rendering elsewhere rescales the frame).
  The sub-mesh `fm.render_tri` is rasterized (DiscoFaceGAN's gan_mask region for BFM).
  """
  hw = _resolution(camera, resolution)
  verts_w, normals_w = face_geometry(fm, coeffs)
  colors = vertex_colors(fm, coeffs, normals_w)
  pos_clip = cam_lib.project_clip(camera, verts_w)
  tri = fm.render_tri
  kw = {}
  if window is not None:
    kw["window"] = window
  if capacity is not None:
    kw["capacity"] = capacity
  frags = rast.rasterize(pos_clip, tri, hw, **kw)
  covered = (frags.tri_id >= 0).astype(jnp.float32)[..., None]
  attrs = jnp.concatenate([colors, pos_clip[:, 3:4]], -1)
  pix = rast.interpolate(attrs, frags, tri)
  rgb, depth = pix[..., :3], pix[..., 3] * covered[..., 0]
  bg = jnp.broadcast_to(jnp.asarray(background, jnp.float32), rgb.shape)
  rgba = jnp.concatenate([rgb * covered + bg * (1.0 - covered), covered], -1)
  if antialias:
    rgba = rast.antialias(rgba, frags, pos_clip, tri, fm.render_topology)
  image, mask = rgba[..., :3], rgba[..., 3]
  if clip:
    image = jnp.clip(image, 0.0, 1.0)
  landmarks = cam_lib.clip_to_pixels(pos_clip[fm.landmarks68], hw)
  verts_ndc = pos_clip[:, :3] / pos_clip[:, 3:4]
  return dict(image=image, mask=mask, landmarks=landmarks, depth=depth, verts_ndc=verts_ndc,
              tri_id=frags.tri_id, overflow=frags.overflow)


def render_flow(fm, coeffs_a, coeffs_b, camera, resolution=None, *, window=None, capacity=None,
                occlusion_tol=0.1):
  """Dense flow [H,W,2] (dx, dy in pixels) from render A's pixels to where the same surface point lands in
  render B, and a validity mask [H,W].

  This is DiscoFaceGAN's expression warp: the per-vertex screen displacement p_B - p_A interpolated over
  the surface visible in A. To sample image A at B's pixels instead (their `dense_image_warp(x1, -F)`),
  rasterize B and call this with A and B swapped. valid = covered in A and, at the target location, the
  point is not hidden in B (B's depth at the nearest pixel within `occlusion_tol` camera units of the
  point's depth; the tolerance must exceed the depth change across one pixel, ~0.01 dm at 224-256 px).
  """
  hw = _resolution(camera, resolution)
  kw = {k: v for k, v in (("window", window), ("capacity", capacity)) if v is not None}
  va, _ = face_geometry(fm, coeffs_a)
  vb, _ = face_geometry(fm, coeffs_b)
  clip_a, clip_b = cam_lib.project_clip(camera, va), cam_lib.project_clip(camera, vb)
  pa, pb = cam_lib.clip_to_pixels(clip_a, hw), cam_lib.clip_to_pixels(clip_b, hw)
  tri = fm.render_tri
  frags_a = rast.rasterize(clip_a, tri, hw, **kw)
  frags_b = rast.rasterize(jax.lax.stop_gradient(clip_b), tri, hw, **kw)
  attrs = jnp.concatenate([pb - pa, clip_b[:, 3:4]], -1)
  pix = rast.interpolate(attrs, frags_a, tri)
  flow, depth_in_b = pix[..., :2], pix[..., 2]
  covered_a = frags_a.tri_id >= 0
  depth_b = rast.interpolate(clip_b[:, 3:4], frags_b, tri)[..., 0]
  rows, cols = jnp.meshgrid(jnp.arange(hw[0]), jnp.arange(hw[1]), indexing="ij")
  tc = jnp.clip(jnp.floor(cols + 0.5 + flow[..., 0]).astype(jnp.int32), 0, hw[1] - 1)
  tr = jnp.clip(jnp.floor(rows + 0.5 + flow[..., 1]).astype(jnp.int32), 0, hw[0] - 1)
  target_depth = depth_b[tr, tc]
  target_cov = frags_b.tri_id[tr, tc] >= 0
  visible = target_cov & (depth_in_b <= target_depth + occlusion_tol)
  valid = covered_a & jax.lax.stop_gradient(visible)
  flow = jnp.where(covered_a[..., None], flow, 0.0)
  return flow, valid.astype(jnp.float32)
