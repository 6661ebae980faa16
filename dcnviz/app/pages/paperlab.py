"""Paper lab (issue 6): the paper's synthetic studies (§6) live — RMSE beside the paper's, learned W vs truth —
and Table 6's MovieLens models (§7.3, :mod:`dcnviz.app.table6_lab`)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import streamlit as st

from dcnviz.app import state, table6_lab, ui
from dcnviz.app.jobs import SyntheticJob, SyntheticRequest
from dcnviz.figures import fig_difference
from dcnviz.paperlab.models import REGRESSION_MODELS
from dcnviz.paperlab.synthetic import EXPERIMENT_PLAN, SyntheticConfig
from dcnviz.paperlab.tasks import TASKS, build_task

JOB = "paperlab_job"  # session_state: this session's SyntheticJob
STUDIES = {
    "synthetic": "Synthetic polynomials (§6: Tables 1–2, Fig. 4)",
    "table6": "MovieLens models (§7.3, Table 6)",
}
TASK_LABELS = {
    "f1": "f1 = x1² + x1x2 + x3x1 + x4x1 (Eq. 6, Table 1)",
    "f2": "f2 = x1² + 0.1x1x2 + x2x3 + 0.1x3² (Eq. 6, Table 1)",
    "f3": "f3: 100 random crosses over x ∈ R¹⁰⁰ (Eq. 6, Table 1)",
    "order3": "order 3: 20 random crosses over x ∈ R⁵⁰ (Fig. 4)",
    "order4": "order 4: 20 random crosses over x ∈ R⁵⁰ (Fig. 4)",
    "combined": "orders 1–4 combined + sine + noise (Table 2)",
}
MODEL_LABELS = {
    "dcnv2": "DCN-V2",
    "dcn": "DCN (V1)",
    "dnn": "DNN (width d)",
    "dnn-large": "DNN (large)",
    "dcnv2-no-bias": "DCN-V2 without b",
    "dcnv2-no-residual": "DCN-V2 without residual",
    "dcnv2-no-bias-no-residual": "DCN-V2 without b and residual",
}


def plan_for(task: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The paper's models and depths for this task (Table 1, Table 2 or Fig. 4)."""
    for plans in EXPERIMENT_PLAN.values():
        for t, models, layers in plans:
            if t == task:
                return models, layers
    return ("dcnv2", "dnn"), (1,)


def results_table(rows: list) -> pd.DataFrame:  # type: ignore[type-arg]
    df = pd.DataFrame([r.to_json() for r in rows])
    if df.empty:
        return df
    df = df[["task", "model", "layers", "params", "rmse_mean", "rmse_std", "paper_rmse", "train_rmse_mean"]]
    df["ours / paper"] = [
        (m / p if p and math.isfinite(m) else float("nan")) for m, p in zip(df.rmse_mean, df.paper_rmse, strict=True)
    ]
    return df


def live(job: SyntheticJob) -> None:
    snap = ui.lab_progress(job, key="pl_stop")
    if snap is None:
        return
    if snap.status == "stopped":
        st.warning("Stopped: only the finished rows are shown.")
    task = job.request.task
    if snap.rows:
        st.subheader("Test RMSE beside the paper's")
        st.caption(
            "Mean over runs of the test RMSE; `params` counted as the paper does (all but the output "
            "intercept); `paper_rmse` empty where the paper gives no number (Fig. 4, other depths or widths)."
        )
        ui.show_table(results_table(snap.rows), key="pl_table", filename=f"paperlab-{task}-rmse")
    if snap.learned_c is not None and snap.true_c is not None:
        st.subheader("Learned cross coefficients next to the true ones")
        d = snap.true_c.shape[0]
        names = [f"x{i + 1}" for i in range(d)]
        err = float(abs(snap.learned_c - snap.true_c).max())
        st.caption(
            "For a 1-layer DCN-V2 y = vᵀ(x ⊙ (W x + b) + x) + c, the coefficient of x_i x_j is v_i W_ij + v_j W_ji "
            "and that of x_i² is v_i W_ii (read here from the Hessian at x = 0). Only order-2 terms are shown. "
            f"Test RMSE of this model: {snap.learned_rmse:.3g}; largest coefficient error: {err:.3g}."
        )
        if not abs(snap.true_c).max() > 0:
            st.info("This task has no order-2 terms, so its true coefficient matrix is zero.")
        c1, c2 = st.columns(2)
        with c1:
            f_true = fig_difference(snap.true_c, names, title="True coefficients", label="coefficient")
            ui.show_figure(f_true, key="pl_true", filename=f"paperlab-{task}-true-coefficients")
        with c2:
            f_learned = fig_difference(snap.learned_c, names, title="Learned (1-layer DCN-V2)", label="coefficient")
            ui.show_figure(f_learned, key="pl_learned", filename=f"paperlab-{task}-learned-coefficients")


def render() -> None:
    st.title("Paper lab")
    study = st.radio("Study", list(STUDIES), key="pl_study", format_func=STUDIES.get, horizontal=True)
    if study == "table6":
        table6_lab.render()
    else:
        synthetic_section()


def synthetic_section() -> None:
    st.markdown(
        "Reproduce the synthetic studies of the DCN-V2 paper (§6): fit cross networks and ReLU DNNs to "
        "polynomials with known crosses, compare the test RMSE with the paper's Tables 1–2 and Fig. 4, and see "
        "whether a 1-layer DCN-V2 recovers the true cross coefficients. The CLI runs the full tables: "
        "`python -m dcnviz paper table1|table2|fig4`."
    )
    job: SyntheticJob | None = st.session_state.get(JOB)
    running = job is not None and not job.snapshot().finished
    task = st.selectbox("Task", list(TASKS), key="pl_task", format_func=lambda t: TASK_LABELS.get(t, t))
    st.caption(f"f(x) = {build_task(task).formula()}")
    models0, layers0 = plan_for(task)
    c1, c2 = st.columns(2)
    with c1:
        models = st.multiselect(
            "Models",
            list(REGRESSION_MODELS),
            default=list(models0),
            key=f"pl_models_{task}",
            format_func=lambda m: MODEL_LABELS.get(m, m),
        )
    with c2:
        layers = st.multiselect("Layers", [1, 2, 3, 4, 5], default=list(layers0), key=f"pl_layers_{task}")
    c3, c4, c5, c6 = st.columns(4)
    with c3:
        runs = int(st.number_input("Runs", 1, 5, 1, key="pl_runs", help="The paper reports the mean of 5 runs."))
    with c4:
        samples = int(st.number_input("Training examples", 100, 100_000, 2000, step=500, key="pl_samples"))
    with c5:
        test_samples = int(st.number_input("Test examples", 100, 50_000, 1000, step=500, key="pl_test"))
    with c6:
        steps = int(st.number_input("Optimizer steps", 10, 5000, 200, step=50, key="pl_steps"))
    st.caption(
        "Defaults are small so a run takes seconds to a minute on a CPU; the paper-sized study is "
        "`python -m dcnviz paper ...` (10,000 training examples, 5 runs)."
    )
    if st.button("Run", key="pl_run", type="primary", disabled=running or not models or not layers):
        base = SyntheticConfig()
        with ui.guard():
            config = dataclasses.replace(
                base,
                samples=samples,
                test_samples=test_samples,
                fit=dataclasses.replace(base.fit, steps=steps),
            )
            request = SyntheticRequest(
                task=task, models=tuple(models), layers=tuple(sorted(layers)), runs=runs, config=config
            )
        st.session_state[JOB] = SyntheticJob(request, owner=state.session_owner()).start()
        st.rerun()
    if job is not None:
        st.divider()
        r = job.request
        st.subheader(f"Run: {r.task} · {', '.join(r.models)} · layers {', '.join(map(str, r.layers))}")
        live(job)


if __name__ == "__main__":
    render()
