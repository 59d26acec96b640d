"""Real-photo embedding (jaxface.edit.embed, python -m jaxface.embed) on the session's tiny DiscoFaceGAN."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxface.errors import DataError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPTS = dict(align=False, steps=40, batch_size=2)  # one config and batch size: one compiled program for the module


@pytest.fixture(scope="module")
def gen(tiny_disco):
  from jaxface.runs.disco_generator import Generator
  os.environ["JAXFACE_CACHE"] = tiny_disco["env"]["JAXFACE_CACHE"]
  return Generator.load(str(tiny_disco["workdir"]))


def _world_photos(gen, n, start=2_005_000_000):
  from jaxface.eval.disco_references import world_images, world_sample
  from jaxface.runs.disco_generator import to_uint8
  return to_uint8(world_images(gen.config, [world_sample(gen.config, start + i) for i in range(n)])[0])


def _psnr(a, b):
  return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_embedding_reconstructs_the_photo_better_than_its_start(gen):
  from jaxface.edit import embed
  from jaxface.runs.disco_generator import to_uint8
  photos = _world_photos(gen, 3)
  emb = embed.embed_photos(gen, list(photos), **OPTS)  # 2 chunks, the last one padded
  assert emb.ws.shape == (3, gen.num_ws, gen.G.w_dim) and emb.recon.shape == photos.shape
  start = to_uint8(gen.synthesize(gen.ws(emb.blocks, noise=0)))
  for i in range(3):
    assert _psnr(photos[i], emb.recon[i]) > _psnr(photos[i], start[i]) + 2.0, i
  # Photos are independent: a photo embedded beside another one gets the same latent.
  other = embed.embed_photos(gen, [photos[2], photos[0]], **OPTS)
  np.testing.assert_allclose(other.ws[0], emb.ws[2], atol=2e-3)


def test_anchor_keeps_w_plus_near_its_start(gen):
  """w_anchor pulls w+ toward Φ(λ): a strong anchor ends closer to the start than none."""
  from jaxface.edit import embed
  photos = _world_photos(gen, 2)
  free = embed.embed_photos(gen, list(photos), **dict(OPTS, w_anchor=0.0))
  held = embed.embed_photos(gen, list(photos), **dict(OPTS, w_anchor=100.0))
  start = np.asarray(gen.ws(free.blocks, noise=0))
  dist = lambda e: np.mean((e.ws - start) ** 2, (1, 2))  # noqa: E731
  assert np.all(dist(held) < 0.5 * dist(free)), (dist(held), dist(free))
  assert np.all(held.losses["anchor"] >= 0)
  # anchor_layers=1: only the coarsest layer is held; the others move as freely as without an anchor.
  first = embed.embed_photos(gen, list(photos), **dict(OPTS, w_anchor=100.0, anchor_layers=1))
  layer_dist = lambda e, sl: np.mean((e.ws - start)[:, sl] ** 2, (1, 2))  # noqa: E731
  assert np.all(layer_dist(first, slice(0, 1)) < 0.5 * layer_dist(free, slice(0, 1)))
  assert np.all(layer_dist(first, slice(1, None)) > 0.5 * layer_dist(free, slice(1, None)))


def test_eval_embed_settings_parse_and_refuse_clearly():
  from jaxface.edit.embed import EmbedConfig
  from jaxface.errors import UserError
  from jaxface.eval.embed import embed_config
  cfg = embed_config(EmbedConfig, ["w_anchor=2.5", "noise=false", "steps=7"])
  assert (cfg.w_anchor, cfg.noise, cfg.steps) == (2.5, False, 7)
  for bad in (["w_anchr=1"], ["w_anchor"], ["steps=many"]):
    with pytest.raises(UserError, match="--embed-option"):
      embed_config(EmbedConfig, bad)


def test_edit_is_the_mapping_offset_between_new_and_old_coefficients(gen):
  from jaxface.edit import embed
  rng = np.random.default_rng(0)
  ws = rng.normal(size=(2, gen.num_ws, gen.G.w_dim)).astype(np.float32)
  old = gen.lambdas(2, seed=4)
  np.testing.assert_allclose(np.asarray(embed.edit_ws(gen, ws, old, old)), ws, atol=1e-5)
  new = {k: v.copy() for k, v in old.items()}
  new["angle"][:, 1] += np.deg2rad(20.0)
  lam = lambda b: jnp.concatenate([jnp.asarray(b[k]) for k in ("id", "tex", "exp", "angle", "gamma")], -1)
  eps = jax.random.normal(jax.random.key(10_007), (1, gen.noise_dim)).repeat(2, 0)  # the seed-0 ε of gen.ws
  from jaxface.runs import disco_experts as dx
  phi = lambda b: gen.G.apply({"params": gen.params}, dx.generator_input(gen.frozen, lam(b), eps), method="map")
  want = ws + np.asarray(phi(new) - phi(old))[:, None]
  np.testing.assert_allclose(np.asarray(embed.edit_ws(gen, ws, old, new)), want, atol=1e-4)


def test_save_load_roundtrip_and_mismatch(gen, tmp_path):
  from jaxface.edit import embed
  emb = embed.embed_photos(gen, list(_world_photos(gen, 1)), **OPTS)
  embed.save(tmp_path / "e.npz", emb)
  back = embed.load(tmp_path / "e.npz", gen)
  np.testing.assert_array_equal(np.asarray(gen.synthesize(back.ws, back.noise)),
                                np.asarray(gen.synthesize(emb.ws, emb.noise)))
  np.savez(tmp_path / "bad.npz", ws=np.zeros((1, gen.num_ws + 1, gen.G.w_dim)))
  with pytest.raises(DataError, match="embed the photo again"):
    embed.load(tmp_path / "bad.npz", gen)


def test_read_photo_rejects_bad_files_clearly(tmp_path):
  from jaxface.data import images as embed_images
  from jaxface.edit import embed
  (tmp_path / "note.txt").write_text("not an image")
  with pytest.raises(embed_images.UnsupportedImageError, match="not a PNG, JPEG, WEBP or BMP image"):
    embed.read_photo(str(tmp_path / "note.txt"))
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
  data = (tmp_path / "ok.png").read_bytes()
  with pytest.raises(DataError, match="truncated or corrupt"):
    embed.read_photo(data[: len(data) // 2])
  with pytest.raises(embed_images.ImageTooLargeError, match="downscale"):
    embed.read_photo(data, max_pixels=100)
  assert embed.read_photo(data).shape == (64, 64, 3)


def _cli(args, tiny_disco):
  return subprocess.run([sys.executable, "-m", "jaxface.embed", "--workdir", str(tiny_disco["workdir"]), *args],
                        cwd=ROOT, env=tiny_disco["env"], capture_output=True, text=True, timeout=600)


def test_cli_embeds_a_real_photo_and_reuses_its_latent(tiny_disco, tmp_path):
  from skimage import data
  Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")  # a real photo: detection + alignment
  out = tmp_path / "out" / "astro.png"
  proc = _cli(["--image", str(tmp_path / "astronaut.png"), "--out", str(out), "--steps", "5",
               "--set", "d_yaw=20", "--set", "smile_l=1,pitch=5"], tiny_disco)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "reconstruction PSNR" in proc.stdout
  r = 16
  w, h = Image.open(out).size
  assert w > 4 * r and h > r  # photo, reconstruction, two edits, and the label bands
  for name in ("astro.npz", "astro_0_recon.png", "astro_0_edit0.png", "astro_0_edit1.png"):
    assert (tmp_path / "out" / name).is_file(), name
  again = tmp_path / "again.png"
  proc = _cli(["--latent", str(tmp_path / "out" / "astro.npz"), "--out", str(again), "--set", "d_yaw=20",
               "--set", "smile_l=1,pitch=5"], tiny_disco)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # The same cells; only the row label (the photo's file name vs the latent's) may widen the label band on the left.
  first, second = np.asarray(Image.open(out)), np.asarray(Image.open(again))
  assert first.shape[0] == second.shape[0]
  np.testing.assert_array_equal(second[:, -4 * r:], first[:, -4 * r:])


def test_cli_bad_input_is_a_clear_error(tiny_disco, tmp_path):
  Image.fromarray(np.full((160, 160, 3), 128, np.uint8)).save(tmp_path / "blank.png")
  proc = _cli(["--image", str(tmp_path / "blank.png"), "--out", str(tmp_path / "o.png"), "--steps", "2"], tiny_disco)
  assert proc.returncode == 2 and "no face found" in proc.stderr and "Traceback" not in proc.stderr
  proc = _cli(["--image", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o.png")], tiny_disco)
  assert proc.returncode == 2 and "no such image file" in proc.stderr
  proc = _cli(["--image", str(tmp_path / "blank.png"), "--out", str(tmp_path / "o.png"), "--set", "yaww=3"],
              tiny_disco)
  assert proc.returncode == 2 and "unknown factor 'yaww'" in proc.stderr
  proc = _cli(["--image", str(tmp_path / "blank.png"), "--out", str(tmp_path / "o.png"), "--anchor", "-1"],
              tiny_disco)
  assert proc.returncode == 2 and "--anchor -1" in proc.stderr and "Traceback" not in proc.stderr
