"""Nine real PTB-XL test-fold records shipped with the package (CC BY 4.0; see ptbxl/README.md).

``BUNDLED_PTBXL`` is the folder, in the official PTB-XL layout, that the data layer, the demo and the
virtual device fall back to when no PTB-XL download is configured.
"""
from pathlib import Path

BUNDLED_PTBXL = Path(__file__).resolve().parent / "ptbxl"

__all__ = ["BUNDLED_PTBXL"]
