"""Both sides' distributions of a score column in one PNG, drawn with Pillow as the card's plots are
(release/cardplots.py: its bundled font, so the picture is the same on every machine).

Old in orange and new in blue, as outlined histograms over the same bins, each filled at low opacity
so where they overlap stays visible; a dashed line at each side's mean.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from ..release.cardplots import INK, MUTED, font

OLD, NEW = (222, 120, 30), (40, 100, 200)
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 260, 64, 20, 54, 40
BINS = 30


def _legend(draw: ImageDraw.ImageDraw, x: int, colour, label: str, fnt) -> int:
    draw.rectangle([x, 30, x + 12, 42], outline=colour, width=2, fill=colour + (60,))
    draw.text((x + 18, 36), label, fill=INK, font=fnt, anchor="lm")
    return x + 30 + int(fnt.getlength(label))


def overlaid_histogram(name: str, old, new, doc: str = "") -> bytes:
    """The PNG (bytes) of `name`'s values on both sides; `doc` says what the column is."""
    a = np.asarray(old, np.float64)
    b = np.asarray(new, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    both = np.concatenate([a, b])
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-3
    edges = np.linspace(lo, hi, BINS + 1)
    # Shares of each side (not counts): sides of other sizes stay comparable.
    shares = [np.histogram(v, bins=edges)[0] / max(1, len(v)) for v in (a, b)]
    peak = max(1e-9, float(max(s.max(initial=0) for s in shares)))

    im = Image.new("RGBA", (WIDTH, HEIGHT), "white")
    small, normal = font(12), font(14)
    text = ImageDraw.Draw(im)
    text.text((LEFT, 6), name, fill=INK, font=font(15))
    text.text((LEFT + normal.getlength(name) + 14, 8), doc, fill=MUTED, font=small)
    x = _legend(text, LEFT, OLD, f"old ({len(a):,} rows, mean {a.mean():.4f})" if len(a) else "old (none)", normal)
    _legend(text, x, NEW, f"new ({len(b):,} rows, mean {b.mean():.4f})" if len(b) else "new (none)", normal)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    bar = plot_w / BINS
    for share, colour in zip(shares, (OLD, NEW)):  # a layer each: where the bars overlap, both show
        layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for i, s in enumerate(share):
            if s:
                x0 = LEFT + i * bar
                draw.rectangle([x0, bottom - plot_h * s / peak, x0 + bar - 1, bottom], fill=colour + (70,),
                               outline=colour + (255,), width=2)
        im = Image.alpha_composite(im, layer)
    draw = ImageDraw.Draw(im)
    for values, colour in ((a, OLD), (b, NEW)):
        if len(values):
            mx = LEFT + (float(values.mean()) - lo) / (hi - lo) * plot_w
            for y in range(TOP, bottom, 8):
                draw.line([mx, y, mx, min(y + 4, bottom)], fill=colour, width=2)
    draw.line([LEFT, TOP, LEFT, bottom, LEFT + plot_w, bottom], fill=INK)
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = LEFT + frac * plot_w
        draw.line([x, bottom, x, bottom + 4], fill=INK)
        draw.text((x, bottom + 6), f"{lo + frac * (hi - lo):.3f}", fill=INK, font=small, anchor="ma")
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * plot_h
        draw.line([LEFT - 4, y, LEFT, y], fill=INK)
        draw.text((LEFT - 7, y), f"{frac * peak:.0%}", fill=INK, font=small, anchor="rm")
    out = io.BytesIO()
    im.convert("RGB").save(out, format="PNG")
    return out.getvalue()
