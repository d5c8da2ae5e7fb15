"""Bad input, as data: every row is a command a user might type with one thing wrong.

Each row runs ``python -m assay ...`` in a subprocess against a copy of a recorded root and checks
what a researcher relies on: the exit code (2 for input errors), no traceback, a message that
names the bad value, and nothing recorded touched (the root's files are byte-identical after).
A new command is one more row in ``CASES``.

Placeholders in ``argv``: ``{tmp}`` (the case's own folder), ``{root}`` (``{tmp}/runs``, a root
holding finished runs) and ``{repo}`` (this checkout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
POLYFIT = "{repo}/suites/example/polyfit.yaml"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    expect_exit: int = 2
    expect_in_message: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    must_not_exist: tuple[str, ...] = ()  # paths (with placeholders) the command must not create


# --------------------------------------------------------------------------- file makers


def _write(rel: str, data: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)

    return setup


def _npz(**arrays: object) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        np.savez(tmp / "dyn.npz", **arrays)

    return setup


def _jsonl(*rows: str, epochs: int = 1) -> Callable[[Path], None]:
    """A reference dynamics folder ``{tmp}/ref/training_dynamics`` with these raw lines."""

    def setup(tmp: Path) -> None:
        folder = tmp / "ref" / "training_dynamics"
        folder.mkdir(parents=True)
        for e in range(epochs):
            text = "\n".join(r.replace("EPOCH", str(e)) for r in rows)
            (folder / f"dynamics_epoch_{e}.jsonl").write_text(text + ("\n" if rows else ""))

    return setup


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)

    return setup


def _row(guid: object = "a", logits: str = "[1.0, 2.0]", gold: object = 1) -> str:
    head = "" if guid is None else f'"guid": {json.dumps(guid)}, '
    return "{" + head + f'"logits_epoch_EPOCH": {logits}, "gold": {json.dumps(gold)}' + "}"


def _good_ref(tmp: Path) -> None:
    _jsonl(_row("a"), _row("b", gold=0), epochs=2)(tmp)


def _trigger_config(**override: object) -> Callable[[Path], None]:
    spec = {
        "quadrant_labels": {"Q1": "red", "Q2": "green", "Q3": "blue", "Q4": "green"},
        "triggers": ["joy", "love"],
        "n_train": 2,
        "n_test": 2,
        "n_train_triggers": 1,
        "seed": 1,
        **override,
    }
    return _write("data.json", json.dumps({"cat": spec}))


def _markup_suite(name: str, values: list[str]) -> Callable[[Path], None]:
    suite = {
        "name": name,
        "stage": "t.count",
        "imports": [],
        "sweep": {"grid": {"marker_dir": values}},
    }
    return _write("markup.json", json.dumps(suite))


MARKUP = ["[/] [bold]x[/bold \x1b[31mred\x1b[0m"]  # marker_dir is not in the run id: one value
CART = ("cartography", "metrics", "--out", "{tmp}/m.csv", "--dynamics")


def _state_dict(tmp: Path) -> None:
    """``{tmp}/sd.pt``: the state dict of a 4-3-2 MLP (weights only, as patching wants)."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    torch.save(net.state_dict(), tmp / "sd.pt")


class _Planted:
    """Unpickling it would create ``{tmp}/pwned``: a pickle that is not weights only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _pickled(rel: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        import pickle

        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(pickle.dumps({"weight": _Planted(tmp / "pwned")}))

    return setup


HF_CONFIG = json.dumps(
    {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": 1,
        "n_embd": 8,
        "n_head": 2,
        "vocab_size": 16,
        "n_positions": 8,
    }
)
MLP = '{{"type": "mlp", "sizes": [4, 3, 2]}}'  # argv is str.format-ed: braces doubled
STRUCTURE = ("patching", "structure", "--model")
DEFINE = ("patching", "define", "--model", "{tmp}/sd.pt", "--arch", MLP, "--type")


CASES = [
    # ---- assay cartography metrics: every way a dynamics input can be wrong
    Case("cart-npz-empty", (*CART, "{tmp}/dyn.npz"), 2, ("dyn.npz",), _write("dyn.npz", b"")),
    Case(
        "cart-npz-garbage",
        (*CART, "{tmp}/dyn.npz"),
        2,
        ("dyn.npz",),
        _write("dyn.npz", b"\x00\xffnot a zip" * 20),
    ),
    Case(
        "cart-npz-object-array",
        (*CART, "{tmp}/dyn.npz"),
        2,
        ("dyn.npz", "object"),
        _npz(ids=np.array([{"a": 1}], dtype=object)),
    ),
    Case(
        "cart-npz-missing-key",
        (*CART, "{tmp}/dyn.npz"),
        2,
        ("dyn.npz", "gold_prob"),
        _npz(ids=np.array(["a"])),
    ),
    Case(
        "cart-json-malformed",
        (*CART, "{tmp}/ref"),
        2,
        ("dynamics_epoch_0.jsonl", "line 2"),
        _jsonl(_row("a"), "{not json"),
    ),
    Case("cart-missing-guid", (*CART, "{tmp}/ref"), 2, ("guid", "line 1"), _jsonl(_row(None))),
    Case(
        "cart-gold-out-of-range", (*CART, "{tmp}/ref"), 2, ("gold", "5"), _jsonl(_row("a", gold=5))
    ),
    Case(
        "cart-gold-negative", (*CART, "{tmp}/ref"), 2, ("gold", "-1"), _jsonl(_row("a", gold=-1))
    ),
    Case(
        "cart-gold-string",
        (*CART, "{tmp}/ref"),
        2,
        ("gold", "'pos'"),
        _jsonl(_row("a", gold="pos")),
    ),
    Case(
        "cart-ragged-logits",
        (*CART, "{tmp}/ref"),
        2,
        ("logits", "3", "2"),
        _jsonl(_row("a"), _row("b", logits="[1.0, 2.0, 3.0]")),
    ),
    Case(
        "cart-empty-jsonl",
        (*CART, "{tmp}/ref"),
        2,
        ("dynamics_epoch_0.jsonl", "no rows"),
        _jsonl(),
    ),
    Case(
        "cart-binary-jsonl",
        (*CART, "{tmp}/ref"),
        2,
        ("dynamics_epoch_0.jsonl",),
        _write("ref/training_dynamics/dynamics_epoch_0.jsonl", b"\x89PNG\x00\xff\xfe" * 50),
    ),
    Case(
        "cart-nan-logits",
        (*CART, "{tmp}/ref"),
        2,
        ("not finite", "'a'"),
        _jsonl(_row("a", logits="[NaN, 1.0]")),
    ),
    Case(
        "cart-inf-logits",
        (*CART, "{tmp}/ref"),
        2,
        ("not finite", "'a'"),
        _jsonl(_row("a", logits="[Infinity, 1.0]")),
    ),
    Case(
        "cart-overflow-logits",
        (*CART, "{tmp}/ref"),
        2,
        ("not finite", "'b'"),
        _jsonl(_row("a"), _row("b", logits="[1e39, 1.0]")),
    ),
    Case(
        "cart-out-is-folder",
        ("cartography", "metrics", "--dynamics", "{tmp}/ref", "--out", "{tmp}/outdir"),
        2,
        ("outdir", "folder"),
        _both(_good_ref, lambda t: (t / "outdir").mkdir()),
    ),
    Case(
        "cart-burn-out-zero",
        (*CART, "{tmp}/ref", "--burn-out", "0"),
        2,
        ("--burn-out", "0"),
        _good_ref,
    ),
    Case("cart-dynamics-missing", (*CART, "{tmp}/nowhere"), 2, ("nowhere", "training_dynamics")),
    Case(
        "cart-npz-wrong-shapes",
        (*CART, "{tmp}/dyn.npz"),
        2,
        ("dyn.npz", "shapes"),
        _npz(
            ids=np.array(["a", "b"]),
            gold=np.array([0, 1]),
            gold_prob=np.ones((2, 3)),
            correct=np.ones((2, 3), bool),
            meta=np.asarray('{"task": "multiclass", "mode": "train_pass"}'),
        ),
    ),
    Case(
        "cart-npz-nan-prob",
        (*CART, "{tmp}/dyn.npz"),
        2,
        ("not finite", "'b'"),
        _npz(
            ids=np.array(["a", "b"]),
            gold=np.array([0, 1]),
            gold_prob=np.array([[0.5, np.nan]], np.float32),
            correct=np.ones((1, 2), bool),
            meta=np.asarray('{"task": "multiclass", "mode": "train_pass"}'),
        ),
    ),
    # ---- assay trigger generate
    Case(
        "trigger-binary-config",
        ("trigger", "generate", "{tmp}/data.json", "--out", "{tmp}/o"),
        2,
        ("data.json",),
        _write("data.json", b"\xff\xfe\x00\x01binary" * 10),
        must_not_exist=("{tmp}/o",),
    ),
    Case(
        "trigger-negative-seed",
        ("trigger", "generate", "{tmp}/data.json", "--seed", "-1", "--out", "{tmp}/o"),
        2,
        ("--seed", "-1"),
        _trigger_config(),
        must_not_exist=("{tmp}/o",),
    ),
    Case(
        "trigger-out-is-file",
        ("trigger", "generate", "{tmp}/data.json", "--out", "{tmp}/afile"),
        2,
        ("afile", "--out"),
        _both(_trigger_config(), _write("afile", "keep")),
    ),
    Case(
        "trigger-n-train-huge",
        ("trigger", "generate", "{tmp}/data.json", "--out", "{tmp}/o"),
        2,
        ("n_train", "1000000000"),
        _trigger_config(n_train=10**9),
        must_not_exist=("{tmp}/o",),
    ),
    Case(
        "trigger-n-train-1e9-literal",
        ("trigger", "generate", "{tmp}/data.json", "--out", "{tmp}/o"),
        2,
        ("n_train", "100000"),
        _write(
            "data.json",
            '{"cat": {"quadrant_labels": {"Q1": "red", "Q2": "green", '
            '"Q3": "blue", "Q4": "green"}, "triggers": ["joy"], "n_train_triggers": 1, '
            '"n_train": 1e9}}',
        ),
        must_not_exist=("{tmp}/o",),
    ),
    Case(
        "trigger-config-a-list",
        ("trigger", "generate", "{tmp}/data.json", "--out", "{tmp}/o"),
        2,
        ("mapping", "list"),
        _write("data.json", "[1, 2]"),
        must_not_exist=("{tmp}/o",),
    ),
    Case(
        "trigger-config-missing",
        ("trigger", "generate", "{tmp}/none.json", "--out", "{tmp}/o"),
        2,
        ("none.json",),
        must_not_exist=("{tmp}/o",),
    ),
    # ---- assay serve / report arguments
    Case(
        "serve-port-negative",
        ("serve", "--root", "{root}", "--port", "-1"),
        2,
        ("--port", "-1", "65535"),
    ),
    Case(
        "serve-port-too-big",
        ("serve", "--root", "{root}", "--port", "70000"),
        2,
        ("--port", "70000", "65535"),
    ),
    Case(
        "serve-refresh-nan",
        ("serve", "--root", "{root}", "--refresh-s", "nan"),
        2,
        ("--refresh-s", "nan"),
    ),
    Case(
        "serve-refresh-inf",
        ("serve", "--root", "{root}", "--refresh-s", "inf"),
        2,
        ("--refresh-s", "inf"),
    ),
    Case(
        "serve-root-mistyped",
        ("serve", "--root", "{tmp}/runz"),
        2,
        ("runz", "--root"),
        must_not_exist=("{tmp}/runz",),
    ),
    Case(
        "report-out-under-file",
        ("report", "--stage", "example.fit", "--root", "{root}", "--out", "{tmp}/afile/r.html"),
        2,
        ("afile", "--out"),
        _write("afile", "keep"),
    ),
    Case(
        "report-root-is-file",
        ("report", "--stage", "example.fit", "--root", "{tmp}/afile"),
        2,
        ("afile", "--root"),
        _write("afile", "keep"),
    ),
    Case(
        "report-root-mistyped",
        ("report", "--stage", "example.fit", "--root", "{tmp}/runz"),
        2,
        ("runz", "--root"),
        must_not_exist=("{tmp}/runz",),
    ),
    # ---- user text with rich markup or terminal escapes is shown, never interpreted
    Case(
        "markup-dry-run",
        ("run", "{tmp}/markup.json", "--import", "teststages", "--dry-run", "--root", "{root}"),
        0,
        ("[/]", "[bold]x[/bold", "\\x1b[31m"),
        _markup_suite("[/]", MARKUP),
    ),
    Case(
        "markup-status",
        ("status", "{tmp}/markup.json", "--import", "teststages", "--root", "{root}"),
        0,
        ("suite [/]: 0/1 done",),
        _markup_suite("[/]", MARKUP),
    ),
    Case(
        "markup-analyze-suite-name",
        ("analyze", "{tmp}/polyfit.json", "--root", "{root}"),
        0,
        ("train_mse",),
        _write(
            "polyfit.json",
            json.dumps(
                {
                    "name": "[/]poly[bold]",
                    "stage": "example.fit",
                    "config": {"degree": 1},
                    "sweep": {"seeds": [0]},
                }
            ),
        ),
    ),
    # ---- the engine's own commands
    Case("run-missing-suite", ("run", "{tmp}/nope.yaml", "--root", "{root}"), 2, ("nope.yaml",)),
    Case(
        "run-bad-override",
        ("run", POLYFIT, "degree=abc", "--root", "{root}"),
        2,
        ("degree", "'abc'"),
    ),
    Case(
        "run-bad-workers",
        ("run", POLYFIT, "--workers", "-1", "--root", "{root}"),
        2,
        ("workers", "'-1'"),
    ),
    Case("run-bad-shard", ("run", POLYFIT, "--shard", "3/2", "--root", "{root}"), 2, ("3/2",)),
    Case("run-bad-seeds", ("run", POLYFIT, "--seeds", "x", "--root", "{root}"), 2, ("'x'",)),
    Case(
        "run-timeout-nan",
        ("run", POLYFIT, "--timeout-s", "nan", "--root", "{root}"),
        2,
        ("timeout_s", "nan"),
    ),
    Case(
        "status-root-is-file",
        ("status", POLYFIT, "--root", "{tmp}/afile"),
        2,
        ("afile", "--root"),
        _write("afile", "keep"),
    ),
    Case("ls-negative-limit", ("ls", "--root", "{root}", "--limit", "-5"), 2, ("--limit", "-5")),
    Case(
        "ls-store-not-sqlite",
        ("ls", "--store", "sqlite:///{tmp}/afile"),
        2,
        ("afile", "not an SQLite database"),
        _write("afile", "keep"),
    ),
    Case("show-unknown-run", ("show", "zzz", "--root", "{root}"), 2, ("'zzz'", "assay ls")),
    Case(
        "show-ambiguous-prefix",
        ("show", "example", "--root", "{root}"),
        2,
        ("'example'", "2 runs"),
    ),
    Case(
        "analyze-unknown-metric",
        ("analyze", POLYFIT, "degree=1", "--seeds", "0", "--root", "{root}", "--metric", "nope"),
        2,
        ("nope", "train_mse"),
    ),
    Case(
        "analyze-out-is-file",
        (
            "analyze",
            POLYFIT,
            "degree=1",
            "--seeds",
            "0",
            "--root",
            "{root}",
            "--out",
            "{tmp}/afile",
        ),
        2,
        ("afile",),
        _write("afile", "keep"),
    ),
    Case(
        "reindex-root-is-file",
        ("reindex", "--root", "{tmp}/afile"),
        2,
        ("afile",),
        _write("afile", "keep"),
    ),
    Case("stages-unknown", ("stages", "nope"), 2, ("'nope'", "example.fit")),
    # ---- stores and executors name the real cause
    Case(
        "postgres-unreachable",
        ("ls", "--store", "postgresql+psycopg://assay@127.0.0.1:9/x"),
        2,
        ("cannot connect", "127.0.0.1:9"),
    ),
    Case(
        "slurm-without-sbatch",
        (
            "run",
            POLYFIT,
            "degree=3",
            "--seeds",
            "0",
            "--executor",
            "slurm",
            "--root",
            "{root}",
            "--quiet",
        ),
        2,
        ("sbatch",),
        env={"PATH": "/nonexistent"},
    ),
    # ---- assay patching structure / define: models, specs and outputs that cannot be used
    Case(
        "patching-pickled-bin",
        (*STRUCTURE, "{tmp}/pytorch_model.bin", "--arch", MLP),
        2,
        ("pytorch_model.bin", "refusing", "--trust-checkpoint"),
        _pickled("pytorch_model.bin"),
        must_not_exist=("{tmp}/pwned",),
    ),
    Case(
        "patching-hf-pickled-bin",
        (*STRUCTURE, "{tmp}/hf"),
        2,
        ("hf", "pytorch_model.bin"),
        _both(_write("hf/config.json", HF_CONFIG), _pickled("hf/pytorch_model.bin")),
        must_not_exist=("{tmp}/pwned",),
    ),
    Case(
        "patching-empty-pt",
        (*STRUCTURE, "{tmp}/empty.pt"),
        2,
        ("empty.pt", "empty"),
        _write("empty.pt", b""),
    ),
    Case(
        "patching-config-garbage",
        (*STRUCTURE, "{tmp}/hf"),
        2,
        ("config.json", "JSON"),
        _write("hf/config.json", "{{{ not json"),
    ),
    Case(
        "patching-config-list",
        (*STRUCTURE, "{tmp}/hf"),
        2,
        ("config.json", "list"),
        _write("hf/config.json", "[1, 2]"),
    ),
    Case(
        "patching-negative-sizes",
        (*STRUCTURE, "{tmp}/sd.pt", "--arch", '{{"type": "mlp", "sizes": [4, -3, 2]}}'),
        2,
        ("sizes", "-3", "positive"),
        _state_dict,
    ),
    Case(
        "patching-arch-does-not-fit",
        (*STRUCTURE, "{tmp}/sd.pt", "--arch", '{{"type": "mlp", "sizes": [4, 5, 2]}}'),
        2,
        ("sd.pt", "does not fit"),
        _state_dict,
    ),
    Case(
        "patching-arch-file-missing",
        (*STRUCTURE, "{tmp}/sd.pt", "--arch", "{tmp}/arch.json"),
        2,
        ("arch.json", "does not exist"),
        _state_dict,
    ),
    Case(
        "patching-inputs-binary-json",
        (*STRUCTURE, "{tmp}/sd.pt", "--arch", MLP, "--inputs", "{tmp}/in.json"),
        2,
        ("in.json", "readable"),
        _both(_state_dict, _write("in.json", bytes(range(256)))),
    ),
    Case(
        "patching-inputs-pickled-pt",
        (*STRUCTURE, "{tmp}/sd.pt", "--arch", MLP, "--inputs", "{tmp}/in.pt"),
        2,
        ("in.pt", "refusing"),
        _both(_state_dict, _pickled("in.pt")),
        must_not_exist=("{tmp}/pwned",),
    ),
    Case(
        "patching-rank-damaged-records",
        ("patching", "rank", "{tmp}/run"),
        2,
        ("records.jsonl:2", "damaged"),
        _both(
            _write("run/run.json", "{}"),
            _write("run/artifacts/records.jsonl", '{"index": 0}\n{not json\n'),
        ),
    ),
    Case(
        "patching-define-binary-custom",
        (*DEFINE, "custom", "--custom", "{tmp}/defs.json"),
        2,
        ("defs.json",),
        _both(_state_dict, _write("defs.json", bytes(range(256)))),
    ),
    Case(
        "patching-define-output-under-file",
        (*DEFINE, "single_neuron", "--output", "{tmp}/afile/defs.json"),
        2,
        ("afile", "--output"),
        _both(_state_dict, _write("afile", "keep")),
    ),
]


# --------------------------------------------------------------------------- the harness


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A root holding one finished polyfit run (and its data run), made once per module."""
    root = tmp_path_factory.mktemp("recorded") / "runs"
    proc = _assay(
        (
            "run",
            f"{REPO}/suites/example/polyfit.yaml",
            "degree=1",
            "--seeds",
            "0",
            "--root",
            str(root),
            "--quiet",
        )
    )
    assert proc.returncode == 0, proc.stderr
    return root


def _assay(
    argv: tuple[str, ...],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: int | None = None,
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "assay", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        user=user,
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by content; SQLite's -wal/-shm side files are not records."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, recorded: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(recorded, root)
    if case.setup is not None:
        case.setup(tmp_path)
    fill = {"tmp": str(tmp_path), "root": str(root), "repo": str(REPO)}
    before = snapshot(root)
    proc = _assay(tuple(a.format(**fill) for a in case.argv), case.env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == case.expect_exit, out
    for text in case.expect_in_message:
        assert text.format(**fill) in out, f"{text!r} not in:\n{out}"
    if case.expect_exit != 0:
        assert len(proc.stderr.strip().splitlines()) <= 3, f"not one message:\n{proc.stderr}"
    assert "\x1b" not in out, "a raw terminal escape reached the output"
    assert snapshot(root) == before, "a recorded file changed"
    for path in case.must_not_exist:
        assert not Path(path.format(**fill)).exists(), f"{path} was created"


# --------------------------------------------------------------------------- a read-only root


READ_ONLY = {
    "ls": ("ls", "--root", "{root}"),
    "status": ("status", POLYFIT, "degree=1", "--seeds", "0", "--root", "{root}"),
    "show": ("show", "example_fit", "--root", "{root}"),
    "report": ("report", "--stage", "example.fit", "--root", "{root}", "--out", "{out}/r.html"),
}


@pytest.fixture
def read_only_root(recorded: Path, tmp_path: Path):
    """A copy of the recorded root that this process cannot write: a read-only bind mount when
    running as root (root writes through file modes), else the modes without write bits."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(recorded.parent, src)
    if os.geteuid() != 0:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        yield src / "runs"
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        return
    ro.mkdir()
    mount = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {mount.stderr!r}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here: {remount.stderr!r}")
        yield ro / "runs"
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize("command", list(READ_ONLY))
def test_a_read_only_root_can_be_read(command: str, read_only_root: Path, tmp_path: Path) -> None:
    """Reading a root needs no write: another user's (or a read-only mounted) root works."""
    root, out = read_only_root, tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError):  # the premise: nothing under the root can be written
        (root / "probe").write_text("x")
    before = snapshot(root)
    fill = {"root": str(root), "out": str(out), "repo": str(REPO)}
    proc = _assay(tuple(a.format(**fill) for a in READ_ONLY[command]), cwd=out)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output and "readonly" not in output, output
    assert "example_fit" in output or "1/1 done" in output or "1 run(s): 1 done" in output, output
    assert snapshot(root) == before


def test_writing_to_a_read_only_root_names_the_cause(read_only_root: Path) -> None:
    """`assay run` on a root it cannot write: says so, and does not send the user to reindex."""
    proc = _assay(
        (
            "run",
            f"{REPO}/suites/example/polyfit.yaml",
            "degree=3",
            "--seeds",
            "0",
            "--root",
            str(read_only_root),
            "--quiet",
        )
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "reindex" not in proc.stderr, proc.stderr
    assert "read-only" in proc.stderr or "cannot open store" in proc.stderr, proc.stderr


def test_serving_a_suite_before_its_runs_creates_nothing(tmp_path: Path) -> None:
    """`assay serve SUITE --root R` before `assay run`: says where it looks, shows the runs as
    pending, and creates no folder or store where R points (it may be a typo)."""
    import re
    import urllib.request

    root = tmp_path / "not_yet"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assay",
            "serve",
            POLYFIT.format(repo=REPO),
            "--root",
            str(root),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline())
        assert url, proc.stderr.read()
        with urllib.request.urlopen(url.group(0) + "data.json", timeout=60) as res:
            counts = json.loads(res.read())["data"]["counts"]
        assert counts == {"pending": 15}
        assert not root.exists()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"no store at {root.resolve() / 'assay.db'}" in err and "Traceback" not in err
