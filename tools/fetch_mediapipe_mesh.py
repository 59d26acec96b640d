"""Fetches the MediaPipe canonical face mesh from npm and writes jaxface/data/mp468_mesh.npz.

    python tools/fetch_mediapipe_mesh.py [--tgz PATH] [--out jaxface/data/mp468_mesh.npz]

Source: npm `@mediapipe/face_mesh@0.4.1657299874` (Apache-2.0). Its emscripten pack
`face_mesh_solution_packed_assets.data` holds `geometry_pipeline_metadata_landmarks.binarypb`, a
`FaceGeometry.GeometryPipelineMetadata` protobuf. We decode its wire format by hand (no protobuf
dependency): field 1 is the canonical `Mesh3d` (field 1 vertex_type, 2 primitive_type, 3 packed
float32 vertex buffer of [x y z u v] per vertex, 4 packed varint index buffer), field 2 the repeated
Procrustes landmark weights {1: landmark_id, 2: weight}, field 3 the input source.
The byte range of the binarypb inside the pack is read from the package's loader script, not hard-coded,
and the decoded mesh is checked (468 vertices, 898 triangles, one boundary loop) before it is written.
The committed npz is what this tool writes; re-running it must reproduce it bit for bit.
"""

import argparse
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

PACKAGE = "@mediapipe/face_mesh@0.4.1657299874"
TGZ_SHA256 = "c08a7e0742a326285da666cf81d77c8b6f3a181a2ee948cadaf166008e0d3bc7"
MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "jaxface", "data", "mp468_mesh.npz")


class FetchError(RuntimeError):
  pass


def _varint(buf, i):
  value = shift = 0
  while True:
    byte = buf[i]
    i += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if byte < 0x80:
      return value, i


def _fields(buf):
  """Yields (field_number, wire_type, value) of one protobuf message."""
  i = 0
  while i < len(buf):
    key, i = _varint(buf, i)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, i = _varint(buf, i)
    elif wire == 1:
      value, i = buf[i:i + 8], i + 8
    elif wire == 2:
      n, i = _varint(buf, i)
      value, i = buf[i:i + n], i + n
    elif wire == 5:
      value, i = struct.unpack("<f", buf[i:i + 4])[0], i + 4
    else:
      raise FetchError(f"unsupported protobuf wire type {wire} (field {number}); is this the right file?")
    yield number, wire, value


def _packed_varints(buf):
  out, i = [], 0
  while i < len(buf):
    v, i = _varint(buf, i)
    out.append(v)
  return out


def decode_metadata(blob):
  """GeometryPipelineMetadata bytes -> dict of numpy arrays (vertices, uv, triangles, procrustes)."""
  floats, indices, ids, weights = [], [], [], []
  for number, wire, value in _fields(blob):
    if number == 1:  # Mesh3d
      for sub, sub_wire, v in _fields(value):
        if sub == 3:
          floats.extend(np.frombuffer(v, "<f4").tolist() if sub_wire == 2 else [v])
        elif sub == 4:
          indices.extend(_packed_varints(v) if sub_wire == 2 else [v])
    elif number == 2:  # WeightedLandmarkRef
      entry = {k: v for k, _, v in _fields(value)}
      ids.append(entry.get(1, 0))
      weights.append(entry.get(2, 0.0))
  vb = np.asarray(floats, np.float32).reshape(-1, 5)
  tri = np.asarray(indices, np.int32).reshape(-1, 3)
  return {
      "vertices": vb[:, :3].copy(),
      "uv": vb[:, 3:].copy(),
      "triangles": tri,
      "procrustes_ids": np.asarray(ids, np.int32),
      "procrustes_weights": np.asarray(weights, np.float32),
  }


def check_mesh(mesh):
  """Raises FetchError unless the mesh is the 468-vertex, 898-triangle canonical disk."""
  v, t = mesh["vertices"], mesh["triangles"]
  if v.shape != (468, 3) or t.shape != (898, 3) or t.min() < 0 or t.max() >= 468:
    raise FetchError(f"unexpected mesh shapes {v.shape}, {t.shape}")
  edges = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
  _, counts = np.unique(edges, axis=0, return_counts=True)
  if counts.max() > 2 or (counts == 1).sum() != 36:
    raise FetchError("canonical mesh is not a manifold disk with a 36-edge boundary")


def extract_binarypb(tgz_bytes):
  """Reads the loader's file table and cuts the binarypb out of the packed data file."""
  with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tar:
    loader = tar.extractfile("package/face_mesh_solution_packed_assets_loader.js").read().decode()
    data = tar.extractfile("package/face_mesh_solution_packed_assets.data").read()
  match = re.search(r'"files":\s*(\[[^\]]*\])', loader)
  if not match:
    raise FetchError("file table not found in the packed-assets loader script")
  for entry in json.loads(match.group(1)):
    if entry["filename"].endswith("/" + MEMBER):
      return data[entry["start"]:entry["end"]]
  raise FetchError(f"{MEMBER} not listed in the packed assets")


def npm_pack(workdir):
  try:
    out = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, capture_output=True,
                         text=True, timeout=300, check=True)
  except (OSError, subprocess.SubprocessError) as e:
    raise FetchError(f"`npm pack {PACKAGE}` failed ({e}); install npm or pass --tgz with a downloaded "
                     "tarball") from e
  return os.path.join(workdir, out.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tgz", help="an already downloaded package tarball (default: npm pack it)")
  parser.add_argument("--out", default=DEFAULT_OUT)
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    path = args.tgz or npm_pack(tmp)
    with open(path, "rb") as f:
      tgz = f.read()
  digest = hashlib.sha256(tgz).hexdigest()
  if digest != TGZ_SHA256:
    raise FetchError(f"{path}: sha256 {digest} is not the pinned {PACKAGE} tarball ({TGZ_SHA256})")
  mesh = decode_metadata(extract_binarypb(tgz))
  check_mesh(mesh)
  mesh["source"] = np.asarray(f"npm {PACKAGE} ({MEMBER}), Apache-2.0; tgz sha256 {TGZ_SHA256}")
  buf = io.BytesIO()
  np.savez_compressed(buf, **mesh)
  with open(args.out, "wb") as f:
    f.write(buf.getvalue())
  print(f"wrote {args.out}: {mesh['vertices'].shape[0]} vertices, {mesh['triangles'].shape[0]} triangles, "
        f"{len(buf.getvalue())} bytes")
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except FetchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
