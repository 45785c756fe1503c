"""MODEL.WSSIS.EMPTY_MASK_RETRY (on by default): a click whose chosen cell gives no mask tries its other
levels by score, then its adaptive choice at half the mask threshold, before it counts as without a mask.

The heads are built by hand (2 levels, 2 grids of 4 x 4 over a 64 x 64 padded input, mask features at 16 x 16)
so that which level gives which mask is known."""
import torch

from wssis_d2.modeling.plain_inference import ImageHeads
from wssis_d2.modeling.point_inference import PointLevelDecoder

INPUT_HW, IMAGE_HW = (64, 64), (48, 64)  # the bottom 16 rows of the input are padding
POINT = torch.tensor([[20.0, 20.0]])  # cell (1, 1) of both 4 x 4 grids


def _features():
    """(3, 16, 16): channel 0 = the padding rows, 1 = a blob in the image around the point, 2 = 1 everywhere."""
    f = torch.zeros(3, 16, 16)
    f[0, 12:, :] = 1  # input rows 48-63: padding
    f[1, 3:8, 3:8] = 1  # input pixels 12-31: around the click
    f[2] = 1
    return f


def _heads(kernel0, kernel1, logit0=5.0, logit1=1.0):
    kernels, logits = [], []
    for k, logit in ((kernel0, logit0), (kernel1, logit1)):
        kern = torch.zeros(3, 4, 4)
        kern[:, 1, 1] = torch.tensor(k)
        kernels.append(kern)
        cate = torch.full((1, 4, 4), -10.0)
        cate[0, 1, 1] = logit
        logits.append(cate)
    return ImageHeads(cate_logits=logits, kernels=kernels, mask_feats=_features(), input_hw=INPUT_HW,
                      image_hw=IMAGE_HW, output_hw=IMAGE_HW)


def _blob_iou(mask):
    blob = torch.zeros(IMAGE_HW, dtype=torch.bool)
    blob[12:32, 12:32] = True  # the 4 x 4-feature blob at input resolution (bilinear upsampling softens its edges)
    return float((mask & blob).sum()) / float((mask | blob).sum())


def _decode(heads, retry=True):
    from detectron2.structures import Instances
    points = Instances(IMAGE_HW, gt_points=POINT, gt_classes=torch.tensor([0]), gt_point_valid=torch.tensor([True]),
                       gt_point_ids=torch.tensor([7]))
    decoder = PointLevelDecoder(strides=[8, 16], scale_ranges=[(1, 32), (16, 64)], mask_thr=0.5,
                                empty_mask_retry=retry)
    return decoder(heads, points)


def test_a_mask_that_vanishes_in_the_image_takes_the_next_level():
    # level 0 scores best but its mask lies in the padding: empty once cropped to the image; level 1 has the blob
    heads = _heads([10.0, 0.0, -5.0], [0.0, 10.0, -5.0])
    without = _decode(heads, retry=False)
    assert len(without["instances"]) == 0 and without["point_stats"]["num_points_without_mask"] == 1
    out = _decode(heads)
    inst, stats = out["instances"], out["point_stats"]
    assert len(inst) == 1 and inst.pred_levels.tolist() == [1] and inst.point_ids.tolist() == [7]
    assert _blob_iou(inst.pred_masks[0]) > 0.8  # the blob, nothing of the padding
    assert stats["num_points_retried"] == 1 and stats["num_points_rescued"] == 1
    assert stats["num_points_without_mask"] == 0


def test_a_weak_mask_is_kept_at_half_the_threshold():
    # every level's mask is below 0.5 (blob 0.38, elsewhere 0.12): nothing at 0.5, the blob at 0.25
    heads = _heads([0.0, 1.5, -2.0], [0.0, 1.5, -2.0])
    assert len(_decode(heads, retry=False)["instances"]) == 0
    out = _decode(heads)
    inst = out["instances"]
    assert len(inst) == 1 and _blob_iou(inst.pred_masks[0]) > 0.8
    assert out["point_stats"]["num_points_rescued"] == 1


def test_no_mask_anywhere_stays_without_mask_and_is_counted():
    heads = _heads([0.0, 0.0, -5.0], [0.0, 0.0, -5.0])
    out = _decode(heads)
    assert len(out["instances"]) == 0
    assert out["point_stats"]["num_points_retried"] == 1 and out["point_stats"]["num_points_rescued"] == 0
    assert out["point_stats"]["num_points_without_mask"] == 1
