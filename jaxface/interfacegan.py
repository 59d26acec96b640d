r"""InterFaceGAN on a trained jaxface generator: sample and score, fit boundaries, edit, re-score.

  python -m jaxface.interfacegan generate_data [-w WORKDIR] -o data/ -n 10000 --predictor toy_colour
      -> data/z.npy [N, z_dim], w.npy [N, w_dim], wp.npy [N, L, w_dim], <attribute>_scores.npy [N, 1],
         attributes.json, 000000.jpg ... (skip with -I), grid.png
  python -m jaxface.interfacegan train_boundary -o b/brightness -c data/z.npy -s data/brightness_scores.npy
      -> b/brightness/boundary.npy (1, d), info.json (split sizes, validation / remaining accuracy), log.txt
  python -m jaxface.interfacegan edit [-w WORKDIR] -b b/brightness/boundary.npy -o edits/ -n 4 \
      [--condition b/warmth/boundary.npy ...] [--predictor toy_colour]
      -> edits/{sample:03d}_{step:03d}.jpg, grid.png (a row per sample), boundary.npy (after any projection),
         latent_codes.npy, edited_codes.npy, edit_scores.npy [num, steps, A] with --predictor
  python -m jaxface.interfacegan rescore [-w WORKDIR] -b brightness=b/brightness/boundary.npy \
      -b warmth=b/warmth/boundary.npy --predictor toy_colour -o rescore/
      -> rescore.json / rescore.npy: mean score change of every attribute (columns) when each boundary (rows)
         moves every sample by --distance (W+: on the --layers only, when given); a large diagonal and a small
         off-diagonal mean disentangled edits.
         Edits named after a measured attribute also get "dominance": their block in score-std units and its row
         and column margins (|diagonal| / sum of |off-diagonal|; > 1 everywhere = diagonal-dominant; null when
         nothing is off the diagonal).

Flags mirror genforce/interfacegan's generate_data.py / train_boundary.py / edit.py (-o, -i, -n, -s, -b, -c,
-r, -V, -I, --start_distance, --end_distance, --steps); `-m MODEL` becomes `-w WORKDIR`: a jaxface StyleGAN2
training workdir, a DiscoFaceGAN training workdir or exported folder (config.json + weights.npz), or, without -w,
the bundled DiscoFaceGAN reference generator pretrained/disco_cpu64 (jaxface/runs/latent_generators.py). -s picks the
space: z, w (before truncation) or wp (W+, after truncation). A DiscoFaceGAN's z is its whole input, λ (identity,
texture, expression, angles in radians, lighting) then ε, not renormalised; its truncation defaults to none
(jaxface/runs/disco_latents.py says why). --predictor is a
registered name (brightness, rgb, toy_colour, world_attributes, world_coefficients, and whatever other jaxface
modules register), NAME@PATH for a registered predictor that loads from a workdir, package.module:attribute, or
several joined by '+' (the first to score an attribute reads it). world_attributes is
the synthetic world's attribute predictor (glasses, smile, hair_lightness, gender, age, skin_tone, light_x, yaw;
configs/attributes.py):
`--predictor world_attributes` uses the bootstrap in $JAXFACE_CACHE (trained on first use, minutes on a CPU),
`--predictor world_attributes@workdirs/attributes` a run of your own. world_coefficients applies the world's
own formulas to R-Net's read-back of the 3DMM coefficients (smile, gender, age, skin_tone, light_x, yaw, pitch,
roll), with the R-Net bundled in pretrained/disco_cpu64 or `world_coefficients@RNET_WORKDIR` (at 64x64 its smile and
age columns carry almost nothing: R-Net barely reads expression there). `--predictor
world_coefficients+world_attributes` adds the CNN's glasses and hair_lightness. Mistakes print `error: ...` and exit 2.
"""

import json
import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface.edit import interfacegan as ifg
from jaxface.edit import interfacegan_files as files
from jaxface.edit import predictors
from jaxface.errors import UserError, cli
from jaxface.runs import latent_codes


def world_attributes(workdir=None):
  """The synthetic world's attribute predictor (scores in SCORE_NAMES order) of `workdir`, or of the
  configs/attributes.py bootstrap in $JAXFACE_CACHE, trained on first use: training is why the CLI registers it,
  not jaxface/edit/."""
  from jaxface.runs import attributes  # JAX: only once a command needs the predictor
  from jaxface.train import experts  # JAX: loaded once the command runs, not for --help
  model = experts.REGISTRY["attributes"].load(workdir or experts.bootstrap("attributes"))
  return predictors.Predictor(model.scores, attributes.SCORE_NAMES, batch_size=64)


predictors.register_predictor("world_attributes", world_attributes, takes_path=True)


def world_coefficients(rnet_workdir=None):
  """The world's attributes computed from R-Net's read-back of an image's 3DMM coefficients (smile, gender, age,
  skin_tone, light_x, yaw, pitch, roll; jaxface/runs/coefficient_attributes.py), with the bundled reference
  generator's R-Net or that of a configs/rnet.py workdir."""
  from jaxface.runs import coefficient_attributes  # JAX: only once a command needs the predictor
  return predictors.Predictor(coefficient_attributes.load(rnet_workdir), coefficient_attributes.SCORE_NAMES,
                              batch_size=64)


predictors.register_predictor("world_coefficients", world_coefficients, takes_path=True)


def _generator(args):
  from jaxface.runs import latent_generators  # JAX: imported after the arguments parse
  return latent_generators.load(args.workdir, step=args.step, truncation_psi=args.truncation_psi,
                                truncation_layers=args.truncation_layers, batch_size=args.batch_size)


def _predictor(spec, attributes=None):
  """The predictor and the column indices of the requested attributes (all when None)."""
  p = predictors.get_predictor(spec)
  names = list(p.names) if not attributes else [a.strip() for a in attributes.split(",") if a.strip()]
  return p, [p.index(a) for a in names], names


def _codes(args, G, num):
  """Codes of args.latent_space_type: from args.input (validated against the generator) or sampled."""
  space = latent_codes.parse_space(args.latent_space_type)
  if getattr(args, "input", None):
    return G.check_codes(files.load_npy(args.input, "latent codes"), space, what=f"latent codes in {args.input}")
  if num < 1:
    raise UserError(f"--num must be >= 1, got {num}")
  return G.sample(num, space, args.seed)


def _layers(args, G, space):
  """--layers as a list of W+ layer indices (None: every layer)."""
  if not args.layers:
    return None
  try:
    layers = [int(x) for x in args.layers.split(",")]
  except ValueError:
    layers = [-1]
  if space != "wp" or any(not 0 <= i < G.num_ws for i in layers):
    raise UserError(f"--layers takes comma-separated W+ layer indices in [0, {G.num_ws}) with -s wp; got "
                    f"{args.layers!r} with -s {space}.")
  return layers


# ---------------------------------------------------------------------------------------------------------------
# Subcommands

CHUNK = 1024  # codes synthesised and scored per progress step (a multiple of any sensible --batch-size)


def _chunks(n, desc):
  starts = range(0, n, CHUNK)
  return cli_lib.progress(starts, desc, total=len(starts), unit="chunk")


def generate_data(args):
  G = _generator(args)
  space = latent_codes.parse_space(args.latent_space_type)
  codes = _codes(args, G, args.num)
  predictor = _predictor(args.predictor, args.attributes) if args.predictor else None
  log = files.RunLog(args.output_dir)
  log(f"generator: {G.describe()}")
  kept, scores, first = {}, [], None
  for start in _chunks(codes.shape[0], f"synthesising {codes.shape[0]} images"):
    out = G.synthesize(codes[start:start + CHUNK], space)
    for key in ("z", "w", "wp"):
      if key in out:
        kept.setdefault(key, []).append(out[key])
    if args.generate_image:
      files.save_images(args.output_dir, out["image"], lambda i, start=start: f"{start + i:06d}.jpg")
    first = out["image"][:64] if first is None else first
    if predictor:
      p, cols, names = predictor
      scores.append(p(out["image"])[:, cols])
  for key, parts in kept.items():
    np.save(os.path.join(args.output_dir, f"{key}.npy"), np.concatenate(parts))
  files.save_grid(os.path.join(args.output_dir, "grid.png"), first)
  if predictor:
    p, cols, names = predictor
    scores = np.concatenate(scores)
    for k, name in enumerate(names):
      np.save(os.path.join(args.output_dir, f"{name}_scores.npy"), scores[:, k:k + 1].astype(np.float32))
      log(f"{name}: mean {scores[:, k].mean():.4f}, std {scores[:, k].std():.4f}")
    with open(os.path.join(args.output_dir, "attributes.json"), "w") as f:
      json.dump({"predictor": args.predictor, "attributes": names}, f, indent=2)
  log(f"saved {codes.shape[0]} samples ({', '.join(kept)}) to {args.output_dir}")
  log.close()


def train_boundary(args):
  codes = files.load_npy(args.latent_codes_path, "latent codes")
  scores = files.load_npy(args.scores_path, "scores")
  if codes.ndim >= 1 and scores.ndim >= 1 and codes.shape[0] != scores.shape[0]:
    raise UserError(f"{args.latent_codes_path} holds {codes.shape[0]} codes but {args.scores_path} holds "
                    f"{scores.shape[0]} scores; use files written together by one generate_data run.")
  center = None
  if args.center == "mean":
    center = "mean"
  elif args.center not in (None, "", "none"):
    center = files.load_npy(args.center, "center")
  log = files.RunLog(args.output_dir)
  log(f"fitting a linear SVM (scikit-learn SVC) to the most and least {args.scores_path} scores of "
      f"{codes.shape[0]} codes")
  boundary, info = ifg.train_boundary(codes, scores, args.chosen_num_or_ratio, args.split_ratio, args.invalid_value,
                                      seed=args.seed, center=center, return_info=True)
  np.save(os.path.join(args.output_dir, "boundary.npy"), boundary)
  with open(os.path.join(args.output_dir, "info.json"), "w") as f:
    json.dump(info, f, indent=2)
  log(f"Training: {info['train_num']} positive, {info['train_num']} negative. Validation: {info['val_num']} positive, "
      f"{info['val_num']} negative. Remaining: {info['remaining_positive']} positive, "
      f"{info['remaining_num'] - info['remaining_positive']} negative (threshold {info['threshold']:.4f}).")
  for key in ("val_accuracy", "remaining_accuracy"):
    if info[key] is not None:
      log(f"Accuracy for {key.split('_')[0]} set: {info[key]:.6f}")
  if center is not None:
    log(f"centred mode: distances are measured from the plane through the centre; pass --offset {info['offset']:.6f} "
        f"to edit.")
  log(f"boundary {boundary.shape} saved to {os.path.join(args.output_dir, 'boundary.npy')}")
  log.close()


def edit(args):
  G = _generator(args)
  space = latent_codes.parse_space(args.latent_space_type)
  boundary = files.boundary_for(args.boundary_path, G, space)
  if args.condition:
    boundary = ifg.project_boundary(boundary, *[files.load_boundary(c, boundary.shape[1], "condition boundary")
                                                for c in args.condition])
  layers = _layers(args, G, space)
  codes = _codes(args, G, args.num)
  predictor = _predictor(args.predictor, args.attributes) if args.predictor else None
  log = files.RunLog(args.output_dir)
  np.save(os.path.join(args.output_dir, "boundary.npy"), boundary.astype(np.float32))
  np.save(os.path.join(args.output_dir, "latent_codes.npy"), codes)
  edited = np.stack([ifg.linear_interpolate(codes[i:i + 1], boundary, args.start_distance, args.end_distance,
                                            args.steps, offset=args.offset, layers=layers)
                     for i in range(codes.shape[0])])  # [num, steps, ...]
  np.save(os.path.join(args.output_dir, "edited_codes.npy"), edited)
  flat = edited.reshape((-1,) + edited.shape[2:])
  images = G.synthesize(flat, space)["image"]
  files.save_images(args.output_dir, images, lambda k: f"{k // args.steps:03d}_{k % args.steps:03d}.jpg")
  distances = np.linspace(args.start_distance, args.end_distance, args.steps)
  name = files.boundary_name(args.boundary_path)
  first = args.seed if not args.input else 0
  files.save_labelled_grid(os.path.join(args.output_dir, "grid.png"),
                      images.reshape((codes.shape[0], args.steps) + images.shape[1:]),
                      rows=[f"{'code' if args.input else 'sample'} {i}" for i in range(codes.shape[0])],
                      cols=[f"{name} {d:+.2g}" for d in distances],
                      corner=("code" if args.input else f"seed {first}") + f" \\ {name}")
  if predictor:
    p, cols, names = predictor
    scores = p(images)[:, cols].reshape(codes.shape[0], args.steps, len(cols))
    np.save(os.path.join(args.output_dir, "edit_scores.npy"), scores.astype(np.float32))
    for k, name in enumerate(names):
      log(f"{name}: mean score at start {scores[:, 0, k].mean():.4f}, at end {scores[:, -1, k].mean():.4f}")
  log(f"edited {codes.shape[0]} {space} codes over distances {args.start_distance}..{args.end_distance} in "
      f"{args.steps} steps{' conditioned on ' + ', '.join(args.condition) if args.condition else ''}; "
      f"saved to {args.output_dir}")
  log.close()


def rescore(args):
  G = _generator(args)
  space = latent_codes.parse_space(args.latent_space_type)
  layers = _layers(args, G, space)
  p, cols, names = _predictor(args.predictor, args.attributes)
  rows, boundaries = [], []
  for spec in args.boundary:
    name, sep, path = spec.partition("=")
    if not sep:
      path, name = spec, files.boundary_name(spec)
    rows.append(name)
    boundaries.append(files.boundary_for(path, G, space, f"boundary {name!r}"))
  codes = _codes(args, G, args.num)
  before = p(G.synthesize(codes, space)["image"])[:, cols]
  after = np.stack([p(G.synthesize(ifg.shift_codes(codes, b, args.distance, layers), space)["image"])[:, cols]
                    for b in cli_lib.progress(boundaries, "editing and re-scoring", unit="boundary")])
  matrix = ifg.rescoring_matrix(before, after)
  score_std = before.std(0)
  result = {"edits": rows, "attributes": names, "distance": args.distance,  # matrix[edit][attribute]
            "space": space, "layers": layers, "num": int(codes.shape[0]),
            "matrix": matrix.tolist(), "score_std": score_std.tolist()}
  margins = ifg.dominance_margins(matrix, score_std, rows, names) if set(rows) & set(names) else None
  if margins:  # the edits named after attributes: their block in score-std units and its dominance margins
    finite = lambda v: [float(x) if np.isfinite(x) else None for x in v]  # noqa: E731  (JSON has no inf)
    result["dominance"] = {"names": margins["names"], "standardised": margins["standardised"].tolist(),
                           "row_margins": finite(margins["rows"]), "col_margins": finite(margins["cols"])}
  os.makedirs(args.output_dir, exist_ok=True)
  np.save(os.path.join(args.output_dir, "rescore.npy"), matrix.astype(np.float32))
  with open(os.path.join(args.output_dir, "rescore.json"), "w") as f:
    json.dump(result, f, indent=2)
  width = max(len(n) for n in rows + names) + 2
  print("edit \\ score".ljust(width) + "".join(n.rjust(width) for n in names))
  for r, row in zip(rows, matrix):
    print(r.ljust(width) + "".join(f"{v:+.4f}".rjust(width) for v in row))
  if margins:
    fmt = lambda v: " ".join(f"{x:.2f}" for x in v)  # noqa: E731
    print(f"in score stds, {', '.join(margins['names'])}: row margins {fmt(margins['rows'])}; column margins "
          f"{fmt(margins['cols'])} (> 1 everywhere = diagonal-dominant)")


# ---------------------------------------------------------------------------------------------------------------
# Arguments

MAX_STEPS = 64  # edit: columns of the grid


def _generator_flags(p):
  p.add_argument("-w", "--workdir", default=None,
                 help="a StyleGAN2 or DiscoFaceGAN training workdir, or an exported DiscoFaceGAN folder (config.json + "
                      "weights.npz); default: the bundled reference generator pretrained/disco_cpu64")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
  p.add_argument("--truncation-psi", type=float, default=None,
                 help="truncation psi for z/w codes (1 = off; default: StyleGAN2 0.7, DiscoFaceGAN 1)")
  p.add_argument("--truncation-layers", type=int, default=None,
                 help="truncate the first N style layers (default: StyleGAN2 8, DiscoFaceGAN its config's)")
  p.add_argument("--batch-size", type=int, default=16, help="images synthesised per call")
  p.add_argument("--seed", type=int, default=0, help="seed for sampled latent codes")
  p.add_argument("-s", "--latent-space-type", default="z", help="latent space: z, w or wp (W+)")
  p.add_argument("--predictor", default=None,
                 help="attribute predictor: a registered name, NAME@WORKDIR, package.module:attr, or several "
                      "joined by +")
  p.add_argument("--attributes", default=None, help="comma-separated subset of the predictor's attributes")


def parse_args(argv):
  parser = cli_lib.parser("jaxface.interfacegan", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True, metavar="generate_data|train_boundary|edit|rescore")

  g = sub.add_parser("generate_data", help="sample latents, synthesise, score",
                     description="Samples latent codes (or reads them), synthesises their images and scores them.")
  _generator_flags(g)
  g.add_argument("-o", "--output-dir", required=True, help="folder for codes, scores, images and grid.png")
  g.add_argument("-i", "--input", "--latent-codes-path", dest="input", default=None,
                 help="codes .npy instead of sampling")
  g.add_argument("-n", "--num", type=int, default=1, help="number of samples (ignored with -i)")
  g.add_argument("-I", "--skip-images", dest="generate_image", action="store_false",
                 help="do not save one JPEG per sample")

  t = sub.add_parser("train_boundary", help="fit a linear boundary to codes and scores",
                     description="Fits a linear SVM (scikit-learn SVC) boundary to latent codes and their scores.")
  t.add_argument("-o", "--output-dir", required=True, help="folder for boundary.npy, info.json and log.txt")
  t.add_argument("-c", "--latent-codes-path", required=True, help="codes .npy (generate_data's z.npy, w.npy, wp.npy)")
  t.add_argument("-s", "--scores-path", required=True, help="scores .npy of shape (N, 1)")
  t.add_argument("-n", "--chosen-num-or-ratio", type=float, default=0.02, help="ratio (<= 1) or count per class")
  t.add_argument("-r", "--split-ratio", type=float, default=0.7, help="train fraction of the chosen samples, in (0, 1]")
  t.add_argument("-V", "--invalid-value", type=float, default=None, help="drop samples with this score")
  t.add_argument("--center", default=None, help="none (the original), mean, or a .npy centre (e.g. w_avg)")
  t.add_argument("--seed", type=int, default=0, help="seed of the train/validation shuffles")

  e = sub.add_parser("edit", help="move codes along a boundary and synthesise",
                     description="Moves codes along a boundary and writes the edits and a labelled grid.")
  _generator_flags(e)
  e.add_argument("-b", "--boundary-path", required=True, help="boundary .npy (train_boundary's boundary.npy)")
  e.add_argument("-o", "--output-dir", required=True, help="folder for the edited images, codes and grid.png")
  e.add_argument("-i", "--input-latent-codes-path", dest="input", default=None, help="codes .npy instead of sampling")
  e.add_argument("-n", "--num", type=int, default=1, help="number of samples (rows; ignored with -i)")
  e.add_argument("--start-distance", type=float, default=-3.0, help="first distance from the boundary")
  e.add_argument("--end-distance", type=float, default=3.0, help="last distance from the boundary")
  e.add_argument("--steps", type=int, default=10, help=f"distances from start to end (columns), 1 to {MAX_STEPS}")
  e.add_argument("--offset", type=float, default=0.0, help="distance origin (train_boundary --center prints it)")
  e.add_argument("--condition", action="append", default=[], help="boundary .npy to hold fixed (repeatable)")
  e.add_argument("--layers", default=None, help="W+ only: comma-separated layer indices to edit")

  r = sub.add_parser("rescore", help="edit along each boundary and re-score every attribute",
                     description="Edits samples along each boundary and re-scores every attribute.")
  _generator_flags(r)
  r.add_argument("-b", "--boundary", action="append", required=True, help="NAME=PATH.npy or PATH.npy (repeatable)")
  r.add_argument("-o", "--output-dir", required=True, help="folder for rescore.json and rescore.npy")
  r.add_argument("-i", "--input", dest="input", default=None, help="codes .npy instead of sampling")
  r.add_argument("-n", "--num", type=int, default=64, help="number of samples (ignored with -i)")
  r.add_argument("--distance", type=float, default=3.0, help="relative shift along each boundary")
  r.add_argument("--layers", default=None, help="W+ only: comma-separated layer indices to move")
  args = parser.parse_args(argv)
  _check(args)
  return args


def _check(args):
  """The arguments' ranges, before any generator is loaded or any file is written."""
  if hasattr(args, "latent_space_type"):
    latent_codes.parse_space(args.latent_space_type)
  if args.command == "rescore" and not args.predictor:
    raise UserError("rescore needs --predictor (a registered name, NAME@WORKDIR or package.module:attr).")
  if getattr(args, "batch_size", 1) < 1:
    raise UserError(f"--batch-size {args.batch_size}: must be >= 1.")
  if (getattr(args, "truncation_layers", None) or 0) < 0:
    raise UserError(f"--truncation-layers {args.truncation_layers}: must be >= 0.")
  if getattr(args, "num", 1) < 1 and not getattr(args, "input", None):
    raise UserError(f"--num {args.num}: must be >= 1.")
  if args.command == "edit" and not 1 <= args.steps <= MAX_STEPS:
    raise UserError(f"--steps {args.steps}: must lie in [1, {MAX_STEPS}] (the grid's columns).")
  if args.command == "train_boundary":
    if not args.chosen_num_or_ratio > 0:
      raise UserError(f"--chosen-num-or-ratio {args.chosen_num_or_ratio}: must be > 0 (a ratio <= 1 or a count).")
    if not 0 < args.split_ratio <= 1:
      raise UserError(f"--split-ratio {args.split_ratio}: must lie in (0, 1].")


def _main(argv):
  args = parse_args(argv)
  commands = {"generate_data": generate_data, "train_boundary": train_boundary, "edit": edit, "rescore": rescore}
  commands[args.command](args)
  return 0


def main(argv=None):
  return cli(_main)(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
  sys.exit(main())
