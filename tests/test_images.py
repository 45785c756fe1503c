"""Images (issue 13 cases 2 and 8): one reader everywhere, bad files named, optional skipping.

Case 8: L, RGBA, P and 16-bit PNGs and an EXIF-rotated JPEG come out identical (H x W x 3) through the
training / pseudo-labeling mapper, MaskRefineNet's reader and the overlays. Case 2: a missing, truncated or
non-image file raises one ``WSSISInputError`` naming the file and the image id, at load time
(``check_image_files``) or at read time, and with skipping asked for it is skipped and counted.
"""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from wssis_d2 import add_wssis_config
from wssis_d2.data.dataset_mapper import WSSISDatasetMapper
from wssis_d2.data.images import check_image_files, read_image
from wssis_d2.engine.trainers import train_dataset_dicts
from wssis_d2.mrn import read_mrn_image
from wssis_d2.mrn.refine import read_parts, refine_shard
from wssis_d2.utils.errors import WSSISInputError
from wssis_d2.utils.visualize import render_records

from conftest import REPO, saved_catalogs

H, W = 6, 10


def _rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_modes(tmp_path):
    """{kind: (path, expected (H, W, 3) RGB array)} for the PNG modes of case 8."""
    rgb = _rgb()
    out = {}
    gray = Image.fromarray(rgb).convert("L")
    gray.save(tmp_path / "l.png")
    out["L"] = np.repeat(np.asarray(gray)[:, :, None], 3, axis=2)
    Image.fromarray(np.dstack([rgb, np.full((H, W), 7, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    out["RGBA"] = rgb  # alpha dropped, not blended
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "p.png")
    out["P"] = np.asarray(pal.convert("RGB"))
    v16 = (np.arange(H * W).reshape(H, W) * 1111).astype(np.uint16)  # 0 .. 65535
    Image.fromarray(v16).save(tmp_path / "i16.png")
    scaled = np.round(v16.astype(np.float64) * 255 / 65535).astype(np.uint8)
    out["I;16"] = np.repeat(scaled[:, :, None], 3, axis=2)
    return {k: (str(tmp_path / f"{k.lower().replace(';', '')}.png"), v) for k, v in out.items()}


def _write_exif_jpeg(tmp_path):
    path = str(tmp_path / "rot6.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored image is to be rotated 90 degrees clockwise
    Image.fromarray(_rgb()).save(path, exif=exif.tobytes(), quality=95)
    return path


def _point_record(path, image_id=7, size=(H, W)):
    return {"file_name": path, "height": size[0], "width": size[1], "image_id": image_id,
            "label_kind": "points", "annotations": []}


def _through_mapper(path, size, is_train=False):
    mapper = WSSISDatasetMapper(is_train, augmentations=[], image_format="RGB")
    out = mapper(_point_record(path, size=size))
    return out["image"].numpy().transpose(1, 2, 0)


def _through_mrn(path):
    return read_mrn_image(path, "RGB").numpy().transpose(1, 2, 0)


def _through_overlay(path, size, tmp_path):
    # No instances drawn, scale 1: the overlay PNG holds the image as the visualiser read it.
    (png,) = render_records([{"file_name": path, "height": size[0], "width": size[1], "annotations": []}],
                            str, str(tmp_path / "vis"), scale=1.0)
    return np.asarray(Image.open(png).convert("RGB"))


def test_image_modes_read_the_same_in_every_path(tmp_path):
    for kind, (path, expected) in _write_modes(tmp_path).items():
        got = [read_image(path, "RGB"), _through_mapper(path, (H, W)), _through_mrn(path),
               _through_overlay(path, (H, W), tmp_path)]
        for arr in got:
            assert arr.shape == (H, W, 3), kind
            np.testing.assert_array_equal(arr, expected, err_msg=kind)
    assert np.unique(_write_modes(tmp_path)["I;16"][1]).size > 2  # scaled, not clipped to black / white


def test_bgr_is_rgb_flipped_and_sixteen_bit_out_of_range_is_refused(tmp_path):
    path, expected = _write_modes(tmp_path)["P"]
    np.testing.assert_array_equal(read_image(path, "BGR"), expected[:, :, ::-1])
    Image.fromarray(np.full((H, W), 70000, np.int32), "I").save(tmp_path / "big.tif")  # 32-bit TIFF
    with pytest.raises(WSSISInputError, match=r"big.tif \(image id 3\): I image with values in \[70000, 70000\]"):
        read_image(str(tmp_path / "big.tif"), "RGB", image_id=3)
    Image.fromarray(np.zeros((H, W), np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(WSSISInputError, match=r"float.tif \(image id 3\): floating-point"):
        read_image(str(tmp_path / "float.tif"), "RGB", image_id=3)


def test_exif_orientation_6_is_rotated_in_every_path(tmp_path):
    path = _write_exif_jpeg(tmp_path)
    raw = np.asarray(Image.open(path).convert("RGB"))
    assert raw.shape == (H, W, 3)  # stored unrotated
    rotated = (W, H)
    got = [read_image(path, "RGB"), _through_mapper(path, rotated), _through_mrn(path),
           _through_overlay(path, rotated, tmp_path)]
    for arr in got:
        assert arr.shape == (W, H, 3)
        np.testing.assert_array_equal(arr, got[0])
    np.testing.assert_array_equal(got[0], np.rot90(raw, k=-1))  # 90 degrees clockwise


def _bad_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(_rgb()).save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    return {"missing.png": "image file not found", "trunc.png": "image file is truncated",
            "text.png": "not an image file"}


@pytest.mark.parametrize("reader", ["read_image", "mapper", "mrn", "overlay"])
def test_bad_image_is_named_with_its_id(tmp_path, reader):
    for name, why in _bad_files(tmp_path).items():
        path = str(tmp_path / name)
        with pytest.raises(WSSISInputError) as e:
            if reader == "read_image":
                read_image(path, "BGR", image_id=7)
            elif reader == "mapper":
                WSSISDatasetMapper(True, augmentations=[], image_format="BGR")(_point_record(path))
            elif reader == "mrn":
                read_mrn_image(path, "BGR", image_id=7)
            else:
                render_records([dict(_point_record(path))], str, str(tmp_path / "vis"))
        assert str(e.value).startswith(f"{path} (image id 7): {why}"), str(e.value)


def test_train_mapper_skips_bad_images_when_asked(tmp_path, caplog):
    _bad_files(tmp_path)
    mapper = WSSISDatasetMapper(True, augmentations=[], image_format="BGR", skip_bad_images=True)
    with caplog.at_level(logging.WARNING, logger="wssis_d2.data.dataset_mapper"):
        assert mapper(_point_record(str(tmp_path / "trunc.png"))) is None
        assert mapper(_point_record(str(tmp_path / "missing.png"))) is None
    assert mapper.bad_images.num_skipped == 2 and "2 bad images so far" in caplog.text
    assert mapper(_point_record(str(tmp_path / "good.png")))["image"].shape == (3, H, W)
    # At inference nothing is skipped by the mapper (the loader filters first): it raises.
    inference = WSSISDatasetMapper(False, augmentations=[], image_format="BGR", skip_bad_images=True)
    with pytest.raises(WSSISInputError, match="truncated"):
        inference(_point_record(str(tmp_path / "trunc.png")))


def test_check_image_files_at_load_time(tmp_path, caplog):
    _bad_files(tmp_path)
    records = [_point_record(str(tmp_path / n), image_id=i) for i, n in
               enumerate(["good.png", "missing.png", "trunc.png", "text.png"])]
    # Existence only (cheap): the missing file fails, named with its id.
    with pytest.raises(WSSISInputError, match=r"missing.png \(image id 1\): image file not found$"):
        check_image_files(records, "mine")
    with pytest.raises(WSSISInputError, match=r"\(3 of 4 images of mine are bad; .*WSSIS_SKIP_BAD_IMAGES"):
        check_image_files(records, "mine", decode=True)
    with caplog.at_level(logging.WARNING, logger="wssis_d2.data.images"):
        kept = check_image_files(records, "mine", skip=True)
        assert [r["image_id"] for r in kept] == [0, 2, 3]
        assert "mine: skipped 1 of 4 images" in caplog.text
        kept = check_image_files(records, "mine", skip=True, decode=True)
    assert [r["image_id"] for r in kept] == [0]
    assert "mine: skipped 3 of 4 images" in caplog.text


def test_training_dicts_fail_before_training_on_a_missing_image(tmp_path):
    _bad_files(tmp_path)
    records = [dict(_point_record(str(tmp_path / n), image_id=i), annotations=[
        {"category_id": 0, "point_coords": [[1.0, 1.0]], "point_labels": [1], "iscrowd": 0}])
        for i, n in enumerate(["good.png", "missing.png"])]
    cfg = get_cfg()
    add_wssis_config(cfg)
    assert cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES is False
    cfg.DATASETS.TRAIN = ("wssis_test_missing_image",)
    with saved_catalogs():
        DatasetCatalog.register("wssis_test_missing_image", lambda: records)
        with pytest.raises(WSSISInputError, match=r"missing.png \(image id 1\): image file not found"):
            train_dataset_dicts(cfg)
        cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES = True
        assert [d["image_id"] for d in train_dataset_dicts(cfg)] == [0]


def test_refinement_keeps_coarse_masks_of_a_bad_image_when_asked(tmp_path):
    _bad_files(tmp_path)
    rle = {"size": [H, W], "counts": "0"}
    pseudo = {"images": [{"id": 4, "file_name": "trunc.png", "height": H, "width": W}],
              "annotations": [{"id": 1, "image_id": 4, "category_id": 1, "segmentation": rle, "point": [2, 2]}]}
    part = str(tmp_path / "out.parts" / "rank0.jsonl")
    kwargs = dict(image_format="BGR", id_map={1: 0}, log_period=0)
    with pytest.raises(WSSISInputError, match=r"trunc.png \(image id 4\): image file is truncated"):
        refine_shard(None, pseudo, [4], str(tmp_path), part, **kwargs)
    stats = refine_shard(None, pseudo, [4], str(tmp_path), part, skip_bad_images=True, **kwargs)
    assert stats["bad_images"] == 1 and stats["kept_coarse"] == 1
    (rec,) = read_parts(str(tmp_path / "out.parts")).values()
    assert rec["annotations"] == [dict(pseudo["annotations"][0], refined=False)]


def test_visualize_cli_one_line_error_and_skip(tmp_path):
    _bad_files(tmp_path)
    coco = {"images": [{"id": 9, "file_name": "trunc.png", "height": H, "width": W},
                       {"id": 10, "file_name": "good.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 9, "category_id": 1, "point_coords": [[1, 1]]},
                            {"id": 2, "image_id": 10, "category_id": 1, "point_coords": [[1, 1]]}]}
    (tmp_path / "p.json").write_text(json.dumps(coco))
    cmd = [sys.executable, os.path.join(REPO, "tools", "visualize.py"), "--json", str(tmp_path / "p.json"),
           "--image-root", str(tmp_path), "--output", str(tmp_path / "vis")]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (f"error: {tmp_path / 'trunc.png'} (image id 9): image file is "
                                                 "truncated (incomplete download or copy?)")
    assert "Traceback" not in r.stderr
    r = subprocess.run(cmd + ["--skip-bad-images"], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 images that cannot be read" in r.stdout + r.stderr
    assert os.listdir(tmp_path / "vis") == ["good.png"]


def test_compressed_tiff_is_decoded_without_closing_a_descriptor_twice(tmp_path, monkeypatch):
    """Pillow < 10 + libtiff closes a dup of the file's descriptor twice (libtiff, then Pillow): in a
    DataLoader worker the second close can hit another thread's descriptor. read_image decodes from memory:
    no descriptor is closed that was already closed."""
    import errno
    from PIL import Image
    from wssis_d2.data.images import read_image

    path = str(tmp_path / "lzw.tif")
    arr = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)
    Image.fromarray(arr).save(path, compression="tiff_lzw")
    bad_closes = []
    real_close = os.close

    def close(fd):
        try:
            real_close(fd)
        except OSError as e:
            if e.errno == errno.EBADF:
                bad_closes.append(fd)
            raise

    monkeypatch.setattr(os, "close", close)
    image = read_image(path, "RGB")
    assert image.shape == (48, 64, 3)
    assert bad_closes == []
    # the same file through Pillow's own file path does close a descriptor twice (the bug worked around)
    with open(path, "rb") as f:
        Image.open(f).load()
    assert bad_closes
