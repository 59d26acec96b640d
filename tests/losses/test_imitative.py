"""losses/imitative.py: every term against hand-computed / numpy values, weights and switching, and that
no gradient reaches frozen experts, the VAE decoder or the render targets (only the fake image)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import disco_fixtures as F
from jaxface.errors import ConfigError
from jaxface.losses import imitative as I


def test_landmark_loss_hand_computed():
  target = np.random.default_rng(0).uniform(0, 32, size=(2, 68, 2)).astype(np.float32)
  pred = target + np.array([3.0, -4.0], np.float32)
  # mean over B×68×2 of ((d / 32)²): (9 + 16) / 2 / 32²
  np.testing.assert_allclose(float(I.landmark_loss(pred, target, 32)), 12.5 / 1024, rtol=1e-6)
  # Non-square frame: x by W, y by H.
  np.testing.assert_allclose(float(I.landmark_loss(pred, target, (16, 32))), (9 / 1024 + 16 / 256) / 2, rtol=1e-6)
  # Released equivalence: R-Net landmarks in the 224 frame vs render landmarks ×224/256, / 224.
  lm224, lm256 = pred * 224 / 256, target
  released = np.mean(((lm224 - lm256 * 224 / 256) / 224) ** 2)
  np.testing.assert_allclose(float(I.landmark_loss(pred, target, 256)), released, rtol=1e-5)
  # Deep3DFaceRecon weighting (ablation): 11 points ×20 -> mean weight (57 + 220) / 68.
  w = I.landmark_weights("d3dfr")
  assert float(w.sum()) == 57 + 11 * 20 and np.all(np.asarray(I.landmark_weights("disco")) == 1)
  np.testing.assert_allclose(float(I.landmark_loss(pred, target, 32, w)), 12.5 / 1024 * 277 / 68, rtol=1e-6)
  with pytest.raises(ConfigError, match="landmark weighting"):
    I.landmark_weights("bogus")


def test_gamma_skin_pixel_losses_known_values():
  rng = np.random.default_rng(1)
  g_pred, g_tgt = rng.normal(size=(3, 27)), rng.normal(size=(3, 27))
  np.testing.assert_allclose(float(I.gamma_loss(g_pred, g_tgt)), np.abs(g_pred - g_tgt).mean(), rtol=1e-5)
  fake = rng.uniform(-1, 1, size=(2, 6, 6, 3)).astype(np.float32)
  rend = rng.uniform(-1, 1, size=(2, 6, 6, 3)).astype(np.float32)
  mask = np.zeros((2, 6, 6), np.float32)
  mask[:, 1:5, 2:5] = 1.0
  mask[1, 0, 0] = 0.5  # soft coverage counts fractionally
  mu_f = (fake * mask[..., None]).sum((1, 2)) / mask.sum((1, 2))[:, None]
  mu_r = (rend * mask[..., None]).sum((1, 2)) / mask.sum((1, 2))[:, None]
  np.testing.assert_allclose(float(I.skin_loss(fake, rend, mask)),
                             np.mean(np.sqrt(((mu_f - mu_r) ** 2).sum(-1) + 1e-8)), rtol=1e-5)
  pix = (np.sqrt(((rend - fake) ** 2).sum(-1) + 1e-8) * mask).sum() / mask.sum()
  np.testing.assert_allclose(float(I.pixel_loss(fake, rend, mask)), pix, rtol=1e-5)
  # Constant colour offset (0.3, 0.4, 0) everywhere: skin = 0.5, pixel = 0.5 (a 3-4-5 triangle).
  off = np.array([0.3, 0.4, 0.0], np.float32)
  np.testing.assert_allclose(float(I.skin_loss(rend + off, rend, mask)), 0.5, rtol=1e-5)
  np.testing.assert_allclose(float(I.pixel_loss(rend + off, rend, mask)), 0.5, rtol=1e-5)


def _linear_id(images):
  """A parameter-free 'identity net': mean colour of each image quadrant -> 12-d."""
  b, h, w, c = images.shape
  return images.reshape(b, 2, h // 2, 2, w // 2, c).mean((2, 4)).reshape(b, -1)


def test_identity_loss_masks_the_fake_and_clips_at_0_3():
  rng = np.random.default_rng(2)
  fake = rng.uniform(-1.2, 1.2, size=(3, 8, 8, 3)).astype(np.float32)
  rend = rng.uniform(-1, 1, size=(3, 8, 8, 3)).astype(np.float32)
  mask = (rng.uniform(size=(3, 8, 8)) > 0.3).astype(np.float32)
  # numpy reference of the released ID_loss: to255(fake)·M (clip first), render whole, cosine, max(0.3, .)
  masked = np.clip((fake + 1) / 2, 0, 1) * mask[..., None] * 2 - 1
  ef, er = np.asarray(_linear_id(jnp.asarray(masked))), np.asarray(_linear_id(jnp.asarray(rend)))
  cos = (ef * er).sum(-1) / np.linalg.norm(ef, axis=-1) / np.linalg.norm(er, axis=-1)
  ref = np.mean(np.maximum(0.3, 1 - cos))
  np.testing.assert_allclose(float(I.identity_loss(fake, rend, mask, _linear_id)), ref, rtol=1e-5)
  assert ref > 0.3  # the clip is not what this case measures
  # Identical identity features: the loss sits at the clip value and has zero gradient.
  same = rend.copy()
  full = np.ones((3, 8, 8), np.float32)
  np.testing.assert_allclose(float(I.identity_loss(np.clip(same, -1, 1), same, full, _linear_id)), 0.3, rtol=1e-6)
  g = jax.grad(lambda x: I.identity_loss(x, same, full, _linear_id))(jnp.asarray(np.clip(same, -1, 1)))
  assert float(jnp.abs(g).max()) == 0.0


def test_weights_stage_switch_and_errors():
  assert I.imitative_weights(1)["w_lm"] == 500 and I.imitative_weights(2)["w_lm"] == 100
  w = I.imitative_weights(2)
  assert (w["w_gamma"], w["w_id"], w["w_skin"], w["w_pix"], w["id_clip"]) == (10, 3, 20, 20, 0.3)
  assert I.imitative_weights(1, w_id=0)["w_id"] == 0.0
  with pytest.raises(ConfigError, match="stage"):
    I.imitative_weights(3)
  with pytest.raises(ConfigError, match="valid keys"):
    I.imitative_weights(1, w_landmark=1.0)


def _setup(seed=0):
  experts = F.init_experts(jax.random.PRNGKey(seed))
  vae = F.init_vae(jax.random.PRNGKey(seed + 1))
  z = jax.random.normal(jax.random.PRNGKey(seed + 2), (2, 4))
  g_params = 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 3), (2, F.RES, F.RES, 3))
  return experts, vae, z, g_params


def test_imitative_losses_total_is_the_weighted_sum_of_the_terms():
  experts, vae, z, g = _setup()
  rng = np.random.default_rng(3)
  mask = np.zeros((2, F.RES, F.RES), np.float32)
  mask[:, 4:20, 6:18] = 1.0
  rendered = dict(image=rng.uniform(0, 1, size=(2, F.RES, F.RES, 3)).astype(np.float32), mask=mask,
                  landmarks=rng.uniform(0, F.RES, size=(2, 68, 2)).astype(np.float32))
  tg = I.render_targets(rendered, rng.normal(size=(2, 27)).astype(np.float32))
  np.testing.assert_allclose(np.asarray(tg["image"]), rendered["image"] * 2 - 1, atol=1e-6)
  fake = jnp.tanh(g)
  recon = I.frozen(F.recon_apply, experts["recon"])
  idf = I.frozen(F.id_apply, experts["id"])
  out = I.imitative_losses(fake, tg, recon_fn=recon, id_fn=idf, weights=I.imitative_weights(1))
  rec = recon(fake)
  np.testing.assert_allclose(float(out["lm"]), float(I.landmark_loss(rec["landmarks"], tg["landmarks"], F.RES)))
  np.testing.assert_allclose(float(out["gamma"]), float(I.gamma_loss(rec["gamma"], tg["gamma"])))
  np.testing.assert_allclose(float(out["id"]), float(I.identity_loss(fake, tg["image"], tg["mask"], idf)))
  np.testing.assert_allclose(float(out["skin"]), float(I.skin_loss(fake, tg["image"], tg["mask"])))
  expect = 500 * out["lm"] + 10 * out["gamma"] + 3 * out["id"] + 20 * out["skin"]
  np.testing.assert_allclose(float(out["total"]), float(expect), rtol=1e-6)
  assert set(out) == {"lm", "gamma", "id", "skin", "total"}
  # Low-resolution phase: only the masked pixel loss, weight 20; the experts are not called.
  def boom(_):
    raise AssertionError("expert called in the low-resolution phase")
  low = I.imitative_losses(fake, tg, recon_fn=boom, id_fn=boom, low_res=True)
  assert set(low) == {"pix", "total"}
  np.testing.assert_allclose(float(low["total"]), 20 * float(I.pixel_loss(fake, tg["image"], tg["mask"])),
                             rtol=1e-6)
  # A zero weight switches a term off (and its expert is not needed).
  no_id = I.imitative_losses(fake, tg, recon_fn=recon, id_fn=boom, weights=I.imitative_weights(2, w_id=0))
  assert "id" not in no_id
  np.testing.assert_allclose(float(no_id["total"]), float(100 * out["lm"] + 10 * out["gamma"] + 20 * out["skin"]),
                             rtol=1e-6)


def test_gradients_reach_only_the_generated_image():
  experts, vae, z, g = _setup(5)
  rendered = F.render_batch(F.coeffs_from_lambda(F.vae_decoder(vae, z)))  # not differentiated here:
  # render outputs enter as an argument, so a zero gradient w.r.t. them (image, mask, landmarks) plus the
  # zero gradient w.r.t. the decoder through λ's lighting target covers decoder -> render -> targets.

  @jax.jit
  def loss(g_params, vae_params, expert_params, rendered):
    gamma = F.coeffs_from_lambda(F.vae_decoder(vae_params, z))["gamma"]
    tg = I.render_targets(rendered, gamma)
    fake = jnp.tanh(g_params)
    return I.imitative_losses(fake, tg, recon_fn=I.frozen(F.recon_apply, expert_params["recon"]),
                              id_fn=I.frozen(F.id_apply, expert_params["id"]))["total"]

  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(g, vae, experts, rendered)
  g_g, g_vae, g_exp, g_render = grads
  assert float(jnp.abs(g_g).sum()) > 0 and bool(jnp.all(jnp.isfinite(g_g)))
  assert set(g_render) == {"image", "mask", "landmarks"}
  for leaf in jax.tree_util.tree_leaves((g_vae, g_exp, g_render)):
    assert float(jnp.abs(leaf).max()) == 0.0
  # Without the freezing the same experts would receive gradient (the test can fail).
  leak = jax.grad(lambda p: I.imitative_losses(jnp.tanh(g), I.render_targets(rendered, jnp.zeros((2, 27))),
                                               recon_fn=lambda x: F.recon_apply(p, x), id_fn=I.frozen(
                                                   F.id_apply, experts["id"]))["total"])(experts["recon"])
  assert float(jnp.abs(leak["lm"]).max()) > 0
  # The gradient is the loss's derivative: central difference along it agrees (float32).
  d = g_g / jnp.linalg.norm(g_g)
  eps = 1e-2
  fd = (loss(g + eps * d, vae, experts, rendered) - loss(g - eps * d, vae, experts, rendered)) / (2 * eps)
  np.testing.assert_allclose(float(fd), float(jnp.sum(g_g * d)), rtol=5e-2)
