"""Runs inside the Infinity venv (.venv-infinity): tiny random-weight models under the folders of repo ids.

`python tiny_models.py ROOT embedding:BAAI/bge-small-en-v1.5 rerank:mixedbread-ai/mxbai-rerank-xsmall-v1`
writes, for each id, `ROOT/<id>/` with a 2-layer BERT (a feature extractor for `embedding`, a
one-label cross-encoder for `rerank`), its WordPiece tokenizer and `model.onnx` for the ONNX engine.
Served as repos by the hub stand-in (tests/standins/hf_hub.py) or found by Infinity as local folders
when it runs in ROOT, the models keep the ids the stack names.
"""

from __future__ import annotations

import sys
from pathlib import Path

HIDDEN = 32
WORDS = ["the", "a", "of", "to", "and", "in", "is", "it", "paris", "france", "capital", "city",
         "berlin", "germany", "river", "cat", "dog", "what", "which", "gateway", "model", "vector"]


def _tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz0123456789.,?!"]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make(kind: str, folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    tokenizer = _tokenizer(folder)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1,
    )
    model = BertModel(config) if kind == "embedding" else BertForSequenceClassification(config)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    # model.onnx for Infinity's ONNX engine (the `-cpu` image), by torch's TorchScript exporter
    # (dynamo=False): optimum 1.24's own export goes through torch's dynamo exporter, which needs
    # onnxscript. Input and output names are the ones optimum's ORTModel reads.
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tokenizer(["the capital of france", "a cat"], padding=True, return_tensors="pt")
    output = "last_hidden_state" if kind == "embedding" else "logits"
    axes = {name: {0: "batch_size", 1: "sequence_length"} for name in names}
    axes[output] = {0: "batch_size", 1: "sequence_length"} if kind == "embedding" else {0: "batch_size"}
    torch.onnx.export(
        model, tuple(sample[n] for n in names), str(folder / "model.onnx"), input_names=names,
        output_names=[output], dynamic_axes=axes, opset_version=14, dynamo=False,
    )


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    for spec in argv[1:]:
        kind, repo_id = spec.split(":", 1)
        make(kind, root / repo_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
