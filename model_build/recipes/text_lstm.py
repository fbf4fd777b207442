"""text-lstm: an LSTM topic classifier over the project's own labeled sentences; raw text in."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import torch
from torch import nn

from functions.core.manifest import TextVocabPreprocessing
from functions.core.preprocessing import TextVocabPreprocessor
from model_build.recipes.base import Dataset, Fitted, GateConfig, Recipe, TrainingConfig, stratified_split
from model_build.recipes.topic_corpus import TOPICS, topic_sentences

VOCAB_FILE = "vocab.json"
MAX_TOKENS = 32
MAX_CHARS = 2000


class TopicLSTM(nn.Module):
    """Embedding -> single-layer LSTM -> linear head over the last hidden state."""

    def __init__(self, vocab_size: int, classes: int, embed: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(self.embedding(tokens))
        return self.head(hidden[-1])  # type: ignore[no-any-return]


class TextLSTM(Recipe):
    name = "text-lstm"
    task = "classification"
    description = "Topic classifier for short English sentences (sports, weather, cooking, technology)."
    labels = TOPICS
    input_name = "tokens"
    exporter = "torchscript"  # the dynamo exporter cannot export nn.LSTM with a dynamic batch (torch 2.13)
    training = TrainingConfig(epochs=60, quick_epochs=12, batch_size=32, learning_rate=5e-3, patience=8)
    gates = GateConfig(min_metric=0.85)

    def load_data(self, quick: bool) -> Dataset:
        texts, labels = topic_sentences(per_topic=100, seed=7)
        y = np.asarray(labels, dtype=np.int64)
        train, val, test = stratified_split(len(y), y, self.seed)
        return Dataset([texts[i] for i in train], y[train], [texts[i] for i in val], y[val],
                       [texts[i] for i in test], y[test],
                       source="400 synthetic sentences written by this project (model_build/recipes/topic_corpus.py), "
                              "100 per topic, assembled from hand-written phrase lists")

    def fit_preprocessing(self, data: Dataset) -> Fitted:
        spec = TextVocabPreprocessing(vocab_file=VOCAB_FILE, max_tokens=MAX_TOKENS, max_chars=MAX_CHARS)
        tokenizer = TextVocabPreprocessor(spec, {}, self.input_name)
        counts = Counter(token for text in data.x_train for token in tokenizer.tokenize(str(text)))
        vocab = {"<pad>": spec.pad_id, "<unk>": spec.unk_id}
        for token, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            vocab[token] = len(vocab)
        return Fitted(spec, {VOCAB_FILE: orjson.dumps(vocab, option=orjson.OPT_SORT_KEYS)})

    def build_model(self, fitted: Fitted) -> nn.Module:
        vocab_size = len(orjson.loads(fitted.files[VOCAB_FILE]))
        return TopicLSTM(vocab_size, len(TOPICS))
