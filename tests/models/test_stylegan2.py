"""StyleGAN2 generator/discriminator: shapes, parameter counts vs the official summary, noise modes, dtypes, jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.errors import UserError
from jaxface.models.stylegan2 import Discriminator, Generator, Mapping, Synthesis, num_ws_for, truncate

TINY = dict(channel_base=128, channel_max=16)  # 16 channels up to 8x8, then 8, 4, 2


def key(i):
  # RngBitGenerator keys: threefry compiles ~3x slower on XLA:CPU, which dominates these tests' time
  return jax.random.key(i, impl="rbg")


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _tiny_g(res=8, **kw):
  return Generator(z_dim=8, w_dim=16, resolution=res, mapping_layers=2, **{**TINY, **kw})


@functools.lru_cache(maxsize=None)
def _init_g(res=8, dtype=jnp.float32):
  g = _tiny_g(res, dtype=dtype)
  z = jnp.zeros((4, 8))
  params = jax.jit(g.init)({"params": key(0), "noise": key(1)}, z)
  # noise strengths start at 0; make them matter so the noise modes are observable
  params = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.full_like(a, 0.5) if p[-1].key == "noise_strength" else a, params)
  return g, params


@pytest.mark.parametrize("res", [8, 16, 32, 64])
def test_shapes_and_num_ws(res):
  g = Generator(z_dim=12, w_dim=24, resolution=res, **TINY)
  d = Discriminator(resolution=res, **TINY)
  z = jax.ShapeDtypeStruct((4, 12), jnp.float32)
  pg = jax.eval_shape(g.init, {"params": key(0), "noise": key(1)}, z)
  assert set(pg) == {"params"}
  assert g.num_ws == num_ws_for(res) == 2 * int(np.log2(res)) - 2
  out = jax.eval_shape(functools.partial(g.apply, rngs={"noise": key(0)}), pg, z)
  assert out.shape == (4, res, res, 3) and out.dtype == jnp.float32
  w = jax.eval_shape(functools.partial(g.apply, method="map"), pg, z)
  assert w.shape == (4, 24) and w.dtype == jnp.float32
  img = jax.ShapeDtypeStruct((4, res, res, 3), jnp.float32)
  pd = jax.eval_shape(d.init, key(0), img)
  assert set(pd) == {"params"}
  logits = jax.eval_shape(d.apply, pd, img)
  assert logits.shape == (4,) and logits.dtype == jnp.float32
  # 1 const-block + 2 convs per doubling; D: one residual block per doubling + epilogue
  assert sorted(pg["params"]["synthesis"]) == sorted(f"b{2 ** i}" for i in range(2, int(np.log2(res)) + 1))
  assert sorted(pd["params"]) == sorted(f"b{2 ** i}" for i in range(2, int(np.log2(res)) + 1))


def test_param_counts_match_official_config_f():
  """stylegan2-ada-pytorch's module summary for config-F at 1024 (cbase 32768, cmax 512, mbstd 1 feature) lists
  Discriminator Total 29012513, synthesis.b4.conv1 2622465, synthesis.b4.torgb 264195, b4.conv 2364416,
  b4.fc 4194816, b4.out 513, and (with a 2-layer mapping) Generator Total 28794124 = synthesis + 2 * 262656."""
  z = jax.ShapeDtypeStruct((4, 512), jnp.float32)
  g = Generator(z_dim=512, resolution=1024, mapping_layers=8)
  p = jax.eval_shape(g.init, {"params": key(0), "noise": key(1)}, z)["params"]
  assert _count(p["mapping"]) == 8 * 262656
  assert _count(p["synthesis"]) == 28794124 - 2 * 262656
  assert _count(p["synthesis"]["b4"]["conv1"]) == 2622465
  assert _count(p["synthesis"]["b4"]["torgb"]) == 264195
  assert _count(p["synthesis"]["b128"]["conv0"]) == 1442561
  d = Discriminator(resolution=1024)
  pd = jax.eval_shape(d.init, key(0), jax.ShapeDtypeStruct((4, 1024, 1024, 3), jnp.float32))["params"]
  assert _count(pd) == 29012513
  assert [_count(pd["b4"][k]) for k in ("conv", "fc", "out")] == [2364416, 4194816, 513]
  assert _count(pd["b1024"]["fromrgb"]) == 128 and _count(pd["b1024"]["skip"]) == 2048


def test_invalid_configs_are_user_errors():
  for res in (4, 100, 2048, 24, "big"):
    with pytest.raises(UserError, match="power of two"):
      Generator(z_dim=8, resolution=res)
    with pytest.raises(UserError, match="power of two"):
      Discriminator(resolution=res)
  with pytest.raises(UserError, match="zero channels"):
    Synthesis(resolution=64, channel_base=32)
  g, params = _init_g()
  with pytest.raises(UserError, match="noise_mode"):
    jax.eval_shape(functools.partial(g.apply, noise_mode="fixed"), params, jnp.zeros((4, 8)))
  with pytest.raises(UserError, match="expects ws of shape"):
    jax.eval_shape(functools.partial(g.apply, method="synthesize"), params, jnp.zeros((4, 5, 16)))
  with pytest.raises(UserError, match="latents of shape"):
    jax.eval_shape(functools.partial(g.apply, method="map"), params, jnp.zeros((4, 9)))
  with pytest.raises(UserError, match="expects images"):
    jax.eval_shape(Discriminator(resolution=16, **TINY).init, key(0), jnp.zeros((4, 32, 32, 3)))


def test_generator_methods_and_noise_modes():
  g, params = _init_g()
  z = jax.random.normal(key(2), (4, 8))
  apply = jax.jit(g.apply, static_argnames=("noise_mode", "method"))
  c1 = apply(params, z, noise_mode="const")
  c2 = apply(params, z, noise_mode="const", rngs={"noise": key(9)})
  np.testing.assert_array_equal(np.asarray(c1), np.asarray(c2))
  w = apply(params, z, method="map")
  ws = jnp.broadcast_to(w[:, None], (4, g.num_ws, 16))
  np.testing.assert_allclose(np.asarray(apply(params, ws, noise_mode="const", method="synthesize")),
                             np.asarray(c1), rtol=1e-5, atol=1e-6)
  r1 = apply(params, z, rngs={"noise": key(3)})
  r2 = apply(params, z, rngs={"noise": key(4)})
  n0 = apply(params, z, noise_mode="none")
  assert np.isfinite(np.asarray(r1)).all()
  for a, b in [(r1, r2), (r1, c1), (c1, n0)]:
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
  # per-layer ws really are per layer: changing the last w changes only the last ToRGB's contribution
  ws2 = ws.at[:, -1].set(0.0)
  assert np.abs(np.asarray(apply(params, ws2, noise_mode="const", method="synthesize") - c1)).max() > 1e-4


def test_mapping_normalize_z_flag():
  z = jax.random.normal(key(0), (3, 8))
  m_on, m_off = Mapping(8, 16, 2), Mapping(8, 16, 2, normalize_z=False)
  p = m_on.init(key(1), z)
  # normalization makes the output invariant to the scale of z; without it (DiscoFaceGAN) it is not
  np.testing.assert_allclose(np.asarray(m_on.apply(p, 3.0 * z)), np.asarray(m_on.apply(p, z)), rtol=1e-5,
                             atol=1e-6)
  assert np.abs(np.asarray(m_off.apply(p, 3.0 * z) - m_off.apply(p, z))).max() > 1e-4


def test_truncate():
  w = jax.random.normal(key(0), (2, 6, 4))
  w_avg = jnp.arange(4.0)
  np.testing.assert_allclose(np.asarray(truncate(w, w_avg, 1.0)), np.asarray(w), atol=1e-6)
  np.testing.assert_allclose(np.asarray(truncate(w, w_avg, 0.0)), np.broadcast_to(np.arange(4.0), (2, 6, 4)))
  t = np.asarray(truncate(w, w_avg, 0.7, cutoff=3))
  np.testing.assert_allclose(t[:, :3], np.arange(4.0) + 0.7 * (np.asarray(w)[:, :3] - np.arange(4.0)), atol=1e-6)
  np.testing.assert_array_equal(t[:, 3:], np.asarray(w)[:, 3:])
  np.testing.assert_allclose(np.asarray(truncate(w[:, 0], w_avg, 0.5)),
                             0.5 * (np.asarray(w)[:, 0] + np.arange(4.0)), atol=1e-6)
  with pytest.raises(UserError, match="cutoff"):
    truncate(w[:, 0], w_avg, 0.5, cutoff=2)


def test_bfloat16_runs_and_stays_close_to_float32():
  g32, params = _init_g()
  g16 = _tiny_g(dtype=jnp.bfloat16)
  z = jax.random.normal(key(5), (4, 8))
  a = np.asarray(jax.jit(functools.partial(g32.apply, noise_mode="const"))(params, z))
  b = jax.jit(functools.partial(g16.apply, noise_mode="const"))(params, z)
  assert b.dtype == jnp.float32
  assert np.abs(np.asarray(b) - a).max() < 0.05 * np.abs(a).max()
  d32, d16 = Discriminator(8, **TINY), Discriminator(8, dtype=jnp.bfloat16, **TINY)
  pd = jax.jit(d32.init)(key(0), jnp.asarray(a))
  l32 = np.asarray(jax.jit(d32.apply)(pd, jnp.asarray(a)))
  l16 = jax.jit(d16.apply)(pd, jnp.asarray(a))
  assert l16.dtype == jnp.float32
  assert np.abs(np.asarray(l16) - l32).max() < 0.05 * np.abs(l32).max() + 0.02


def test_jit_equals_eager():
  g = Generator(z_dim=4, w_dim=8, resolution=8, mapping_layers=1, channel_base=32, channel_max=4)
  d = Discriminator(resolution=8, channel_base=32, channel_max=4, mbstd_group_size=2)
  z = jax.random.normal(key(0), (2, 4))
  pg = jax.jit(g.init)({"params": key(1), "noise": key(2)}, z)
  eager = g.apply(pg, z, noise_mode="const")
  jitted = jax.jit(functools.partial(g.apply, noise_mode="const"))(pg, z)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-6)
  pd = jax.jit(d.init)(key(4), eager)
  np.testing.assert_allclose(np.asarray(jax.jit(d.apply)(pd, eager)), np.asarray(d.apply(pd, eager)), rtol=1e-5,
                             atol=1e-6)
