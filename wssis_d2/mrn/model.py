"""MaskRefineNet meta-architecture (PointWSSIS, section 4 of METHOD.md).

Shapes: N crops of S x S pixels (S = MODEL.MRN.CROP_SIZE), K heatmap channels
(:func:`wssis_d2.mrn.heatmaps.heatmap_channels`). The network sees, stacked as channels, the image crop
(3, normalised with MODEL.PIXEL_MEAN / PIXEL_STD), the point heatmap (K) and the binary coarse mask (1),
and outputs one foreground logit per crop pixel.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..modeling.losses import dice_loss
from .boxes import crop_boxes
from .heatmaps import expand_heatmap, heatmap_channels
from .inputs import make_mrn_inputs
from .losses import mask_bce_loss
from .mobilenet_encoder import MobileNetV2MRNEncoder
from .network import MRNDecoder, MRNEncoder
from .paste import merge_refined, paste_masks

__all__ = ["MaskRefineNet", "build_mrn_encoder"]


def build_mrn_encoder(cfg, in_channels: int) -> nn.Module:
    """MODEL.MRN.ENCODER "resnet": :class:`MRNEncoder` (MODEL.MRN.DEPTH, WIDTH, ENCODER_NORM or NORM,
    STRIDE_IN_1X1);
    "mobilenet_v2": :class:`MobileNetV2MRNEncoder` (MODEL.MOBILENET.*)."""
    m = cfg.MODEL.MRN
    if m.ENCODER == "resnet":
        encoder_norm = m.ENCODER_NORM or m.NORM
        if encoder_norm == "FrozenBN" and not cfg.MODEL.WEIGHTS:
            raise ValueError("MODEL.MRN.ENCODER_NORM='FrozenBN' needs pretrained MODEL.WEIGHTS (a random-init "
                             "FrozenBN never trains); without weights use 'GN' or 'BN'")
        return MRNEncoder(in_channels=in_channels, depth=m.DEPTH, width=m.WIDTH, norm=encoder_norm,
                          stride_in_1x1=m.STRIDE_IN_1X1)
    if m.ENCODER == "mobilenet_v2":
        mn = cfg.MODEL.MOBILENET
        return MobileNetV2MRNEncoder(in_channels=in_channels, pretrained=mn.PRETRAINED, norm=mn.NORM,
                                     freeze_at=mn.FREEZE_AT)
    raise ValueError(f"MODEL.MRN.ENCODER must be 'resnet' or 'mobilenet_v2', got {m.ENCODER!r}")


@META_ARCH_REGISTRY.register()
class MaskRefineNet(nn.Module):
    """Refines one coarse instance mask per crop, guided by the instance's point.

    ``forward(batched_inputs)``: a list of dicts, one per crop, prepared by
    :func:`wssis_d2.mrn.inputs.make_mrn_inputs` (the same function the refinement uses):

    - "image": (3, S, S) uint8 or float, pixel values in INPUT.FORMAT channel order, not normalised;
    - "heatmap": (K, S, S) float; or, for the class-wise heatmap, the compact form (1, S, S) plus
      "classes": () or (1,) long contiguous class id, expanded here by
      :func:`wssis_d2.mrn.heatmaps.expand_heatmap` (what :class:`MRNDatasetMapper` produces);
    - "coarse_mask": (S, S) or (1, S, S), {0, 1};
    - "gt_mask": (S, S) {0, 1}, training only.

    Training returns {"loss_mrn_dice", ["loss_mrn_bce"]}; inference returns, per input,
    {"mask_prob": (S, S) float foreground probability}.
    """

    @configurable
    def __init__(
        self,
        *,
        encoder: MRNEncoder,
        decoder: MRNDecoder,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        heatmap_mode: str = "classwise",
        num_classes: int = 80,
        heatmap_sigma: float = 6.0,
        crop_size: int = 256,
        box_scale: float = 2.0,
        point_margin: float = 1.0,
        empty_box_size: float = 32.0,
        mask_threshold: float = 0.5,
        dice_weight: float = 1.0,
        bce_weight: float = 0.0,
        refine_batch_size: int = 32,
    ):
        """
        Args:
            encoder: :class:`MRNEncoder` whose ``in_channels`` = len(pixel_mean) + K + 1.
            decoder: :class:`MRNDecoder` built on the encoder's ``out_channels``.
            pixel_mean, pixel_std: per image channel, in the input's channel order.
            heatmap_mode: "classwise" or "agnostic" (see :mod:`wssis_d2.mrn.heatmaps`).
            num_classes: C_cls, for the class-wise heatmap.
            heatmap_sigma: Gaussian sigma in crop pixels.
            crop_size: S.
            box_scale: crop box scale at refinement time.
            point_margin, empty_box_size: see :func:`wssis_d2.mrn.boxes.crop_boxes`.
            mask_threshold: threshold of the pasted-back probabilities.
            dice_weight, bce_weight: loss weights (a zero weight drops that loss).
            refine_batch_size: crops per network call in :meth:`refine`.
        """
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.heatmap_mode = heatmap_mode
        self.num_classes = num_classes
        self.num_heatmap_channels = heatmap_channels(heatmap_mode, num_classes)
        self.heatmap_sigma = heatmap_sigma
        self.crop_size = crop_size
        self.box_scale = box_scale
        self.point_margin = point_margin
        self.empty_box_size = empty_box_size
        self.mask_threshold = mask_threshold
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.refine_batch_size = refine_batch_size
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        expected = len(pixel_mean) + self.num_heatmap_channels + 1
        got = encoder.stem.image_channels + encoder.stem.conv1_extra.in_channels
        if got != expected:
            raise ValueError(f"encoder takes {got} channels, inputs have {expected} "
                             f"(image {len(pixel_mean)} + heatmap {self.num_heatmap_channels} + mask 1)")

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.MRN
        k = heatmap_channels(m.HEATMAP_MODE, m.NUM_CLASSES)
        encoder = build_mrn_encoder(cfg, in_channels=len(cfg.MODEL.PIXEL_MEAN) + k + 1)
        decoder = MRNDecoder(in_channels=encoder.out_channels, aspp_channels=m.ASPP_CHANNELS,
                             aspp_dilations=m.ASPP_DILATIONS, decoder_channels=m.DECODER_CHANNELS,
                             norm=m.NORM)
        return {
            "encoder": encoder,
            "decoder": decoder,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "heatmap_mode": m.HEATMAP_MODE,
            "num_classes": m.NUM_CLASSES,
            "heatmap_sigma": m.HEATMAP_SIGMA,
            "crop_size": m.CROP_SIZE,
            "box_scale": m.BOX_SCALE,
            "point_margin": m.POINT_MARGIN,
            "empty_box_size": m.EMPTY_BOX_SIZE,
            "mask_threshold": m.MASK_THRESHOLD,
            "dice_weight": m.DICE_WEIGHT,
            "bce_weight": m.BCE_WEIGHT,
            "refine_batch_size": m.REFINE_BATCH_SIZE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def mask_logits(self, images: torch.Tensor, heatmaps: torch.Tensor,
                    coarse_masks: torch.Tensor) -> torch.Tensor:
        """Foreground logits of N crops.

        Args:
            images: (N, 3, S, S) unnormalised pixel values (uint8 or float).
            heatmaps: (N, K, S, S) float.
            coarse_masks: (N, 1, S, S) or (N, S, S), {0, 1}.

        Returns:
            (N, 1, S, S) float logits.
        """
        n = images.shape[0]
        images = (images.to(self.device).float() - self.pixel_mean) / self.pixel_std
        coarse = coarse_masks.to(self.device).float().reshape(n, 1, *images.shape[-2:])
        x = torch.cat([images, heatmaps.to(self.device).float(), coarse], dim=1)
        return self.decoder(self.encoder(x), x.shape[-2:])

    def predict(self, images: torch.Tensor, heatmaps: torch.Tensor,
                coarse_masks: torch.Tensor) -> torch.Tensor:
        """Tensor-level inference: same inputs as :meth:`mask_logits` -> (N, S, S) probabilities.

        Gradient mode is left to the caller (:meth:`refine` runs it under ``torch.no_grad``).
        """
        return self.mask_logits(images, heatmaps, coarse_masks)[:, 0].sigmoid()

    def losses(self, logits: torch.Tensor, gt_masks: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(N, 1, S, S) logits and (N, S, S) {0, 1} targets -> weighted loss dict."""
        # Dice with eps in numerator and denominator, averaged over the crops (0 without crops)
        dice = dice_loss(logits.sigmoid(), gt_masks, smooth=1e-3).sum() / max(len(logits), 1)
        out = {"loss_mrn_dice": self.dice_weight * dice}
        if self.bce_weight > 0:
            out["loss_mrn_bce"] = self.bce_weight * mask_bce_loss(logits, gt_masks)
        return out

    def batch_heatmaps(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> torch.Tensor:
        """(N, K, S, S) heatmaps of a batch on the model's device, expanding compact ones."""
        heatmaps = torch.stack([d["heatmap"] for d in batched_inputs]).to(self.device)
        k = heatmaps.shape[1]
        if k == self.num_heatmap_channels:
            return heatmaps
        if k == 1 and self.heatmap_mode == "classwise" and all("classes" in d for d in batched_inputs):
            classes = torch.stack([d["classes"].reshape(()) for d in batched_inputs])
            return expand_heatmap(heatmaps, classes, self.num_classes)
        raise ValueError(f"heatmaps have {k} channels, the model expects {self.num_heatmap_channels} "
                         "(or 1 channel plus 'classes' for the class-wise heatmap)")

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        images = torch.stack([d["image"] for d in batched_inputs])
        heatmaps = self.batch_heatmaps(batched_inputs)
        coarse = torch.stack([d["coarse_mask"].reshape(images.shape[-2:]) for d in batched_inputs])
        logits = self.mask_logits(images, heatmaps, coarse)
        if self.training:
            gt = torch.stack([d["gt_mask"].reshape(images.shape[-2:]) for d in batched_inputs])
            return self.losses(logits, gt.to(self.device))
        return [{"mask_prob": p} for p in logits[:, 0].sigmoid()]

    @torch.no_grad()
    def refine(
        self,
        image: torch.Tensor,
        coarse_masks: torch.Tensor,
        points: torch.Tensor,
        classes: Optional[torch.Tensor] = None,
        *,
        return_refined: bool = False,
    ):
        """Refine the coarse masks of N instances of one image (the pseudo-label refinement stage).

        Crop (scale ``box_scale``) -> predict -> paste back -> keep the coarse mask where the refined
        one is empty -> recompute boxes. Crops are built by the same
        :func:`wssis_d2.mrn.inputs.make_mrn_inputs` as the training data.

        Args:
            image: (3, H, W) unnormalised image, INPUT.FORMAT channel order.
            coarse_masks: (N, H, W) bool.
            points: (N, 2) float (x, y), continuous image coordinates.
            classes: (N,) long contiguous class ids (required for the class-wise heatmap).
            return_refined: also return which instances got their refined mask.

        Returns:
            masks: (N, H, W) bool on ``self.device``; boxes: (N, 4) float tight boxes (x0, y0, x1, y1);
            with ``return_refined``, a third value: (N,) bool, False where the refined mask was empty
            and the coarse mask was kept.
        """
        hw = tuple(image.shape[-2:])
        image = image.to(self.device)
        coarse_masks = coarse_masks.to(self.device).bool()
        points = points.to(self.device).float()
        classes = classes.to(self.device) if classes is not None else None
        boxes = crop_boxes(coarse_masks, points, hw, self.box_scale, point_margin=self.point_margin,
                           empty_box_size=self.empty_box_size)
        probs = []
        for i in range(0, coarse_masks.shape[0], self.refine_batch_size):  # memory batches
            sl = slice(i, i + self.refine_batch_size)
            inputs = make_mrn_inputs(
                image, coarse_masks[sl], points[sl], boxes[sl], out_size=self.crop_size,
                heatmap_mode=self.heatmap_mode, sigma=self.heatmap_sigma,
                classes=classes[sl] if classes is not None else None, num_classes=self.num_classes)
            probs.append(self.predict(inputs["image"], inputs["heatmap"], inputs["coarse_mask"]))
        probs = torch.cat(probs) if probs else image.new_zeros((0, self.crop_size, self.crop_size))
        refined = paste_masks(probs.float(), boxes, hw, self.mask_threshold)
        masks, boxes = merge_refined(coarse_masks, refined)
        if return_refined:
            return masks, boxes, refined.flatten(1).any(dim=1)
        return masks, boxes
