"""dcnviz's tests, laid out like the package (a package itself: `python -m tests.test_modelfile_fuzz`)."""
