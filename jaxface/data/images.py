"""Image decode/crop/resize helpers and the ArrayRecord record format.

Every image that enters training goes through `to_square_rgb`: decode (PNG/JPEG via PIL), convert to RGB,
center-crop to a square, resize to the training resolution, uint8. Keeping one function for folder,
ArrayRecord, TFDS and `prepare` means an image looks the same whichever way it reached the model.

Record format (what `prepare` writes into ArrayRecord shards):
  * an image with no metadata is stored as plain PNG bytes (lossless, readable by any tool);
  * an image with metadata is an uncompressed `.npz` (zip) whose `image_png` entry holds the PNG bytes as a
    uint8 vector and whose other entries are the metadata arrays (factors, segmentation, ...).
The two are told apart by their magic bytes, so readers need no side channel.
"""

import io
import os
import zipfile

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxface.errors import ConfigError, DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
ZIP_MAGIC = b"PK\x03\x04"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# Errors that mean "this file is not a usable image" (as opposed to a bug in our code).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError,
                 zipfile.BadZipFile, EOFError, KeyError)


def list_images(root):
  """Sorted relative paths of every .png/.jpg/.jpeg under `root` (recursive, case-insensitive, no dotfiles)."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames.sort()  # deterministic walk order on every filesystem
    for name in filenames:
      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
  return sorted(found)


def check_resolution(resolution, key="data.resolution"):
  """Returns `resolution` as int, or raises ConfigError unless it is a power of two >= 4."""
  try:
    r = int(resolution)
  except (TypeError, ValueError):
    raise ConfigError(f"{key}={resolution!r} is not an integer; set it to a power of two >= 4 (e.g. 64, 256).")
  if r != resolution or r < 4 or (r & (r - 1)) != 0:
    raise ConfigError(f"{key}={resolution!r} must be a power of two >= 4 (the generator doubles resolution per "
                      f"block); set it to e.g. 64, 128 or 256.")
  return r


def decode_image(data, min_size=None):
  """Encoded PNG/JPEG bytes -> uint8 [H, W, 3] RGB. Raises one of DECODE_ERRORS on a broken file.

  `min_size` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, an area-like reduction)
  as long as both sides stay >= min_size: a 1024px photo headed for 256px decodes 16x fewer pixels, and
  the Lanczos resize that follows sees a smaller input. PNGs always decode at full size.
  """
  with Image.open(io.BytesIO(bytes(data))) as im:
    if min_size and im.format == "JPEG":
      im.draft("RGB", (int(min_size), int(min_size)))
    im.load()  # force the full decode now so truncated files fail here, not later
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation (phone photos): show it the way viewers do
      im = ImageOps.exif_transpose(im)
    return pil_to_rgb(im)


PHOTO_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # what a user's photo may be (no plugin formats such as EPS/PSD)
MAX_PHOTO_PIXELS = 40_000_000                  # a 40 MP photo is ~120 MB as RGB


class UnsupportedImageError(DataError):
  """The file is not an image of PHOTO_FORMATS."""


class ImageTooLargeError(DataError):
  """The image has more pixels than allowed (checked from the header, before decoding)."""


def read_photo(source, max_pixels=MAX_PHOTO_PIXELS):
  """A user's photo (path or bytes) -> uint8 [H, W, 3], EXIF orientation applied. Nothing is decoded before the
  header says the format is one of PHOTO_FORMATS and the size is within `max_pixels`. Raises
  UnsupportedImageError, ImageTooLargeError, or DataError (missing, truncated or corrupt), each saying what to do."""
  what = "the image" if isinstance(source, (bytes, bytearray)) else str(source)
  try:
    im = Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source,
                    formats=PHOTO_FORMATS)  # reads the header only
  except FileNotFoundError:
    raise DataError(f"no such image file: {what}") from None
  except UnidentifiedImageError:
    raise UnsupportedImageError(f"{what} is not a {', '.join(PHOTO_FORMATS[:-1])} or {PHOTO_FORMATS[-1]} image; "
                                f"convert it to PNG or JPEG") from None
  except Image.DecompressionBombError as e:
    raise ImageTooLargeError(f"{what} is too large to decode safely ({e}); downscale it first") from None
  except (OSError, SyntaxError, ValueError) as e:  # a recognised header that is broken
    raise DataError(f"{what} could not be read ({e}); it may be corrupt") from None
  with im:
    if im.width * im.height > max_pixels:
      raise ImageTooLargeError(f"{what} is {im.width}x{im.height} = {im.width * im.height:,} pixels, more than the "
                               f"{max_pixels:,} allowed; downscale it first")
    try:
      im.load()
      if im.getexif().get(0x0112, 1) != 1:
        im = ImageOps.exif_transpose(im)
      return pil_to_rgb(im)
    except Image.DecompressionBombError as e:
      raise ImageTooLargeError(f"{what} is too large to decode safely ({e}); downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # "image file is truncated" is an OSError
      raise DataError(f"{what} could not be decoded ({e}); it may be truncated or corrupt") from None


def pil_to_rgb(im):
  """PIL image of any mode -> uint8 [H, W, 3]. Alpha is composited on black; 16-bit is scaled to 8-bit."""
  if im.mode in ("I;16", "I;16B", "I;16L", "I"):
    a = np.asarray(im, dtype=np.float64)
    a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(a[..., None], 3, axis=-1)
  if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
    im = im.convert("RGBA")
    bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
    im = Image.alpha_composite(bg, im)
  return np.asarray(im.convert("RGB"), dtype=np.uint8)


def array_to_rgb(image):
  """A decoded image array ([H, W], [H, W, 1|3|4], any int/float dtype in 0..255) -> uint8 [H, W, 3]."""
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[..., None]
  if a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
    raise ValueError(f"expected an image of shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {a.shape}")
  if a.shape[-1] == 1:
    a = np.repeat(a, 3, axis=-1)
  elif a.shape[-1] == 4:
    a = a[..., :3]
  if a.dtype != np.uint8:
    if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
      a = a * 255.0  # float images in [0, 1]
    a = np.clip(np.round(np.nan_to_num(a.astype(np.float64))), 0, 255).astype(np.uint8)
  return np.ascontiguousarray(a)


def center_crop_resize(image, resolution):
  """uint8 [H, W, 3] -> uint8 [R, R, 3]: crop the centred square, then resize.

  Downscaling uses PIL's Lanczos-3 with the kernel widened by the scale factor (antialiased, i.e. it
  averages the area under each output pixel, no aliasing). Upscaling uses the same Lanczos kernel unwidened.
  """
  h, w = image.shape[:2]
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  sq = image[top:top + s, left:left + s]
  if s == resolution:
    return np.ascontiguousarray(sq)
  im = Image.fromarray(np.ascontiguousarray(sq), mode="RGB")
  im = im.resize((resolution, resolution), resample=Image.Resampling.LANCZOS)
  return np.asarray(im, dtype=np.uint8)


def to_square_rgb(image_or_bytes, resolution):
  """Encoded bytes or a decoded array -> uint8 [R, R, 3] (the one path every training image takes)."""
  if isinstance(image_or_bytes, (bytes, bytearray, memoryview)):
    img = decode_image(image_or_bytes, min_size=resolution)
  else:
    img = array_to_rgb(image_or_bytes)
  return center_crop_resize(img, resolution)


def encode_png(image, compress_level=1):
  """uint8 [H, W, 3] -> PNG bytes. Level 1 keeps `prepare` fast; PNG is lossless at any level."""
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB").save(
      buf, format="PNG", compress_level=compress_level)
  return buf.getvalue()


def encode_record(image, metadata=None):
  """uint8 [H, W, 3] (+ dict of numeric arrays) -> record bytes (see module docstring)."""
  png = encode_png(image)
  if not metadata:
    return png
  buf = io.BytesIO()
  arrays = {"image_png": np.frombuffer(png, dtype=np.uint8)}
  for k, v in metadata.items():
    if k == "image_png":
      raise ValueError("metadata key 'image_png' is reserved for the image")
    v = np.asarray(v)
    if v.dtype.kind not in "biuf":
      raise ValueError(f"metadata {k!r} has dtype {v.dtype}; only numeric arrays are stored")
    arrays[k] = v
  np.savez(buf, **arrays)  # uncompressed: PNG is already compressed, metadata is small
  return buf.getvalue()


def decode_record(data):
  """Record bytes -> dict {"image": encoded PNG/JPEG bytes, **metadata arrays}. Does not decode pixels."""
  data = bytes(data)
  if data.startswith(ZIP_MAGIC):
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      out = {k: z[k] for k in z.files}
    if "image_png" not in out:
      raise ValueError("record is an npz without an 'image_png' entry")
    out["image"] = out.pop("image_png").tobytes()
    return out
  return {"image": data}
