"""Datasets of (image, w) pairs sampled from a trained generator with a mapping network (a jaxface StyleGAN2 or
DiscoFaceGAN, runs/latent_generators.py): what a latent-space method trains on.

`generate(gen, folder, num, ...)` writes
  images.npy  uint8 [N, R, R, 3]        (memory-mapped when read; 10K 64x64 images are 120 MB)
  ws.npy      float32 [N, num_ws, w_dim]  the W+ codes the images were synthesized from (truncated on the first
                                          `truncation_layers` layers, as the original's generate_fake_data)
  meta.json   the generator's workdir, step and fingerprint, psi, layers, seed, N: `open_samples` refuses a
              folder made from another generator
Rows are a pure function of (generator, seed, row) for a StyleGAN2: z = renormalised N(0, I) from
default_rng([seed, row]). A generator whose z is not a direction (DiscoFaceGAN: λ from its factor priors ‖ ε)
draws all N codes with its own sampler, so there a row depends on (generator, seed, N).
Written to a temporary name and renamed at the end, so an interrupted run never leaves a half dataset.
"""

import json
import os
import shutil

import numpy as np

from jaxface.errors import DataError
from jaxface.runs import latent_codes
from jaxface.runs import latent_codes as ifg

FILES = ("images.npy", "ws.npy", "meta.json")


def fingerprint(params):
  """A cheap identity of a parameter pytree (sums and sizes of every leaf): tells one trained generator from
  another without hashing megabytes."""
  import jax
  leaves = jax.tree_util.tree_leaves(params)
  return [round(float(np.asarray(a, np.float64).sum()), 6) for a in leaves[:64]] + [int(sum(np.size(a)
                                                                                          for a in leaves))]


def _z(seed, start, stop, dim):
  z = np.stack([np.random.default_rng([seed, i]).standard_normal(dim) for i in range(start, stop)])
  return ifg.renormalize_z(z).astype(np.float32)


def _codes_fn(gen, num, seed):
  """(start, stop) -> z rows of the dataset (module docstring)."""
  if gen.RENORMALIZE_Z:
    return lambda start, stop: _z(seed, start, stop, gen.z_dim)
  z = gen.sample_z(num, seed)
  return lambda start, stop: z[start:stop]


def generate(gen, folder, num, seed=0, batch=64, log=print):
  """Samples `num` (image, W+) pairs of `gen` (a runs/latent_codes.py LatentGenerator, whose truncation psi and
  layers apply) into `folder`."""
  if num < 1:
    raise DataError(f"asked for {num} generated images; need at least 1.")
  tmp = folder.rstrip("/") + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  r, L, d = gen.resolution, gen.num_ws, gen.w_dim
  images = np.lib.format.open_memmap(os.path.join(tmp, "images.npy"), "w+", np.uint8, (num, r, r, 3))
  ws = np.lib.format.open_memmap(os.path.join(tmp, "ws.npy"), "w+", np.float32, (num, L, d))
  codes = _codes_fn(gen, num, seed)
  for start in range(0, num, batch):
    stop = min(num, start + batch)
    w = gen.map(codes(start, stop))
    wp = gen.truncate(w)
    out = gen.synthesize(wp, "wp")
    images[start:stop] = latent_codes.postprocess(out["image"])
    ws[start:stop] = wp
    if log and (start // batch) % 20 == 0:
      log(f"[data] generated {stop}/{num} images from {gen.workdir} step {gen.step}")
  images.flush()
  ws.flush()
  del images, ws
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump(meta(gen, num, seed), f, indent=1)
  shutil.rmtree(folder, ignore_errors=True)
  os.replace(tmp, folder)
  return folder


def meta(gen, num, seed):
  return {"generator": os.path.abspath(gen.workdir), "step": int(gen.step), "fingerprint": fingerprint(gen.params),
          "num": int(num), "resolution": int(gen.resolution), "num_ws": int(gen.num_ws), "w_dim": int(gen.w_dim),
          "truncation_psi": gen.truncation_psi, "truncation_layers": gen.truncation_layers, "seed": int(seed)}


def open_samples(folder, gen=None):
  """(images uint8 memmap [N, R, R, 3], ws float32 memmap [N, L, d], meta dict). With `gen`, checks the folder
  was sampled from that very generator."""
  missing = [f for f in FILES if not os.path.isfile(os.path.join(folder, f))]
  if missing:
    raise DataError(f"{folder!r} is not a generated-samples folder (missing {', '.join(missing)}); leave "
                    f"config.samples.path empty to generate one, or point it at a folder this module wrote.")
  with open(os.path.join(folder, "meta.json")) as f:
    m = json.load(f)
  images = np.load(os.path.join(folder, "images.npy"), mmap_mode="r")
  ws = np.load(os.path.join(folder, "ws.npy"), mmap_mode="r")
  if images.shape[0] != m["num"] or ws.shape[0] != m["num"]:
    raise DataError(f"{folder!r} holds {images.shape[0]} images and {ws.shape[0]} codes but its meta.json says "
                    f"{m['num']}; it is damaged. Delete it and generate it again.")
  if gen is not None and (m["fingerprint"] != fingerprint(gen.params) or m["w_dim"] != gen.w_dim
                          or m["resolution"] != gen.resolution):
    raise DataError(f"{folder!r} was sampled from generator {m['generator']} step {m['step']}, not from "
                    f"{gen.workdir} step {gen.step}; point config.samples.path elsewhere (or leave it empty).")
  return images, ws, m
