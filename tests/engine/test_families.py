import subprocess
import sys

import pytest

import assay
from assay.testing import check_stage


def test_example_family_registers_through_entry_point():
    fams = assay.list_families()
    assert fams["example"].modules == ("assay.families.example._stages",)
    assert assay.get_stage("example.fit").config_cls.__name__ == "FitConfig"


def test_example_stages_pass_conformance(tmp_path):
    rec = check_stage("example.fit", tmp_path)
    assert rec.results["test_mse"] < 0.1  # cubic fit of sin(2πx); the noise variance is 0.04


def test_import_assay_stays_light():
    code = "import sys, assay; print(sorted(m for m in ('torch','pandas','matplotlib','scipy','sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_names_say_what_they_are():
    import assay.families.example as example

    assert example.make_data.__name__ == "make_data" and example.fit.__name__ == "fit"
    with pytest.raises(assay.FamilyNotFoundError, match="installed families"):
        assay.core._registry.get_family("nope")
    assert not hasattr(assay, "RunSpec") and not hasattr(assay, "DetachedRun")
