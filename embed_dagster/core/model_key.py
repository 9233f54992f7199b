"""The identity of a vector: which model, at which dimension, with which instruction and text
normalization produced it. Every cache tier keys on it, so vectors from one configuration are
never served for another (the seed's MD5-of-text keys collided across tasks)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


DEFAULT_MAX_CHARS = 2000  # the embedders' default cut; texts longer than this are sent cut


@dataclass(frozen=True)
class ModelKey:
    model: str
    dimensions: int
    instruction: str | None
    normalization_version: int
    # where texts are cut before embedding: a long text cut elsewhere is another vector. None is
    # the default cut, left out of the digest so keys made before this field existed stay valid.
    max_chars: int | None = None

    @property
    def id(self) -> str:
        """Readable prefix plus a digest of every field, safe in Redis keys and SQL values."""
        fields = asdict(self)
        if fields["max_chars"] in (None, DEFAULT_MAX_CHARS):
            del fields["max_chars"]
        digest = hashlib.sha256(
            json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:16]
        model = _SAFE.sub("_", self.model.rsplit("/", 1)[-1])[:40]
        return f"{model}-d{self.dimensions}-n{self.normalization_version}-{digest}"

    def as_dict(self) -> dict:
        return {**asdict(self), "id": self.id}
