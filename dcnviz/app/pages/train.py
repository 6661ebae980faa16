"""Train: a DCN model on the bundled sample or MovieLens, with live curves, a stop button and a download.

The run is a :class:`dcnviz.app.jobs.TrainingJob`: a worker process owned by this session, queued in
the server's :class:`~dcnviz.app.jobs.RunPool` when too many runs are training. The page reads
``job.snapshot()`` copies from an ``st.fragment(run_every=LIVE_S)``, so watching costs the trainer
nothing. When the run ends, the model (the best epoch's weights) is registered in this session,
selected in the sidebar, and offered as a file. Every default comes from the library's config
classes (:class:`~dcnviz.data.DataOptions`, :class:`~dcnviz.model.ModelConfig`,
:class:`~dcnviz.train.TrainConfig`), so the page trains the shipped recipe unless the user changes it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import pandas as pd
import streamlit as st
import torch

from dcnviz.app import jobs, state, ui
from dcnviz.app.datasets import pick_dataset
from dcnviz.app.jobs import JobSnapshot, TrainingJob, TrainRequest
from dcnviz.data import DataOptions
from dcnviz.figures import fig_training_curves, table_csv
from dcnviz.model import STRUCTURES, ModelConfig, ModelName
from dcnviz.train import TrainConfig

JOB = state.TRAIN_JOB  # session_state: the session's TrainingJob (at most one at a time)
FIGURE = "tr_curves_figure"  # session_state: (job id, epochs drawn, figure) — rebuilt only when an epoch ends
LIVE_S = 2.0  # seconds between refreshes of the live view (each costs the server and the browser CPU)
EPOCH_REDRAW_S = 10.0  # the per-epoch figure is redrawn (a page rerun) at most this often while a run goes
# The live loss curve as a fixed Vega-Lite spec: st.line_chart builds an Altair chart on every refresh
# (~0.1-0.2 s of the server's CPU, on the cores the run trains on); a spec dict costs next to nothing.
LIVE_CHART_SPEC: dict[str, Any] = {
    "mark": {"type": "line"},
    "encoding": {
        "x": {"field": "epoch", "type": "quantitative", "title": "epoch"},
        "y": {"field": "loss", "type": "quantitative", "title": "log loss", "scale": {"zero": False}},
    },
}
CHART_POINTS = 400  # the live loss curve draws at most this many points
MODEL_LABELS: dict[ModelName, str] = {
    "dcnv2": "DCN-V2 (full rank, or low rank with r)",
    "dcn-mix": "DCN-Mix (mixture of low-rank experts)",
    "dcn": "DCN (V1, vector cross)",
    "crossnet": "CrossNet only (no deep tower)",
    "dnn": "DNN (no cross network)",
}
BATCH_SIZES = (128, 256, 512, 1024, 2048, 4096)


def device_line() -> str:
    if torch.cuda.is_available():
        return f"GPU: **{torch.cuda.get_device_name(0)}** (CUDA)"
    return "**CPU** — no CUDA GPU is available to this PyTorch."


def learning_rates(default: float) -> list[float]:
    """Learning rates on a 1-2-5 log scale from 1e-5 to 1, with the recipe's own value among them.

    >>> learning_rates(5e-3)[:4], len(learning_rates(5e-3)), 3e-3 in learning_rates(3e-3)
    ([1e-05, 2e-05, 5e-05, 0.0001], 16, True)
    """
    grid = {round(m * 10.0**e, 12) for e in range(-5, 0) for m in (1, 2, 5)} | {1.0}
    return sorted(grid | {default})


def embedding_section(default: int | str) -> int | str:
    """One embedding size for every field, or ``auto`` (6·vocab^¼ per field, §7.1.3); default from DataOptions."""
    auto = st.checkbox(
        "Embedding size from each vocabulary (6·vocab^¼, §7.1.3)", value=default == "auto", key="tr_emb_auto"
    )
    start = default if isinstance(default, int) else 16
    emb = int(st.number_input("Embedding size per feature", 1, 256, start, key="tr_emb", disabled=auto))
    return "auto" if auto else emb


def data_section() -> DataOptions | None:
    default = DataOptions(source="sample").embedding_dim
    picked = pick_dataset("tr")
    emb = embedding_section(default)
    if picked is None:
        return None
    source, data_dir = picked
    return DataOptions(source=source, data_dir=data_dir, embedding_dim=emb)


def model_section() -> ModelConfig | None:
    d = ModelConfig()
    mix = ModelConfig(model="dcn-mix").resolved(d=4)  # the experts a mixture gets by default
    kinds = list(MODEL_LABELS)
    kind = st.selectbox(
        "Model", kinds, index=kinds.index(d.model), key="tr_model", format_func=lambda m: MODEL_LABELS[m]
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        structures = sorted(STRUCTURES, key=lambda s: s != "parallel")  # the one best on MovieLens first
        structure = st.radio(
            "Structure",
            structures,
            index=structures.index(d.structure),
            key="tr_structure",
            disabled=kind in ("dnn", "crossnet"),
            help="Parallel: cross and deep side by side (best on MovieLens, §7.3); stacked: cross then deep.",
        )
        layers = int(st.number_input("Cross layers", 1, 8, d.cross_layers, key="tr_layers", disabled=kind == "dnn"))
    with c2:
        rank = int(
            st.number_input(
                "Rank r (0 = full rank)" if kind != "dcn-mix" else "Rank r per expert (0 = d/4)",
                0,
                4096,
                d.rank or 0,
                key="tr_rank",
                disabled=kind in ("dnn", "dcn"),
            )
        )
        experts = int(
            st.number_input("Experts K", 1, 16, mix.experts or 1, key="tr_experts", disabled=kind != "dcn-mix")
        )
    with c3:
        hidden_text = st.text_input(
            "Deep tower sizes", ",".join(map(str, d.hidden)), key="tr_hidden", disabled=kind == "crossnet"
        )
    try:
        hidden = tuple(int(h) for h in hidden_text.replace(" ", "").split(",") if h)
    except ValueError:
        st.error(f"Deep tower sizes must be integers separated by commas; got {hidden_text!r}")
        return None
    with ui.guard():
        return ModelConfig(
            model=kind,
            structure=structure,
            cross_layers=layers,
            rank=rank or None,
            experts=experts if kind == "dcn-mix" else None,
            hidden=hidden if kind != "crossnet" else (),
        )


def recipe_section() -> TrainConfig | None:
    d = TrainConfig()
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        lr = float(
            st.select_slider(
                "Learning rate",
                options=learning_rates(d.lr),
                value=d.lr,
                key="tr_lr",
                format_func=lambda v: f"{v:g}",
                help="Adam's learning rate, on a log scale.",
            )
        )
    with c2:
        sizes: list[int | None] = [None, *sorted({*BATCH_SIZES, *([d.batch_size] if d.batch_size else [])})]
        batch = st.selectbox(
            "Batch size",
            sizes,
            index=sizes.index(d.batch_size),
            key="tr_batch",
            format_func=lambda b: "auto" if b is None else str(b),
            help="auto: the largest power of two up to 512 that gives an epoch at least 50 steps (512 on the "
            "bundled sample and MovieLens).",
        )
    with c3:
        epochs = int(st.number_input("Epochs (most)", 1, max(200, d.epochs), d.epochs, key="tr_epochs"))
    with c4:
        seed = int(st.number_input("Seed", 0, 10_000, d.seeds[0], key="tr_seed"))
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.radio(
        "Device", devices, index=devices.index(d.device) if d.device in devices else 0, key="tr_device", horizontal=True
    )
    st.markdown(f"Device: {device_line()}")
    st.caption(f"The rest is the shipped recipe (see docs/training.md): {recipe_rest(d)}.")
    with ui.guard():
        return TrainConfig(lr=lr, batch_size=batch, epochs=epochs, seeds=(seed,), device=device)


def recipe_rest(config: TrainConfig) -> str:
    """The recipe's settings the page does not expose, as text (read from the config, never copied)."""
    shown = {"lr", "batch_size", "epochs", "seeds", "device", "eval_batch_size", "amp", "compile"}
    parts = [f"{f.name} {getattr(config, f.name)}" for f in dataclasses.fields(config) if f.name not in shown]
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# The run


def chart_points(ticks: list[dict[str, float]], most: int = CHART_POINTS) -> pd.DataFrame:
    """At most about ``most`` of the ticks, every k-th with k a power of two.

    k changes only when the run doubles its points, so between doublings the chart's data grows by
    appending (the browser's chart keeps its view and swaps in the data).

    >>> len(chart_points([{"epoch": i / 10, "loss": 1.0} for i in range(1000)], most=300))
    250
    """
    k = 1 << max(0, math.ceil(math.log2(len(ticks) / most))) if len(ticks) > most else 1
    return pd.DataFrame(ticks[::k], columns=["epoch", "loss"])


def curves_figure(job: TrainingJob, history: list[dict[str, Any]]) -> Any:
    """The per-epoch figure, rebuilt only when an epoch has been added (kept in session_state)."""
    cached = st.session_state.get(FIGURE)
    if cached is not None and cached[0] == job.id and cached[1] == len(history):
        return cached[2]
    fig = fig_training_curves(history, title="Per epoch: log loss and validation AUC")
    st.session_state[FIGURE] = (job.id, len(history), fig)
    return fig


def progress_view(job: TrainingJob, s: JobSnapshot) -> None:
    """Progress bar, numbers, live loss curve, then the per-epoch curves (a finished run's page)."""
    live_numbers(s)
    epoch_curves(job, s.history)


def live_numbers(s: JobSnapshot) -> None:
    """Progress bar, numbers and the live loss curve: what the live fragment redraws every LIVE_S seconds."""
    if s.status == "queued":
        st.info(f"Waiting for a free slot: {s.message}.")
    st.progress(s.fraction, text=s.message)
    c = st.columns(4)
    c[0].metric("Epoch", f"{s.epoch} / {s.epochs}")
    c[1].metric(
        "Examples / s",
        f"{s.examples_per_s:,.0f}",
        help="Training examples per second of training time, over the run so far (validation excluded); "
        "at the end, the run's final figure.",
    )
    c[2].metric("Elapsed", f"{s.elapsed_s:.1f} s")
    c[3].metric("Device", s.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if s.threads:
        pool = jobs.RunPool.shared()
        st.caption(
            f"{s.threads} CPU thread(s) of this server's {pool.cores} core(s); at most {pool.max_runs} runs at once."
        )
    if s.ticks:
        st.caption("Training log loss (live, by epoch)")
        st.vega_lite_chart(chart_points(s.ticks), LIVE_CHART_SPEC, width="stretch", height=220)


def epoch_curves(job: TrainingJob, history: list[dict[str, Any]]) -> None:
    if history:
        ui.show_figure(curves_figure(job, history), key="tr_curves", filename="training-curves")


def redraw_page(s: JobSnapshot, epochs_drawn: int, drawn_s_ago: float) -> bool:
    """Whether the live fragment must rerun the whole page: the run ended (its model gets registered),
    or epochs ended since the page drew the per-epoch curves and that was EPOCH_REDRAW_S or more ago.

    The per-epoch figure sits outside the fragment, so the fragment's refreshes never re-send it; a
    page rerun redraws it (and a Plotly redraw costs the browser ~0.3 s of CPU), at most this often.
    """
    return s.finished or (len(s.history) != epochs_drawn and drawn_s_ago >= EPOCH_REDRAW_S)


def live_view(job: TrainingJob) -> None:
    """The run: live while it goes (a fragment refreshed every LIVE_S seconds), then its result.

    The fragment holds only the cheap parts (numbers, the live loss curve, the stop button); the
    per-epoch figure is drawn by the page run and redrawn by a page rerun after an epoch ends.
    """
    snap = job.snapshot()
    if snap.finished:
        result_view(job, snap)
        return
    drawn, drawn_at = len(snap.history), time.monotonic()

    @st.fragment(run_every=LIVE_S)
    def _live() -> None:
        s = job.snapshot()
        if redraw_page(s, drawn, time.monotonic() - drawn_at):
            st.rerun(scope="app")
        live_numbers(s)
        st.button(
            "Stop (keep the best model so far)",
            key="tr_stop",
            on_click=job.stop,
            disabled=job.stop_requested,
            icon=":material/stop_circle:",
        )

    _live()
    epoch_curves(job, snap.history)


def result_view(job: TrainingJob, snap: JobSnapshot) -> None:
    """The finished run: its outcome first (what the user waited for), then its curves and files."""
    if not outcome_line(snap):
        progress_view(job, snap)
        return
    # Both files are made when clicked (deferred): bytes handed to a download button at render time stay
    # in Streamlit's media store for as long as the server runs once the session has expired.
    ticks, model_bytes = snap.ticks, snap.model_bytes
    c1, c2, c3 = st.columns(3)
    if model_bytes is not None:
        c1.download_button(
            "Download the model file (.safetensors)",
            data=lambda: model_bytes,
            file_name=f"{ui.slug(job.request.label)}.safetensors",
            mime="application/octet-stream",
            key="tr_download",
            on_click="ignore",
            icon=":material/download:",
        )
    if ticks:
        c2.download_button(
            "Download the training log (CSV)",
            data=lambda: table_csv(pd.DataFrame(ticks), index=False),
            file_name=f"{ui.slug(job.request.label + '-training-log')}.csv",
            mime="text/csv",
            key="tr_log_csv",
            on_click="ignore",
            icon=":material/download:",
        )
    c3.page_link(ui.page("crosses"), label="See its feature crosses", icon=":material/grid_on:")
    progress_view(job, snap)


def outcome_line(snap: JobSnapshot) -> bool:
    """One line saying how the run ended; False when it left no model (cancelled, failed, stopped early)."""
    if snap.status == "cancelled":
        st.warning(f"This run was {snap.message}.")
        return False
    if snap.error:
        st.error(f"Training failed: {snap.error}")
        return False
    res = snap.result or {}
    if not res:
        st.info(f"{snap.message[:1].upper()}{snap.message[1:]}.")
        return False
    test = res.get("test") or {}
    done = st.warning if res.get("fault") else st.success  # a fault kept the last good model: say so louder
    done(
        f"{snap.message}. Test AUC {test.get('auc') or float('nan'):.4f}, log loss "
        f"{test.get('logloss') or float('nan'):.4f} · {snap.examples_per_s:,.0f} examples/s on "
        f"{res.get('device', '?')}. The model is now selected in the sidebar for every page."
    )
    return True


def render() -> None:
    st.title("Train a model")
    jobs.warm_up()  # start the workers' fork server while the user fills in the form
    job: TrainingJob | None = st.session_state.get(JOB)
    running = job is not None and not job.finished
    if job is not None:
        st.subheader(f"Run: {job.request.label}")
        live_view(job)
    # Open only before the first run: once a run exists its view stays on top and the form stays folded.
    with st.expander(
        "Data, model and recipe" if job is None else "New run: data, model and recipe", expanded=job is None
    ):
        st.subheader("Data")
        options = data_section()
        st.subheader("Model")
        config = model_section()
        st.subheader("Recipe")
        recipe = recipe_section()
        ready = options is not None and config is not None and recipe is not None
        label = f"{config.model if config else 'model'} on {options.source if options else '?'}"
        if st.button("Start training", key="tr_start", type="primary", disabled=running or not ready):
            assert options is not None and config is not None and recipe is not None
            n = len([e for e in state.session_entries() if e.key.startswith("trained:")]) + 1
            request = TrainRequest(data=options, model=config, train=recipe, label=f"{label} #{n}")
            with ui.guard():  # e.g. a malformed $DCNVIZ_MAX_RUNS
                st.session_state[JOB] = TrainingJob(request, owner=state.session_owner()).start()
            st.rerun()


if __name__ == "__main__":
    render()
