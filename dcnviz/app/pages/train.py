"""Train: a DCN model on the bundled sample or MovieLens, with live curves, a stop button and a download.

The run lives in a background thread owned by this session (:class:`dcnviz.app.jobs.TrainingJob`);
the page polls it with ``st.fragment(run_every=...)``. When it ends, the model (the best epoch's
weights) is registered in this session, selected in the sidebar, and offered as a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

import dcnviz.data as data_mod
from dcnviz.app import state, ui
from dcnviz.app.jobs import TrainingJob, TrainRequest
from dcnviz.data import ML1M_FILES, ML100K_FILES, DataOptions
from dcnviz.download import LICENCE_NOTE, download_dataset
from dcnviz.errors import DcnvizError
from dcnviz.figures import fig_training_curves
from dcnviz.model import ModelConfig
from dcnviz.train import TrainConfig

SAMPLE_ENV = "DCNVIZ_SAMPLE_DIR"  # overrides the bundled sample folder (the browser test trains on a tiny one)
JOB = state.TRAIN_JOB  # session_state: the session's TrainingJob (at most one at a time)
SOURCES = {
    "sample": "Bundled synthetic sample (ML-1M format, planted crosses)",
    "ml-100k": "MovieLens-100K",
    "ml-1m": "MovieLens-1M",
}
MODEL_LABELS = {
    "dcnv2": "DCN-V2 (full rank, or low rank with r)",
    "dcn-mix": "DCN-Mix (mixture of low-rank experts)",
    "dcn": "DCN (V1, vector cross)",
    "crossnet": "CrossNet only (no deep tower)",
    "dnn": "DNN (no cross network)",
}


def device_line() -> str:
    if torch.cuda.is_available():
        return f"GPU: **{torch.cuda.get_device_name(0)}** (CUDA)"
    return "**CPU** — no CUDA GPU is available to this PyTorch."


def movielens_files(folder: Path, source: str) -> bool:
    files = ML1M_FILES if source == "ml-1m" else ML100K_FILES
    return any(all((c / f).is_file() for f in files) for c in (folder, folder / source))


def data_section() -> DataOptions | None:
    source = st.radio("Dataset", list(SOURCES), key="tr_source", format_func=lambda s: SOURCES[s], horizontal=True)
    emb = int(st.number_input("Embedding size per feature", 1, 128, 16, key="tr_emb"))
    if source == "sample":
        override = os.environ.get(SAMPLE_ENV)
        folder = Path(override) if override else Path(data_mod.SAMPLE_DIR)
        if not (folder / "ratings.dat").is_file():
            st.error(f"The sample data is missing from {folder}; regenerate it with scripts/make_sample_data.py.")
            return None
        st.caption(
            "A synthetic MovieLens-like dataset with known planted crosses (gender × movie, age × movie; "
            "occupation × movie is a control with none). See sample_data/README.md."
            + (f" Read from {folder} (${SAMPLE_ENV})." if override else "")
        )
        return DataOptions(source="sample", data_dir=override or None, embedding_dim=emb)
    root = Path(
        st.text_input(
            f"Folder with {SOURCES[source]} (the files, or a folder holding {source}/)",
            value="data",
            key="tr_root",
        )
    ).expanduser()
    if movielens_files(root, source):
        st.success(f"Found {SOURCES[source]} in {root}.")
        return DataOptions(source=source, data_dir=str(root), embedding_dim=emb)
    st.warning(f"No {SOURCES[source]} files in {root}. Download them from GroupLens (needs internet):")
    st.caption(LICENCE_NOTE)
    if st.button(f"Download {SOURCES[source]} into {root}", key="tr_fetch"):
        bar = st.progress(0.0, text="connecting to files.grouplens.org…")

        def progress(done: int, total: int | None) -> None:
            if total:
                bar.progress(min(1.0, done / total), text=f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")
            else:
                bar.progress(0.0, text=f"{done / 1e6:.1f} MB")

        try:
            where = download_dataset(source, root, progress=progress)
        except DcnvizError as e:
            st.error(f"Download failed: {e}")
            return None
        bar.progress(1.0, text=f"done: {where}")
        st.success(f"Downloaded and verified into {where}.")
        return DataOptions(source=source, data_dir=str(root), embedding_dim=emb)
    return None


def model_section() -> ModelConfig | None:
    kind = st.selectbox("Model", list(MODEL_LABELS), key="tr_model", format_func=lambda m: MODEL_LABELS[m])
    c1, c2, c3 = st.columns(3)
    with c1:
        structure = st.radio(
            "Structure",
            ["parallel", "stacked"],
            key="tr_structure",
            disabled=kind in ("dnn", "crossnet"),
            help="Parallel: cross and deep side by side (best on MovieLens, §7.3); stacked: cross then deep.",
        )
        layers = int(st.number_input("Cross layers", 1, 8, 2, key="tr_layers", disabled=kind == "dnn"))
    with c2:
        rank = int(
            st.number_input(
                "Rank r (0 = full rank)" if kind != "dcn-mix" else "Rank r per expert (0 = d/4)",
                0,
                4096,
                0,
                key="tr_rank",
                disabled=kind in ("dnn", "dcn"),
            )
        )
        experts = int(st.number_input("Experts K", 1, 16, 4, key="tr_experts", disabled=kind != "dcn-mix"))
    with c3:
        hidden_text = st.text_input("Deep tower sizes", "256,256", key="tr_hidden", disabled=kind == "crossnet")
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
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        lr = float(st.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.4g", key="tr_lr"))
    with c2:
        batch = int(st.selectbox("Batch size", [128, 256, 512, 1024, 2048], index=2, key="tr_batch"))
    with c3:
        epochs = int(st.number_input("Epochs (most)", 1, 100, 5, key="tr_epochs"))
    with c4:
        seed = int(st.number_input("Seed", 0, 10_000, 0, key="tr_seed"))
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.radio("Device", devices, key="tr_device", horizontal=True)
    st.markdown(f"Device: {device_line()}")
    with ui.guard():
        return TrainConfig(lr=lr, batch_size=batch, epochs=epochs, seeds=(seed,), device=device)


def live_view(job: TrainingJob) -> None:
    """Progress, live loss, per-epoch curves and the stop button; polls while the run is going."""
    snap = job.snapshot()

    @st.fragment(run_every=0.5 if not snap.finished else None)
    def _live() -> None:
        s = job.snapshot()
        st.progress(s.fraction, text=s.message)
        c = st.columns(4)
        c[0].metric("Epoch", f"{s.epoch} / {s.epochs}")
        c[1].metric("Examples / s", f"{s.examples_per_s:,.0f}")
        c[2].metric("Elapsed", f"{s.elapsed_s:.1f} s")
        c[3].metric("Device", s.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if s.ticks:
            st.caption("Training log loss (live, by epoch)")
            st.line_chart(pd.DataFrame(s.ticks), x="epoch", y="loss", height=220)
        if s.history:
            ui.show_figure(
                fig_training_curves(s.history, title="Per epoch: log loss and validation AUC"),
                key="tr_curves",
                filename="training-curves",
            )
        if not s.finished:
            st.button(
                "Stop (keep the best model so far)",
                key="tr_stop",
                on_click=job.stop,
                disabled=job.stop_requested,
                icon=":material/stop_circle:",
            )
        elif not snap.finished:  # it finished while we were polling: redraw the whole page
            st.rerun(scope="app")

    _live()
    if not snap.finished:
        return
    if snap.error:
        st.error(f"Training failed: {snap.error}")
        return
    res = snap.result or {}
    test = res.get("test") or {}
    done = st.warning if res.get("fault") else st.success  # a fault kept the last good model: say so louder
    done(
        f"{snap.message}. Test AUC {test.get('auc') or float('nan'):.4f}, log loss "
        f"{test.get('logloss') or float('nan'):.4f} · {res.get('examples_per_s', 0):,.0f} examples/s on "
        f"{res.get('device', '?')}. The model is now selected in the sidebar for every page."
    )
    if snap.ticks:
        ui.download_csv(
            pd.DataFrame(snap.ticks),
            key="tr_log_csv",
            filename=f"{job.request.label}-training-log",
            label="Download the training log (CSV)",
        )
    if snap.model_bytes is not None:
        st.download_button(
            "Download the model file (.safetensors)",
            data=snap.model_bytes,
            file_name=f"{ui.slug(job.request.label)}.safetensors",
            mime="application/octet-stream",
            key="tr_download",
            on_click="ignore",
            icon=":material/download:",
        )
    st.page_link(ui.page("crosses"), label="See its feature crosses", icon=":material/grid_on:")


def render() -> None:
    st.title("Train a model")
    job: TrainingJob | None = st.session_state.get(JOB)
    running = job is not None and not job.snapshot().finished

    with st.expander("Data, model and recipe", expanded=not running):
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
            n = len([e for e in state.session_entries() if e.origin == "trained"]) + 1
            request = TrainRequest(data=options, model=config, train=recipe, label=f"{label} #{n}")
            st.session_state[JOB] = TrainingJob(request).start()
            st.rerun()
    if job is not None:
        st.subheader(f"Run: {job.request.label}")
        live_view(job)


if __name__ == "__main__":
    render()
