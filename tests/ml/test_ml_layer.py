"""The public surface: a light import, every name resolves, devices, seeds, content refs."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

import assay
import assay.ml as ml
from assay.ml import ContentChangedError, FileRef, ModelRef, TorchConfig


def test_import_is_light_and_every_public_name_resolves():
    code = (
        "import sys, assay.ml, assay.ml.patching; "
        "bad = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    for name in ml.__all__:
        assert getattr(ml, name) is not None, name
    import assay.ml.patching as engine

    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ml.nope  # noqa: B018


class _Cfg(TorchConfig):
    width: int = 4


def test_setup_torch_seeds_sets_threads_and_resolves_the_dtype():
    config = _Cfg(seed=7, num_threads=1, dtype="float64", device="cpu")
    device, dtype = ml.setup_torch(config)
    first = torch.rand(3)
    assert (device, dtype, torch.get_num_threads()) == ("cpu", torch.float64, 1)
    ml.setup_torch(config)
    assert torch.equal(first, torch.rand(3))  # seeded again: the same draw
    # device and num_threads say where a run executes, not what it computes
    assert assay.run_id("s", 1, _Cfg(device="cpu", num_threads=2)) == assay.run_id("s", 1, _Cfg())
    assert assay.run_id("s", 1, _Cfg(dtype="float64")) != assay.run_id("s", 1, _Cfg())


def test_auto_device_gives_worker_i_gpu_i_mod_n(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    seen = []
    for i in range(5):
        monkeypatch.setenv("ASSAY_WORKER_INDEX", str(i))
        seen.append(ml.worker_device("auto"))
    assert seen == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    monkeypatch.delenv("ASSAY_WORKER_INDEX")
    assert ml.worker_device("auto") == "cuda:0"  # outside a pool
    assert ml.worker_device("cuda:2") == "cuda:2"  # explicit devices are taken as given
    with pytest.raises(assay.ConfigError, match="numbered 0..2"):
        ml.worker_device("cuda:3")
    monkeypatch.setenv("ASSAY_WORKER_INDEX", "two")
    with pytest.raises(assay.ConfigError, match="not a worker index"):
        ml.worker_device("auto")


def test_auto_device_without_a_gpu_is_the_cpu_and_bad_names_fail(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert ml.worker_device("auto") == "cpu"
    with pytest.raises(assay.ConfigError, match="valid choices"):
        ml.worker_device("tpu")
    with pytest.raises(assay.ConfigError, match="unknown dtype 'float8'"):
        ml.torch_dtype("float8")


def test_file_and_directory_hashes(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"hello")
    assert ml.sha256_file(f) == hashlib.sha256(b"hello").hexdigest()
    model = tmp_path / "model"
    (model / ".git").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "weights.safetensors").write_bytes(b"w")
    before = ml.sha256_dir(model)
    (model / ".git" / "HEAD").write_text("ref")  # hidden: not part of the model
    (model / "README.md").write_text("# card")  # docs: not part of the model
    assert ml.sha256_dir(model) == before
    (model / "weights.safetensors").write_bytes(b"W")
    changed = ml.sha256_dir(model)
    assert changed != before
    (model / "weights.safetensors").rename(model / "other.safetensors")
    assert ml.sha256_dir(model) not in (before, changed)  # names count, not only contents


class _DataConfig(TorchConfig):
    data: FileRef
    model: ModelRef | None = None


def test_file_refs_put_the_content_in_the_run_id_and_verify_it(tmp_path):
    data = tmp_path / "pairs.npz"
    data.write_bytes(b"v1")
    before = _DataConfig(data=str(data))  # a plain path: the hash is filled in
    assert before.data == FileRef(path=str(data), sha256=hashlib.sha256(b"v1").hexdigest())
    assert before.data.verify() == data
    data.write_bytes(b"v2")
    after = _DataConfig(data=str(data))
    assert assay.run_id("s", 1, before) != assay.run_id("s", 1, after)
    with pytest.raises(ContentChangedError) as err:
        before.data.verify()
    message = str(err.value)
    assert str(data) in message and before.data.sha256 in message and after.data.sha256 in message
    assert "Build the config again" in message
    # a stored config (path + hash) validates without touching the file
    assert _DataConfig.model_validate(before.model_dump()) == before
    with pytest.raises(ValueError, match="does not exist"):
        _DataConfig(data=str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="no model directory.*local folders only"):
        _DataConfig(data=str(data), model=str(data))
    with pytest.raises(ml.ModelNotFoundError):
        ModelRef.of(tmp_path / "nope")
    assert ModelRef.of(tmp_path).sha256 == ml.sha256_dir(tmp_path)


def test_one_resolver_for_the_stage_and_provenance(monkeypatch):
    from assay.engine._runner import _resolved_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("ASSAY_WORKER_INDEX", "3")
    # what the stage runs on is what provenance records: worker 3 of 2 GPUs is on cuda:1
    assert ml.worker_device("auto") == assay.resolve_device("auto") == "cuda:1"
    assert _resolved_device("auto") == "cuda:1"
