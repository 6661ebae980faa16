"""The Paper lab: the DCN-V2 paper's synthetic studies (§6) and its MovieLens comparison (§7.3).

Public API (the app's Paper lab page and ``python -m dcnviz paper`` call these):

* :mod:`~dcnviz.paperlab.tasks`: ``build_task(name, seed=, d=) -> SyntheticTask`` (f1, f2, f3, order3,
  order4, combined) with ``sample(n, seed, split=)``, ``evaluate(x)`` and ``cross_matrix()``.
* :mod:`~dcnviz.paperlab.models`: ``build_regressor(model, d, layers, seed=)``, ``paper_param_count``.
* :mod:`~dcnviz.paperlab.fit`: ``FitConfig``, ``fit_regression(net, x, y, config, ...)``, ``rmse``.
* :mod:`~dcnviz.paperlab.synthetic`: ``run_synthetic(task, models, layers, runs, config=, callback=,
  should_stop=) -> list[SyntheticRow]``, ``run_experiment("table1" | "table2" | "fig4", runs, ...)``.
* :mod:`~dcnviz.paperlab.crosses`: ``true_cross_matrix(task)``, ``learned_cross_matrix(model)``.
* :mod:`~dcnviz.paperlab.reference`: ``PAPER_TABLE1``, ``PAPER_TABLE2``, ``PAPER_TABLE6``.
* :mod:`~dcnviz.paperlab.table6`: ``run_table6(...)`` (MovieLens, Table 6).

Submodules are imported on demand so that ``import dcnviz.paperlab`` stays cheap.
"""
