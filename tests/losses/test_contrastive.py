"""losses/contrastive.py: the expression warp loss on hand-built displacements and on the renderer's own
flow, lighting/pose pair terms against numpy values, weights/switches, and gradient isolation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import disco_fixtures as F
from jaxface.errors import ConfigError
from jaxface.losses import contrastive as C
from jaxface.losses import image as im
from jaxface.losses import imitative as I
from jaxface.render import render as render_lib


def _np_blur(x):
  k = im.gaussian_kernel(5, 2.0)
  return np.stack([np.stack([ndimage.convolve(x[b, ..., c], k, mode="constant") for c in range(x.shape[-1])], -1)
                   for b in range(x.shape[0])])


def test_exp_warp_mask_cases():
  ma = np.array([[[1, 1, 0, 0]]], np.float32)
  mb = np.array([[[1, 0, 1, 0]]], np.float32)
  # released: 0 only where A is face and B is not
  np.testing.assert_array_equal(np.asarray(C.exp_warp_mask(ma, mb)), [[[1, 0, 1, 1]]])
  valid = np.array([[[0, 0, 1, 0]]], np.float32)  # B's face pixel 0 is occluded in A
  np.testing.assert_array_equal(np.asarray(C.exp_warp_mask(ma, mb, valid)), [[[0, 0, 1, 1]]])
  # soft (antialiased) masks are binarized at 0.5
  np.testing.assert_array_equal(np.asarray(C.exp_warp_mask(ma * 0.7, mb * 0.6)), [[[1, 0, 1, 1]]])
  np.testing.assert_array_equal(np.asarray(C.exp_warp_mask(ma * 0.7, mb * 0.4)), [[[0, 0, 1, 1]]])


def test_exp_warp_loss_hand_built_displacement():
  rng = np.random.default_rng(0)
  h = w = 16
  fake_a = rng.uniform(-1, 1, size=(2, h, w, 3)).astype(np.float32)
  flow = np.zeros((2, h, w, 2), np.float32)
  flow[:, 4:12, 5:11] = [2.0, -1.0]  # B's face pixel (y, x) was at (y - 1, x + 2) in A
  face = np.zeros((2, h, w), np.float32)
  face[:, 4:12, 5:11] = 1.0
  fake_b = fake_a.copy()
  fake_b[:, 4:12, 5:11] = fake_a[:, 3:11, 7:13]  # exactly that motion
  # A perfect pair: only the sqrt(eps) floor remains.
  np.testing.assert_allclose(float(C.exp_warp_loss(fake_a, fake_b, flow, face, face)), 1e-4, rtol=1e-3)
  # A changed background pixel block: independent numpy value (scipy blur, explicit mask).
  fake_b2 = fake_b.copy()
  fake_b2[:, 0:3, 0:4] += 0.5
  ma = face.copy()
  ma[:, 12, 5:11] = 1.0  # A's face is one row taller: that row is excluded
  keep = (ma - face <= 0).astype(np.float32)
  d = np.sqrt(((_np_blur(fake_b2) - _np_blur(fake_b)) ** 2).sum(-1) + 1e-8)
  ref = (d * keep).sum() / keep.sum()
  got = float(C.exp_warp_loss(fake_a, fake_b2, flow, ma, face))
  np.testing.assert_allclose(got, ref, rtol=1e-4)
  assert got > 1e-2
  # Warping with the wrong sign is worse than with the right one.
  assert float(C.exp_warp_loss(fake_a, fake_b, -flow, face, face)) > 10 * 1e-4
  with pytest.raises(ValueError, match="flow"):
    C.exp_warp_loss(fake_a, fake_b, flow[:, :8], face, face)


def test_exp_warp_with_the_renderers_flow_aligns_renders():
  # Two renders of the tiny model that differ only in expression, under ambient-only light (shading
  # constant, so colour travels with the surface): warping A by render_flow(B -> A) reproduces B.
  lam = np.zeros((2, F.LAMBDA_DIM), np.float32)
  coeffs = F.coeffs_from_lambda(jnp.asarray(lam))
  coeffs["exp"] = jnp.asarray([[0.0, 0.0, 0.0], [1.0, 0.6, 0.0]])
  out = F.render_batch(coeffs)
  one = lambda i: {k: v[i] for k, v in coeffs.items()}  # noqa: E731
  flow, valid = jax.jit(lambda a, b: render_lib.render_flow(F.FM, a, b, F.CAM, (F.RES, F.RES)))(one(1), one(0))
  img_a, img_b = im.from_unit(out["image"][:1]), im.from_unit(out["image"][1:])
  assert float(jnp.abs(flow).max()) > 1.5  # the expression moves pixels
  inner = np.asarray(valid) * (ndimage.binary_erosion(np.asarray(out["mask"][1]) > 0.99, iterations=1))
  err = lambda x: float((np.abs(np.asarray(x)[0] - np.asarray(img_b)[0]).sum(-1) * inner).sum() / inner.sum())  # noqa
  e_warp, e_none = err(im.warp(img_a, flow[None])), err(img_a)
  e_wrong = err(im.warp(img_a, -flow[None]))
  assert e_warp < 0.35 * e_none and e_warp < 0.35 * e_wrong, (e_warp, e_none, e_wrong)
  loss_right = C.exp_warp_loss(img_a, img_b, flow[None], out["mask"][:1], out["mask"][1:], valid[None])
  loss_none = C.exp_warp_loss(img_a, img_b, jnp.zeros_like(flow)[None], out["mask"][:1], out["mask"][1:])
  assert float(loss_right) < 0.5 * float(loss_none)


def _lin_id(x):
  b, h, w, c = x.shape
  return x.reshape(b, 2, h // 2, 2, w // 2, c).mean((2, 4)).reshape(b, -1)


def _cos(a, b):
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_lighting_pair_known_values():
  rng = np.random.default_rng(1)
  fa = rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32)
  fb = rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32)
  base = rng.uniform(0, 8, size=(68, 2)).astype(np.float32)
  lm_fn = lambda x: base + 3.0 * jnp.mean(x, axis=(1, 2, 3))[:, None, None]  # noqa: E731
  hair_fn = lambda x, lm: jax.nn.sigmoid(x[..., 0] + jnp.mean(lm, axis=(1, 2))[:, None, None] * 0.1)  # noqa
  out = C.lighting_pair_losses(fa, fb, landmark_fn=lm_fn, hair_fn=hair_fn, id_fn=_lin_id)
  sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
  la, lb = base + 3 * fa.mean((1, 2, 3))[:, None, None], base + 3 * fb.mean((1, 2, 3))[:, None, None]
  ha = sig(fa[..., 0] + la.mean((1, 2))[:, None, None] * 0.1)
  hb = sig(fb[..., 0] + lb.mean((1, 2))[:, None, None] * 0.1)
  hair = np.mean((ha - hb) ** 2)
  ida = np.mean(1 - _cos(np.asarray(_lin_id(jnp.asarray(fa))), np.asarray(_lin_id(jnp.asarray(fb)))))
  lmc = np.mean(((la - lb) * 256 / 8 / 224) ** 2)  # 8-px frame rescaled to the released 256 frame
  np.testing.assert_allclose([float(out[k]) for k in ("hair", "id", "lm")], [hair, ida, lmc], rtol=1e-5)
  np.testing.assert_allclose(float(out["total"]), hair + 2 * ida + 1000 * lmc, rtol=1e-5)
  # At 256 the landmark term is the released ((lm1 - lm2) / 224)² exactly.
  d = rng.normal(size=(1, 68, 2)).astype(np.float32)
  np.testing.assert_allclose(float(C.landmark_consistency_loss(d, 0 * d, 256)), np.mean((d / 224) ** 2), rtol=1e-5)


def test_pose_pair_identity_contrast_and_switches():
  rng = np.random.default_rng(2)
  fa = rng.uniform(-1, 1, size=(1, 8, 8, 3)).astype(np.float32)
  fb = rng.uniform(-1, 1, size=(1, 8, 8, 3)).astype(np.float32)
  flow = np.zeros((1, 8, 8, 2), np.float32)
  valid = np.zeros((1, 8, 8), np.float32)
  valid[:, 3:5, 3:5] = 1.0
  w = C.contrastive_weights(w_pose=1.0)
  out = C.pose_pair_losses(fa, fb, id_fn=_lin_id, flow_ba=flow, valid_ba=valid, weights=w)
  ida = np.mean(1 - _cos(np.asarray(_lin_id(jnp.asarray(fa))), np.asarray(_lin_id(jnp.asarray(fb)))))
  d = np.sqrt(((_np_blur(fa) - _np_blur(fb)) ** 2).sum(-1) + 1e-8)
  warp = (d * valid).sum() / valid.sum()
  np.testing.assert_allclose([float(out["id"]), float(out["warp"])], [ida, warp], rtol=1e-5)
  np.testing.assert_allclose(float(out["total"]), 2 * ida + warp, rtol=1e-5)
  # Off the valid face region the pose pair does not look: changing fb there leaves the warp term.
  fb2 = fb.copy()
  fb2[:, 7, :] += 1.0
  fb2[:, :, 0] -= 1.0  # 3 px from the valid block, beyond the 5x5 blur's reach
  assert float(C.pose_pair_losses(fa, fb2, id_fn=_lin_id, flow_ba=flow, valid_ba=valid, weights=w)["warp"]) \
      == pytest.approx(warp, rel=1e-5)
  # contrastive_losses: released defaults ignore the pose pair and the identity contrast.
  pairs = dict(exp=dict(fake_a=fa, fake_b=fb, flow_ba=flow, mask_a=valid, mask_b=valid),
               pose=dict(fake_a=fa, fake_b=fb, flow_ba=flow, valid_ba=valid))
  base = C.contrastive_losses(pairs, id_fn=_lin_id)
  assert set(base) == {"exp_warp", "total"}
  np.testing.assert_allclose(float(base["total"]), 10 * float(base["exp_warp"]), rtol=1e-6)
  full = C.contrastive_losses(pairs, id_fn=_lin_id, weights=C.contrastive_weights(w_pose=0.5, w_id_contrast=3.0))
  np.testing.assert_allclose(float(full["id_contrast"]), ida, rtol=1e-5)  # both pairs are (fa, fb)
  np.testing.assert_allclose(float(full["total"]),
                             10 * float(base["exp_warp"]) + 0.5 * (2 * ida + warp) + 3 * ida, rtol=1e-5)
  with pytest.raises(ConfigError, match="valid keys"):
    C.contrastive_weights(w_exp=1.0)


def test_contrastive_gradients_reach_only_the_fakes():
  experts = F.init_experts(jax.random.PRNGKey(0))
  rng = np.random.default_rng(3)
  shape = (1, F.RES, F.RES, 3)
  fakes = [jnp.asarray(rng.uniform(-0.9, 0.9, size=shape).astype(np.float32)) for _ in range(4)]
  flow = jnp.asarray(rng.uniform(-2, 2, size=(1, F.RES, F.RES, 2)).astype(np.float32))
  masks = [jnp.asarray((rng.uniform(size=(1, F.RES, F.RES)) > 0.5).astype(np.float32)) for _ in range(3)]

  @jax.jit
  def loss(fakes, flow, masks, params):
    pairs = dict(exp=dict(fake_a=fakes[0], fake_b=fakes[1], flow_ba=flow, mask_a=masks[0], mask_b=masks[1],
                          valid_ba=masks[2]),
                 light=dict(fake_a=fakes[2], fake_b=fakes[3]))
    return C.contrastive_losses(
        pairs, landmark_fn=lambda x: I.frozen(F.recon_apply, params["recon"])(x)["landmarks"],
        hair_fn=I.frozen(F.hair_apply, params["hair"]), id_fn=I.frozen(F.id_apply, params["id"]))["total"]

  g_fakes, g_flow, g_masks, g_params = jax.grad(loss, argnums=(0, 1, 2, 3))(fakes, flow, masks, experts)
  for g in g_fakes:
    assert float(jnp.abs(g).sum()) > 0 and bool(jnp.all(jnp.isfinite(g)))
  for leaf in jax.tree_util.tree_leaves((g_flow, g_masks, g_params)):
    assert float(jnp.abs(leaf).max()) == 0.0
