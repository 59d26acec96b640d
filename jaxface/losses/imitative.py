"""DiscoFaceGAN's imitative losses as pure functions (Deng et al., CVPR 2020).

The generator must imitate the analytic render of its own input coefficients λ: R-Net re-estimates
landmarks and SH lighting from the fake, an identity net compares the fake (masked by the render mask)
with the render, and the mean colour in the face region and (at low resolution) the masked pixels must
agree. Frozen experts enter as plain callables on [-1, 1] NHWC images (`frozen(apply_fn, params)` makes
one whose parameters never receive a gradient); every target (render image, mask, landmarks, λ's
lighting) is wrapped in `stop_gradient`, so gradients reach only the generated image.

Released-code formulas (training/loss_control.py), with x the fake and x̂ the render, both in [-1, 1]:
  L_pix  = Σ M·sqrt(Σ_c (x̂ - x)² + 1e-8) / Σ M                      (weight 20, only while res ≤ 32)
  L_lm   = mean(w · ((lm - lm̂) / S)²)      over B×68×2, w = 1           (weight 500 stage 1, 100 stage 2)
  L_γ    = mean |γ̃ - γ|                                                 (weight 10)
  L_id   = mean max(0.3, 1 - cos(f(to255(x)·M), f(to255(x̂))))          (weight 3)
  L_skin = mean_b sqrt(Σ_c (μ_M(x) - μ_M(x̂))² + 1e-8)                   (weight 20)
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.errors import ConfigError
from jaxface.losses import image as im

# Released DiscoFaceGAN weights (train.py flags; w_pix is hard-coded 20 in loss.py).
STAGE_WEIGHTS = {
    1: dict(w_lm=500.0, w_gamma=10.0, w_id=3.0, w_skin=20.0, w_pix=20.0, id_clip=0.3),
    2: dict(w_lm=100.0, w_gamma=10.0, w_id=3.0, w_skin=20.0, w_pix=20.0, id_clip=0.3),
}


def imitative_weights(stage=1, **overrides):
  """The released weights for `stage` (1 or 2: w_lm 500 -> 100), with keyword overrides."""
  if stage not in STAGE_WEIGHTS:
    raise ConfigError(f"DiscoFaceGAN has training stages 1 and 2, got stage={stage!r}; set the stage to 1 "
                      "(imitative only) or 2 (imitative + contrastive).")
  weights = dict(STAGE_WEIGHTS[stage])
  unknown = sorted(set(overrides) - set(weights))
  if unknown:
    raise ConfigError(f"unknown imitative loss weight(s) {unknown}; valid keys are {sorted(weights)}.")
  weights.update({k: float(v) for k, v in overrides.items()})
  return weights


def frozen(apply_fn, params):
  """A frozen expert: images -> outputs with `params` behind stop_gradient (a network the losses call but
  never train: R-Net, identity net, parser). apply_fn(params, images)."""
  return lambda *args: apply_fn(jax.lax.stop_gradient(params), *args)


def landmark_weights(kind="disco"):
  """Per-landmark weights [68]. "disco": all ones (DiscoFaceGAN's `landmark_weight = ones`, the released
  imitative loss); "d3dfr": Deep3DFaceRecon's R-Net training weights (nose 28-30 and the 8 inner-mouth
  points ×20), offered for ablations only."""
  w = np.ones(68, np.float32)
  if kind == "disco":
    return jnp.asarray(w)
  if kind == "d3dfr":
    w[28:31] = 20.0
    w[60:68] = 20.0
    return jnp.asarray(w)
  raise ConfigError(f"unknown landmark weighting {kind!r}; choose 'disco' (uniform, the released "
                    "DiscoFaceGAN loss) or 'd3dfr' (nose/inner mouth ×20).")


def _frame(size):
  """(width, height) of the landmark frame as a float array, from an int or (H, W)."""
  if isinstance(size, (int, float)):
    return jnp.asarray([size, size], jnp.float32)
  h, w = size
  return jnp.asarray([w, h], jnp.float32)


def landmark_loss(pred, target, image_size, weights=None):
  """mean over B×68×2 of w·((pred - target)/S)²; pred, target [B,68,2] pixels in the same S×S frame.

  Released code: R-Net landmarks in the 224 frame vs render landmarks ×224/256, divided by 224, i.e.
  both in one frame divided by its size -- identical to expressing both in the fake's own frame and
  dividing by its size S (so the weight means the same at every resolution). image_size: int or (H, W)
  (x is divided by W, y by H). weights: [68] (see `landmark_weights`), default uniform as released.
  """
  pred, target = im.f32(pred), jax.lax.stop_gradient(im.f32(target))
  d = jnp.square((pred - target) / _frame(image_size))
  if weights is not None:
    d = d * jnp.asarray(weights, d.dtype)[:, None]
  return jnp.mean(d)


def gamma_loss(pred_gamma, target_gamma):
  """Lighting: mean |γ̃ - γ| over B×27 (R-Net's SH estimate of the fake vs the λ that made it)."""
  return jnp.mean(jnp.abs(im.f32(pred_gamma) - jax.lax.stop_gradient(im.f32(target_gamma))))


def l2_normalize(x, eps=1e-12):
  x = im.f32(x)
  return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps))


def cosine(a, b):
  """Row-wise cosine similarity of embeddings [B,D] -> [B] (both L2-normalized first, as tf.nn.l2_normalize)."""
  return jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


def clipped_cosine_distance(emb, target_emb, clip=0.3):
  """mean max(clip, 1 - cos): below `clip` the loss has no gradient, so the generator is not pushed to copy
  the render's (unrealistic) identity features exactly -- the released code's "need clip! IMPORTANT"."""
  return jnp.mean(jnp.maximum(clip, 1.0 - cosine(emb, jax.lax.stop_gradient(target_emb))))


def identity_loss(fake, render_image, mask, id_fn, clip=0.3):
  """Identity imitation: embeddings of the fake masked by the render mask vs the whole render.

  Follows the released `ID_loss`: the fake is clipped to the image range and multiplied by the mask in
  0..1 space (background black, like the render's), the render is taken whole (its background is black);
  id_fn gets both in [-1, 1] (it resizes/normalizes for its own network: FaceNet 160², dlib 150², ...).
  The render branch is a target: stop_gradient on its input and embedding.
  fake, render_image [B,H,W,3] in [-1,1]; mask [B,H,W].
  """
  mask = jax.lax.stop_gradient(im.f32(mask))
  fake_masked = im.from_unit(im.to_unit(fake) * mask[..., None])
  target = jax.lax.stop_gradient(id_fn(jax.lax.stop_gradient(im.f32(render_image))))
  return clipped_cosine_distance(id_fn(fake_masked), target, clip)


def skin_loss(fake, render_image, mask, eps=1e-8):
  """Mean colour in the render's face region: mean_b sqrt(Σ_c (μ(x) - μ(x̂))² + eps), [-1, 1] values.

  "Skin" is the released `Skin_color_loss`, on the render's alpha mask (the rasterized gan_mask region,
  no skin segmentation); pass another region mask (e.g. the model's skin_mask rendered) to change it.
  """
  mask = jax.lax.stop_gradient(mask)
  mu_fake = im.masked_channel_mean(fake, mask)
  mu_render = jax.lax.stop_gradient(im.masked_channel_mean(render_image, mask))
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(mu_fake - mu_render), axis=-1) + eps))


def pixel_loss(fake, render_image, mask, eps=1e-8):
  """Low-resolution masked pixel loss: Σ M·sqrt(Σ_c (x̂ - x)² + eps) / Σ M (the released "L1_loss" is a
  per-pixel Euclidean norm). No clipping of the fake, as released."""
  return im.masked_l2(jax.lax.stop_gradient(render_image), fake, jax.lax.stop_gradient(mask), eps)


def render_targets(rendered, gamma):
  """Targets from a batched `render.render` output (image 0..1, mask, landmarks) and λ's lighting [B,27]:
  image -> [-1, 1]; all stop-gradient (the renderer and the VAE decoders that produced λ stay frozen)."""
  sg = jax.lax.stop_gradient
  return dict(image=sg(im.from_unit(rendered["image"])), mask=sg(im.f32(rendered["mask"])),
              landmarks=sg(im.f32(rendered["landmarks"])), gamma=sg(im.f32(gamma)))


def imitative_losses(fake, targets, *, recon_fn=None, id_fn=None, weights=None, low_res=False,
                     lm_weights=None):
  """All imitative terms and their weighted sum. Returns {term: value, ..., "total": Σ w·term}.

  fake [B,H,W,3] in [-1, 1]; targets: dict image [B,H,W,3] ([-1, 1]), mask [B,H,W], landmarks [B,68,2]
  (pixels in the fake's frame), gamma [B,27] (`render_targets` builds it). recon_fn(images) -> dict with
  "landmarks" [B,68,2] (R-Net coefficients projected by the face model into the fake's pixel frame, the
  released `Get_landmark` up to the frame scale) and "gamma" [B,27]; id_fn(images) -> embeddings [B,D].
  weights: `imitative_weights(stage)` (default stage 1). low_res (a Python bool): the released switch
  `resolution <= 32` -> only 20·L_pix; otherwise landmark + lighting + identity + skin. A term whose weight
  is 0 is not computed (its expert is not called).
  """
  w = imitative_weights(1) if weights is None else weights
  tg = {k: jax.lax.stop_gradient(im.f32(v)) for k, v in targets.items()}
  fake = im.f32(fake)
  out = {}
  if low_res:
    if w["w_pix"]:
      out["pix"] = pixel_loss(fake, tg["image"], tg["mask"])
    out["total"] = w["w_pix"] * out.get("pix", jnp.zeros((), jnp.float32))
    return out
  if w["w_lm"] or w["w_gamma"]:
    if recon_fn is None:
      raise ValueError("imitative_losses needs recon_fn for the landmark/lighting terms")
    rec = recon_fn(fake)
    if w["w_lm"]:
      out["lm"] = landmark_loss(rec["landmarks"], tg["landmarks"], fake.shape[1:3], lm_weights)
    if w["w_gamma"]:
      out["gamma"] = gamma_loss(rec["gamma"], tg["gamma"])
  if w["w_id"]:
    if id_fn is None:
      raise ValueError("imitative_losses needs id_fn for the identity term")
    out["id"] = identity_loss(fake, tg["image"], tg["mask"], id_fn, w["id_clip"])
  if w["w_skin"]:
    out["skin"] = skin_loss(fake, tg["image"], tg["mask"])
  names = dict(lm="w_lm", gamma="w_gamma", id="w_id", skin="w_skin")
  out["total"] = sum((w[names[k]] * v for k, v in out.items()), jnp.zeros((), jnp.float32))
  return out
