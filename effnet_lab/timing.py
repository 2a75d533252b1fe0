"""How long does a plan of training runs take? A cost model, so a sweep can say before it starts.

Equal MACs are not equal seconds. A run's time is its arithmetic, in proportion to its MACs
and its images, plus a fixed cost per step for every layer it launches from Python, forward
and backward: a deeper network pays that cost more often. ``CostModel`` holds the two rates
for one device; ``estimate_seconds(runs)`` adds up a plan (the runs of
``effnet_lab.experiments.plan``). The measured values and the assumptions behind the GPU's
are in results/cost_model/README.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import settings
from .checks import check_int


@dataclass(frozen=True)
class CostModel:
    """How long a run takes: arithmetic in proportion to its MACs, plus what every step costs
    whatever the arithmetic (launching each layer's kernels from Python, for forward and backward).

    ``gmac_images_per_second``: forward GMACs x training images the device gets through per
    second (forward, backward and update included). ``seconds_per_block``: the fixed cost of one
    MBConv block in one training step; a deeper network pays it more often, which is why equal
    MACs do not mean equal time. ``seconds_per_step``: the rest of a step (stem, head, loss,
    optimizer). Measured values and the assumptions behind the GPU's are in results/cost_model/README.md.
    """

    name: str
    gmac_images_per_second: float
    seconds_per_block: float
    seconds_per_step: float
    seconds_per_run: float = 5.0  # building the model, moving the data, counting, writing
    # Processes side by side: on a CPU each has a core of its own (one thread each, up to the
    # number of cores), so all of their work overlaps; on a GPU they share the one device, so
    # only their fixed costs (Python, kernel launches) overlap.
    own_cores: bool = False

    def parts(self, run) -> tuple[float, float]:
        """(arithmetic seconds, fixed-cost seconds) of ``run``."""
        config = run.train_config()
        train_images = 10 * (config.subset_per_class or 5000)
        test_images = 10 * (config.test_per_class or 1000)
        steps = train_images // config.batch_size
        blocks = sum(stage.repeats for stage in run.model_config().scaled_stages())
        # Evaluation: a forward pass only, about a third of a training step's work per image.
        arithmetic = config.epochs * (train_images + test_images / 3) * run.macs / 1e9 / self.gmac_images_per_second
        fixed = config.epochs * steps * (blocks * self.seconds_per_block + self.seconds_per_step) + self.seconds_per_run
        return arithmetic, fixed

    def run_seconds(self, run) -> float:
        return sum(self.parts(run))


# The planning assumption for one H100 (see results/cost_model/README.md): deliberately pessimistic.
# - 1,000 GMAC-images/s: EfficientNet-B0 (0.39 GMACs) training at 2,500 images/s at 224 px, an
#   A100-class figure (B0 trains at about ResNet-50's images/s; no credit for the H100's speed);
# - 0.8 ms per block and step: eager PyTorch launches about 40 kernels per MBConv block for the
#   forward and backward passes, at about 20 microseconds each from Python;
# - 4 ms per step for the stem, head, loss and optimizer; 8 s per run to start and finish.
H100_ASSUMED = CostModel("H100 (assumed, conservative)", gmac_images_per_second=1000.0, seconds_per_block=0.0008,
                         seconds_per_step=0.004, seconds_per_run=8.0)
# Fitted to the shipped quick comparison's runs (results/scaling-quick/compare: their recorded
# training seconds, two processes side by side with one thread each on the development
# machine's 2 idle cores): benchmarks/scaling_cost_model.py --from-runs, see
# results/cost_model/README.md.
CPU_MEASURED = CostModel("CPU (measured, 1 thread a process)", gmac_images_per_second=2.86, seconds_per_block=0.0047,
                         seconds_per_step=0.0, seconds_per_run=4.7, own_cores=True)


def cost_model(device=None) -> CostModel:
    """The cost model for ``device`` (default: the one training would use)."""
    device = device if device is not None else settings.default_device()
    return H100_ASSUMED if str(device).startswith("cuda") else CPU_MEASURED


def estimate_seconds(runs: Sequence, model: CostModel | None = None, processes: int = 1) -> float:
    """Predicted wall-clock seconds of ``runs``, with ``processes`` of them running side by side.

    On a CPU (``own_cores``) the processes share out all of the work; on a GPU, conservatively,
    only the fixed costs overlap and the device does the arithmetic of all processes in turn.
    """
    model = model or cost_model()
    processes = check_int("processes", processes, minimum=1)
    parts = [model.parts(run) for run in runs]
    arithmetic, fixed = sum(a for a, _ in parts), sum(f for _, f in parts)
    return (arithmetic + fixed) / processes if model.own_cores else arithmetic + fixed / processes
