"""artgen: CLIP-guided VQGAN art generation as a library, a job service, a CLI and a web page."""

__version__ = "0.1.0"
