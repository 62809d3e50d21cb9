"""The stand-in checkpoint: Orpheus's layout, loadable by the real loaders, and deterministic."""

import json

from orpheus_worker import tokens as T
from orpheus_worker.tiny_model import SNAC_24KHZ_CONFIG, main


def test_generation_is_byte_for_byte_deterministic(tiny_model, tmp_path):
    assert main([str(tmp_path / "m")]) == 0
    for rel in ("llm/model.safetensors", "llm/config.json", "llm/tokenizer.json",
                "snac/pytorch_model.bin", "snac/config.json"):
        assert (tmp_path / "m" / rel).read_bytes() == (tiny_model / rel).read_bytes(), rel


def test_llm_has_orpheus_vocabulary_and_head_dim_64(tiny_model):
    config = json.loads((tiny_model / "llm" / "config.json").read_text())
    assert config["vocab_size"] == T.VOCAB_SIZE == 156_940
    assert config["head_dim"] == 64
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["orpheus_stand_in"] is True


def test_tokenizer_follows_the_llama3_layout(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model / "llm"))
    ids = tok("tara: Hello <laugh> مرحبا").input_ids
    assert ids[0] == T.BEGIN_OF_TEXT
    assert all(0 <= i < T.BEGIN_OF_TEXT for i in ids[1:])
    assert tok.decode(ids[1:]) == "tara: Hello <laugh> مرحبا"
    assert tok.convert_ids_to_tokens(T.END_OF_TEXT) == "<|eot_id|>"
    assert tok.convert_ids_to_tokens(T.END_OF_SPEECH) == "<custom_token_2>"
    assert tok.convert_ids_to_tokens(T.audio_token(0, 0)) == "<custom_token_10>"
    assert len(tok) == T.VOCAB_SIZE


def test_snac_is_the_24khz_architecture_and_loads_from_the_directory(tiny_model):
    from snac import SNAC

    assert json.loads((tiny_model / "snac" / "config.json").read_text()) == SNAC_24KHZ_CONFIG
    model = SNAC.from_pretrained(str(tiny_model / "snac"))
    assert model.hop_length * model.vq_strides[0] == T.SAMPLES_PER_FRAME
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 19.8


def test_arabic_stand_in_differs_only_in_its_voice_set(tiny_model):
    from tests.support.worker_proc import ensure_tiny_model

    arabic = ensure_tiny_model(voices="arabic")  # `make-tiny-model --voices arabic`
    config = json.loads((arabic / "llm" / "config.json").read_text())
    assert config["orpheus_voices"] == "arabic" and config["orpheus_stand_in"] is True
    assert "orpheus_voices" not in json.loads((tiny_model / "llm" / "config.json").read_text())
    for rel in ("llm/model.safetensors", "llm/tokenizer.json", "snac/pytorch_model.bin"):
        assert (arabic / rel).read_bytes() == (tiny_model / rel).read_bytes(), rel
