#!/usr/bin/env bash
# Fresh-machine check: does the README's quick start work, exactly as written, from nothing?
#
# In a brand-new temporary copy of this repository (no .venv, no data cache, no runs), it
# reads the README's two ```bash commands and runs them as they are written:
#   1. the set-up command, which ends by starting JupyterLab: it must serve the lessons
#      (checked through the server's REST API: every notebooks/*.ipynb listed, /lab served,
#      the python3 kernel there), and is then stopped;
#   2. the test command: it must pass.
# The commands are parsed from README.md, so this check cannot drift from what users read.
#
# Usage: scripts/fresh_machine_check.sh [--head] [--with-shared] [--keep]
#   --head         copy the last commit (git clone) instead of the working tree
#   --with-shared  put ../shared beside the copy, as CI has it (default: a student's machine)
#   --keep         keep the temporary folder (it holds a multi-GB virtual environment)
# Needs: python3 (3.10-3.12) with venv, git, and about 8 GB of free disk for the new venv.
# Takes several minutes: the install, then the whole test suite.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
from_head=0 with_shared=0 keep=0
for arg in "$@"; do
    case "$arg" in
        --head) from_head=1 ;;
        --with-shared) with_shared=1 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '\n== %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }
start_all=$(date +%s)

# --- what a user needs first ----------------------------------------------------------------
python3 - <<'EOF' || { echo "FAIL: README needs Python 3.10-3.12 as python3 (3.11 recommended)" >&2; exit 1; }
import sys, venv  # noqa: F401  (venv must exist: Debian/Ubuntu ship it as python3-venv)
print(f"python3 is {sys.version.split()[0]} at {sys.executable}")
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
EOF

# --- the README's two commands --------------------------------------------------------------
readarray -t commands < <(python3 - "$repo/README.md" <<'EOF'
import re, sys
blocks = re.findall(r"^```bash\n(.*?)^```", open(sys.argv[1]).read(), re.DOTALL | re.MULTILINE)
if len(blocks) != 2 or any(len(b.strip().splitlines()) != 1 for b in blocks):
    sys.exit(f"README.md must have exactly two one-line ```bash blocks, found {blocks}")
print("\n".join(b.strip() for b in blocks))
EOF
)
[ "${#commands[@]}" -eq 2 ] || { echo "FAIL: could not read the README's two commands" >&2; exit 1; }
setup_command=${commands[0]} test_command=${commands[1]}
echo "README command 1: $setup_command"
echo "README command 2: $test_command"

# --- a brand-new copy -------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/effnet-lab-fresh.XXXXXX")
copy="$work/effnet-lab"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$server_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ "$from_head" = 1 ]; then
    say "git clone of $repo (last commit) into $copy"
    git clone -q "$repo" "$copy"
else
    say "copy of the working tree (tracked and new files, nothing ignored) into $copy"
    git -C "$repo" ls-files -z --cached --others --exclude-standard | python3 -c '
import os, shutil, sys
repo, copy = sys.argv[1], sys.argv[2]
for name in sys.stdin.buffer.read().decode().split("\0"):
    source = os.path.join(repo, name)
    if name and os.path.isfile(source):  # a tracked file deleted in the working tree is gone
        os.makedirs(os.path.dirname(os.path.join(copy, name)), exist_ok=True)
        shutil.copy2(source, os.path.join(copy, name))
' "$repo" "$copy"
fi
if [ "$with_shared" = 1 ] && [ -d "$repo/../shared" ]; then
    ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
fi
echo "$(find "$copy" -type f | wc -l) files; no .venv: $([ ! -e "$copy/.venv" ] && echo yes)"

# A fresh machine: none of the project's switches set, and Jupyter's own folders empty.
for name in $(env | sed -n 's/^\(EFFNET_LAB_[A-Z_]*\)=.*/\1/p'); do unset "$name"; done
export JUPYTER_CONFIG_DIR="$work/jupyter/config" JUPYTER_DATA_DIR="$work/jupyter/data"
export JUPYTER_RUNTIME_DIR="$work/jupyter/runtime" IPYTHONDIR="$work/ipython"
export BROWSER=true  # JupyterLab would open a web browser: there is no one to look at it
mkdir -p "$JUPYTER_CONFIG_DIR"
if [ "$(id -u)" = 0 ]; then
    # Jupyter refuses to run as root unless told; a student is not root (CI is).
    echo '{"ServerApp": {"allow_root": true}}' > "$JUPYTER_CONFIG_DIR/jupyter_server_config.json"
    echo "running as root: allow_root set in a temporary Jupyter config (the command is unchanged)"
fi

# --- command 1: set up, and serve the lessons -----------------------------------------------
say "command 1, as written (in the background): $setup_command"
start=$(date +%s)
(cd "$copy" && exec setsid bash -c "$setup_command") > "$work/command1.log" 2>&1 &
server_pid=$!
python3 - "$JUPYTER_RUNTIME_DIR" "$copy/notebooks" "$server_pid" "$work/command1.log" <<'EOF'
import glob, json, os, sys, time, urllib.request
runtime, notebooks, pid, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + 45 * 60  # the install takes minutes; the server starts after it

def fail(message):
    tail = open(log, errors="replace").read().splitlines()[-30:]
    sys.exit("FAIL: " + message + "\n--- command 1's output, last lines ---\n" + "\n".join(tail))

def get(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()

info = None
while info is None:
    if time.monotonic() > deadline:
        fail("JupyterLab did not start within 45 minutes")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        fail("command 1 ended before JupyterLab served anything")
    for path in glob.glob(os.path.join(runtime, "jpserver-*.json")):
        info = json.load(open(path))
    time.sleep(2)
base, token = info["url"].rstrip("/"), info["token"]
print(f"JupyterLab is up at {base}, serving {info['root_dir']}")
for _ in range(60):
    try:
        status, body = get(f"{base}/api/contents/", token)
        break
    except OSError:
        time.sleep(2)
else:
    fail("the server never answered /api/contents/")
listed = sorted(item["name"] for item in json.loads(body)["content"] if item["type"] == "notebook")
expected = sorted(os.path.basename(p) for p in glob.glob(os.path.join(notebooks, "*.ipynb")))
print("notebooks listed:", ", ".join(listed))
if not expected or listed != expected:
    fail(f"the server lists {listed}, the checkout has {expected}")
status, page = get(f"{base}/lab", token)
if status != 200 or b"JupyterLab" not in page:
    fail(f"/lab answered {status} without JupyterLab's page")
kernels = json.loads(get(f"{base}/api/kernelspecs", token)[1])["kernelspecs"]
if "python3" not in kernels:
    fail(f"no python3 kernel: {sorted(kernels)}")
print("/lab served, python3 kernel present")
EOF
echo "command 1: JupyterLab served the lessons after $(elapsed "$start") (install included)"
kill -TERM -- "-$server_pid" 2>/dev/null || true
for _ in $(seq 30); do kill -0 "$server_pid" 2>/dev/null || break; sleep 1; done
kill -KILL -- "-$server_pid" 2>/dev/null || true
server_pid=""

# --- command 2: the tests ---------------------------------------------------------------------
say "command 2, as written: $test_command"
start=$(date +%s)
if (cd "$copy" && bash -c "$test_command") > "$work/command2.log" 2>&1; then
    tail -n 5 "$work/command2.log"
    echo "command 2: passed in $(elapsed "$start")"
else
    tail -n 40 "$work/command2.log"
    cp "$work/command2.log" "${TMPDIR:-/tmp}/effnet-lab-fresh-command2.log"
    echo "FAIL: command 2 failed after $(elapsed "$start") (log: ${TMPDIR:-/tmp}/effnet-lab-fresh-command2.log)" >&2
    exit 1
fi

say "PASS: the README's quick start works on a fresh copy, in $(elapsed "$start_all")"
