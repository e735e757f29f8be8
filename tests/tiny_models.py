"""Tiny real Hugging Face models built in code (no download) for fast tests.

``tiny_tokenizer()``: a byte-level BPE (vocab 512) trained on a few sentences, wrapped
as a ``PreTrainedTokenizerFast`` with right padding and no BOS.
``tiny_llama()`` / ``tiny_gpt2()``: randomly initialised under a fixed seed.
"""

from __future__ import annotations

import functools

import torch

CORPUS = [
    "The capital of France is Paris. The capital of Germany is Berlin.",
    "The mother tongue of Danielle Darrieux is French. Lionel Messi plays for Argentina.",
    "The Colosseum is located in the city of Rome. The Eiffel Tower is in Paris.",
    "Apple was founded by Steve Jobs. Microsoft was founded by Bill Gates.",
    "Toyota is headquartered in Japan. The Louvre is a museum in Paris, France.",
    "English, French, Spanish, Italian, German and Japanese are languages spoken by people.",
    "He is a musician. She is a scientist. They play the piano and the guitar in London.",
] * 4


@functools.lru_cache(maxsize=None)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(add_bos: bool = False):
    """Right padding, pad = eos; with ``add_bos`` every encoding starts with <|endoftext|>
    as a BOS (like Llama tokenizers), to test BOS handling."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_tokenizer_json())
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", 0)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tok.padding_side = "right"
    return tok


def tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=0,
        bos_token_id=0,
    )
    return LlamaForCausalLM(config).to(dtype).eval()


def tiny_gpt2(seed: int = 0, dtype: torch.dtype = torch.float32):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=512, n_embd=64, n_layer=4, n_head=4, n_positions=256, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config).to(dtype).eval()
