"""Issue 13 case 9: a checkpoint that does not fit the config is an error naming keys / shapes / the
checkpoint's architecture, never a silent partial load."""
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from wssis_d2 import add_wssis_config
from wssis_d2.checkpoint_check import CheckpointMismatchError, checked
import wssis_d2.mrn  # noqa: F401  (registers MaskRefineNet)

from conftest import REPO, load_train_net, saved_catalogs


@pytest.fixture(scope="module")
def train_net():
    """train_net.py imported without leaving its dataset registrations behind (other tests count them)."""
    with saved_catalogs():
        return load_train_net()

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _model(config, *opts):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(f"{REPO}/{config}")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])
    return build_model(cfg)


@pytest.fixture(scope="module")
def solo_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "solo3.pth")
    torch.save({"model": _model("configs/CPU/SOLOv2_tiny.yaml", "MODEL.SOLOV2.NUM_CLASSES", 3).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def mrn_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "mrn.pth")
    torch.save({"model": _model("configs/MRN/MRN_R18_cpu.yaml").state_dict()}, path)
    return path


def test_fitting_checkpoint_loads_every_parameter(solo_ckpt):
    model = _model("configs/CPU/SOLOv2_tiny.yaml", "MODEL.SOLOV2.NUM_CLASSES", 3)
    for p in model.parameters():
        p.data.zero_()
    checked(DetectionCheckpointer(model)).load(solo_ckpt)
    saved = torch.load(solo_ckpt)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_other_number_of_classes_names_keys_and_shapes(solo_ckpt):
    model = _model("configs/CPU/SOLOv2_tiny.yaml", "MODEL.SOLOV2.NUM_CLASSES", 5)
    with pytest.raises(CheckpointMismatchError, match=r"solo3.pth does not fit the config: .*ins_head\.\S+: "
                                                      r"checkpoint \(3, .*\) vs model \(5, .*\).*NUM_CLASSES"):
        checked(DetectionCheckpointer(model)).load(solo_ckpt)


def test_mrn_checkpoint_given_to_solov2_and_back(solo_ckpt, mrn_ckpt):
    with pytest.raises(CheckpointMismatchError, match=r"mrn.pth is a MaskRefineNet checkpoint \(keys decoder.\*, "
                                                      r"encoder.\*\); the config builds WSSISSOLOv2"):
        checked(DetectionCheckpointer(_model("configs/CPU/SOLOv2_tiny.yaml"))).load(mrn_ckpt)
    with pytest.raises(CheckpointMismatchError, match=r"solo3.pth is a SOLOv2 checkpoint .*builds MaskRefineNet"):
        checked(DetectionCheckpointer(_model("configs/MRN/MRN_R18_cpu.yaml"))).load(solo_ckpt)


def test_other_architecture_of_the_same_family(solo_ckpt, tmp_path):
    sd = torch.load(solo_ckpt)["model"]
    dropped = sorted(k for k in sd if k.startswith("backbone."))[0]
    sd.pop(dropped)
    sd["ins_head.extra_tower.weight"] = torch.zeros(2)
    path = str(tmp_path / "other.pth")
    torch.save({"model": sd}, path)
    model = _model("configs/CPU/SOLOv2_tiny.yaml", "MODEL.SOLOV2.NUM_CLASSES", 3)
    with pytest.raises(CheckpointMismatchError, match=rf"other.pth is a checkpoint of another architecture .*1 "
                                                      rf"parameters missing from it \({dropped}\), 1 .*extra_tower"):
        checked(DetectionCheckpointer(model)).load(path)


def test_backbone_only_checkpoint_may_leave_heads_missing(solo_ckpt, tmp_path):
    sd = {k: v for k, v in torch.load(solo_ckpt)["model"].items() if k.startswith("backbone.")}
    path = str(tmp_path / "backbone.pth")
    torch.save({"model": sd}, path)
    checked(DetectionCheckpointer(_model("configs/CPU/SOLOv2_tiny.yaml"))).load(path)


def test_train_net_eval_only_refuses_mrn_weights(train_net, mrn_ckpt, tmp_path):
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", f"{REPO}/configs/CPU/SOLOv2_tiny.yaml", "--eval-only", "MODEL.WEIGHTS", mrn_ckpt,
         "OUTPUT_DIR", str(tmp_path), "DATASETS.TEST", "()", "MODEL.DEVICE", "cpu"])
    with pytest.raises(CheckpointMismatchError, match="MaskRefineNet checkpoint"):
        train_net.main(args)


def test_nothing_to_load_says_what_the_model_starts_from(caplog):
    """No MODEL.WEIGHTS and nothing to resume: one line that the model keeps its built weights (a backbone
    that loads ImageNet weights itself has them), not fvcore's "Initializing model from scratch"."""
    import logging

    model = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.INFO):
        assert checked(DetectionCheckpointer(model)).resume_or_load("", resume=False) == {}
    text = caplog.text
    assert "from scratch" not in text and "Linear keeps the weights it was built with" in text
