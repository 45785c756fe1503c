"""Every config key wssis-d2 adds to detectron2's, with its default.

``add_wssis_config(cfg)`` only adds keys (it never changes detectron2's own defaults) and holds no logic.
Paper symbols refer to SOLOv2 (Wang et al. 2020) and PointWSSIS (Kim et al., CVPR 2023).
"""
from detectron2.config import CfgNode as CN


def add_wssis_config(cfg):
    """Add the SOLOv2, point-guided pseudo-label, MaskRefineNet and data keys to ``cfg`` in place."""
    # ---------------------------------------------------------------- SOLOv2 (MODEL.SOLOV2)
    cfg.MODEL.SOLOV2 = CN()
    # Backbone features fed to the instance branch, finest first (P2..P6 in the paper).
    cfg.MODEL.SOLOV2.INSTANCE_IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    # Stride of each instance level (P2 halved, P6 resized to P5). Used only as the minimum mask area:
    # a mask whose area at 1/4 input resolution is <= its level's value is dropped.
    cfg.MODEL.SOLOV2.FPN_INSTANCE_STRIDES = [8, 8, 16, 32, 32]
    # (min, max) of sqrt(box w * box h) in input pixels that each level is responsible for.
    cfg.MODEL.SOLOV2.FPN_SCALE_RANGES = [[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]]
    # S: grid size of each level (S x S cells).
    cfg.MODEL.SOLOV2.NUM_GRIDS = [40, 36, 24, 16, 12]
    # sigma: center region = mask center of mass +- sigma * box size / 2 (at most 3 x 3 cells).
    cfg.MODEL.SOLOV2.SIGMA = 0.2
    # Channels of the FPN features entering the instance branch.
    cfg.MODEL.SOLOV2.INSTANCE_IN_CHANNELS = 256
    # Channels of the conv tower in the category and kernel branches.
    cfg.MODEL.SOLOV2.INSTANCE_CHANNELS = 512
    # Number of conv layers in each of the category and kernel towers.
    cfg.MODEL.SOLOV2.NUM_INSTANCE_CONVS = 4
    # C: number of foreground classes.
    cfg.MODEL.SOLOV2.NUM_CLASSES = 80
    # E: mask-feature channels = length of each cell's dynamic 1x1 kernel.
    cfg.MODEL.SOLOV2.NUM_KERNELS = 256
    # Backbone features fused by the mask-feature branch (finest first, P2 at stride 4).
    cfg.MODEL.SOLOV2.MASK_IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Channels of the FPN features entering the mask-feature branch.
    cfg.MODEL.SOLOV2.MASK_IN_CHANNELS = 256
    # Hidden channels of the mask-feature branch.
    cfg.MODEL.SOLOV2.MASK_CHANNELS = 128
    # Normalization in both heads: "GN" (32 groups) or "" for none.
    cfg.MODEL.SOLOV2.NORM = "GN"
    # Initial foreground probability of the category classifier (bias init).
    cfg.MODEL.SOLOV2.PRIOR_PROB = 0.01
    # Focal loss alpha / gamma / weight of the category branch.
    cfg.MODEL.SOLOV2.LOSS = CN()
    cfg.MODEL.SOLOV2.LOSS.FOCAL_ALPHA = 0.25
    cfg.MODEL.SOLOV2.LOSS.FOCAL_GAMMA = 2.0
    cfg.MODEL.SOLOV2.LOSS.FOCAL_WEIGHT = 1.0
    # Weight of the Dice mask loss (computed on positive cells only).
    cfg.MODEL.SOLOV2.LOSS.DICE_WEIGHT = 3.0
    # Inference: keep (cell, class) pairs whose class probability exceeds this.
    cfg.MODEL.SOLOV2.SCORE_THR = 0.1
    # Inference: mask probability threshold (at 1/4 resolution and at full resolution).
    cfg.MODEL.SOLOV2.MASK_THR = 0.5
    # Inference: at most this many candidates enter Matrix NMS.
    cfg.MODEL.SOLOV2.NMS_PRE = 500
    # Inference: drop candidates whose score after Matrix NMS decay is below this.
    cfg.MODEL.SOLOV2.UPDATE_THR = 0.05
    # Matrix NMS decay kernel: "gaussian" or "linear".
    cfg.MODEL.SOLOV2.NMS_KERNEL = "gaussian"
    # Matrix NMS Gaussian sigma.
    cfg.MODEL.SOLOV2.NMS_SIGMA = 2.0
    # Inference: detections kept per image.
    cfg.MODEL.SOLOV2.MAX_PER_IMG = 100

    # ---------------------------------------------------------------- MaskRefineNet (MODEL.MRN)
    # Image channels are normalised with MODEL.PIXEL_MEAN / MODEL.PIXEL_STD (in INPUT.FORMAT order).
    cfg.MODEL.MRN = CN()
    # ResNet depth of the encoder: 18, 34, 50, 101 (paper) or 152.
    cfg.MODEL.MRN.DEPTH = 101
    # Stem width; stage widths scale with it (64 = standard ResNet, smaller for tiny CPU nets).
    cfg.MODEL.MRN.WIDTH = 64
    # Bottleneck stride in the 1x1 conv (True: MSRA/caffe2 weights) or the 3x3 conv (False: torchvision).
    cfg.MODEL.MRN.STRIDE_IN_1X1 = True
    # Normalization of the decoder (and of the encoder unless ENCODER_NORM is set): "GN" (gcd(32, C)
    # groups), "BN", "SyncBN" or "" (FrozenBN refused: it never trains from random init).
    cfg.MODEL.MRN.NORM = "GN"
    # Normalization of the ResNet encoder; "" = NORM. "FrozenBN" for detectron2's MSRA (caffe2) weights,
    # whose batch norm is folded into a fixed scale and shift (needs MODEL.WEIGHTS).
    cfg.MODEL.MRN.ENCODER_NORM = ""
    # Point heatmap: "classwise" (NUM_CLASSES + 1 channels: 0 = any class, c + 1 = class c) or "agnostic" (1).
    cfg.MODEL.MRN.HEATMAP_MODE = "classwise"
    # Standard deviation of the point Gaussian, in output-crop pixels (peak value 1).
    cfg.MODEL.MRN.HEATMAP_SIGMA = 6.0
    # S: side of the square crop fed to the network, in pixels (multiple of 32).
    cfg.MODEL.MRN.CROP_SIZE = 256
    # Crop box = coarse-mask tight box scaled by this about its center (inference).
    cfg.MODEL.MRN.BOX_SCALE = 2.0
    # (lo, hi): training scale drawn uniformly per instance in this range.
    cfg.MODEL.MRN.TRAIN_BOX_SCALE_RANGE = (1.0, 2.0)
    # Crop box keeps at least this many image pixels between the point and its edges (before clipping).
    cfg.MODEL.MRN.POINT_MARGIN = 1.0
    # Side in image pixels of the box used for an empty coarse mask (centered on the point, then scaled).
    cfg.MODEL.MRN.EMPTY_BOX_SIZE = 32.0
    # Output channels of the ASPP module on the last encoder stage.
    cfg.MODEL.MRN.ASPP_CHANNELS = 256
    # ASPP atrous rates (plus a 1x1 branch and global image pooling).
    cfg.MODEL.MRN.ASPP_DILATIONS = [3, 6, 9]
    # U-Net decoder widths after fusing the skips at strides 16, 8, 4, 2.
    cfg.MODEL.MRN.DECODER_CHANNELS = [256, 128, 64, 32]
    # Weight of the Dice loss on the refined mask (the paper's only loss).
    cfg.MODEL.MRN.DICE_WEIGHT = 1.0
    # Weight of an optional per-pixel BCE loss (0 disables it).
    cfg.MODEL.MRN.BCE_WEIGHT = 0.0
    # Probability threshold of the refined mask after pasting back to the image.
    cfg.MODEL.MRN.MASK_THRESHOLD = 0.5
    # C: number of foreground classes (contiguous ids 0..C-1) for the class-wise heatmap.
    cfg.MODEL.MRN.NUM_CLASSES = 80
    # Instances per network batch in MaskRefineNet.refine (bounds memory at inference).
    cfg.MODEL.MRN.REFINE_BATCH_SIZE = 32
    # Optimizer train_net.py builds: "SGD" (detectron2's builder) or "ADAM" (MaskRefineNet, as published;
    # betas (0.9, 0.999), L2 decay SOLVER.WEIGHT_DECAY, detectron2's parameter groups and clipping).
    cfg.SOLVER.OPTIMIZER = "SGD"
    # ------------------------------------------------------------ end of MaskRefineNet (MODEL.MRN)

    # ---------------------------------------------------------------- pseudo-labels (MODEL.WSSIS)
    cfg.MODEL.WSSIS = CN()
    # How point images are decoded: "adaptive" (APS: best level per point), "fixed" (FIXED_LEVEL for every
    # point), "oracle_size" (the level whose scale range holds the true instance size; needs sizes) or
    # "threshold" (SSIS baseline: points ignored, ordinary inference kept where score >= THRESHOLD).
    cfg.MODEL.WSSIS.PSEUDO_LABEL_MODE = "adaptive"
    # Level index (0 = finest, P2) used by every point in "fixed" mode.
    cfg.MODEL.WSSIS.FIXED_LEVEL = 0
    # "threshold" mode: keep detections whose final score is >= this (paper: 0.1 or 0.5).
    cfg.MODEL.WSSIS.THRESHOLD = 0.1
    # Cap on pseudo-labels per image, by score; 0 = none (default: every labelled point keeps its
    # pseudo-label; a cap logs the points it drops). "threshold" mode: 0 = MODEL.SOLOV2.MAX_PER_IMG.
    cfg.MODEL.WSSIS.MAX_PER_IMAGE = 0
    # Same-class points choosing one (level, cell): "reassign" (nearest to the cell centre keeps it, the
    # others take their best free level, else split), "split" (the cell mask split by nearest point) or
    # "share" (all get the same whole mask, as published).
    cfg.MODEL.WSSIS.COLLISION_RULE = "reassign"
    # Masks with area <= the level stride: "before" = excluded before the level is chosen, "after" =
    # choose the level first, then drop a tiny chosen mask (published).
    cfg.MODEL.WSSIS.TINY_MASK_RULE = "before"
    # A click whose chosen cell gives no mask tries its other levels by score, then half MASK_THR (point modes).
    cfg.MODEL.WSSIS.EMPTY_MASK_RETRY = True
    # Class-aware mask NMS IoU among point masks (points of one cell never suppress each other); < 0 = off.
    cfg.MODEL.WSSIS.NMS_IOU = -1.0
    # --eval-only exports pseudo-labels for every DATASETS.TEST set (points sets always are exported;
    # mask sets get points from their masks, rule and seed from the json's info, default centroid).
    cfg.MODEL.WSSIS.EXPORT_PSEUDO_LABELS = False
    # Export path; "" = OUTPUT_DIR/pseudo_labels/<dataset>.json; "{dataset}" is replaced by the name.
    cfg.MODEL.WSSIS.EXPORT_PATH = ""
    # ------------------------------------------------------------ end of pseudo-labels (MODEL.WSSIS)

    # ------------------------------------------- ImageNet MobileNetV2 (MODEL.MOBILENET, MODEL.MRN.ENCODER)
    # Used by MODEL.BACKBONE.NAME "build_mobilenetv2_fpn_backbone" and by MaskRefineNet's "mobilenet_v2"
    # encoder. Inputs: INPUT.FORMAT "RGB", PIXEL_MEAN [123.675, 116.28, 103.53], PIXEL_STD
    # [58.395, 57.12, 57.375] (torchvision's ImageNet mean/std in 0-255 units).
    cfg.MODEL.MOBILENET = CN()
    # Load torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 when the model is built (file from
    # scripts/install_mobilenet_weights.sh in torch.hub.get_dir()/checkpoints); False = random init.
    cfg.MODEL.MOBILENET.PRETRAINED = True
    # "FrozenBN" (ImageNet statistics and affine fixed: detectron2's FrozenBatchNorm2d) or "BN" (trained).
    cfg.MODEL.MOBILENET.NORM = "FrozenBN"
    # Stages whose weights are not trained: 0 none, 1 stem, 2 stem + res2, ..., 5 all (MRN: RGB part only).
    cfg.MODEL.MOBILENET.FREEZE_AT = 0
    # MaskRefineNet encoder: "resnet" (MODEL.MRN.DEPTH / WIDTH) or "mobilenet_v2" (MODEL.MOBILENET.*).
    cfg.MODEL.MRN.ENCODER = "resnet"
    # --------------------------------------- end of ImageNet MobileNetV2 (MODEL.MOBILENET, MODEL.MRN.ENCODER)

    # ---------------------------------------------------------------- tiles (INPUT.TILE)
    # Large images with small objects are seen through square tiles (SOLOv2's grid is relative to its
    # input). Training: a random SIZE x SIZE crop of the image at its own resolution, scaled by SCALE.
    # Inference (plain, threshold and point-guided): overlapping tiles covering the image, each scaled by
    # SCALE; clicks are decoded in the tile where they lie farthest from a tile border, plain detections of
    # all tiles are merged (docs/TILES.md). With tiles on, INPUT.MIN_SIZE_* / MAX_SIZE_* are not applied.
    cfg.INPUT.TILE = CN()
    # Tile side in pixels of the image's own resolution; 0 = off (whole images resized by INPUT.MIN_SIZE_*).
    cfg.INPUT.TILE.SIZE = 0
    # Overlap of neighbouring inference tiles: pixels if >= 1, else a fraction of SIZE (keep it >= the
    # largest objects' size, so that each object lies whole inside some tile).
    cfg.INPUT.TILE.OVERLAP = 0.25
    # Resize factor applied to each tile before the model (model input side = SIZE x SCALE).
    cfg.INPUT.TILE.SCALE = 1.0
    # Training: SCALE is multiplied by a factor drawn uniformly from this (lo, hi) range per crop.
    cfg.INPUT.TILE.TRAIN_SCALE_RANGE = (1.0, 1.0)
    # Inference: tiles per forward pass (bounds memory; results do not depend on it).
    cfg.INPUT.TILE.BATCH = 4
    # Plain inference: two same-class detections of different tiles are one object when their seam IoU
    # (IoU where both tiles can see them, modeling/tiling.py) exceeds this; whole copies stay first.
    cfg.INPUT.TILE.MERGE_THRESHOLD = 0.5
    # ------------------------------------------------------------ end of tiles (INPUT.TILE)

    # ---------------------------------------------------------------- your own datasets (DATASETS.*)
    # Datasets train_net.py registers before training, so that your COCO files need no Python: a list of
    # [name, json_file, image_root]. A json whose annotations have "point_coords" is a points set (loader
    # load_point_json), else a COCO instances json with masks (detectron2's load_coco_json, COCO evaluator).
    # Use the names in DATASETS.TRAIN / DATASETS.TEST, e.g. [["mine_train", "labels.json", "images"]].
    cfg.DATASETS.WSSIS_REGISTER = []
    # Missing / unreadable / truncated image files: False = stop with an error naming the file and image id;
    # True = skip them with a warning and a count (training: another image is drawn; export: left out).
    cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES = False
    # Training augmentation draws seeded per sample from (SEED, position in the sampler's stream, dataset
    # index): the same whatever the number of processes (wssis_d2/data/sample_seeds.py). False: detectron2's
    # per-process RNGs (SEED + rank), so each image's draws depend on the process that loads it.
    cfg.DATALOADER.WSSIS_SAMPLE_SEEDS = False
    # ------------------------------------------------------------ end of your own datasets (DATASETS.*)

    # ---------------------------------------------------------------- evaluation (TEST.*)
    # Microscopy metrics of a model's predictions (accuracy@0.5, count error, ...; evaluation/microscopy.py):
    # only detections with score >= this count as objects (COCO AP ranks them all and needs no threshold).
    cfg.TEST.WSSIS_COUNT_SCORE_THR = 0.5
