"""SofGAN labels and region-wise style editing for the SIW generator (jaxface.models.siw).

Label space: SofGAN's 17 classes (`CLASSES17`, noses split l/r, brows/eyes/ears merged); the synthetic world's
16 classes map into it with `world_to_sofgan17` (jaxface.data.synthetic_world.TO_SOFGAN17).

  random_group_masks   training masks: present classes -> 12 semantic groups (classBin), shuffled, the first
                       floor(n/2) present groups take style 0, the rest style 1 (the release's scatter_to_mask)
  region_mask          editing masks: channels (1 - alpha * m_R, alpha * m_R) for a region R (`REGIONS`)
  region_edit          (seg, w_base, w_new, regions, alpha) -> images: only region R takes the new style
  make_generate        generate(params, seg, w_pair, mask, noise) -> images, for per-frame rendering
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.data.synthetic_world import TO_SOFGAN17
from jaxface.errors import DataError, UserError
from jaxface.models import siw as siw_lib

CLASSES17 = ("background", "skin", "brow", "eye", "r_nose", "l_nose", "mouth", "u_lip", "l_lip", "ear", "earring",
             "eye_g", "neck", "necklace", "cloth", "hair", "hat")
# The release's classBin: class -> one of 12 semantic groups {bg | skin+noses+ear+neck | brow | eye | mouth | lips |
# earring | glasses | necklace | cloth | hair | hat}.
CLASS_BIN = np.array([0, 1, 2, 3, 1, 1, 4, 5, 5, 1, 6, 7, 1, 8, 9, 10, 11], np.int32)
NUM_GROUPS = 12
# Region groups of the release's UI / notebook (IDList).
REGIONS = {
    "global": tuple(range(17)),
    "background": (0,),
    "complexion": (1, 4, 5, 9, 12),
    "hair": (15,),
    "eyes_mouth": (6, 7, 8, 3),
    "wearings": (11, 13, 14, 16, 10),
}
NOSE_R, NOSE_L = 4, 5
MIN_LABEL_RES, MAX_LABEL_RES = 8, 1024


def world_to_sofgan17(labels):
  """Synthetic-world labels (jaxface.data.synthetic.CLASSES, 16) -> SofGAN's 17 (works on numpy and JAX)."""
  if isinstance(labels, np.ndarray):
    return TO_SOFGAN17[labels]
  return jnp.asarray(TO_SOFGAN17)[labels]


def flip17(labels, flip=True):
  """Horizontal flip of 17-class label maps [..., H, W] with the l/r nose swap (the release's flip_labels);
  `flip` may be a per-sample boolean [B] (for random flips)."""
  flipped = jnp.flip(labels, axis=-1)
  flipped = jnp.where(flipped == NOSE_R, NOSE_L, jnp.where(flipped == NOSE_L, NOSE_R, flipped))
  flip = jnp.asarray(flip).reshape(jnp.shape(flip) + (1,) * (labels.ndim - jnp.ndim(flip)))
  return jnp.where(flip, flipped, labels)


def check_labels(labels, num_classes=17):
  """Host-side checks of a user label map [B, H, W] (or [H, W]); returns int32 [B, H, W]."""
  labels = np.asarray(labels)
  if labels.ndim == 2:
    labels = labels[None]
  if labels.ndim != 3 or labels.shape[1] != labels.shape[2]:
    raise DataError(f"a label map must be square, [batch, S, S] or [S, S] class ids; got shape {labels.shape}")
  if not MIN_LABEL_RES <= labels.shape[1] <= MAX_LABEL_RES:
    raise DataError(f"label maps must be between {MIN_LABEL_RES} and {MAX_LABEL_RES} pixels wide, got "
                    f"{labels.shape[1]}; resize it (nearest neighbour) first")
  if labels.dtype.kind not in "iu":
    if labels.dtype.kind != "f" or not np.all(labels == np.round(labels)):
      raise DataError(f"a label map holds integer class ids, got dtype {labels.dtype} with non-integer values")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = sorted(set(np.unique(labels[(labels < 0) | (labels >= num_classes)]).tolist()))[:8]
    raise DataError(f"the label map holds class ids {bad} outside SofGAN's {num_classes} classes 0..{num_classes - 1} "
                    f"({', '.join(CLASSES17)}); map your parser's labels first (synthetic-world labels: "
                    f"jaxface.edit.region.world_to_sofgan17)")
  return labels.astype(np.int32)


def nearest_resize(labels, size):
  """Label maps [B, H, W] -> [B, size, size] by nearest neighbour (jittable)."""
  h, w = labels.shape[-2:]
  if (h, w) == (size, size):
    return labels
  iy = np.minimum((np.arange(size) * h) // size, h - 1)
  ix = np.minimum((np.arange(size) * w) // size, w - 1)
  return labels[..., iy, :][..., ix]


def onehot(labels, seg_res, num_classes=17):
  """Label maps [B, H, W] -> one-hot [B, seg_res, seg_res, num_classes] float32 (nearest-resized first)."""
  return jax.nn.one_hot(nearest_resize(labels, seg_res), num_classes, dtype=jnp.float32)


def random_group_masks(key, labels):
  """Training masks [B, 2, H, W] (hard 0/1) from 17-class labels [B, H, W]: per sample the present semantic
  groups are shuffled and the first floor(n/2) take style 0, the rest style 1."""
  groups = jnp.asarray(CLASS_BIN)[labels]  # [B, H, W]
  present = jax.vmap(lambda g: jnp.zeros(NUM_GROUPS, bool).at[g.reshape(-1)].set(True))(groups)
  scores = jax.random.uniform(key, present.shape)
  scores = jnp.where(present, scores, 2.0)  # absent groups sort last
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)  # position of each group in the shuffled order
  n = present.sum(1, keepdims=True)
  style0 = present & (rank < n // 2)  # [B, 12]
  m0 = jnp.take_along_axis(style0, groups.reshape(groups.shape[0], -1), axis=1).reshape(groups.shape)
  m0 = m0.astype(jnp.float32)
  return jnp.stack([m0, 1.0 - m0], axis=1)


def region_ids(regions):
  """A region name, a list of names, or class ids -> a sorted tuple of 17-class ids."""
  if isinstance(regions, str):
    regions = [regions]
  ids = set()
  for r in regions:
    if isinstance(r, str):
      if r not in REGIONS:
        raise UserError(f"unknown region {r!r}; use one of {', '.join(REGIONS)} or class ids 0..16")
      ids.update(REGIONS[r])
    else:
      if int(r) != r or not 0 <= int(r) < 17:
        raise UserError(f"class id {r!r} is outside SofGAN's 17 classes 0..16")
      ids.add(int(r))
  return tuple(sorted(ids))


def region_mask(labels, regions, alpha=1.0):
  """Editing mask [B, 2, H, W]: (1 - alpha * m_R, alpha * m_R) with m_R = labels in region R."""
  m = jnp.isin(labels, jnp.asarray(region_ids(regions))).astype(jnp.float32) * alpha
  return jnp.stack([1.0 - m, m], axis=1)


# ---------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------

def _prepare_seg(model, seg):
  """Labels [B, S, S] (or [S, S]) or one-hot [B, S, S, 17] -> (labels at seg_res or None, one-hot at seg_res).
  Concrete inputs are checked on the host (unknown class ids, size); traced ones (inside jit) cannot be."""
  if not isinstance(seg, jax.core.Tracer):
    seg = np.asarray(seg)
    if seg.ndim == 4:
      if seg.shape[-1] != model.num_classes or seg.shape[1] != seg.shape[2]:
        raise DataError(f"a one-hot label map must be [batch, S, S, {model.num_classes}], got {seg.shape}")
      return None, jnp.asarray(seg, jnp.float32)
    seg = check_labels(seg, model.num_classes)
  elif seg.ndim == 4:
    return None, seg.astype(jnp.float32)
  labels = nearest_resize(jnp.asarray(seg), model.seg_res)
  return labels, jax.nn.one_hot(labels, model.num_classes, dtype=jnp.float32)


def _w_pair(model, w_pair):
  w_pair = jnp.asarray(w_pair, jnp.float32)
  if w_pair.ndim not in (3, 4) or w_pair.shape[1] != siw_lib.NUM_STYLES or w_pair.shape[-1] != model.w_dim:
    raise UserError(f"w_pair must hold {siw_lib.NUM_STYLES} styles per image, [batch, 2, {model.w_dim}] or "
                    f"[batch, 2, {model.num_ws}, {model.w_dim}]; got {tuple(w_pair.shape)}")
  return siw_lib.broadcast_ws(w_pair, model.num_ws)


@functools.lru_cache(maxsize=16)
def _synthesize_fn(model, mode):
  return jax.jit(lambda p, s, w, m, k: model.apply({"params": p}, s, w, m, mode, method="synthesize",
                                                   rngs={"noise": k}))


def generate(model, params, seg, w_pair, mask=None, noise="const"):
  """Images [B, R, R, 3] in about [-1, 1] from a SIWGenerator `model` and its params (jitted per shape).

  seg: class ids [B, S, S] (17-class) or one-hot [B, S, S, 17]; w_pair [B, 2, w_dim] or [B, 2, num_ws, w_dim];
  mask [B, 2, H, W] (None: all style 0); noise "const" (the same fixed maps every call: use it for
  view-consistent sequences), "none", or a PRNG key (fresh noise).
  """
  _, onehot_seg = _prepare_seg(model, seg)
  ws = _w_pair(model, w_pair)
  if ws.shape[0] != onehot_seg.shape[0]:
    raise UserError(f"w_pair has {ws.shape[0]} images but the label map {onehot_seg.shape[0]}")
  if mask is None:
    mask = jnp.zeros((ws.shape[0], 2) + onehot_seg.shape[1:3], jnp.float32).at[:, 0].set(1.0)
  mode = noise if isinstance(noise, str) else "random"
  key = jax.random.key(0) if isinstance(noise, str) else noise
  return _synthesize_fn(model, mode)(params, onehot_seg, ws, jnp.asarray(mask, jnp.float32), key)


def make_generate(model):
  """`generate(params, seg, w_pair, mask, noise) -> images` bound to `model` (for per-frame rendering)."""
  return functools.partial(generate, model)


def region_edit(model, params, seg, w_base, w_new, regions, alpha=1.0, noise="const"):
  """Restyles region(s) R of each image: images [B, R, R, 3] generated with the pair (w_base, w_new) and the
  mask (1 - alpha * m_R, alpha * m_R). w_base, w_new: [B, w_dim] or [B, num_ws, w_dim]; regions: names of
  `REGIONS`, class ids, or a mix; alpha in [0, 1] (0 = the base image, 1 = region fully restyled)."""
  if not 0.0 <= float(alpha) <= 1.0:
    raise UserError(f"alpha must be in [0, 1], got {alpha}")
  labels, onehot_seg = _prepare_seg(model, seg)
  if labels is None:
    labels = jnp.argmax(onehot_seg, -1)
  w_base, w_new = jnp.asarray(w_base, jnp.float32), jnp.asarray(w_new, jnp.float32)
  if w_base.shape != w_new.shape or w_base.ndim not in (2, 3) or w_base.shape[0] != labels.shape[0]:
    raise UserError(f"w_base and w_new must both be [batch, w_dim] or [batch, num_ws, w_dim] with the label map's "
                    f"batch {labels.shape[0]}; got {tuple(w_base.shape)} and {tuple(w_new.shape)}")
  mask = region_mask(labels, regions, alpha)
  return generate(model, params, onehot_seg, jnp.stack([w_base, w_new], axis=1), mask, noise)


# ---------------------------------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------------------------------

PALETTE17 = np.array([
    [0, 0, 0], [204, 153, 128], [102, 51, 0], [255, 255, 255], [230, 100, 100], [100, 100, 230], [180, 0, 40],
    [255, 80, 120], [200, 40, 90], [255, 200, 0], [255, 0, 255], [0, 255, 255], [120, 200, 120], [255, 255, 0],
    [0, 100, 200], [90, 40, 140], [0, 160, 80]], np.float32) / 255.0  # one colour per CLASSES17 entry


def colorize(labels, size=None):
  """17-class label maps [B, H, W] -> RGB [B, size, size, 3] in [0, 1] (nearest-resized to `size`)."""
  labels = jnp.asarray(labels)
  if size is not None:
    labels = nearest_resize(labels, size)
  return jnp.asarray(PALETTE17)[labels]
