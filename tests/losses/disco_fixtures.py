"""Tiny face model, renders and stand-in experts shared by the DiscoFaceGAN loss tests.

The experts are small differentiable functions of the image with explicit parameters, so tests can ask
jax.grad whether any gradient reaches them; they are not meant to be good networks.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.render import camera as cam_lib
from jaxface.render import face_model as fm_lib
from jaxface.render import render as render_lib

RES = 24


def tiny_face_model(seed=0, n_id=3, n_exp=3, n_tex=2):
  """A dome-shaped grid patch facing +z with a striped albedo (so misaligned warps show)."""
  nx, ny = 9, 11
  xs, ys = np.linspace(-0.75, 0.75, nx), np.linspace(-0.95, 0.95, ny)
  x, y = np.meshgrid(xs, ys)
  z = 0.6 * np.sqrt(np.clip(1.0 - (x / 0.9) ** 2 - (y / 1.14) ** 2, 0.0, None))
  verts = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float32)
  idx = np.arange(nx * ny).reshape(ny, nx)
  a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
  tri = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
  rng = np.random.default_rng(seed)
  v = len(verts)

  def smooth(k, s):
    phase = rng.normal(size=(1, 3, k))
    return (rng.normal(size=(1, 3, k)) * np.sin(verts[:, :1, None] * 3 + phase) * s).astype(np.float32)
  # Expression: a smooth vertical stretch of the lower half (moves pixels by a few px at RES).
  exp_basis = np.zeros((v, 3, n_exp), np.float32)
  exp_basis[:, 1, 0] = np.minimum(verts[:, 1], 0.0) * 0.3
  exp_basis[:, 0, 1] = verts[:, 0] * 0.2
  albedo = (0.5 + 0.4 * np.sin(verts[:, :1] * 9.0 + np.array([0.0, 1.0, 2.0]))
            * np.cos(verts[:, 1:2] * 7.0)).astype(np.float32)
  return fm_lib.make_face_model(
      name="tiny", mean_shape=verts, id_basis=smooth(n_id, 0.05), exp_basis=exp_basis,
      mean_albedo=albedo, albedo_basis=smooth(n_tex, 0.1), tri=tri, landmarks68=rng.integers(0, v, 68))


FM = tiny_face_model()
CAM = cam_lib.perspective(100.0 * RES / 24, RES / 2, RES / 2, RES, RES)


def coeffs_from_lambda(lam):
  """Flat [B, n_id + n_tex + n_exp + 3 + 27] ("disco" order, translation zero) -> coefficient dict."""
  layout = FM.layout
  flat = jnp.concatenate([lam, jnp.zeros(lam.shape[:-1] + (3,), lam.dtype)], -1)
  return fm_lib.split_coeffs(flat, layout, "disco")


LAMBDA_DIM = FM.n_id + FM.n_tex + FM.n_exp + 3 + 27


@jax.jit
def render_batch(coeffs):
  out = jax.vmap(lambda c: render_lib.render(FM, c, CAM, (RES, RES)))(coeffs)
  return {k: out[k] for k in ("image", "mask", "landmarks")}


def vae_decoder(params, z):
  """A stand-in frozen VAE decoder: z -> λ (tanh MLP), small coefficients."""
  h = jnp.tanh(z @ params["w1"])
  return 0.3 * jnp.tanh(h @ params["w2"])


def init_vae(rng, z_dim=4):
  k1, k2 = jax.random.split(rng)
  return dict(w1=jax.random.normal(k1, (z_dim, 16)), w2=jax.random.normal(k2, (16, LAMBDA_DIM)) * 0.5)


def _pool(images, cells=4):
  b, h, w, c = images.shape
  return images.reshape(b, cells, h // cells, cells, w // cells, c).mean((2, 4)).reshape(b, -1)


def recon_apply(params, images):
  """Stand-in R-Net: pooled pixels -> 68 landmarks (pixels) and 27 lighting coefficients."""
  f = _pool(images)
  lm = RES / 2 + 4.0 * jnp.tanh(f @ params["lm"]).reshape(-1, 68, 2)
  return dict(landmarks=lm, gamma=f @ params["gamma"])


def id_apply(params, images):
  """Stand-in identity net: pooled pixels -> 8-d embedding."""
  return jnp.tanh(_pool(images) @ params["w"]) + params["b"]


def hair_apply(params, images, landmarks):
  """Stand-in parser: per-pixel hair probability from the colour, shifted by the landmarks' mean."""
  shift = jnp.mean(landmarks, axis=(1, 2))[:, None, None] / RES
  return jax.nn.sigmoid(images @ params["w"] + shift)


def init_experts(rng):
  ks = jax.random.split(rng, 5)
  feat = 16 * 3
  return dict(recon=dict(lm=jax.random.normal(ks[0], (feat, 136)) * 0.3,
                         gamma=jax.random.normal(ks[1], (feat, 27)) * 0.3),
              id=dict(w=jax.random.normal(ks[2], (feat, 8)), b=jax.random.normal(ks[3], (8,)) * 0.1),
              hair=dict(w=jax.random.normal(ks[4], (3,))))
