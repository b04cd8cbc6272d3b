"""Shared test fixtures: where the read-only reference data lives."""

import os
from pathlib import Path

import pytest

#: One setting for the shared reference data: AFMASK_SHARED, else ../shared beside the checkout.
SHARED = Path(os.environ.get("AFMASK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder, or a skip naming the setting when it is absent."""
    if not (SHARED / "fixtures").is_dir():
        pytest.skip(f"shared reference data not found at {SHARED} (set AFMASK_SHARED)")
    return SHARED


@pytest.fixture(params=["numpy", "cupy", "arrayfire"])
def backend(request):
    """Each backend found here; the others skip with the reason they did not load."""
    from afmask.backend import get_backend, probe, use_backend

    found = probe(request.param)
    if not found.available:
        pytest.skip(found.reason)
    with use_backend(request.param):
        yield get_backend(request.param)
