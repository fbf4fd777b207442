"""The recovery fine-tune after pruning: a few epochs on the recipe's training split, distilled from the
unpruned model, keeping the weights with the best validation loss (the pruned state itself included, so
recovery never makes the validation loss worse)."""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy.typing as npt
import torch
from torch import nn

from functions.core.manifest import Task
from model_build.train import targets, task_loss

Distill = Literal["logits", "embeddings"] | None
TEMPERATURE = 2.0


def describe(epochs: int, distill: Distill, task: Task = "classification") -> str:
    """The recovery in words, for the manifest and the card."""
    if epochs == 0:
        return "none (0 epochs)"
    outputs = "logits" if task == "classification" else "outputs"
    source = {"logits": f"distilled from the unpruned model's {outputs} (with the labels)",
              "embeddings": "distilled from the unpruned model's embeddings (cosine)",
              None: "on the labels only"}[distill]
    return f"{epochs} epoch{'s' * (epochs != 1)} on the training split, {source}"


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: npt.NDArray[Any], distill: Distill, batch: int = 256) -> torch.Tensor:
    """What the student is distilled towards, computed once: logits or ``embed(x)`` of the unpruned model."""
    teacher.eval()
    forward = _embed(teacher) if distill == "embeddings" else teacher
    return torch.cat([forward(torch.as_tensor(x[i:i + batch])) for i in range(0, len(x), batch)])


def recover(student: nn.Module, task: Task, x_train: npt.NDArray[Any], y_train: npt.NDArray[Any],
            x_val: npt.NDArray[Any], y_val: npt.NDArray[Any], teacher: torch.Tensor | None, *, epochs: int,
            batch_size: int, learning_rate: float, seed: int, distill: Distill) -> None:
    """Fine-tune ``student`` in place (every parameter but embedding tables, which pruning never changes)."""
    if epochs == 0:
        return
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tables = {id(m.weight) for m in student.modules() if isinstance(m, nn.Embedding)}
    trained = [p for p in student.parameters() if id(p) not in tables]
    flags = [p.requires_grad for p in student.parameters()]
    for parameter in student.parameters():
        parameter.requires_grad_(id(parameter) not in tables)
    optimizer = torch.optim.Adam(trained, lr=learning_rate)
    xt, yt = torch.as_tensor(x_train), targets(task, y_train)
    xv, yv = torch.as_tensor(x_val), targets(task, y_val)
    best_loss, best_state = _val_loss(student, task, xv, yv), copy.deepcopy(student.state_dict())
    for _ in range(epochs):
        student.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss: Any = _loss(student, task, xt[batch], yt[batch], None if teacher is None else teacher[batch], distill)
            loss.backward()
            optimizer.step()
        val_loss = _val_loss(student, task, xv, yv)
        if val_loss < best_loss - 1e-6:
            best_loss, best_state = val_loss, copy.deepcopy(student.state_dict())
    student.load_state_dict(best_state)
    for parameter, flag in zip(student.parameters(), flags, strict=True):
        parameter.requires_grad_(flag)
    student.eval()


def _loss(student: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None,
          distill: Distill) -> torch.Tensor:
    if distill == "embeddings" and teacher is not None:
        return (1 - nn.functional.cosine_similarity(_embed(student)(x), teacher, dim=1)).mean()
    out = student(x)
    loss = task_loss(task)(out, y)
    if distill != "logits" or teacher is None:
        return loss  # type: ignore[no-any-return]
    if task == "classification":
        soft = nn.functional.kl_div(nn.functional.log_softmax(out / TEMPERATURE, dim=1),
                                    nn.functional.softmax(teacher / TEMPERATURE, dim=1),
                                    reduction="batchmean") * TEMPERATURE ** 2
    else:
        soft = nn.functional.mse_loss(out, teacher)
    return 0.5 * loss + 0.5 * soft  # type: ignore[no-any-return]


@torch.no_grad()
def _val_loss(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(task_loss(task)(model(x), y))


def _embed(model: nn.Module) -> Any:
    embed = getattr(model, "embed", None)
    if not callable(embed):
        raise TypeError(f"{type(model).__name__} has no embed(x) method: pruning with distill='embeddings' "
                        "needs one (the embeddings the trained head reads)")
    return embed
