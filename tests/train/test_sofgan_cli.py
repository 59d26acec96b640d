"""`python -m jaxface.sofgan`: free-view sequences and region-edit grids from a tiny SOF + a tiny SIW."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, env  # pylint: disable=import-error


def _run(args):
  return subprocess.run([sys.executable, "-m", "jaxface.sofgan", *args], cwd=ROOT, env=env(1), capture_output=True,
                        text=True, timeout=600)


def test_render_sequence_and_region_edit_grid(tiny_sof, tiny_siw, tmp_path):
  common = ["--sof", str(tiny_sof), "--siw", str(tiny_siw)]
  gif, sheet = tmp_path / "seq.gif", tmp_path / "seq.png"
  for out in (gif, sheet):
    proc = _run(["render", *common, "--out", str(out), "--geometry", "gmm:2", "--frames", "6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
  im = Image.open(gif)
  assert im.format == "GIF" and im.size[0] == 2 * im.size[1]  # label colours | image
  assert Image.open(sheet).size == (6 * im.size[0], im.size[1])  # the 6 frames side by side
  grid = tmp_path / "edit.png"
  proc = _run(["edit", *common, "--out", str(grid), "--geometry", "instance:0", "--rows", "2",
               "--regions", "hair,background"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  g = np.asarray(Image.open(grid))
  from jaxface import grid as grid_lib
  r = grid_lib.MIN_CELL  # the tiny run's images, enlarged so that their labels fit
  assert g.shape[0] > 2 * r and g.shape[1] > 4 * r  # 2 heads x (labels, base, hair, background), and the labels
  body = g[-2 * r:, -4 * r:]
  cells = [body[:r, c * r:(c + 1) * r].astype(float) for c in range(4)]
  assert np.abs(cells[3] - cells[1]).mean() > 0  # the background restyle changed the image


@pytest.mark.parametrize("args,message", [
    (["--geometry", "instance:99"], "learned instances 0..1"),
    (["--geometry", "mesh:1"], "expected gmm:SEED or instance:INDEX"),
    (["--max-yaw", "120"], "camera out of range"),
    (["--regions", "hair,beard"], "unknown region 'beard'"),
])
def test_bad_input_is_a_clear_error(tiny_sof, tiny_siw, tmp_path, args, message):
  proc = _run(["render", "--sof", str(tiny_sof), "--siw", str(tiny_siw), "--out", str(tmp_path / "x.gif"),
               "--frames", "2", *args])
  assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
