"""Factor distributions of the synthetic face world: pure numpy functions of (index, config).

`sample_factors(index, cfg)` is deterministic in (cfg.seed, index) alone: every random draw comes from
`np.random.default_rng([seed, stream, index])`, so a sample is the same in any process, at any resolution.
Identities are a finite pool (cfg.num_identities): identity k's shape, albedo, hair, eyes, glasses and skin
details come from `identity_factors(k, cfg)`; a sample picks an identity and draws expression, pose,
light, translation and background. Distributions are deliberately not Gaussian (clustered skin tones and
face shapes, a bimodal gender-like direction, sparse non-negative expressions, heavy-tailed light) so a
learned prior has something to learn.
"""

import dataclasses

import numpy as np

from jaxface.errors import ConfigError
from jaxface.render import mp468_bases

N_ID, N_EXP, N_TEX = 48, 20, 48
N_FRECKLES, N_MOLES = 24, 3
HAIR_STYLES = ("buzz", "short", "medium", "long", "bun", "bangs")
HAIR_COLOURS = ("black", "dark_brown", "brown", "blonde", "red", "grey")
HAIR_RGB = np.array([[0.035, 0.03, 0.028], [0.11, 0.065, 0.04], [0.25, 0.15, 0.08], [0.62, 0.48, 0.27],
                     [0.45, 0.16, 0.06], [0.55, 0.54, 0.52]], np.float32)
IRIS_RGB = np.array([[0.25, 0.13, 0.05], [0.12, 0.06, 0.03], [0.25, 0.42, 0.62], [0.28, 0.42, 0.25],
                     [0.42, 0.36, 0.18], [0.45, 0.48, 0.5]], np.float32)
BACKGROUNDS = ("linear", "radial", "stripes", "blobs")
GLASSES = ("none", "clear", "sunglasses")
# Skin-tone clusters: (lightness, redness, yellowness) albedo coefficients and how often each occurs.
SKIN_CLUSTERS = np.array([[1.6, 0.2, -0.3], [0.9, 0.5, 0.4], [0.0, 0.6, 1.0], [-1.3, 0.8, 0.6],
                          [-2.6, 0.9, 0.2], [-3.6, 0.8, -0.2]], np.float32)
SKIN_WEIGHTS = np.array([0.22, 0.22, 0.18, 0.15, 0.13, 0.10])


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """What defines the world (changing any field changes every sample)."""
  seed: int = 0                 # world seed: all randomness derives from (seed, stream, index)
  num_identities: int = 10_000  # size of the identity pool
  max_yaw: float = 45.0         # degrees
  max_pitch: float = 20.0
  max_roll: float = 10.0
  glasses_prob: float = 0.2     # fraction of identities wearing glasses
  level: int = 1                # mp468 subdivision level used for rendering
  focal: float = 800.0          # focal length in pixels at 256² (camera at 10 dm, BFM convention)

  def validate(self):
    if self.num_identities < 1:
      raise ConfigError(f"synthetic.num_identities must be >= 1, got {self.num_identities}")
    if not 0 <= self.glasses_prob <= 1:
      raise ConfigError(f"synthetic.glasses_prob must be in [0, 1], got {self.glasses_prob}")
    if self.level not in (0, 1, 2):
      raise ConfigError(f"synthetic.level must be 0, 1 or 2, got {self.level}")
    if self.focal <= 0 or min(self.max_yaw, self.max_pitch, self.max_roll) < 0:
      raise ConfigError("synthetic.focal must be > 0 and the pose ranges >= 0")
    return self


def as_world_config(cfg=None):
  """Accepts None, a WorldConfig, a dict or an ml_collections/attribute config with some of the fields."""
  if cfg is None:
    return WorldConfig()
  if isinstance(cfg, WorldConfig):
    return cfg.validate()
  names = {f.name for f in dataclasses.fields(WorldConfig)}
  items = dict(cfg.items()) if hasattr(cfg, "items") else dict(vars(cfg))
  return WorldConfig(**{k: v for k, v in items.items() if k in names}).validate()


def _rng(cfg, stream, index):
  return np.random.default_rng([int(cfg.seed), stream, int(index)])


def _directions():
  """Fixed gender-like / age-like directions in (id, tex) space (built from named components)."""
  gid = np.zeros(N_ID, np.float32)
  gtex = np.zeros(N_TEX, np.float32)
  name = {n: i for i, n in enumerate(mp468_bases.IDENTITY_NAMED)}
  for k, w in (("face_width", 0.5), ("jaw_width", 0.9), ("brow_ridge", 1.0), ("chin_length", 0.5),
               ("nose_width", 0.5), ("face_height", 0.4), ("lip_protrusion", -0.3), ("eye_size", -0.5),
               ("jaw_angle", 0.6), ("forehead_slope", 0.4)):
    gid[name[k]] = w
  gtex[[0, 3, 10, 6]] = [-0.3, -0.6, 1.5, 0.6]  # darker, less red lips, beard shadow, darker brows
  aid = np.zeros(N_ID, np.float32)
  atex = np.zeros(N_TEX, np.float32)
  for k, w in (("cheek_fullness", -0.6), ("eye_depth", 0.6), ("chin_protrusion", -0.3), ("nose_length", 0.5)):
    aid[name[k]] = w
  atex[[11, 2, 0]] = [1.2, -0.4, -0.2]  # under-eye darkness, less yellow, slightly darker
  return gid, gtex, aid, atex


GENDER_ID, GENDER_TEX, AGE_ID, AGE_TEX = _directions()


def identity_factors(identity, cfg=None):
  """Everything fixed per identity (numpy, fixed shapes)."""
  cfg = as_world_config(cfg)
  if not 0 <= identity < cfg.num_identities:
    raise ConfigError(f"identity {identity} is outside the pool [0, {cfg.num_identities})")
  r = _rng(cfg, 1, identity)
  gender = float(np.sign(r.uniform(-1, 1)) * r.gamma(8.0, 1 / 8.0))  # bimodal around ±1
  age = float(r.beta(2.0, 2.5))  # 0 young .. 1 old
  cluster = int(r.choice(len(SKIN_CLUSTERS), p=SKIN_WEIGHTS))
  shape_cluster = np.random.default_rng([int(cfg.seed), 9, cluster]).normal(0, 0.6, N_ID)
  idc = (r.normal(0, 0.8, N_ID) + 0.5 * shape_cluster + gender * GENDER_ID + (age - 0.45) * 2 * AGE_ID)
  tex = r.normal(0, 0.6, N_TEX) + gender * GENDER_TEX * (gender > 0) + (age - 0.45) * 2 * AGE_TEX
  tex[:3] = SKIN_CLUSTERS[cluster] + r.normal(0, 0.35, 3)
  dark_skin = cluster >= 3
  # Hair: style depends on the gender-like sign, colour on skin cluster and age.
  style_p = [0.15, 0.35, 0.2, 0.05, 0.05, 0.2] if gender > 0 else [0.02, 0.1, 0.25, 0.38, 0.13, 0.12]
  style = int(r.choice(len(HAIR_STYLES), p=style_p))
  colour_p = np.array([0.45, 0.3, 0.12, 0.05, 0.03, 0.05]) if dark_skin else np.array(
      [0.12, 0.25, 0.25, 0.2, 0.08, 0.1])
  colour_p[5] += 2.0 * max(age - 0.55, 0)
  colour = int(r.choice(len(HAIR_COLOURS), p=colour_p / colour_p.sum()))
  hair_rgb = HAIR_RGB[colour] * np.exp(r.normal(0, 0.12, 3))
  iris_p = np.array([0.5, 0.35, 0.03, 0.03, 0.06, 0.03]) if dark_skin else np.array(
      [0.2, 0.15, 0.25, 0.15, 0.15, 0.1])
  iris = IRIS_RGB[r.choice(len(IRIS_RGB), p=iris_p)] * np.exp(r.normal(0, 0.1, 3))
  glasses = int(r.choice(3, p=[1 - cfg.glasses_prob, 0.7 * cfg.glasses_prob, 0.3 * cfg.glasses_prob]))
  n_freckles = int(r.binomial(N_FRECKLES, 0.9)) if r.uniform() < (0.12 if dark_skin else 0.3) else 0
  freckles = np.zeros((N_FRECKLES, 4), np.float32)  # canonical (x, y) in dm, radius, darkness
  freckles[:, 0] = r.normal(0, 0.28, N_FRECKLES)
  freckles[:, 1] = r.normal(-0.05, 0.15, N_FRECKLES)
  freckles[:, 2] = r.uniform(0.006, 0.014, N_FRECKLES)
  freckles[:n_freckles, 3] = r.uniform(0.15, 0.4, n_freckles)
  moles = np.zeros((N_MOLES, 4), np.float32)
  n_moles = int(r.choice(4, p=[0.5, 0.3, 0.15, 0.05]))
  moles[:, 0] = r.uniform(-0.6, 0.6, N_MOLES)
  moles[:, 1] = r.uniform(-0.8, 0.5, N_MOLES)
  moles[:, 2] = r.uniform(0.01, 0.02, N_MOLES)
  moles[:n_moles, 3] = r.uniform(0.5, 0.8, n_moles)
  return {
      "identity": np.int32(identity), "id": idc.astype(np.float32), "tex": tex.astype(np.float32),
      "hair_style": np.int32(style), "hair_colour": np.int32(colour), "hair_rgb": hair_rgb.astype(np.float32),
      "hair_volume": np.float32(r.uniform(0.03, 0.09)), "hairline": np.float32(r.normal(0, 0.04)),
      "iris_rgb": iris.astype(np.float32), "glasses": np.int32(glasses),
      "glasses_shape": np.float32(r.uniform(0, 1)), "glasses_size": np.float32(r.uniform(0.9, 1.15)),
      "glasses_rgb": (r.uniform(0.02, 0.5) * np.exp(r.normal(0, 0.3, 3))).astype(np.float32),
      "freckles": freckles, "moles": moles, "specular": np.float32(r.uniform(0.05, 0.3)),
      "gender": np.float32(gender), "age": np.float32(age), "skin_cluster": np.int32(cluster),
  }


def _expression(r):
  e = np.zeros(N_EXP, np.float32)
  names = {n: i for i, n in enumerate(mp468_bases.EXPRESSIONS)}
  amp = lambda: r.beta(2.0, 2.0)
  if r.uniform() < 0.35:  # smiles, mostly symmetric
    a = amp()
    e[names["smile_l"]], e[names["smile_r"]] = a * r.uniform(0.7, 1.0), a * r.uniform(0.7, 1.0)
  elif r.uniform() < 0.08:
    e[names["smile_l" if r.uniform() < 0.5 else "smile_r"]] = amp()
  if r.uniform() < 0.25:
    e[names["jaw_open"]] = amp()
  if r.uniform() < 0.08:
    e[names["eye_close_l"]] = e[names["eye_close_r"]] = r.uniform(0.7, 1.0)  # blink
  elif r.uniform() < 0.05:
    e[names["eye_close_l" if r.uniform() < 0.5 else "eye_close_r"]] = r.uniform(0.6, 1.0)  # wink
  for k, p in (("frown_l", 0.05), ("frown_r", 0.05), ("brow_raise_l", 0.12), ("brow_raise_r", 0.12),
               ("brow_frown", 0.1), ("squint", 0.1), ("pucker", 0.08), ("cheek_puff", 0.05),
               ("mouth_stretch", 0.08), ("upper_lip_raise", 0.06), ("lower_lip_down", 0.06), ("sneer", 0.05),
               ("jaw_forward", 0.05)):
    if r.uniform() < p:
      e[names[k]] = amp()
  if r.uniform() < 0.1:
    e[names["mouth_left" if r.uniform() < 0.5 else "mouth_right"]] = amp()
  if e[names["brow_raise_l"]] > 0 and r.uniform() < 0.7:
    e[names["brow_raise_r"]] = e[names["brow_raise_l"]]
  return e


def _light(r):
  """27 SH coefficients (3 colours × 9, DiscoFaceGAN layout: the +0.8 ambient is added by the shader)."""
  colour = np.exp(r.normal(0, 0.08, 3)) * np.array([1.0, 0.97, 0.93]) ** r.normal(0, 2)
  level = np.exp(r.normal(-0.05, 0.2)) - 0.8 + r.standard_t(4) * 0.03
  direction = r.normal(0, 1, 3) + [0, 0.6, 1.2]
  direction /= np.linalg.norm(direction)
  strength = min(abs(r.standard_t(3)) * 0.12 + 0.05, 0.55)
  g = np.zeros((3, 9))
  g[:, 0] = level
  # Band 1 in the shader's convention: Y1 = (-y, z, -x) · a1c1, so a light from `direction` uses (-dy, dz, -dx).
  g[:, 1:4] = strength * np.array([-direction[1], direction[2], -direction[0]])
  g[:, 4:] = r.normal(0, 0.04, 5) * (1 + strength)
  return (g * colour[:, None]).reshape(27).astype(np.float32)


def _background(r):
  kind = int(r.choice(len(BACKGROUNDS), p=[0.35, 0.25, 0.2, 0.2]))
  hsv = np.stack([r.uniform(0, 1, 2), r.beta(1.2, 2.0, 2), r.beta(2.0, 1.5, 2)], -1)
  rgb = np.stack([_hsv_to_rgb(*c) for c in hsv]).astype(np.float32)
  params = np.array([r.uniform(0, 2 * np.pi), r.uniform(2, 10), r.uniform(0, 2 * np.pi), r.uniform(-0.5, 0.5)],
                    np.float32)
  return np.int32(kind), rgb, params


def _hsv_to_rgb(h, s, v):
  k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
  return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_factors(index, cfg=None):
  """All factors of sample `index` (dict of numpy arrays with fixed shapes and dtypes)."""
  cfg = as_world_config(cfg)
  index = int(index)
  if index < 0:
    raise ConfigError(f"sample index must be >= 0, got {index}")
  r = _rng(cfg, 0, index)
  identity = int(r.integers(cfg.num_identities))
  out = identity_factors(identity, cfg)
  out["index"] = np.int64(index)
  out["exp"] = _expression(r)
  yaw = r.uniform(-1, 1) * cfg.max_yaw if r.uniform() < 0.5 else r.normal(0, cfg.max_yaw / 3)
  angles = np.deg2rad([np.clip(r.normal(0, cfg.max_pitch / 2.5), -cfg.max_pitch, cfg.max_pitch),
                       np.clip(yaw, -cfg.max_yaw, cfg.max_yaw),
                       np.clip(r.normal(0, cfg.max_roll / 2.5), -cfg.max_roll, cfg.max_roll)])
  out["angle"] = angles.astype(np.float32)  # (pitch x, yaw y, roll z), radians, R = Rz·Ry·Rx
  out["trans"] = np.array([r.normal(0, 0.04), r.normal(0, 0.04), np.clip(r.normal(0, 0.25), -0.6, 0.6)],
                          np.float32)
  out["gamma"] = _light(r)
  out["gaze"] = np.clip(r.normal(0, 0.25, 2), -0.5, 0.5).astype(np.float32)
  out["bg_kind"], out["bg_rgb"], out["bg_params"] = _background(r)
  return out


def coefficient_attributes(exp, tex, gamma, angle):
  """The attributes the world defines as functions of a face's coefficients (numpy, any leading batch axes):
  smile (mean of the two smile units), skin_tone (the albedo's lightness coefficient tex[0]; the skin cluster sets
  it), light_x (the key light's horizontal component: -mean over colours of the band-1 x coefficient, see
  _light's convention), yaw, pitch and roll (the in-plane tilt) in degrees. `attributes` reads the labels with it,
  and an R-Net's read-back of an image's coefficients gives the same attributes of that image
  (runs/coefficient_attributes.py)."""
  exp, tex, gamma, angle = (np.asarray(a, np.float64) for a in (exp, tex, gamma, angle))
  unit = {n: i for i, n in enumerate(mp468_bases.EXPRESSIONS)}
  bands = gamma.reshape(gamma.shape[:-1] + (3, 9))
  return {"smile": 0.5 * (exp[..., unit["smile_l"]] + exp[..., unit["smile_r"]]), "skin_tone": tex[..., 0],
          "light_x": -bands[..., 3].mean(-1), "yaw": np.rad2deg(angle[..., 1]), "pitch": np.rad2deg(angle[..., 0]),
          "roll": np.rad2deg(angle[..., 2])}


def gender_age_readout(num_identities=4096, cfg=None):
  """The least-squares linear map from a face's (id, tex) coefficients to the world's gender-like and age-like
  factors, fitted on the first `num_identities` identities: [N_ID + N_TEX + 1, 2] (last row the bias). Both
  factors enter the coefficients linearly plus per-identity noise (identity_factors), so this is their best
  linear read-out; on held-out identities it explains ~0.89 of gender's variance and ~0.48 of age's."""
  factors = [identity_factors(i, cfg) for i in range(num_identities)]
  x = np.stack([np.concatenate([f["id"], f["tex"], [1.0]]) for f in factors]).astype(np.float64)
  y = np.array([[f["gender"], f["age"]] for f in factors], np.float64)
  return np.linalg.lstsq(x, y, rcond=None)[0]


def attributes(f):
  """Attribute labels of one sample (plain floats/ints)."""
  c = coefficient_attributes(f["exp"], f["tex"], f["gamma"], f["angle"])
  return {"glasses": int(f["glasses"] > 0), "smile": float(c["smile"]),
          "hair_colour": int(f["hair_colour"]), "gender": float(f["gender"]), "age": float(f["age"]),
          "skin_tone": float(c["skin_tone"]), "light_x": float(c["light_x"])}


def stack(factor_list):
  """List of factor dicts -> dict of batched arrays."""
  return {k: np.stack([f[k] for f in factor_list]) for k in factor_list[0]}
