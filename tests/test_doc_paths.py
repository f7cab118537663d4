"""Every repository path cited in the docs, comments, configs and notebook exists.

A clone has only what is in the repository, so a cited file that was renamed or
never added leaves its reader stranded. The test also refuses citations of the
spec and style notes that once lived beside the checkout (`../shared/`): the
spec is `docs/design.md` now. The optional data root `../shared/data` may be named.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Top-level folders whose paths are cited from anywhere; cpu/ and cuda/ are cited
# relative to csrc/ by the C++ sources (and only with a file name, so that prose
# such as "cpu/cuda" is not taken for a path).
TOP = ("docs", "csrc", "python", "scripts", "benchmarks", "configs", "tests", "examples", "tools", ".ci")
CSRC_RELATIVE = ("cpu", "cuda")

# Segment characters, placeholders (<task>, {task}), brace lists ({a,b}), optional parts ([_quick]) and globs.
_SEGMENT = r"(?:[\w.*?<>-]|\{[\w.,*-]*\}|\[[\w.,-]*\])"
PATH_RE = re.compile(
    r"(?<![\w./~$-])(?:\.\./shared/" + _SEGMENT + r"*"
    + r"|(?:" + "|".join(re.escape(t) for t in TOP + CSRC_RELATIVE) + r")/(?:" + _SEGMENT + r"|/)*)"
)
# The spec and style notes that lived outside the repository, cited without their folder.
BARE_OUTSIDE_RE = re.compile(r"(?<![\w/.])(?:DESIGN|STYLE)\.md")

OUTSIDE = "is outside the repository (the spec is docs/design.md; of ../shared only the data root may be named)"

# Outputs that are written by running something and so may legitimately be absent from a clone.
ALLOWED_MISSING = (
    "benchmarks/results/*_cuda.*",   # written by the GPU benchmarks (scripts/gpu_check.sh) on a GPU machine
    "benchmarks/results/*_quick.*",  # the benchmarks' --quick runs, git-ignored
)
# Not citations: ignore patterns, and this file's deliberate examples of bad paths.
SKIP_FILES = {".gitignore", "tests/test_doc_paths.py"}
# Folders the fallback walk leaves out: build outputs and caches (the .gitignore entries).
SKIP_DIRS = {".git", "build", "dist", "runs", "__pycache__", ".pytest_cache", ".hypothesis", ".whl"}


def repository_files() -> list[Path]:
    """The tracked files; a new file counts once it is staged (untracked ones may be anyone's scratch)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT,
                             capture_output=True, check=True, timeout=30).stdout
        names = sorted({n for n in out.decode().split("\0") if n})
        return [ROOT / n for n in names]
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an sdist): walk the tree
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            files += [Path(folder) / n for n in names]
        return sorted(files)


def text_lines(path: Path):
    """(where, line) pairs of a text file; a notebook's cell sources only (outputs are not citations)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    if path.suffix == ".ipynb":
        for c, cell in enumerate(json.loads(text)["cells"]):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            for i, line in enumerate(source.splitlines(), 1):
                yield f"cell {c} line {i}", line
        return
    for i, line in enumerate(text.splitlines(), 1):
        yield f"line {i}", line


def _expand(token: str) -> list[str]:
    """Brace lists become alternatives; {name}, <name> and glob parts become '*'; [optional] parts drop out."""
    token = re.sub(r"<[^<>/]*>", "*", token)
    token = re.sub(r"\{[^{},/]*\}", "*", token)
    token = re.sub(r"\[[^\[\]/]*\]", "", token)
    m = re.search(r"\{([^{}/]*)\}", token)
    if not m:
        return [token]
    return [v for part in m.group(1).split(",") for v in _expand(token[:m.start()] + part + token[m.end():])]


def _exists(path: str) -> bool:
    if any(ch in path for ch in "*?"):
        return any(ROOT.glob(path.rstrip("/")))
    return (ROOT / path).exists()


def check_token(token: str) -> str | None:
    """Why the cited path is wrong, or None when it is fine."""
    token = token.rstrip(".,;:")
    if token.startswith("../shared/"):
        rest = token[len("../shared/"):]
        return None if rest.split("/")[0] in ("", "data") else OUTSIDE
    if any(fnmatch.fnmatch(token, pattern) for pattern in ALLOWED_MISSING):
        return None
    top = token.split("/")[0]
    if top in CSRC_RELATIVE:
        if "." not in token.rsplit("/", 1)[-1]:
            return None  # prose ("cpu/cuda"), not a file
        token = "csrc/" + token
    if all(_exists(p) for p in _expand(token)):
        return None
    return "does not exist"


def find_problems(files) -> list[str]:
    problems = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel in SKIP_FILES or not path.is_file():
            continue
        for where, line in text_lines(path):
            for m in BARE_OUTSIDE_RE.finditer(line):
                problems.append(f"{rel} {where}: {m.group(0)} {OUTSIDE}")
            for m in PATH_RE.finditer(line):
                why = check_token(m.group(0))
                if why:
                    problems.append(f"{rel} {where}: {m.group(0).rstrip('.,;:')} {why}")
    return problems


def test_cited_paths_exist():
    problems = find_problems(repository_files())
    assert not problems, "dangling path references:\n" + "\n".join(problems)


@pytest.mark.parametrize("token, ok", [
    ("docs/numerics.md", True), ("configs/<task>/cpu.yaml", True), ("python/qlam/{data,models,train}", True),
    ("benchmarks/results/roofline_<device>[_quick].json", True), ("benchmarks/results/*_cuda.{json,md}.", True),
    ("cpu/warp_emulation.cpp", True), ("cpu/cuda", True), ("../shared/data/mnist/", True),
    ("docs/nothing.md", False), ("cpu/emulated_warp.cpp", False), ("python/qlam/{data,nothing}", False),
    ("../shared/notes.md", False),
])
def test_check_token(token, ok):
    assert (check_token(token) is None) == ok
