"""synthvlm-builder: reproducible synthetic image-caption datasets (SynthVLM) as Hugging Face datasets."""

__version__ = "0.1.0"
