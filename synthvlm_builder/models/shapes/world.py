"""A procedural "shapes world": scenes, a renderer, a caption grammar and a pixel oracle.

Pure PIL/numpy (no torch) so the builder's checks can import it cheaply.

A scene is a plain background (white, black or gray) with one or two objects. An object has a
shape (circle, square, triangle), a colour and one of five fixed positions. Two objects always
differ in colour and position, which is what makes attribute binding ("the red one is the
circle, on the left") something a generator can get wrong. Most scenes have one object (see
random_scene): the tiny generator trained on 2 CPU cores in 30 min gets those right most of the
time, and the two-object scenes supply the binding errors that best-of-k selection catches.

Design choices that the oracle relies on:
- Backgrounds are achromatic and object colours saturated with hues >= 50 degrees apart, so
  antialiased or blurred edges (object colour mixed with gray) keep the object's hue: pixels are
  classified by hue, not by nearest RGB, and a red/white fringe never reads as purple.
- Every shape is inscribed in the same 2r x 2r box around its anchor (r = 0.15 * size), so the
  oracle can classify a blob's shape by matching it against the four templates fitted to the
  blob's bounding box. The models work at 32 px (IMAGE_SIZE; r = 4.8 px); the oracle judges any
  size (it resamples to 64 px).
- "cross" is still drawable (shape_polygon) but not in SHAPES: at 32 px after a 2x VAE a cross and
  a square came back alike, and a fourth shape cost the 30-minute generator accuracy.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
IMAGE_SIZE = 32  # the native resolution of the models trained on this world
COLORS = {  # hues: 0, 54, 129, 183, 234, 285 degrees
    "red": (220, 40, 40),
    "yellow": (230, 210, 30),
    "green": (40, 180, 60),
    "cyan": (20, 200, 210),
    "blue": (40, 60, 230),
    "purple": (170, 50, 210),
}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128)}
POSITIONS = ("top", "bottom", "left", "right", "center")
# Anchor of each position as a fraction of the image side (x, y).
ANCHORS = {"top": (0.5, 0.18), "bottom": (0.5, 0.82), "left": (0.18, 0.5),
           "right": (0.82, 0.5), "center": (0.5, 0.5)}
RADIUS = 0.15  # half the side of a shape's box, as a fraction of the image side
# Share of captions that leave the objects' positions out ("a red circle and a blue square on a
# white background"). Such a caption has many right images (any layout), so a generator has to
# use its noise: its candidates differ, and differ in where it errs (which object got which
# colour and shape). With positions always named, each caption has exactly one right image and
# the k candidates of a caption came out near-identical, leaving best-of-k nothing to choose.
P_NO_POSITION = 0.3
SUPERSAMPLE = 4  # render larger and box-downsample: antialiased edges like a real image (and oracle.py's templates)

# Caption phrasing. The first phrase of each position is the canonical one.
POSITION_PHRASES = {
    "top": ("at the top",),
    "bottom": ("at the bottom",),
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "center": ("in the center", "in the middle"),
}
_PHRASE_TO_POS = {p: pos for pos, phrases in POSITION_PHRASES.items() for p in phrases}
TEMPLATES_ONE = ("{o} on a {bg} background", "{o}, {bg} background",
                 "a {bg} background with {o}", "{o} against a {bg} background")
TEMPLATES_TWO = ("{o} and {p}, on a {bg} background", "{o} and {p} on a {bg} background",
                 "a {bg} background with {o} and {p}", "{o} and {p} against a {bg} background")
VOCAB = sorted({w for t in TEMPLATES_ONE + TEMPLATES_TWO for w in re.findall(r"[a-z]+|,", t)
                if w not in ("o", "p", "bg")}
               | set(SHAPES) | set(COLORS) | set(BACKGROUNDS)
               | {w for ps in POSITION_PHRASES.values() for p in ps for w in p.split()})


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    position: str


@dataclass(frozen=True)
class Scene:
    """A scene, or (from parse_caption) what a caption asks for: there an object's position is
    None when the caption leaves it out."""

    background: str
    objects: tuple[Obj, ...]  # sorted by position (POSITIONS order): a scene has one spelling

    def __post_init__(self):
        objs = tuple(sorted(self.objects, key=lambda o: (-1 if o.position is None else POSITIONS.index(o.position),
                                                         o.color)))
        object.__setattr__(self, "objects", objs)

    def key(self) -> str:
        return self.background + "|" + "|".join(f"{o.color} {o.shape} {o.position}" for o in self.objects)


def pick(rng, seq):
    """One element of seq; rng is a numpy Generator or a random.Random."""
    i = int(rng.integers(len(seq))) if hasattr(rng, "integers") else rng.randrange(len(seq))
    return seq[i]


def random_scene(rng, p_two: float = 0.4) -> Scene:
    """A uniformly random scene with two objects with probability p_two."""
    n = 2 if rng.random() < p_two else 1
    colors, positions = list(COLORS), list(POSITIONS)
    objs = []
    for _ in range(n):
        c, p = pick(rng, colors), pick(rng, positions)
        colors.remove(c)
        positions.remove(p)
        objs.append(Obj(pick(rng, SHAPES), c, p))
    return Scene(pick(rng, list(BACKGROUNDS)), tuple(objs))


def is_held_out(scene: Scene, fraction: int = 10) -> bool:
    """Deterministic split: 1/fraction of all scenes (by a stable hash) is never trained on."""
    return zlib.crc32(scene.key().encode()) % fraction == 0


def split_scene(rng, held_out: bool, p_two: float | None = None) -> Scene:
    """A random scene from one side of the split: training (held_out=False) or held out; p_two as in
    random_scene (None: its default)."""
    while True:
        s = random_scene(rng) if p_two is None else random_scene(rng, p_two)
        if is_held_out(s) == held_out:
            return s


def shape_polygon(shape: str, cx: float, cy: float, r: float, sx: float | None = None):
    """Outline of a shape inscribed in the box [cx-sx, cx+sx] x [cy-r, cy+r] (sx defaults to r).

    Returns ("ellipse", bbox) for circles and ("polygon", points) otherwise.
    """
    sx = r if sx is None else sx
    if shape == "circle":
        return "ellipse", (cx - sx, cy - r, cx + sx, cy + r)
    if shape == "square":
        return "polygon", [(cx - sx, cy - r), (cx + sx, cy - r), (cx + sx, cy + r), (cx - sx, cy + r)]
    if shape == "triangle":  # pointing up
        return "polygon", [(cx, cy - r), (cx + sx, cy + r), (cx - sx, cy + r)]
    if shape == "cross":  # a plus sign, arms 0.8 r thick
        a, b = 0.4 * sx, 0.4 * r
        return "polygon", [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - b), (cx + sx, cy - b),
                           (cx + sx, cy + b), (cx + a, cy + b), (cx + a, cy + r), (cx - a, cy + r),
                           (cx - a, cy + b), (cx - sx, cy + b), (cx - sx, cy - b), (cx - a, cy - b)]
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, r, fill, sx=None):
    """`shape` of radius `r` centred at (cx, cy) (`sx`: another horizontal radius), as render and
    oracle.py's templates draw it."""
    kind, geom = shape_polygon(shape, cx, cy, r, sx)
    (draw.ellipse if kind == "ellipse" else draw.polygon)(geom, fill=fill)


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """The scene as an RGB image, antialiased by supersampling."""
    big = size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        ax, ay = ANCHORS[o.position]
        # -0.5: pixel centres sit at i + 0.5, so this centres the shape on the anchor exactly
        draw_shape(draw, o.shape, ax * big - 0.5, ay * big - 0.5, RADIUS * big, COLORS[o.color])
    return img.resize((size, size), Image.Resampling.BOX)


def object_phrase(o: Obj, rng=None, positions: bool = True) -> str:
    if not positions or o.position is None:
        return f"a {o.color} {o.shape}"
    phrases = POSITION_PHRASES[o.position]
    return f"a {o.color} {o.shape} {phrases[0] if rng is None else pick(rng, phrases)}"


def caption(scene: Scene, rng=None, positions: bool | None = None) -> str:
    """A caption from the grammar; rng=None gives the canonical phrasing.

    positions: whether the caption names the objects' positions; None draws it from rng
    (False with probability P_NO_POSITION; always True without rng).
    """
    if positions is None:
        positions = rng is None or rng.random() >= P_NO_POSITION
    objs = list(scene.objects)
    if rng is not None and len(objs) == 2 and rng.random() < 0.5:
        objs.reverse()  # mention order is free
    phrases = [object_phrase(o, rng, positions) for o in objs]
    templates = TEMPLATES_ONE if len(objs) == 1 else TEMPLATES_TWO
    t = templates[0] if rng is None else pick(rng, templates)
    return t.format(o=phrases[0], p=phrases[-1], bg=scene.background)


_OBJ_RE = re.compile(r"\b(\w+)\s+(" + "|".join(SHAPES + ("cross",)) + r")\b(?:\s+("
                     + "|".join(sorted(_PHRASE_TO_POS, key=len, reverse=True)) + r")\b)?")
_BG_RE = re.compile(r"\b(\w+)\s+background\b")


def parse_caption(text: str) -> Scene | None:
    """The scene a caption describes (positions None where it names none), or None when the
    caption is not in the grammar's language."""
    text = " ".join(text.lower().replace(",", " , ").split())
    bgs = _BG_RE.findall(text)
    objs = [Obj(s, c, _PHRASE_TO_POS[p] if p else None) for c, s, p in _OBJ_RE.findall(text)]
    if len(bgs) != 1 or bgs[0] not in BACKGROUNDS or not 1 <= len(objs) <= 2:
        return None
    if any(o.shape not in SHAPES or o.color not in COLORS for o in objs):
        return None
    named = [o.position for o in objs if o.position is not None]
    if len({o.color for o in objs}) != len(objs) or len(set(named)) != len(named):
        return None
    if len({o.position is None for o in objs}) > 1:  # the grammar names all positions or none
        return None
    return Scene(bgs[0], tuple(objs))


def check(image: np.ndarray, caption: str) -> dict:
    """Whether an image (uint8 HxWx3) matches a caption, judged from the pixels (see oracle.py)."""
    from .oracle import check as _check  # deferred: oracle.py builds on this module

    return _check(image, caption)


def detect(image: np.ndarray) -> dict:
    """What the pixels show: background and objects (colour, shape, position); see oracle.py."""
    from .oracle import detect as _detect

    return _detect(image)
