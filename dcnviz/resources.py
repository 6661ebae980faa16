"""Where dcnviz's shipped files are: the demo models, the synthetic sample and the app's Streamlit settings.

In a checkout they are the repository's top-level ``models/``, ``sample_data/`` and
``.streamlit/config.toml``. A wheel (``pip install .``) carries copies of them under
``dcnviz/_bundled/`` (``setup.py`` maps the folders at build time, so git holds each file once); the
installed copy wins when it is there, so an installed dcnviz never picks up an unrelated ``models/``
folder next to ``site-packages``.

>>> MODELS_DIR.name, SAMPLE_DIR.name, STREAMLIT_CONFIG.name
('models', 'sample_data', 'config.toml')
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent  # the repository root when dcnviz runs from a checkout
BUNDLED_DIR = PACKAGE_DIR / "_bundled"  # only in an installed wheel


def _shipped(bundled: str, checkout: str) -> Path:
    installed = BUNDLED_DIR / bundled
    return installed if installed.exists() else CHECKOUT_DIR / checkout


MODELS_DIR = _shipped("models", "models")  # demo models (*.safetensors)
SAMPLE_DIR = _shipped("sample_data", "sample_data")  # the synthetic MovieLens-format sample
STREAMLIT_CONFIG = _shipped("streamlit/config.toml", ".streamlit/config.toml")  # the app's Streamlit settings
