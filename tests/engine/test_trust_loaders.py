"""Every loader of a file that can carry code runs none of it without the user's flag.

Each test plants a payload that would create a marker file if it ran (a cloudpickle blob in an
SB3 zip, an architecture ``factory`` in a suite, an arch.json or a run's config.json, a
``configuration_*.py`` named by a model folder's ``auto_map``), goes through the entry point a
user would, and checks: refused with one message naming the flag (exit 2), the marker never
written, nothing recorded. Where the flag is given, the payload does run: the gate is the flag.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("transformers")

import assay.ml  # noqa: E402
from assay import AssayError  # noqa: E402
from assay.families.patching._models import load_model  # noqa: E402


class Planted:
    """What an attacker pickles into a file: unpickling it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _assay(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSAY_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "assay", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _refused(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    # one message (a plan-time refusal adds "nothing was run or recorded")
    assert len(proc.stderr.strip().splitlines()) <= 2, f"not one message:\n{proc.stderr}"
    for text in fragments:
        assert text in out, f"{text!r} not in:\n{out}"


# --------------------------------------------------------------------------- SB3 zips


@pytest.fixture(scope="module")
def agents(tmp_path_factory) -> dict[str, Path]:
    """Untrained PPO and DQN CartPole agents saved by SB3 itself (weights are random)."""
    import gymnasium as gym
    from stable_baselines3 import DQN, PPO

    folder = tmp_path_factory.mktemp("agents")
    env = gym.make("CartPole-v1")
    PPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [16, 8]}).save(folder / "ppo.zip")
    DQN("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [16]}).save(folder / "dqn.zip")
    return {"ppo": folder / "ppo.zip", "dqn": folder / "dqn.zip"}


def plant(source: Path, target: Path, marker: Path, *, custom_extractor: bool = False) -> Path:
    """A copy of an SB3 zip whose cloudpickle blobs (policy class, spaces) would create
    ``marker``; ``custom_extractor`` also names a features extractor only a blob can give."""
    payload = base64.b64encode(pickle.dumps(Planted(marker))).decode()
    with zipfile.ZipFile(source) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    data = json.loads(entries["data"])
    for key in ("policy_class", "observation_space", "action_space"):
        data[key][":serialized:"] = payload
    if custom_extractor:
        data["policy_kwargs"] = {
            ":type:": "<class 'dict'>",
            ":serialized:": payload,
            "features_extractor_class": "<class 'evil.Extractor'>",
        }
    entries["data"] = json.dumps(data).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as z:
        for name, blob in entries.items():
            z.writestr(name, blob)
    return target


@pytest.fixture(scope="module")
def obs() -> torch.Tensor:
    return torch.randn(32, 4, generator=torch.Generator().manual_seed(0))  # (B, obs_dim)


def test_safe_route_gives_ppo_outputs_equal_to_sb3s_own_load(agents, obs):
    from stable_baselines3 import PPO

    model = load_model(agents["ppo"])  # no --trust-checkpoint: nothing unpickled
    theirs = PPO.load(agents["ppo"], device="cpu").policy
    with torch.no_grad():
        logits = model.forward(obs)  # (B, 2): the actor head
        their_logits = theirs.get_distribution(obs).distribution.logits  # normalised
        assert torch.equal(logits - logits.logsumexp(-1, keepdim=True), their_logits)
        assert torch.equal(model.root.predict_values(obs), theirs.predict_values(obs))
    actions, _ = theirs.predict(obs.numpy(), deterministic=True)
    assert logits.argmax(-1).tolist() == actions.tolist()
    mine, ref = model.root.state_dict(), theirs.state_dict()
    assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)


def test_safe_route_gives_dqn_q_values_equal_to_sb3s_own_load(agents, obs):
    from stable_baselines3 import DQN

    model = load_model(agents["dqn"])
    theirs = DQN.load(agents["dqn"], device="cpu")
    with torch.no_grad():
        assert torch.equal(model.forward(obs), theirs.q_net(obs))  # (B, 2) Q-values
    actions, _ = theirs.predict(obs.numpy(), deterministic=True)
    assert model.forward(obs).argmax(-1).tolist() == actions.tolist()


def test_a_planted_blob_never_runs_on_the_safe_route(agents, obs, tmp_path):
    marker = tmp_path / "pwned"
    evil = plant(agents["ppo"], tmp_path / "evil.zip", marker)
    proc = _assay("patching", "structure", "--model", evil)
    assert proc.returncode == 0, proc.stderr
    assert "mlp_extractor.policy_net.0" in proc.stdout and not marker.exists()
    with torch.no_grad():  # the blobs were never needed: same numbers as the clean zip
        assert torch.equal(load_model(evil).forward(obs), load_model(agents["ppo"]).forward(obs))
    assert not marker.exists()
    with pytest.raises(AssayError):  # SB3's own loader unpickles: the payload runs
        load_model(evil, trust_checkpoint=True)
    assert marker.exists()


@pytest.mark.parametrize("entry", ["zip", "agent-folder"])
def test_an_agent_that_needs_unpickling_is_refused_naming_the_flag(agents, tmp_path, entry):
    marker = tmp_path / "pwned"
    evil = plant(agents["dqn"], tmp_path / "agent" / "agent.zip", marker, custom_extractor=True)
    proc = _assay("patching", "structure", "--model", evil if entry == "zip" else evil.parent)
    _refused(proc, "features_extractor_class", "--trust-checkpoint", "agent.zip")
    assert not marker.exists()


def test_a_planted_upstream_agent_zip_is_refused_downstream(tmp_path):
    """patching.run reads its `prepared` upstream's artifacts/agent.zip: plant one there."""
    suite = tmp_path / "suite.yaml"
    prepared = {"train_steps": 600, "hidden": [16, 16], "n_pairs": 16}
    config = {"prepared": prepared, "end_index": 2}
    suite.write_text(json.dumps({"stage": "patching.run", "config": config}))
    root = tmp_path / "runs"
    first = _assay("run", suite, "--root", root, "--quiet")
    assert first.returncode == 0, first.stderr
    [agent] = root.glob("patching_cartpole_dqn_*/artifacts/agent.zip")
    marker = tmp_path / "pwned"
    plant(agent, agent, marker, custom_extractor=True)
    runs = sorted(p.name for p in root.glob("patching_run_*"))
    proc = _assay("run", suite, "end_index=4", "--root", root, "--quiet")  # a new downstream run
    _refused(proc, "agent.zip", "features_extractor_class", "--trust-checkpoint")  # at plan time
    assert sorted(p.name for p in root.glob("patching_run_*")) == runs  # nothing recorded
    assert not marker.exists()


# --------------------------------------------------------------------------- factories


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """A state dict, pairs and definitions: a valid patching.run apart from its arch."""
    import numpy as np

    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "sd.pt")
    x = np.zeros((3, 4), np.float32)
    np.savez(tmp_path / "pairs.npz", clean=x, corrupted=x + 1)
    (tmp_path / "defs.json").write_text('[{"weight": [0]}]')
    return {
        "model": str(tmp_path / "sd.pt"),
        "inputs": [str(tmp_path / "pairs.npz")],
        "definitions": str(tmp_path / "defs.json"),
    }


def _factory(marker: Path) -> dict:
    touch = {"args": ["touch", str(marker)]}
    return {"type": "factory", "factory": "subprocess:run", "kwargs": touch}


@pytest.mark.parametrize("route", ["suite-config", "suite-arch-file", "run-config-json"])
def test_a_factory_from_a_file_needs_trust_imports(route, files, tmp_path):
    marker, root = tmp_path / "pwned", tmp_path / "runs"
    config = {**files, "arch": _factory(marker)}
    if route == "suite-arch-file":
        (tmp_path / "arch.json").write_text(json.dumps(_factory(marker)))
        config["arch"] = "arch.json"  # the suite file's neighbour
    if route == "run-config-json":
        target = tmp_path / "copied" / "patching_run_0123456789ab" / "config.json"
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(config))
    else:
        target = tmp_path / "suite.json"
        target.write_text(json.dumps({"stage": "patching.run", "config": config}))
    proc = _assay("run", target, "--root", root, "--quiet")
    _refused(proc, "subprocess:run", "--trust-imports")
    assert not marker.exists() and not root.exists()  # nothing ran, nothing recorded
    dry = _assay("run", target, "--root", root, "--trust-imports", "--dry-run")
    assert dry.returncode == 0, dry.stderr  # the flag is what lets it through
    assert not marker.exists()


def test_trust_imports_lets_the_factory_run(files, tmp_path):
    marker = tmp_path / "pwned"
    suite = tmp_path / "suite.json"
    config = {**files, "arch": _factory(marker)}
    suite.write_text(json.dumps({"stage": "patching.run", "config": config}))
    proc = _assay("run", suite, "--root", tmp_path / "runs", "--quiet", "--trust-imports")
    assert marker.exists(), proc.stdout + proc.stderr  # it ran (and built no module: failed)
    assert proc.returncode == 1


def test_trust_checkpoint_in_a_suite_is_the_files_word_not_yours(files, tmp_path):
    suite = tmp_path / "suite.json"
    config = {**files, "trust_checkpoint": True, "arch": {"type": "mlp", "sizes": [4, 2]}}
    suite.write_text(json.dumps({"stage": "patching.run", "config": config}))
    proc = _assay("run", suite, "--root", tmp_path / "runs")
    _refused(proc, "trust_checkpoint", "--trust-imports")


def test_the_users_own_command_line_arch_may_name_a_factory(files, tmp_path):
    sizes = {"in_features": 4, "out_features": 2}
    arch = {"type": "factory", "factory": "torch.nn:Linear", "kwargs": sizes}
    model, inputs = files["model"], files["inputs"][0]
    proc = _assay(
        "patching", "structure", "--model", model, "--arch", json.dumps(arch), "--inputs", inputs
    )
    assert proc.returncode == 0, proc.stderr
    assert "Linear" in proc.stdout


# --------------------------------------------------------------------------- Hugging Face


def _remote_code_folder(folder: Path, marker: Path, config_name: str = "config.json") -> Path:
    folder.mkdir(parents=True)
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    (folder / "configuration_evil.py").write_text(code)
    (folder / "tokenization_evil.py").write_text(code)
    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": 1,
        "n_embd": 8,
        "n_head": 2,
        "vocab_size": 16,
        "n_positions": 8,
    }
    auto_map = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoTokenizer": ["tokenization_evil.EvilTokenizer", None],
    }
    (folder / "config.json").write_text(json.dumps(config))
    target = folder / config_name
    data = json.loads(target.read_text()) if target.exists() else {}
    target.write_text(json.dumps({**data, "auto_map": auto_map}))
    return folder


def test_an_auto_map_folder_is_refused_by_the_command_line(tmp_path):
    marker = tmp_path / "pwned"
    folder = _remote_code_folder(tmp_path / "evil", marker)
    proc = _assay("patching", "structure", "--model", folder)
    _refused(proc, "auto_map", "configuration_evil.py", "--trust-checkpoint")
    assert not marker.exists()


@pytest.mark.parametrize("route", ["suite", "patching-run"])
def test_an_auto_map_model_in_a_run_is_refused_before_anything_runs(route, files, tmp_path):
    marker, root = tmp_path / "pwned", tmp_path / "runs"
    folder = _remote_code_folder(tmp_path / "evil", marker)
    if route == "suite":
        suite = tmp_path / "suite.json"
        config = {**files, "model": str(folder)}
        suite.write_text(json.dumps({"stage": "patching.run", "config": config}))
        proc = _assay("run", suite, "--root", root, "--quiet")
    else:
        defs, inputs = files["definitions"], files["inputs"][0]
        argv = ["--model", folder, "--inputs", inputs, "--definitions", defs, "--root", root]
        proc = _assay("patching", "run", *argv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert "auto_map" in out and "--trust-checkpoint" in out, out
    assert not marker.exists()
    assert not any(root.glob("patching_run_*")), "a run was recorded"


@pytest.mark.parametrize("config_name", ["config.json", "tokenizer_config.json"])
def test_every_hf_loader_refuses_auto_map(tmp_path, config_name):
    marker = tmp_path / "pwned"
    folder = _remote_code_folder(tmp_path / "evil", marker, config_name)
    with pytest.raises(assay.ml.RemoteCodeError, match=f"its {config_name} has auto_map"):
        assay.ml.load_hf_model(folder)
    with pytest.raises(assay.ml.RemoteCodeError, match="trust_remote_code=True"):
        assay.ml.load_tokenizer(folder)
    with pytest.raises(AssayError, match="--trust-checkpoint"):
        load_model(folder)
    assert not marker.exists()


def test_a_plain_folder_passes_the_gate(tmp_path):
    model = assay.ml.build_model(
        "gpt2", vocab_size=16, d_model=8, n_layers=1, n_heads=2, max_positions=8
    )
    model.save_pretrained(tmp_path / "ok")
    assay.ml.check_no_remote_code(tmp_path / "ok")  # no auto_map: nothing to refuse
    assert assay.ml.load_hf_model(tmp_path / "ok").config.n_layer == 1
