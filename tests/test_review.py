"""The review (wssis_d2/review): every flag on a constructed case, orphans (missed clicks), the missed-click
test, the efficiency measure, and the risk ordering on generated shapes whose bad masks are known."""
import os

import numpy as np
import pytest

from wssis_d2.data.coco_masks import encode_masks
from wssis_d2.data.json_io import load_json
from wssis_d2.data.synthetic import generate_shapes_dataset
from wssis_d2.modeling.tiling import tile_boxes
from wssis_d2.pseudo.labels import fallback_disk
from wssis_d2.review import FLAGS, ReviewSettings, area_stats, efficiency, find_orphans, review_dataset
from wssis_d2.review.measure import drop_clicks, fit_weights, orphan_recovery, score_review
from wssis_d2.review.report import ORPHAN_FLAG, review_document, reviewed_labels, write_review
from wssis_d2.review.risk import click_risk, flag_strengths
from wssis_d2.review.signals import tile_grid

H, W = 64, 96


def box(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rles(*masks):
    return encode_masks(np.stack(masks))


def click(pid, image_id, mask, point, category_id=1, score=0.9, **extra):
    rle = rles(mask)[0]
    return dict({"id": pid, "point_ann_id": pid, "image_id": image_id, "category_id": category_id,
                 "point": list(point), "segmentation": rle, "area": int(mask.sum()), "score": score,
                 "bbox": [0, 0, 1, 1]}, **extra)


def labels_of(clicks, images=((1, H, W),)):
    return {"images": [{"id": i, "file_name": f"{i}.png", "height": h, "width": w} for i, h, w in images],
            "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}], "annotations": clicks}


STATS = {None: (np.log(100.0), 0.5, 10), 1: (np.log(100.0), 0.5, 10)}


def flags_of(review):
    return {c["point_ann_id"]: set(c["flags"]) for c in review["clicks"]}


def test_click_outside_its_mask():
    labels = labels_of([click(1, 1, box(10, 10, 20, 20), (40.5, 40.5)), click(2, 1, box(50, 10, 60, 20), (55, 15))])
    f = flags_of(review_dataset(labels, stats=STATS))
    assert "outside" in f[1] and "outside" not in f[2]


def test_two_clicks_on_one_object():
    obj = box(10, 10, 30, 30)
    labels = labels_of([click(1, 1, obj, (12, 12)), click(2, 1, obj, (25, 25)),
                        click(3, 1, box(50, 10, 60, 20), (55, 15))])
    f = flags_of(review_dataset(labels, stats=STATS))
    assert {"overlap", "two_clicks"} <= f[1] and {"overlap", "two_clicks"} <= f[2]
    assert not f[3] & {"overlap", "two_clicks"}


def test_one_mask_over_two_clicked_objects():
    a, b = box(10, 10, 20, 20), box(22, 10, 32, 20)
    labels = labels_of([click(1, 1, a | b, (15, 15)), click(2, 1, b, (27, 15))])
    review = review_dataset(labels, stats=STATS)
    f = flags_of(review)
    assert "two_clicks" in f[1] and "two_clicks" not in f[2]  # click 2 lies in mask 1, not the other way
    assert "overlap" in f[1] and "overlap" in f[2]  # mask 2 lies wholly in mask 1
    by = {c["point_ann_id"]: c for c in review["clicks"]}
    assert by[1]["signals"]["overlap_with"] == 2 and by[1]["risk"] > by[2]["risk"]


def test_missing_click_is_an_orphan():
    a, b, c = box(10, 10, 20, 20), box(40, 10, 50, 20), box(70, 30, 80, 40)
    labels = labels_of([click(1, 1, a, (15, 15))])
    dets = {"annotations": [
        dict(image_id=1, category_id=1, score=0.9, segmentation=rles(a)[0], bbox=[10, 10, 10, 10]),  # the click's
        dict(image_id=1, category_id=1, score=0.8, segmentation=rles(b)[0], bbox=[40, 10, 10, 10]),  # missed click
        dict(image_id=1, category_id=1, score=0.2, segmentation=rles(c)[0], bbox=[70, 30, 10, 10])]}  # not confident
    review = review_dataset(labels, plain=dets, stats=STATS, settings=ReviewSettings(orphan_score=0.5))
    (img,) = review["images"]
    assert [o["bbox"] for o in img["orphans"]] == [[40, 10, 10, 10]]
    assert img["num_detections"] == 2 and img["num_clicks"] == 1 and img["risk"] >= 0.5 * 0.8
    # two detections of one unclicked object: one orphan, the higher-scored
    dup = dict(image_id=1, category_id=1, score=0.7, segmentation=rles(box(41, 11, 49, 19))[0], bbox=[41, 11, 8, 8])
    again = review_dataset(labels, plain={"annotations": dets["annotations"] + [dup]}, stats=STATS,
                           settings=ReviewSettings(orphan_score=0.5))
    assert [o["score"] for o in again["images"][0]["orphans"]] == [0.8]
    # a detection whose mask misses the click but matches the click's mask is no orphan either
    shifted = box(11, 10, 21, 20)
    keep = find_orphans(rles(shifted), np.array([0.9]), np.array([[10.5, 15.0]]), rles(a), (H, W), min_score=0.5)
    assert not keep.any()
    # a detection holding a click but mostly something else (a small clicked object merged with a large
    # unclicked one: IoU with the click's mask < CLICK_IOU) is an orphan; the click's own detection is not
    small, big = box(60, 40, 65, 45), box(65, 40, 85, 60)
    keep = find_orphans(rles(small | big, small), np.array([0.9, 0.9]), np.array([[62.5, 42.5]]), rles(small),
                        (H, W), min_score=0.5)
    assert keep.tolist() == [True, False]
    # labels_review.json: the orphan is its own flagged region, the click carries its flags and risk
    out = reviewed_labels(labels, review, orphan_weight=0.5)
    orphan = [x for x in out["annotations"] if x.get("wssis_flag") == ORPHAN_FLAG]
    assert len(orphan) == 1 and orphan[0]["wssis_risk"] == pytest.approx(0.4) and orphan[0]["area"] == 100
    assert "wssis_risk" in [x for x in out["annotations"] if x.get("point_ann_id") == 1][0]


def test_object_cut_by_a_tile_seam():
    tiles = tile_boxes(H, W, 64, 16)  # x: [0, 64) and [32, 96)
    assert tiles[:, 0].tolist() == [0, 32]
    cut = box(10, 20, 64, 40)  # an object decoded in tile 0 and cut at its inner edge (x = 64)
    whole = box(70, 20, 90, 40)  # decoded in tile 1, away from its inner edge (x = 32)
    labels = labels_of([click(1, 1, cut, (20, 30)), click(2, 1, whole, (80, 30))])
    assert tile_grid(0, 16) is None and tile_grid(64, 0.25)(H, W).tolist() == tiles.tolist()  # 0.25 x 64 = 16
    review = review_dataset(labels, stats={None: (np.log(450.0), 0.5, 9)}, tiles=tile_grid(64, 16))
    f = flags_of(review)
    # click 1 (x 20) lies in tile 0 only; click 2 (x 80) lies 48 px from tile 1's inner edge: tile 1 decodes it
    assert "tile_border" in f[1] and "tile_border" not in f[2]
    assert not any("tile_border" in v for v in flags_of(review_dataset(labels, stats=STATS)).values())  # no tiles


def test_image_border_fallback_area_score_and_mrn_flags():
    edge, small, ok = box(0, 20, 10, 40), box(50, 10, 53, 13), box(70, 30, 80, 40)
    fb = fallback_disk(30.5, 50.5, 3, H, W)
    clicks = [click(1, 1, edge, (5, 30)), click(2, 1, small, (51, 11)), click(3, 1, ok, (75, 35), score=0.05),
              click(4, 1, fb, (30.5, 50.5), score=0.0, wssis_flag="fallback"), click(5, 1, ok | box(60, 30, 70, 40),
                                                                                   (65, 35))]
    coarse = {5: rles(box(60, 30, 66, 40))[0], 3: rles(ok)[0]}
    review = review_dataset(labels_of(clicks), coarse=coarse, stats=STATS)
    f = flags_of(review)
    assert "image_border" in f[1] and "image_border" not in f[3]
    assert "area" in f[2] and "area" not in f[3]  # 9 px vs a class of ~100 px
    assert "low_score" in f[3] and "low_score" not in f[1]
    assert f[4] == {"fallback"}
    assert "mrn_disagree" in f[5] and "mrn_disagree" not in f[3]
    by = {c["point_ann_id"]: c for c in review["clicks"]}
    assert by[4]["risk"] == pytest.approx(1.0, abs=1e-4) and all(0 <= c["risk"] <= 1 for c in review["clicks"])


def test_strengths_and_logistic_risk():
    sig = {"contains": np.array([True, False]), "other_clicks": np.array([0, 1]), "overlap": np.array([0.0, 1.0]),
           "mrn_iou": np.array([np.nan, 0.2]), "image_cut": np.array([0.0, 0.5]), "tile_cut": np.array([0.0, 0.0])}
    s = flag_strengths(sig, fallback=np.array([False, False]), area_z=np.array([0.0, 4.0]),
                       scores=np.array([0.9, 0.15]), settings=ReviewSettings())
    assert s.shape == (2, len(FLAGS)) and (s[0] == 0).all()
    assert s[1, FLAGS.index("low_score")] == pytest.approx(0.75) and s[1, FLAGS.index("area")] == 1.0
    p = flag_strengths(sig, fallback=np.array([False, False]), area_z=np.zeros(2), scores=np.ones(2),
                       settings=ReviewSettings(), plain=(np.array([True, False]), np.array([0.2, np.nan])))
    assert p[0, FLAGS.index("plain_disagree")] == pytest.approx(0.8) and p[1, FLAGS.index("no_detection")] == 1
    assert p[0, FLAGS.index("no_detection")] == 0 and p[1, FLAGS.index("plain_disagree")] == 0
    risk = click_risk(s, [0.5] * len(FLAGS), bias=-1.0)
    assert risk[0] == pytest.approx(1 / (1 + np.e)) and risk[1] == pytest.approx(1 / (1 + np.exp(1 - 0.5 * s[1].sum())))
    with pytest.raises(ValueError, match="WEIGHTS"):
        ReviewSettings(weights=(1.0,))


def test_fit_weights_finds_the_flag_that_predicts_bad_masks():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, (400, len(FLAGS)))
    s[:, 0] = 0  # no fallback in this run: its weight stays the default
    bad = rng.uniform(0, 1, 400) < 1 / (1 + np.exp(-(-2 + 4 * s[:, FLAGS.index("outside")])))
    bias, weights = fit_weights(s, bad)
    k = FLAGS.index("outside")
    assert weights[k] > 2.5 and all(abs(w) < 1.5 for j, w in enumerate(weights) if j not in (0, k))
    assert weights[0] == ReviewSettings().weights[0] and bias < -1


def test_area_stats_pools_rare_classes():
    anns = [{"category_id": 1, "area": a} for a in (100, 120, 80, 90)] + [{"category_id": 2, "area": 5}]
    stats = area_stats(anns)
    assert stats[1][2] == 4 and stats[2] == stats[None] and stats[None][2] == 5


def test_efficiency_counts_ties_evenly():
    e = efficiency([0.9, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert e["base_rate"] == 0.2 and e["found"]["10%"] == 0.5
    # top 20 %: the two non-tied clicks; top 50 %: 3 of the 8 tied zeros hold 3/8 of the other bad one
    assert e["found"]["20%"] == 0.5 and e["found"]["50%"] == pytest.approx((1 + 3 / 8) / 2)
    assert e["curve"][0] == 0 and e["curve"][100] == 1


def test_drop_clicks_is_seeded_and_orphans_recover_them():
    masks = [box(5 + 15 * k, 10, 15 + 15 * k, 20) for k in range(6)]
    clicks = [click(k + 1, 1, m, (10 + 15 * k, 15)) for k, m in enumerate(masks)]
    labels = labels_of(clicks)
    plain = {"annotations": [dict(image_id=1, category_id=1, score=0.9, segmentation=rles(m)[0], bbox=[0, 0, 1, 1])
                             for m in masks] + [dict(image_id=1, category_id=1, score=0.9, bbox=[0, 0, 1, 1],
                                                     segmentation=rles(box(10, 40, 20, 50))[0])]}  # a false alarm
    removed = drop_clicks([c["point_ann_id"] for c in clicks], 0.34, seed=3)
    assert removed == drop_clicks(range(1, 7), 0.34, seed=3) and len(removed) == 2
    got = orphan_recovery(labels, plain, removed, ReviewSettings())
    assert got == {"removed": 2, "recovered": 2, "recall": 1.0, "orphans": 3, "real": 2, "precision": 2 / 3}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Generated shapes and their true masks; pseudo-labels = true masks with a known set corrupted."""
    root = str(tmp_path_factory.mktemp("review_shapes"))
    path = generate_shapes_dataset(root, 12, image_size=96, seed=0, max_instances=5, min_size=14.0, style="clean")
    return root, load_json(path)


def _corrupted(gt, seed=0):
    """labels with one click per true mask; every third mask made bad in one of three ways the clicks see."""
    rng = np.random.default_rng(seed)
    from wssis_d2.data.coco_masks import decode_segmentation
    images = {img["id"]: img for img in gt["images"]}
    anns, bad = [], set()
    for k, a in enumerate(gt["annotations"]):
        img = images[a["image_id"]]
        h, w = img["height"], img["width"]
        m = decode_segmentation(a["segmentation"], h, w)
        ys, xs = np.nonzero(m)
        j = rng.integers(len(xs))
        point = (xs[j] + 0.5, ys[j] + 0.5)
        score = float(rng.uniform(0.5, 0.95))
        if k % 3 == 0:
            bad.add(a["id"])
            kind = (k // 3) % 3
            if kind == 0:  # the mask of another place: the click is outside it
                m = np.roll(m, (h // 2, w // 2), axis=(0, 1)) & ~m
            elif kind == 1:  # a sliver of the object, low score
                m = m & (np.arange(h)[:, None] <= ys[j]) & (np.arange(h)[:, None] >= ys[j] - 1)
                score = float(rng.uniform(0.05, 0.3))
            else:  # a blob far too large
                m = np.ones_like(m)
        anns.append({"id": a["id"], "point_ann_id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
                     "point": list(point), "segmentation": encode_masks(m[None])[0], "area": int(m.sum()),
                     "score": score, "bbox": a["bbox"]})
    return dict(gt, annotations=anns), bad


def test_risk_ranks_the_known_bad_masks_first(shapes, tmp_path):
    root, gt = shapes
    labels, bad = _corrupted(gt)
    stats = area_stats(gt["annotations"])
    review = review_dataset(labels, stats=stats)
    assert 0 < len(bad) < len(review["clicks"])
    top = [c["point_ann_id"] for c in review["clicks"][:len(bad)]]
    assert len(set(top) & bad) >= 0.6 * len(bad)  # the good masks a swallowing mask covers share its overlap
    measured = score_review(labels, review["clicks"], gt=gt)
    e = measured["efficiency"]
    n = len(review["clicks"])
    assert e["num_bad"] == len(bad) and e["base_rate"] == pytest.approx(len(bad) / n)
    assert e["found"]["10%"] * len(bad) == pytest.approx(round(0.1 * n))  # the top 10 % are all bad
    assert e["found"]["20%"] >= 0.5 and e["found"]["50%"] >= 0.8
    assert measured["flags"]["outside"]["precision"] == 1.0
    assert measured["suggested_weights"]["weights"][FLAGS.index("outside")] > 1
    review = review_document(review, {}, {}, measured)
    assert review["summary"]["flag_counts"]["outside"] == sum("outside" in c["flags"] for c in review["clicks"])
    out = write_review(review, labels, str(tmp_path), image_root=os.path.join(root, "images"), overlays=2)
    assert os.path.isfile(out["efficiency_plot"]) and len(os.listdir(out["overlays"])) == 2
    assert "share of the bad masks found" in open(out["review_md"]).read()


def test_hundreds_of_clicks_on_one_image():
    """More than 255 clicks in an image (pycocotools' area() of longer lists fails under numpy 2)."""
    h = w = 256
    masks = np.zeros((300, h, w), dtype=bool)
    clicks = []
    for k in range(300):
        y, x = divmod(k, 20)
        masks[k, 12 * y + 2: 12 * y + 10, 12 * x + 2: 12 * x + 10] = True
        clicks.append({"id": k + 1, "point_ann_id": k + 1, "image_id": 1, "category_id": 1, "score": 0.9,
                       "point": [12 * x + 6, 12 * y + 6], "area": 64, "bbox": [12 * x + 2, 12 * y + 2, 8, 8]})
    for c, rle in zip(clicks, encode_masks(masks)):
        c["segmentation"] = rle
    review = review_dataset(labels_of(clicks, images=((1, h, w),)), stats={None: (np.log(64.0), 0.5, 300)},
                            tiles=lambda hh, ww: tile_boxes(hh, ww, 128, 32))
    assert len(review["clicks"]) == 300 and not any(set(c["flags"]) - {"image_border", "tile_border"}
                                                    for c in review["clicks"])
    assert all(c["signals"]["contains_click"] for c in review["clicks"])
