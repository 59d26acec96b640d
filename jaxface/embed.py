"""Embed real photos into a trained DiscoFaceGAN and edit them: `python -m jaxface.embed`.

  python -m jaxface.embed [--workdir W] --image photo.jpg [--image other.png ...] --out out.png
                          [--set yaw=20,smile_l=0.8] [--set d_yaw=-20] [--steps 600] [--latent old.npz]

Each photo is detected and 5-point aligned to the generator's framing, its coefficients are estimated with
R-Net, and a W+ latent (and the noise maps) is optimized to reproduce it (jaxface.edit.embed). Every --set is
one edit, applied as w+' = w+ + Φ(λ') − Φ(λ): keys yaw, pitch, roll (absolute degrees), d_yaw, d_pitch, d_roll
(degrees relative to the photo's pose), identity, expression, lighting (seeds of the priors) and, on the
synthetic face model, named expression units (smile_l, jaw_open, ...; 0..1).
Writes OUT (a labelled grid: rows = photos; columns = aligned photo, reconstruction, edits), OUT_STEM.npz (the
latent, for --latent), and OUT_STEM_<photo>_recon.png / _edit<k>.png.
"""

import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface import grid as grid_lib
from jaxface.errors import UserError, cli
from jaxface.runs.disco_factors import ANGLES


def parse_settings(text):
  out = []
  for part in filter(None, text.split(",")):
    if "=" not in part:
      raise UserError(f"--set {part!r}: expected factor=value, e.g. yaw=20")
    k, v = part.split("=", 1)
    try:
      out.append((k.strip(), float(v)))
    except ValueError:
      raise UserError(f"--set {part!r}: the value must be a number") from None
  return out


def parse_args(argv):
  p = cli_lib.parser("jaxface.embed", description=__doc__)
  p.add_argument("--workdir", default=None,
                 help="a configs/disco.py training workdir or an exported folder (default: the bundled reference "
                      "generator, pretrained/disco_cpu64)")
  p.add_argument("--image", action="append", default=[], help="photo file (repeat for several)")
  p.add_argument("--latent", default=None, help="reuse an embedding .npz written by an earlier run")
  p.add_argument("--out", required=True, help="PNG path of the result grid")
  p.add_argument("--set", action="append", default=[], help="one edit: comma-separated factor=value")
  p.add_argument("--steps", type=int, default=600, help="optimizer steps")
  p.add_argument("--batch-size", type=int, default=16, help="photos optimized together")
  p.add_argument("--no-align", action="store_true", help="the photos are already aligned crops")
  p.add_argument("--no-noise", action="store_true", help="keep the generator's noise maps fixed")
  p.add_argument("--anchor", type=float, default=None,
                 help="weight keeping w+ near the mapping's Φ(λ) (default: EmbedConfig's); 0 reconstructs closest, "
                      "higher keeps λ edits strong")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  args = p.parse_args(argv)
  if args.steps < 1 or args.batch_size < 1:
    raise UserError(f"--steps {args.steps} and --batch-size {args.batch_size} must both be >= 1.")
  if args.anchor is not None and args.anchor < 0:
    raise UserError(f"--anchor {args.anchor}: a weight, >= 0.")
  return args


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jaxface import metrics  # JAX: loaded once the command runs, not for --help
  from jaxface.edit import embed  # JAX: loaded once the command runs, not for --help
  # JAX: loaded once the command runs, not for --help
  from jaxface.runs.disco_generator import Generator, apply_setting, to_uint8
  if bool(args.image) == bool(args.latent):
    raise UserError("give photos with --image, or an earlier embedding with --latent (one of the two)")
  edits = [parse_settings(s) for s in args.set]
  photos = [embed.read_photo(p) for p in args.image]  # unreadable files fail before any model work
  from jaxface import parallel  # JAX: loaded once the command runs, not for --help
  parallel.enable_compilation_cache()  # the embedding's programs compile once per machine
  gen = Generator.load(args.workdir, args.step)
  probe = gen.lambdas(1, 0)
  for key, value in (kv for e in edits for kv in e):  # validate names before the slow part
    if not (key.startswith("d_") and key[2:] in ANGLES):
      apply_setting(gen, {k: v.copy() for k, v in probe.items()}, key, value, 1)
  if args.latent:
    emb = embed.load(args.latent, gen)
  else:
    emb = embed.embed_photos(gen, photos, progress=True, steps=args.steps, batch_size=args.batch_size,
                             align=not args.no_align, noise=not args.no_noise,
                             **({} if args.anchor is None else {"w_anchor": args.anchor}))
  stem = os.path.splitext(args.out)[0]
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  if not args.latent:
    embed.save(stem + ".npz", emb)
  cols = [emb.target, emb.recon] + [to_uint8(embed.edited(gen, emb, e)) for e in edits]
  for i in range(len(emb.ws)):
    metrics.save_png(f"{stem}_{i}_recon.png", emb.recon[i])
    for k, col in enumerate(cols[2:]):
      metrics.save_png(f"{stem}_{i}_edit{k}.png", col[i])
  names = [os.path.basename(p) for p in args.image] or [f"photo {i}" for i in range(len(emb.ws))]
  grid_lib.save(args.out, grid_lib.labelled_grid(
      np.stack(cols, 1), rows=names,
      cols=["photo", "reconstruction"] + [",".join(f"{k}={v:g}" for k, v in e) for e in edits]))
  psnr = 10 * np.log10(255.0 ** 2 / np.maximum(np.mean((emb.target.astype(np.float64) - emb.recon) ** 2), 1e-10))
  print(f"wrote {args.out} ({len(emb.ws)} photos x {len(cols)} columns: photo, reconstruction, "
        f"{len(edits)} edits); latent {stem}.npz; reconstruction PSNR {psnr:.1f} dB")
  return 0


if __name__ == "__main__":
  sys.exit(main())
