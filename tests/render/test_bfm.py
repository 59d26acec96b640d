"""BFM loaders on small files with the real key names and layouts, written by the tests."""

import numpy as np
import pytest
import scipy.io

from jaxface.errors import AssetError, DataError
from jaxface.render import bfm
from jaxface.render import face_model as fm_lib
from jaxface.render import face_models

V = 8  # front-face vertices in these miniature files
TRI0 = np.array([[0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6]])  # 2x4 grid, 0-based


def _point_buf(tri, v):
  vf = fm_lib.vertex_faces_from_tri(tri, v)  # padded with F
  out = np.full((v, 8), len(tri), np.int64)
  out[:, :vf.shape[1]] = vf
  return out + 1  # 1-based; F + 1 is the padded zero-normal face


def _info(rng):
  return {"tri": (TRI0 + 1).astype(np.float64), "point_buf": _point_buf(TRI0, V).astype(np.float64),
          "keypoints": rng.integers(1, V + 1, (1, 68)).astype(np.float64),
          "frontmask2_idx": np.array([[1], [2], [5], [6]], np.float64),
          "skinmask": (rng.uniform(size=(1, V)) > 0.5).astype(np.float64),
          "tri_mask2": (TRI0[:2] + 1).astype(np.float64)}


def test_bfm_front(tmp_path):
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(1, 3 * V))
  d = {"meanshape": mean, "meantex": rng.uniform(0, 255, (1, 3 * V)), "idBase": rng.normal(size=(3 * V, 80)),
       "exBase": rng.normal(size=(3 * V, 64)), "texBase": rng.normal(size=(3 * V, 80)), **_info(rng),
       "gan_mask": np.array([[2], [3], [4], [6], [7], [8]], np.float64),
       "gan_tl": np.array([[1, 2, 5], [2, 3, 6]], np.float64)}  # 1-based into the gan_mask subset
  scipy.io.savemat(tmp_path / "BFM_model_front.mat", d)
  fm = face_models.load_face_model({"name": "bfm_front", "path": str(tmp_path)})
  m = mean.reshape(V, 3)
  np.testing.assert_allclose(np.asarray(fm.mean_shape), m - m.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(fm.id_basis), d["idBase"].reshape(V, 3, 80), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(fm.exp_basis)[2, 1, 5], d["exBase"][2 * 3 + 1, 5], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(fm.mean_albedo), d["meantex"].reshape(V, 3) / 255, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(fm.albedo_basis), d["texBase"].reshape(V, 3, 80) / 255, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(fm.tri), TRI0)
  np.testing.assert_array_equal(np.asarray(fm.landmarks68), d["keypoints"][0] - 1)
  np.testing.assert_array_equal(np.asarray(fm.face_mask), [1, 1, 0, 0, 1, 1, 0, 0])
  np.testing.assert_array_equal(np.asarray(fm.skin_mask), d["skinmask"][0])
  sub = np.array([1, 2, 3, 5, 6, 7])
  np.testing.assert_array_equal(np.asarray(fm.render_tri), sub[np.array([[0, 1, 4], [1, 2, 5]])])
  assert fm.layout.total == 257
  # Vertex normals through point_buf (with its padded face) equal those from the adjacency.
  verts = np.asarray(fm.mean_shape)
  fn = np.cross(verts[TRI0[:, 0]] - verts[TRI0[:, 1]], verts[TRI0[:, 1]] - verts[TRI0[:, 2]])
  fn /= np.linalg.norm(fn, axis=1, keepdims=True)
  vn = np.zeros((V, 3))
  np.add.at(vn, TRI0.ravel(), np.repeat(fn, 3, axis=0))
  vn /= np.linalg.norm(vn, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(fm_lib.vertex_normals(fm, fm.mean_shape)), vn, atol=1e-5)


def _write_bfm09(root, rng, n_shape=12, n_exp_v=10):
  root.mkdir(exist_ok=True)
  orig = {"shapeMU": rng.normal(size=(3 * n_shape, 1)) * 1e4, "shapePC": rng.normal(size=(3 * n_shape, 199)),
          "shapeEV": rng.uniform(1, 2, (199, 1)) * 1e3, "texMU": rng.uniform(0, 255, (3 * n_shape, 1)),
          "texPC": rng.normal(size=(3 * n_shape, 199)), "texEV": rng.uniform(1, 2, (199, 1))}
  scipy.io.savemat(root / "01_MorphableModel.mat", orig)
  exp_mu = rng.normal(size=3 * n_exp_v).astype(np.float32)
  exp_pc = rng.normal(size=(79, 3 * n_exp_v)).astype(np.float32)  # stored [n_pc, 3N] row-major
  with open(root / "Exp_Pca.bin", "wb") as f:
    np.array([79], np.int32).tofile(f)
    exp_mu.tofile(f)
    exp_pc.tofile(f)
  std = rng.uniform(1, 3, 79)
  np.savetxt(root / "std_exp.txt", std)
  trim = rng.permutation(n_shape)[:n_exp_v] + 1  # exp vertex -> shape vertex, 1-based
  front = np.sort(rng.permutation(n_exp_v)[:V]) + 1  # front vertex -> exp vertex, 1-based
  scipy.io.savemat(root / "BFM_exp_idx.mat", {"trimIndex": trim[:, None].astype(np.float64)})
  scipy.io.savemat(root / "BFM_front_idx.mat", {"idx": front[:, None].astype(np.float64)})
  scipy.io.savemat(root / "facemodel_info.mat", _info(rng))
  return orig, exp_pc, std, trim - 1, front - 1


def test_bfm09_conversion(tmp_path):
  rng = np.random.default_rng(1)
  orig, exp_pc, std, trim, front = _write_bfm09(tmp_path / "BFM", rng)
  fm = face_models.load_face_model("bfm09", path=str(tmp_path / "BFM"))
  shape_idx = trim[front]
  # Expected values written out independently of the loader.
  mean = orig["shapeMU"].reshape(-1, 3)[shape_idx] / 1e5
  np.testing.assert_allclose(np.asarray(fm.mean_shape), mean - mean.mean(0), rtol=1e-4, atol=1e-6)
  id_full = (orig["shapePC"] * orig["shapeEV"].T / 1e5)[:, :80].reshape(-1, 3, 80)[shape_idx]
  np.testing.assert_allclose(np.asarray(fm.id_basis), id_full, rtol=1e-4, atol=1e-7)
  exp_full = (exp_pc.T * std[None, :] / 1e5)[:, :64].reshape(-1, 3, 64)[front]
  np.testing.assert_allclose(np.asarray(fm.exp_basis), exp_full, rtol=1e-4, atol=1e-9)
  tex_full = (orig["texPC"] * orig["texEV"].T)[:, :80].reshape(-1, 3, 80)[shape_idx] / 255
  np.testing.assert_allclose(np.asarray(fm.albedo_basis), tex_full, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(fm.mean_albedo), orig["texMU"].reshape(-1, 3)[shape_idx] / 255,
                             rtol=1e-5)
  assert (fm.n_id, fm.n_exp, fm.n_tex) == (80, 64, 80) and fm.n_vertices == V
  mu, pc = bfm.read_exp_pca(str(tmp_path / "BFM" / "Exp_Pca.bin"))
  np.testing.assert_array_equal(pc, exp_pc.T)


def test_missing_and_broken_files(tmp_path):
  with pytest.raises(AssetError, match="face_model.path") as e:
    face_models.load_face_model("bfm_front", path=str(tmp_path / "nope.mat"))
  assert "faces.dmi.unibas.ch" in str(e.value)
  with pytest.raises(AssetError, match="Exp_Pca.bin"):
    (tmp_path / "BFM").mkdir()
    scipy.io.savemat(tmp_path / "BFM" / "01_MorphableModel.mat", {"shapeMU": np.zeros((3, 1))})
    face_models.load_face_model("bfm09", path=str(tmp_path / "BFM"))
  scipy.io.savemat(tmp_path / "bad.mat", {"something": np.zeros(3)})
  with pytest.raises(DataError, match="meanshape"):
    face_models.load_face_model("bfm_front", path=str(tmp_path / "bad.mat"))
  (tmp_path / "Exp_Pca.bin").write_bytes(np.array([79], np.int32).tobytes() + b"\0" * 12)
  with pytest.raises(DataError, match="Exp_Pca"):
    bfm.read_exp_pca(str(tmp_path / "Exp_Pca.bin"))
