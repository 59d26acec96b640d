"""SofGAN end to end: free-view portraits and region restyling from a trained geometry (SOF) and texture (SIW).

  python -m jaxface.sofgan render --sof W_SOF --siw W_SIW --out seq.gif [--geometry gmm:3 | instance:0]
                                  [--style-seed 0] [--frames 40] [--size 128] [--max-yaw 30] [--pitch 8]
  python -m jaxface.sofgan edit   --sof W_SOF --siw W_SIW --out grid.png [--geometry gmm:3] [--rows 4]
                                  [--regions hair,complexion,background] [--style-seed 0]

`render`: one head (a GMM sample of the learned geometry codes, or a training instance) seen along SofGAN's camera
path, a yaw sweep 0 → −max → 0 → +max → 0 followed by a small spiral in yaw and pitch. Each frame's label map is
rendered by SOF (the world's 16 classes, mapped to SofGAN's 17) and painted by SIW with ONE style pair and the
fixed noise maps, as the release does. The texture stays consistent from frame to frame because it has no 3D
representation of its own. Frames are label colours | image.
`edit`: rows are heads with a base style; the columns restyle one region group at a time with a second style
(SofGAN's region groups, `jaxface.edit.region.REGIONS`); the grid is labelled with each head and each column.
"""

import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface import grid as grid_lib
from jaxface.cli import lazy_import
from jaxface.errors import UserError, cli
from jaxface.runs.workdir import read_run

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")

MAX_FRAMES = 600  # render: frames along the camera path
MAX_ROWS = 64  # edit: heads


# ------------------------------------------------------------------------------------------------- models

class SofGAN:
  """A trained geometry + texture pair."""

  def __init__(self, sof_workdir, siw_workdir):
    from jaxface.runs import siw as siw_train  # JAX: loaded once the command runs, not for --help
    from jaxface.runs import sof as sof_train  # JAX: loaded once the command runs, not for --help
    self.sof = sof_train.load_sof(sof_workdir)
    config, state, _ = read_run(siw_workdir, None, trainer="siw")
    self.siw_config = config
    self.G = siw_train.generator(config)
    self.params = jax.tree.map(jnp.asarray, state["G_ema"])
    self._map = jax.jit(lambda p, z: self.G.apply({"params": p}, z, method="map"))
    self.resolution = int(config.model.resolution)
    self._gmm = None

  def code(self, geometry):
    """A geometry code [latent] from "gmm:SEED" (a new head) or "instance:I" (a training head)."""
    from jaxface.edit import sof_codes  # JAX: loaded once the command runs, not for --help
    kind, _, value = geometry.partition(":")
    try:
      value = int(value)
    except ValueError:
      raise UserError(f"--geometry {geometry!r}: expected gmm:SEED or instance:INDEX") from None
    codes = self.sof.codes
    if kind == "instance":
      if not 0 <= value < len(codes):
        raise UserError(f"--geometry instance:{value}: the SOF run learned instances 0..{len(codes) - 1}")
      return codes[value]
    if kind == "gmm":
      if self._gmm is None:  # fitted once per model: every sampled head draws from the same mixture
        self._gmm = sof_codes.fit_gmm(codes, k=min(16, max(1, len(codes) // 2)), seed=0)
      return sof_codes.sample_gmm(self._gmm, 1, seed=value)[0][0]
    raise UserError(f"--geometry {geometry!r}: expected gmm:SEED or instance:INDEX")

  def labels17(self, code, c2w, size):
    """SofGAN-17 label maps [V, size, size] of one code seen from cameras c2w [V, 4, 4]."""
    from jaxface.data import synthetic_world as sw  # JAX: loaded once the command runs, not for --help
    z = np.repeat(np.asarray(code, np.float32)[None], len(c2w), 0)
    return sw.TO_SOFGAN17[self.sof.labels(z, c2w, size)]

  def styles(self, seed, n):
    """n style codes w [n, w_dim] from the texture mapping network."""
    z = jax.random.normal(jax.random.key(int(seed)), (n, int(self.siw_config.model.z_dim)))
    return np.asarray(self._map(self.params, z))

  def paint(self, labels, w_pair, mask=None):
    """Images [B, R, R, 3] in [-1, 1]: labels [B, S, S] (17 classes), w_pair [B, 2, w_dim], fixed noise."""
    from jaxface.edit import region  # JAX: loaded once the command runs, not for --help
    return np.asarray(region.generate(self.G, self.params, labels, w_pair, mask, noise="const"))


def camera_path(frames, max_yaw_deg, pitch_deg, distance):
  """SofGAN's free-view path: yaw sweep 0 → −max → 0 → +max → 0 (60% of the frames), then a spiral of half the
  amplitude in yaw and `pitch_deg` in pitch. Returns c2w [frames, 4, 4]."""
  from jaxface.render import raymarch  # JAX: loaded once the command runs, not for --help
  n1 = min(frames, max(1, round(frames * 0.6)))
  t = np.linspace(0, 1, n1, endpoint=False)
  yaw1 = -np.sin(2 * np.pi * t) * max_yaw_deg
  t2 = np.linspace(0, 2 * np.pi, frames - n1, endpoint=False)
  yaw2, pitch2 = 0.5 * max_yaw_deg * np.sin(t2), pitch_deg * np.sin(2 * t2)
  yaws = np.deg2rad(np.concatenate([yaw1, yaw2]))
  pitches = np.deg2rad(np.concatenate([np.zeros(n1), pitch2]))
  return np.stack([np.asarray(raymarch.yaw_pitch_c2w(y, p, distance)) for y, p in zip(yaws, pitches)])


def _to_uint8(x):
  return np.clip(np.rint((np.asarray(x, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def _colour(labels, size):
  from jaxface.edit import region  # JAX: loaded once the command runs, not for --help
  return (np.asarray(region.colorize(labels, size)) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- commands

def render_sequence(model, geometry, style_seed, frames, size, max_yaw, pitch):
  """Frames [F, R, 2R, 3] uint8 (label colours | painted image)."""
  from jaxface.data import synthetic_render as sr  # JAX: loaded once the command runs, not for --help
  code = model.code(geometry)
  labels = model.labels17(code, camera_path(frames, max_yaw, pitch, sr.CAMERA_Z), size)
  w = model.styles(style_seed, 2)
  w_pair = np.repeat(w[None], len(labels), 0)
  images = []
  for i in range(0, len(labels), 8):
    images.append(model.paint(labels[i:i + 8], w_pair[i:i + 8]))
  images = _to_uint8(np.concatenate(images))
  return np.concatenate([_colour(labels, model.resolution), images], 2)


def edit_grid(model, geometry, rows, regions, style_seed, size):
  """[rows, 2 + len(regions), R, R, 3] uint8: label map, base image, then each region restyled."""
  from jaxface.data import synthetic_render as sr  # JAX: loaded once the command runs, not for --help
  from jaxface.edit import region  # JAX: loaded once the command runs, not for --help
  from jaxface.render import raymarch  # JAX: loaded once the command runs, not for --help
  kind, _, first = geometry.partition(":")
  c2w = np.asarray(raymarch.yaw_pitch_c2w(0.0, 0.0, sr.CAMERA_Z))[None]
  labels = np.concatenate([model.labels17(model.code(f"{kind}:{int(first) + r}"), c2w, size) for r in range(rows)])
  w = model.styles(style_seed, 2 * rows)
  base, new = w[:rows], w[rows:]
  cols = [_colour(labels, model.resolution), _to_uint8(model.paint(labels, np.stack([base, base], 1)))]
  for name in regions:
    img = region.region_edit(model.G, model.params, labels, base, new, [name], 1.0)
    cols.append(_to_uint8(img))
  return np.stack(cols, 1)


def parse_args(argv):
  p = cli_lib.parser("jaxface.sofgan", description=__doc__)
  p.add_argument("command", choices=("render", "edit"), help="render: a free-view sequence; edit: a region grid")
  p.add_argument("--sof", required=True, help="a configs/sof.py training workdir (geometry)")
  p.add_argument("--siw", required=True, help="a configs/siw.py training workdir (texture)")
  p.add_argument("--out", required=True, help="render: .gif (or .png for a contact sheet); edit: .png")
  p.add_argument("--geometry", default="gmm:0", help="gmm:SEED (a sampled head) or instance:I (a training head)")
  p.add_argument("--style-seed", type=int, default=0, help="seed of the texture style pair")
  p.add_argument("--frames", type=int, default=40, help=f"render: frames along the camera path, 2 to {MAX_FRAMES}")
  p.add_argument("--size", type=int, default=0, help="label-map resolution SOF renders (default: SOF's own)")
  p.add_argument("--max-yaw", type=float, default=30.0, help="render: yaw amplitude (degrees), 0 to 60")
  p.add_argument("--pitch", type=float, default=8.0, help="render: pitch amplitude of the spiral (degrees), 0 to 30")
  p.add_argument("--rows", type=int, default=4, help=f"edit: heads (rows), 1 to {MAX_ROWS}")
  p.add_argument("--regions", default="hair,complexion,background", help="edit: region groups (columns)")
  return p.parse_args(argv)


def check_args(args):
  """Ranges and names, before any model is loaded. Returns the region groups."""
  from jaxface.edit import region  # JAX: loaded once the command runs, not for --help
  if not 2 <= args.frames <= MAX_FRAMES or not 1 <= args.rows <= MAX_ROWS:
    raise UserError(f"--frames {args.frames} must lie in [2, {MAX_FRAMES}] and --rows {args.rows} in [1, {MAX_ROWS}].")
  if not 0 <= args.max_yaw <= 60 or not 0 <= args.pitch <= 30:
    raise UserError(f"camera out of range: --max-yaw {args.max_yaw} must be in [0, 60] and --pitch {args.pitch} in "
                    f"[0, 30] degrees (the geometry was trained on the synthetic world's views)")
  if args.size < 0:
    raise UserError(f"--size {args.size} must be >= 0 (0 = the SOF run's own resolution).")
  kind, _, value = args.geometry.partition(":")
  if kind not in ("gmm", "instance") or not value.lstrip("-").isdigit():
    raise UserError(f"--geometry {args.geometry!r}: expected gmm:SEED or instance:INDEX")
  regions = [r.strip() for r in args.regions.split(",") if r.strip()]
  region.region_ids(regions)  # unknown region names fail here, before loading anything
  return regions


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  regions = check_args(args)
  from jaxface import metrics  # JAX: loaded once the command runs, not for --help
  model = SofGAN(args.sof, args.siw)
  size = args.size or model.sof.res
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  if args.command == "render":
    frames = render_sequence(model, args.geometry, args.style_seed, args.frames, size, args.max_yaw, args.pitch)
    if args.out.lower().endswith(".gif"):
      from PIL import Image
      pics = [Image.fromarray(f) for f in frames]
      pics[0].save(args.out, save_all=True, append_images=pics[1:], duration=80, loop=0)
    else:
      metrics.save_png(args.out, metrics.image_grid(frames, cols=min(8, len(frames))))
    print(f"wrote {args.out}: {len(frames)} frames of {args.geometry} (label map | image)")
  else:
    grid = edit_grid(model, args.geometry, args.rows, regions, args.style_seed, size)
    kind, _, first = args.geometry.partition(":")
    grid_lib.save(args.out, grid_lib.labelled_grid(
        grid, rows=[f"{kind}:{int(first) + r}" for r in range(args.rows)],
        cols=["labels", "base style"] + [f"{name} restyled" for name in regions], corner="head"))
    print(f"wrote {args.out}: {args.rows} heads x (labels, base, {', '.join(regions)} restyled)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
