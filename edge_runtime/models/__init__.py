"""Model bundles shipped with the gateway runtime (``default``: the int8 Lead-I MI student)."""
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package (trained on the PTB-XL subset)."""
    return MODELS_DIR / "default"


def shipped_names() -> list:
    """Names of the bundles shipped inside the package (``default`` for gateways, ``micro`` for MCUs)."""
    return sorted(p.parent.name for p in MODELS_DIR.glob("*/card.json"))


def resolve_bundle(name_or_path) -> Path:
    """``--model`` value -> bundle directory: a path when it exists, else a shipped bundle's name
    (``default``, ``micro``); None -> ``default``."""
    if name_or_path is None:
        return default_bundle_dir()
    p = Path(name_or_path)
    if p.exists() or "/" in str(name_or_path) or str(name_or_path).startswith("."):
        return p
    if (MODELS_DIR / str(name_or_path) / "card.json").is_file():
        return MODELS_DIR / str(name_or_path)
    return p  # let the loader say what is missing, naming the path


__all__ = ["MODELS_DIR", "default_bundle_dir", "shipped_names", "resolve_bundle"]
