"""The package's version, in the base layer so that any module can name it (the lock records it);
pyproject.toml reads it from here ([tool.hatch.version])."""

__version__ = "0.1.0"
