"""The files the InterFaceGAN commands read and write: .npy codes and boundaries (checked against the
generator), image folders, labelled grids, and the log.txt the original writes beside its outputs.
"""

import os

import numpy as np

from jaxface import grid
from jaxface.edit import interfacegan as ifg
from jaxface.errors import UserError
from jaxface.runs import latent_codes


class RunLog:
  """Prints and appends to OUT/log.txt (the original writes a log beside its outputs)."""

  def __init__(self, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    self.f = open(os.path.join(out_dir, "log.txt"), "a")

  def __call__(self, msg):
    print(msg, flush=True)
    self.f.write(msg + "\n")
    self.f.flush()

  def close(self):
    self.f.close()


def load_npy(path, what):
  if not path or not os.path.isfile(path):
    raise UserError(f"{what} file {path!r} does not exist; pass the path of a .npy file.")
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise UserError(f"{what} file {path!r} is not a readable .npy array ({e}); regenerate it.") from None


def save_images(out_dir, images, name_fn):
  from PIL import Image
  for i, img in enumerate(latent_codes.postprocess(images)):
    Image.fromarray(img).save(os.path.join(out_dir, name_fn(i)), quality=95)


def save_grid(path, images, cols=None):
  from jaxface import metrics  # JAX: loaded once the command runs, not for --help
  metrics.save_png(path, metrics.image_grid(images, cols=cols))


def save_labelled_grid(path, images, rows, cols, corner):
  """images [rows, cols, R, R, 3] in [-1, 1] -> a PNG labelled with each row's source and each column's edit."""
  grid.save(path, grid.labelled_grid(latent_codes.postprocess(images), rows, cols, corner))


def boundary_name(path):
  """The attribute a boundary file is for: b/<name>/boundary.npy (train_boundary's layout) or <name>.npy."""
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.basename(os.path.dirname(os.path.abspath(path))) if stem == "boundary" else stem


def load_boundary(path, dim, what="boundary"):
  b = load_npy(path, what)
  return ifg.check_boundary(b, f"{what} {path}", dim)


def boundary_for(path, G, space, what="boundary"):
  """A boundary for codes of `space`: (1, d), or for W+ also one flattened (1, L * d) normal (train_boundary on
  wp.npy)."""
  dim = G.dims(space)
  raw = load_npy(path, what)
  if space == "wp" and raw.shape == (1, G.num_ws * dim):
    dim = G.num_ws * dim
  return ifg.check_boundary(raw, f"{what} {path}", dim)
