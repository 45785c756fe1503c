"""Helper script of tests/test_distributed.py (not a test module): one training step of the tiny SOLOv2 on
a fixed batch of 4 images, in 1 process or split over N GLOO processes (``wssis_d2.engine.launch``), and
the first samples of a ``DATALOADER.WSSIS_SAMPLE_SEEDS`` train loader.

    python tests/dist_step.py --num-processes N --out result.pth

Rank r takes the images r, r + N, ... of the batch (as detectron2's ``TrainingSampler`` deals them). Rank 0
saves ``{"losses", "grads", "samples"}``: the loss dict averaged over the processes (what detectron2's
trainer logs), the gradients after DDP's averaging, and the sample-seeded loader's first 8 samples in
stream order (gathered from every process). With one process it also saves ``"per_process"``: the losses
and the averaged gradients of N = 2 processes that each normalise by their own counts (the behaviour
before the global normalisation), to show that the test can tell the two apart.
"""
import argparse
import os
import sys

import numpy as np
import torch

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wssis_d2 import add_wssis_config  # noqa: E402
from wssis_d2.data.sample_seeds import build_sample_seeded_train_loader  # noqa: E402
from wssis_d2.engine.launch import create_ddp_model, launch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBJECTS_PER_IMAGE = (3, 1, 0, 2)  # unequal positives per process; one image without objects


def tiny_cfg():
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/CPU/SOLOv2_tiny.yaml"))
    cfg.merge_from_list(["SEED", 7, "SOLVER.IMS_PER_BATCH", 2, "DATALOADER.WSSIS_SAMPLE_SEEDS", True])
    return cfg


def fixed_batch(size=96):
    """4 random images with rectangle objects (counts ``OBJECTS_PER_IMAGE``), the same in every process."""
    g = torch.Generator().manual_seed(0)
    batch = []
    for n in OBJECTS_PER_IMAGE:
        masks, boxes = torch.zeros(n, size, size, dtype=torch.bool), []
        for j in range(n):
            x0, y0 = torch.randint(0, size - 40, (2,), generator=g).tolist()
            w, h = torch.randint(12, 36, (2,), generator=g).tolist()
            masks[j, y0:y0 + h, x0:x0 + w] = True
            boxes.append([x0, y0, x0 + w, y0 + h])
        inst = Instances((size, size), gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                         gt_classes=torch.randint(0, 6, (n,), generator=g), gt_masks=BitMasks(masks))
        batch.append({"image": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
                      "instances": inst})
    return batch


def loss_and_grads(model, inputs):
    model.zero_grad()
    losses = model(inputs)
    sum(losses.values()).backward()
    named = model.module.named_parameters() if hasattr(model, "module") else model.named_parameters()
    return {k: v.item() for k, v in losses.items()}, {n: p.grad.clone() for n, p in named if p.requires_grad}


def mean_dicts(dicts):
    return {k: float(np.mean([d[k] for d in dicts])) for k in dicts[0]}


def _mapper(d):
    """Records the draws a sample gets from the global RNGs (as detectron2's augmentations draw)."""
    return {"index": d["index"], "np": float(np.random.rand()), "torch": float(torch.rand(())),
            "width": 8, "height": 8}


def seeded_samples(cfg, num=8):
    """The first ``num`` samples of the stream (all processes' batches interleaved back into stream order)."""
    seed_all_rng(cfg.SEED + comm.get_rank())  # as detectron2's default_setup
    loader = iter(build_sample_seeded_train_loader(cfg, _mapper, [{"index": i} for i in range(5)]))
    world, per = comm.get_world_size(), cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    mine = [s for _ in range(num // cfg.SOLVER.IMS_PER_BATCH) for s in next(loader)]
    ranks = comm.all_gather(mine)
    assert per >= 1
    return [ranks[p % world][p // world] for p in range(num)]  # position p: rank p % W, its (p // W)-th


def main(out):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)  # the same initial weights in every process
    model.train()
    rank, world = comm.get_rank(), comm.get_world_size()
    batch = fixed_batch()
    result = {"samples": seeded_samples(cfg)}
    losses, grads = loss_and_grads(create_ddp_model(model, broadcast_buffers=False), batch[rank::world])
    result.update(losses=mean_dicts(comm.all_gather(losses)), grads=grads)
    if world == 1:  # two halves, each normalised by its own counts (a process of 2 before this fix)
        halves = [loss_and_grads(model, batch[r::2]) for r in range(2)]
        result["per_process"] = {
            "losses": mean_dicts([h[0] for h in halves]),
            "grads": {n: (halves[0][1][n] + halves[1][1][n]) / 2 for n in grads},
        }
    if comm.is_main_process():
        torch.save(result, out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    launch(main, args.num_processes, dist_url="auto", args=(args.out,))
