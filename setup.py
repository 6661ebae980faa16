"""Packaging: metadata is in pyproject.toml; this adds the data the wheel carries.

The wheel carries copies of the repository's top-level ``models/`` (demo models), ``sample_data/``
(the synthetic sample) and ``.streamlit/config.toml`` (the app's settings) as package data under
``dcnviz/_bundled/``. They are mapped at build time, so git holds each file once and ``pip install .``
gives a dcnviz whose ``dcnviz app`` and ``--data sample`` work with no checkout
(:mod:`dcnviz.resources` finds them in a checkout or in the installed package).
"""

from setuptools import find_packages, setup

BUNDLED = {
    "dcnviz._bundled.models": "models",
    "dcnviz._bundled.sample_data": "sample_data",
    "dcnviz._bundled.streamlit": ".streamlit",
}

setup(
    packages=[*find_packages(include=["dcnviz", "dcnviz.*"]), *BUNDLED],
    package_dir=BUNDLED,
    package_data={
        "dcnviz._bundled.models": ["*.safetensors"],
        "dcnviz._bundled.sample_data": ["*.dat", "*.csv", "*.json", "*.md"],
        "dcnviz._bundled.streamlit": ["config.toml"],
    },
)
