import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def one_thread_for_tiny_models(request):
    """Tiny models gain nothing from threads, and on a shared 2-core machine an OpenMP barrier
    waiting for a descheduled thread makes a 64-wide linear take ~8 ms instead of ~10 us.
    Tests marked ``real`` keep torch's default thread count."""
    import torch

    if request.node.get_closest_marker("real"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def tokenizer():
    from tiny_models import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(params=["llama", "gpt2"])
def tiny_model(request):
    from tiny_models import tiny_gpt2, tiny_llama

    return {"llama": tiny_llama, "gpt2": tiny_gpt2}[request.param]()
