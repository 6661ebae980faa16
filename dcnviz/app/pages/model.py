"""Model: pick a shipped model or upload one (dcnviz file or a peer library's state dict); the model card."""

from __future__ import annotations

import json

import streamlit as st

from dcnviz.app import state, ui
from dcnviz.app.bundle import (
    ModelBundle,
    architecture_table,
    feature_table,
    layer_table,
    metrics_table,
    recipe_table,
)
from dcnviz.errors import DcnvizError
from dcnviz.figures import fig_training_curves
from dcnviz.importers import FORMATS, LIBRARY_NAMES, read_names_or_feature_map
from dcnviz.untrusted import markdown_text

FORMAT_LABELS = {"auto": "detect from the file (recommended)", **LIBRARY_NAMES}
PROCESSED = "dcnviz_upload_done"  # session_state: signature of the last upload turned into a model


def upload_section() -> None:
    limit = state.upload_limit_mb()
    st.subheader("Upload a model")
    st.markdown(
        f"Files up to **{limit} MB**. Accepted: a dcnviz model file (`.safetensors`), or the `state_dict` of a "
        "DCN model from **torchrec, DeepCTR-Torch, FuxiCTR, RecBole** (`.pt`, `.pth`, `.bin`, `.ckpt`, "
        "`.safetensors`, `.npz`) or **TensorFlow Recommenders** weights (`.npz`; Keras `.weights.h5` when h5py "
        "is installed). Pickled files are read tensor-by-tensor with a restricted reader: nothing in them is "
        "ever executed, and they are parsed in a separate, memory- and time-limited worker process. Your upload "
        "stays in this browser session and is never saved on the server."
    )
    up = st.file_uploader("Model file", key="up_file", help=f"At most {limit} MB (server.maxUploadSize).")
    c1, c2 = st.columns(2)
    with c1:
        fmt = st.selectbox(
            "Format",
            list(FORMATS),
            key="up_format",
            format_func=lambda f: FORMAT_LABELS.get(f, f),
            help="Detected from the tensor names; force it when detection is ambiguous.",
        )
    with c2:
        names_file = st.file_uploader(
            "Feature names (optional)",
            type=["json", "csv", "txt"],
            key="up_names",
            help='NAMES.json (["user_id", "movie_id", …] or [{"name": …, "width": …}]) or a CSV of name[,width] '
            "rows, in x0 order; or, for a FuxiCTR model, its feature_map.json. Peer files often do not say which "
            "feature each block of x0 is.",
        )
    if up is None:
        return
    # this upload (ids change with every new upload), so a rerun does not hash a large file again
    signature = (up.file_id, fmt, names_file.file_id if names_file is not None else "")
    if st.session_state.get(PROCESSED) == signature:
        return
    data = up.getvalue()
    names_bytes = names_file.getvalue() if names_file is not None else b""
    try:
        names = read_names_or_feature_map(names_bytes) if names_bytes else None
        bundle = state.load_upload(data, filename=up.name, format=fmt, names=names)
    except DcnvizError as e:
        st.error(f"Could not read **{markdown_text(up.name)}**: {e}")
        return
    st.session_state[PROCESSED] = signature
    # one entry per file and format: the same file again (now with names) replaces it, never a look-alike twin
    key = f"upload:{bundle.sha256[:12]}:{fmt}"
    state.add_session_model(
        state.ModelEntry(
            key=key,
            label=up.name,
            origin="uploaded",
            sha256=bundle.sha256,
            size=len(data),
            filename=up.name,
            format=fmt,
            names_json=json.dumps(names) if names else "",
            data=data,
        )
    )
    st.rerun()


def card(entry: state.ModelEntry, bundle: ModelBundle) -> None:
    st.subheader(f"Model card: {entry.label}")
    st.caption(f"{ui.ORIGIN_TEXT.get(entry.origin, entry.origin)} · `{entry.filename}` · detected: {bundle.detected}")
    if entry.origin in ("trained", "table6"):  # made in this session: the file exists nowhere else
        st.download_button(
            "Download the model file (.safetensors)",
            data=lambda: state.entry_bytes(entry),
            file_name=f"{ui.slug(entry.filename.removesuffix('.safetensors'))}.safetensors",
            mime="application/octet-stream",
            key="card_download",
            on_click="ignore",
            icon=":material/download:",
        )
    ui.file_warnings(bundle, full=True)
    tabs = st.tabs(["Architecture", "Features", "Cross layers", "Training", "Metrics"])
    with tabs[0]:
        ui.show_table(architecture_table(bundle), key="card_arch", static=True, filename=f"{entry.label}-architecture")
    with tabs[1]:
        ui.names_prompt(entry, bundle, key="card_names")
        st.caption("The blocks of x0 = [x_embed,1; …; x_embed,n; x_dense] in order (paper §3.1).")
        ui.show_table(feature_table(bundle), key="card_features", filename=f"{entry.label}-features")
    with tabs[2]:
        if bundle.n_layers:
            ui.show_table(layer_table(bundle), key="card_layers", static=True, filename=f"{entry.label}-cross-layers")
        else:
            st.info("No cross layers: this model is a plain DNN.")
    with tabs[3]:
        recipe = recipe_table(bundle)
        if len(recipe):
            ui.show_table(recipe, key="card_recipe", static=True, filename=f"{entry.label}-training-recipe")
        else:
            st.info(f"{bundle.library} files do not record how the model was trained.")
        if bundle.history:
            try:
                fig = fig_training_curves(bundle.history, title="Training curves (per epoch)")
            except DcnvizError:
                fig = None
            if fig is not None:
                ui.show_figure(fig, key="card_curves", filename=f"{entry.label}-training-curves")
    with tabs[4]:
        metrics = metrics_table(bundle)
        if len(metrics):
            ui.show_table(metrics, key="card_metrics", static=True, filename=f"{entry.label}-metrics")
        else:
            st.info("No metrics recorded in this file.")


def render() -> None:
    st.title("Model")
    upload_section()
    st.divider()
    entry = state.current_entry()
    if entry is None:
        st.info("No model yet: upload one above, or train one on the **Train** page.")
        return
    st.caption("Choose the model in the sidebar; every page shows the chosen one.")
    entry, bundle = ui.require_model(warnings=False)
    card(entry, bundle)


if __name__ == "__main__":
    render()
