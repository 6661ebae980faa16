"""The Train page (AppTest): defaults from the config classes, the lr stepper, the page after a run,
one speed number, the queue, a cancelled run, the sidebar status (issue 13 items 1, 5, 11, 12, 17; issue 16)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnviz.app import jobs
from dcnviz.app.jobs import JobSnapshot, RunPool
from dcnviz.app.pages.train import EPOCH_REDRAW_S, chart_points, learning_rates, redraw_page
from dcnviz.data import DataOptions
from dcnviz.model import ModelConfig
from dcnviz.sample import SampleConfig, make_sample, write_sample
from dcnviz.train import TrainConfig
from tests.helpers.app import goto, ok, run_job, start
from tests.helpers.jobs import StandIn, until, wait_for_stop


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    write_sample(make_sample(SampleConfig(n_users=150, n_movies=60, n_ratings=3000, min_ratings=20)), d)
    return d


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> RunPool:
    """A fresh server pool for the test (one run at a time), put where the page finds it."""
    p = RunPool(cores=2, max_runs=1, grace_s=5.0)
    monkeypatch.setattr(RunPool, "_shared", p)
    return p


def tiny(at: AppTest, epochs: int = 1) -> AppTest:
    at.number_input(key="tr_epochs").set_value(epochs)
    at.number_input(key="tr_emb").set_value(4)
    at.text_input(key="tr_hidden").set_value("16")
    return at.run()


def test_the_pages_defaults_are_the_shipped_recipe(env: Path) -> None:
    at = goto(start(), "train")
    ok(at)
    t, m, d = TrainConfig(), ModelConfig(), DataOptions(source="sample")
    assert at.select_slider(key="tr_lr").value == t.lr
    assert at.selectbox(key="tr_batch").value == t.batch_size
    assert at.number_input(key="tr_epochs").value == t.epochs
    assert at.number_input(key="tr_seed").value == t.seeds[0]
    assert at.radio(key="tr_device").value == t.device
    assert at.selectbox(key="tr_model").value == m.model
    assert at.radio(key="tr_structure").value == m.structure
    assert at.number_input(key="tr_layers").value == m.cross_layers
    assert at.number_input(key="tr_rank").value == (m.rank or 0)
    assert at.text_input(key="tr_hidden").value == ",".join(map(str, m.hidden))
    assert at.checkbox(key="tr_emb_auto").value == (d.embedding_dim == "auto")
    if isinstance(d.embedding_dim, int):
        assert at.number_input(key="tr_emb").value == d.embedding_dim
    rest = next(c.value for c in at.caption if c.value.startswith("The rest is the shipped recipe"))
    assert f"patience {t.patience}" in rest and f"l2_embedding {t.l2_embedding}" in rest


def test_the_learning_rate_steps_on_a_log_scale() -> None:
    for default in (1e-3, 5e-3, 3e-3):
        grid = learning_rates(default)
        i = grid.index(default)
        below, above = grid[i - 1], grid[i + 1]
        assert 0 < below < default < above <= 2.5 * default  # "−" and "+" both move, by one notch
    assert learning_rates(1e-3)[learning_rates(1e-3).index(1e-3) - 1 : learning_rates(1e-3).index(1e-3) + 2] == [
        5e-4,
        1e-3,
        2e-3,
    ]


def test_the_live_curve_is_bounded_and_grows_by_appending() -> None:
    ticks = [{"epoch": i / 100, "loss": 1.0 / (1 + i), "step": i, "examples_per_s": 1.0} for i in range(3000)]
    assert len(chart_points(ticks[:300])) == 300
    shown = [len(chart_points(ticks[:n])) for n in range(401, 3000, 50)]
    assert max(shown) <= 400
    a, b = chart_points(ticks[:1000]), chart_points(ticks[:1500])  # same stride: the first is a prefix
    assert b.iloc[: len(a)].equals(a)


def snapshot(status: str, epochs_done: int) -> JobSnapshot:
    rows = [{"epoch": e + 1, "train_logloss": 0.5} for e in range(epochs_done)]
    return JobSnapshot(status, "", [], rows, epochs_done, 5, 0.1, 0.0, 0.0, "cpu", None, None, None)


def test_the_live_view_redraws_the_page_only_when_an_epoch_or_the_run_ends() -> None:
    late = EPOCH_REDRAW_S
    assert not redraw_page(snapshot("training", 0), 0, late)  # a refresh inside the epoch: the fragment only
    assert not redraw_page(snapshot("training", 2), 2, late)
    assert redraw_page(snapshot("training", 3), 2, late)  # an epoch ended: the per-epoch figure is redrawn
    assert not redraw_page(snapshot("training", 3), 2, late / 2)  # … at most every EPOCH_REDRAW_S
    assert redraw_page(snapshot("done", 2), 2, 0.0)  # the run ended: the page registers its model at once
    assert redraw_page(snapshot("cancelled", 0), 0, 0.0)


def test_after_a_run_its_result_is_on_top_the_form_folded_and_one_speed_shown(env: Path, pool: RunPool) -> None:
    at = tiny(goto(start(), "train"))
    assert at.expander[0].proto.expanded  # before the first run the form is open
    job = run_job(at, "tr_start", "train_job")
    snap = job.snapshot()
    assert snap.status == "done", snap.error
    speed = f"{snap.result['examples_per_s']:,.0f}"
    assert snap.examples_per_s == snap.result["examples_per_s"]
    assert [m.value for m in at.metric if m.label == "Examples / s"] == [speed]
    assert f"· {speed} examples/s on cpu" in at.success[0].value
    assert not at.expander[0].proto.expanded  # the form stays folded after the run
    order = [type(el).__name__ for el in at.main]
    assert order.index("Success") < order.index("Expander"), order  # the result above the form
    assert snap.history and "train_logloss" in snap.history[0] and "val" in snap.history[0]  # fit's own rows


def server_cached_shas() -> set[str]:
    """The content hashes of every model the server-wide caches (st.cache_resource) hold."""
    from streamlit.runtime.caching.cache_resource_api import _resource_caches

    shas = set()
    for caches in _resource_caches._function_caches.values():
        for cache in caches.values():
            for result in list(cache._mem_cache.values()):
                sha = getattr(result.value, "sha256", None)
                if isinstance(sha, str):
                    shas.add(sha)
    return shas


def test_a_trained_model_is_analysed_in_its_session_not_in_the_servers_caches(env: Path, pool: RunPool) -> None:
    at = tiny(goto(start(), "train"))
    job = run_job(at, "tr_start", "train_job")
    assert job.snapshot().status == "done"
    at = goto(at, "crosses")  # the trained model is the one shown now: its heatmap is computed
    ok(at)
    trained = [e for e in at.session_state["dcnviz_models"].values() if e.origin == "trained"]
    assert len(trained) == 1 and at.session_state["model_key"] == trained[0].key
    memo = at.session_state["dcnviz_private_memo"]
    assert {k[0] for k in memo["bundle"]} == {trained[0].sha256}
    assert {k[0] for k in memo["layer"]} == {trained[0].sha256}
    assert trained[0].sha256 not in server_cached_shas()  # nothing of it outlives the session


def test_a_run_waits_in_the_queue_with_its_position_shown(env: Path, pool: RunPool) -> None:
    blocker = StandIn(wait_for_stop, "other session's run", pool=pool, isolate=False).start()
    until(lambda: blocker.status == "training")
    try:
        at = tiny(goto(start(), "train"))
        at.button(key="tr_start").click().run()
        ok(at)
        job = at.session_state["train_job"]
        assert job.snapshot().status == "queued" and job.snapshot().queue_position == 1
        assert any("Waiting for a free slot: queued: 1 in line" in i.value for i in at.info)
        assert not [c for c in at.sidebar.caption if c.value.startswith("Training:")]  # the page says it
        goto(at, "crosses")
        assert any(c.value.startswith("Training: queued: 1 in line") for c in at.sidebar.caption)
    finally:
        blocker.stop()
    until(lambda: job.snapshot().finished, timeout=180)
    at.run()
    ok(at)
    assert job.snapshot().status == "done"


def test_a_cancelled_run_says_so_and_keeps_nothing(env: Path, pool: RunPool) -> None:
    at = tiny(goto(start(), "train"), epochs=50)
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    until(lambda: job.snapshot().status == "training", timeout=180)
    job.cancel("cancelled: the session that started it ended (tab closed or session expired)")
    assert job.join(30)
    at.run()
    ok(at)
    assert any("This run was cancelled: the session that started it ended" in w.value for w in at.warning)
    snap = job.snapshot()
    assert snap.model_bytes is None and snap.result is None and not snap.ticks
    assert not any(k.startswith("trained:") for k in at.sidebar.selectbox(key="model_key").options)
    assert pool.counts() == (0, 0)


def test_the_sidebar_shows_the_runs_current_state_on_every_page(env: Path, pool: RunPool) -> None:
    at = tiny(goto(start(), "train"), epochs=50)
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    until(lambda: "epoch" in job.snapshot().message and "step" in job.snapshot().message, timeout=180)
    goto(at, "crosses")
    captions = [c.value for c in at.sidebar.caption if c.value.startswith("Training:")]
    assert len(captions) == 1 and "epoch" in captions[0] and "loading" not in captions[0]
    job.stop()
    until(lambda: job.snapshot().finished, timeout=120)
    time.sleep(0.1)
    at.run()
    assert not [c for c in at.sidebar.caption if c.value.startswith("Training:")]
    assert at.sidebar.selectbox(key="model_key").value.startswith("trained:")  # registered on any page


def test_the_workers_fork_server_is_warmed_by_the_page(env: Path) -> None:
    goto(start(), "train")
    until(lambda: jobs._warming.is_set())
