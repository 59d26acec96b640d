"""The editor's model: slider state -> λ -> image with a trained DiscoFaceGAN, and photo uploads -> embeddings.

A request names an identity and slider values:
  {"identity": {"seed": 3} | {"upload": "u1a2b3c4d5e6"}, "values": {"yaw": 20, "smile_l": 0.5, "psi": 0.7, ...}}
Seed identities: λ = the seed's identity and texture, with pose, expression and light from the sliders; then
gen.ws(λ, ψ) -> gen.synthesize. Uploaded photos: the embedding's w+ edited by w+' = w+ + Φ(λ') − Φ(λ), where λ is
R-Net's estimate of the photo and λ' the same with the sliders' pose/expression/light (ψ does not apply: w+ came
from the optimizer, not the mapping). Upload ids are made here; a request can only name one of them, never a path.

Light: the 27 SH coefficients (3 colours × 9 bands, lighting.py) are driven by four sliders, in the synthetic
world's parameterisation (synthetic_factors._light): band 0 = ambient − 0.8 (the shader adds the 0.8 prior), bands
1-3 = intensity·(−d_y, d_z, −d_x) for a light from direction d = (sin az·cos el, sin el, cos az·cos el) in camera
space (x right, y up, z toward the camera). The sliders move the colour-mean of bands 0-3, so a photo's light
colour and higher bands survive relighting, and untouched sliders give back exactly the photo's coefficients.
"""

import base64
import collections
import io
import math
import re
import secrets
import threading
import time

import jax
import numpy as np

from jaxface.data import images
from jaxface.data.images import MAX_PHOTO_PIXELS as MAX_PIXELS  # decoded size limit of an upload
from jaxface.edit import embed
from jaxface.errors import DataError
from jaxface.render.lighting import AMBIENT
from jaxface.runs.disco_generator import _expression_names, to_uint8

BFM_EXP_SLIDERS = 10                     # BFM has 64 unnamed expression coefficients: slide the first k
UPLOAD_ID = re.compile(r"u[0-9a-f]{12}\Z")
# Pose sliders (degrees) a little past the synthetic world's training ranges (±45 yaw, ±20 pitch, ±10 roll).
POSE = (("yaw", 50.0), ("pitch", 25.0), ("roll", 20.0))
ANGLE_INDEX = {"pitch": 0, "yaw": 1, "roll": 2}  # λ angle order (x, y, z)


class RequestError(DataError):
  """A request the editor cannot serve; `status` is the HTTP status the server answers with."""

  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


# ------------------------------------------------------------------------------------------------- sliders

def _spec(key, label, group, lo, hi, default, limit, step=0.01):
  return dict(key=key, label=label, group=group, min=lo, max=hi, default=default, step=step, limit=limit)


def slider_specs(gen):
  """What the page draws: one dict per slider; `limit` is what the server accepts (the page may widen a
  slider's range to show a photo's own value, e.g. a strong expression R-Net found)."""
  specs = [_spec(k, f"{k} (°)", "pose", -m, m, 0.0, [-90.0, 90.0], 0.5) for k, m in POSE]
  names = expression_names(gen)
  for i, name in enumerate(names):
    lo, hi = (0.0, 1.0) if gen.config.experts.source == "synthetic" else (-3.0, 3.0)
    specs.append(_spec(name, name.replace("_", " "), "expression", lo, hi, 0.0, [-5.0, 5.0]))
  specs += [
      _spec("light_azimuth", "azimuth (°)", "light", -90.0, 90.0, 0.0, [-180.0, 180.0], 1.0),
      _spec("light_elevation", "elevation (°)", "light", -60.0, 80.0, 25.0, [-90.0, 90.0], 1.0),
      _spec("light_intensity", "intensity", "light", 0.0, 0.6, 0.15, [0.0, 3.0]),
      _spec("light_ambient", "ambient", "light", 0.3, 1.6, 0.95, [0.0, 3.0]),
      _spec("psi", "truncation ψ", "truncation", 0.0, 1.0, float(gen.config.truncation.psi), [-1.0, 2.0]),
  ]
  return specs


def expression_names(gen):
  """The synthetic model's named units, or "exp 1".."exp k" for the first k BFM coefficients."""
  names = _expression_names(gen)
  if names:
    return tuple(names)
  return tuple(f"exp_{i + 1}" for i in range(min(BFM_EXP_SLIDERS, gen.experts.layout.n_exp)))


def light_values(gamma):
  """Slider values {light_azimuth, light_elevation (°), light_intensity, light_ambient} of SH γ [27]."""
  g = np.asarray(gamma, np.float64).reshape(3, 9).mean(0)
  s = float(np.linalg.norm(g[1:4]))
  dx, dy, dz = (-g[3] / s, -g[1] / s, g[2] / s) if s > 1e-12 else (0.0, 0.0, 1.0)
  return {"light_azimuth": math.degrees(math.atan2(dx, dz)),
          "light_elevation": math.degrees(math.asin(min(1.0, max(-1.0, dy)))),
          "light_intensity": s, "light_ambient": float(g[0]) + AMBIENT}


def light_bands(values):
  """Bands 0-3 (one colour) of the sliders' light: [ambient − 0.8, s·(−d_y), s·d_z, s·(−d_x)]."""
  az, el = math.radians(values["light_azimuth"]), math.radians(values["light_elevation"])
  d = (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))
  s = values["light_intensity"]
  return np.array([values["light_ambient"] - AMBIENT, -s * d[1], s * d[2], -s * d[0]])


def relight(gamma, values):
  """γ [27] with the colour-mean of bands 0-3 moved to the sliders' light (colour tint, bands 4-8 kept)."""
  g = np.asarray(gamma, np.float64).reshape(3, 9).copy()
  g[:, :4] += light_bands(values) - g[:, :4].mean(0)
  return g.reshape(27).astype(np.float32)


# ------------------------------------------------------------------------------------------------- uploads

def decode_image(data, max_pixels=MAX_PIXELS):
  """Upload bytes -> (H, W, 3) uint8 (`jaxface.data.images.read_photo`), its errors as HTTP statuses: too many
  pixels -> 413, not an image of images.PHOTO_FORMATS -> 415, truncated or corrupt -> 400."""
  try:
    return images.read_photo(data, max_pixels)
  except images.ImageTooLargeError as e:
    raise RequestError(str(e), 413) from None
  except images.UnsupportedImageError as e:
    raise RequestError(str(e), 415) from None
  except DataError as e:
    raise RequestError(str(e), 400) from None


def png_bytes(image):
  """uint8 [H, W, 3] -> PNG bytes (fast compression: frames are small and latency matters)."""
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(np.asarray(image)).save(buf, "PNG", compress_level=1)
  return buf.getvalue()


def data_url(image):
  return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


Upload = collections.namedtuple("Upload", "ws noise blocks label")


# ------------------------------------------------------------------------------------------------- editor

class Editor:
  """Renders slider states and embeds uploads for one Generator. Thread-safe: the server calls it from one
  thread per request; uploads are kept in memory (the newest `max_uploads`) under ids made here."""

  def __init__(self, gen, embed_steps=100, max_uploads=16, max_pixels=MAX_PIXELS):
    self.gen, self.embed_steps, self.max_uploads, self.max_pixels = gen, int(embed_steps), max_uploads, max_pixels
    self.specs = {s["key"]: s for s in slider_specs(gen)}
    self.exp_names = expression_names(gen)
    self._uploads = collections.OrderedDict()
    self._seeds = collections.OrderedDict()  # seed -> λ blocks (decoding a seed costs a prior pass)
    self._lock = threading.Lock()
    self._embedding = threading.Lock()  # one embedding at a time: it takes the machine for seconds
    self._count = 0

  def info(self):
    return {"resolution": self.gen.resolution, "step": int(self.gen.step), "source": self.gen.config.experts.source,
            "sliders": list(self.specs.values()), "embed_steps": self.embed_steps, "max_uploads": self.max_uploads}

  def defaults(self):
    return {k: s["default"] for k, s in self.specs.items()}

  # ---------------------------------------------------------------------------------------- requests

  def parse(self, request):
    """Validated (identity, values) of a render request; RequestError (400/404) says what is wrong."""
    if not isinstance(request, dict):
      raise RequestError("the request must be a JSON object {\"identity\": ..., \"values\": {...}}")
    unknown = set(request) - {"identity", "values"}
    if unknown:
      raise RequestError(f"unknown request fields {sorted(unknown)}; valid: identity, values")
    identity = self._identity(request.get("identity", {"seed": 0}))
    raw = request.get("values", {})
    if not isinstance(raw, dict):
      raise RequestError("'values' must be an object of slider name -> number")
    values = self.defaults()
    for key, v in raw.items():
      spec = self.specs.get(key)
      if spec is None:
        raise RequestError(f"unknown slider {str(key)[:40]!r}; valid: {', '.join(self.specs)}")
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RequestError(f"slider {key!r} must be a finite number, got {str(v)[:40]!r}")
      lo, hi = spec["limit"]
      if not lo <= v <= hi:
        raise RequestError(f"slider {key!r} = {v} is outside [{lo}, {hi}]")
      values[key] = float(v)
    return identity, values

  def _identity(self, ident):
    if not isinstance(ident, dict) or len(ident) != 1 or not set(ident) <= {"seed", "upload"}:
      raise RequestError("'identity' must be {\"seed\": integer} or {\"upload\": id returned by /api/upload}")
    if "seed" in ident:
      seed = ident["seed"]
      if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31:
        raise RequestError(f"identity seed must be an integer in [0, 2^31), got {str(seed)[:40]!r}")
      return ("seed", seed)
    uid = ident["upload"]
    if not isinstance(uid, str) or not UPLOAD_ID.match(uid):
      raise RequestError(f"{str(uid)[:60]!r} is not an upload id: uploads are named by the server "
                         "(u + 12 hex digits, as /api/upload returned)")
    return ("upload", uid)

  def _upload(self, uid):
    with self._lock:
      up = self._uploads.get(uid)
    if up is None:
      raise RequestError(f"no uploaded photo {uid}: the server keeps the newest {self.max_uploads} in memory "
                         "and forgets them on restart; upload the photo again", 404)
    return up

  # ---------------------------------------------------------------------------------------- rendering

  def edit_blocks(self, base, values, neutral):
    """λ blocks [1, ...] = base with pose, expression and light from the sliders. neutral: unslid BFM
    expression coefficients are zeroed (a seed's face) instead of kept (a photo's own)."""
    b = {k: np.array(v, np.float32) for k, v in base.items()}
    for key, idx in ANGLE_INDEX.items():
      b["angle"][:, idx] = math.radians(values[key])
    if neutral:
      b["exp"][:] = 0.0
    for i, name in enumerate(self.exp_names):
      b["exp"][:, i] = values[name]
    b["gamma"][0] = relight(b["gamma"][0], values)
    return b

  def seed_blocks(self, seed):
    with self._lock:
      if seed in self._seeds:
        self._seeds.move_to_end(seed)
        return self._seeds[seed]
    blocks = self.gen.lambdas(1, seed, identity=seed)
    blocks["gamma"][:] = 0.0  # the sliders set the light whole (white, no higher bands)
    with self._lock:
      self._seeds[seed] = blocks
      while len(self._seeds) > 64:
        self._seeds.popitem(last=False)
    return blocks

  def frame(self, request):
    """(uint8 [R, R, 3], milliseconds spent rendering) of a render request (dict)."""
    (kind, ident), values = self.parse(request)
    t0 = time.perf_counter()
    gen = self.gen
    if kind == "seed":
      blocks = self.edit_blocks(self.seed_blocks(ident), values, neutral=True)
      img = gen.synthesize(gen.ws(blocks, noise=ident, psi=values["psi"]))
    else:
      up = self._upload(ident)
      blocks = self.edit_blocks(up.blocks, values, neutral=False)
      img = gen.synthesize(embed.edit_ws(gen, up.ws, up.blocks, blocks), up.noise)
    out = to_uint8(img)[0]  # to host: the frame is done
    return out, (time.perf_counter() - t0) * 1e3

  # ---------------------------------------------------------------------------------------- uploads

  def upload(self, data):
    """Photo bytes -> embedding kept under a new id. Returns {id, label, values (the photo's own slider values),
    recon, target (PNG data URLs), embed_ms}. RequestError 413/415/400, embed.NoFaceError (422) for no face."""
    image = decode_image(data, self.max_pixels)
    if not self._embedding.acquire(blocking=False):
      raise RequestError("another photo is being embedded; try again when it is done", 503)
    try:
      t0 = time.perf_counter()
      emb = embed.embed_photos(self.gen, [image], steps=self.embed_steps)
      ms = (time.perf_counter() - t0) * 1e3
    finally:
      self._embedding.release()
    blocks = {k: np.asarray(v[:1], np.float32) for k, v in emb.blocks.items()}
    noise = None if emb.noise is None else jax.tree.map(lambda a: a[:1], emb.noise)
    values = self.photo_values(blocks)
    with self._lock:
      self._count += 1
      uid = "u" + secrets.token_hex(6)
      self._uploads[uid] = Upload(np.asarray(emb.ws[:1]), noise, blocks, f"photo {self._count}")
      while len(self._uploads) > self.max_uploads:
        self._uploads.popitem(last=False)
    return {"id": uid, "label": f"photo {self._count}", "values": values, "recon": data_url(emb.recon[0]),
            "target": data_url(emb.target[0]), "embed_ms": ms, "steps": self.embed_steps}

  def photo_values(self, blocks):
    """Slider values that reproduce a photo's λ blocks (its own pose, expression and light; ψ unused)."""
    values = self.defaults()
    for key, idx in ANGLE_INDEX.items():
      values[key] = math.degrees(float(blocks["angle"][0, idx]))
    for i, name in enumerate(self.exp_names):
      values[name] = float(blocks["exp"][0, i])
    values.update(light_values(blocks["gamma"][0]))
    for key, v in values.items():  # keep every value a request may send back
      lo, hi = self.specs[key]["limit"]
      values[key] = min(hi, max(lo, v))
    return values

  def warm(self):
    """Compiles every per-frame program once (seed path and upload path) so the first slider move is fast."""
    img, _ = self.frame({"identity": {"seed": 0}})
    blocks = self.edit_blocks(self.seed_blocks(0), self.defaults(), neutral=True)
    ws = embed.edit_ws(self.gen, self.gen.ws(blocks, noise=0, psi=1.0), blocks, blocks)
    jax.block_until_ready(self.gen.synthesize(ws, self.gen.noise_maps(1)))
    return img
