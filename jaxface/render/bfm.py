"""Basel Face Model loaders: Deep3DFaceRecon's BFM_model_front.mat, and the BFM09 conversion.

BFM 2009 cannot be redistributed: users register at https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=
downloads (Basel Face Model 2009, file 01_MorphableModel.mat) and get the expression basis Exp_Pca.bin as
Deep3DFaceRecon's README describes (from Guo et al.'s CoarseData, "Exp_Pca.bin"), plus std_exp.txt,
BFM_front_idx.mat, BFM_exp_idx.mat and facemodel_info.mat from the Deep3DFaceRecon / DiscoFaceGAN
repositories' BFM folders. The path goes in the config key `face_model.path`.

Conversion (as Deep3DFaceRecon's / DiscoFaceGAN's transferBFM09):
  idBase = shapePC·shapeEV/1e5 [:, :n_id], exBase = expPC·expEV/1e5 [:, :n_exp], texBase = texPC·texEV
  [:, :n_tex], meanshape = shapeMU/1e5, meantex = texMU, then crop vertices: exp-model index
  BFM_front_idx.idx (35,709, 1-based into 53,215) and shape-model index trimIndex[idx] (1-based into 53,490).
Exp_Pca.bin layout: int32 n_pc, then float32 expMU [3·N], then float32 expPC [n_pc, 3·N] row-major
(N = 53,215 vertices, xyz interleaved), transposed to [3·N, n_pc]; std_exp.txt holds n_pc numbers.
"""

import os

import numpy as np

from jaxface.errors import AssetError, DataError
from jaxface.render.face_model import make_face_model

_WHERE = ("Get the Basel Face Model 2009 (01_MorphableModel.mat) from "
          "https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads after registering, and Exp_Pca.bin "
          "as Deep3DFaceRecon's README explains (Guo et al. CoarseData); std_exp.txt, BFM_front_idx.mat, "
          "BFM_exp_idx.mat and facemodel_info.mat come from the Deep3DFaceRecon/DiscoFaceGAN BFM folders "
          "(their transferBFM09 step also writes BFM_model_front.mat). Point the config key "
          "`face_model.path` at the file or folder.")


def _loadmat(path):
  import scipy.io
  try:
    return scipy.io.loadmat(path)
  except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files
    raise DataError(f"{path} is a MATLAB v7.3 file that scipy cannot read ({e}); re-save it with "
                    "`save(..., '-v7')` in MATLAB/Octave.") from e
  except Exception as e:
    raise DataError(f"cannot read {path} as a .mat file ({e}); re-download it.") from e


def _need(path, what):
  if path is None:
    raise AssetError(f"no path given for {what}. {_WHERE}")
  if not os.path.exists(path):
    raise AssetError(f"{what} not found at {path!r}. {_WHERE}")
  return path


def _key(mat, key, path):
  if key not in mat:
    have = sorted(k for k in mat if not k.startswith("__"))
    raise DataError(f"{path} has no variable {key!r} (it has {have}); this is not the expected BFM file.")
  return mat[key]


def _index(a, n, what):
  """1-based MATLAB index array -> 0-based int64, range-checked against n."""
  a = np.asarray(a).astype(np.int64).reshape(-1) - 1
  if a.size and (a.min() < 0 or a.max() >= n):
    raise DataError(f"{what}: indices out of range [1, {n}] — the BFM files do not belong together.")
  return a


def _tri(a, n_vertices, what):
  a = np.asarray(a).astype(np.int64)
  if a.ndim != 2 or a.shape[1] != 3:
    raise DataError(f"{what}: expected an [F,3] triangle array, got shape {a.shape}.")
  return _index(a, n_vertices, what).reshape(-1, 3)


def _masks_from_info(info, v, path):
  face_mask = np.zeros((v,), np.float32)
  if "frontmask2_idx" in info:
    face_mask[_index(info["frontmask2_idx"], v, f"{path}:frontmask2_idx")] = 1.0
  else:
    face_mask[:] = 1.0
  skin = np.asarray(info["skinmask"], np.float32).reshape(-1) if "skinmask" in info else np.ones(v, np.float32)
  if skin.size != v:
    raise DataError(f"{path}: skinmask has {skin.size} entries for {v} vertices.")
  return face_mask, skin


def _render_tri(info, tri, v, path):
  """DiscoFaceGAN's render sub-mesh (gan_mask vertices + gan_tl triangles) mapped to full indices."""
  if "gan_mask" in info and "gan_tl" in info:
    sub = _index(info["gan_mask"], v, f"{path}:gan_mask")
    return sub[_tri(info["gan_tl"], sub.size, f"{path}:gan_tl")]
  return tri


def load_bfm_front(path=None, **_):
  """Loads BFM_model_front.mat (Deep3DFaceRecon) or BFM_model_front_gan.mat (DiscoFaceGAN).

  `path` is the .mat file or a folder holding one of those names.
  """
  if path is not None and os.path.isdir(path):
    for name in ("BFM_model_front.mat", "BFM_model_front_gan.mat"):
      if os.path.exists(os.path.join(path, name)):
        path = os.path.join(path, name)
        break
    else:
      raise AssetError(f"no BFM_model_front.mat or BFM_model_front_gan.mat in {path!r}. {_WHERE}")
  m = _loadmat(_need(path, "BFM_model_front.mat"))
  mean = np.asarray(_key(m, "meanshape", path), np.float32).reshape(-1, 3)
  v = mean.shape[0]
  tri = _tri(_key(m, "tri", path), v, f"{path}:tri")
  point_buf = np.asarray(_key(m, "point_buf", path)).astype(np.int64) - 1  # pad index F -> zero normal
  if point_buf.shape[0] != v or point_buf.min() < 0 or point_buf.max() > tri.shape[0]:
    raise DataError(f"{path}: point_buf does not match {v} vertices / {tri.shape[0]} triangles.")
  face_mask, skin = _masks_from_info(m, v, path)
  return make_face_model(
      name="bfm_front", mean_shape=mean,
      id_basis=np.asarray(_key(m, "idBase", path), np.float32).reshape(v, 3, -1),
      exp_basis=np.asarray(_key(m, "exBase", path), np.float32).reshape(v, 3, -1),
      mean_albedo=np.asarray(_key(m, "meantex", path), np.float32).reshape(v, 3) / 255.0,
      albedo_basis=np.asarray(_key(m, "texBase", path), np.float32).reshape(v, 3, -1) / 255.0,
      tri=tri, vertex_faces=point_buf.astype(np.int32),
      landmarks68=_index(_key(m, "keypoints", path), v, f"{path}:keypoints"),
      skin_mask=skin, face_mask=face_mask, render_tri=_render_tri(m, tri, v, path))


def read_exp_pca(path, n_vertices=None):
  """Reads Exp_Pca.bin -> (expMU [3N], expPC [3N, n_pc]) float32; N inferred from the file size."""
  _need(path, "Exp_Pca.bin")
  raw = np.fromfile(path, dtype=np.uint8)
  if raw.size < 4:
    raise DataError(f"{path} is too short to be Exp_Pca.bin; re-download it.")
  n_pc = int(raw[:4].view(np.int32)[0])
  n_floats = (raw.size - 4) // 4
  if n_pc <= 0 or (raw.size - 4) % 4 or n_floats % (3 * (n_pc + 1)):
    raise DataError(f"{path}: header says {n_pc} components but the size ({raw.size} bytes) does not fit "
                    "int32 n + float32 [3N] mean + float32 [n, 3N] basis; re-download Exp_Pca.bin.")
  n = n_floats // (3 * (n_pc + 1))
  if n_vertices is not None and n != n_vertices:
    raise DataError(f"{path} has {n} vertices, expected {n_vertices}.")
  data = raw[4:].view(np.float32)
  mu = data[:3 * n]
  pc = data[3 * n:].reshape(n_pc, 3 * n).T
  return mu, pc


def load_bfm09(path=None, n_id=80, n_exp=64, n_tex=80, **_):
  """Converts the original BFM09 files in folder `path` to the 35,709-vertex front face model."""
  if path is None or not os.path.isdir(path):
    raise AssetError(f"face_model.path must be the folder with 01_MorphableModel.mat and friends; got "
                     f"{path!r}. {_WHERE}")
  required = ("01_MorphableModel.mat", "Exp_Pca.bin", "std_exp.txt", "BFM_front_idx.mat", "BFM_exp_idx.mat",
              "facemodel_info.mat")
  missing = [n for n in required if not os.path.exists(os.path.join(path, n))]
  if missing:
    raise AssetError(f"{path!r} lacks {', '.join(missing)}. {_WHERE}")
  f = lambda name: os.path.join(path, name)  # noqa: E731
  bfm = _loadmat(f("01_MorphableModel.mat"))
  src = "01_MorphableModel.mat"
  shape_pc = np.asarray(_key(bfm, "shapePC", src), np.float32)
  shape_ev = np.asarray(_key(bfm, "shapeEV", src), np.float32).reshape(1, -1)
  tex_pc = np.asarray(_key(bfm, "texPC", src), np.float32)
  tex_ev = np.asarray(_key(bfm, "texEV", src), np.float32).reshape(1, -1)
  _, exp_pc = read_exp_pca(f("Exp_Pca.bin"))
  exp_ev = np.loadtxt(f("std_exp.txt"), dtype=np.float32).reshape(1, -1)
  if exp_ev.shape[1] != exp_pc.shape[1]:
    raise DataError(f"std_exp.txt has {exp_ev.shape[1]} values but Exp_Pca.bin {exp_pc.shape[1]} components.")
  for name, basis, k in (("shapePC", shape_pc, n_id), ("texPC", tex_pc, n_tex), ("expPC", exp_pc, n_exp)):
    if basis.shape[1] < k:
      raise DataError(f"{name} has {basis.shape[1]} components, fewer than the {k} requested.")
  id_base = (shape_pc * shape_ev)[:, :n_id] / 1e5
  ex_base = (exp_pc * exp_ev)[:, :n_exp] / 1e5
  tex_base = (tex_pc * tex_ev)[:, :n_tex]
  n_shape, n_exp_v = shape_pc.shape[0] // 3, exp_pc.shape[0] // 3
  idx_exp = _index(_key(_loadmat(f("BFM_front_idx.mat")), "idx", "BFM_front_idx.mat"), n_exp_v,
                   "BFM_front_idx.mat:idx")
  trim = _index(_key(_loadmat(f("BFM_exp_idx.mat")), "trimIndex", "BFM_exp_idx.mat"), n_shape,
                "BFM_exp_idx.mat:trimIndex")
  if trim.size != n_exp_v:
    raise DataError(f"trimIndex has {trim.size} entries but Exp_Pca.bin has {n_exp_v} vertices.")
  idx_shape = trim[idx_exp]
  v = idx_exp.size
  mean = np.asarray(_key(bfm, "shapeMU", src), np.float32).reshape(-1, 3)[idx_shape] / 1e5
  mean_tex = np.asarray(_key(bfm, "texMU", src), np.float32).reshape(-1, 3)[idx_shape]
  info = _loadmat(f("facemodel_info.mat"))
  tri = _tri(_key(info, "tri", "facemodel_info.mat"), v, "facemodel_info.mat:tri")
  point_buf = np.asarray(_key(info, "point_buf", "facemodel_info.mat")).astype(np.int64) - 1
  face_mask, skin = _masks_from_info(info, v, "facemodel_info.mat")
  extra = {}
  for name, key in (("gan_mask.mat", "idx"), ("gan_tl.mat", "f")):
    if os.path.exists(os.path.join(path, name)):
      extra["gan_mask" if key == "idx" else "gan_tl"] = _key(_loadmat(os.path.join(path, name)), key, name)
  return make_face_model(
      name="bfm09", mean_shape=mean,
      id_basis=id_base.reshape(-1, 3, n_id)[idx_shape], exp_basis=ex_base.reshape(-1, 3, n_exp)[idx_exp],
      mean_albedo=mean_tex / 255.0, albedo_basis=tex_base.reshape(-1, 3, n_tex)[idx_shape] / 255.0,
      tri=tri, vertex_faces=point_buf.astype(np.int32),
      landmarks68=_index(_key(info, "keypoints", "facemodel_info.mat"), v, "facemodel_info.mat:keypoints"),
      skin_mask=skin, face_mask=face_mask, render_tri=_render_tri(extra, tri, v, "gan_mask/gan_tl"))
