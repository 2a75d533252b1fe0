"""The figures of a search and the command line ``python -m effnet_lab nas``."""

import pytest

from effnet_lab import nas
from effnet_lab.nas import Search, SearchSpace
from nas_helpers import HashEvaluator, parse

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread


def test_figures_are_made(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    logs = {p: Search(SearchSpace(), HashEvaluator(), p, seed=0, verbose=False).run(12, progress=False)
            for p in ("controller", "random")}
    for record in logs["controller"] + logs["random"]:
        record["accuracy"] = min(record["accuracy"], 0.99)
    paths = nas.save_figures(logs, tmp_path)
    assert [p.name for p in paths] == ["progress.png", "pareto.png", "winners_by_w.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    fig = nas.plot_reward_surface()
    assert len(fig.axes) >= 3
    import matplotlib.pyplot as plt

    plt.close("all")


# --- the command line ----------------------------------------------------------------------


def test_quick_search_from_the_command_line_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "quick"
    argv = ["--steps", "6", "--evaluator", "proxy", "--policy", "both", "--out", str(out), "--quick", "--no-plots"]
    assert parse(argv).run(parse(argv)) == 0
    printed = capsys.readouterr().out
    assert "NOT a real evaluation" in printed and "controller: 6/6 samples" in printed and "random: 6/6" in printed
    argv[1] = "8"
    args = parse(argv)
    args.run(args)
    assert [r["step"] for r in nas.read_log(out / "controller.jsonl")] == list(range(8))
    assert [r["step"] for r in nas.read_log(out / "random.jsonl")] == list(range(8))


def test_a_time_limit_of_zero_is_refused():
    with pytest.raises(ValueError, match="time-limit"):
        args = parse(["--steps", "2", "--time-limit", "0", "--no-plots"])
        args.run(args)
