"""Torch zip archives (`torch.save` since 1.6, and TorchScript `.pt`) read WITHOUT torch.

A torch zip holds `<root>/data.pkl` (a pickle of the object tree) and one raw little-endian file per
tensor storage under `<root>/data/<key>`. We unpickle with a restricted Unpickler: only the few
torch rebuild functions, storage type names, `OrderedDict` and TorchScript's list builders are
allowed; TorchScript module classes (`__torch__.*`) become inert attribute bags. Any other global
(the way pickles run code) is refused, so a hostile file cannot execute anything.
"""

import collections
import io
import pickle
import zipfile

import numpy as np

from jaxface.errors import AssetError

# Storage type name -> numpy dtype. bfloat16 has no numpy dtype: read as uint16 and widen.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchObject:
  """Stand-in for a TorchScript module or other `__torch__` class: just holds its pickled state."""

  def __init__(self, *args):
    self.__dict__["_args"] = args

  def __setstate__(self, state):
    if isinstance(state, dict):
      self.__dict__.update(state)
    else:
      self.__dict__["_state"] = state


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2: a strided view into a flat storage, copied out."""
  size, stride = tuple(size), tuple(stride)
  if not size:
    return np.array(storage[offset])
  itemsize = storage.itemsize
  need = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
  if need > storage.size:
    raise AssetError(f"corrupt torch file: a tensor of size {size} reads past its storage; re-save the file")
  view = np.lib.stride_tricks.as_strided(storage[offset:], size, [s * itemsize for s in stride])
  return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
  return data


def _list_builder(items):
  return list(items)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _list_builder,
    ("torch.jit._pickle", "build_doublelist"): _list_builder,
    ("torch.jit._pickle", "build_boollist"): _list_builder,
    ("torch.jit._pickle", "build_tensorlist"): _list_builder,
}


class _Unpickler(pickle.Unpickler):
  """Unpickler that resolves only whitelisted globals and reads storages from the zip."""

  def __init__(self, fileobj, zf, root, path):
    super().__init__(fileobj)
    self._zf, self._root, self._path = zf, root, path
    self._storages = {}

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return name  # a storage type is only ever used as a tag for persistent_load
    if module.startswith("__torch__"):
      return type(name, (TorchObject,), {})
    raise AssetError(
        f"{self._path} asks to load the Python global {module}.{name}, which a weight file has no "
        "reason to need; refusing (loading it could run code). Re-save plain tensors with "
        "torch.save(model.state_dict(), path).")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
      raise AssetError(f"{self._path}: unknown persistent id {pid!r}; is this a torch zip file?")
    _, stype, key, _location, numel = pid[:5]
    if not isinstance(stype, str):  # torch >= 2 may pickle a dtype-less UntypedStorage
      stype = "ByteStorage"
    if key in self._storages:
      return self._storages[key]
    try:
      raw = self._zf.read(f"{self._root}/data/{key}")
    except KeyError as e:
      raise AssetError(f"{self._path}: storage {key} is missing; the file is truncated or corrupt") from e
    dtype = _STORAGE_DTYPES.get(stype)
    if dtype is None:
      raise AssetError(f"{self._path}: unsupported storage type {stype}")
    if dtype == "bfloat16":
      arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
      arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
    if arr.size < numel:
      raise AssetError(f"{self._path}: storage {key} is shorter than declared; the file is corrupt")
    self._storages[key] = arr
    return arr


def load(path):
  """Unpickles a torch zip archive into numpy arrays, dicts, lists and `TorchObject`s."""
  try:
    zf = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise AssetError(
        f"{path} is not a torch zip archive ({e}). Legacy (pre-1.6) torch files are not read: "
        "re-save with torch.save(obj, path) from torch >= 1.6.") from e
  with zf:
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pkls:
      raise AssetError(f"{path} has no <root>/data.pkl; it is a zip but not a torch archive")
    root = pkls[0].split("/")[0]
    byteorder = f"{root}/byteorder"
    if byteorder in zf.namelist() and zf.read(byteorder).strip() != b"little":
      raise AssetError(f"{path} was saved big-endian; re-save it on a little-endian machine")
    try:
      return _Unpickler(io.BytesIO(zf.read(pkls[0])), zf, root, path).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
      raise AssetError(f"{path}: cannot unpickle its data.pkl ({e}); the file is corrupt") from e


def named_tensors(obj, prefix=""):
  """Flattens a loaded tree into {'a.b.weight': array} like torch's `state_dict()` naming."""
  out = {}
  if isinstance(obj, dict):
    items = obj.items()
  elif isinstance(obj, TorchObject):
    items = ((k, v) for k, v in obj.__dict__.items() if not k.startswith("_") and k != "training")
  else:
    return out
  for k, v in items:
    name = f"{prefix}{k}"
    if isinstance(v, np.ndarray):
      out[name] = v
    elif isinstance(v, (dict, TorchObject)):
      out.update(named_tensors(v, name + "."))
  return out


def read_state_dict(path):
  """{name: float32/int array} from a torch zip state dict, a checkpoint dict or a TorchScript file.

  Checkpoints that wrap the weights (`{'state_dict': ...}`, `{'net_recon': ...}`, `{'model': ...}`)
  are unwrapped when exactly one entry holds tensors.
  """
  obj = load(path)
  tensors = named_tensors(obj)
  if isinstance(obj, dict) and not any(isinstance(v, np.ndarray) for v in obj.values()):
    holders = [k for k, v in obj.items() if isinstance(v, (dict, TorchObject)) and named_tensors(v)]
    if len(holders) == 1:
      tensors = named_tensors(obj[holders[0]])
  if not tensors:
    raise AssetError(f"{path} holds no tensors; expected a state dict saved with torch.save")
  return tensors
