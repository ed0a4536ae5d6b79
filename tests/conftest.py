import importlib

import pytest

BACKENDS = ["c", "python"]


@pytest.fixture(params=BACKENDS)
def core(request):
    """Each implementation of the core: the C extension and the Python twin."""
    name = "maglevx._core" if request.param == "c" else "maglevx._twin"
    return importlib.import_module(name)
