"""Labelled image grids: what every command that writes a grid of faces saves, so the grid can be read.

  picture = labelled_grid(images, rows=["identity 0", ...], cols=["yaw -40", ...], corner="identity \\ yaw")
  save(path, picture)

`images` is [rows, cols, H, W, 3], uint8 or floats in [-1, 1]; images narrower than 64 pixels are enlarged by an
integer factor (nearest neighbour). Column labels go in a header band above the grid, row labels in a band to its
left, and `corner` (what the rows and columns vary) in the top-left corner.
"""

import os

import numpy as np

_PAD = 3
MIN_CELL = 64  # smaller images are enlarged (nearest neighbour) to this width, so that their labels fit
_INK, _PAPER = (20, 20, 20), (255, 255, 255)


def _font(size):
  from PIL import ImageFont
  try:
    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font
  except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
    return ImageFont.load_default()


def _to_uint8(images):
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip(np.rint((images.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _fit(draw, texts, width, size):
  """The largest font size <= `size` (and >= 8) at which every text fits in `width` pixels."""
  while size > 8 and any(draw.textlength(t, font=_font(size)) > width for t in texts):
    size -= 1
  return _font(size)


def _shorten(draw, text, font, width):
  """`text`, cut to fit `width` pixels (marked with '..')."""
  if draw.textlength(text, font=font) <= width:
    return text
  while len(text) > 1 and draw.textlength(text + "..", font=font) > width:
    text = text[:-1]
  return text + ".."


def labelled_grid(images, rows=None, cols=None, corner=""):
  """[R, C, H, W, 3] images -> uint8 [H', W', 3]: the grid with the `cols` labels above it and the `rows` labels
  to its left (None: no band)."""
  from PIL import Image, ImageDraw
  images = _to_uint8(images)
  scale = -(-MIN_CELL // images.shape[3])  # ceil
  if scale > 1:
    images = images.repeat(scale, 2).repeat(scale, 3)
  n_rows, n_cols, h, w = images.shape[:4]
  if (rows is not None and len(rows) != n_rows) or (cols is not None and len(cols) != n_cols):
    raise ValueError(f"a {n_rows} x {n_cols} grid needs {n_rows} row and {n_cols} column labels")
  rows = None if rows is None else [str(r) for r in rows]
  cols = None if cols is None else [str(c) for c in cols]
  draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  font = _fit(draw, cols or [], w - 2 * _PAD, max(10, min(16, h // 5)))
  text_h = draw.textbbox((0, 0), "Ag", font=font)[3]
  labels = (rows or []) + ([corner] if corner and cols is not None else [])
  row_band = 0 if rows is None else min(2 * w, max(int(draw.textlength(t, font=font)) for t in labels) + 2 * _PAD)
  col_band = 0 if cols is None else text_h + 2 * _PAD
  canvas = Image.new("RGB", (row_band + n_cols * w, col_band + n_rows * h), _PAPER)
  draw = ImageDraw.Draw(canvas)
  for i in range(n_rows):
    for j in range(n_cols):
      canvas.paste(Image.fromarray(images[i, j]), (row_band + j * w, col_band + i * h))
  for j, text in enumerate(cols or []):
    text = _shorten(draw, text, font, w - 2 * _PAD)
    draw.text((row_band + j * w + (w - draw.textlength(text, font=font)) / 2, _PAD), text, fill=_INK, font=font)
  for i, text in enumerate(rows or []):
    text = _shorten(draw, text, font, row_band - 2 * _PAD)
    draw.text((_PAD, col_band + i * h + (h - text_h) / 2), text, fill=_INK, font=font)
  if corner and rows is not None and cols is not None:
    draw.text((_PAD, _PAD), _shorten(draw, corner, font, row_band - 2 * _PAD), fill=_INK, font=font)
  return np.asarray(canvas)


def save(path, picture):
  """Writes a uint8 [H, W, 3] picture as PNG, creating its folder."""
  from PIL import Image
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(np.asarray(picture)).save(path)
  return path
