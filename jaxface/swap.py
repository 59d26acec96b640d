r"""Identity swap with a trained identity-mapping run (configs/id_mapping.py): the identity of one face, the pose,
expression, lighting and background of another, from one pass through the mapper into the frozen StyleGAN2.

  python -m jaxface.swap --workdir W --identity a.png --attributes b.png --out out.png
  python -m jaxface.swap --workdir W --identity a.png c.png --attributes b.png d.png e.png --out grid.png
      -> a labelled grid: a header row of the attribute images, a header column of the identity images, swaps
         inside; the labels name each source file
  python -m jaxface.swap --workdir W --identity a.png c.png --attributes b.png --interpolate 9 --out row.png
      -> identity interpolation in W from a to c (both end points included) under b's attributes; with one
         identity and two attribute images, attribute interpolation instead
  --generated N  uses the run's held-out generated faces N..N+k instead of files (no alignment needed).
Photos are detected and 5-point aligned to the generator's framing unless --no-align (already aligned crops, such
as the generator's own images). Mistakes (no face, unreadable file, a mapper whose generator checkpoint changed)
print `error: ...` and exit 2.
"""

import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface import grid as grid_lib
from jaxface.data import images
from jaxface.errors import UserError, cli
from jaxface.runs import generator_samples as gs
from jaxface.runs import latent_codes

MAX_SOURCES = 64  # identity or attribute sources per grid side, and interpolation steps


def framing(gen):
  """Pixels per decimetre of the generator's training images: the world's camera for a synthetic-world
  generator, Deep3DFaceRecon's 102 px at 224 (data.prepare --align) for real data."""
  d = gen.config.data
  if d.get("kind") == "synthetic":
    return float(d.focal) * gen.resolution / 256.0 / 10.0
  return 102.0 * gen.resolution / 224.0


def read_face(path, gen, align=True):
  """A photo file -> [R, R, 3] uint8 framed like the generator's images (NoFaceError when none is found)."""
  from jaxface.edit import embed  # JAX: loaded once the command runs, not for --help
  return embed.align_to(images.read_photo(path), gen.resolution, framing(gen), align)


def swap_images(config, state, ids, attrs):
  """uint8 [N, R, R, 3] identity and attribute images (paired) -> uint8 swaps [N, R, R, 3]."""
  import jax
  from jaxface.runs import id_mapping as train_lib  # JAX: loaded once the command runs, not for --help
  fn = jax.jit(lambda a, b: train_lib.swap_fn(config)(state, train_lib.to_float(a), train_lib.to_float(b)))
  return latent_codes.postprocess(fn(np.asarray(ids), np.asarray(attrs)))


def interpolate_w(config, state, id_pair, attr_pair, steps):
  """Images along w = (1 - t) w_a + t w_b, t = 0 .. 1 in `steps` (both ends included; the original stops one
  short of t = 1). id_pair / attr_pair: uint8 [2, R, R, 3] (the same image twice for the fixed source)."""
  import jax
  import jax.numpy as jnp
  from jaxface.runs import id_mapping as train_lib  # JAX: loaded once the command runs, not for --help
  fwd, synth = train_lib.mapper_fn(config), train_lib.synthesize_fn(train_lib.generator(config))
  w, _ = jax.jit(lambda a, b: fwd(state["params"], state["frozen"], train_lib.to_float(a), train_lib.to_float(b)))(
      np.asarray(id_pair), np.asarray(attr_pair))
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  return latent_codes.postprocess(jax.jit(synth)(state["frozen"]["G"], (1 - t) * w[0] + t * w[1]))


def grid(ids, attrs, swaps, id_names=None, attr_names=None):
  """[I], [A], [I*A] uint8 images -> one labelled picture: the attribute sources as a header row, the identity
  sources as a header column, the swaps inside; labels name each source (file names or held-out indices)."""
  blank = np.full_like(ids[0], 255)
  cells = np.stack([np.stack([blank, *attrs])] + [np.stack([x, *swaps[i * len(attrs):(i + 1) * len(attrs)]])
                                                   for i, x in enumerate(ids)])
  id_names = id_names or [f"identity {i}" for i in range(len(ids))]
  attr_names = attr_names or [f"attributes {j}" for j in range(len(attrs))]
  return grid_lib.labelled_grid(cells, rows=["attributes"] + [f"id: {n}" for n in id_names],
                                cols=["identity"] + [f"attr: {n}" for n in attr_names])


def interpolation_row(images, names, moving):
  """[T] uint8 images of an interpolation -> one labelled row: t of each column, the end points named."""
  t = np.linspace(0.0, 1.0, len(images))
  return grid_lib.labelled_grid(np.asarray(images)[None], rows=[f"{names[0]} -> {names[1]}"],
                                cols=[f"t={v:.2f}" for v in t], corner=moving)


def _generated(config, start, count):
  images, _, _ = gs.open_samples(config.samples.path)
  first = int(config.samples.num_images) + int(start)
  if first + count > images.shape[0]:
    raise UserError(f"--generated {start} asks for held-out faces {start}..{start + count - 1}; the run holds "
                    f"{images.shape[0] - int(config.samples.num_images)}.")
  return np.asarray(images[first:first + count])


def parse_args(argv):
  p = cli_lib.parser("jaxface.swap", description=__doc__)
  p.add_argument("--workdir", required=True, help="a configs/id_mapping.py training workdir")
  p.add_argument("--identity", nargs="+", default=[], help="identity source photo(s)")
  p.add_argument("--attributes", nargs="+", default=[], help="attribute source photo(s)")
  p.add_argument("--generated", type=int, default=None,
                 help="use held-out generated faces from this index: as many identities / attributes as "
                      "--num-identities / --num-attributes")
  p.add_argument("--num-identities", type=int, default=4, help="with --generated: identity sources (rows)")
  p.add_argument("--num-attributes", type=int, default=4, help="with --generated: attribute sources (columns)")
  p.add_argument("--interpolate", type=int, default=0, help="steps of a W interpolation (two sources on one side)")
  p.add_argument("--no-align", action="store_true", help="the photos are already aligned crops")
  p.add_argument("--step", type=int, default=None, help="mapper checkpoint step (default: newest)")
  p.add_argument("--out", required=True, help="output PNG")
  args = p.parse_args(argv)
  if args.generated is not None and args.generated < 0:
    raise UserError(f"--generated {args.generated}: held-out faces are numbered from 0.")
  for flag, value in (("--num-identities", args.num_identities), ("--num-attributes", args.num_attributes)):
    if not 1 <= value <= MAX_SOURCES:
      raise UserError(f"{flag} {value}: a grid takes 1 to {MAX_SOURCES} sources per side.")
  if args.interpolate and not 2 <= args.interpolate <= MAX_SOURCES:
    raise UserError(f"--interpolate {args.interpolate}: an interpolation takes 2 to {MAX_SOURCES} steps.")
  if args.generated is None and (not args.identity or not args.attributes):
    raise UserError("give --identity and --attributes photos (or --generated N for the run's held-out faces).")
  for f in args.identity + args.attributes:
    if not os.path.isfile(f):
      raise UserError(f"{f} does not exist or is not a file; pass photos (png/jpg) to --identity / --attributes.")
  return args


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jaxface.runs.id_mapping import load_run  # JAX: after the arguments parse
  from PIL import Image
  config, state, gen = load_run(args.workdir, args.step)
  if args.generated is not None:
    ids = _generated(config, args.generated, args.num_identities)
    attrs = _generated(config, args.generated + args.num_identities, args.num_attributes)
    id_names = [f"held-out {args.generated + i}" for i in range(len(ids))]
    attr_names = [f"held-out {args.generated + args.num_identities + j}" for j in range(len(attrs))]
  else:
    ids = np.stack([read_face(f, gen, not args.no_align) for f in args.identity])
    attrs = np.stack([read_face(f, gen, not args.no_align) for f in args.attributes])
    id_names = [os.path.basename(f) for f in args.identity]
    attr_names = [os.path.basename(f) for f in args.attributes]
  if args.interpolate:
    if len(ids) == 2 and len(attrs) == 1:
      row = interpolate_w(config, state, ids, np.repeat(attrs, 2, 0), args.interpolate)
      picture = interpolation_row(row, id_names, "identity")
    elif len(ids) == 1 and len(attrs) == 2:
      row = interpolate_w(config, state, np.repeat(ids, 2, 0), attrs, args.interpolate)
      picture = interpolation_row(row, attr_names, "attributes")
    else:
      raise UserError(f"--interpolate needs two identities and one attribute image or the reverse; got "
                      f"{len(ids)} and {len(attrs)}.")
  else:
    swaps = swap_images(config, state, np.repeat(ids, len(attrs), 0), np.tile(attrs, (len(ids), 1, 1, 1)))
    picture = swaps[0] if len(ids) == len(attrs) == 1 else grid(ids, attrs, swaps, id_names, attr_names)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  Image.fromarray(picture).save(args.out)
  print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
