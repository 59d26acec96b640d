"""DiscoFaceGAN's contrastive losses (stage 2) as pure functions (Deng et al., CVPR 2020).

Pairs of fakes share every factor and the noise but one. Released code (training/loss_control.py):
- expression pair: fake A warped by the render flow onto B must match fake B (Gaussian-blurred, masked
  Euclidean distance) everywhere except where A has face and B has not -> `exp_warp_loss`, weight 10;
- lighting pair: hair-probability maps, identity features and R-Net landmarks must not change ->
  `lighting_pair_losses` = hair + 2·id + 1000·lm, weight 10.
Beyond the released code (the paper's wider description; its exact equations were not available to us,
so these are our reading, each off unless its weight is set):
- pose pair: identity features unchanged, and the face surface visible in both renders keeps its
  appearance after the render flow's warp -> `pose_pair_losses`;
- identity-feature contrast: 1 - cos of identity embeddings for the expression and pose pairs too
  (the released code uses it only inside the lighting pair) -> `identity_contrast_loss`.
Images are [B,H,W,3] in [-1, 1] (B = number of pairs); flows/masks come from the renderer and are
stop-gradient, as are the frozen experts' parameters (see imitative.frozen).
"""

import jax
import jax.numpy as jnp

from jaxface.errors import ConfigError
from jaxface.losses import image as im
from jaxface.losses import imitative

DEFAULT_WEIGHTS = dict(
    w_exp_warp=10.0,       # released
    w_gamma_change=10.0,   # released
    light_hair=1.0,        # inside the lighting-pair loss (released constants)
    light_id=2.0,
    light_lm=1000.0,
    w_pose=0.0,            # beyond the released code: pose pair (off by default)
    pose_id=2.0,           #   its identity-consistency weight (same as the lighting pair's)
    pose_warp=1.0,         #   its visible-face warp weight
    w_id_contrast=0.0,     # beyond the released code: identity contrast on expression/pose pairs
    blur_size=5,           # the released warp loss blur
    blur_sigma=2.0,
)


def contrastive_weights(**overrides):
  """Released weights (pose pair and identity contrast off) with keyword overrides."""
  unknown = sorted(set(overrides) - set(DEFAULT_WEIGHTS))
  if unknown:
    raise ConfigError(f"unknown contrastive loss weight(s) {unknown}; valid keys are {sorted(DEFAULT_WEIGHTS)}.")
  w = dict(DEFAULT_WEIGHTS)
  w.update(overrides)
  return w


def _binary(mask):
  return (jax.lax.stop_gradient(im.f32(mask)) > 0.5).astype(jnp.float32)


def exp_warp_mask(mask_a, mask_b, valid_ba=None):
  """Where the expression-warp loss looks: [B,H,W] in {0, 1}.

  Released: 1[(M_A - M_B) <= 0] on binary render masks -- everything except pixels that are face in A
  but not in B (there B shows what A's face covered, unknowable from A). With `valid_ba` (render_flow's
  validity of B's face pixels: the surface point is visible in A), B's face pixels whose source is
  occluded in A are dropped as well (our addition; the released flow has no occlusion test).
  """
  ma, mb = _binary(mask_a), _binary(mask_b)
  keep = (ma - mb <= 0).astype(jnp.float32)
  if valid_ba is not None:
    keep = keep * (1.0 - mb * (1.0 - _binary(valid_ba)))
  return keep


def exp_warp_loss(fake_a, fake_b, flow_ba, mask_a, mask_b, valid_ba=None, *, blur_size=5, blur_sigma=2.0,
                  eps=1e-8):
  """Expression-pair loss: Σ L·sqrt(Σ_c (blur(x_B) - blur(warp(x_A, F)))² + eps) / Σ L.

  flow_ba [B,H,W,2]: (dx, dy) at B's pixels to where the same surface point is in A, zero off B's face
  -- `render.render_flow(fm, coeffs_b, coeffs_a, ...)` (the released code rasterizes shape 2 with the
  displacement p1 - p2 and calls dense_image_warp(fake1, -F): the same backward warp). Off the face the
  flow is zero, so background, hair and neck must stay where they are. mask_a, mask_b: render masks;
  valid_ba: render_flow's validity (None = the released mask exactly). The flow and masks are targets
  (stop_gradient); both fakes get gradients.
  """
  flow = jax.lax.stop_gradient(im.f32(flow_ba))
  if flow.shape[:-1] != jnp.shape(fake_a)[:-1] or jnp.shape(fake_a) != jnp.shape(fake_b):
    raise ValueError(f"exp_warp_loss: flow {flow.shape} must be the fakes' [B,H,W] + (2,), fakes "
                     f"{jnp.shape(fake_a)}, {jnp.shape(fake_b)}; render the flow at the fakes' resolution")
  keep = exp_warp_mask(mask_a, mask_b, valid_ba)
  warped = im.warp(fake_a, flow)
  blur_b = im.gaussian_blur(fake_b, blur_size, blur_sigma)
  blur_ab = im.gaussian_blur(warped, blur_size, blur_sigma)
  return im.masked_l2(blur_b, blur_ab, keep, eps)


def hair_consistency_loss(hair_a, hair_b):
  """mean (H_A - H_B)² of the parser's hair probabilities [B,H,W] (released `Hair_region_loss`)."""
  return jnp.mean(jnp.square(im.f32(hair_a) - im.f32(hair_b)))


def identity_consistency_loss(emb_a, emb_b):
  """mean (1 - cos) between the two fakes' identity embeddings (released `ID_consistent_loss`: no clip)."""
  return jnp.mean(1.0 - imitative.cosine(emb_a, emb_b))


def landmark_consistency_loss(lm_a, lm_b, image_size):
  """mean ((lm_A - lm_B)·(256/S) / 224)² over B×68×2; landmarks [B,68,2] pixels in the S×S fake frame.

  Released `Lm_consistent_loss` takes landmarks in the 256 frame and divides by 224 (not 256); we rescale
  to the 256 frame first so the 1000 weight means the same at any resolution and equals the code at 256.
  """
  scale = 256.0 / imitative._frame(image_size) / 224.0
  return jnp.mean(jnp.square((im.f32(lm_a) - im.f32(lm_b)) * scale))


def identity_contrast_loss(fake_a, fake_b, id_fn):
  """Identity-feature contrast on whole fakes (both differentiable): identity_consistency of id_fn(A),
  id_fn(B). The paper's identity contrast for pairs that differ in a non-identity factor."""
  return identity_consistency_loss(id_fn(im.f32(fake_a)), id_fn(im.f32(fake_b)))


def lighting_pair_losses(fake_a, fake_b, *, landmark_fn, hair_fn, id_fn, weights=None):
  """Lighting pair (released `Gamma_change_loss`): {"hair", "id", "lm", "total"} with
  total = light_hair·hair + light_id·id + light_lm·lm (1, 2, 1000 as released; the outer w_gamma_change
  is applied by `contrastive_losses`).

  landmark_fn(images) -> [B,68,2] in the fake's pixel frame (R-Net + face-model projection);
  hair_fn(images, landmarks) -> hair probability [B,H,W] (the parser; its landmarks are stop-gradient, they
  only place the parser's crop); id_fn(images) -> embeddings. Images are passed in [-1, 1]; the experts
  clip/resize as their networks need (the released code clips to 0..255 before each).
  """
  w = contrastive_weights() if weights is None else weights
  fake_a, fake_b = im.f32(fake_a), im.f32(fake_b)
  n = fake_a.shape[0]
  both = jnp.concatenate([fake_a, fake_b], 0)
  lm = landmark_fn(both)
  lm_a, lm_b = lm[:n], lm[n:]
  out = {}
  if w["light_hair"]:
    hair = hair_fn(both, jax.lax.stop_gradient(lm))
    out["hair"] = hair_consistency_loss(hair[:n], hair[n:])
  if w["light_id"]:
    emb = id_fn(both)
    out["id"] = identity_consistency_loss(emb[:n], emb[n:])
  out["lm"] = landmark_consistency_loss(lm_a, lm_b, fake_a.shape[1:3])
  names = dict(hair="light_hair", id="light_id", lm="light_lm")
  out["total"] = sum((w[names[k]] * v for k, v in out.items()), jnp.zeros((), jnp.float32))
  return out


def pose_pair_losses(fake_a, fake_b, *, id_fn, flow_ba=None, valid_ba=None, weights=None, eps=1e-8):
  """Pose pair (beyond the released code): {"id", "warp", "total"}, total = pose_id·id + pose_warp·warp.

  id: identity_consistency of the two fakes. warp: blurred masked Euclidean distance between fake B and
  fake A warped by the render flow, only on B's face pixels whose surface point is visible in A
  (`valid_ba`); background and hair are not constrained (a head turn moves them in ways the 3DMM does not
  model). Lighting is fixed in camera space, so shading of a point changes with the turn: keep pose_warp
  small. flow_ba/valid_ba from `render_flow(fm, coeffs_b, coeffs_a)`.
  """
  w = contrastive_weights() if weights is None else weights
  out = {}
  if w["pose_id"]:
    out["id"] = identity_contrast_loss(fake_a, fake_b, id_fn)
  if w["pose_warp"]:
    if flow_ba is None or valid_ba is None:
      raise ValueError("pose_pair_losses needs flow_ba and valid_ba for its warp term (or pose_warp=0)")
    warped = im.warp(fake_a, jax.lax.stop_gradient(im.f32(flow_ba)))
    blur_b = im.gaussian_blur(fake_b, w["blur_size"], w["blur_sigma"])
    blur_ab = im.gaussian_blur(warped, w["blur_size"], w["blur_sigma"])
    out["warp"] = im.masked_l2(blur_b, blur_ab, _binary(valid_ba), eps)
  names = dict(id="pose_id", warp="pose_warp")
  out["total"] = sum((w[names[k]] * v for k, v in out.items()), jnp.zeros((), jnp.float32))
  return out


def contrastive_losses(pairs, *, landmark_fn=None, hair_fn=None, id_fn=None, weights=None):
  """All contrastive terms and their weighted sum. Returns a flat dict ("exp_warp", "light_hair",
  "light_id", "light_lm", "light", "pose_id", "pose_warp", "pose", "id_contrast", "total").

  pairs: dict with any of
    "exp":   dict(fake_a, fake_b, flow_ba, mask_a, mask_b[, valid_ba])   (released)
    "light": dict(fake_a, fake_b)                                        (released)
    "pose":  dict(fake_a, fake_b[, flow_ba, valid_ba])                   (ours; used when w_pose > 0)
  total = w_exp_warp·exp_warp + w_gamma_change·light + w_pose·pose + w_id_contrast·id_contrast, where
  id_contrast averages the identity contrast over the expression and pose pairs present. A pair that is
  absent or whose weight is 0 is skipped. The released stage-2 step adds this (per pair) to the
  imitative loss; the trainer adds the scalar total.
  """
  w = contrastive_weights() if weights is None else weights
  out = {}
  total = jnp.zeros((), jnp.float32)
  if "exp" in pairs and w["w_exp_warp"]:
    p = pairs["exp"]
    out["exp_warp"] = exp_warp_loss(p["fake_a"], p["fake_b"], p["flow_ba"], p["mask_a"], p["mask_b"],
                                    p.get("valid_ba"), blur_size=w["blur_size"], blur_sigma=w["blur_sigma"])
    total = total + w["w_exp_warp"] * out["exp_warp"]
  if "light" in pairs and w["w_gamma_change"]:
    p = pairs["light"]
    light = lighting_pair_losses(p["fake_a"], p["fake_b"], landmark_fn=landmark_fn, hair_fn=hair_fn,
                                 id_fn=id_fn, weights=w)
    out.update({f"light_{k}": v for k, v in light.items() if k != "total"})
    out["light"] = light["total"]
    total = total + w["w_gamma_change"] * light["total"]
  if "pose" in pairs and w["w_pose"]:
    p = pairs["pose"]
    pose = pose_pair_losses(p["fake_a"], p["fake_b"], id_fn=id_fn, flow_ba=p.get("flow_ba"),
                            valid_ba=p.get("valid_ba"), weights=w)
    out.update({f"pose_{k}": v for k, v in pose.items() if k != "total"})
    out["pose"] = pose["total"]
    total = total + w["w_pose"] * pose["total"]
  if w["w_id_contrast"]:
    terms = [identity_contrast_loss(pairs[k]["fake_a"], pairs[k]["fake_b"], id_fn)
             for k in ("exp", "pose") if k in pairs]
    if terms:
      out["id_contrast"] = sum(terms) / len(terms)
      total = total + w["w_id_contrast"] * out["id_contrast"]
  out["total"] = total
  return out
