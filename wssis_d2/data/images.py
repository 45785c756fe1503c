"""The one image reader of wssis-d2, and the checks of image files before and while they are read.

Every stage that reads an image (the SOLOv2 mapper in training and pseudo-labeling, MaskRefineNet's
mapper and refinement, the overlays of ``tools/visualize.py`` and the demo figures) calls
:func:`read_image`, so an image comes out the same everywhere:

* detectron2's ``read_image`` steps: EXIF orientation applied (an orientation-6 JPEG comes out rotated,
  height and width swapped), then PIL's conversion to ``format`` ("BGR": RGB conversion with the channels
  flipped). Grayscale (L) is replicated to 3 channels, RGBA loses its alpha channel (no blending),
  palette (P) images are looked up in their palette.
* 16-bit images (PIL modes "I;16*", or "I" with values in [0, 65535], e.g. a 16-bit PNG) are scaled
  to 8 bits over the full 16-bit range (round(v * 255 / 65535)) before that conversion; PIL alone would
  clip every value above 255 to white. Other integer ranges and float ("F") images are refused.
* A missing, unreadable (not an image) or truncated file raises
  :class:`~wssis_d2.utils.errors.WSSISInputError` naming the file and the image id.

:func:`check_image_files` is the cheap pass at load time (``os.path.isfile`` per record), so that a missing
file fails before training, not hours into it; with ``skip`` (``DATALOADER.WSSIS_SKIP_BAD_IMAGES``,
``--skip-bad-images``) the records are dropped with a warning and a count instead, and ``decode`` also reads
every image once (truncated files too; used where a bad image cannot be skipped at read time).
"""
import io
import logging
import os
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image

from detectron2.data import detection_utils as d2_utils

from ..utils.errors import WSSISInputError

__all__ = ["read_image", "decode_image", "convert_image_format", "image_error", "check_image_files",
           "SIXTEEN_BIT_MODES"]

logger = logging.getLogger(__name__)

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _where(file_name, image_id) -> str:
    return f"{file_name}" + (f" (image id {image_id})" if image_id is not None else "")


def _to_8bit(image: Image.Image, where: str) -> Image.Image:
    """16-bit (or "I" with 16-bit values) PIL image -> mode "L", round(v * 255 / 65535)."""
    arr = np.asarray(image).astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise WSSISInputError(f"{where}: {image.mode} image with values in [{arr.min()}, {arr.max()}]; only 8-bit "
                              "and 16-bit images are supported")
    return Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def read_image(file_name: str, format: Optional[str] = None, image_id=None) -> np.ndarray:
    """Read an image as detectron2's ``read_image`` does (module docstring), 16-bit scaled to 8 bits.

    Args:
        file_name: image path.
        format: "BGR", "RGB", "L", ... (``INPUT.FORMAT``); None keeps PIL's mode.
        image_id: named in the error message.

    Returns:
        (H, W, C) uint8 array, H x W after the EXIF orientation (C = 3 for "BGR" / "RGB", 1 for "L").

    Raises:
        WSSISInputError: the file is missing, not an image, truncated, or of an unsupported mode.
    """
    try:
        with open(file_name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WSSISInputError(image_error(file_name, image_id, e)) from e
    return decode_image(data, format, file_name, image_id)


def decode_image(data: bytes, format: Optional[str] = None, file_name: str = "image", image_id=None) -> np.ndarray:
    """:func:`read_image` of an image file's bytes already in memory (e.g. fetched over HTTP); ``file_name``
    and ``image_id`` are named in the error message."""
    where = _where(file_name, image_id)
    try:
        # Decoded from memory, not from the file: Pillow < 10 decodes compressed (LZW, deflate) TIFFs with
        # libtiff on a dup of the file's descriptor, which libtiff closes and Pillow then closes again. In a
        # multithreaded process (a DataLoader worker) that second close can hit a descriptor another thread
        # has just opened: torch's shared-memory tensors then fail with "Bad file descriptor" (seen on the
        # Cell Tracking Challenge TIFFs). Pillow 10 fixed it ("Do not close provided file handles with
        # libtiff"); requirements.txt pins Pillow < 10 for detectron2 0.6.
        image = Image.open(io.BytesIO(data))
        if image.mode in SIXTEEN_BIT_MODES:
            image = _to_8bit(image, where)
        elif image.mode == "F":
            raise WSSISInputError(f"{where}: floating-point (mode F) images are not supported; convert it "
                                  "to 8-bit RGB")
        image = d2_utils._apply_exif_orientation(image)  # detectron2's work-around of a Pillow bug
        return d2_utils.convert_PIL_to_numpy(image, format)
    except OSError as e:
        raise WSSISInputError(image_error(file_name, image_id, e)) from e


def convert_image_format(image: np.ndarray, from_format: str, to_format: str) -> np.ndarray:
    """An (H, W, C) uint8 image in ``from_format`` -> in ``to_format`` ("BGR", "RGB", "L", ...), through
    RGB and PIL's conversion as :func:`read_image` converts: the result equals reading the file in
    ``to_format`` (e.g. a MaskRefineNet in RGB after a SOLOv2 in BGR). Same format: returned as is."""
    if from_format == to_format:
        return image
    rgb = np.ascontiguousarray(d2_utils.convert_image_to_rgb(image, from_format))
    return d2_utils.convert_PIL_to_numpy(Image.fromarray(rgb.astype(np.uint8)), to_format)


class BadImageSkipper:
    """The mappers' handling of ``DATALOADER.WSSIS_SKIP_BAD_IMAGES``: ``read(fn, *args)`` returns
    ``fn(*args)``, or, when ``skip`` is set and ``fn`` raises :class:`WSSISInputError` (a missing,
    truncated or unreadable image), logs it with a running count (``num_skipped``, per process) and
    returns None (detectron2's training loader then draws another image)."""

    def __init__(self, skip: bool):
        self.skip = bool(skip)
        self.num_skipped = 0

    def read(self, fn, *args):
        try:
            return fn(*args)
        except WSSISInputError as e:
            if not self.skip:
                raise
            self.num_skipped += 1
            logger.warning(f"skipped ({self.num_skipped} bad images so far in this process): {e}")
            return None


def image_error(file_name: str, image_id, error: BaseException) -> str:
    """The message of an image that cannot be read (missing, not an image, truncated)."""
    where = _where(file_name, image_id)
    if isinstance(error, FileNotFoundError):
        return f"{where}: image file not found"
    if "truncated" in str(error):
        return f"{where}: image file is truncated (incomplete download or copy?)"
    if isinstance(error, Image.UnidentifiedImageError):
        return f"{where}: not an image file PIL can read"
    return f"{where}: cannot read the image ({type(error).__name__}: {error})"


def _decode_error(file_name: str, image_id) -> Optional[str]:
    try:
        read_image(file_name, None, image_id)
    except WSSISInputError as e:
        return str(e)
    return None


def check_image_files(records: Sequence[dict], source: str = "dataset", *, skip: bool = False,
                      decode: bool = False) -> List[dict]:
    """Check that every record's ``file_name`` exists (and, with ``decode``, reads: slower, one decode each).

    Args:
        records: dataset dicts (``file_name``, ``image_id``).
        source: names the dataset in messages.
        skip: drop bad records with a warning and a count instead of raising.
        decode: also read every image (finds truncated or non-image files; costs one decode per image).

    Returns:
        the records kept (all of them, unless ``skip``).

    Raises:
        WSSISInputError naming the first bad file and its image id, and how many are bad (unless ``skip``).
    """
    bad = {}  # index -> message
    for k, r in enumerate(records):
        fn = r["file_name"]
        why = (f"{_where(fn, r.get('image_id'))}: image file not found" if not os.path.isfile(fn)
               else _decode_error(fn, r.get("image_id")) if decode else None)
        if why is not None:
            bad[k] = why
    if not bad:
        return list(records)
    messages = list(bad.values())
    if not skip:
        more = (f" ({len(bad)} of {len(records)} images of {source} are bad; DATALOADER.WSSIS_SKIP_BAD_IMAGES True "
                "or --skip-bad-images skips them)") if len(bad) > 1 else ""
        raise WSSISInputError(messages[0] + more)
    for why in messages[:10]:
        logger.warning(f"skipped: {why}")
    logger.warning(f"{source}: skipped {len(bad)} of {len(records)} images that cannot be read")
    return [r for k, r in enumerate(records) if k not in bad]
