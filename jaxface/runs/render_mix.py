"""Bare face-model renders of the synthetic world's true coefficients, mixed into the batches of expert networks.

DiscoFaceGAN imitates renders of λ (a face on black), so its fakes look like renders long before they look like
world images. An expert trained on world images alone misreads that look: an R-Net reads a render's yaw ~25%
short and its pitch ~8° low; an identity net gives renders of *different* identities cosine 0.995. Training the
experts on a mix of both looks (`render_mix` in configs/rnet.py and configs/idnet.py) removes the gap. The labels
stay: a render and its world image share the true coefficients, landmarks and identity.
"""

import jax
import jax.numpy as jnp

from jaxface.render import face_model as fm_lib
from jaxface.render import render as render_lib
from jaxface.runs.rnet import camera, face_model, layout


def render_display(fm, coeffs, cam, res):
  """The face model rendered from one coefficient dict, in the world images' display space (gamma 1/2.2), and its
  coverage mask [R, R]."""
  out = render_lib.render(fm, coeffs, cam, res, window=4, capacity=max(4096, res * res // 3))
  return render_lib.to_display(out["image"]), out["mask"]


def true_renders(factors, data_cfg, res):
  """Batched world factors (id, tex, exp, angle, gamma, trans [B, n] each) -> (renders [B, R, R, 3] in [0, 1],
  masks [B, R, R]): the face model alone, no hair, eyes' gaze or background."""
  fm, cam = face_model(int(data_cfg.level)), camera(data_cfg)
  coeffs = {g: jnp.asarray(factors[g], jnp.float32).reshape(factors[g].shape[0], -1)
            for g in fm_lib.COEFF_ORDERS["disco"]}
  expected = layout()
  for g in coeffs:
    if coeffs[g].shape[-1] != expected.size(g):
      raise ValueError(f"factor {g!r} has {coeffs[g].shape[-1]} entries; the world's face model needs "
                       f"{expected.size(g)}")
  return jax.vmap(lambda c: render_display(fm, c, cam, res))(coeffs)


def mix_in_renders(images, renders, masks, rng, fraction):
  """Replaces a random `fraction` of the batch (images in [0, 1]) by its bare renders: `masks` inside, a blurred
  copy of the world image scaled by a random brightness outside (the look of render targets and of the fakes
  that imitate them)."""
  b, h, w, c = images.shape
  k_pick, k_dim = jax.random.split(rng)
  pick = jax.random.uniform(k_pick, (b, 1, 1, 1)) < fraction
  coarse = images.reshape(b, 4, h // 4, 4, w // 4, c).mean((2, 4))  # 4x4 box averages: a strong blur
  background = jax.image.resize(coarse, images.shape, "linear") * jax.random.uniform(k_dim, (b, 1, 1, 1))
  m = masks[..., None].astype(images.dtype)
  return jnp.where(pick, m * renders + (1.0 - m) * background, images)
