"""Models: one parser for model references (ref.py), the built-in tiny models (builtin.py),
cheap availability preflights (preflight.py), what configs say without loading weights (context.py:
text contexts, CLIP embedding sizes), and loading diffusers pipelines, open_clip models (loading.py)
and caption tokenizers (tokenizer.py). Heavy libraries are imported inside functions."""
