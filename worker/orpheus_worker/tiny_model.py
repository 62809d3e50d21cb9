"""`orpheus-tts make-tiny-model DIR`: the random-weight stand-in checkpoint.

No weights can be downloaded here, so tests and the local stack run the real pipeline on a
checkpoint generated locally and deterministically (fixed seeds, no network):

- `DIR/llm`: a Llama with Orpheus's exact vocabulary layout (156,940 ids, see `tokens.py`),
  2 layers, hidden size 128, attention head_dim 64 (vLLM's CPU attention rejects 16), tied
  embeddings, float32, marked `"orpheus_stand_in": true` in `config.json` (the worker then
  constrains sampling to audio tokens and the stop token, as `--constrain-to-audio-tokens`,
  and keeps default utterances short) and, with `--voices arabic` (an Arabic-Saudi stand-in),
  `"orpheus_voices": "arabic"` (fahad, sultan, lulwa, noura; Groq's abdullah and aisha as
  aliases): the voice set a worker serves unless told otherwise (else `english`);
  plus a byte-level BPE tokenizer trained with
  `tokenizers` on a small built-in corpus, padded to the Llama-3 layout (text ids below
  128000, the Llama-3 specials at 128000..128255, `<custom_token_N>` at 128256 + N),
  loadable by `AutoTokenizer` and vLLM. Its corpus has Arabic script, so Arabic text becomes
  whole BPE tokens, not only byte fallbacks.
- `DIR/snac`: a random-weight SNAC with hubertsiuzdak/snac_24khz's configuration
  (`config.json` + `pytorch_model.bin`), which `SNAC.from_pretrained(DIR)` loads.

The audio it produces is noise; every byte still goes through the real code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import tokens as T

# Bump when the output changes, so cached copies (tests/support/worker_proc.py) are rebuilt.
GENERATOR_VERSION = 2
SEED = 20_240_301

SNAC_24KHZ_CONFIG = {
    "sampling_rate": 24000,
    "encoder_dim": 48,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": 4096,
    "codebook_dim": 8,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}

LLM_SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "max_position_embeddings": 8192,
}

_CORPUS = """\
The quick brown fox jumps over the lazy dog. Hello there, how are you doing today?
I'm fine, thank you! It's a beautiful morning, isn't it? Let me tell you a story.
Once upon a time, in a small village by the sea, there lived an old fisherman and his wife.
Every day he went out to sea and every evening he came back with his nets full of fish.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024. Dates like March 3rd, 1999 and times like 10:45.
Speech synthesis turns written text into spoken audio; streaming sends it as it is made.
tara leah jess leo dan mia zac zoe fahad sultan lulwa noura: voices speak the sentences.
<laugh> <chuckle> <sigh> <cough> <sniffle> <groan> <yawn> <gasp> mark emotions in the text.
مرحبا بكم في تطبيقنا. كيف حالك اليوم؟ الطقس جميل جدا.
Bonjour, comment allez-vous? Guten Tag! ¿Qué tal? こんにちは。
"""


def _special_token_names() -> dict[int, str]:
    names = {
        T.BEGIN_OF_TEXT: "<|begin_of_text|>",
        T.BEGIN_OF_TEXT + 1: "<|end_of_text|>",
        T.BEGIN_OF_TEXT + 6: "<|start_header_id|>",
        T.BEGIN_OF_TEXT + 7: "<|end_header_id|>",
        T.END_OF_TEXT: "<|eot_id|>",
    }
    reserved = 0
    for tid in range(T.BEGIN_OF_TEXT, T.BASE_VOCAB):
        if tid not in names:
            names[tid] = f"<|reserved_special_token_{reserved}|>"
            reserved += 1
    for tid in range(T.CUSTOM_TOKEN_BASE, T.VOCAB_SIZE):
        names[tid] = f"<custom_token_{tid - T.CUSTOM_TOKEN_BASE}>"
    return names


def build_tokenizer():
    """A byte-level BPE tokenizer with Orpheus's id layout, built without any download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1_024,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)

    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    # Fill the rest of the Llama-3 text range so every id below 128000 exists.
    for tid in range(len(vocab), T.BEGIN_OF_TEXT):
        vocab[f"<|unused_{tid}|>"] = tid
    spec["added_tokens"] = [
        {"id": tid, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for tid, name in sorted(_special_token_names().items())
    ]
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", T.BEGIN_OF_TEXT)],
    )
    return tok


VOICE_SETS = ("english", "arabic")


def write_llm(out: Path, voices: str = "english") -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=T.VOCAB_SIZE,
        tie_word_embeddings=True,
        rope_theta=500_000.0,
        bos_token_id=T.BEGIN_OF_TEXT,
        eos_token_id=T.END_OF_SPEECH,
        pad_token_id=T.CUSTOM_TOKEN_BASE + 8,
        torch_dtype="float32",
        # read by the worker: random weights, so sampling is constrained to audio tokens
        orpheus_stand_in=True,
        **LLM_SHAPE,
        # the worker's default `--voices` (left out for English, so that checkpoint is unchanged)
        **({"orpheus_voices": voices} if voices != "english" else {}),
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        model_max_length=LLM_SHAPE["max_position_embeddings"],
    )
    fast.save_pretrained(out)


def write_snac(out: Path) -> None:
    import torch
    from snac import SNAC

    torch.manual_seed(SEED)
    model = SNAC(**SNAC_24KHZ_CONFIG).eval()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(SNAC_24KHZ_CONFIG, indent=2) + "\n")
    torch.save(model.state_dict(), out / "pytorch_model.bin")


def make_tiny_model(out_dir: str | Path, voices: str = "english") -> Path:
    """Write `out_dir/llm` and `out_dir/snac`; return `out_dir`."""
    out = Path(out_dir)
    write_llm(out / "llm", voices)
    write_snac(out / "snac")
    (out / "VERSION").write_text(f"{GENERATOR_VERSION}\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="orpheus-tts make-tiny-model",
        description="Write the random-weight stand-in checkpoint (DIR/llm and DIR/snac).",
    )
    parser.add_argument("dir", help="output directory")
    parser.add_argument("--voices", choices=VOICE_SETS, default="english",
                        help="the stand-in's voice set: english, or arabic for an Arabic-Saudi "
                        "stand-in (default english)")
    args = parser.parse_args(argv)
    out = make_tiny_model(args.dir, args.voices)
    print(f"wrote {out / 'llm'} and {out / 'snac'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
