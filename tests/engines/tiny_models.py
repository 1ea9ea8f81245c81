"""Runs inside the Infinity venv (.venv-infinity): tiny random-weight models under the folders of repo ids.

`python tiny_models.py ROOT embedding:BAAI/bge-small-en-v1.5 rerank:mixedbread-ai/mxbai-rerank-xsmall-v1`
writes, for each id, `ROOT/<id>/` with a 2-layer BERT (a feature extractor for `embedding`, a
one-label cross-encoder for `rerank`) and its WordPiece tokenizer. Infinity started in ROOT finds
`<id>` as a local folder, so the container command keeps the ids the stack names.
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


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    for spec in argv[1:]:
        kind, repo_id = spec.split(":", 1)
        make(kind, root / repo_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
