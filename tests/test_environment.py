"""environment.yml sets up what README.md's quick-start pip command does: the same extras, the
same constraints file, an editable install of the project."""

import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent


def pip_install(words: list[str]) -> dict:
    """The constraints files, the editable target and its extras of one pip install command."""
    found = {"constraints": [], "editable": None}
    for flag, value in zip(words, words[1:] + [""]):
        if flag in ("-c", "--constraint"):
            found["constraints"].append(value)
        elif flag in ("-e", "--editable"):
            found["editable"] = value
    target, _, extras = found.pop("editable").partition("[")
    found["target"] = target
    found["extras"] = sorted(extra.strip() for extra in extras.rstrip("]").split(",") if extra.strip())
    return found


def readme_command() -> dict:
    """The quick start's pip install, parsed from the first fenced bash block that runs one."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for command in re.split(r"&&|\n", block):
            words = shlex.split(command)
            if any(word.endswith("pip") for word in words) and "install" in words and "-e" in words:
                return pip_install(words[words.index("install") + 1:])
    raise AssertionError("README.md has no quick-start pip install -e command")


def environment_command() -> dict:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict) and "pip" in item)
    return pip_install([word for line in pip for word in shlex.split(line)])


def test_environment_yml_installs_what_the_readme_installs():
    readme, environment = readme_command(), environment_command()
    assert readme["extras"], "the README's command installs no extras: the parser lost them"
    assert environment == readme, f"environment.yml installs {environment}, README.md {readme}"


def test_the_constraints_file_exists():
    for name in environment_command()["constraints"]:
        assert (ROOT / name).is_file(), f"environment.yml names {name}, which is not in the project"


def test_the_parser_sees_a_difference():
    assert pip_install(["-c", "a.txt", "-e", ".[lab,test]"]) != pip_install(["-c", "a.txt", "-e", ".[lab]"])
    assert pip_install(["-e", ".[b, a]"])["extras"] == ["a", "b"]
