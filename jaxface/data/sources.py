"""Random-access data sources: image folder, ArrayRecord shards, TFDS, generated, synthetic.

A source is a grain `RandomAccessDataSource`: `len(src)` and `src[i] -> record`. Records are raw (encoded
bytes, or a dict whose "image" is encoded bytes or a decoded array, plus numeric metadata); decoding,
cropping and resizing happen in the pipeline's map so they run in grain workers, and a broken record can
be skipped and counted there instead of crashing the reader. `describe(i)` names record i for error
messages ("which file was bad").

`make_source(data_cfg)` picks one from `data_cfg.kind`. Anything the user points at that is not there
raises a UserError saying what to do (usually: run `python -m jaxface.data.prepare`).
"""

import glob
import importlib
import json
import os

import grain

from jaxface.data import generated, images
from jaxface.errors import ConfigError, DataError

KINDS = ("folder", "arrayrecord", "tfds", "generated", "synthetic")

PREPARE_HINT = "python -m jaxface.data.prepare SRC_FOLDER DST_DIR --resolution R"


list_images = images.list_images


class FolderSource:
  """Every png/jpg under a folder (recursive, sorted). Records: {"image": file bytes}."""

  def __init__(self, root):
    self.root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(self.root):
      raise DataError(f"image folder {root!r} does not exist (or is not a directory); set data.path to a folder "
                      f"of .png/.jpg images (searched recursively).")
    self.files = list_images(self.root)
    if not self.files:
      raise DataError(f"image folder {root!r} contains no .png/.jpg/.jpeg files; put images there (subfolders "
                      f"are searched) or point data.path at the right folder.")

  def __len__(self):
    return len(self.files)

  def __getitem__(self, index):
    with open(os.path.join(self.root, self.files[int(index)]), "rb") as f:
      return {"image": f.read()}

  def describe(self, index):
    return os.path.join(self.root, self.files[int(index)])

  def __repr__(self):
    return f"FolderSource({self.root!r}, {len(self.files)} images)"


def find_shards(path):
  """A directory (all *.array_record in it), a glob, or a single file -> sorted shard paths."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    shards = sorted(glob.glob(os.path.join(path, "*.array_record")))
  else:
    shards = sorted(p for p in glob.glob(path) if os.path.isfile(p))
  return shards


class ArrayRecordSource:
  """ArrayRecord shards written by `prepare` (see images.py for the record format). Records: bytes."""

  def __init__(self, path):
    self.path = path
    self.shards = find_shards(path)
    if not self.shards:
      raise DataError(f"no .array_record shards found at {path!r}; build them with `{PREPARE_HINT}` and set "
                      f"data.path to DST_DIR (or to a glob of shard files).")
    self.meta = {}
    meta_dir = path if os.path.isdir(path) else os.path.dirname(self.shards[0])
    meta_path = os.path.join(meta_dir, "meta.json")
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        self.meta = json.load(f)
    try:
      self._source = grain.sources.ArrayRecordDataSource(self.shards)
    except Exception as e:  # array_record raises plain RuntimeError/ValueError on a broken file header
      raise DataError(f"cannot open ArrayRecord shards at {path!r} ({type(e).__name__}: {e}); the files may be "
                      f"truncated or not ArrayRecord; rebuild them with `{PREPARE_HINT}`.") from e
    if len(self._source) == 0:
      raise DataError(f"the ArrayRecord shards at {path!r} hold no records; rebuild them with `{PREPARE_HINT}`.")

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return self._source[int(index)]

  def describe(self, index):
    return f"record {int(index)} of {self.path}"

  def __repr__(self):
    return f"ArrayRecordSource({self.path!r}, {len(self.shards)} shards, {len(self)} records)"


def _first_line(e):
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


class TfdsSource:
  """A prepared TFDS dataset read through `tfds.data_source` (array_record files; no TensorFlow needed).

  Records are TFDS feature dicts with the image already decoded to a uint8 array; string features are
  dropped by the pipeline (they cannot become device arrays).
  """

  def __init__(self, name, split="train", data_dir=None):
    import tensorflow_datasets as tfds  # heavy import; only when asked for
    self.name, self.split, self.data_dir = name, split, data_dir or None
    hint = (f"prepare it in array_record format first, e.g. `tfds build {name} --file_format=array_record"
            f"{' --data_dir=' + data_dir if data_dir else ''}`, or use data.kind='arrayrecord' with `{PREPARE_HINT}`")
    if not name:
      raise ConfigError("data.kind='tfds' needs data.tfds_name (e.g. 'celeb_a'); set it with --config.data.tfds_name.")
    where = self.data_dir or "the default TFDS data_dir (~/tensorflow_datasets)"
    try:
      self._source = tfds.data_source(name, split=split, data_dir=self.data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as e:
      # TFDS says this both for a misspelled catalog name and for a custom data set absent from data_dir.
      raise DataError(f"TFDS dataset {name!r} (data.tfds_name) is neither in the TFDS catalog nor prepared in {where};"
                      f" check the name (`tfds.list_builders()`) and data.path, or {hint}.") from e
    except (AssertionError, FileNotFoundError, NotImplementedError) as e:
      # Known name but nothing prepared (TFDS then assumes TFRecord files, which have no random access).
      raise DataError(f"TFDS dataset {name!r} is not prepared for random access in {where} "
                      f"({_first_line(e)}); {hint}.") from e
    except (ValueError, KeyError) as e:  # e.g. an unknown split
      raise DataError(f"cannot read TFDS dataset {name!r} split {split!r} from {where} ({_first_line(e)}); check "
                      f"data.split, or {hint}.") from e
    if len(self._source) == 0:
      raise DataError(f"TFDS dataset {name!r} split {split!r} is empty; choose another data.split.")

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return self._source[int(index)]

  def describe(self, index):
    return f"example {int(index)} of tfds {self.name}/{self.split}"

  def __repr__(self):
    return f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} examples)"


def _get(cfg, key, default=None):
  try:
    return cfg.get(key, default)
  except AttributeError:
    return getattr(cfg, key, default)


def make_source(data_cfg):
  """data_cfg.kind -> a RandomAccessDataSource (`len`, `__getitem__`, `describe`)."""
  kind = _get(data_cfg, "kind")
  images.check_resolution(_get(data_cfg, "resolution"))
  path = _get(data_cfg, "path") or ""
  if kind == "folder":
    if not path:
      raise ConfigError("data.kind='folder' needs data.path (a folder of .png/.jpg images).")
    return FolderSource(path)
  if kind == "arrayrecord":
    if not path:
      raise ConfigError(f"data.kind='arrayrecord' needs data.path (the DST_DIR of `{PREPARE_HINT}`).")
    return ArrayRecordSource(path)
  if kind == "tfds":
    return TfdsSource(_get(data_cfg, "tfds_name"), _get(data_cfg, "split") or "train", path or None)
  if kind == "generated":
    return generated.GeneratedSource(_get(data_cfg, "resolution"),
                                     _get(data_cfg, "num_examples", None) or generated.DEFAULT_NUM_IMAGES)
  if kind == "synthetic":
    # The synthetic face world lives in its own module, imported only when used.
    try:
      synthetic = importlib.import_module("jaxface.data.synthetic")
    except ModuleNotFoundError as e:
      if e.name != "jaxface.data.synthetic":
        raise
      raise ConfigError("data.kind='synthetic' needs jaxface.data.synthetic, which this installation does not "
                        "have; use data.kind='generated' for a file-free image set.") from e
    return synthetic.make_source(data_cfg)
  raise ConfigError(f"data.kind={kind!r} is not one of {KINDS}; set --config.data.kind to one of them.")


def describe(source, index):
  """Human-readable name of record `index` (a file path when the source knows one)."""
  fn = getattr(source, "describe", None)
  return fn(index) if fn else f"record {int(index)} of {type(source).__name__}"


__all__ = ["make_source", "FolderSource", "ArrayRecordSource", "TfdsSource", "list_images", "find_shards",
           "describe", "KINDS"]
