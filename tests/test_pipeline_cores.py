"""SHARE_CORES: the running-stages file and the hook that sets a training stage's torch threads."""
import itertools
import json
import os

import torch
from torch import nn

from detectron2.engine import SimpleTrainer

from wssis_d2.pipeline.cores import CoreShareHook, read_running, threads_for, write_running


def test_threads_for_divides_the_cores():
    assert threads_for(2, 1) == 2
    assert threads_for(2, 2) == 1
    assert threads_for(16, 3) == 5
    assert threads_for(2, 3) == 1  # never below the floor
    assert threads_for(8, 2, floor=6) == 6
    assert threads_for(4, 0) == 4  # nothing recorded: alone


def test_running_file_round_trip(tmp_path):
    path = str(tmp_path / "run" / ".running_stages.json")
    assert read_running(path) == 0  # no scheduler
    write_running(path, ["teacher", "full_100"])
    assert read_running(path) == 2
    with open(path) as f:
        assert json.load(f) == ["full_100", "teacher"]
    write_running(path, [])
    assert read_running(path) == 0
    assert [n for n in os.listdir(tmp_path / "run") if n.endswith(".tmp")] == []


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, batch):
        return {"loss": (self.w * batch).sum()}


def test_hook_follows_the_running_stages_during_training(tmp_path):
    path = str(tmp_path / ".running_stages.json")
    model = _Tiny()
    data = itertools.repeat(torch.ones(3))
    trainer = SimpleTrainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1))
    seen = []

    class Record(CoreShareHook):
        def before_step(self):
            if self.trainer.iter == 2:
                write_running(path, ["student"])  # the other stage ended
            super().before_step()
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        write_running(path, ["student", "full_100"])
        trainer.register_hooks([Record(path, cores=4, floor=1, period=1)])
        trainer.train(0, 4)
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 2, 4, 4]  # 4 cores / 2 stages, then alone: all 4
