"""The factor coefficients the priors train and are measured on: the synthetic world's true coefficients
(identities: the identity pool's id||tex, one row per identity; the rest per sample), or an .npz file of R-Net
estimates (configs/priors.py:bfm). `dataset(config)` -> (train, held-out) arrays per factor, cached per config.
"""

import functools
import json
import os

import ml_collections
import numpy as np

from jaxface.data import synthetic_factors as sf
from jaxface.errors import ConfigError, DataError
from jaxface.models import vae as vae_lib
from jaxface.runs.priors import face_dims, factors


def _synthetic_arrays(d):
  """(train, held-out) dicts of coefficient blocks from the synthetic world's truth."""
  world = sf.as_world_config(d)
  n_ids = world.num_identities
  n_train_ids = n_ids - d.heldout_identities
  if n_train_ids < 2 or d.num_samples < 2 or d.heldout_samples < 2 or d.heldout_identities < 2:
    raise ConfigError(f"config.data: need >= 2 training and held-out rows (num_identities={n_ids}, heldout_identities="
                      f"{d.heldout_identities}, num_samples={d.num_samples}, heldout_samples={d.heldout_samples}).")
  ids = [sf.identity_factors(k, world) for k in range(n_ids)]
  samples = [sf.sample_factors(i, world) for i in range(d.num_samples + d.heldout_samples)]
  out = {}
  for b in ("id", "tex"):
    out[b] = np.stack([f[b] for f in ids])
  for b in ("exp", "gamma", "angle"):
    out[b] = np.stack([f[b] for f in samples])
  split = {"id": n_train_ids, "tex": n_train_ids}
  split.update({b: d.num_samples for b in ("exp", "gamma", "angle")})
  return ({b: v[:split[b]] for b, v in out.items()}, {b: v[split[b]:] for b, v in out.items()})


def _file_arrays(d, dims):
  path = d.coeff_file
  if not os.path.isfile(path):
    raise DataError(f"config.data.coeff_file={path!r} does not exist; pass an .npz with arrays id, tex, exp, gamma, "
                    f"angle (e.g. R-Net estimates over a dataset), or leave it empty to use the synthetic world.")
  try:
    with np.load(path, allow_pickle=False) as z:
      out = {b: np.asarray(z[b], np.float32) for b in dims if b in z.files}
  except (OSError, ValueError) as e:
    raise DataError(f"config.data.coeff_file={path!r} is not a readable .npz ({e}); write it with numpy.savez.") \
        from None
  n = None
  for b, k in dims.items():
    if b not in out or out[b].ndim != 2 or out[b].shape[1] != k:
      raise DataError(f"{path}: array {b!r} must have shape [N, {k}] (face model block size), found "
                      f"{out[b].shape if b in out else 'nothing'}; the file needs id, tex, exp, gamma, angle.")
    if n is not None and out[b].shape[0] != n:
      raise DataError(f"{path}: arrays have different row counts ({n} vs {out[b].shape[0]} for {b!r}).")
    n = out[b].shape[0]
    if not np.all(np.isfinite(out[b])):
      raise DataError(f"{path}: array {b!r} has NaN/Inf entries; drop those rows.")
  n_eval = max(2, int(round(n * d.heldout_fraction)))
  if n - n_eval < 2:
    raise DataError(f"{path}: {n} rows are too few to train and hold out {n_eval}.")
  return {b: v[:-n_eval] for b, v in out.items()}, {b: v[-n_eval:] for b, v in out.items()}


@functools.lru_cache(maxsize=4)
def _dataset_cached(key):
  d = ml_collections.ConfigDict(json.loads(key[0]))
  dims = dict(key[1])
  blocks = _file_arrays(d, dims) if d.coeff_file else _synthetic_arrays(d)
  return tuple({f: np.concatenate([part[b] for b in vae_lib.FACTOR_BLOCKS[f]], -1).astype(np.float32)
                for f in vae_lib.FACTORS} for part in blocks)


def dataset(config):
  """(train, held-out): {factor: float32 [N, dim]} (cached per process: the world's truth takes a minute)."""
  train, held = _dataset_cached((config.data.to_json(sort_keys=True), tuple(sorted(face_dims(config).items()))))
  dims = vae_lib.factor_dims(face_dims(config))
  for f in factors(config):
    if train[f].shape[1] != dims[f]:
      raise ConfigError(f"factor {f}: data has {train[f].shape[1]} dims, config.priors.face_dims gives {dims[f]}.")
  return train, held
