"""dcnviz: see which feature crosses a DCN-V2 model learned, and how low-rank its cross layers are."""

__version__ = "0.1.0"
