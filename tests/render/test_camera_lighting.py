"""Camera conventions (R = Rz·Ry·Rx, pinhole/orthographic, look-at, presets) and SH lighting constants."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxface.errors import ConfigError
from jaxface.render import camera as cam_lib
from jaxface.render import lighting


def test_euler_rotation_is_rz_ry_rx():
  for angles in ([0.3, -0.2, 0.1], [1.0, 0.5, -2.0]):
    want = Rotation.from_euler("xyz", angles).as_matrix()  # extrinsic x, then y, then z = Rz·Ry·Rx
    np.testing.assert_allclose(np.asarray(cam_lib.euler_rotation(jnp.asarray(angles))), want, atol=1e-6)
  pts = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  r = Rotation.from_euler("xyz", [0.1, 0.2, 0.3]).as_matrix()
  got = cam_lib.rigid_transform(jnp.asarray(pts), jnp.array([0.1, 0.2, 0.3]), jnp.array([1.0, 2.0, 3.0]))
  np.testing.assert_allclose(np.asarray(got), pts @ r.T + [1, 2, 3], atol=1e-5)


def test_presets_and_pinhole_formula():
  cam = cam_lib.camera_preset("d3dfr224")
  assert math.degrees(2 * math.atan(112 / float(cam.focal))) == pytest.approx(12.594, abs=1e-3)
  disco = cam_lib.camera_preset("disco256")
  assert float(disco.focal) == pytest.approx(1238.3, abs=0.01) and disco.size == (256, 256)
  pts = np.array([[0.3, -0.2, 0.5], [-0.6, 0.7, -0.4]], np.float32)
  px = np.asarray(cam_lib.project_pixels(cam, jnp.asarray(pts)))
  u = 1015 * pts[:, 0] / (10 - pts[:, 2]) + 112
  v = 1015 * pts[:, 1] / (10 - pts[:, 2]) + 112
  np.testing.assert_allclose(px, np.stack([u, 224 - v], 1), rtol=1e-5)
  # Rendering at another resolution rescales the same frame.
  np.testing.assert_allclose(np.asarray(cam_lib.project_pixels(cam, jnp.asarray(pts), (112, 112))), px / 2,
                             rtol=1e-5)
  clip = np.asarray(cam_lib.project_clip(cam, jnp.asarray(pts)))
  np.testing.assert_allclose(clip[:, 3], 10 - pts[:, 2], rtol=1e-6)
  near = np.asarray(cam_lib.project_clip(cam, jnp.array([[0.0, 0.0, 10.0 - cam.near], [0, 0, 10.0 - cam.far]])))
  np.testing.assert_allclose(near[:, 2] / near[:, 3], [-1, 1], atol=1e-5)
  with pytest.raises(ConfigError):
    cam_lib.camera_preset("nope")


def test_look_at_and_orthographic():
  view = np.asarray(cam_lib.look_at([0.0, 0.0, 10.0], [0.0, 0.0, 0.0]))
  np.testing.assert_allclose(view, np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -10], [0, 0, 0, 1]]),
                             atol=1e-6)
  view = np.asarray(cam_lib.look_at([3.0, 1.0, 2.0], [0.5, -1.0, 0.0]))
  target_cam = view @ np.array([0.5, -1.0, 0.0, 1.0])
  eye_cam = view @ np.array([3.0, 1.0, 2.0, 1.0])
  np.testing.assert_allclose(eye_cam[:3], 0, atol=1e-5)
  np.testing.assert_allclose(target_cam[:2], 0, atol=1e-5)
  assert target_cam[2] < 0  # the camera looks down -z
  ortho = cam_lib.orthographic(50.0, 64, 48)
  px = np.asarray(cam_lib.project_pixels(ortho, jnp.array([[0.2, 0.1, 0.0], [0.2, 0.1, 3.0]])))
  np.testing.assert_allclose(px, [[32 + 10, 24 - 5]] * 2, atol=1e-4)  # depth does not matter


def test_sh_constants_and_ambient():
  n = np.random.default_rng(1).normal(size=(6, 3))
  n /= np.linalg.norm(n, axis=1, keepdims=True)
  x, y, z = n.T
  pi = math.pi
  a0, a1, a2 = pi, 2 * pi / math.sqrt(3), 2 * pi / math.sqrt(8)
  c0, c1, c2 = 1 / math.sqrt(4 * pi), math.sqrt(3) / math.sqrt(4 * pi), 3 * math.sqrt(5) / math.sqrt(12 * pi)
  want = np.stack([np.full_like(x, a0 * c0), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x, a2 * c2 * x * y,
                   -a2 * c2 * y * z, a2 * c2 * 0.5 / math.sqrt(3) * (3 * z ** 2 - 1), -a2 * c2 * x * z,
                   a2 * c2 * 0.5 * (x ** 2 - y ** 2)], 1)
  np.testing.assert_allclose(np.asarray(lighting.sh_basis(jnp.asarray(n, jnp.float32))), want, atol=1e-6)
  gamma = np.random.default_rng(2).normal(size=27).astype(np.float32) * 0.3
  albedo = np.random.default_rng(3).uniform(size=(6, 3)).astype(np.float32)
  g = gamma.reshape(3, 9).copy()
  g[:, 0] += 0.8  # the ambient prior on band 0 of every channel
  np.testing.assert_allclose(np.asarray(lighting.shade(jnp.asarray(albedo), jnp.asarray(n, jnp.float32),
                                                       jnp.asarray(gamma))),
                             albedo * (want @ g.T), rtol=1e-5, atol=1e-6)
  # With gamma = 0 the light is the uniform ambient 0.8·π/(2√π) for every normal.
  flat = np.asarray(lighting.irradiance(jnp.asarray(n, jnp.float32), jnp.zeros(27)))
  np.testing.assert_allclose(flat, 0.8 * pi / (2 * math.sqrt(pi)), rtol=1e-6)
