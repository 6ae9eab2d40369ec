"""The card's two pictures, drawn with Pillow alone (a plotting library would cost more start-up than
the rest of the card): a histogram per score column, and the best and the worst selected rows side by
side, each image with its caption and scores under it.

Text uses the TrueType font Pillow ships inside its own package (`ImageFont.load_default(size=...)`,
Aileron, Pillow >= 10.1), never a system font, so the pictures are the same on every machine.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


GREY, BLUE, RED, INK, MUTED = (190, 190, 190), (59, 117, 175), (200, 60, 50), (20, 20, 20), (95, 95, 95)
PER_SIDE_COLS, PER_SIDE_ROWS = 2, 4
CELL, PAD, CAPTION_LINES, LINE_H = 220, 10, 3, 17
CELL_H = CELL + 20 + LINE_H * CAPTION_LINES + 34  # image, caption lines, two score lines


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _ticks(lo: float, hi: float) -> list[float]:
    return [lo + f * (hi - lo) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]


def bin_edges(lo: float, hi: float, bins: int, cut: float | None = None) -> np.ndarray:
    """`bins` equal bins over [lo, hi]; with a cut-off inside, shifted (one bin more) so that the cut-off
    is an edge: a bar then holds candidates on one side of it only, never both."""
    if cut is None or not lo < cut <= hi:
        return np.linspace(lo, hi, bins + 1)
    width = (hi - lo) / bins
    below, above = int(np.ceil((cut - lo) / width - 1e-9)), int(np.ceil((hi - cut) / width - 1e-9))
    return cut + width * np.arange(-below, max(above, 1) + 1)


def plot_histograms(path: Path, all_scores: dict, selected: dict, docs: dict, bins: int = 40) -> None:
    """One panel per score column (the keys of `selected`, rows.scores order): every candidate in grey,
    the selected rows in blue over them, and on the selection score the cut-off (the lowest selected
    value) in red. `docs`: column name -> what it is (stages/rows.py Column.doc)."""
    names = list(selected)
    width, panel_h, left, right, top = 760, 210, 64, 20, 48
    small, normal = font(12), font(14)
    im = Image.new("RGB", (width, top + panel_h * len(names)), "white")
    draw = ImageDraw.Draw(im)
    n_all, n_sel = len(next(iter(all_scores.values()))), len(next(iter(selected.values())))
    draw.rectangle([left, 16, left + 12, 28], fill=GREY)
    draw.text((left + 18, 22), f"all candidates ({n_all:,})", fill=INK, font=normal, anchor="lm")
    draw.rectangle([left + 220, 16, left + 232, 28], fill=BLUE)
    draw.text((left + 238, 22), f"selected ({n_sel:,})", fill=INK, font=normal, anchor="lm")
    for p, name in enumerate(names):
        values, chosen = np.asarray(all_scores[name], float), np.asarray(selected[name], float)
        values = values[np.isfinite(values)]
        y0 = top + p * panel_h
        plot_top, plot_h, plot_w = y0 + 26, panel_h - 70, width - left - right
        draw.text((left, y0 + 4), name, fill=INK, font=font(15))
        draw.text((left + normal.getlength(name) + 14, y0 + 6), docs.get(name, ""), fill=MUTED, font=small)
        lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1e-3
        cut = float(chosen.min()) if name == "score" and len(chosen) else None  # the selection's cut-off
        edges = bin_edges(lo, hi, bins, cut)
        lo, hi = float(edges[0]), float(edges[-1])
        counts_all, _ = np.histogram(values, bins=edges)
        counts_sel, _ = np.histogram(chosen, bins=edges)
        peak = max(1, int(counts_all.max(initial=0)))
        bar_w = plot_w / (len(edges) - 1)
        for counts, colour in ((counts_all, GREY), (counts_sel, BLUE)):
            for i, n in enumerate(counts):
                if n:
                    x = left + i * bar_w
                    draw.rectangle([x, plot_top + plot_h * (1 - n / peak), x + bar_w - 1, plot_top + plot_h],
                                   fill=colour)
        bottom = plot_top + plot_h
        draw.line([left, plot_top, left, bottom, left + plot_w, bottom], fill=INK)
        for frac, value in zip((0.0, 0.25, 0.5, 0.75, 1.0), _ticks(lo, hi)):
            x = left + frac * plot_w
            draw.line([x, bottom, x, bottom + 4], fill=INK)
            draw.text((x, bottom + 6), f"{value:.3f}", fill=INK, font=small, anchor="ma")
        for count in sorted({round(f * peak) for f in (0.0, 0.25, 0.5, 0.75, 1.0)}):  # whole counts, at their height
            y = plot_top + plot_h * (1 - count / peak)
            draw.line([left - 4, y, left, y], fill=INK)
            draw.text((left - 7, y), f"{count:,}", fill=INK, font=small, anchor="rm")
        if cut is not None:
            x = left + (cut - lo) / (hi - lo) * plot_w
            for y in range(int(plot_top), int(bottom), 8):  # dashed
                draw.line([x, y, x, min(y + 4, bottom)], fill=RED, width=2)
            draw.text((min(x + 4, left + plot_w - 120), plot_top + 2), f"cut-off {cut:.3f}", fill=RED, font=small)
    im.save(path, format="PNG")


def wrap(text: str, fnt, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; the last line ends with an ellipsis when text is left over."""
    words, lines, line = " ".join(text.split()).split(" "), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if fnt.getlength(trial) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        line = word
        while fnt.getlength(line) > width:  # a word longer than the line: break it
            cut = next((i for i in range(len(line), 0, -1) if fnt.getlength(line[:i]) <= width), 1)
            lines.append(line[:cut])
            line = line[cut:]
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and fnt.getlength(last + "…") > width:
            last = last[:-1].rstrip()
        lines = lines[:max_lines - 1] + [last + "…"]
    return lines


def _cell(row: dict, rank: int, total: int, scores: tuple) -> Image.Image:
    cap_font, score_font, rank_font = font(13), font(12), font(12)
    inner = CELL - 2 * PAD
    lines = wrap(row["caption"], cap_font, inner, CAPTION_LINES)
    im = Image.new("RGB", (CELL, CELL_H), "white")
    draw = ImageDraw.Draw(im)
    thumb = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
    scale = inner / max(thumb.size)  # small images are enlarged too: every cell shows the same size
    # Enlarged 2x or more, each pixel becomes a block (what the image holds, not a resampler's guess).
    thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))),
                         Image.NEAREST if scale >= 2 else Image.LANCZOS)
    x0, y0 = PAD + (inner - thumb.width) // 2, PAD + (inner - thumb.height) // 2
    im.paste(thumb, (x0, y0))
    label = f"#{rank} of {total:,}"
    draw.rectangle([x0, y0, x0 + rank_font.getlength(label) + 8, y0 + 18], fill=(0, 0, 0))
    draw.text((x0 + 4, y0 + 9), label, fill="white", font=rank_font, anchor="lm")
    y = PAD + inner + 6
    for line in lines:
        draw.text((PAD, y), line, fill=INK, font=cap_font)
        y += LINE_H
    y = PAD + inner + 6 + LINE_H * CAPTION_LINES + 4
    scores = [name for name in scores if name in row]
    main, rest = "score", [n for n in scores if n != "score"]  # the selection score, then the others
    draw.text((PAD, y), f"{main} {row[main]:.3f}", fill=BLUE, font=score_font)
    draw.text((PAD, y + 15), "  ".join(f"{n} {row[n]:.3f}" for n in rest), fill=MUTED, font=score_font)
    return im


def sample_grid(path: Path, best: list[dict], worst: list[dict], total: int, scores: tuple) -> None:
    """`best`: the top selected rows, best first; `worst`: the lowest selected rows, worst last; `scores`:
    the score columns shown under each (stages/rows.py scores)."""
    per_side = PER_SIDE_COLS * PER_SIDE_ROWS
    best, worst = best[:per_side], worst[-per_side:]
    rows = max(1, -(-max(len(best), len(worst)) // PER_SIDE_COLS))
    cell_h = CELL_H
    side_w, gap, header = PER_SIDE_COLS * CELL, 24, 40
    im = Image.new("RGB", (2 * side_w + gap, header + rows * cell_h), "white")
    draw = ImageDraw.Draw(im)
    title = font(16)
    draw.text((PAD, 12), f"Best selected (highest score, #1-#{len(best)})", fill=INK, font=title)
    if worst:
        draw.text((side_w + gap + PAD, 12), f"Worst selected (lowest score, the margin: #{total - len(worst) + 1}"
                  f"-#{total})", fill=INK, font=title)
    draw.line([side_w + gap // 2, 8, side_w + gap // 2, im.height - 8], fill=GREY, width=2)
    for side, (items, first_rank) in enumerate(((best, 1), (worst, total - len(worst) + 1))):
        for i, row in enumerate(items):
            x = side * (side_w + gap) + (i % PER_SIDE_COLS) * CELL
            im.paste(_cell(row, first_rank + i, total, scores), (x, header + (i // PER_SIDE_COLS) * cell_h))
    im.save(path, format="PNG")

