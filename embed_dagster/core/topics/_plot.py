"""Shared plotting plumbing: a CJK-capable font from a wheel, and small PNGs for Dagster metadata.

The font is Noto Sans CJK (OFL) from the ``noto-cjk-sans-otc`` wheel, a dependency of this package,
so Chinese keywords render the same on every machine, with or without system CJK fonts; nothing is
downloaded at run time. matplotlib (>= 3.11) registers every face of the ``.ttc`` collection; the
Simplified Chinese face comes first, then DejaVu Sans (matplotlib's own) for anything else.
"""

from __future__ import annotations

import functools
import io

FONT_FAMILY = ["Noto Sans CJK SC", "DejaVu Sans"]
_registered = False


def ensure_font() -> list[str]:
    """Register the bundled CJK font with matplotlib once per process; return the family list."""
    global _registered
    if not _registered:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import font_manager
        from noto_cjk_sans_otc import FONT_PATH

        font_manager.fontManager.addfont(str(FONT_PATH))
        _registered = True
    return FONT_FAMILY


def with_cjk_font(render):
    """Run a renderer with the bundled CJK font first in matplotlib's family list (per-glyph
    fallback to DejaVu Sans), without touching the caller's global rcParams."""

    @functools.wraps(render)
    def wrapper(*args, **kwargs):
        ensure_font()
        import matplotlib

        with matplotlib.rc_context({"font.family": FONT_FAMILY}):
            return render(*args, **kwargs)

    return wrapper


def figure(width_px: int, height_px: int, dpi: int = 100):
    ensure_font()
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)


def to_small_png(fig, dpi: int = 100, colors: int = 64) -> bytes:
    """Palette-quantized PNG: metadata lives in Dagster's event log, so tens of KB, not hundreds."""
    from PIL import Image

    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=dpi)
    image = Image.open(raw).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=0)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
