"""The Paper lab's Table 6 (§7.3): the paper's MovieLens models trained on the chosen data, beside its numbers.

The models and their settings are :func:`dcnviz.paperlab.table6.table6_model_configs` (fitted to the
paper's MovieLens-1M parameter counts; docs/paper.md), the recipe one of
:func:`~dcnviz.paperlab.table6.table6_train_config`'s, and the run a :class:`dcnviz.app.jobs.Table6Job`
(a worker process, as the Train page's runs) — the same code as ``python -m dcnviz paper table6``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dcnviz.app import state, ui
from dcnviz.app.datasets import SOURCES, pick_dataset
from dcnviz.app.jobs import Table6Job, Table6Request
from dcnviz.data import DataOptions
from dcnviz.figures import fig_table6
from dcnviz.options import TABLE6_MODELS
from dcnviz.paperlab.reference import PAPER_TABLE6

JOB = state.TABLE6_JOB  # session_state: this session's Table6Job
MODEL_LABELS = {
    "dnn": "DNN",
    "dcn": "DCN (V1)",
    "dcnv2-stacked": "DCN-V2 stacked",
    "dcnv2-parallel": "DCN-V2 parallel",
    "dcn-mix": "DCN-Mix",
    "crossnet": "CrossNet",
    "crossnet-mix": "CrossNet-Mix",
}
RECIPES = {
    "dcnviz": "dcnviz's recipe (lr 5e-3, batch by data size, embedding L2, weight EMA; ≤ 20 epochs)",
    "paper": "the paper's (Adam lr 1e-3, batch 128, no L2; ≤ 10 epochs)",
}


def _rank(values: pd.Series) -> pd.Series:
    """1 = the highest AUC; empty where there is no number."""
    return values.rank(ascending=False, method="min").astype("Int64")


def results_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per model (``Table6Row.to_json()`` dicts): ours beside the paper's MovieLens-1M numbers.

    ``rank (here)`` and ``rank (paper)`` order the models the paper also ran (it has no CrossNet-Mix or
    stacked DCN-V2 row) by this run's test AUC and by the paper's (1 = best), so they compare.
    """
    auc = pd.Series([r["auc_mean"] for r in rows], dtype=float)
    paper_auc = pd.Series(pd.array([r["paper_auc"] for r in rows], dtype="Float64"))
    return pd.DataFrame(
        {
            "model": [MODEL_LABELS.get(r["model"], r["model"]) for r in rows],
            "test auc": auc,
            "paper auc": paper_auc,
            "rank (here)": _rank(auc.where(paper_auc.notna())),
            "rank (paper)": _rank(paper_auc),
            "test logloss": [r["logloss_mean"] for r in rows],
            "paper logloss": pd.array([r["paper_logloss"] for r in rows], dtype="Float64"),
            "auc std": [r["auc_std"] for r in rows],
            "logloss std": [r["logloss_std"] for r in rows],
            "params": [r["params"] for r in rows],
            "paper params": pd.array([_paper(r["model"], "params") for r in rows], dtype="Int64"),
            "FLOPs": [r["flops"] for r in rows],
            "setting": [r["setting"] for r in rows],
            "runs": [len(r["runs"]) for r in rows],
            "best epochs": [", ".join(str(run["best_epoch"]) for run in r["runs"]) for r in rows],
        }
    )


def _paper(model: str, field: str) -> Any:
    ref = PAPER_TABLE6.get(model)
    return None if ref is None else getattr(ref, field)


def run_caption(r: Table6Request, info: dict[str, Any], data_label: str) -> str:
    """The data and recipe of a finished run in one line (``info``: what the worker sent)."""
    n, train = info["rows"], info["train"]
    seeds = f"seeds {r.seed}…{r.seed + r.runs - 1}" if r.runs > 1 else f"seed {r.seed}"
    return (
        f"{data_label}: {n['train']:,} train / {n['val']:,} validation / {n['test']:,} test rows, d = {info['d']}; "
        f"batch {train['batch_size']}, lr {train['lr']}, {seeds}. Test numbers are from each run's best "
        "validation epoch."
    )


def live(job: Table6Job) -> None:
    snap = ui.lab_progress(job, key="t6_stop")
    if snap is None:
        return
    if snap.status == "stopped":
        st.warning("Stopped: only the models with a finished run are shown.")
    if not snap.rows:
        return
    rows = [r.to_json() for r in snap.rows]
    r = job.request
    data_label = SOURCES[r.data.source].split(" (")[0]
    if snap.info:
        st.caption(run_caption(r, snap.info, data_label))
    df = results_table(rows)
    fig = fig_table6(rows, data_label=data_label, labels=MODEL_LABELS)
    ui.show_figure(fig, key="t6_fig", filename=f"table6-{r.data.source}-auc")
    ui.show_table(df, key="t6_table", filename=f"table6-{r.data.source}")
    both = df.dropna(subset=["rank (paper)"])
    if len(both) >= 2:
        mine = both.sort_values("rank (here)")["model"].tolist()
        paper = both.sort_values("rank (paper)")["model"].tolist()
        same = "the same order as" if mine == paper else "a different order from"
        st.markdown(
            f"By test AUC, the models the paper also ran come in **{same}** the paper's: "
            f"{' > '.join(mine)} (here) · {' > '.join(paper)} (paper, MovieLens-1M)."
        )
    if len(df) >= 2:
        st.caption(noise_note(df, r.runs))
    if snap.models:
        st.markdown(
            f"**Their weights:** each model's best run (lowest validation log loss) is in the sidebar's model "
            f"picker as *<model> #{r.number} · Table 6*: read what each learned on Feature crosses and Spectrum, "
            "or put two side by side on Compare."
        )
        c1, c2 = st.columns(2)
        ui.page_link("crosses", where=c1)
        ui.page_link("compare", where=c2)


def close_pairs(df: pd.DataFrame) -> tuple[int, int]:
    """Of the neighbouring pairs of models by test AUC, how many differ by less than the larger std of the two.

    >>> close_pairs(pd.DataFrame({"test auc": [0.8745, 0.870, 0.8705], "auc std": [0.002, 0.001, 0.001]}))
    (1, 2)
    """
    d = df.sort_values("test auc")
    gaps = d["test auc"].diff().to_numpy()[1:]
    stds = d["auc std"].to_numpy()
    close = sum(bool(g < max(a, b)) for g, a, b in zip(gaps, stds[:-1], stds[1:], strict=True))
    return close, len(gaps)


def noise_note(df: pd.DataFrame, runs: int) -> str:
    """How far the order of the table's models (by test AUC) can be trusted, from the run-to-run std."""
    if runs < 2:
        return (
            "One run per model: run-to-run noise is not measured, so small differences may not hold; "
            "3–5 runs give each model a std."
        )
    close, pairs = close_pairs(df)
    return (
        f"Neighbours by test AUC closer than the larger std of the two (over {runs} runs): {close} of {pairs} "
        "pairs. Their order here is within run-to-run noise."
    )


def render() -> None:
    """The Table 6 section of the Paper lab page."""
    st.markdown(
        "Table 6 of the paper compares DNN, DCN, DCN-V2, DCN-Mix and CrossNet on MovieLens-1M (§7.3). Here "
        "the same models — settings fitted to the paper's MovieLens parameter counts (46K, 110K, 65K; "
        "docs/paper.md) — train on the data you choose with one shared recipe, and their test AUC and log "
        "loss sit beside the paper's. The levels differ with the data; **compare the order**. On "
        "MovieLens-100K the paper's order does not appear (a small-data effect: measured outside the "
        "project, a 360K-row MovieLens-1M subset gave the paper's order). The CLI runs the same: "
        "`python -m dcnviz paper table6 --data ...`."
    )
    job: Table6Job | None = st.session_state.get(JOB)
    running = job is not None and not job.snapshot().finished
    picked = pick_dataset("t6")
    models = st.multiselect(
        "Models",
        list(TABLE6_MODELS),
        default=list(TABLE6_MODELS),
        key="t6_models",
        format_func=lambda m: MODEL_LABELS.get(m, m),
    )
    recipe = st.radio("Recipe (shared by every model)", list(RECIPES), key="t6_recipe", format_func=RECIPES.get)
    c1, c2, c3 = st.columns(3)
    with c1:
        runs = int(st.number_input("Runs per model", 1, 5, 1, key="t6_runs", help="The paper reports 5 runs."))
    with c2:
        seed = int(st.number_input("First seed", 0, 10_000, 0, key="t6_seed"))
    with c3:
        cap = st.number_input("Most epochs (0 = the recipe's)", 0, 50, 0, key="t6_epochs")
    st.caption(
        "Seven models, one run each, on the 2-core development machine with nothing else running: 40 s with "
        "dcnviz's recipe and 81 s with the paper's on the bundled sample; 2½ minutes with dcnviz's recipe on "
        "MovieLens-100K."
    )
    if st.button("Run Table 6", key="t6_run", type="primary", disabled=running or not models or picked is None):
        assert picked is not None
        source, data_dir = picked
        with ui.guard():
            n = len({e.key.split(":")[1] for e in state.session_entries() if e.key.startswith("table6:")}) + 1
            request = Table6Request(
                number=n,
                data=DataOptions(source=source, data_dir=data_dir),
                models=tuple(models),
                runs=runs,
                recipe=recipe,
                seed=seed,
                epochs=int(cap) or None,
            )
        st.session_state[JOB] = Table6Job(request, owner=state.session_owner()).start()
        st.rerun()
    if job is not None:
        st.divider()
        r = job.request
        models, runs = len(r.models), r.runs
        st.subheader(
            f"Table 6 #{r.number} on {r.data.source}: {models} model{'s' * (models > 1)} × {runs} "
            f"run{'s' * (runs > 1)}, {r.recipe}'s recipe"
        )
        live(job)
