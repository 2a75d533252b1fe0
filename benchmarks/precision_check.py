"""Does bf16 autocast cost the scaling comparison accuracy? The compare baseline in fp32 on the GPU.

Why: the comparison's baseline (width 0.5, 21 px, 6 epochs) reached 48.3% and 48.8% on an
NVIDIA H200 under bf16 autocast, but 65.3% when the same recipe ran in fp32 on this project's
development CPU (seed 0; the CPU cannot run bf16 at a usable speed, so it cannot test bf16
itself), with a lower training loss (1.27 against 1.63). One run proves little: this recipe's
seeds already differ by up to 23 points on the GPU. And bf16 is not an obvious culprit: at
initialisation one batch's gradients under bf16 autocast agree with the fp32 ones to a cosine
of 0.3 to 0.75 (``--gradients``), while two different batches' fp32 gradients agree to
about 0.0-0.06, so rounding adds far less noise than sampling the batch does. And bf16's
rounding emulated on the CPU (``--emulate-bf16``) trained the baseline to 63.5%, near fp32's
65.3%: if bf16 is the cause, it is through a CUDA kernel, not the rounding itself. A few GPU
minutes settle it: if the GPU's fp32 runs land near the CPU's and its bf16 rerun near 48%,
precision is the cause, and the scaling runs and the time-to-accuracy recipe should train in
fp32 (TF32); if the rerun of the same bf16 run lands far from its first time, the spread is
the recipe's own instability, which the comparison must then report.

What it runs: the compare baseline, exactly as ``effnet_lab.experiments`` plans it, trained
one run after another on the one GPU (alone, so the times are comparable):

- fp32 (``amp=False``), seeds 0 and 1: against the H200's bf16 rows (code version 1, now in
  ``results/scaling-gpu/superseded-code-v1/compare/``);
- bf16 again, seed 0: how far a rerun of the same bf16 run lands from its first time;
- after the first fp32 run, ``diagnose`` (seconds): that run's weights evaluated, and one batch's
  gradient taken, by the CPU in fp32 and by the GPU in fp32, bf16 autocast and emulated bf16,
  channels_last and not; and the GPU's data pipeline against the CPU's. It writes
  ``diagnosis.json``, which says where the GPU parts ways with the CPU, if it does.

Each run keeps its folder under ``--out`` (``fp32-seed0/record.json`` ...); a finished run
is not trained again, an interrupted one resumes. ``summary.json``, written once the runs are
done, puts the runs side by side (results/precision-check/README.md sets them beside the
comparison's bf16 rows).

    PYTHONPATH=. python benchmarks/precision_check.py --out results/precision-check
    PYTHONPATH=. python benchmarks/precision_check.py --quick --out /tmp/pc   # CPU smoke test
    PYTHONPATH=. python benchmarks/precision_check.py --gradients              # the gradient check (CPU)
    PYTHONPATH=. python benchmarks/precision_check.py --device cpu --runs fp32-seed0 --out runs/precision-cpu
        # the CPU run (24 min here); another --out, so that it is never taken for the GPU's
    PYTHONPATH=. python benchmarks/precision_check.py --emulate-bf16 --out runs/precision-cpu
        # bf16's rounding emulated in fp32 on the CPU (see emulate_bf16), seeds 0 and 1

Emulating bf16 (``--emulate-bf16``): the CPU here has no bf16 instructions, but bf16 autocast
changes only *which numbers* the network sees, not the arithmetic's order much: every
convolution reads bf16-rounded inputs and weights and writes a bf16 tensor (accumulating in
fp32), and every later op works on bf16 tensors, forward and backward. ``emulate_bf16`` rounds
to bf16 exactly there (module inputs, weights, outputs, and the gradients flowing back through
them) while computing in fp32, so a CPU trains with bf16's numbers at fp32's speed.
``--gradients`` checks how close the emulation comes to real bf16 autocast on one batch.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402

from effnet_lab import experiments  # noqa: E402
from effnet_lab.data import load_cifar  # noqa: E402
from effnet_lab.files import write_json, write_text  # noqa: E402
from effnet_lab.model import build  # noqa: E402
from effnet_lab.train import CHECKPOINT_FILE, RECORD_FILE, train  # noqa: E402

RUNS = [("fp32", 0), ("fp32", 1), ("bf16", 0)]  # in order of what they tell
EMULATED_RUNS = [("bf16-emulated", 0), ("bf16-emulated", 1)]  # --emulate-bf16, on a CPU


def baseline_run(seed: int, quick: bool) -> experiments.Run:
    return next(run for run in experiments.plan("compare", quick=quick, seeds=[seed]) if run.spec.family == "baseline")


class _RoundToBF16(torch.autograd.Function):
    """Identity up to bf16 rounding, both ways: the values forward, the gradients backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.to(torch.bfloat16).to(grad.dtype)


class _RoundedWeight(nn.Module):
    """A parametrization: the layer computes with its fp32 weight rounded to bf16, as autocast casts it."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _RoundToBF16.apply(weight)


def emulate_bf16(model: nn.Module) -> nn.Module:
    """Make ``model`` compute with the numbers bf16 autocast would give it, in fp32 arithmetic.

    Under CUDA bf16 autocast a convolution or linear layer casts its input and weight to bf16
    and returns bf16 (accumulating in fp32 inside); batch norm, activations, pooling, the SE
    gate and the residual add then run on bf16 tensors and return bf16. So: round each
    convolution's and linear layer's input and weight, and every module's output, to bf16, and
    round the gradients flowing back through the same points. The master weights, optimizer and
    loss (cross entropy runs in fp32 under autocast) stay fp32, as with autocast. In place.
    """

    def round_input(module, args):
        return (_RoundToBF16.apply(args[0]), *args[1:])

    def round_output(module, args, output):
        return _RoundToBF16.apply(output) if isinstance(output, torch.Tensor) else output

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_pre_hook(round_input)
            parametrize.register_parametrization(module, "weight", _RoundedWeight())
            if module.bias is not None:
                parametrize.register_parametrization(module, "bias", _RoundedWeight())
        if not isinstance(module, nn.Sequential):  # a Sequential returns its last layer's output, rounded already
            module.register_forward_hook(round_output)
    return model


def loss_and_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, bf16: bool,
                      label_smoothing: float) -> tuple[float, torch.Tensor]:
    """One batch's loss, and the gradient of every parameter as one fp32 vector on the CPU."""
    model.zero_grad()
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten().float().cpu() for p in model.parameters()])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a, b, dim=0).item()


def gradient_agreement(data, quick: bool, seeds=(0, 1, 2)) -> None:
    """Cosines between gradients of one batch for freshly built baselines: fp32 against bf16 autocast,
    against another batch (the noise SGD lives with anyway), and against the bf16 emulation.

    On the CPU here: bf16 autocast is slow on a CPU without bf16 instructions, but one batch is enough.
    """
    import copy

    from effnet_lab.data import DeviceLoader

    run = baseline_run(0, quick)
    loader = DeviceLoader.from_data(data, "train", run.train["batch_size"], resolution=run.spec.resolution,
                                    device="cpu", channels_last=True)
    batches = iter(loader)
    first, second = next(batches), next(batches)

    def gradient(model, batch, bf16: bool):
        return loss_and_gradient(model, *batch, bf16=bf16, label_smoothing=run.train["label_smoothing"])[1]

    for seed in seeds:
        model = build(run.model_config(), seed=seed).to(memory_format=torch.channels_last).train()
        emulated = emulate_bf16(copy.deepcopy(model))  # same weights; parameters() in the same order
        fp32, bf16, other_batch = gradient(model, first, False), gradient(model, first, True), gradient(model, second, False)
        bf16_emulated = gradient(emulated, first, False)
        print(f"initialisation seed {seed}: gradient cosine of one batch, fp32 against bf16 autocast "
              f"{cosine(fp32, bf16):.3f}; emulated bf16 against bf16 autocast {cosine(bf16_emulated, bf16):.3f}, "
              f"against fp32 {cosine(bf16_emulated, fp32):.3f}; two batches, both fp32 {cosine(fp32, other_batch):.3f}",
              flush=True)


# How the GPU may compute the same network: (bf16 autocast, channels_last, bf16 emulated in fp32).
VARIANTS = {
    "fp32": (False, True, False),
    "fp32 NCHW": (False, False, False),
    "bf16 autocast": (True, True, False),
    "bf16 autocast NCHW": (True, False, False),
    "bf16 emulated": (False, True, True),
}


def diagnose(data, run: experiments.Run, checkpoint: Path, device: str | None) -> dict:
    """Seconds of GPU that say *where* a GPU run and a CPU run part ways, if they do.

    1. Data: the test images as the GPU's DeviceLoader makes them (normalised, resized to the
       run's resolution) against the CPU's; and the crop-and-flip augmentation, with the same
       offsets and flips, on both.
    2. The trained weights in ``checkpoint``, evaluated on the full test set by the CPU in fp32
       and by the device in each of ``VARIANTS``: every variant should give the same accuracy.
    3. One training batch at those weights: the loss and the gradient in each variant against
       the CPU's fp32 gradient (cosine). Trained weights, because at initialisation this network
       amplifies any rounding difference from stage to stage, so no two precisions agree there.

    "fp32" on CUDA is what ``train(amp=False)`` runs there: cuDNN's convolutions in TF32
    (PyTorch's default), so a cosine a little below the CPU's own is expected.
    """
    import copy

    from effnet_lab import settings
    from effnet_lab.data import DeviceLoader, random_crop
    from effnet_lab.train import evaluate

    device = torch.device(device) if device else settings.default_device()
    cpu = torch.device("cpu")
    config = run.train_config()
    data = data.subset(config.subset_per_class, config.seed, test_per_class=config.test_per_class)  # the run's images
    resolution, batch_size = run.spec.resolution, run.train["batch_size"]
    report = {"device": settings.device_name(device), "torch_version": torch.__version__,
              "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
              "checkpoint": str(checkpoint), "resolution": resolution}

    def test_loader(on, channels_last=False):
        return DeviceLoader.from_data(data, "test", 1024, resolution=resolution, device=on, channels_last=channels_last)

    # What was decoded, to compare with the development machine's (PIL versions may differ).
    report["decoded_sha256"] = {split: hashlib.sha256(getattr(data, f"{split}_images").numpy().tobytes()
                                                      + getattr(data, f"{split}_labels").numpy().tobytes()).hexdigest()
                                for split in ("train", "test")}
    here, there = test_loader(cpu), test_loader(device)
    report["test_images_max_abs_difference"] = max(
        (a.to(device) - b).abs().max().item() for (a, _), (b, _) in zip(here, there))
    images = data.train_images[:batch_size]
    generator = torch.Generator().manual_seed(0)
    offsets, flips = torch.randint(0, 9, (len(images), 2), generator=generator), torch.rand(len(images), generator=generator) < 0.5
    report["augmentation_identical"] = torch.equal(
        random_crop(images, offsets, 4, flips),
        random_crop(images.to(device), offsets.to(device), 4, flips.to(device)).cpu())

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model_state"]

    def network(on, channels_last, emulated):
        model = build(run.model_config())
        model.load_state_dict(state)
        if emulated:
            model = emulate_bf16(model)
        model = model.to(on)
        return model.to(memory_format=torch.channels_last) if channels_last else model

    batch = next(iter(DeviceLoader.from_data(data, "train", batch_size, resolution=resolution, device=cpu, seed=0)))

    def step(model, on, channels_last, bf16):
        model = copy.deepcopy(model).train()  # train mode (batch statistics), as in a training step
        images = batch[0].to(on).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return loss_and_gradient(model, images, batch[1].to(on), bf16=bf16, label_smoothing=run.train["label_smoothing"])

    reference = network(cpu, False, False)
    reference_loss, reference_gradient = step(reference, cpu, False, False)
    report["variants"] = {"cpu fp32 (reference)": {
        "test_accuracy": evaluate(reference, test_loader(cpu)), "loss": reference_loss, "gradient_cosine": 1.0}}
    for name, (bf16, channels_last, emulated) in VARIANTS.items():
        model = network(device, channels_last, emulated)
        loss, gradient = step(model, device, channels_last, bf16)
        report["variants"][f"{device.type} {name}"] = {
            "test_accuracy": evaluate(model, test_loader(device, channels_last), precision="bf16" if bf16 else "fp32"),
            "loss": loss,
            "gradient_cosine": cosine(gradient, reference_gradient)}
    print(f"diagnosis on {report['device']}: test images differ from the CPU's by at most "
          f"{report['test_images_max_abs_difference']:.2g}; augmentation identical: {report['augmentation_identical']}")
    for name, row in report["variants"].items():
        print(f"  {name:>26}: test accuracy {row['test_accuracy']:.2%}, one batch's loss {row['loss']:.4f}, "
              f"gradient cosine against the CPU's fp32 {row['gradient_cosine']:.4f}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/precision-check", help="folder of the run folders and summary")
    parser.add_argument("--data", help="CIFAR-10 folder or .tar.gz (default: EFFNET_LAB_DATA or found)")
    parser.add_argument("--quick", action="store_true", help="the quick-mode baseline (a CPU smoke test)")
    parser.add_argument("--device", help="cpu or cuda (default: the GPU if there is one)")
    parser.add_argument("--runs", nargs="+", choices=[f"{p}-seed{s}" for p, s in RUNS + EMULATED_RUNS], help="only these runs")
    parser.add_argument("--gradients", action="store_true", help="only the gradient check, on the CPU")
    parser.add_argument("--emulate-bf16", action="store_true",
                        help="train the baseline with bf16 rounding emulated in fp32 (seeds 0, 1) instead, for a CPU")
    args = parser.parse_args(argv)

    out = Path(args.out)
    data = load_cifar("cifar10", args.data, progress=False)
    if args.gradients:
        gradient_agreement(data, args.quick)
        return 0
    rows = []
    runs = EMULATED_RUNS if args.emulate_bf16 else RUNS
    for precision, seed in runs:
        name = f"{precision}-seed{seed}"
        if args.runs and name not in args.runs:
            continue
        run = baseline_run(seed, args.quick)
        config = run.train_config(amp=precision == "bf16", device=args.device)
        print(f"{name}: {run.describe()}", flush=True)
        checkpoint, record_file = out / name / CHECKPOINT_FILE, out / name / RECORD_FILE
        if record_file.exists() and not checkpoint.exists():
            # Finished earlier, perhaps on another machine (which kept the checkpoint): not trained again.
            record = json.loads(record_file.read_text())
        else:
            model = build(run.model_config(), seed=seed)  # the initial weights of the sweep's run with this seed
            if precision == "bf16-emulated":
                model = emulate_bf16(model)
            record = train(model, config, data=data, run_dir=out / name, progress=False,
                           command=[sys.executable, *sys.argv])
        if precision == "bf16-emulated":  # train saw an fp32 run: say what it really was
            record["precision"] = "bf16 emulated (fp32 arithmetic on bf16-rounded values)"
            write_json(record_file, record)
        rows.append({"run": name, "precision": record["precision"], "seed": seed,
                     "test_accuracy": record["test_accuracy"],
                     "final_train_loss": record["accuracy_curve"][-1]["train_loss"],
                     "accuracy_by_epoch": [p["test_accuracy"] for p in record["accuracy_curve"]],
                     "train_seconds": record["train_seconds"], "device": record["device"],
                     "torch_version": record["torch_version"], "git_commit": record["git_commit"]})
        print(f"  {record['precision']}: {record['test_accuracy']:.2%} after {record['train_seconds']:.0f} s "
              f"on {record['device']}", flush=True)
        if name == "fp32-seed0" and not (out / "diagnosis.json").exists():
            if not checkpoint.exists():
                print(f"no diagnosis: it needs {checkpoint}, which stayed on the machine that trained it; "
                      f"delete {out / name} to train the run again", flush=True)
                continue
            try:
                write_json(out / "diagnosis.json", diagnose(data, run, checkpoint, args.device))
                (out / "diagnosis-error.txt").unlink(missing_ok=True)
            except Exception:  # a fault of the diagnosis must not cost the GPU minutes of the runs after it
                error = traceback.format_exc()
                print(f"the diagnosis failed (the runs go on):\n{error}", flush=True)
                write_text(out / "diagnosis-error.txt", error)

    # The emulation's summary has a name of its own: it never stands in for the GPU's.
    summary = out / ("emulated-summary.json" if args.emulate_bf16 else "summary.json")
    write_json(summary, {
        "question": "does bf16 autocast cost the compare baseline accuracy?",
        "runs": rows, "command": [sys.executable, *sys.argv],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
    })
    for row in rows:
        print(f"{row['run']:>24}  {row['precision']:<14} {row['test_accuracy']:.2%}")
    print(f"summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
