"""Hard masks for the format round trips (tests/test_formats_*.py): holes, several parts, parts touching at
a corner, touching and overlapping objects, 1-px objects, objects on the image border, an object hidden
under another, and many tiny objects (> 255, > 65,535) built vectorised."""
import numpy as np

from wssis_d2.data.coco_masks import mask_annotation

H, W = 24, 32
CATEGORIES = [{"id": 3, "name": "nucleus"}, {"id": 7, "name": "cell"}]


def hard_masks():
    """(masks (N, H, W) bool, clicks (N, 2) [x, y] continuous or NaN, scores (N,), category ids (N,))."""
    boxes = []

    def add(cells, click, score, cat=3):
        m = np.zeros((H, W), bool)
        for r, c in cells:
            m[r, c] = True
        boxes.append((m, click, score, cat))

    def rect(r0, r1, c0, c1):
        return [(r, c) for r in range(r0, r1) for c in range(c0, c1)]

    ring = [rc for rc in rect(1, 8, 1, 8) if not (3 <= rc[0] < 6 and 3 <= rc[1] < 6)]
    add(ring, (1.5, 1.5), 0.9)                                                 # a hole
    add(rect(1, 3, 10, 12) + rect(5, 7, 10, 12), (10.5, 1.5), 0.8, 7)          # two parts
    add([(10, 25), (11, 26), (12, 27)], (25.5, 10.5), 0.85)                    # parts touching at corners
    add(rect(10, 14, 1, 5), (2.5, 11.5), 0.7)                                  # touching objects
    add(rect(10, 14, 5, 9), (6.5, 11.5), 0.6)
    add(rect(14, 20, 12, 18), (12.5, 14.5), 0.5, 7)                            # overlapping objects
    add(rect(17, 23, 15, 21), (19.5, 21.5), 0.95, 7)
    add(rect(18, 20, 16, 18), (16.5, 18.5), 0.2)                               # under both, click kept
    add([(0, W - 1)], (W - 0.5, 0.5), 0.4)                                     # 1 px on the border
    add(rect(20, H, 0, 4), (0.5, H - 0.5), 0.3)                                # on the border
    add(rect(20, H, 28, W), (np.nan, np.nan), 0.35, 7)                         # no click
    add(rect(21, 23, 29, 31), (np.nan, np.nan), 0.1, 7)                        # no click, hidden: lost
    masks = np.stack([b[0] for b in boxes])
    return (masks, np.array([b[1] for b in boxes], float), np.array([b[2] for b in boxes]),
            np.array([b[3] for b in boxes]))


def tiny_objects(n, width=None):
    """n one-pixel objects on a (rows, width) grid, one per pixel: masks as an (n,) flat index array
    plus the image size (height, width)."""
    width = width or int(np.ceil(np.sqrt(n)))
    return np.arange(n), (int(np.ceil(n / width)), width)


def to_coco(masks, clicks, scores, cats, file_name="a/img 1.png"):
    """A predictions-like COCO dict of one image (annotation ids 1..N in order)."""
    anns = []
    for k, (m, xy, s, c) in enumerate(zip(masks, clicks, scores, cats)):
        a = mask_annotation(m, k + 1, 1, int(c))
        a["score"] = float(s)
        if not np.isnan(xy).any():
            a["point"] = [float(xy[0]), float(xy[1])]
        anns.append(a)
    h, w = masks.shape[1:]
    return {"images": [{"id": 1, "file_name": file_name, "height": int(h), "width": int(w)}],
            "categories": CATEGORIES, "annotations": anns}
