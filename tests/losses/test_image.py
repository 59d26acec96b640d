"""losses/image.py: bilinear warp vs hand-built displacements and an independent numpy reference, its
gradient vs central finite differences (float64), Gaussian blur vs scipy, masked helpers vs numpy."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from jaxface.losses import image as im


def np_bilinear_warp(img, flow):
  """Independent reference: loops over pixels, clamped query, explicit four-neighbour weights."""
  h, w, c = img.shape
  out = np.zeros_like(img)
  for y in range(h):
    for x in range(w):
      qx = min(max(x + flow[y, x, 0], 0.0), w - 1.0)
      qy = min(max(y + flow[y, x, 1], 0.0), h - 1.0)
      x0, y0 = int(np.floor(qx)), int(np.floor(qy))
      x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
      ax, ay = qx - x0, qy - y0
      out[y, x] = ((1 - ay) * ((1 - ax) * img[y0, x0] + ax * img[y0, x1])
                   + ay * ((1 - ax) * img[y1, x0] + ax * img[y1, x1]))
  return out


def test_warp_zero_flow_is_identity_and_integer_shift_is_exact():
  rng = np.random.default_rng(0)
  img = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(im.warp(img, np.zeros((2, 9, 11, 2), np.float32))), img)
  # Constant displacement (dx, dy) = (2, -1): out[y, x] = img[y - 1, x + 2] wherever that pixel exists.
  flow = np.broadcast_to(np.array([2.0, -1.0], np.float32), (2, 9, 11, 2))
  out = np.asarray(im.warp(img, flow))
  np.testing.assert_array_equal(out[:, 1:, :-2], img[:, :-1, 2:])
  # Outside, the query is clamped to the border (edge replication).
  np.testing.assert_array_equal(out[:, 0, :-2], img[:, 0, 2:])
  np.testing.assert_array_equal(out[:, 1:, -1], img[:, :-1, -1])


def test_warp_subpixel_translation_of_a_linear_ramp_is_exact():
  # Bilinear interpolation reproduces affine images exactly, so a sub-pixel shift of a ramp is known.
  h, w = 8, 10
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  ramp = np.stack([0.3 * xx - 0.2 * yy + 1, 0.1 * xx + 0.5 * yy, -0.7 * xx], -1).astype(np.float32)
  d = np.array([0.35, 1.6], np.float32)
  out = np.asarray(im.warp(ramp, np.broadcast_to(d, (h, w, 2))))
  expect = np.stack([0.3 * (xx + d[0]) - 0.2 * (yy + d[1]) + 1, 0.1 * (xx + d[0]) + 0.5 * (yy + d[1]),
                     -0.7 * (xx + d[0])], -1)
  inside = (xx + d[0] <= w - 1) & (yy + d[1] <= h - 1)  # the query stays in the image
  np.testing.assert_allclose(out[inside], expect[inside], atol=1e-5)
  assert inside.sum() > 40


def test_warp_matches_numpy_reference_for_random_flow():
  rng = np.random.default_rng(1)
  img = rng.normal(size=(7, 6, 2)).astype(np.float32)
  flow = rng.uniform(-3, 3, size=(7, 6, 2)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(im.warp(img, flow)), np_bilinear_warp(img, flow), atol=1e-5)
  # batched == per image
  b = np.stack([img, img[::-1]]), np.stack([flow, -flow])
  got = np.asarray(im.warp(*b))
  np.testing.assert_allclose(got[1], np_bilinear_warp(img[::-1], -flow), atol=1e-5)


def test_warp_gradient_matches_finite_differences():
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    img = jnp.asarray(rng.normal(size=(5, 6, 2)))
    # Keep queries away from integer positions (kinks) and inside the image.
    flow = jnp.asarray(rng.uniform(0.1, 0.4, size=(5, 6, 2)) * rng.choice([-1, 1], size=(5, 6, 2)))
    weight = jnp.asarray(rng.normal(size=(5, 6, 2)))

    @jax.jit
    def f(i, fl):
      return jnp.sum(im.warp(i, fl) * weight)

    gi, gf = jax.grad(f, argnums=(0, 1))(img, flow)
    eps = 1e-6
    for arg, g in ((0, gi), (1, gf)):
      base = (img, flow)
      for idx in [(0, 0, 0), (2, 3, 1), (4, 5, 0), (1, 4, 1), (3, 1, 0)]:
        plus, minus = list(base), list(base)
        plus[arg] = base[arg].at[idx].add(eps)
        minus[arg] = base[arg].at[idx].add(-eps)
        fd = (f(*plus) - f(*minus)) / (2 * eps)
        np.testing.assert_allclose(float(g[idx]), float(fd), rtol=1e-6, atol=1e-8)
    assert float(jnp.abs(gf).sum()) > 0


def test_gaussian_kernel_and_blur_match_scipy():
  k = im.gaussian_kernel(5, 2.0)
  r = np.arange(-2, 3)
  ref = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 8.0)
  np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-6)
  rng = np.random.default_rng(3)
  img = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
  out = np.asarray(im.gaussian_blur(img))
  for b in range(2):
    for c in range(3):  # zero padding, like TF 'SAME' depthwise conv
      np.testing.assert_allclose(out[b, ..., c], ndimage.convolve(img[b, ..., c], k, mode="constant"),
                                 atol=1e-5)
  np.testing.assert_allclose(np.asarray(im.gaussian_blur(img[0])), out[0], atol=1e-6)


def test_masked_helpers_known_values():
  rng = np.random.default_rng(4)
  a = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  b = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  m = (rng.uniform(size=(2, 4, 5)) > 0.4).astype(np.float32)
  d = a - b
  np.testing.assert_allclose(float(im.masked_l2(a, b, m)),
                             (np.sqrt((d ** 2).sum(-1) + 1e-8) * m).sum() / m.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(im.masked_l1(a, b, m)), (np.abs(d).sum(-1) * m).sum() / m.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(im.masked_mse(a, b, m)), ((d ** 2).sum(-1) * m).sum() / m.sum(), rtol=1e-5)
  mu = np.asarray(im.masked_channel_mean(a, m))
  np.testing.assert_allclose(mu[1], a[1][m[1] > 0].mean(0), rtol=1e-5)
  assert float(im.masked_l2(a, b, np.zeros_like(m))) == 0.0  # empty mask: 0, not NaN
  np.testing.assert_allclose(np.asarray(im.to_unit(np.array([-2.0, 0.0, 0.5]))), [0.0, 0.5, 0.75])
  np.testing.assert_allclose(np.asarray(im.from_unit(np.array([0.0, 1.0]))), [-1.0, 1.0])
