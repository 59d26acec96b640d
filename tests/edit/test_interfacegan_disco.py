"""InterFaceGAN on the bundled DiscoFaceGAN reference generator (pretrained/disco_cpu64): the adapter's Z / W / W+
paths against `jaxface.Generator` itself, W+ edits, the commands end to end with a pixel-statistics predictor, and
bad input -> `error: ...`, exit 2."""

import json
import os

import numpy as np
import pytest

from jaxface import pretrained
from jaxface.edit import interfacegan as ifg
from jaxface.runs import disco_latents, latent_generators
from tests.edit.ifg_helpers import run, run_error

REF = pretrained.REFERENCE


@pytest.fixture(scope="module")
def G():
  return latent_generators.load(REF, batch_size=8)


def test_z_is_the_generators_input_and_every_path_gives_its_image(G):
  assert isinstance(G, disco_latents.DiscoLatents) and latent_generators.kind(REF) == "disco"
  assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (146 + 32, 256, 10, 64) and G.truncation_psi == 1.0
  blocks = G.gen.random_blocks(5, 4)
  eps = np.random.default_rng(0).standard_normal((4, G.noise_dim)).astype(np.float32)
  z = G.codes(blocks, eps)
  back, eps_back = G.blocks(z)
  assert all(np.array_equal(back[k], blocks[k]) for k in blocks) and np.array_equal(eps_back, eps)
  out = G.synthesize(z, "z")
  np.testing.assert_array_equal(G.check_codes(z * 3, "z"), z * 3)  # λ is physical: never renormalised
  want = np.asarray(G.gen.generate(blocks, eps, psi=1.0))
  np.testing.assert_allclose(out["image"], want, atol=1e-5)  # z -> w -> W+ -> image = Generator.generate
  np.testing.assert_allclose(G.synthesize(out["w"], "w")["image"], want, atol=1e-5)
  np.testing.assert_allclose(G.synthesize(out["wp"], "wp")["image"], want, atol=1e-5)
  assert out["wp"].shape == (4, 10, 256) and np.array_equal(out["wp"][:, 3], out["w"])
  # Another yaw in λ is another image: z really is the generator's input.
  turned = dict(blocks, angle=blocks["angle"] + np.float32([0, 0.5, 0]))
  assert np.abs(G.synthesize(G.codes(turned, eps), "z")["image"] - want).mean() > 0.02
  # Sampling: λ from the priors and per-sample ε, the same for a seed; W / W+ codes are their mappings.
  z1 = G.sample(3, "z", seed=4)
  assert z1.shape == (3, 178) and np.array_equal(z1, G.sample(3, "z", seed=4)) and not np.allclose(z1[0], z1[1])
  np.testing.assert_allclose(G.sample(3, "w", seed=4), G.map(z1), atol=1e-6)


def test_truncation_is_one_function_of_w(G):
  T = disco_latents.DiscoLatents(G.gen, REF, truncation_psi=0.5, truncation_layers=2, batch_size=8)
  w = G.sample(3, "w", seed=1)
  wp = T.truncate(w)
  np.testing.assert_allclose(wp[:, 2:], np.broadcast_to(w[:, None], (3, 8, 256)), atol=1e-6)
  np.testing.assert_allclose(wp[:, :2], np.broadcast_to((T.w_avg + 0.5 * (w - T.w_avg))[:, None], (3, 2, 256)),
                             atol=1e-5)
  z = G.sample(3, "z", seed=1)
  np.testing.assert_allclose(T.synthesize(z, "z")["image"], T.synthesize(w, "w")["image"], atol=1e-5)


def test_w_plus_edit_moves_the_named_layers_in_order(G, tmp_path):
  b = np.random.default_rng(1).standard_normal((1, 256))
  np.save(tmp_path / "b.npy", (b / np.linalg.norm(b)).astype(np.float32))
  run("edit", "-w", REF, "-s", "wp", "-b", tmp_path / "b.npy", "-o", tmp_path / "e", "-n", 2, "--steps", 3,
      "--layers", "0,1,2", "--start_distance", -2, "--end_distance", 2, "--batch-size", 8, "--seed", 9)
  codes, edited = np.load(tmp_path / "e" / "latent_codes.npy"), np.load(tmp_path / "e" / "edited_codes.npy")
  assert codes.shape == (2, 10, 256) and edited.shape == (2, 3, 10, 256)
  np.testing.assert_allclose(codes, G.sample(2, "wp", seed=9), atol=1e-6)
  moved = edited - codes[:, None]
  step = np.float32([-2, 0, 2])[None, :, None, None] * (b / np.linalg.norm(b))[None, None]  # [1, 3, 1, 256]
  np.testing.assert_allclose(moved[:, :, :3], np.broadcast_to(step, (2, 3, 3, 256)), atol=1e-5)
  assert np.all(moved[:, :, 3:] == 0)
  from PIL import Image
  middle = np.asarray(Image.open(tmp_path / "e" / "001_001.jpg"), np.float32)  # sample 1 at distance 0
  unedited = (G.synthesize(codes[1:2], "wp")["image"][0] + 1) * 127.5
  assert np.abs(middle - unedited).mean() < 3.0  # JPEG
  np.testing.assert_allclose(ifg.linear_interpolate(codes[:1], b / np.linalg.norm(b), -2, 2, 3, layers=[0, 1, 2]),
                             edited[0], atol=1e-5)


def test_generate_train_rescore_on_the_reference_generator(tmp_path):
  data, bdir = tmp_path / "data", tmp_path / "b"
  run("generate_data", "-o", data, "-n", 48, "--predictor", "brightness", "-s", "z", "-I", "--batch-size", 16)
  z, w, wp = (np.load(data / f"{k}.npy") for k in ("z", "w", "wp"))
  assert z.shape == (48, 178) and w.shape == (48, 256) and wp.shape == (48, 10, 256)
  assert "DiscoFaceGAN" in (data / "log.txt").read_text()
  scores = np.load(data / "brightness_scores.npy")
  assert scores.shape == (48, 1) and scores.std() > 0.01
  run("train_boundary", "-o", bdir / "brightness", "-c", data / "w.npy", "-s", data / "brightness_scores.npy",
      "-n", 0.25, "-r", 0.75)
  info = json.loads((bdir / "brightness" / "info.json").read_text())
  assert info["train_num"] == 9 and info["val_num"] == 3
  run("rescore", "-w", REF, "-s", "w", "-b", f"brightness={bdir / 'brightness' / 'boundary.npy'}", "-n", 16,
      "--distance", 3, "--predictor", "brightness", "-o", tmp_path / "re", "--batch-size", 16)
  result = json.loads((tmp_path / "re" / "rescore.json").read_text())
  assert result["edits"] == ["brightness"] and result["num"] == 16
  assert result["matrix"][0][0] > 0.25 * result["score_std"][0]  # a boundary from 48 samples: 0.39 stds measured
  run("rescore", "-s", "wp", "-b", f"brightness={bdir / 'brightness' / 'boundary.npy'}", "-n", 16, "--distance", 3,
      "--layers", "6,7,8,9", "--predictor", "brightness", "-o", tmp_path / "fine", "--batch-size", 16)
  fine = json.loads((tmp_path / "fine" / "rescore.json").read_text())
  assert fine["layers"] == [6, 7, 8, 9] and fine["space"] == "wp" and result["layers"] is None
  assert fine["matrix"][0][0] != pytest.approx(result["matrix"][0][0], rel=0.05)  # four of ten layers move


def test_bad_input_names_the_fix(tmp_path, capsys):
  np.save(tmp_path / "codes.npy", np.zeros((2, 16), np.float32))
  np.save(tmp_path / "b.npy", np.eye(1, 178, dtype=np.float32))
  err = run_error(capsys, "edit", "-b", tmp_path / "b.npy", "-o", tmp_path / "o", "-i", tmp_path / "codes.npy")
  assert "(2, 16)" in err and "[N, 178]" in err
  assert "drop --step" in run_error(capsys, "edit", "-w", REF, "--step", 3, "-b", tmp_path / "b.npy", "-o",
                                    tmp_path / "o")
  assert "--layers" in run_error(capsys, "rescore", "-s", "w", "--layers", "0", "-b", tmp_path / "b.npy",
                                 "--predictor", "brightness", "-o", tmp_path / "r")
  assert "--truncation-layers 11" in run_error(capsys, "edit", "--truncation-layers", 11, "-b", tmp_path / "b.npy",
                                               "-o", tmp_path / "o")
  (tmp_path / "sof").mkdir()
  (tmp_path / "sof" / "config.json").write_text(json.dumps({"trainer": "sof"}))
  err = run_error(capsys, "generate_data", "-w", tmp_path / "sof", "-o", tmp_path / "g")
  assert "trainer 'sof'" in err and "disco" in err and "stylegan2" in err


def test_a_disco_training_workdir_is_picked_by_its_trainer(tmp_path):
  """tests/fixtures/disco_tiny_old/run: a configs/disco.py:tiny training workdir (16², step 4, self-contained)."""
  run_dir = os.path.join(os.path.dirname(__file__), "..", "fixtures", "disco_tiny_old", "run")
  assert latent_generators.kind(run_dir) == "disco"
  run("generate_data", "-w", run_dir, "--step", 4, "-o", tmp_path / "d", "-n", 3, "-s", "z", "-I")
  z, wp = np.load(tmp_path / "d" / "z.npy"), np.load(tmp_path / "d" / "wp.npy")
  T = latent_generators.load(run_dir, step=4)
  assert isinstance(T, disco_latents.DiscoLatents) and T.step == 4 and T.resolution == 16
  assert z.shape == (3, T.z_dim) and wp.shape == (3, T.num_ws, T.w_dim)
  blocks, eps = T.blocks(z)
  np.testing.assert_allclose(T.synthesize(z, "z")["image"], np.asarray(T.gen.generate(blocks, eps, psi=1.0)),
                             atol=1e-5)
