"""One writer for everything a run reports: a progress line, workdir/metrics.jsonl, W&B, and PNG grids.

metrics.jsonl holds one row per logged step however often the run was interrupted: a resumed run drops the rows
after its checkpoint before training those steps again (`Writer.rewind`).

Only process 0 writes. W&B is offline by default (`wandb sync workdir/wandb/offline-run-*` uploads later);
`config.wandb.mode="online"` with WANDB_API_KEY logs live; "disabled" turns it off.
"""

import json
import math
import os
import sys
import time

import jax
import numpy as np
from PIL import Image

from jaxface.errors import UserError


def image_grid(images, cols=None):
  """[N, H, W, C] floats in [-1, 1] (or uint8) -> one uint8 [rows*H, cols*W, C] grid."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    images = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
  n, h, w, c = images.shape
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.zeros((rows * h, cols * w, c), np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i]
  return grid


def save_png(path, array):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  array = np.asarray(array)
  Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


class Writer:
  """Progress line + metrics.jsonl + W&B, on process 0 only."""

  def __init__(self, workdir, config, total_steps, batch_size):
    self.enabled = jax.process_index() == 0
    self.workdir = workdir
    self.total_steps = total_steps
    self.batch_size = batch_size
    self._wandb = None
    self._t0 = None
    self._step0 = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    if config.wandb.mode != "disabled":
      import wandb  # lazy: importing wandb costs a second
      os.environ.setdefault("WANDB_SILENT", "true")
      self._wandb = wandb.init(
          project=config.wandb.project, name=config.wandb.name or os.path.basename(os.path.abspath(workdir)),
          dir=workdir, mode=config.wandb.mode, config=config.to_dict(), resume="allow",
          id=_run_id(workdir), settings=wandb.Settings(console="off", x_disable_stats=True))

  def rewind(self, step):
    """Keeps one metrics.jsonl row per step, up to `step` (the step training resumes from): the steps after it are
    trained again, and their old rows would repeat them. Rewritten through a temporary file and a rename, so a crash
    here leaves the old file whole."""
    if not self.enabled:
      return
    path = os.path.join(self.workdir, "metrics.jsonl")
    self._jsonl.close()
    with open(path) as f:
      lines = f.readlines()
    kept = rows_through(lines, step)
    if kept != lines:
      with open(path + ".tmp", "w") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
      os.replace(path + ".tmp", path)
    self._jsonl = open(path, "a")

  def start_timer(self, step):
    self._t0, self._step0 = time.perf_counter(), step

  def write(self, step, scalars):
    """Logs one row of scalars (python floats) for `step` and prints the progress line."""
    if not self.enabled:
      return
    row = {"step": int(step), "kimg": step * self.batch_size / 1000.0, **scalars}
    if self._t0 is not None and step > self._step0:
      elapsed = time.perf_counter() - self._t0
      row["img_per_s"] = (step - self._step0) * self.batch_size / elapsed
      row["sec_per_step"] = elapsed / (step - self._step0)
      eta = (self.total_steps - step) * row["sec_per_step"]
    else:
      eta = float("nan")
    try:
      self._jsonl.write(json.dumps(row) + "\n")
      self._jsonl.flush()
    except OSError as e:  # a full disk or a lost mount: one message, not a traceback
      raise UserError(f"cannot write {self._jsonl.name} ({e.strerror or e}); free space or fix the permissions, "
                      f"then rerun the same command to resume from the last checkpoint.") from None
    shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if isinstance(v, (int, float)))
    speed = f"{row['img_per_s']:.1f} img/s" if "img_per_s" in row else "-- img/s"
    print(f"step {step}/{self.total_steps} kimg {row['kimg']:.2f} {speed} ETA {_fmt_eta(eta)} | {shown}",
          flush=True)
    if self._wandb is not None:
      self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=int(step))

  def images(self, step, name, grid):
    """Saves a uint8 grid as workdir/samples/<name>_<step>.png and logs it to W&B."""
    if not self.enabled:
      return None
    path = os.path.join(self.workdir, "samples", f"{name}_{step:07d}.png")
    save_png(path, grid)
    if self._wandb is not None:
      import wandb
      self._wandb.log({name: wandb.Image(path)}, step=int(step))
    return path

  def evaluation(self, step, results):
    """Numeric leaves of an evaluation dict go to the W&B run summary as eval/<path> (the JSON is the loop's)."""
    if not self.enabled or self._wandb is None:
      return
    flat = {}

    def walk(prefix, x):
      if isinstance(x, dict):
        for k, v in x.items():
          walk(f"{prefix}/{k}", v)
      elif isinstance(x, (int, float)) and not isinstance(x, bool):
        flat[prefix] = float(x)

    walk("eval", results)
    self._wandb.log(flat, step=int(step))
    self._wandb.summary.update(flat)

  def log(self, message):
    if self.enabled:
      print(message, file=sys.stdout, flush=True)

  def close(self):
    if not self.enabled:
      return
    try:
      self._jsonl.close()
    except OSError:  # the row still buffered is the one whose failed write was reported
      pass
    if self._wandb is not None:
      self._wandb.finish()


def rows_through(lines, step):
  """The metrics.jsonl `lines` of steps <= `step`, the last row of each step, in step order. A line cut short by a
  crash does not parse and goes too (the next row appended to it would be lost with it)."""
  by_step = {}
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
      by_step[row["step"]] = line if line.endswith("\n") else line + "\n"
  return [by_step[k] for k in sorted(by_step)]


def _run_id(workdir):
  """A stable W&B run id per workdir, so a resumed run continues the same W&B run."""
  path = os.path.join(workdir, "wandb_id")
  if os.path.exists(path):
    return open(path).read().strip()
  import uuid
  run_id = uuid.uuid4().hex[:12]
  with open(path, "w") as f:
    f.write(run_id)
  return run_id


def _fmt_eta(seconds):
  if not math.isfinite(seconds):
    return "--"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
