"""What every architecture config (TransformerConfig, LSTMConfig, RNNConfig) shares: plain-dict round trips."""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

C = TypeVar("C", bound="DictConfig")


class DictConfig:
    """A dataclass config that writes itself as a dict and reads one back, ignoring keys it does not have."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], d: dict) -> C:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
