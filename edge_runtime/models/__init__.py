"""Model bundles shipped with the gateway runtime (``default``: the int8 Lead-I MI student)."""
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package (trained on the PTB-XL subset)."""
    return MODELS_DIR / "default"


__all__ = ["MODELS_DIR", "default_bundle_dir"]
