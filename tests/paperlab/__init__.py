"""Tests of dcnviz.paperlab: the synthetic studies of §6 and Table 6 (§7.3)."""
