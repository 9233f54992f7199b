"""Text normalization and hashing.

Deduplication and the embedding cache both key on the hash of the *normalized* text, so two
comments that differ only in width, case-insensitive whitespace or invisible characters share
one vector. The normalization is versioned: changing it changes ``NORMALIZATION_VERSION``, which
is part of the model key, so old vectors are never served for texts normalized differently.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

NORMALIZATION_VERSION = 1

# Invisible characters that change bytes but not meaning: zero-width space/joiners, word joiner,
# BOM, soft hyphen, and bidi marks/embeddings/isolates (which users paste from RTL sources).
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# C0/C1 control characters other than whitespace become spaces so words around them stay apart.
_CONTROL = re.compile("[\u0000-\u0008\u000e-\u001f\u007f-\u009f]")
# Lone surrogates cannot be encoded as UTF-8; they only arrive through lenient decoders.
_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, drop invisible characters, collapse whitespace, strip.

    NFKC folds full-width ASCII (`ＡＢＣ１２３`) and the ideographic space into their plain forms, which
    is what makes ``"Great  product"`` and ``"Ｇｒｅａｔ　product"`` one text. Case is kept: the model
    sees case, and folding it would merge texts the model embeds differently.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _SURROGATE.sub("\ufffd", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()


def text_hash(normalized: str) -> str:
    """128-bit BLAKE2b of the UTF-8 bytes, as 32 hex characters.

    128 bits keeps collisions out of reach at any realistic corpus size (unlike the seed's use of
    truncated keys) while staying short enough for Redis keys and DuckDB joins.
    """
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).hexdigest()
