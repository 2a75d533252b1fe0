"""What the architecture-search tests share: a cheap evaluator, a two-child space, the
command-line parser, and one CPU thread (an autouse fixture: import it)."""

import argparse
import zlib


from effnet_lab import nas
from effnet_lab.nas import SearchSpace, arch_key

# Fields of a log record that depend on the wall clock or on what was cached, not on the search.
VOLATILE = {"time", "eval_seconds", "cached"}


class HashEvaluator:
    """Cheap and deterministic: a different 'accuracy' and 'MACs' for every architecture,
    and a count of how many children it was asked to evaluate."""

    name = "hash"
    real = False

    def __init__(self, fail_at_call: int | None = None):
        self.calls = 0
        self.fail_at_call = fail_at_call

    def signature(self):
        return {"name": self.name}

    def __call__(self, config):
        self.calls += 1
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated interruption")
        h = zlib.crc32(arch_key(config).encode())
        return {"accuracy": 0.5 + (h % 1000) / 2500, "macs": 1e6 * (1 + h % 97), "params": h % 5000}


def tiny_space(**overrides):
    """Two architectures only: kernel 3 or 5 in a single stage (so repeats are certain)."""
    settings = dict(base=((16, 1),), expand_ratios=(1,), layers=(1,), se=(False,), head_channels=32)
    settings.update(overrides)
    return SearchSpace(**settings)


def stable(records):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def parse(argv):
    """``python -m effnet_lab nas <argv>``, parsed."""
    parser = argparse.ArgumentParser()
    nas.add_parser(parser.add_subparsers())
    return parser.parse_args(["nas", *argv])

