"""SOLOv2 meta-architecture in plain PyTorch on a detectron2 ResNet-FPN backbone.

Registered as ``WSSISSOLOv2`` (not ``SOLOv2``, so that it can live beside AdelaiDet's in one process).
Inputs and outputs follow detectron2's conventions: ``batched_inputs`` is a list of dicts with
"image" (3, h, w) uint8 in ``INPUT.FORMAT``, optional "height"/"width" (output size), and in training
"instances" with ``gt_masks`` (BitMasks or PolygonMasks), ``gt_boxes`` and ``gt_classes``; inference
returns ``[{"instances": Instances(pred_masks, scores, pred_classes, pred_boxes)}]``.

At inference an input that carries ``"point_instances"`` (a point-labeled image, see
``WSSISDatasetMapper``) is decoded by the model's point decoder instead (``point_inference``: APS,
fixed level, size oracle or the SSIS score threshold, chosen once by ``MODEL.WSSIS.PSEUDO_LABEL_MODE``); its
output adds ``pred_points``, ``pred_levels``, ``point_ids`` and a ``"point_stats"`` entry. With
``INPUT.TILE.SIZE`` > 0 every decoder runs through overlapping tiles (``tiled_inference``); the inputs
then come at the image's own resolution.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import BitMasks, ImageList, Instances, PolygonMasks

from .heads import SOLOv2InstanceHead, SOLOv2MaskHead, instance_level_features
from .losses import category_focal_loss, dice_loss
from .plain_inference import ImageHeads, PlainDecoder
from .point_inference import PointLevelDecoder, build_point_decoder
from .postprocess import dynamic_masks
from .targets import assign_level_targets, downsample_masks
from .tiled_inference import TiledInference, build_tiled_inference

__all__ = ["WSSISSOLOv2", "HeadOutputs"]


class HeadOutputs(NamedTuple):
    """Raw SOLOv2 head outputs for a batch of B images.

    Attributes:
        cate_logits: per level, (B, C, S_l, S_l) class logits (sigmoid).
        kernels: per level, (B, E, S_l, S_l) dynamic kernels.
        mask_feats: (B, E, Hf, Wf) mask features at 1/4 of the padded input.
    """

    cate_logits: List[torch.Tensor]
    kernels: List[torch.Tensor]
    mask_feats: torch.Tensor


@META_ARCH_REGISTRY.register()
class WSSISSOLOv2(nn.Module):
    """SOLOv2 (Wang et al., NeurIPS 2020): per grid cell a class and a dynamic mask kernel."""

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        ins_head: nn.Module,
        mask_head: nn.Module,
        instance_in_features: Sequence[str],
        mask_in_features: Sequence[str],
        num_grids: Sequence[int],
        strides: Sequence[int],
        scale_ranges: Sequence[Sequence[float]],
        sigma: float,
        num_classes: int,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        focal_weight: float = 1.0,
        dice_weight: float = 3.0,
        plain_decoder: PlainDecoder,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        point_decoder: Optional[object] = None,
        tiler: Optional[TiledInference] = None,
    ):
        """
        Args:
            backbone: detectron2 backbone producing ``instance_in_features`` and ``mask_in_features``.
            ins_head: ``SOLOv2InstanceHead``-like module.
            mask_head: ``SOLOv2MaskHead``-like module.
            instance_in_features: feature names for the instance branch (5 levels, finest first).
            mask_in_features: feature names for the mask branch (finest first, stride 4 first).
            num_grids: S per instance level.
            strides: stride per instance level (for the mask-area filter).
            scale_ranges: (min, max) sqrt(box area) per level.
            sigma: center-region scale.
            num_classes: C.
            focal_alpha, focal_gamma, focal_weight: category loss.
            dice_weight: mask loss weight.
            plain_decoder: ordinary inference of inputs without points (``plain_inference``).
            pixel_mean, pixel_std: input normalisation, in ``INPUT.FORMAT`` channel order.
            point_decoder: decoder of inputs with "point_instances" (``point_inference``); default
                ``PointLevelDecoder`` with this model's strides, scale ranges and mask threshold (adaptive
                pyramid-level selection).
            tiler: inference through overlapping tiles (``tiled_inference``, ``INPUT.TILE``); None
                (default): each input is decoded whole.
        """
        super().__init__()
        self.backbone = backbone
        self.ins_head = ins_head
        self.mask_head = mask_head
        self.instance_in_features = list(instance_in_features)
        self.mask_in_features = list(mask_in_features)
        self.num_grids = list(num_grids)
        self.strides = list(strides)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma = sigma
        self.num_classes = num_classes
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.plain_decoder = plain_decoder
        if point_decoder is None:
            point_decoder = PointLevelDecoder(
                strides=self.strides, scale_ranges=self.scale_ranges, mask_thr=plain_decoder.mask_thr
            )
        self.point_decoder = point_decoder
        self.tiler = tiler
        if not (len(self.num_grids) == len(self.strides) == len(self.scale_ranges) == len(self.instance_in_features)):
            raise ValueError(
                "SOLOv2 needs one grid, stride and scale range per instance level; got "
                f"{len(self.num_grids)} grids, {len(self.strides)} strides, {len(self.scale_ranges)} ranges "
                f"for {len(self.instance_in_features)} features"
            )
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        backbone = build_backbone(cfg)
        largest_stride = max(spec.stride for spec in backbone.output_shape().values())
        return {
            "backbone": backbone,
            "ins_head": SOLOv2InstanceHead(cfg),
            "mask_head": SOLOv2MaskHead(cfg),
            "instance_in_features": s.INSTANCE_IN_FEATURES,
            "mask_in_features": s.MASK_IN_FEATURES,
            "num_grids": s.NUM_GRIDS,
            "strides": s.FPN_INSTANCE_STRIDES,
            "scale_ranges": s.FPN_SCALE_RANGES,
            "sigma": s.SIGMA,
            "num_classes": s.NUM_CLASSES,
            "focal_alpha": s.LOSS.FOCAL_ALPHA,
            "focal_gamma": s.LOSS.FOCAL_GAMMA,
            "focal_weight": s.LOSS.FOCAL_WEIGHT,
            "dice_weight": s.LOSS.DICE_WEIGHT,
            "plain_decoder": PlainDecoder(cfg),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "point_decoder": build_point_decoder(cfg),
            "tiler": build_tiled_inference(cfg, min_input_side=largest_stride),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ shared
    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        """Normalise and pad the images to a multiple of the backbone's size divisibility."""
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def forward_heads(self, images: ImageList) -> HeadOutputs:
        """Backbone + both heads on a padded batch (see ``HeadOutputs`` for shapes)."""
        features = self.backbone(images.tensor)
        ins_feats = instance_level_features([features[f] for f in self.instance_in_features])
        cate_logits, kernels = self.ins_head(ins_feats)
        mask_feats = self.mask_head([features[f] for f in self.mask_in_features])
        return HeadOutputs(cate_logits, kernels, mask_feats)

    def forward(self, batched_inputs: List[dict]):
        if self.tiler is not None and not self.training:
            return [self.tiler(self, x) for x in batched_inputs]  # one image at a time, tiles batched
        images = self.preprocess_image(batched_inputs)
        heads = self.forward_heads(images)
        if self.training:
            gt = [x["instances"].to(self.device) for x in batched_inputs]
            return self.losses(heads, gt, images.tensor.shape[-2:])
        return self.inference(heads, images, batched_inputs)

    # ------------------------------------------------------------------ training
    def losses(self, heads: HeadOutputs, gt_instances: List[Instances], input_hw: Tuple[int, int]):
        """Focal loss over all cells and Dice loss over positive cells.

        Args:
            heads: outputs of ``forward_heads``.
            gt_instances: per image, ``Instances`` with gt_masks, gt_boxes, gt_classes.
            input_hw: (H, W) of the padded batch.
        """
        hf, wf = heads.mask_feats.shape[-2:]
        cate_labels, mask_preds, mask_targets = [], [], []
        for i, inst in enumerate(gt_instances):
            masks = padded_bitmasks(inst, input_hw).to(self.device)
            masks_down = downsample_masks(masks, factor=input_hw[0] // hf)
            levels = assign_level_targets(
                masks,
                masks_down,
                inst.gt_classes,
                inst.gt_boxes.tensor,
                input_hw,
                self.num_grids,
                self.scale_ranges,
                self.sigma,
                self.num_classes,
            )
            for lvl, target in enumerate(levels):
                cate_labels.append(target.labels.flatten())
                if target.pos_index.numel():
                    kernels = heads.kernels[lvl][i].flatten(1)[:, target.pos_index].t()  # (P, E)
                    mask_preds.append(dynamic_masks(kernels, heads.mask_feats[i]).sigmoid())
                    mask_targets.append(target.pos_masks)
        # Labels were appended image-major, level-minor: reorder the logits the same way.
        logits = torch.cat(
            [
                heads.cate_logits[lvl][i].permute(1, 2, 0).reshape(-1, self.num_classes)
                for i in range(len(gt_instances))
                for lvl in range(len(self.num_grids))
            ]
        )
        labels = torch.cat(cate_labels)
        loss_cate = category_focal_loss(logits, labels, self.num_classes, self.focal_alpha, self.focal_gamma)
        if mask_preds:
            loss_mask = dice_loss(torch.cat(mask_preds), torch.cat(mask_targets)).mean()
        else:
            # No positive cell in the batch: keep the kernel branch and the mask branch in the graph with
            # a zero loss, so every parameter gets a (zero) gradient: DDP without find_unused_parameters
            # fails on the next iteration when one process's parameter got none.
            loss_mask = (sum(k.sum() for k in heads.kernels) + heads.mask_feats.sum()) * 0.0
        return {"loss_cate": loss_cate * self.focal_weight, "loss_mask": loss_mask * self.dice_weight}

    # ------------------------------------------------------------------ inference
    def inference(self, heads: HeadOutputs, images: ImageList, batched_inputs: List[dict]) -> List[dict]:
        """Per image: the point decoder if the input carries "point_instances", else ordinary inference."""
        results = []
        for i, (image_hw, x) in enumerate(zip(images.image_sizes, batched_inputs)):
            image = ImageHeads(
                cate_logits=[c[i] for c in heads.cate_logits],
                kernels=[k[i] for k in heads.kernels],
                mask_feats=heads.mask_feats[i],
                input_hw=tuple(images.tensor.shape[-2:]),
                image_hw=tuple(image_hw),
                output_hw=(int(x.get("height", image_hw[0])), int(x.get("width", image_hw[1]))),
            )
            if "point_instances" in x:
                results.append(self.point_decoder(image, x["point_instances"]))
            else:
                results.append({"instances": self.plain_decoder(image)})
        return results


def padded_bitmasks(instances: Instances, input_hw: Tuple[int, int]) -> torch.Tensor:
    """GT masks of one image as (N, H, W) bool, zero-padded to the padded batch size (H, W).

    Accepts ``BitMasks`` (N, h, w) at the image size or ``PolygonMasks`` (rasterised at (h, w)).
    """
    gt_masks = instances.gt_masks
    h, w = instances.image_size
    if isinstance(gt_masks, PolygonMasks):
        gt_masks = BitMasks.from_polygon_masks(gt_masks, h, w)
    masks = gt_masks.tensor.bool()
    out = masks.new_zeros((masks.shape[0],) + tuple(input_hw))
    out[:, : masks.shape[1], : masks.shape[2]] = masks
    return out
