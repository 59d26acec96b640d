"""Input-pipeline throughput: images/s out of `pipeline.make_iterator` for folder and ArrayRecord data.

    python -m jaxface.bench.data [--num-images 256] [--batch 32] [--seconds 4] [--workers 0,2] [--resolutions 64,256]

Builds a throw-away data set in a temp folder: photo-like images (procedural faces plus sensor-like noise, so
they compress like photos) saved as JPEG (quality 95) at 1.25x the training resolution for `folder` (decode +
crop + Lanczos resize per image), and the same images prepared into ArrayRecord at the training resolution
(PNG decode only). Each row: the steady-state rate after the first batches (worker start-up excluded, and
reported separately), on this machine's CPU cores. Appends one line per row to bench/results.jsonl.
"""

import os
import tempfile
import time

from ml_collections import ConfigDict
import numpy as np
from PIL import Image

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
common = lazy_import("jaxface.bench.common")
generated = lazy_import("jaxface.data.generated")
pipeline = lazy_import("jaxface.data.pipeline")
prepare = lazy_import("jaxface.data.prepare")



def make_photos(root, n, size, seed=0):
  """n photo-like JPEGs of size x size under root/ (cheap to make, realistic to decode)."""
  os.makedirs(root, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    face = Image.fromarray(generated.render(i % generated.DEFAULT_NUM_IMAGES, 256)).resize(
        (size, size), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(face, np.int16) + rng.normal(0, 6, size=(size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(os.path.join(root, f"{i:05d}.jpg"), quality=95)


def measure(cfg, batch, seconds, warmup_batches=3):
  """(images/s in steady state, seconds to the first batch) for one pipeline configuration."""
  t0 = time.perf_counter()
  it = pipeline.make_iterator(cfg, global_batch_size=batch, seed=0, process_index=0, process_count=1)
  try:
    next(it)
    startup = time.perf_counter() - t0
    for _ in range(warmup_batches - 1):
      next(it)
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < seconds or n < 5:
      b = next(it)
      n += 1
    assert b["image"].shape == (batch, cfg.resolution, cfg.resolution, 3)
    return n * batch / (time.perf_counter() - t1), startup
  finally:
    it.close()


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.bench.data", description=__doc__.split("\n\n")[0])
  p.add_argument("--num-images", type=int, default=256, help="images in the throw-away data set")
  p.add_argument("--batch", type=int, default=32, help="batch size")
  p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per row")
  p.add_argument("--workers", default="0,2", help="comma-separated grain worker counts to time")
  p.add_argument("--resolutions", default="64,256", help="comma-separated training resolutions")
  p.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results.jsonl")
  args = p.parse_args(argv)
  workers = [int(w) for w in args.workers.split(",")]
  resolutions = [int(r) for r in args.resolutions.split(",")]
  rows = []
  with tempfile.TemporaryDirectory(prefix="jaxface-bench-data-") as tmp:
    for res in resolutions:
      folder = os.path.join(tmp, f"jpg{res}")
      make_photos(folder, args.num_images, res * 5 // 4)
      ar = os.path.join(tmp, f"ar{res}")
      prepare.prepare(folder, ar, res, shards=4, progress=False)
      for kind, path in (("folder", folder), ("arrayrecord", ar)):
        for w in workers:
          cfg = ConfigDict(dict(kind=kind, path=path, tfds_name="", split="train", resolution=res,
                                max_bad_fraction=0.01, worker_count=w, prefetch=2))
          rate, startup = measure(cfg, args.batch, args.seconds)
          row = {"kind": kind, "resolution": res, "workers": w, "batch": args.batch, "images_per_s": rate,
                 "startup_s": startup, "cpu_count": os.cpu_count()}
          rows.append(row)
          if not args.no_record:
            common.record("data", {k: row[k] for k in ("kind", "resolution", "workers", "batch")},
                          {"images_per_s": rate, "startup_s": startup, "cpu_count": os.cpu_count(),
                           "source_format": "jpeg q95 at 1.25x" if kind == "folder" else "png in array_record"})
          print(f"{kind:12s} {res:4d}px workers={w}: {rate:8.1f} img/s (first batch after {startup:.2f}s)",
                flush=True)
  common.print_table(rows, ["kind", "resolution", "workers", "batch", "images_per_s", "startup_s", "cpu_count"])
  return rows


if __name__ == "__main__":
  main()
