"""CLI: a folder of images (or the synthetic face world) -> cropped, resized ArrayRecord shards.

    python -m jaxface.data.prepare SRC DST --resolution R [--shards N] [--align] [--workers W] [--overwrite]

SRC is a folder searched recursively for .png/.jpg/.jpeg (sorted, so the output is reproducible), or
`synthetic:N` for N images of the built-in synthetic face world. Each image is decoded, optionally
face-aligned (`--align`), center-cropped to a square, resized to R and stored losslessly as PNG in
`DST/data-0000i-of-0000N.array_record` (record i goes to shard i % N). Files that cannot be decoded are
skipped and listed; `DST/meta.json` records the count, resolution, shards and skipped files. Train on it
with `--config.data.kind=arrayrecord --config.data.path=DST`.

Shards are written under temporary names and renamed when complete, so an interrupted run never leaves
shards that look finished.
"""

import glob
import importlib
import json
import multiprocessing
import os
import sys

import tqdm

from jaxface import cli as cli_lib
from jaxface.data import images
from jaxface.errors import DataError, UserError, cli

FORMAT = "jaxface-arrayrecord-v1"


def shard_name(i, n):
  return f"data-{i:05d}-of-{n:05d}.array_record"


def _import_optional(module, message):
  """Imports a jaxface module another part of the project provides; UserError(message) if it is absent."""
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name != module:
      raise  # the module exists but one of *its* imports is missing: a real bug, keep the traceback
    raise UserError(message) from e


def _load_align():
  align = _import_optional("jaxface.data.align", "--align needs the face aligner (jaxface.data.align), which this "
                           "installation does not have; run without --align to center-crop instead.")
  return align.align_image


def _process_file(args):
  """(root, relpath, resolution, align) -> (relpath, record bytes or None, error text). Runs in workers."""
  root, rel, resolution, align = args
  try:
    with open(os.path.join(root, rel), "rb") as f:
      img = images.decode_image(f.read(), min_size=None if align else resolution)  # aligner wants full res
    if align:
      img = images.array_to_rgb(_load_align()(img, resolution))
    img = images.center_crop_resize(img, resolution)
    return rel, images.encode_record(img), ""
  except UserError as e:  # the aligner's way of saying "no face in this file" (its import was checked upfront)
    return rel, None, f"{type(e).__name__}: {e}"
  except images.DECODE_ERRORS as e:
    return rel, None, f"{type(e).__name__}: {e}"


def _synthetic_records(n, resolution):
  """`synthetic:N` -> records from the synthetic face world (image + its ground-truth metadata)."""
  synthetic = _import_optional("jaxface.data.synthetic", "SRC 'synthetic:N' needs the synthetic face world "
                               "(jaxface.data.synthetic), which this installation does not have; pass a folder "
                               "of images as SRC instead.")

  def gen():
    for i, item in enumerate(synthetic.prepare_items(n, resolution)):
      if isinstance(item, dict):
        meta = {k: v for k, v in item.items() if k != "image"}
        image = item["image"]
      else:
        image, meta = item, {}
      img = images.center_crop_resize(images.array_to_rgb(image), resolution)
      yield f"synthetic/{i:08d}", images.encode_record(img, meta), ""
  return gen()


def _parse_synthetic(src):
  count = src.split(":", 1)[1]
  try:
    n = int(count)
  except ValueError:
    n = 0
  if n <= 0:
    raise UserError(f"SRC {src!r}: the number after 'synthetic:' must be a positive integer, e.g. synthetic:10000.")
  return n


def prepare(src, dst, resolution, shards=1, align=False, workers=0, overwrite=False, progress=True):
  """Writes the shards and meta.json; returns the meta dict."""
  from array_record.python.array_record_module import ArrayRecordWriter
  resolution = images.check_resolution(resolution, key="--resolution")
  if shards < 1:
    raise UserError(f"--shards={shards} must be >= 1.")
  if workers < 0:
    raise UserError(f"--workers={workers} must be >= 0.")
  existing = glob.glob(os.path.join(dst, "*.array_record")) + glob.glob(os.path.join(dst, "meta.json"))
  if existing and not overwrite:
    raise UserError(f"DST {dst!r} already holds a prepared data set ({os.path.basename(existing[0])}); choose an "
                    f"empty folder or pass --overwrite.")
  pool = None
  if src.startswith("synthetic:"):
    n = _parse_synthetic(src)
    if align:
      raise UserError("--align applies to photos; the synthetic face world is already aligned. Drop --align.")
    records, total = _synthetic_records(n, resolution), n
  else:
    root = os.path.abspath(os.path.expanduser(src))
    if not os.path.isdir(root):
      raise DataError(f"SRC {src!r} is not a folder; pass a folder of .png/.jpg images or synthetic:N.")
    files = images.list_images(root)
    if not files:
      raise DataError(f"SRC {src!r} contains no .png/.jpg/.jpeg files (subfolders are searched); check the path.")
    if align:
      _load_align()  # fail now, not after the first file
    jobs = [(root, rel, resolution, align) for rel in files]
    total = len(files)
    if workers > 0:
      pool = multiprocessing.get_context("spawn").Pool(workers)
      records = pool.imap(_process_file, jobs, chunksize=16)  # ordered: output independent of `workers`
    else:
      records = map(_process_file, jobs)

  os.makedirs(dst, exist_ok=True)
  for p in existing:
    os.remove(p)
  names = [shard_name(i, shards) for i in range(shards)]
  tmp_paths = [os.path.join(dst, n + ".tmp") for n in names]
  writers = [ArrayRecordWriter(p, "group_size:1") for p in tmp_paths]  # group_size 1: fast random access
  count, skipped, done = 0, [], False
  try:
    for key, record, err in tqdm.tqdm(records, total=total, desc="prepare", unit="img",
                                      disable=not (progress and sys.stderr.isatty())):
      if record is None:
        skipped.append({"file": key, "error": err})
        continue
      writers[count % shards].write(record)
      count += 1
    done = count > 0
  finally:
    for w in writers:
      w.close()
    if pool is not None:
      pool.terminate()
    if not done:  # interrupted, failed, or nothing decodable: leave no partial shards behind
      for p in tmp_paths:
        if os.path.exists(p):
          os.remove(p)
  if count == 0:
    example = f" (e.g. {skipped[0]['file']}: {skipped[0]['error']})" if skipped else ""
    raise DataError(f"none of the {total} inputs from {src!r} could be decoded{example}; check that SRC holds "
                    f"PNG/JPEG images.")
  for tmp, name in zip(tmp_paths, names):
    os.replace(tmp, os.path.join(dst, name))
  meta = {"format": FORMAT, "count": count, "resolution": resolution, "shards": names, "source": src,
          "aligned": bool(align), "skipped": skipped,
          "record": "PNG bytes, or an npz with 'image_png' (PNG bytes) plus metadata arrays"}
  with open(os.path.join(dst, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
  return meta


def _parser():
  p = cli_lib.parser("jaxface.data.prepare", description=__doc__.split("\n\n")[0])
  p.add_argument("src", metavar="SRC", help="folder of .png/.jpg images (recursive), or synthetic:N")
  p.add_argument("dst", metavar="DST", help="output folder for the .array_record shards and meta.json")
  p.add_argument("--resolution", type=int, required=True, help="output size R (power of two >= 4)")
  p.add_argument("--shards", type=int, default=1, help="number of shard files")
  p.add_argument("--align", action="store_true", help="face-align with jaxface.data.align before cropping")
  p.add_argument("--workers", type=int, default=0, help="decode in this many processes (0: in-process)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing prepared data set in DST")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  return p


@cli
def main(argv=None):
  args = _parser().parse_args(argv)
  meta = prepare(args.src, args.dst, args.resolution, shards=args.shards, align=args.align, workers=args.workers,
                 overwrite=args.overwrite, progress=not args.no_progress)
  print(f"wrote {meta['count']} images at {meta['resolution']}x{meta['resolution']} into {len(meta['shards'])} "
        f"shard(s) in {args.dst}")
  if meta["skipped"]:
    print(f"skipped {len(meta['skipped'])} file(s) that could not be decoded (all listed in meta.json):",
          file=sys.stderr)
    for s in meta["skipped"][:20]:
      print(f"  {s['file']}: {s['error']}", file=sys.stderr)
    if len(meta["skipped"]) > 20:
      print(f"  ... and {len(meta['skipped']) - 20} more", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
