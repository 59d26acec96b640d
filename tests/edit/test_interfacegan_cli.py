"""InterFaceGAN CLIs on a tiny StyleGAN2 this module trains once: generate_data -> train_boundary -> edit ->
rescore with a toy pixel-statistics predictor; the generator's Z / W / W+ paths against the trained module; and
bad input -> `error: ...`, exit 2, no traceback."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxface.edit import predictors
from jaxface.runs import stylegan2 as stylegan2_run
from jaxface.runs import latent_codes as ifg
from tests.edit.ifg_helpers import run, run_error

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRAIN = ["--config", "configs/stylegan2.py:tiny,res=16", "--config.total_steps=2", "--config.model.channel_max=16",
         "--config.model.z_dim=16", "--config.model.w_dim=16", "--config.wandb.mode=disabled",
         "--config.ckpt.async_save=false", "--config.log.num_samples=4"]


def _env():
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """Trains the tiny StyleGAN2 for 2 steps with the real entry point, in this process (no second JAX start-up)."""
  from jaxface import main as train_main
  w = tmp_path_factory.mktemp("ifg") / "sg2"
  assert train_main.main(["--workdir", str(w), *TRAIN]) == 0
  return str(w)


def test_generate_train_edit_rescore_end_to_end(workdir, tmp_path):
  data, bdir, edits = tmp_path / "data", tmp_path / "b", tmp_path / "edits"
  run("generate_data", "-w", workdir, "-o", data, "-n", 600, "--predictor", "toy_colour", "--seed", 1)
  assert np.load(data / "z.npy").shape == (600, 16) and np.load(data / "w.npy").shape == (600, 16)
  assert np.load(data / "wp.npy").shape == (600, 6, 16)  # 2 * log2(16) - 2 style layers
  np.testing.assert_allclose(np.linalg.norm(np.load(data / "z.npy"), axis=1), 4.0, rtol=1e-5)
  assert json.loads((data / "attributes.json").read_text())["attributes"] == ["brightness", "warmth", "top_bottom"]
  assert len(list(data.glob("*.jpg"))) == 600 and Image.open(data / "000599.jpg").size == (16, 16)
  scores = np.load(data / "brightness_scores.npy")
  assert scores.shape == (600, 1) and scores.std() > 0

  for attr in ("brightness", "warmth"):
    run("train_boundary", "-o", bdir / attr, "-c", data / "z.npy", "-s", data / f"{attr}_scores.npy", "-n", 0.1)
  boundary = np.load(bdir / "brightness" / "boundary.npy")
  assert boundary.shape == (1, 16) and abs(np.linalg.norm(boundary) - 1) < 1e-6
  info = json.loads((bdir / "brightness" / "info.json").read_text())
  assert info["train_num"] == 42 and info["val_num"] == 18 and info["val_accuracy"] >= 0.8

  run("edit", "-w", workdir, "-b", bdir / "brightness" / "boundary.npy", "-o", edits, "-n", 3, "--steps", 5,
      "--predictor", "toy_colour", "--seed", 7)
  edited = np.load(edits / "edited_codes.npy")
  assert edited.shape == (3, 5, 16)
  np.testing.assert_allclose(edited @ boundary[0], np.broadcast_to(np.linspace(-3, 3, 5), (3, 5)), atol=1e-4)
  assert len(list(edits.glob("*.jpg"))) == 15 and (edits / "002_004.jpg").exists()
  h, w, _ = np.asarray(Image.open(edits / "grid.png")).shape
  assert h > 3 * 16 and w > 5 * 16  # three samples x five distances, and the labels
  edit_scores = np.load(edits / "edit_scores.npy")  # [num, steps, attributes]
  assert edit_scores.shape == (3, 5, 3)
  assert np.all(edit_scores[:, -1, 0] > edit_scores[:, 0, 0])  # the toy attribute moves the right way

  run("edit", "-w", workdir, "-b", bdir / "brightness" / "boundary.npy", "-o", tmp_path / "cond", "-n", 1,
      "--steps", 2, "--condition", bdir / "warmth" / "boundary.npy")
  projected = np.load(tmp_path / "cond" / "boundary.npy")
  assert abs(float(projected[0] @ np.load(bdir / "warmth" / "boundary.npy")[0])) < 1e-6

  run("rescore", "-w", workdir, "-b", bdir / "brightness" / "boundary.npy",
      "-b", f"warm={bdir / 'warmth' / 'boundary.npy'}",
      "--predictor", "toy_colour", "--attributes", "brightness,warmth", "-o", tmp_path / "re", "-n", 32)
  result = json.loads((tmp_path / "re" / "rescore.json").read_text())
  assert result["edits"] == ["brightness", "warm"] and result["attributes"] == ["brightness", "warmth"]
  matrix = np.array(result["matrix"])
  assert matrix.shape == (2, 2) and matrix[0, 0] > 0 and matrix[1, 1] > 0
  np.testing.assert_allclose(np.load(tmp_path / "re" / "rescore.npy"), matrix, rtol=1e-6)
  dom = result["dominance"]  # only "brightness" is both an edit and an attribute ("warm" is not "warmth")
  assert dom["names"] == ["brightness"] and dom["row_margins"] == dom["col_margins"] == [None]  # 1x1: no off-diagonal
  np.testing.assert_allclose(dom["standardised"], [[matrix[0, 0] / result["score_std"][0]]], rtol=1e-6)


def test_generator_paths_match_the_trained_module(workdir):
  import jax
  from jaxface.runs import stylegan2 as sg2_train
  G = stylegan2_run.load_generator(workdir, truncation_psi=0.5, truncation_layers=2)
  assert (G.z_dim, G.w_dim, G.num_ws, G.resolution, G.step) == (16, 16, 6, 16, 2)
  z = ifg.sample_z(0, 6, 16)
  out = G.synthesize(z, "z")
  w, wp = out["w"], out["wp"]
  # Truncation: the first 2 layers move exactly psi of the way to w_avg, the rest are untouched.
  np.testing.assert_allclose(wp[:, 2:], np.broadcast_to(w[:, None], (6, 4, 16)), atol=1e-6)
  np.testing.assert_allclose(wp[:, :2], np.broadcast_to((G.w_avg + 0.5 * (w - G.w_avg))[:, None], (6, 2, 16)),
                             atol=1e-6)
  # Reference: the trainer's own module, applied to the restored EMA params of the same checkpoint.
  module = sg2_train.generator(G.config)
  np.testing.assert_allclose(w, np.asarray(jax.jit(lambda p, z: module.apply({"params": p}, z, method="map"))(
      G.params, z)), atol=1e-5)
  ref = jax.jit(lambda p, ws: module.apply({"params": p}, ws, noise_mode="const", method="synthesize"))(G.params, wp)
  np.testing.assert_allclose(out["image"], np.asarray(ref), atol=1e-4)
  np.testing.assert_allclose(G.synthesize(w, "w")["image"], out["image"], atol=1e-5)  # W path = Z path after mapping
  np.testing.assert_allclose(G.synthesize(wp, "wp")["image"], out["image"], atol=1e-5)  # W+ is not re-truncated
  # A W edit of alpha moves the truncated coarse layers by psi * alpha and the others by alpha.
  n = ifg.renormalize_z(np.ones((1, 16))) / 4.0
  moved = G.truncate(w + 2.0 * n) - wp
  np.testing.assert_allclose(moved[:, :2], np.broadcast_to(1.0 * n, (6, 2, 16)), atol=1e-5)
  np.testing.assert_allclose(moved[:, 2:], np.broadcast_to(2.0 * n, (6, 4, 16)), atol=1e-5)
  assert G.sample(5, "wp", 3).shape == (5, 6, 16)


def test_w_space_with_centred_boundary(workdir, tmp_path):
  run("generate_data", "-w", workdir, "-o", tmp_path / "d", "-n", 300, "-s", "w", "--predictor", "brightness", "-I")
  assert not (tmp_path / "d" / "z.npy").exists() and not list((tmp_path / "d").glob("*.jpg"))  # W codes; -I
  w = np.load(tmp_path / "d" / "w.npy")
  run("train_boundary", "-o", tmp_path / "b", "-c", tmp_path / "d" / "w.npy", "-s",
      tmp_path / "d" / "brightness_scores.npy", "-n", 0.2, "--center", "mean")
  info = json.loads((tmp_path / "b" / "info.json").read_text())
  b = np.load(tmp_path / "b" / "boundary.npy")
  assert abs(info["offset"] - float(b[0] @ w.mean(0))) < 1e-4
  np.save(tmp_path / "codes.npy", w[:2])
  run("edit", "-w", workdir, "-b", tmp_path / "b" / "boundary.npy", "-o", tmp_path / "e", "-s", "w", "-i",
      tmp_path / "codes.npy", "--steps", 3, "--offset", info["offset"], "--start_distance", -1, "--end_distance", 1)
  edited = np.load(tmp_path / "e" / "edited_codes.npy")
  np.testing.assert_allclose(edited @ b[0] - info["offset"], np.broadcast_to([-1.0, 0.0, 1.0], (2, 3)), atol=1e-4)


def test_bad_input_is_a_clear_error(workdir, tmp_path, capsys):
  b = tmp_path / "b.npy"
  np.save(b, ifg.renormalize_z(np.ones((1, 16))) / 4)
  np.save(tmp_path / "codes7.npy", np.zeros((2, 7), np.float32))
  err = run_error(capsys, "edit", "-w", workdir, "-b", b, "-o", tmp_path / "o", "-i", tmp_path / "codes7.npy")
  assert "(2, 7)" in err and "[N, 16]" in err
  for bad in (np.ones(16) / 4, np.ones((1, 8)) / np.sqrt(8), np.ones((2, 16))):
    np.save(tmp_path / "badb.npy", bad)
    err = run_error(capsys, "edit", "-w", workdir, "-b", tmp_path / "badb.npy", "-o", tmp_path / "o")
    assert "(1, 16)" in err and str(bad.shape) in err
  err = run_error(capsys, "rescore", "-w", workdir, "-b", b, "--predictor", "toy_colour", "--attributes", "smile",
                  "-o", tmp_path / "r")
  assert "unknown attribute 'smile'" in err and "brightness" in err
  assert "--layers" in run_error(capsys, "edit", "-w", workdir, "-b", b, "-o", tmp_path / "o", "-s", "wp",
                                 "--layers", "0,9")
  assert "unknown predictor" in run_error(capsys, "generate_data", "-w", workdir, "-o", tmp_path / "g",
                                          "--predictor", "nope")
  np.save(tmp_path / "s.npy", np.zeros((5, 1)))
  np.save(tmp_path / "c.npy", np.zeros((6, 16)))
  assert "6 codes but" in run_error(capsys, "train_boundary", "-o", tmp_path / "t", "-c", tmp_path / "c.npy", "-s",
                                    tmp_path / "s.npy")
  assert "does not exist" in run_error(capsys, "train_boundary", "-o", tmp_path / "t", "-c", tmp_path / "no.npy",
                                       "-s", tmp_path / "s.npy")
  bare = tmp_path / "bare"
  bare.mkdir()
  shutil.copy(os.path.join(workdir, "config.json"), bare / "config.json")
  assert "no checkpoint" in run_error(capsys, "generate_data", "-w", bare, "-o", tmp_path / "g")
  other = tmp_path / "other"
  other.mkdir()
  cfg = json.loads((bare / "config.json").read_text())
  (other / "config.json").write_text(json.dumps(dict(cfg, trainer="sof")))
  assert "trainer 'sof'" in run_error(capsys, "generate_data", "-w", other, "-o", tmp_path / "g")
  assert "no config.json" in run_error(capsys, "generate_data", "-w", tmp_path, "-o", tmp_path / "g")
  # And as a real process: exit status 2 and no traceback.
  result = subprocess.run([sys.executable, "-m", "jaxface.interfacegan", "edit", "-w", workdir, "-b", str(b), "-o",
                           str(tmp_path / "o"), "-i", str(tmp_path / "codes7.npy")], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr and "error: " in result.stderr, result.stderr


PLUGIN = '''
import numpy as np
from jaxface.edit.predictors import Predictor

def mean_red(images):
  return images[..., 0].mean(axis=(1, 2))[:, None]
mean_red.attribute_names = ("red",)

INSTANCE = Predictor(lambda x: x.mean(axis=(1, 2, 3)), ("bright",), batch_size=2)

def factory():
  return Predictor(lambda x: np.stack([x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))], -1), ("lo", "hi"))

def broken():
  return 3

def wrong_shape(images):
  return np.zeros((len(images), 5))
wrong_shape.attribute_names = ("a",)
'''


def test_predictors_plug_in_by_name_or_module_path(tmp_path, monkeypatch):
  from jaxface.errors import UserError
  (tmp_path / "ifg_plugin_preds.py").write_text(PLUGIN)
  monkeypatch.syspath_prepend(str(tmp_path))
  images = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
  red = predictors.get_predictor("ifg_plugin_preds:mean_red")
  assert list(red.names) == ["red"]
  np.testing.assert_allclose(red(images)[:, 0], images[..., 0].mean(axis=(1, 2)), rtol=1e-6)
  bright = predictors.get_predictor("ifg_plugin_preds:INSTANCE")  # batches of 2, the last one short
  np.testing.assert_allclose(bright(images)[:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)
  lohi = predictors.get_predictor("ifg_plugin_preds:factory")
  np.testing.assert_allclose(lohi(images), np.stack([images.min((1, 2, 3)), images.max((1, 2, 3))], -1))
  assert lohi.index("hi") == 1
  monkeypatch.setitem(predictors._REGISTRY, "ifg_test_lohi", lambda: lohi)
  assert predictors.get_predictor("ifg_test_lohi") is lohi
  toy = predictors.get_predictor("toy_colour")(images)
  np.testing.assert_allclose(toy[:, 1], images[..., 0].mean((1, 2)) - images[..., 2].mean((1, 2)), rtol=1e-5)
  for spec, needle in (("ifg_plugin_preds:broken", "not a jaxface.edit.predictors.Predictor"),
                       ("ifg_plugin_preds:missing", "has no attribute 'missing'"),
                       ("no_such_module_xyz:f", "cannot import"), ("smile_net", "unknown predictor")):
    with pytest.raises(UserError, match=needle):
      predictors.get_predictor(spec)
  with pytest.raises(UserError, match=r"\[N, 1\]"):
    predictors.get_predictor("ifg_plugin_preds:wrong_shape")(images)
  with pytest.raises(UserError, match="unknown attribute 'mid'"):
    lohi.index("mid")
