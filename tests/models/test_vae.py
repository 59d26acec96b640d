"""Factor VAE module: shapes, a numpy reference of the decoder, standardization, block split/join."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.models import vae as vae_lib


def _numpy_mlp(p, x, depth):
  for i in range(depth):
    x = np.maximum(x @ np.asarray(p[f"fc{i}"]["kernel"]) + np.asarray(p[f"fc{i}"]["bias"]), 0)
  return x @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"])


def _init(dim=5, latent=3, width=7, depth=3):
  vae = vae_lib.FactorVAE(dim=dim, latent=latent, width=width, depth=depth, init_loggamma=-1.5)
  variables = vae.init(jax.random.key(0), jnp.zeros((2, dim)), jax.random.key(1))
  return vae, variables


def test_shapes_and_init():
  vae, variables = _init()
  x = jax.random.normal(jax.random.key(2), (4, 5))
  x_hat, mu, log_sigma, loggamma = vae.apply(variables, x, jax.random.key(3))
  assert x_hat.shape == (4, 5) and mu.shape == (4, 3) and log_sigma.shape == (4, 3)
  assert float(loggamma) == -1.5
  assert set(variables["stats"]) == {"shift", "scale"}
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables["params"]))


def test_decoder_and_encoder_match_numpy_reference():
  vae, variables = _init()
  shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0], np.float32)
  scale = np.array([2.0, 0.5, 1.0, 4.0, 0.1], np.float32)
  variables = {"params": variables["params"], "stats": {"shift": jnp.asarray(shift), "scale": jnp.asarray(scale)}}
  p = jax.tree.map(np.asarray, variables["params"])
  z = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
  want = _numpy_mlp(p["decoder"], z, 3) * scale + shift
  np.testing.assert_allclose(vae.apply(variables, jnp.asarray(z), method="decode"), want, rtol=1e-5, atol=1e-5)
  x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
  h = _numpy_mlp(p["encoder"], (x - shift) / scale, 3)
  mu, log_sigma = vae.apply(variables, jnp.asarray(x), method="encode")
  np.testing.assert_allclose(mu, h[:, :3], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(log_sigma, h[:, 3:], rtol=1e-5, atol=1e-5)


def test_reparameterization_uses_the_noise():
  vae, variables = _init()
  x = jnp.ones((3, 5))
  a = vae.apply(variables, x, jax.random.key(0))[0]
  b = vae.apply(variables, x, jax.random.key(1))[0]
  assert not np.allclose(a, b)  # z = mu + eps * sigma differs with the key


def test_factor_dims_and_blocks_round_trip():
  dims = {"id": 4, "tex": 3, "exp": 2, "gamma": 27, "angle": 3}
  assert vae_lib.factor_dims(dims) == {"id": 7, "exp": 2, "gamma": 27, "angle": 3}
  coeffs = {"id": np.arange(8.0).reshape(2, 4), "tex": -np.arange(6.0).reshape(2, 3)}
  x = vae_lib.join_blocks("id", coeffs)
  assert x.shape == (2, 7)
  back = vae_lib.split_blocks("id", x, dims)
  np.testing.assert_array_equal(back["id"], coeffs["id"])
  np.testing.assert_array_equal(back["tex"], coeffs["tex"])
