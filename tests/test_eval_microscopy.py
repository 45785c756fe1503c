"""Microscopy metrics (wssis_d2/evaluation/microscopy.py) against values worked by hand and a brute-force
reference (every one-to-one matching enumerated), including empty images, tie rules and > 65,535 objects."""
import itertools
from fractions import Fraction

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.structures import Instances
from pycocotools.coco import COCO

from wssis_d2.evaluation.microscopy import (IOU_TWENTIETHS, METRIC_KEYS, image_counts, masks_to_label_image,
                                            microscopy_scores, rles_to_label_image, summarize)
from wssis_d2.evaluation.microscopy_evaluator import MicroscopyEvaluator


def _brute_force(true, pred):
    """Reference: IoU of every pair by pixel sets; per threshold the largest one-to-one matching (then the
    largest IoU sum) found by trying every assignment."""
    tv, pv = [v for v in np.unique(true) if v], [v for v in np.unique(pred) if v]
    iou = [[Fraction(int(((true == a) & (pred == b)).sum()), int(((true == a) | (pred == b)).sum())) for b in pv]
           for a in tv]
    out = {"n_true": len(tv), "n_pred": len(pv), "tp": [], "tp_strict": []}
    small, big = (tv, pv) if len(tv) <= len(pv) else (pv, tv)
    for strict in (False, True):
        for k in IOU_TWENTIETHS:
            t = Fraction(k, 20)
            best = (0, 0)
            for perm in itertools.permutations(range(len(big)), len(small)):
                vals = [iou[i][j] if len(tv) <= len(pv) else iou[j][i] for i, j in enumerate(perm)]
                hit = [v for v in vals if (v > t if strict else v >= t)]
                best = max(best, (len(hit), sum(hit)))
            out["tp_strict" if strict else "tp"].append(best[0])
            if k == 10 and not strict:
                out["iou_sum"] = float(best[1])
    areas = {a: int((true == a).sum()) for a in tv}
    out["seg_sum"] = float(sum(iou[i][j] for i, a in enumerate(tv) for j, b in enumerate(pv)
                               if 2 * ((true == a) & (pred == b)).sum() > areas[a]))
    return out


def _random_labels(rng, h=12, w=12, n=4):
    lab = np.zeros((h, w), np.int64)
    for v in rng.choice(np.arange(1, 1000), size=n, replace=False):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        lab[y:y + rng.integers(2, 7), x:x + rng.integers(2, 7)] = v
    return lab


def test_matches_brute_force_reference_on_random_label_images():
    rng = np.random.default_rng(0)
    for _ in range(60):
        true = _random_labels(rng, n=int(rng.integers(0, 5)))
        pred = true.copy() if rng.random() < 0.3 else _random_labels(rng, n=int(rng.integers(0, 5)))
        if rng.random() < 0.5:  # shift a little: partial overlaps near the thresholds
            pred = np.roll(pred, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 2)))
        got, ref = image_counts(true, pred), _brute_force(true, pred)
        assert {k: got[k] for k in ("n_true", "n_pred", "tp", "tp_strict")} == \
            {k: ref[k] for k in ("n_true", "n_pred", "tp", "tp_strict")}
        assert got["iou_sum"] == pytest.approx(ref["iou_sum"]) and got["seg_sum"] == pytest.approx(ref["seg_sum"])


def test_hand_worked_tie_rules():
    """True: two 4x4 halves of an 4x8 image. Predicted: the left half exactly, and half of the right one
    (IoU exactly 0.5, covering exactly 50 % of it)."""
    true = np.zeros((4, 8), np.uint16)
    true[:, :4], true[:, 4:] = 1, 2
    pred = np.zeros((4, 8), np.int32)
    pred[:, :4], pred[:2, 4:] = 7, 9
    m = microscopy_scores([true], [pred])
    assert m["accuracy@0.5"] == 1.0 and m["f1@0.5"] == 1.0  # IoU 0.5 >= 0.5 matches (StarDist, COCO)
    assert m["accuracy@0.75"] == pytest.approx(1 / 3) and m["f1@0.75"] == pytest.approx(1 / 2)
    assert m["dsb"] == pytest.approx(1 / 3)  # IoU 0.5 is not > 0.5 (DSB): TP 1, FP 1, FN 1 at every t
    assert m["seg"] == pytest.approx(1 / 2)  # 8 of 16 px is not > 50 % (CTC): the right object counts 0
    assert m["mean_matched_iou"] == pytest.approx(0.75) and m["count_error"] == 0


def test_one_prediction_over_two_equal_objects_matches_once():
    """P = A ∪ B with |A| = |B|: IoU exactly 0.5 with both, one TP (the one-to-one rule)."""
    true = np.zeros((2, 4), np.int64)
    true[:, :2], true[:, 2:] = 1, 2
    c = image_counts(true, np.ones((2, 4), np.int64))
    assert c["tp"][0] == 1 and c["tp_strict"][0] == 0 and c["iou_sum"] == 0.5


def test_pooling_and_empty_images():
    full = np.zeros((6, 6), np.int32)
    full[:3, :3], full[3:, 3:] = 1, 2
    half = full.copy()
    half[full == 2] = 0
    empty = np.zeros((6, 6), np.int32)
    m = microscopy_scores([full, full, empty, empty], [full, half, empty, full])
    # pooled: TP 3, FP 2 (the empty image's predictions), FN 1
    assert m["accuracy@0.5"] == pytest.approx(3 / 6) and m["precision@0.5"] == pytest.approx(3 / 5)
    assert m["recall@0.5"] == pytest.approx(3 / 4)
    # DSB per image: 1, 1/2, (empty vs empty: left out), 0 -> mean over 3 images
    assert m["dsb"] == pytest.approx((1 + 0.5 + 0) / 3) and m["num_images_dsb"] == 3
    assert m["count_error"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert m["count_error_rel"] == pytest.approx((0 + 0.5) / 2)  # images with true objects only
    none = microscopy_scores([empty], [empty])
    assert all(np.isnan(none[k]) for k in METRIC_KEYS if k != "count_error") and none["count_error"] == 0
    missed = microscopy_scores([full], [empty])
    assert missed["accuracy@0.5"] == 0 and missed["recall@0.5"] == 0 and np.isnan(missed["precision@0.5"])
    assert missed["seg"] == 0 and missed["dsb"] == 0 and missed["count_error_rel"] == 1


def test_more_than_65535_objects():
    """70,225 2x2 objects with label values above 2**16 (int64 labels; the prediction's values above 2**40):
    the prediction drops every 7th object and halves every 5th (its bottom row gone: IoU exactly 0.5)."""
    n_side = 265
    ids = np.arange(1, n_side * n_side + 1, dtype=np.int64)
    true = np.kron(ids.reshape(n_side, n_side), np.ones((2, 2), np.int64))
    pred = np.where(true > 0, true + 2**40, 0)
    drop, halve = ids % 7 == 0, (ids % 5 == 0) & (ids % 7 != 0)
    pred[np.isin(true, ids[drop])] = 0
    rows = np.arange(true.shape[0])[:, None]
    pred[np.isin(true, ids[halve]) & (rows % 2 == 1)] = 0
    c = image_counts(true, pred)
    n, n_drop, n_halve = len(ids), int(drop.sum()), int(halve.sum())
    assert n > 65535 and (c["n_true"], c["n_pred"]) == (n, n - n_drop)
    assert c["tp"][0] == n - n_drop and c["tp"][1] == n - n_drop - n_halve  # IoU 0.5: >= 0.5, not >= 0.55
    assert c["tp_strict"][0] == n - n_drop - n_halve  # DSB: not > 0.5
    m = summarize([c])
    assert m["recall@0.5"] == pytest.approx((n - n_drop) / n) and m["precision@0.5"] == 1.0
    assert m["seg"] == pytest.approx((n - n_drop - n_halve) / n)  # 2 of 4 px is not > 50 %


def test_painting_order_and_hidden_objects():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :3], masks[1, 1:], masks[2, 2:] = True, True, True  # mask 2 lies inside mask 1
    lab = masks_to_label_image(torch.from_numpy(masks), [0.9, 0.5, 0.1])
    assert (lab[0] == 1).all() and (lab[1:3] == 1).all() and (lab[3] == 2).all()  # 3 hidden under 1 and 2
    lab = masks_to_label_image(masks, [0.1, 0.5, 0.9], chunk=1)  # chunks keep the order
    assert (lab[0] == 1).all() and (lab[1] == 2).all() and (lab[2:] == 3).all()
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    assert (rles_to_label_image(rles, 4, 4, [0.1, 0.5, 0.9], chunk=2) == lab).all()
    assert (masks_to_label_image(masks, [1, 1, 1]) == lab).all()  # equal priority: the later mask on top


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="shape"):
        image_counts(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="integer"):
        image_counts(np.zeros((2, 2), float), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="negative"):
        image_counts(-np.ones((2, 2), int), np.zeros((2, 2), int))


def test_evaluator_on_model_outputs():
    """Two images: predictions with scores around the 0.5 rule; results equal the label-image functions'."""
    h, w = 16, 16
    gt_masks = {1: [(slice(0, 6), slice(0, 6)), (slice(8, 16), slice(8, 16))], 2: []}
    anns = []
    for image_id, boxes in gt_masks.items():
        for ys, xs in boxes:
            m = np.zeros((h, w), np.uint8)
            m[ys, xs] = 1
            rle = mask_util.encode(np.asfortranarray(m))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "segmentation": rle,
                         "area": float(m.sum()), "bbox": list(mask_util.toBbox(rle)), "iscrowd": 0})
    coco = COCO()
    coco.dataset = {"images": [{"id": i, "height": h, "width": w} for i in (1, 2)], "annotations": anns,
                    "categories": [{"id": 1, "name": "cell"}]}
    coco.createIndex()
    ev = MicroscopyEvaluator("toy", coco, score_thr=0.5, distributed=False)
    ev.reset()
    masks = torch.zeros((3, h, w), dtype=torch.bool)
    masks[0, 0:6, 0:6] = True  # exact
    masks[1, 8:16, 8:12] = True  # half of the second object: IoU 0.5
    masks[2, 0:3, 10:16] = True  # a false positive, but score 0.4 < 0.5: not counted
    out1 = Instances((h, w), pred_masks=masks, scores=torch.tensor([0.9, 0.5, 0.4]))
    out2 = Instances((h, w), pred_masks=masks[:1], scores=torch.tensor([0.8]))  # FP on the empty image
    ev.process([{"image_id": 1}, {"image_id": 2}], [{"instances": out1}, {"instances": out2}])
    res = ev.evaluate()["microscopy"]
    assert res["score_thr"] == 0.5 and res["num_pred"] == 3 and res["num_true"] == 2
    assert res["accuracy@0.5"] == pytest.approx(2 / 3) and res["precision@0.5"] == pytest.approx(2 / 3)
    assert res["seg"] == pytest.approx(1 / 2) and res["count_error"] == pytest.approx(0.5)
    assert res["dsb"] == pytest.approx((1 / 3 + 0) / 2)  # image 1: IoU > t: TP 1, FP 1, FN 1; image 2: FP 1
