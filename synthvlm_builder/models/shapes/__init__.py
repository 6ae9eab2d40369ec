"""The shapes world and the built-in models trained on it (`builtin:shapes-sd`, `builtin:shapes-clip`).

- world.py: scenes, the PIL renderer, the caption grammar; oracle.py: the pixel oracle that checks an
  image against a caption; negatives.py: scenes one attribute or binding away (no torch in these three).
- nets.py (architectures), tokenizer.py (a word-level CLIP BPE tokenizer), data.py, train_sd.py,
  train_clip.py and train.py (`python -m synthvlm_builder.models.shapes.train --out DIR`): the seeded
  training that made weights/.
- weights/shapes-sd (a diffusers pipeline folder) and weights/shapes-clip (an open_clip model folder):
  what models/builtin.py serves for the two builtin names.
"""
