"""One process of the data-parallel statistics test (tests/test_distributed.py); not a test itself.

    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python tests/distributed_worker.py CORPUS OUT
Builds the tiny Llama, joins a gloo group, computes statistics of layers 1-2 over CORPUS with
data_parallel=True; rank 0 writes them to OUT/layer-<l>.safetensors.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_models import tiny_llama, tiny_tokenizer  # noqa: E402

from wdsp_cli.statistics.covariance import compute_covariance, save_layer_statistics  # noqa: E402

torch.set_num_threads(1)
dist.init_process_group("gloo")
corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
texts = corpus.read_text().splitlines()
stats = compute_covariance(tiny_llama(), tiny_tokenizer(), [1, 2], texts, seq_len=16, data_parallel=True)
if dist.get_rank() == 0:
    for layer, s in stats.items():
        save_layer_statistics(out / f"layer-{layer}.safetensors", s)
dist.barrier()
dist.destroy_process_group()
