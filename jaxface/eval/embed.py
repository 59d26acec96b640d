"""How well real-photo embedding works, on held-out synthetic-world images whose truth is known.

  reconstruction   PSNR (dB, uint8 images) and MS-SSIM of the reconstruction vs the photo;
  identity         cosine of the identity network's embeddings, reconstruction vs photo, divided by the
                   same-identity level: the mean cosine between the photo and a real image of the same identity
                   in another pose, expression and light (what "the same person" scores on this network);
  yaw edit         w+' = w+ + Φ(λ') − Φ(λ) with λ' = λ with yaw ± delta: |R-Net yaw of the edit − requested yaw|
                   (requested = R-Net's yaw of the photo ± delta), and the identity cosine of the edit vs the photo
                   over the same-identity level.
The photos are world renders at the generator's resolution, framed as its training images, so they are embedded
without detection (align=False); `python -m jaxface.embed` shows the aligned path on real photos.

  python -m jaxface.eval.embed --workdir W [--num 16] [--steps 600] [--out DIR] [--rnet R] [--embed-option F=V]
"""

import dataclasses
import json
import os
import sys
import time

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.config import parse_typed
from jaxface.errors import UserError, cli
from jaxface.eval.disco import Measure
from jaxface.eval.disco_references import replace_factors, world_images, world_sample

jnp = lazy_import("jax.numpy")  # imported on first use: `--help` and argument mistakes answer without loading JAX

HELDOUT = 2_003_000_000  # world indices far from training and from the other evaluations


def psnr(a, b):
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(1, 2, 3))
  return 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def _cos(a, b):
  return np.sum(a * b, -1)


def evaluate(gen, num=16, steps=600, batch_size=16, yaw_delta=20.0, config=None):
  """Returns (results dict, grid images [rows, cols, R, R, 3] uint8: photo, reconstruction, yaw −, yaw +)."""
  from jaxface.edit import embed  # JAX: loaded once the command runs, not for --help
  from jaxface.runs.disco_generator import to_uint8  # JAX: loaded once the command runs, not for --help
  from jaxface.losses import ssim  # JAX: loaded once the command runs, not for --help
  cfg = gen.config
  facts = [world_sample(cfg, HELDOUT + i) for i in range(num)]
  photos = to_uint8(world_images(cfg, facts)[0])
  # The same identities in another pose, expression and light: what "the same person" scores.
  others = [replace_factors(f, world_sample(cfg, HELDOUT + 100_000 + i), ("angle", "exp", "gamma"))
            for i, f in enumerate(facts)]
  same_imgs = world_images(cfg, others)[0]
  t0 = time.time()
  emb = embed.embed_photos(gen, list(photos), config, align=False, steps=steps,
                           batch_size=min(batch_size, num))
  seconds = time.time() - t0
  m = Measure(gen)
  x = photos.astype(np.float32) / 127.5 - 1.0
  id_photo = m.embed(x)
  same_level = float(np.mean(_cos(id_photo, m.embed(same_imgs))))
  recon = emb.recon.astype(np.float32) / 127.5 - 1.0
  out = {"num": num, "steps": steps, "seconds": round(seconds, 1), "resolution": gen.resolution,
         "psnr_db": float(np.mean(psnr(photos, emb.recon))),
         "psnr_db_min": float(np.min(psnr(photos, emb.recon))),
         "ms_ssim": float(np.mean(np.asarray(ssim.ms_ssim(jnp.asarray(recon), jnp.asarray(x))))),
         "same_identity_cos": same_level,
         "different_identity_cos": float(np.mean(_cos(id_photo, np.roll(id_photo, 1, 0))))}
  out["identity_cos"] = float(np.mean(_cos(id_photo, m.embed(recon))))
  out["identity_ratio"] = out["identity_cos"] / same_level
  yaw_photo = np.rad2deg(emb.blocks["angle"][:, 1])
  out["rnet_yaw_err_photo_deg"] = float(np.median(np.abs(yaw_photo - np.rad2deg(np.stack([f["angle"][1] for f in facts])))))
  cols = [photos, emb.recon]
  for d in (-yaw_delta, yaw_delta):
    img = np.asarray(embed.edited(gen, emb, [("d_yaw", d)]))
    yaw = np.rad2deg(m.recon(img)["coeffs"]["angle"][:, 1])
    err = np.abs(yaw - (yaw_photo + d))
    tag = f"yaw{d:+g}"
    out[f"{tag}_err_deg_median"] = float(np.median(err))
    out[f"{tag}_err_deg_mean"] = float(np.mean(err))
    out[f"{tag}_achieved_deg_mean"] = float(np.mean(yaw - yaw_photo))  # how far the edit actually turned
    out[f"{tag}_identity_ratio"] = float(np.mean(_cos(id_photo, m.embed(img)))) / same_level
    cols.append(to_uint8(img))
  out["targets"] = {"psnr_db>=25": out["psnr_db"] >= 25.0, "identity_ratio>=0.9": out["identity_ratio"] >= 0.9,
                    "yaw_err<=5": max(out[f"yaw{d:+g}_err_deg_median"] for d in (-yaw_delta, yaw_delta)) <= 5.0,
                    "edit_identity_ratio>=0.8": min(out[f"yaw{d:+g}_identity_ratio"]
                                                    for d in (-yaw_delta, yaw_delta)) >= 0.8}
  return out, np.stack(cols, 1)


def parse_args(argv):
  p = cli_lib.parser("jaxface.eval.embed", description=__doc__)
  p.add_argument("--workdir", required=True, help="a configs/disco.py training workdir")
  p.add_argument("--num", type=int, default=16, help="held-out world images")
  p.add_argument("--steps", type=int, default=600, help="embedding optimizer steps")
  p.add_argument("--batch-size", type=int, default=16, help="photos embedded together")
  p.add_argument("--yaw", type=float, default=20.0, help="yaw edit (degrees, applied both ways)")
  p.add_argument("--out", default=None, help="output folder (default: WORKDIR/eval)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--rnet", default=None, help="embed and measure with this configs/rnet.py workdir's R-Net (same "
                 "architecture as the generator's; e.g. one trained with render_mix)")
  p.add_argument("--idnet", default=None, help="measure identity with this configs/idnet.py workdir's net (same "
                 "architecture as the generator's; e.g. one trained with render_mix)")
  p.add_argument("--embed-option", action="append", default=[], metavar="FIELD=VALUE",
                 help="an embedding setting (a jaxface.edit.embed.EmbedConfig field), e.g. w_anchor=0 or noise=false")
  args = p.parse_args(argv)
  if args.num < 1 or args.steps < 1 or args.batch_size < 1:
    raise UserError(f"--num {args.num}, --steps {args.steps} and --batch-size {args.batch_size} must all be >= 1.")
  return args


def embed_config(cls, settings):
  """EmbedConfig from FIELD=VALUE strings; UserError naming the fields for anything else."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  values = {}
  for item in settings:
    name, eq, value = item.partition("=")
    if not eq or name not in fields:
      raise UserError(f"--embed-option {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}.")
    values[name] = parse_typed(value, fields[name].default, f"--embed-option {name}")
  return cls(**values)


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jaxface import metrics  # JAX: loaded once the command runs, not for --help
  from jaxface.runs.disco_generator import Generator  # JAX: loaded once the command runs, not for --help
  from jaxface.edit import embed  # JAX: loaded once the command runs, not for --help
  config = embed_config(embed.EmbedConfig, args.embed_option)
  gen = Generator.load(args.workdir, args.step)
  gen = gen.measure_with(args.rnet, args.idnet)
  res, grid = evaluate(gen, args.num, args.steps, args.batch_size, args.yaw, config)
  res["settings"], res["measured_with"] = dataclasses.asdict(config), args.rnet or "the generator's own R-Net"
  res["identity_measured_with"] = args.idnet or "the generator's own identity net"
  out = args.out or os.path.join(args.workdir, "eval")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"embed_step_{gen.step}.json"), "w") as f:
    json.dump(res, f, indent=1)
  r, c = grid.shape[:2]
  metrics.save_png(os.path.join(out, f"embed_step_{gen.step}.png"),
                   metrics.image_grid(grid[:8].reshape((-1,) + grid.shape[2:]), cols=c))
  print(json.dumps(res, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
