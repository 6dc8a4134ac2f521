"""Any image Pillow opens, as RGB pixels in [0, 1]: every mode brought to RGB by its own scale, or refused.

Pillow's ``convert("RGB")`` is right for 8-bit modes but silently wrong for deeper ones: it clips 16-bit
gray (``I;16``) at 255, so a 16-bit PNG arrives white, and truncates float pixels (``F``) to 0 or 1, so a
float TIFF arrives black. Here each mode is read by its own scale:

* **8-bit modes** (``1``, ``L``, ``P``, ``RGB``, ``RGBA``, ``RGBX``, ``RGBa``, ``CMYK``, ``YCbCr``, ``HSV``,
  ``LA``, ``La``, ``PA``) go through Pillow's conversion, divided by 255. Alpha is dropped and the colour
  channels are kept, as torchvision's and timm's loaders do; palette images (with or without
  transparency) are expanded through RGBA. 16-bit RGB PNGs are opened by Pillow as 8-bit RGB (the high
  byte of each sample): correct values, 8-bit precision.
* **16-bit gray** (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) is divided by its white level, 65535, or
  2^bits − 1 where a TIFF declares fewer bits per sample.
* **32-bit integer gray** (``I``) has no white level of its own. It is accepted where the file format
  fixes one: PNG and PNM (which Pillow opens as ``I`` holding 16-bit values scaled to 65535) and unsigned
  TIFFs of at most 16 bits per sample; any other ``I`` image is refused.
* **float gray** (``F``) is taken as intensities in [0, 1]; an image holding NaN, inf or values outside
  [0, 1] is refused rather than rescaled by a guess.
* ``LAB`` (Pillow's conversion to RGB is not colorimetric) and every other mode are refused.

Deep images are resized as floats, so their precision lasts until they are pixels in [0, 1]; a refused
file is a decoding failure like a truncated one (``--on-bad-image``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

EIGHT_BIT = ("1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV", "LA", "La", "PA")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
#: modes that only pass through Pillow's conversion to RGB by way of another mode
_VIA = {"P": "RGBA", "PA": "RGBA", "La": "LA"}
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT = 258, 339


class UnsupportedImage(ValueError):
    """The file decodes, but its pixels have no well-defined RGB reading."""


def _tiff_bits(image: Image.Image) -> tuple[int | None, int]:
    """(bits per sample, sample format: 1 unsigned, 2 signed, 3 float) a TIFF declares, else (None, 1)."""
    tags = getattr(image, "tag_v2", None)
    if image.format != "TIFF" or tags is None:
        return None, 1
    bits, kind = tags.get(_TIFF_BITS_PER_SAMPLE), tags.get(_TIFF_SAMPLE_FORMAT, 1)
    bits = bits[0] if isinstance(bits, tuple) else bits
    kind = kind[0] if isinstance(kind, tuple) else kind
    return (int(bits) if bits else None), int(kind)


def white_level(image: Image.Image) -> float:
    """The value of white in a 16- or 32-bit integer gray image (see the module docstring)."""
    bits, kind = _tiff_bits(image)
    if image.mode in SIXTEEN_BIT:
        return float(2 ** (bits if bits and bits <= 16 else 16) - 1)
    if image.format in ("PNG", "PPM"):
        return 65535.0
    if image.format == "TIFF" and kind == 1 and bits is not None and bits <= 16:
        return float(2**bits - 1)
    described = f"{bits}-bit {'signed ' if kind == 2 else ''}" if bits else ""
    raise UnsupportedImage(
        f"{described}integer pixels (mode I) of a {image.format or 'raw'} image have no defined white level; "
        "save it as 8- or 16-bit unsigned, or as float in [0, 1]"
    )


def decoded(image: Image.Image) -> Image.Image:
    """``image`` as Pillow mode ``RGB`` (8-bit modes) or ``F`` holding gray intensities in [0, 1] (deep ones)."""
    from PIL import Image as PILImage

    mode = image.mode
    if mode in EIGHT_BIT:
        return image.convert(_VIA[mode]).convert("RGB") if mode in _VIA else image.convert("RGB")
    if mode in SIXTEEN_BIT or mode == "I":
        scale = white_level(image)
        values = np.asarray(image).astype(np.float64) / scale
        if values.min(initial=0.0) < 0 or values.max(initial=0.0) > 1:
            raise UnsupportedImage(
                f"integer pixels reach {values.min() * scale:g}..{values.max() * scale:g}, outside 0..{scale:g}"
            )
        return PILImage.fromarray(values.astype(np.float32))  # 2-D float32: mode F
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise UnsupportedImage("float pixels (mode F) include NaN or inf")
        if values.size and (values.min() < 0 or values.max() > 1):
            raise UnsupportedImage(
                f"float pixels (mode F) span {values.min():g}..{values.max():g}; float images must hold "
                "intensities in [0, 1]"
            )
        return image
    raise UnsupportedImage(
        f"images of mode {mode} are not supported (8-bit modes, 16-bit gray, and float gray in [0, 1] are); "
        "convert the file to RGB"
    )


def as_array(image: Image.Image) -> np.ndarray:
    """A :func:`decoded` image (possibly resized and cropped) as float32 ``(H, W, 3)`` in [0, 1]."""
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255)
    # resampling a float image can overshoot (bicubic, lanczos): clip as the 8-bit path does
    gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.repeat(gray[..., None], 3, axis=2)
