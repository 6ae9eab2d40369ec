"""The pixel oracle: judges from an image alone whether it matches a shapes-world caption.

Robust to what generated images look like (soft edges, colours off by some levels, noise, JPEG):
- the background is the median of the image border, snapped to the nearest background colour;
- object pixels are the chromatic ones (backgrounds are gray), labelled by nearest palette *hue*,
  which blending with a gray background does not change;
- each colour's connected blobs (>= _MIN_AREA px) are objects; a blob's position is the anchor
  nearest its box centre, its shape the template that best explains its coverage map.
Pure numpy/PIL, no torch.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .world import ANCHORS, BACKGROUNDS, COLORS, POSITIONS, SHAPES, SUPERSAMPLE, draw_shape, parse_caption


_CANON = 64  # the oracle works at 64 px; other sizes are resized first
_CHROMA_MIN = 60  # object pixels: max-min channel spread; gray backgrounds + noise stay below
_MIN_AREA = 40  # px at 64 px; a triangle is ~184 px, fringes and specks are smaller


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees [0, 360) of float RGB pixels (..., 3)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return (h * 60.0) % 360.0


_PALETTE_HUES = _hue(np.array(list(COLORS.values()), dtype=np.float64))


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a boolean mask, as arrays of (y, x) pixel coordinates."""
    seen = np.zeros_like(mask)
    h, w = mask.shape
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        stack, pts = [(y0, x0)], []
        while stack:
            y, x = stack.pop()
            pts.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
        comps.append(np.array(pts))
    return comps


def _template(shape: str, x0: float, y0: float, x1: float, y1: float, h: int, w: int) -> np.ndarray:
    """Coverage in [0, 1] (h, w) of `shape` inscribed in the box [x0, x1) x [y0, y1) (pixel units)."""
    s = SUPERSAMPLE
    img = Image.new("L", (w * s, h * s), 0)
    draw_shape(ImageDraw.Draw(img), shape, (x0 + x1) / 2 * s - 0.5, (y0 + y1) / 2 * s - 0.5,
               (y1 - y0) / 2 * s, 255, sx=(x1 - x0) / 2 * s)
    return np.asarray(img.resize((w, h), Image.Resampling.BOX), np.float64) / 255.0


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edges replicated)."""
    if sigma <= 0:
        return a
    k = np.exp(-np.arange(-3, 4) ** 2 / (2 * sigma**2))
    k /= k.sum()
    for axis in (0, 1):
        p = np.pad(a, [(3, 3) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge")
        n = a.shape[axis]
        a = sum(k[i] * (p[i:i + n] if axis == 0 else p[:, i:i + n]) for i in range(7))
    return a


def _classify_shape(cov: np.ndarray, mask: np.ndarray) -> tuple[str, float]:
    """Shape whose template best explains the blob's coverage map (least squares).

    Templates are fitted to the bounding box of the blob's mask (also one pixel larger or
    smaller: blur shrinks thresholded corners, ringing grows them) and blurred with a few
    widths, so a soft triangle matches a soft triangle better than a circle.
    Returns (shape, fit): fit = 1 - residual energy / blob energy, 1 for a perfect match.
    """
    h, w = cov.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    energy = max(float((cov**2).sum()), 1e-6)
    best = ("", -np.inf)
    for shape in SHAPES:
        for grow in (-1.0, 0.0, 1.0):
            t0 = _template(shape, x0 - grow, y0 - grow, x1 + grow, y1 + grow, h, w)
            for sigma in (0.0, 0.8, 1.5):
                fit = 1 - float(((cov - _blur(t0, sigma)) ** 2).sum()) / energy
                best = max(best, (shape, fit), key=lambda b: b[1])
    return best


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by `steps` pixels (8-neighbourhood)."""
    for _ in range(steps):
        m = mask.copy()
        m[1:] |= mask[:-1]
        m[:-1] |= mask[1:]
        m[:, 1:] |= m[:, :-1].copy()
        m[:, :-1] |= m[:, 1:].copy()
        mask = m
    return mask


def _grow(seed: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The seed plus every `allowed` pixel 8-connected to it through allowed pixels."""
    mask = seed
    while True:
        m = mask | (_dilate(mask, 1) & allowed)
        if (m == mask).all():
            return mask
        mask = m


def _as_canonical(image) -> np.ndarray:
    img = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    if img.size != (_CANON, _CANON):
        img = img.resize((_CANON, _CANON), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def detect(image) -> dict:
    """What the pixels show: background name and a list of objects (colour, shape, position)."""
    px = _as_canonical(image)
    h, w, _ = px.shape
    border = np.concatenate([px[:2].reshape(-1, 3), px[-2:].reshape(-1, 3),
                             px[:, :2].reshape(-1, 3), px[:, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)
    bg = min(BACKGROUNDS, key=lambda k: np.sum((np.array(BACKGROUNDS[k]) - bg_rgb) ** 2))
    chromatic = (px.max(-1) - px.min(-1)) > _CHROMA_MIN
    d = np.abs(_hue(px)[..., None] - _PALETTE_HUES)
    cls = np.minimum(d, 360 - d).argmin(-1)  # nearest palette hue, on the circle
    dist = np.linalg.norm(px - bg_rgb, axis=-1)
    objects = []
    for k, color in enumerate(COLORS):
        others = chromatic & (cls != k)
        reach = np.linalg.norm(np.array(COLORS[color]) - bg_rgb)
        for pts in _components(chromatic & (cls == k)):
            if len(pts) < _MIN_AREA:
                continue
            # The hue mask loses thin parts where colour is smeared (JPEG stores chroma at half
            # resolution); luminance is not. So the shape is judged on the region connected to
            # the blob of pixels that differ from the background by >= 45% of this colour's
            # contrast, minus those that clearly belong to an object of another colour.
            core = np.zeros((h, w), bool)
            core[pts[:, 0], pts[:, 1]] = True
            mask = _grow(core, (dist > 0.45 * reach) & ~others)
            # Coverage: how far each pixel is from the background towards the blob's own colour.
            vec = np.median(px[core], axis=0) - bg_rgb
            cov = np.clip((px - bg_rgb) @ vec / max(vec @ vec, 1e-6), 0, 1)
            cov[others | ~_dilate(mask, 3)] = 0  # keep neighbours' fringes out
            ys, xs = np.nonzero(mask)
            cx, cy = (xs.min() + xs.max() + 1) / 2 / w, (ys.min() + ys.max() + 1) / 2 / h  # box
            # centre (a triangle's centroid sits low), as a fraction of the side
            pos = min(POSITIONS, key=lambda p: (ANCHORS[p][0] - cx) ** 2 + (ANCHORS[p][1] - cy) ** 2)
            shape, fit = _classify_shape(cov, mask)
            objects.append({"color": color, "shape": shape, "position": pos, "area": int(len(pts)),
                            "fit": round(fit, 3), "center": (round(float(cx), 3), round(float(cy), 3))})
    return {"background": bg, "objects": objects}


def check(image: np.ndarray, caption: str, seen: dict | None = None) -> dict:
    """Whether an image (uint8 HxWx3) matches a caption, attribute by attribute.

    Keys: parsed, background, count (as many objects as described), color / shape / position
    (every described object has a blob of its colour, and the blob of that colour nearest the
    described place has the right shape / position; where the caption names no place, any blob of
    that colour may have the shape, and position is right), objects (those flags per object, in the
    scene's order) and all (everything right). `detected` is what `detect` saw.
    """
    scene = parse_caption(caption)
    if scene is None:
        return {"parsed": False, "background": False, "count": False, "color": False,
                "shape": False, "position": False, "objects": [], "all": False}
    seen = detect(image) if seen is None else seen  # `seen`: detect(image), when the caller has it
    per_obj = []
    for o in scene.objects:
        same = [d for d in seen["objects"] if d["color"] == o.color]
        if not same:
            per_obj.append({"color": False, "shape": False, "position": False})
            continue
        if o.position is None:  # the caption leaves the place open: any blob of the colour
            per_obj.append({"color": True, "shape": any(d["shape"] == o.shape for d in same), "position": True})
            continue
        ax, ay = ANCHORS[o.position]
        d = min(same, key=lambda d: (d["center"][0] - ax) ** 2 + (d["center"][1] - ay) ** 2)
        per_obj.append({"color": True, "shape": d["shape"] == o.shape, "position": d["position"] == o.position})
    out = {"parsed": True, "background": seen["background"] == scene.background,
           "count": len(seen["objects"]) == len(scene.objects),
           **{k: all(p[k] for p in per_obj) for k in ("color", "shape", "position")},
           "objects": per_obj, "detected": seen}
    out["all"] = all(out[k] for k in ("background", "count", "color", "shape", "position"))
    return out
