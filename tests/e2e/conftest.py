"""Every test in ``tests/e2e`` (training runs and evaluations on data sets) carries the ``e2e``
marker: ``-m e2e`` selects them, ``-m "not e2e"`` leaves them out."""

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.e2e)
