"""twistd plugin: ``twistd -n mailnet [--config FILE]`` (the maker lives in mailnet.tap)."""

from mailnet.tap import serviceMaker

__all__ = ["serviceMaker"]
