"""Label images -> COCO (issue 20): folders and stacks of PNG / TIFF label images, the pairing rule, one
instance per label value (multi-piece labels counted), bad input named in one line, the CLI, and the
cells_psc split on a small generated stand-in of the sequence (nothing is downloaded)."""
import io
import json
import logging
import os
import tarfile

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import tifffile
from detectron2.data.datasets import load_coco_json

from wssis_d2.formats import cells_psc
from wssis_d2.formats.label_images import import_label_images, labels_to_coco, pair_by_name, single_category
from wssis_d2.data.point_rules import centroid_point
from wssis_d2.data.validation import check_coco
from wssis_d2.utils.errors import WSSISInputError, run_cli

from conftest import load_script

H, W = 20, 30
CELL = single_category("cell")


def labels_of(seed, n, dtype=np.uint16, values=None, shape=(H, W)):
    """A label image with ``n`` disjoint rectangles of random values (or ``values``)."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, dtype)
    values = values if values is not None else rng.choice(np.arange(1, 200), n, replace=False)
    for k, v in enumerate(values):
        y, x = 1 + (k // 4) * 6, 1 + (k % 4) * 7
        label[y:y + 1 + rng.integers(2, 5), x:x + 1 + rng.integers(2, 6)] = v
    return label


def image(shape=(H, W), dtype=np.uint8):
    top = 255 if dtype == np.uint8 else 65535
    return np.random.default_rng(1).integers(0, top + 1, shape, dtype=dtype)


def write(path, arr, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith((".tif", ".tiff")):
        tifffile.imwrite(path, arr, **kw)
    else:
        assert cv2.imwrite(path, arr)
    return path


def decoded(ann):
    return mask_util.decode(dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())).astype(bool)


def check_exact(coco, labels_by_file_name):
    """Every annotation decodes to label == value exactly, one per non-zero value, bbox/area agree."""
    names = {img["id"]: img["file_name"] for img in coco["images"]}
    seen = {}
    for ann in coco["annotations"]:
        label = labels_by_file_name[names[ann["image_id"]]]
        m = label == ann["label_value"]
        assert np.array_equal(decoded(ann), m)
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == m.sum() and ann["iscrowd"] == 0
        seen.setdefault(names[ann["image_id"]], []).append(ann["label_value"])
    for name, label in labels_by_file_name.items():
        assert sorted(seen.get(name, [])) == sorted(set(np.unique(label).tolist()) - {0})
    check_coco(coco)


def test_png_folder_8_and_16_bit_labels_pair_by_name(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    truth = {}
    for k, (name, dtype) in enumerate([("img1", np.uint8), ("img2", np.uint16), ("img10", np.uint16)]):
        write(str(images / f"{name}.png"), image())
        values = [3, 40000, 7] if name == "img2" else None  # a value above 255 and one above 32767
        truth[f"{name}.png"] = labels_of(k, 3 + k, dtype, values)
        write(str(labels / f"{name}_mask.png"), truth[f"{name}.png"])  # img10_mask contains img1 and img10
    coco = labels_to_coco(str(images), str(labels), categories=CELL)
    assert [img["file_name"] for img in coco["images"]] == ["img1.png", "img2.png", "img10.png"]
    assert coco["info"]["pairing"] == "by name" and coco["info"]["num_annotations"] == 3 + 3 + 5
    check_exact(coco, truth)
    out = tmp_path / "full.json"
    out.write_text(json.dumps(coco))
    dicts = load_coco_json(str(out), str(images), dataset_name="test_import_masks_png")
    assert [len(d["annotations"]) for d in dicts] == [3, 3, 5]
    assert dicts[0]["file_name"] == os.path.join(str(images), "img1.png")


def test_tiff_folder_ctc_names_16_bit_images_32_bit_lzw_labels_and_an_empty_frame(tmp_path):
    images, labels = tmp_path / "02", tmp_path / "02_ST" / "SEG"
    truth = {}
    for k in range(3):
        write(str(images / f"t{k:03d}.tif"), image(dtype=np.uint16))  # 16-bit images, read as read_image does
        lab = labels_of(k, k + 1, np.int32) if k != 1 else np.zeros((H, W), np.int32)
        truth[f"t{k:03d}.tif"] = lab
        write(str(labels / f"man_seg{k:03d}.tif"), lab, compression="lzw")  # trailing numbers pair them
    coco = labels_to_coco(str(images), str(labels), categories=CELL)
    assert [len([a for a in coco["annotations"] if a["image_id"] == i]) for i in (1, 2, 3)] == [1, 0, 3]
    assert coco["info"]["num_empty_images"] == 1 and len(coco["images"]) == 3
    check_exact(coco, truth)


def test_pairing_rule():
    assert pair_by_name(["t000.tif", "t001.tif"], ["man_seg001.tif", "man_seg000.tif"]) == \
        ["man_seg000.tif", "man_seg001.tif"]
    assert pair_by_name(["a.png", "b.tif"], ["b.png", "a.tif"]) == ["a.tif", "b.png"]  # same stem
    assert pair_by_name(["img0007.png"], ["mask7.png"]) == ["mask7.png"]
    with pytest.raises(WSSISInputError, match="several images"):
        pair_by_name(["a_1.png", "b_01.png"], ["mask1.png"])


@pytest.mark.parametrize("images_kind", ["stack", "folder"])
def test_multi_frame_tiff_stacks_pair_by_index_and_16_bit_frames_are_kept(tmp_path, images_kind):
    frames = np.stack([image(dtype=np.uint16) + k for k in range(3)])
    labs = np.stack([labels_of(k, 2 + k) for k in range(3)])
    labs[2] = 0  # an empty frame
    write(str(tmp_path / "labels.tif"), labs, photometric="minisblack", compression="lzw")
    if images_kind == "stack":
        write(str(tmp_path / "movie.tif"), frames, photometric="minisblack")
        coco = labels_to_coco(str(tmp_path / "movie.tif"), str(tmp_path / "labels.tif"), categories=CELL,
                              image_output=str(tmp_path / "frames"))
        names = [f"movie_{k:04d}.png" for k in range(3)]
        for k, name in enumerate(names):  # written as 16-bit PNG, pixel for pixel
            written = cv2.imread(str(tmp_path / "frames" / name), cv2.IMREAD_UNCHANGED)
            assert written.dtype == np.uint16 and np.array_equal(written, frames[k])
    else:
        names = [f"im{k}.png" for k in (1, 2, 10)]  # natural order: 1, 2, 10
        for k, name in enumerate(names):
            write(str(tmp_path / "images" / name), image())
        coco = labels_to_coco(str(tmp_path / "images"), str(tmp_path / "labels.tif"), categories=CELL)
    assert [img["file_name"] for img in coco["images"]] == names and coco["info"]["pairing"] == "by index"
    check_exact(coco, dict(zip(names, labs)))


def test_a_label_in_several_pieces_is_one_instance_and_counted(tmp_path, caplog):
    lab = np.zeros((H, W), np.uint8)
    lab[2:5, 2:5] = 9
    lab[10:12, 20:25] = 9  # a second piece of label 9
    lab[15, 3] = lab[16, 4] = 4  # diagonal neighbours: one piece (8-connectivity)
    write(str(tmp_path / "i" / "a.png"), image())
    write(str(tmp_path / "l" / "a.png"), lab)
    with caplog.at_level(logging.WARNING):
        coco = labels_to_coco(str(tmp_path / "i"), str(tmp_path / "l"), categories=CELL)
    assert len(coco["annotations"]) == 2 and coco["info"]["num_multi_piece_labels"] == 1
    nine = next(a for a in coco["annotations"] if a["label_value"] == 9)
    assert coco["info"]["multi_piece_annotation_ids"] == [nine["id"]]
    assert nine["area"] == 9 + 10 and nine["bbox"] == [2, 2, 23, 10]
    assert "1 labels are in several pieces" in caplog.text
    check_exact(coco, {"a.png": lab})


def _bad(tmp_path, case):
    """(images, labels, image_output, the file the message must name) of one bad input."""
    i, l = tmp_path / "i", tmp_path / "l"
    write(str(i / "a.png"), image())
    if case == "sizes differ":
        return i, l, None, write(str(l / "a.png"), labels_of(0, 2, shape=(H + 1, W)))
    if case == "float labels":
        return i, l, None, write(str(l / "a.tif"), labels_of(0, 2).astype(np.float32))
    if case == "negative labels":
        return i, l, None, write(str(l / "a.tif"), labels_of(0, 2, np.int16) - 1)
    if case == "rgb labels":
        return i, l, None, write(str(l / "a.png"), np.zeros((H, W, 3), np.uint8))
    if case == "missing label file":
        write(str(i / "b.png"), image())
        write(str(l / "a.png"), labels_of(0, 2))
        return i, l, None, str(i / "b.png")
    if case == "label without image":
        write(str(l / "a.png"), labels_of(0, 2))
        return i, l, None, write(str(l / "zzz.png"), labels_of(0, 2))
    if case == "stack frame count":
        stack = write(str(tmp_path / "labels.tif"), np.zeros((2, H, W), np.uint16), photometric="minisblack")
        return i, stack, None, stack
    if case == "image stack frame count":
        stack = write(str(tmp_path / "movie.tif"), np.zeros((3, H, W), np.uint8), photometric="minisblack")
        write(str(l / "a.png"), labels_of(0, 2))
        return stack, l, tmp_path / "frames", stack
    raise AssertionError(case)


BAD = {"sizes differ": "21 x 30 pixels", "float labels": "floating-point", "negative labels": "negative label",
       "rgb labels": "shape", "missing label file": "no label file", "label without image": "no image",
       "stack frame count": "2 frames", "image stack frame count": "3 frames"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_naming_the_file(tmp_path, case):
    images, labels, out, named = _bad(tmp_path, case)
    with pytest.raises(WSSISInputError) as e:
        labels_to_coco(str(images), str(labels), categories=CELL, image_output=out and str(out))
    msg = str(e.value)
    assert BAD[case] in msg and str(named) in msg and "\n" not in msg, msg


def test_cli_writes_the_json_and_bad_input_is_exit_2_with_one_line(tmp_path, capsys):
    script = load_script("datasets/import_masks.py")
    write(str(tmp_path / "i" / "a.png"), image())
    write(str(tmp_path / "l" / "a_label.png"), labels_of(0, 3))
    out = tmp_path / "out" / "full.json"
    run_cli(script.main, ["--images", str(tmp_path / "i"), "--labels", str(tmp_path / "l"), "--category", "cell",
                          "--output", str(out)])
    coco = json.loads(out.read_text())
    assert len(coco["annotations"]) == 3 and coco["categories"] == [{"id": 1, "name": "cell"}]
    assert "1 images (0 without instances), 3 instances" in capsys.readouterr().out
    write(str(tmp_path / "l" / "b.png"), labels_of(0, 3))  # a label file without its image
    with pytest.raises(SystemExit) as e:
        run_cli(script.main, ["--images", str(tmp_path / "i"), "--labels", str(tmp_path / "l"), "--category",
                              "cell", "--output", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'l' / 'b.png'}: no image")


def test_class_map_global_and_per_image(tmp_path):
    for name in ("a", "b"):
        write(str(tmp_path / "i" / f"{name}.png"), image())
        write(str(tmp_path / "l" / f"{name}.png"), labels_of(0, 2, values=[1, 2]))
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps({"categories": [{"id": 3, "name": "cell"}, {"id": 8, "name": "debris"}]}))
    csv_file = tmp_path / "classes.csv"
    csv_file.write_text("label,category,image\n1,cell,\n2,debris,\n2,3,b.png\n")  # name, id; b.png overrides
    out = tmp_path / "full.json"
    import_label_images(str(tmp_path / "i"), str(tmp_path / "l"), str(out), categories_json=str(cats),
                        class_map_csv=str(csv_file))
    coco = json.loads(out.read_text())
    got = {(a["image_id"], a["label_value"]): a["category_id"] for a in coco["annotations"]}
    assert got == {(1, 1): 3, (1, 2): 8, (2, 1): 3, (2, 2): 3}
    csv_file.write_text("label,category\n1,cell\n")
    with pytest.raises(WSSISInputError, match="label value 2 has no category"):
        import_label_images(str(tmp_path / "i"), str(tmp_path / "l"), str(out), categories_json=str(cats),
                            class_map_csv=str(csv_file))
    csv_file.write_text("label,category\n1,nucleus\n")
    with pytest.raises(WSSISInputError, match=r"line 2: category 'nucleus' is neither"):
        import_label_images(str(tmp_path / "i"), str(tmp_path / "l"), str(out), categories_json=str(cats),
                            class_map_csv=str(csv_file))


# ------------------------------------------------------------------------------ cells_psc
def fake_sdist(tmp_path, frames=cells_psc.NUM_FRAMES):
    """A tar.gz holding the members prepare_cells_psc extracts (small frames), plus a decoy outside."""
    path = tmp_path / "fake.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for ours, member in cells_psc.MEMBERS.items():
            if ours == "README.md":
                data = b"stand-in"
            else:
                k = int(ours[-7:-4])
                arr = image() if ours.startswith("02/") else labels_of(k, 1 + k % 3)
                buf = io.BytesIO()
                tifffile.imwrite(buf, arr, compression="lzw")
                data = buf.getvalue()
            add(member, data)
        add("../evil.txt", b"x")
    return path


def test_cells_psc_extracts_safely_and_splits_in_time_order(tmp_path):
    root = tmp_path / "cells_psc"
    digests = cells_psc.extract_members(str(fake_sdist(tmp_path)), str(root))
    assert len(digests) == 101 and cells_psc.extracted_ok(str(root))
    assert not (tmp_path / "evil.txt").exists() and sorted(os.listdir(root)) == \
        ["02", "02_ST", "README.md", "source_files.json"]
    lines = []
    splits = cells_psc.prepare_cells_psc(str(root), str(tmp_path / "no_cache"), log=lines.append)  # no download
    assert not (tmp_path / "no_cache").exists()
    frames = {name: [img["id"] - 1 for img in s["images"]] for name, s in splits.items()}
    assert frames == {"full": [0, 1], "points": list(range(2, 40)), "points_gt": list(range(2, 40)),
                      "test": list(range(42, 50)), "train_all": list(range(40)), "val": [40, 41]}
    assert splits["full"]["images"][0]["file_name"] == "02/t000.tif"
    per_frame = [1 + k % 3 for k in range(50)]
    stats = cells_psc.split_stats(splits)
    assert stats["full"] == (2, 3, 0) and stats["test"] == (8, sum(per_frame[42:]), 0)
    assert stats["val"] == (2, sum(per_frame[40:42]), 0)
    assert stats["points"][:2] == stats["points_gt"][:2] == (38, sum(per_frame[2:40]))
    gt = {a["id"]: a for a in splits["points_gt"]["annotations"]}
    for p in splits["points"]["annotations"]:  # one click per cell, the centroid rule, on its mask
        assert set(p) == {"id", "image_id", "category_id", "point_coords", "point_labels", "iscrowd"}
        assert p["point_coords"] == [list(centroid_point(decoded(gt[p["id"]])))]
    assert set(gt) == {p["id"] for p in splits["points"]["annotations"]}
    for name, s in splits.items():
        assert "silver truth" in s["info"]["ground_truth"] and s["info"]["subset"] == name
        check_coco(s, name, kind="points" if name == "points" else "instances")
    mtimes = {n: os.path.getmtime(root / f"{n}.json") for n in cells_psc.OUTPUTS}
    lines.clear()
    cells_psc.prepare_cells_psc(str(root), str(tmp_path / "no_cache"), log=lines.append)  # only checks
    assert "nothing to extract" in lines[1] and "nothing to write" in lines[3]
    assert mtimes == {n: os.path.getmtime(root / f"{n}.json") for n in cells_psc.OUTPUTS}


def test_cells_psc_refuses_a_link_member(tmp_path):
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(cells_psc.MEMBERS["README.md"])
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(RuntimeError, match="not a regular file"):
        cells_psc.extract_members(str(path), str(tmp_path / "root"), {"README.md": cells_psc.MEMBERS["README.md"]})
