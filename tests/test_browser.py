"""What a student sees: the lessons in a real JupyterLab, in a real (headless) browser.

A JupyterLab server runs on localhost with the project's kernel and quick mode on, serving a
temporary copy of notebooks/ (so that nothing, not even an autosave or a checkpoint, touches
the checkout). Playwright drives Debian's Chromium (/usr/bin/chromium; no browser download):

- lesson 00: run the first cells with Shift+Enter, as a student does; the environment
  check renders and shows this machine's device and quick mode;
- lesson 04: Run > Run All Cells, then move the phi slider with the keyboard; the explorer's
  numbers (resolution, parameters, MACs) change to the values effnet_lab computes here.

Screenshots go to artifacts/browser/ (ignored by git); their paths are printed (pytest -s,
or in the report of a failing test). Needs `chromium` (apt-get install chromium) and the
Python package `playwright`: skipped without them, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("EFFNET_LAB_CHROMIUM", "/usr/bin/chromium")
# Without the network flags Chromium keeps trying Google's hosts, which this closed network
# refuses (and which can stall start-up); the rest keep a headless root run quiet and fast.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
]
# Generous: CI shares two cores between JupyterLab, the kernel and Chromium.
SERVER_START_S = 120
PAGE_LOAD_S = 180
KERNEL_START_S = 120
RUN_ALL_S = 420
WIDGET_UPDATE_S = 120

pytestmark = pytest.mark.slow


def unavailable(reason: str):
    """Skip on a machine without a browser; in CI a missing browser is a broken set-up."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(reason)


# --- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on localhost, isolated from the user's Jupyter settings."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.home = root, home
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        settings = self.home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # No "fetch Jupyter news?" toast over the notebook, and no request for it.
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env = {
            **os.environ,
            "EFFNET_LAB_QUICK": "1",
            "EFFNET_LAB_OFFLINE": "1",  # this machine has no internet: say so, do not probe
            "EFFNET_LAB_RESULTS": str(self.home / "runs"),
            # The user's ~/.jupyter and ~/.local/share/jupyter (kernels included) stay out.
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
        }
        env.pop("MPLBACKEND", None)  # the student's default: inline figures
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={self.home / 'settings'}",
            f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI runs as root
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_S} s:\n{self.log()}")

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:  # kernels live in process groups of their own: shut them down through the server
            for kernel in self.api("kernels"):
                self.api(f"kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = JupyterLab(root / "notebooks", tmp_path_factory.mktemp("jupyter"))
    server.start()
    specs = server.api("kernelspecs")
    assert "python3" in specs["kernelspecs"], f"no python3 kernel: {sorted(specs['kernelspecs'])}"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the Python package playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


# --- driving JupyterLab -------------------------------------------------------------------


def screenshot(target, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    target.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def open_notebook(page, lab: JupyterLab, name: str) -> None:
    """Open a notebook in a fresh workspace and wait until its kernel is up and idle."""
    page.set_default_timeout(PAGE_LOAD_S * 1000)
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    # The status bar names the kernel once it has started: "Python 3 (ipykernel) | Idle".
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(
        timeout=KERNEL_START_S * 1000
    )


# Reads the state of every code cell of the open notebook: its prompt, and whether it shows a
# traceback. Cells are all in the DOM: JupyterLab's default windowing mode only hides them.
CELL_STATES = """() => Array.from(
    document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell')
).map(cell => ({
    prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
    source: (cell.querySelector('.cm-content') || {}).textContent || '',
    error: Array.from(cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
        .map(output => output.textContent).filter(text => /Traceback|Error:/.test(text)).join('\\n'),
}))"""


def cell_states(page) -> list[dict]:
    return page.evaluate(CELL_STATES)


def wait_for_cells(page, count: int | None, timeout_s: float) -> list[dict]:
    """Wait until the first ``count`` code cells (all if None) ran, or one failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = cell_states(page)
        chosen = [s for s in states[:count] if s["source"].strip()]  # an empty cell never runs
        errors = [s["error"] for s in states if s["error"]]
        if errors:
            pytest.fail("a cell failed in the browser:\n" + errors[0][-3000:], pytrace=False)
        if chosen and all(re.fullmatch(r"\[\d+\]:", s["prompt"].strip()) for s in chosen):
            return states
        if time.monotonic() > deadline:
            stuck = [s["prompt"] + " " + s["source"][:80] for s in chosen if not re.fullmatch(r"\[\d+\]:", s["prompt"].strip())]
            pytest.fail(f"cells did not finish within {timeout_s:.0f} s: {stuck[:3]}", pytrace=False)
        page.wait_for_timeout(500)


def wait_for_idle_kernel(page) -> None:
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(
        timeout=KERNEL_START_S * 1000
    )


def code_cell(page, index: int):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell").nth(index)


def output_text(page, index: int) -> str:
    return code_cell(page, index).locator(".jp-OutputArea").inner_text()


# --- lesson 00 ----------------------------------------------------------------------------


def test_lesson_00_environment_check_renders(page, lab, monkeypatch):
    from effnet_lab import lesson, settings

    open_notebook(page, lab, "00_setup_and_tour.ipynb")
    # As a student does: click the first cell, then Shift+Enter through the header cells
    # (the title, the Colab install cell, the set-up cell).
    page.locator(".jp-Notebook .jp-Cell").first.click()
    for _ in range(3):
        page.keyboard.press("Shift+Enter")
    states = wait_for_cells(page, 2, RUN_ALL_S)
    wait_for_idle_kernel(page)

    assert output_text(page, 0).strip() == "", "the Colab install cell printed something outside Colab"
    report = output_text(page, 1)
    code_cell(page, 1).locator(".jp-OutputArea").scroll_into_view_if_needed()
    shot = screenshot(page, "00_setup_and_tour")
    shown = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in report.splitlines())
        if value
    )
    # What effnet_lab says about this machine, computed here, in quick mode like the server.
    monkeypatch.setenv("EFFNET_LAB_QUICK", "1")
    expected = lesson.environment_report(settings.default_device())
    assert shown.get("device") == settings.device_name(), (shot, report)
    assert shown.get("quick mode") == expected["quick mode"], (shot, report)
    assert shown.get("quick mode", "").startswith("on"), (shot, report)
    assert shown.get("colab") == "no", (shot, report)
    assert len([s for s in states if re.fullmatch(r"\[\d+\]:", s["prompt"].strip())]) == 2


# --- lesson 04 ----------------------------------------------------------------------------

LESSON_04 = "04_compound_scaling.ipynb"
# The explorer's DOM contract (effnet_lab/widgets.py): a slider with class effnet-explorer-phi
# (and -alpha, -beta, -gamma), and <table class="effnet-explorer"> with data-field cells.
READ_EXPLORER = """root => {
    const value = name => {
        // The readout, as the student reads it (aria-valuenow is rounded to one decimal).
        const readout = root.querySelector(`.effnet-explorer-${name} .widget-readout`);
        return readout ? Number(readout.textContent.trim()) : null;
    };
    const cells = {};
    for (const cell of root.querySelectorAll('table.effnet-explorer td[data-field]')) {
        cells[cell.dataset.field] = {value: Number(cell.dataset.value), text: cell.textContent.trim()};
    }
    const phi = root.querySelector('.effnet-explorer-phi .noUi-handle');
    return {
        sliders: {phi: value('phi'), alpha: value('alpha'), beta: value('beta'), gamma: value('gamma')},
        range: [Number(phi.getAttribute('aria-valuemin')), Number(phi.getAttribute('aria-valuemax'))],
        cells,
    };
}"""


def read_explorer(explorer) -> dict:
    return explorer.evaluate(READ_EXPLORER)


UNITS = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}


def displayed(text: str) -> tuple[float, float]:
    """A number as shown ("9.11 M", "0.993 B", "258") and half its last digit's worth."""
    match = re.fullmatch(r"([\d.]+)\s*([KMB]?)", text.strip())
    assert match, f"not a number a student can read: {text!r}"
    number, unit = match.groups()
    decimals = len(number.partition(".")[2])
    return float(number) * UNITS[unit], 0.5 * 10**-decimals * UNITS[unit]


def expected_numbers(phi: float, sliders: dict, base_resolution: int, stem: str) -> dict:
    """The explorer's numbers, computed here by effnet_lab for the slider positions shown."""
    from effnet_lab.widgets import scaled_network

    network = scaled_network(phi, sliders["alpha"], sliders["beta"], sliders["gamma"], base_resolution, stem)
    return {"resolution": network.resolution, "params": network.params, "macs": network.macs}


def shown_numbers(reading: dict) -> dict:
    return {field: reading["cells"][field]["value"] for field in ("resolution", "params", "macs")}


def identify_explorer(reading: dict) -> tuple[int, str]:
    """Which base resolution and stem the lesson's explorer uses: the one whose numbers match
    the first rendering (so the first rendering is checked too)."""
    phi = reading["cells"]["phi"]["value"]
    gamma = reading["sliders"]["gamma"]
    shown = shown_numbers(reading)
    guesses = {round(shown["resolution"] / gamma**phi), 224, 32}
    for stem in ("imagenet", "cifar"):
        for base in sorted(guesses):
            if expected_numbers(phi, reading["sliders"], base, stem) == shown:
                return base, stem
    pytest.fail(f"the explorer's first numbers match no network effnet_lab builds: {reading}", pytrace=False)


def test_lesson_04_phi_slider_updates_the_numbers(page, lab):
    assert (NOTEBOOKS / LESSON_04).exists(), f"notebooks/{LESSON_04} is missing"
    from effnet_lab.widgets import PhiExplorer

    open_notebook(page, lab, LESSON_04)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    wait_for_cells(page, None, RUN_ALL_S)
    wait_for_idle_kernel(page)

    slider = page.locator(".effnet-explorer-phi .noUi-handle").first
    slider.wait_for(timeout=WIDGET_UPDATE_S * 1000)
    explorer = page.locator(".effnet-explorer-root", has=page.locator(".effnet-explorer-phi")).first
    explorer.scroll_into_view_if_needed()
    page.locator("table.effnet-explorer td[data-field='macs']").first.wait_for()
    before = read_explorer(explorer)
    phi_step = PhiExplorer(draw=False).phi_slider.step
    base_resolution, stem = identify_explorer(before)
    screenshot(explorer, "04_compound_scaling_before")

    for key, presses in (("ArrowRight", 10), ("ArrowLeft", 4)):
        old = read_explorer(explorer)
        slider.focus()
        for _ in range(presses):
            page.keyboard.press(key)
        # The kernel recomputes (continuous_update=False: on release); wait until the table
        # shows the phi the slider shows.
        deadline = time.monotonic() + WIDGET_UPDATE_S
        while True:
            now = read_explorer(explorer)
            phi_slider, phi_table = now["sliders"]["phi"], now["cells"]["phi"]["value"]
            if phi_slider != old["sliders"]["phi"] and math.isclose(phi_slider, phi_table, abs_tol=1e-6):
                break
            assert time.monotonic() < deadline, f"the table did not follow the slider: {now}"
            page.wait_for_timeout(250)
        wait_for_idle_kernel(page)
        now = read_explorer(explorer)
        phi = now["cells"]["phi"]["value"]
        # One key press moves the slider one step (the explorer's step, asked of effnet_lab).
        direction = 1 if key == "ArrowRight" else -1
        low, high = now["range"]
        target = min(max(old["cells"]["phi"]["value"] + direction * presses * phi_step, low), high)
        assert phi == pytest.approx(target, abs=1e-6), now
        expected = expected_numbers(phi, now["sliders"], base_resolution, stem)
        assert shown_numbers(now) == expected, (phi, now)
        assert shown_numbers(now) != shown_numbers(old), "moving phi changed nothing"
        # The numbers a student reads: the text, not only the data attributes.
        for field, value in expected.items():
            number, tolerance = displayed(now["cells"][field]["text"])
            assert abs(number - value) <= tolerance * 1.0001, (field, now["cells"][field], value)
        print(f"phi {phi:.1f}: {expected}")
        screenshot(explorer, f"04_compound_scaling_phi_{phi:.1f}")
    screenshot(page, "04_compound_scaling_page")
