"""mp468: the MediaPipe-mesh morphable model (mesh facts, Loop subdivision, bases, FaceModel wiring)."""

import struct

import numpy as np
import pytest

from jaxface.errors import ConfigError
from jaxface.render import mp468
from jaxface.render import mp468_bases as mb
from jaxface.render import face_models


def _edges(tri):
  return {tuple(sorted((int(f[i]), int(f[(i + 1) % 3])))) for f in tri for i in range(3)}


def test_mesh_file_and_contours():
  mesh = mp468.load_mesh()
  assert mesh["vertices"].shape == (468, 3) and mesh["triangles"].shape == (898, 3)
  edges = _edges(mesh["triangles"])
  for chain in (mp468.LIPS_UPPER_OUTER, mp468.LIPS_LOWER_OUTER, mp468.LIPS_UPPER_INNER, mp468.LIPS_LOWER_INNER,
                mp468.R_EYE_UPPER, mp468.R_EYE_LOWER, mp468.R_EYE_UPPER1, mp468.R_EYE_LOWER1, mp468.R_BROW_UPPER,
                mp468.R_BROW_LOWER, mp468.FACE_OVAL + mp468.FACE_OVAL[:1]):
    assert all(tuple(sorted(e)) in edges for e in zip(chain[:-1], chain[1:])), chain
  # The face oval is exactly the mesh boundary.
  tri = mesh["triangles"]
  all_e = [tuple(sorted((int(f[i]), int(f[(i + 1) % 3])))) for f in tri for i in range(3)]
  uniq, counts = np.unique(np.array(all_e), axis=0, return_counts=True)
  assert set(uniq[counts == 1].reshape(-1).tolist()) == set(mp468.FACE_OVAL)
  # Subject's right eye is on -x (image left for a camera on +z).
  assert mesh["vertices"][33, 0] < 0 < mesh["vertices"][263, 0]


def test_mirror_and_landmarks68_symmetry():
  v = mp468.load_mesh()["vertices"]
  m = mp468.mirror_map(v)
  assert (m[m] == np.arange(468)).all()
  np.testing.assert_allclose(v[m] * [-1, 1, 1], v, atol=1e-5)
  lm = mp468.LANDMARKS68
  assert len(lm) == 68 and len(set(lm.tolist())) == 68
  for i in range(17):  # jaw i <-> 16 - i
    assert m[lm[i]] == lm[16 - i]
  for a, b in ((36, 45), (39, 42), (48, 54), (31, 35), (17, 26)):
    assert m[lm[a]] == lm[b]
  for i in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):  # midline points
    assert abs(v[lm[i], 0]) < 1e-5


def test_loop_subdivision_against_reference_stencils():
  # A hexagon fan: centre vertex 0 (valence 6, interior) and a boundary ring 1..6.
  ang = np.arange(6) * np.pi / 3
  verts = np.concatenate([[[0.0, 0.0, 1.0]], np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], -1)])
  tri = np.array([[0, 1 + i, 1 + (i + 1) % 6] for i in range(6)], np.int32)
  S, new_tri, parent = mp468.loop_subdivide(7, tri)
  out = S @ verts
  beta = (0.625 - (0.375 + 0.25 * np.cos(2 * np.pi / 6)) ** 2) / 6  # Loop's weight; 1/16 at valence 6
  assert abs(beta - 1 / 16) < 1e-12
  np.testing.assert_allclose(out[0], (1 - 6 * beta) * verts[0] + beta * verts[1:].sum(0))
  np.testing.assert_allclose(out[1], 0.75 * verts[1] + 0.125 * (verts[2] + verts[6]))  # boundary rule
  np.testing.assert_allclose(np.asarray(S.sum(1)).ravel(), 1.0)  # affine invariance
  assert new_tri.shape == (24, 3) and (np.bincount(parent) == 4).all()
  # Interior edge (0,1): opposite vertices 2 and 6.
  e = [r for r in range(7, S.shape[0]) if S[r, 0] > 0 and S[r, 1] > 0][0]
  np.testing.assert_allclose(out[e], 0.375 * (verts[0] + verts[1]) + 0.125 * (verts[2] + verts[6]))


@pytest.mark.parametrize("level,nv,nf", [(0, 468, 898), (1, 1833, 3592), (2, 7257, 14368)])
def test_levels(level, nv, nf):
  S, tri, parent = mp468.subdivision(level)
  assert S.shape == (nv, 468) and tri.shape == (nf, 3) and parent.max() == 897
  # Same orientation as the parent triangle: normals of children agree with their parent's.
  v0 = mp468.load_mesh()["vertices"]
  v = S @ v0
  n = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
  t0 = mp468.load_mesh()["triangles"][parent]
  n0 = np.cross(v0[t0[:, 1]] - v0[t0[:, 0]], v0[t0[:, 2]] - v0[t0[:, 0]])
  assert ((n * n0).sum(1) > 0).mean() > 0.98


def test_bases_symmetry_and_scale():
  a = mb.build_face_model_arrays(level=0)
  m = mp468.regions()["mirror"]
  idb = a["id_basis"]
  sym = np.abs(idb[m] * np.array([-1, 1, 1])[None, :, None] - idb).max(axis=(0, 1))
  assert (sym[:mb.N_ID_SYMMETRIC] < 1e-5).all() and (sym[mb.N_ID_SYMMETRIC:] > 1e-3).all()
  e = {n: a["exp_basis"][..., i] for i, n in enumerate(mb.EXPRESSIONS)}
  for left, right in (("smile_l", "smile_r"), ("eye_close_l", "eye_close_r"), ("brow_raise_l", "brow_raise_r")):
    np.testing.assert_allclose(e[left], e[right][m] * [-1, 1, 1], atol=1e-6)
  rng = np.random.default_rng(0)
  disp = np.einsum("vck,nk->nvc", idb, rng.normal(size=(64, idb.shape[-1])))
  rms_mm = np.sqrt((disp ** 2).sum(-1).mean(-1)) * 100  # dm -> mm
  assert 2.0 < np.median(rms_mm) < 15.0, np.median(rms_mm)
  alb = a["mean_albedo"] + np.einsum("vck,nk->nvc", a["albedo_basis"], rng.normal(size=(64, a["albedo_basis"].shape[-1])))
  assert ((alb >= 0) & (alb <= 1)).mean() > 0.99
  assert alb[:, :, 0].mean() > alb[:, :, 2].mean()  # skin is redder than blue


def test_expressions_do_what_they_say():
  a = mb.build_face_model_arrays(level=0)
  v, e = a["mean_shape"], {n: a["exp_basis"][..., i] for i, n in enumerate(mb.EXPRESSIONS)}
  gap = lambda s: np.linalg.norm(s[13] - s[14])  # inner upper / lower lip midpoints
  assert gap(v + e["jaw_open"]) > gap(v) + 0.05  # > 5 mm
  closed = v + e["eye_close_r"]
  upper = list(mp468.R_EYE_UPPER[1:-1])
  lid_gap = lambda s: np.abs(s[159, 1] - s[145, 1])
  assert lid_gap(closed) < 0.15 * lid_gap(v)
  smile = v + e["smile_l"]
  assert smile[291, 1] > v[291, 1] + 0.02 and abs(smile[61, 1] - v[61, 1]) < 0.005
  assert np.allclose(e["jaw_open"][upper], 0.0, atol=1e-4)


def test_face_model_wiring_and_errors():
  from jaxface.render import face_model as fm
  model = face_models.load_face_model("mp468", level=0, n_id=40, n_exp=16, n_tex=40)
  assert (model.n_id, model.n_exp, model.n_tex) == (40, 16, 40)
  assert model.mean_shape.shape == (468, 3) and model.landmarks68.shape == (68,)
  assert model.render_tri.shape[0] == 898 - int((mp468.regions()["tri_labels"] == mp468.MOUTH).sum())
  np.testing.assert_allclose(np.asarray(model.mean_shape).mean(0), 0.0, atol=1e-5)
  with pytest.raises(ConfigError):
    mb.build_face_model(level=3)
  with pytest.raises(ConfigError):
    mb.build_face_model(level=0, n_exp=21)


def _pb_varint(n):
  out = b""
  while True:
    b, n = n & 0x7F, n >> 7
    out += bytes([b | (0x80 if n else 0)])
    if not n:
      return out


def test_fetch_tool_decoder_on_handmade_protobuf():
  import importlib.util, os
  path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "fetch_mediapipe_mesh.py")
  spec = importlib.util.spec_from_file_location("fetch_mediapipe_mesh", path)
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  vb = np.arange(10, dtype="<f4")  # 2 vertices × (x y z u v)
  ib = b"".join(_pb_varint(i) for i in (0, 1, 300))
  mesh = (b"\x08\x00" + b"\x1a" + _pb_varint(len(vb.tobytes())) + vb.tobytes() + b"\x22" + _pb_varint(len(ib)) + ib)
  lm = b"\x08" + _pb_varint(7) + b"\x15" + struct.pack("<f", 0.5)
  blob = b"\x0a" + _pb_varint(len(mesh)) + mesh + b"\x12" + _pb_varint(len(lm)) + lm
  out = tool.decode_metadata(blob)
  np.testing.assert_array_equal(out["vertices"], [[0, 1, 2], [5, 6, 7]])
  np.testing.assert_array_equal(out["uv"], [[3, 4], [8, 9]])
  np.testing.assert_array_equal(out["triangles"], [[0, 1, 300]])
  assert out["procrustes_ids"].tolist() == [7] and out["procrustes_weights"].tolist() == [0.5]
  committed = mp468.load_mesh()
  tool.check_mesh(committed)  # the committed file passes the tool's own checks
  with pytest.raises(tool.FetchError):
    tool.check_mesh({"vertices": committed["vertices"], "triangles": committed["triangles"][:-1]})
