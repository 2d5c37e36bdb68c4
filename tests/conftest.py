import os

import pytest
import torch

# Deterministic, and no accidental downloads: tests build everything they use.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
