"""Behaviour pinned across restructurings: the golden edits (tests/golden_edits.py) give the same
diff tensors as the stored file, bit for bit on the processor it was made on (and to float32
rounding on another, whose kernels may round differently)."""

import torch
from golden_edits import GOLDEN, cpu_signature, make_golden_edits


def test_golden_edits_are_unchanged(tmp_path):
    from safetensors import safe_open

    with safe_open(str(GOLDEN), framework="pt") as handle:
        made_on = handle.metadata()["cpu"]
        golden = {k: handle.get_tensor(k) for k in handle.keys()}
    made = make_golden_edits(tmp_path)
    assert sorted(made) == sorted(golden)
    for name, tensor in golden.items():
        if made_on == cpu_signature():
            assert torch.equal(made[name], tensor), f"{name} differs (same CPU: must be bit-identical)"
        else:
            torch.testing.assert_close(made[name], tensor, rtol=1e-3, atol=1e-5, msg=f"{name} ({made_on})")
