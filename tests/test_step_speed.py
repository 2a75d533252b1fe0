"""The training-step levers: the CUDA-graph step's eager fallback, and the benchmark script.

The graph path itself needs a CUDA device; here (a CPU) the fallback must say so once and
train exactly as the plain eager step does.
"""

import contextlib
import copy
import json
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from effnet_lab.fast_step import TrainingStep, capturable_optimizer
from effnet_lab.model import B0_STAGES, EfficientNetConfig, build
from effnet_lab.packed import pack, packed_loss

ROOT = Path(__file__).resolve().parents[1]
SMALL = EfficientNetConfig(width=0.5, depth=1.0, stem="cifar", num_classes=10, dropout=0.0, drop_path_rate=0.0,
                          stages=B0_STAGES[:2], head_channels=32)



def test_without_cuda_the_graph_step_says_so_once_and_trains_exactly_like_the_eager_step(one_thread):
    network = pack([build(SMALL, seed=seed) for seed in range(2)])
    reference = copy.deepcopy(network)
    optimizer = capturable_optimizer(network.parameters(), "cpu", lr=0.1, weight_decay=5e-4)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                          weight_decay=5e-4)
    with pytest.warns(UserWarning, match="CUDA graphs need a CUDA device, the model is on cpu: running the "
                                         "training step eagerly") as caught:
        step = TrainingStep(network, optimizer, packed_loss, cuda_graph=True, warmup_steps=1)
    assert len(caught) == 1 and step.mode == "eager" and "CUDA device" in step.fallback_reason
    generator = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning while training
        for _ in range(3):
            images = torch.randn(4, 6, 8, 8, generator=generator)
            labels = torch.randint(0, 10, (4, 2), generator=generator)
            loss = step(images, labels)
            reference_optimizer.zero_grad()
            expected = packed_loss(reference(images), labels)
            expected.backward()
            reference_optimizer.step()
            assert torch.equal(loss, expected.detach())
    for ours, theirs in zip(network.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)
    assert not torch.equal(network.network.stem.conv.weight, pack([build(SMALL, seed=0), build(SMALL, seed=1)])
                           .network.stem.conv.weight)  # it trained


class StandInStream:
    def __init__(self, device=None):
        pass

    def wait_stream(self, other):
        pass


@pytest.mark.parametrize("capture_fails", [False, True], ids=["captured", "capture-fails"])
def test_graph_path_warms_up_captures_once_then_replays_or_falls_back(monkeypatch, one_thread, capture_fails):
    """The graph path's order of events, with stand-ins for CUDA's streams and graphs (no GPU here)."""
    events = []

    class StandInGraph:
        def replay(self):
            events.append("replay")

    @contextlib.contextmanager
    def capture(graph, stream=None):
        events.append("capture")
        yield
        if capture_fails:
            raise RuntimeError("operation not permitted when stream is capturing\n(details)")

    monkeypatch.setattr(torch.cuda, "Stream", StandInStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: StandInStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext(events.append("side stream")))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", StandInGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    network = build(SMALL)
    optimizer = capturable_optimizer(network.parameters(), "cpu", lr=0.1)
    with pytest.warns(UserWarning, match="need a CUDA device"):
        step = TrainingStep(network, optimizer, F.cross_entropy, cuda_graph=True, warmup_steps=2)
    step.mode, step.fallback_reason, step.stream = "cuda graph", None, StandInStream()  # as on a GPU
    images, labels = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            step(images, labels)
    if capture_fails:
        assert events == ["side stream", "side stream", "capture"]  # then eager, three times
        assert step.mode == "eager" and [str(w.message) for w in caught] == [
            "capturing the training step failed (operation not permitted when stream is capturing): "
            "running the training step eagerly"]
    else:
        assert events == ["side stream", "side stream", "capture", "replay", "replay", "replay"] and not caught
        assert torch.equal(step.static_images, images) and step.mode == "cuda graph"
        optimizer.param_groups[0]["lr"] = 0.05  # a number is baked into the graph: changing it is refused
        with pytest.raises(RuntimeError, match="learning rate changed after the step was captured"):
            step(images, labels)


def test_capturable_optimizer_and_step_settings_are_checked():
    params = list(build(SMALL).parameters())
    sgd, adamw = capturable_optimizer(params, "cpu"), capturable_optimizer(params, "cpu", name="adamw", lr=1e-3)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["lr"] == 0.1
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["lr"] == 1e-3
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adamw'"):
        capturable_optimizer(params, "cpu", name="lamb")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainingStep(build(SMALL), sgd, F.cross_entropy, cuda_graph=False, warmup_steps=0)


def test_step_speed_quick_measures_every_lever_on_both_networks(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import step_speed
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "step-speed.json"
    done = subprocess.run([sys.executable, "benchmarks/step_speed.py", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads(out.read_text())
    assert table["benchmark"] == "step_speed" and table["quick"] is True
    for key in ("device", "torch", "git_commit", "date", "command", "precision", "memory_format"):
        assert table[key], key
    assert "--quick" in table["command"] and table["device"].startswith("cpu")
    assert [r["model"] for r in table["results"]] == list(step_speed.QUICK_MODELS)
    for result in table["results"]:
        assert result["skipped"] == {}
        levers = {row["name"]: row for row in result["levers"]}
        assert list(levers) == [lever.name for lever in step_speed.LEVERS]
        assert levers["eager"]["ratio_to_eager"] == 1.0
        for lever in step_speed.LEVERS:
            row = levers[lever.name]
            assert {k: row[k] for k in asdict(lever)} == asdict(lever)
            assert row["images_per_second"] > 0 and len(row["all_rounds"]) == table["rounds"]
            assert row["images_per_step"] == table["base_batch_size"] * lever.batch_factor * lever.n_models
            eager = levers["eager"]["images_per_second"]
            assert row["ratio_to_eager"] == pytest.approx(row["images_per_second"] / eager)
            # On a CPU a graph lever is the eager step, and says so.
            assert row["step_mode"] == "eager"
            assert ("eager fallback: CUDA graphs need a CUDA device" in row["note"]) == lever.cuda_graph
        assert f"{result['model']}: width {result['width']}, depth {result['depth']}, 21 px" in done.stdout
