import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.errors import UserError
from jaxface.render import raymarch

K = np.array([[40.0, 0, 17.0], [0, 44.0, 15.0], [0, 0, 1]], np.float32)


def random_c2w(seed):
  rng = np.random.default_rng(seed)
  pos = rng.normal(size=3) * 3 + np.array([0, 0, 8.0])
  return raymarch.campos2matrix(pos, rng.normal(size=3) * 0.2)


def assert_close(a, b, tol=1e-4):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=tol)


@pytest.mark.parametrize("seed", range(4))
def test_campos2matrix_is_a_rotation_looking_at_the_target(seed):
  rng = np.random.default_rng(seed)
  pos, target = rng.normal(size=3) * 4, rng.normal(size=3)
  m = np.asarray(raymarch.campos2matrix(pos, target))
  r = m[:3, :3]
  assert_close(r.T @ r, np.eye(3), 1e-5)
  assert abs(np.linalg.det(r) - 1.0) < 1e-5
  assert_close(m[:3, 3], pos, 1e-6)
  fwd = (target - pos) / np.linalg.norm(target - pos)
  assert_close(r[:, 2], fwd, 1e-5)
  assert r[:, 1] @ np.array([0.0, 1.0, 0.0]) <= 1e-6  # image y (down) never points along world up


def test_frontal_camera_matches_the_worlds_multiview_cameras():
  """yaw_pitch_c2w reproduces synthetic.multiview_factors' cam2world (factors only, no rendering)."""
  from jaxface.data import synthetic, synthetic_render as sr
  f, c2w, _ = synthetic.multiview_factors(0, 5, None, 40.0, 8.0)
  for angle, m in zip(f["angle"], c2w):
    assert_close(raymarch.yaw_pitch_c2w(angle[1], angle[0], sr.CAMERA_Z), m, 1e-5)
  front = raymarch.campos2matrix((0.0, 0.0, 10.0))
  assert_close(front, raymarch.yaw_pitch_c2w(0.0, 0.0, 10.0), 1e-6)


@pytest.mark.parametrize("ortho", [False, True])
def test_lift_then_project_is_identity(ortho):
  c2w = random_c2w(1)
  rng = np.random.default_rng(0)
  uv = jnp.asarray(rng.uniform(0, 32, (50, 2)), jnp.float32)
  depth = jnp.asarray(rng.uniform(2, 12, 50), jnp.float32)
  pts = raymarch.lift(uv, depth, K, c2w, ortho)
  uv2, d2 = raymarch.project(pts, K, c2w, ortho)
  assert_close(uv2, uv, 1e-3)
  assert_close(d2, depth, 1e-4)
  assert_close(raymarch.depth_from_world(pts, c2w), depth, 1e-4)  # depth = camera z


def test_orthographic_rays_are_parallel_along_the_optical_axis():
  c2w = random_c2w(2)
  uv = jnp.asarray(raymarch.pixel_grid(8, 8))
  o, d = raymarch.rays(uv, K, c2w, orthographic=True)
  assert_close(d, jnp.broadcast_to(c2w[:3, :3] @ jnp.array([0.0, 0, 1]), d.shape), 1e-6)
  assert_close(raymarch.depth_from_world(o, c2w), np.zeros(64), 1e-4)  # origins on the camera plane
  uv2, _ = raymarch.project(o + 3.0 * d, K, c2w, orthographic=True)
  assert_close(uv2, uv, 1e-3)


def test_perspective_rays_pass_through_their_pixels():
  c2w = random_c2w(3)
  uv = jnp.asarray(raymarch.pixel_grid(6, 7))
  o, d = raymarch.rays(uv, K, c2w)
  assert_close(jnp.linalg.norm(d, axis=-1), np.ones(42), 1e-6)
  assert_close(o, jnp.broadcast_to(c2w[:3, 3], o.shape), 1e-6)
  uv2, z = raymarch.project(o + 5.0 * d, K, c2w)
  assert_close(uv2, uv, 1e-3)
  assert np.all(np.asarray(z) > 0)
  assert_close(raymarch.pixel_grid(2, 3, offset=0.0)[:4], [[0, 0], [1, 0], [2, 0], [0, 1]], 0)


def test_sphere_init_hits_the_sphere_and_misses_stay_at_closest_approach():
  c2w = raymarch.campos2matrix((0.3, 0.2, 6.0), (0.0, 0.0, 0.0))
  center, radius = np.array([0.1, -0.2, 0.3]), 1.2
  uv = jnp.asarray(raymarch.pixel_grid(16, 16))
  o, d = raymarch.rays(uv, jnp.asarray(K) * jnp.array([[0.3], [0.3], [1.0]]), c2w)
  t, x, hit = raymarch.sphere_init(o, d, radius, center)
  hit, x = np.asarray(hit), np.asarray(x)
  assert 0 < hit.sum() < hit.size  # the test covers both cases
  r = np.linalg.norm(x - center, axis=-1)
  assert_close(r[hit], np.full(hit.sum(), radius), 1e-4)
  assert np.all(r[~hit] >= radius - 1e-5)
  assert_close(((x - center) * np.asarray(d)).sum(-1)[~hit], np.zeros((~hit).sum()), 1e-4)  # perpendicular
  assert np.all(((x - center) * np.asarray(d)).sum(-1)[hit] < 0)  # the near intersection, not the far one
  tj, _, _ = raymarch.sphere_init(o, d, radius, center, jitter=0.01, rng=jax.random.key(0))
  dt = np.asarray(tj - t)
  assert 0.005 < dt.std() < 0.02 and abs(dt.mean()) < 0.003


def test_check_camera_rejects_cameras_out_of_range():
  raymarch.check_camera(raymarch.yaw_pitch_c2w(0.3, 0.1, 10.0), 2.2)
  with pytest.raises(UserError, match="inside the scene sphere"):
    raymarch.check_camera(raymarch.yaw_pitch_c2w(0.0, 0.0, 1.0), 2.2)
  away = raymarch.campos2matrix((0.0, 0.0, 10.0), (0.0, 0.0, 20.0))
  with pytest.raises(UserError, match="misses the scene sphere"):
    raymarch.check_camera(away, 2.2)
