"""The identity of a vector: which model, at which dimension, with which instruction and text
normalization produced it. Every cache tier keys on it, so vectors from one configuration are
never served for another (the seed's MD5-of-text keys collided across tasks)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ModelKey:
    model: str
    dimensions: int
    instruction: str | None
    normalization_version: int

    @property
    def id(self) -> str:
        """Readable prefix plus a digest of every field, safe in Redis keys and SQL values."""
        digest = hashlib.sha256(
            json.dumps(asdict(self), sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:16]
        model = _SAFE.sub("_", self.model.rsplit("/", 1)[-1])[:40]
        return f"{model}-d{self.dimensions}-n{self.normalization_version}-{digest}"

    def as_dict(self) -> dict:
        return {**asdict(self), "id": self.id}
