"""The per-image stages: generate (one torch.Generator per image), score (CLIP, SSIM), select,
format (conversations, image encoding), and the row schema every stage writes (rows.py)."""
