"""Tests of dcnviz.importers (peer-library files) and its pickle reader."""
