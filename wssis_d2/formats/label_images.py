"""Label images -> COCO instances json: one instance per label value (``datasets/import_masks.py``).

A **label image** is a 2D integer image of the size of its image: 0 is background, every other value is
one instance (the format of the Cell Tracking Challenge, Cellpose, StarDist, ...). 8-, 16- and 32-bit
PNG / TIFF files are read: TIFF with tifffile (LZW and other compressed TIFFs through imagecodecs), PNG with
PIL (a palette PNG gives its palette indices, a 1-bit PNG 0/1).

Inputs, images and labels alike: a **folder** (its files, not searched recursively; labels ``.png``,
``.tif``, ``.tiff``, images any extension of :attr:`ImageIndex.EXTENSIONS`) or one **TIFF stack** (one
page per frame). Images of a stack are written out as PNG files (8 or 16 bits kept, RGB kept) to
``image_output``, named ``<stack stem>_<frame:04d>.png``, so that ``file_name`` points at real files.

Pairing (:func:`pair_by_name`, when both are folders): a label file belongs to the image whose stem is the
longest image stem contained in the label file's stem (equal stems included: ``cell1.png`` <->
``cell1.tif``, ``cell1_mask.png`` <-> ``cell1.png``); when no image stem is contained in it, to the image
with the same trailing number (the last run of digits of the stem, as an integer: the Cell Tracking
Challenge's ``man_seg007.tif`` <-> ``t007.tif``, also ``mask7`` <-> ``img0007``). Every image needs exactly
one label file and every label file its image. When either side is a stack, frame ``k`` pairs with the
``k``-th item of the other side (folders in natural order: ``t2`` before ``t10``).

Annotations (:func:`label_annotations`): one per label value, compressed RLE ``segmentation``, ``bbox``
[x, y, w, h] and ``area`` in pixels, ``iscrowd`` 0, and ``label_value`` (the value in the label image).
A value in several disconnected pieces (8-connectivity) stays one instance and is counted (logged;
``info["num_multi_piece_labels"]``, their annotation ids in ``info["multi_piece_annotation_ids"]``). A label
image without any non-zero value gives an image with no annotations. Image ids are 1.. in image order,
annotation ids 1.. in image order, then by label value.

Classes: one ``category`` for every instance, or ``categories`` (a COCO json's list) with a class map CSV
(:class:`ClassMap`): columns ``label,category`` (every image) and an optional ``image`` column (rows for one
image, matched by the image's ``file_name`` or file name, or the label file's name; they override the
rows without an image). ``category`` is a category id of the list, otherwise a category name.

Bad input raises :class:`~wssis_d2.utils.errors.WSSISInputError` naming the file (and frame) and what is
wrong: image and label sizes differ (the image's size as :func:`~wssis_d2.data.images.read_image` reads it,
EXIF orientation applied), float, negative or multi-channel labels, an unreadable file, an image without its
label file or a label file without its image, a stack whose frame count differs from the other side's, a
label value the class map does not give a class.
"""
import csv
import logging
import os
import re
from contextlib import ExitStack
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tifffile
from PIL import Image

from ..utils.errors import WSSISInputError
from ..utils.part_files import atomic_output
from ..data.coco_masks import mask_annotation
from ..data.images import read_image
from .importers.core import ImageIndex
from ..data.json_io import load_json, write_json_atomic
from ..data.validation import check_coco

__all__ = ["LABEL_EXTENSIONS", "CONNECTIVITY", "ClassMap", "natural_key", "trailing_number", "pair_by_name",
           "read_label_file", "check_label_array", "label_annotations", "labels_to_coco", "import_label_images",
           "single_category"]

logger = logging.getLogger(__name__)

TOOL = "wssis_d2.formats.label_images (datasets/import_masks.py)"
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")
TIFF_EXTENSIONS = (".tif", ".tiff")
CONNECTIVITY = 8  # pieces of a label value: 8-connected (touching diagonally = one piece)
PAIRING_RULE = ("same stem, else the longest image stem contained in the label stem, else the same trailing "
                "number")


def natural_key(name: str):
    """Sort key with digit runs compared as numbers: ``t2`` before ``t10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def trailing_number(stem: str) -> Optional[int]:
    """The last run of digits of ``stem`` as an integer (``man_seg007`` -> 7, ``img_3_v2`` -> 2), or None."""
    m = re.search(r"(\d+)\D*$", stem)
    return int(m.group(1)) if m else None


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def _list_files(folder: str, extensions: Sequence[str], what: str) -> List[str]:
    names = sorted((f for f in os.listdir(folder)
                    if f.lower().endswith(tuple(extensions)) and os.path.isfile(os.path.join(folder, f))),
                   key=natural_key)
    if not names:
        raise WSSISInputError(f"{folder}: no {what} files ({', '.join(extensions)}) in this folder")
    return names


def pair_by_name(image_names: Sequence[str], label_names: Sequence[str], images_dir: str = "<images>",
                 labels_dir: str = "<labels>") -> List[str]:
    """The label file of each image, by the pairing rule of the module docstring.

    Args:
        image_names, label_names: file names (in their folders).
        images_dir, labels_dir: the folders, named in errors.

    Returns:
        the label file name of each of ``image_names``, in their order.

    Raises:
        WSSISInputError naming the file: a label without its image, an image without its label, two
        labels for one image, two images with one stem or one trailing number that a label needs.
    """
    by_stem: Dict[str, str] = {}
    for name in image_names:
        s = _stem(name)
        if s in by_stem:
            raise WSSISInputError(f"{os.path.join(images_dir, name)}: two images with the stem {s!r} "
                                  f"({by_stem[s]}, {name}): labels cannot be paired with them by name")
        by_stem[s] = name
    by_number: Dict[int, List[str]] = {}
    for name in image_names:
        n = trailing_number(_stem(name))
        if n is not None:
            by_number.setdefault(n, []).append(name)
    label_of: Dict[str, str] = {}
    for label in label_names:
        ls = _stem(label)
        where = os.path.join(labels_dir, label)
        # Image stems contained in the label stem: every substring looked up (cheap: stems are short).
        contained = {ls[i:j] for i in range(len(ls)) for j in range(i + 1, len(ls) + 1)} & by_stem.keys()
        if contained:
            longest = max(len(s) for s in contained)
            best = sorted(s for s in contained if len(s) == longest)
            if len(best) > 1:
                raise WSSISInputError(f"{where}: the label file's stem contains the stems of several images "
                                      f"({', '.join(by_stem[s] for s in best)})")
            image = by_stem[best[0]]
        else:
            n = trailing_number(ls)
            candidates = by_number.get(n, []) if n is not None else []
            if not candidates:
                raise WSSISInputError(f"{where}: no image in {images_dir} for this label file (pairing: "
                                      f"{PAIRING_RULE})")
            if len(candidates) > 1:
                raise WSSISInputError(f"{where}: its trailing number {n} matches several images "
                                      f"({', '.join(candidates)})")
            image = candidates[0]
        if image in label_of:
            raise WSSISInputError(f"{where}: {label_of[image]} and {label} are both label files of the image "
                                  f"{os.path.join(images_dir, image)}")
        label_of[image] = label
    missing = [name for name in image_names if name not in label_of]
    if missing:
        more = f" ({len(missing)} images have none)" if len(missing) > 1 else ""
        raise WSSISInputError(f"{os.path.join(images_dir, missing[0])}: no label file in {labels_dir} for this "
                              f"image{more} (pairing: {PAIRING_RULE})")
    return [label_of[name] for name in image_names]


def check_label_array(label: np.ndarray, where: str) -> np.ndarray:
    """A label image as a 2D array of non-negative integers (bool becomes 0/1), or WSSISInputError."""
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if label.dtype == bool:
        label = label.astype(np.uint8)
    if label.dtype.kind == "f":
        raise WSSISInputError(f"{where}: floating-point label image ({label.dtype}); label images must hold "
                              "integers (0 = background, every other value one instance)")
    if label.dtype.kind not in "iu":
        raise WSSISInputError(f"{where}: label image of type {label.dtype}; label images must hold integers")
    if label.ndim != 2:
        raise WSSISInputError(f"{where}: label image of shape {label.shape}; expected one 2D frame of integer "
                              "labels (a colour or multi-channel image is not a label image)")
    if label.dtype.kind == "i" and label.size and label.min() < 0:
        raise WSSISInputError(f"{where}: negative label values (min {label.min()}); labels must be >= 0 "
                              "(0 = background)")
    return label


def _tiff_error(path: str, e: Exception) -> WSSISInputError:
    return WSSISInputError(f"{path}: cannot read the TIFF file ({type(e).__name__}: {e})")


def read_label_file(path: str) -> np.ndarray:
    """Read and check one label image file (TIFF: one page; PNG); returns (H, W) integers."""
    if not os.path.isfile(path):
        raise WSSISInputError(f"{path}: label file not found")
    if path.lower().endswith(TIFF_EXTENSIONS):
        try:
            with tifffile.TiffFile(path) as tf:
                if len(tf.pages) != 1:
                    raise WSSISInputError(f"{path}: {len(tf.pages)} pages; a label file of a folder must hold one "
                                          "frame (give a multi-frame stack itself as the labels)")
                label = tf.pages[0].asarray()
        except (OSError, ValueError) as e:
            if isinstance(e, WSSISInputError):
                raise
            raise _tiff_error(path, e) from e
    else:
        try:
            with Image.open(path) as im:
                if im.mode == "F":
                    raise WSSISInputError(f"{path}: floating-point label image (mode F); label images must hold "
                                          "integers (0 = background, every other value one instance)")
                label = np.asarray(im)
        except OSError as e:
            raise WSSISInputError(f"{path}: cannot read the label image ({type(e).__name__}: {e})") from e
    return check_label_array(label, path)


def _open_stack(path: str, stack: ExitStack) -> "tifffile.TiffFile":
    if not path.lower().endswith(TIFF_EXTENSIONS):
        raise WSSISInputError(f"{path}: not a folder, nor a TIFF stack (.tif, .tiff)")
    try:
        return stack.enter_context(tifffile.TiffFile(path))
    except (OSError, ValueError) as e:
        raise _tiff_error(path, e) from e


def _stack_frame(tf: "tifffile.TiffFile", k: int, where: str) -> np.ndarray:
    try:
        return tf.pages[k].asarray()
    except (OSError, ValueError) as e:
        raise WSSISInputError(f"{where}: cannot read the frame ({type(e).__name__}: {e})") from e


def _write_frame(frame: np.ndarray, path: str, where: str) -> None:
    """One image frame -> PNG (uint8 / uint16 kept; (H, W), (H, W, 3) RGB or (H, W, 4) RGBA), atomically."""
    if frame.dtype not in (np.uint8, np.uint16):
        raise WSSISInputError(f"{where}: image frame of type {frame.dtype}; only 8- and 16-bit unsigned images "
                              "are supported")
    if frame.ndim == 3 and frame.shape[-1] in (3, 4):
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR if frame.shape[-1] == 3 else cv2.COLOR_RGBA2BGRA)
    elif frame.ndim != 2:
        raise WSSISInputError(f"{where}: image frame of shape {frame.shape}; expected (H, W) or (H, W, 3)")
    ok, buf = cv2.imencode(".png", frame)
    if not ok:
        raise WSSISInputError(f"{where}: cannot encode the frame as PNG")
    with atomic_output(path, "wb") as f:
        f.write(buf.tobytes())


class ClassMap:
    """Label value -> category id, from a CSV (module docstring): ``label,category[,image]`` with a header.

    Args:
        path: the CSV file.
        categories: COCO categories (``id``, ``name``) the ``category`` column refers to.
    """

    def __init__(self, path: str, categories: Sequence[dict]):
        self.path = path
        ids = {int(c["id"]) for c in categories}
        names: Dict[str, List[int]] = {}
        for c in categories:
            names.setdefault(str(c.get("name")), []).append(int(c["id"]))
        self._rows: Dict[Tuple[Optional[str], int], int] = {}
        if not os.path.isfile(path):
            raise WSSISInputError(f"{path}: class map file not found")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = [h.strip() for h in (reader.fieldnames or [])]
            if "label" not in fields or "category" not in fields:
                raise WSSISInputError(f"{path}: the class map needs a header with the columns label,category "
                                      f"(and optionally image), got {fields}")
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                where = f"{path}, line {line}"
                try:
                    value = int(row["label"])
                except ValueError:
                    raise WSSISInputError(f"{where}: label {row['label']!r} is not an integer") from None
                if value <= 0:
                    raise WSSISInputError(f"{where}: label {value}: labels are > 0 (0 is background)")
                cat = row["category"]
                if cat.lstrip("-").isdigit() and int(cat) in ids:
                    cat_id = int(cat)
                elif len(names.get(cat, [])) == 1:
                    cat_id = names[cat][0]
                else:
                    why = "is the name of several categories" if cat in names else "is neither a category id nor name"
                    raise WSSISInputError(f"{where}: category {cat!r} {why} of the categories "
                                          f"{[(c['id'], c.get('name')) for c in categories]}")
                key = (row.get("image") or None, value)
                if key in self._rows and self._rows[key] != cat_id:
                    raise WSSISInputError(f"{where}: label {value} is given two categories"
                                          + (f" for the image {key[0]}" if key[0] else ""))
                self._rows[key] = cat_id
        if not self._rows:
            raise WSSISInputError(f"{path}: the class map has no rows")

    def category_ids(self, values: Sequence[int], image_keys: Sequence[str], where: str) -> Dict[int, int]:
        """{value: category id} of the label values of one image; ``image_keys`` name the image as the
        ``image`` column may (its ``file_name``, file name, label file name)."""
        out = {}
        for v in values:
            v = int(v)
            for key in list(image_keys) + [None]:
                if (key, v) in self._rows:
                    out[v] = self._rows[(key, v)]
                    break
            else:
                raise WSSISInputError(f"{where}: label value {v} has no category in the class map {self.path}")
        return out


def single_category(name: str) -> List[dict]:
    """The categories of a one-class import: ``[{"id": 1, "name": name}]``."""
    if not name or not name.strip():
        raise WSSISInputError("the category name is empty")
    return [{"id": 1, "name": name.strip()}]


def label_annotations(label: np.ndarray, image_id: int, first_ann_id: int,
                      category_of: Callable[[np.ndarray], Dict[int, int]]) -> Tuple[List[dict], List[int]]:
    """The annotations of one label image (one per non-zero value, values ascending).

    The values, their pixel counts and bounding boxes come from one sort of the image (no loop over
    pixels); each instance's mask is then built in its bounding box and encoded (one loop over instances).

    Args:
        label: (H, W) non-negative integers (:func:`check_label_array`).
        image_id: the annotations' ``image_id``.
        first_ann_id: id of the first annotation (the others follow).
        category_of: (K,) label values -> {value: category id}.

    Returns:
        (annotations, the label values that are in several pieces).
    """
    h, w = label.shape
    flat = label.ravel()
    order = np.argsort(flat, kind="stable")
    values, starts = np.unique(flat[order], return_index=True)
    ys, xs = np.divmod(order, w)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts) + 1
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts) + 1
    nonzero = values != 0
    values, y0, y1, x0, x1 = values[nonzero], y0[nonzero], y1[nonzero], x0[nonzero], x1[nonzero]
    cats = category_of(values) if len(values) else {}
    annotations, multi_piece = [], []
    for k, v in enumerate(values.tolist()):
        crop = label[y0[k]:y1[k], x0[k]:x1[k]] == v
        mask = np.zeros((h, w), bool)
        mask[y0[k]:y1[k], x0[k]:x1[k]] = crop
        ann = mask_annotation(mask, first_ann_id + k, image_id, cats[v])
        ann["label_value"] = v
        annotations.append(ann)
        if cv2.connectedComponents(crop.astype(np.uint8), connectivity=CONNECTIVITY)[0] > 2:  # background + 1
            multi_piece.append(v)
    return annotations, multi_piece


def _relative(path: str, root: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")


def _image_files(images: str, image_output: Optional[str], stack: ExitStack):
    """(the image files, the open image stack or None); a stack's frames are written later."""
    if os.path.isdir(images):
        return [os.path.join(images, n) for n in _list_files(images, ImageIndex.EXTENSIONS, "image")], None
    if image_output is None:
        raise WSSISInputError(f"{images}: the images are a TIFF stack: give a folder to write its frames to "
                              "(--image-output)")
    tf = _open_stack(images, stack)
    return [os.path.join(image_output, f"{_stem(images)}_{k:04d}.png") for k in range(len(tf.pages))], tf


def _label_readers(labels: str, images: str, image_files: Sequence[str], image_folder: bool, stack: ExitStack):
    """(where each image's label is, for messages; a reader of it), paired with ``image_files`` (by name when
    both are folders, else by index)."""
    if os.path.isdir(labels):
        names = _list_files(labels, LABEL_EXTENSIONS, "label")
        if image_folder:
            names = pair_by_name([os.path.basename(f) for f in image_files], names, images, labels)
        elif len(names) != len(image_files):
            raise WSSISInputError(f"{images}: {len(image_files)} frames, but {labels} holds {len(names)} label "
                                  "files (a stack pairs by index)")
        where = [os.path.join(labels, n) for n in names]
        return where, [lambda p=p: read_label_file(p) for p in where]
    tf = _open_stack(labels, stack)
    if len(tf.pages) != len(image_files):
        what = "image files" if image_folder else "frames"
        raise WSSISInputError(f"{labels}: {len(tf.pages)} frames, but {images} holds {len(image_files)} {what} "
                              "(a stack pairs by index)")
    where = [f"{labels} (frame {k})" for k in range(len(tf.pages))]
    return where, [lambda k=k, w=w: check_label_array(_stack_frame(tf, k, w), w) for k, w in enumerate(where)]


def labels_to_coco(images: str, labels: str, *, categories: Sequence[dict], class_map: Optional[ClassMap] = None,
                   image_output: Optional[str] = None, image_root: Optional[str] = None,
                   info: Optional[dict] = None) -> dict:
    """Build the COCO instances dict of label images (module docstring).

    Args:
        images: folder of images, or a TIFF stack (then ``image_output`` is needed).
        labels: folder of label images, or a TIFF stack.
        categories: COCO categories; without ``class_map`` there must be exactly one.
        class_map: label value -> category (several classes).
        image_output: folder the frames of an image stack are written to (PNG).
        image_root: ``file_name`` is relative to it (default: the images folder, or ``image_output``).
        info: added to the output's ``info``.

    Returns:
        the COCO dict (checked by :func:`~wssis_d2.data.validation.check_coco`); its ``info`` has the counts
        (``num_images``, ``num_annotations``, ``num_empty_images``, ``num_multi_piece_labels``).
    """
    if class_map is None and len(categories) != 1:
        raise WSSISInputError(f"{len(categories)} categories but no class map: give one category, or a class "
                              "map of label values to categories")
    for path, what in ((images, "images"), (labels, "labels")):
        if not os.path.exists(path):
            raise WSSISInputError(f"{path}: the {what} folder or stack does not exist")
    coco_images, annotations, multi_piece, num_empty = [], [], [], 0
    with ExitStack() as stack:
        image_files, image_tf = _image_files(images, image_output, stack)
        by_name = image_tf is None and os.path.isdir(labels)
        label_where, read_label = _label_readers(labels, images, image_files, image_tf is None, stack)
        for k, path in enumerate(image_files if image_tf is not None else []):  # pairing checked: write frames
            _write_frame(_stack_frame(image_tf, k, f"{images} (frame {k})"), path, f"{images} (frame {k})")
        root = image_root or (images if image_tf is None else image_output)
        for k, (image_file, where) in enumerate(zip(image_files, label_where)):
            image_id = k + 1
            label = read_label[k]()
            height, width = read_image(image_file, None, image_id).shape[:2]
            if label.shape != (height, width):
                raise WSSISInputError(f"{where}: label image of {label.shape[0]} x {label.shape[1]} pixels (H x W), "
                                      f"but its image {image_file} is {height} x {width}")
            file_name = _relative(image_file, root)
            if class_map is None:
                def category_of(values):
                    return {int(v): int(categories[0]["id"]) for v in values}
            else:
                keys = [file_name, os.path.basename(image_file)] + ([os.path.basename(where)]
                                                                   if os.path.isdir(labels) else [])

                def category_of(values, keys=keys, where=where):
                    return class_map.category_ids(values, keys, where)
            anns, pieces = label_annotations(label, image_id, len(annotations) + 1, category_of)
            coco_images.append({"id": image_id, "file_name": file_name, "height": int(height), "width": int(width)})
            multi_piece += [(where, a["label_value"], a["id"]) for a in anns if a["label_value"] in pieces]
            annotations += anns
            num_empty += not anns
    if multi_piece:
        shown = ", ".join(f"{w} value {v}" for w, v, _ in multi_piece[:5])
        logger.warning(f"{len(multi_piece)} labels are in several pieces ({CONNECTIVITY}-connected), each kept as "
                       f"one instance: {shown}" + (" ..." if len(multi_piece) > 5 else ""))
    coco = {
        "info": dict(info or {}, tool=TOOL, images=os.path.abspath(images), labels=os.path.abspath(labels),
                     image_root=os.path.abspath(root), pairing="by name" if by_name else "by index",
                     pairing_rule=PAIRING_RULE, class_map=class_map.path if class_map is not None else None,
                     connectivity=CONNECTIVITY, num_images=len(coco_images), num_annotations=len(annotations),
                     num_empty_images=num_empty, num_multi_piece_labels=len(multi_piece),
                     multi_piece_annotation_ids=[i for _, _, i in multi_piece]),
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": [dict(c) for c in categories],
    }
    return check_coco(coco, "<imported label images>")


def import_label_images(images: str, labels: str, output: str, *, category: Optional[str] = None,
                        categories_json: Optional[str] = None, class_map_csv: Optional[str] = None,
                        image_output: Optional[str] = None) -> dict:
    """What ``datasets/import_masks.py`` runs: :func:`labels_to_coco` with one ``category`` name, or the
    categories of the COCO json ``categories_json`` and the class map ``class_map_csv``; writes ``output``
    atomically. Returns its ``info``."""
    if (category is None) == (categories_json is None and class_map_csv is None):
        raise WSSISInputError("give either a category name (--category) or a categories json and a class map "
                              "(--categories, --class-map)")
    if category is not None:
        categories, class_map = single_category(category), None
    else:
        if categories_json is None or class_map_csv is None:
            raise WSSISInputError("--categories and --class-map go together")
        source = load_json(categories_json)
        categories = source.get("categories") if isinstance(source, dict) else None
        if not isinstance(categories, list) or not categories:
            raise WSSISInputError(f"{categories_json}: no 'categories' list in this json")
        check_coco({"images": [], "annotations": [], "categories": categories}, categories_json)
        class_map = ClassMap(class_map_csv, categories)
    coco = labels_to_coco(images, labels, categories=categories, class_map=class_map, image_output=image_output)
    write_json_atomic(coco, output)
    return coco["info"]
