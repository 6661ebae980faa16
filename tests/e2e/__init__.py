"""The whole product: a real browser, a fresh install, the notebook and README example, benchmarks."""
