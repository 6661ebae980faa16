"""Peer-library importers: exact key layouts, orientation, blocks, detection, names, init baselines.

Fixtures under tests/fixtures/peers/ were written by scripts/make_peer_fixtures.py; for each model the
``.expected.npz`` holds a batch x0 and the *library's own* cross-network output on it (see the fixture
README for which are real and which hand-made). Re-computing that output from the imported weights with
the paper's equations checks W vs Wᵀ, V vs Vᵀ, bias placement, gates and activations at once.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dcnviz.checkpoint import model_to_bytes
from dcnviz.errors import CheckpointError, ConfigError, DataFormatError, ImportFormatError
from dcnviz.importers import FORMATS, detect_format, load_cross_weights, read_names_file, read_names_or_feature_map
from dcnviz.importers.common import MAX_D
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.weights import CrossModelWeights
from tests.helpers import PEERS


def torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _act(name: str):  # type: ignore[no-untyped-def]
    return {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), "identity": lambda z: z}[name]


def cross_forward(cw: CrossModelWeights, x0: np.ndarray) -> np.ndarray:
    """The paper's cross network (Eq. 1-4, DCN-V1) on rows x0 (B, d), from the common form only."""
    x = x0
    for layer in cw.layers:
        b = np.zeros(cw.d) if layer.b is None else layer.b
        if layer.kind == "full":
            x = x0 * (x @ layer.W.T + b) + x
        elif layer.kind == "lowrank":
            x = x0 * ((x @ layer.V) @ layer.U.T + b) + x
        elif layer.kind == "vector":
            assert layer.bias_outside
            x = x0 * (x @ layer.w)[:, None] + b + x
        else:
            g = _act(layer.activation)
            K = len(layer.experts)
            if layer.gates is not None:
                logits = x @ layer.gates.T + (0 if layer.gate_bias is None else layer.gate_bias)  # (B, K)
                logits = logits - logits.max(axis=1, keepdims=True)
                G = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            else:
                G = np.ones((x.shape[0], K))  # K = 1 without gates (torchrec): the lone expert, weight 1
            out = np.zeros_like(x)
            for k, e in enumerate(layer.experts):
                out += G[:, k : k + 1] * (x0 * (g(g(x @ e.V) @ e.C.T) @ e.U.T + b))
            x = out + x
    return x


FIXTURES = [
    ("deepctr_dcn_matrix.pt", "deepctr", "full"),
    ("deepctr_dcn_vector.pt", "deepctr", "vector"),
    ("deepctr_dcnmix.pt", "deepctr", "mixture"),
    ("fuxictr_dcnv2.pt", "fuxictr", "full"),
    ("fuxictr_dcnv2_mix.pt", "fuxictr", "mixture"),
    ("fuxictr_dcn.pt", "fuxictr", "vector"),
    ("torchrec_dlrm_dcn.pt", "torchrec", "lowrank"),
    ("torchrec_mixture.pt", "torchrec", "mixture"),
    ("tfrs_cross.npz", "tfrs", None),
    ("tfrs_cross.weights.h5", "tfrs", None),
    ("recbole_dcnv2.pt", "recbole", "full"),
    ("recbole_dcnv2_mixed.pt", "recbole", "mixture"),
    ("recbole_dcn.pt", "recbole", "vector"),
    ("recbole_dcnv2_checkpoint.pth", "recbole", "full"),
]


@pytest.mark.parametrize(("name", "fmt", "kind"), FIXTURES)
def test_fixture_reproduces_library_forward(name, fmt, kind):
    path = PEERS / name
    if not path.exists():
        pytest.skip(f"{name} not generated (see tests/fixtures/peers/README.md)")
    cw = load_cross_weights(path)
    assert cw.format == fmt == detect_format_of(path)
    if kind is not None:
        assert {layer.kind for layer in cw.layers} == {kind}
    expected = np.load(PEERS / (name.rsplit(".", 1)[0] + ".expected.npz"), allow_pickle=False)
    np.testing.assert_allclose(cross_forward(cw, expected["x0"]), expected["out"], rtol=1e-5, atol=1e-5)
    # the same weights read as forced format give the same answer
    forced = load_cross_weights(path, format=fmt)
    np.testing.assert_array_equal(forced.layers[0].effective_weight(), cw.layers[0].effective_weight())


def detect_format_of(path: Path) -> str:
    from dcnviz.importers import read_tensor_file

    return detect_format(read_tensor_file(path.read_bytes(), max_bytes=1 << 30).tensors)


def test_fixture_forward_check_detects_a_transpose():
    """The forward check above can fail: transposing W breaks it."""
    path = PEERS / "deepctr_dcn_matrix.pt"
    cw = load_cross_weights(path)
    expected = np.load(PEERS / "deepctr_dcn_matrix.expected.npz")
    cw.layers = [dataclasses.replace(layer, W=layer.W.T.copy()) for layer in cw.layers]  # frozen: a transposed copy
    assert not np.allclose(cross_forward(cw, expected["x0"]), expected["out"], atol=1e-3)


def test_deepctr_blocks_and_description():
    cw = load_cross_weights(PEERS / "deepctr_dcnmix.pt")
    assert [(b.name, b.start, b.stop, b.kind) for b in cw.blocks] == [
        ("user", 0, 4, "sparse"),
        ("movie", 4, 7, "sparse"),
        ("dense", 7, 8, "dense_raw"),
    ]
    assert cw.detected.startswith("DeepCTR-Torch DCNMix: 2 layers, K=3 experts, r=2, d=8")
    layer = cw.layers[0]
    assert layer.activation == "tanh" and layer.linear_part_only and layer.gates_shared
    assert layer.gates is not None and layer.gates.shape == (3, 8)
    assert cw.layers[0].gates is cw.layers[1].gates


def test_fuxictr_blocks_with_and_without_feature_map():
    path = PEERS / "fuxictr_dcnv2.pt"
    if not path.exists():
        pytest.skip("FuxiCTR fixture not generated")
    plain = load_cross_weights(path)
    assert [(b.name, b.width, b.kind) for b in plain.blocks] == [
        ("user_id", 4, "sparse"),
        ("price", 2, "dense_embedded"),
    ]
    mapped = load_cross_weights(path, feature_map=PEERS / "fuxictr_feature_map.json")
    assert [(b.name, b.width) for b in mapped.blocks] == [("user_id", 4), ("price", 2)]
    # the feature map decides the order (here: reversed on purpose)
    fmap = {"features": [{"price": {"type": "numeric"}}, {"user_id": {"type": "categorical"}}]}
    rev = load_cross_weights(path, feature_map=fmap)
    assert [(b.name, b.start, b.stop) for b in rev.blocks] == [("price", 0, 2), ("user_id", 2, 6)]
    with pytest.raises(DataFormatError, match="features"):
        load_cross_weights(path, feature_map=b'{"nothing": 1}')


def test_names_upload_is_a_names_file_or_a_feature_map():
    raw = (PEERS / "fuxictr_feature_map.json").read_bytes()
    fmap = read_names_or_feature_map(raw)
    assert isinstance(fmap, dict) and "features" in fmap
    assert read_names_or_feature_map(b"name,width\nuser,8\n") == [{"name": "user", "width": 8}]
    with pytest.raises(DataFormatError, match="feature_map.json"):
        read_names_or_feature_map(b'{"names": ["a"]}')  # an object, but not a feature map
    with pytest.raises(DataFormatError, match=r"features\[0\]"):
        read_names_or_feature_map(b'{"features": [{"a": {}, "b": {}}]}')
    with pytest.raises(DataFormatError, match="the names file is not valid JSON"):
        read_names_or_feature_map(b'{"features": [')


def test_torchrec_dlrm_blocks_and_prefix():
    cw = load_cross_weights(PEERS / "torchrec_dlrm_dcn.pt")
    assert [(b.name, b.width, b.kind) for b in cw.blocks] == [
        ("dense_arch", 2, "dense_mlp"),
        ("t_user", 2, "sparse"),
        ("t_movie", 2, "sparse"),
    ]
    assert "DLRM_DCN" in cw.detected and "inter_arch.crossnet." in cw.detected
    assert [layer.rank_bound for layer in cw.layers] == [2, 2]


def test_torchrec_mixture_activation_is_labelled():
    cw = load_cross_weights(PEERS / "torchrec_mixture.pt")
    assert all(layer.activation == "relu" and layer.linear_part_only for layer in cw.layers)
    assert "relu (assumed)" in cw.detected
    assert any("assumed relu" in n for n in cw.layers[0].notes)


# --- orientation known answers on hand-made layouts (one nonzero W[out=i, in=j]) ----------------
N, OUT, IN = 5, 1, 3  # W[1, 3] = 1: output slot 1 reads input slot 3


def _one(shape: tuple[int, ...], idx: tuple[int, ...]) -> torch.Tensor:
    t = torch.zeros(shape)
    t[idx] = 1.0
    return t


FULL_LAYOUTS = {
    "deepctr": {"crossnet.kernels": _one((1, N, N), (0, OUT, IN)), "crossnet.bias": torch.zeros(1, N, 1)},
    "torchrec": {"kernels.0": _one((N, N), (OUT, IN)), "bias.0": torch.zeros(N, 1)},
    "fuxictr": {
        "crossnet.cross_layers.0.weight": _one((N, N), (OUT, IN)),
        "crossnet.cross_layers.0.bias": torch.zeros(N),
    },
    "recbole": {"cross_layer_w.0": _one((N, N), (OUT, IN)), "bias.0": torch.zeros(N, 1)},
}


@pytest.mark.parametrize("fmt", sorted(FULL_LAYOUTS))
def test_full_rank_orientation(fmt):
    cw = load_cross_weights(torch_bytes(FULL_LAYOUTS[fmt]))
    assert cw.format == fmt
    W = cw.layers[0].effective_weight()
    assert W[OUT, IN] == 1.0 and np.count_nonzero(W) == 1


def test_tfrs_kernel_is_transposed():
    kernel = np.zeros((N, N))
    kernel[IN, OUT] = 1.0  # Keras (in, out): x @ kernel puts input IN into output OUT
    cw = load_cross_weights(npz_bytes(**{"cross/dense/kernel:0": kernel, "cross/dense/bias:0": np.zeros(N)}))
    W = cw.layers[0].effective_weight()
    assert cw.format == "tfrs" and W[OUT, IN] == 1.0 and np.count_nonzero(W) == 1


def test_tfrs_feature_blocks_from_its_embedding_tables():
    """Keras Embedding tables name and size the blocks, in the file's order; what is left is one raw block."""
    d = 3 + 2 + 1  # movie_id (E=3), user_embedding (E=2), one dense input
    tables = {
        "movie_id_embedding/embeddings:0": np.zeros((10, 3)),  # v.name
        "embedding_user_id/embeddings": np.zeros((7, 2)),  # v.path
        "cross/dense/kernel:0": np.eye(d),
        "cross/dense/bias:0": np.zeros(d),
    }
    cw = load_cross_weights(npz_bytes(**tables))
    assert [(b.name, b.start, b.stop) for b in cw.blocks] == [("movie_id", 0, 3), ("user_id", 3, 5), ("dense", 5, 6)]
    assert any("Embedding tables, in the file's order" in w for w in cw.warnings)
    # .weights.h5-style names: only layers whose name says "embedding"; widths beyond d are refused.
    wide = {"layers/embedding_2/vars/0": np.zeros((5, d + 1)), "layers/dense_9/vars/0": np.zeros((4, 2))}
    cw = load_cross_weights(npz_bytes(**wide, **{k: v for k, v in tables.items() if k.startswith("cross/")}))
    assert [b.name for b in cw.blocks] == ["x0"]
    assert any("widths sum to 7, more than x0's width d=6" in w for w in cw.warnings)


def test_lowrank_orientation_torchrec_and_tfrs():
    # torchrec: W = W_kernels @ V_kernels, with W_kernels = e_I (N, 1) and V_kernels = e_Jᵀ (1, N)
    tr = {"W_kernels.0": _one((N, 1), (OUT, 0)), "V_kernels.0": _one((1, N), (0, IN)), "bias.0": torch.zeros(N)}
    W = load_cross_weights(torch_bytes(tr)).layers[0].effective_weight()
    assert W[OUT, IN] == 1.0 and np.count_nonzero(W) == 1
    # TFRS: x A B with A = _dense_u (N, r), B = _dense_v (r, N); W = (A B)ᵀ
    A, Bm = np.zeros((N, 2)), np.zeros((2, N))
    A[IN, 0], Bm[0, OUT] = 1.0, 1.0
    keys = {"cross/_dense_u/kernel": A, "cross/_dense_v/kernel": Bm, "cross/_dense_v/bias": np.zeros(N)}
    cw = load_cross_weights(npz_bytes(**keys))
    W = cw.layers[0].effective_weight()
    assert cw.layers[0].kind == "lowrank" and W[OUT, IN] == 1.0 and np.count_nonzero(W) == 1


def test_mixture_v_is_applied_transposed():
    """DeepCTR/FuxiCTR/RecBole store V (N, r) and apply Vᵀx; torchrec stores Vᵀ (r, N)."""
    r = 1
    U, V = _one((1, 1, N, r), (0, 0, OUT, 0)), _one((1, 1, N, r), (0, 0, IN, 0))
    sd = {
        "crossnet.U_list": U,
        "crossnet.V_list": V,
        "crossnet.C_list": torch.ones(1, 1, r, r),
        "crossnet.bias": torch.zeros(1, N, 1),
    }
    W = load_cross_weights(torch_bytes(sd)).layers[0].effective_weight()
    assert W[OUT, IN] == 1.0 and np.count_nonzero(W) == 1
    tr = {
        "U_kernels.0": U[0],
        "V_kernels.0": V[0].transpose(1, 2).contiguous(),
        "C_kernels.0": torch.ones(1, r, r),
        "bias.0": torch.zeros(N, 1),
    }
    cw = load_cross_weights(torch_bytes(tr))
    W = cw.layers[0].effective_weight()
    assert W[OUT, IN] == 1.0 and np.count_nonzero(W) == 1 and cw.layers[0].gates is None


def test_recbole_dcn_vs_dcnv2_by_shape_and_gate_bias():
    v1 = {
        "cross_layer_w.0": torch.arange(4.0),
        "cross_layer_b.0": torch.ones(4),
        "token_embedding_table.embedding.weight": torch.zeros(9, 2),
    }
    cw = load_cross_weights(torch_bytes(v1))
    assert cw.layers[0].kind == "vector" and cw.layers[0].bias_outside
    np.testing.assert_array_equal(cw.layers[0].effective_weight()[3], [0, 1, 2, 3])  # W = 1 wᵀ
    assert [b.name for b in cw.blocks] == ["field_0", "field_1"] and cw.initial_layers is None
    assert "uninitialised" in cw.init_label
    K, d, r = 2, 4, 1
    mixed = {
        "cross_layer_u.0": torch.randn(K, d, r),
        "cross_layer_v.0": torch.randn(K, d, r),
        "cross_layer_c.0": torch.randn(K, r, r),
        "bias.0": torch.zeros(d, 1),
        **{f"gating.{k}.weight": torch.randn(1, d) for k in range(K)},
        **{f"gating.{k}.bias": torch.tensor([float(k) + 0.5]) for k in range(K)},
    }
    cw = load_cross_weights(torch_bytes(mixed))
    np.testing.assert_allclose(cw.layers[0].gate_bias, [0.5, 1.5])
    assert "gates with bias" in cw.detected


# --- wrappers, detection, forced formats --------------------------------------------------------
def test_wrapper_prefixes_are_stripped():
    sd = torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)
    ref = load_cross_weights(PEERS / "deepctr_dcn_matrix.pt")
    for wrap in ("module.", "_orig_mod.module.", "model."):
        wrapped = {wrap + k: v for k, v in sd.items()}
        cw = load_cross_weights(torch_bytes(wrapped))
        assert cw.format == "deepctr" and [b.name for b in cw.blocks] == ["user", "movie", "dense"]
        np.testing.assert_array_equal(cw.layers[1].W, ref.layers[1].W)
    # a Lightning-style checkpoint dict: tensors come from its "state_dict" entry
    ckpt = {"epoch": 3, "state_dict": {"model." + k: v for k, v in sd.items()}, "hyper_parameters": {"lr": 0.1}}
    cw = load_cross_weights(torch_bytes(ckpt))
    assert cw.format == "deepctr"
    assert any("'state_dict' entry" in w for w in cw.warnings) and any("'epoch'" in w for w in cw.warnings)


def test_forced_format_mismatch_names_expected_keys():
    data = (PEERS / "torchrec_mixture.pt").read_bytes()
    with pytest.raises(ImportFormatError, match=r"not a DeepCTR-Torch state dict.*crossnet\.kernels"):
        load_cross_weights(data, format="deepctr")
    with pytest.raises(ImportFormatError, match="not a dcnviz model file"):
        load_cross_weights(data, format="dcnviz")
    with pytest.raises(ImportFormatError, match="not TensorFlow Recommenders Cross weights"):
        load_cross_weights(data, format="tfrs")
    with pytest.raises(ConfigError, match="format must be one of"):
        load_cross_weights(data, format="keras")


def test_partial_layout_names_missing_key():
    with pytest.raises(ImportFormatError, match=r"missing 'crossnet\.C_list'"):
        load_cross_weights(
            torch_bytes(
                {
                    "crossnet.U_list": torch.zeros(1, 2, 4, 1),
                    "crossnet.V_list": torch.zeros(1, 2, 4, 1),
                    "crossnet.bias": torch.zeros(1, 4, 1),
                }
            )
        )
    with pytest.raises(ImportFormatError, match=r"'V_kernels.0' has shape \[2, 4\]; expected \[1, 4\]"):
        load_cross_weights(
            torch_bytes({"W_kernels.0": torch.zeros(4, 1), "V_kernels.0": torch.zeros(2, 4), "bias.0": torch.zeros(4)})
        )
    with pytest.raises(ImportFormatError, match=r"indices must run 0..L-1"):
        load_cross_weights(torch_bytes({"kernels.0": torch.zeros(4, 4), "kernels.2": torch.zeros(4, 4)}))


def test_detection_errors():
    with pytest.raises(ImportFormatError, match="no known cross-network layout"):
        load_cross_weights(torch_bytes({"encoder.weight": torch.zeros(3, 3)}))
    both = {**FULL_LAYOUTS["deepctr"], **FULL_LAYOUTS["recbole"]}
    with pytest.raises(ImportFormatError, match="several layouts"):
        detect_format(both)
    assert load_cross_weights(torch_bytes(both), format="recbole").format == "recbole"
    assert FORMATS == ("auto", "dcnviz", "torchrec", "deepctr", "fuxictr", "recbole", "tfrs")


def test_oversized_layouts_are_refused_before_conversion():
    # an expanded (stride-0) tensor is tiny on disk but claims a huge shape: refused for the elements it
    # views (issue 11), before the importer's own width and size caps are reached
    huge = torch.zeros(1, 1, 1).expand(1, MAX_D + 1, MAX_D + 1)
    with pytest.raises(CheckpointError, match="views that repeat stored values"):
        load_cross_weights(torch_bytes({"crossnet.kernels": huge, "crossnet.bias": torch.zeros(1, 1, 1)}))
    wide = {"crossnet.kernels": torch.zeros(1, MAX_D + 1, 1), "crossnet.bias": torch.zeros(1, MAX_D + 1, 1)}
    with pytest.raises(ImportFormatError, match=r"x0 width must be in \[1, 8192\]"):
        load_cross_weights(torch_bytes(wide))
    with pytest.raises(ImportFormatError, match="floating point"):
        load_cross_weights(torch_bytes({"kernels.0": torch.zeros(3, 3, dtype=torch.int64), "bias.0": torch.zeros(3)}))


def test_non_finite_weights_load_with_warning():
    sd = {"kernels.0": torch.full((3, 3), float("nan")), "bias.0": torch.zeros(3, 1)}
    cw = load_cross_weights(torch_bytes(sd))
    assert any("NaN or Inf" in w for w in cw.warnings)


def test_safetensors_peer_file_warns_about_order():
    from safetensors.torch import save

    sd = torch.load(PEERS / "deepctr_dcn_matrix.pt", weights_only=True)
    cw = load_cross_weights(save({k: v.contiguous() for k, v in sd.items()}))
    assert cw.format == "deepctr" and "[safetensors]" in cw.detected
    assert any("sorted by name" in w for w in cw.warnings)


# --- dcnviz files --------------------------------------------------------------------------------
SPEC = FeatureSpec(
    (Field(name="a", kind="categorical", embedding_dim=3, vocab=("x",)), Field(name="c", kind="dense", embedding_dim=1))
)


def test_dcnviz_file_and_forced_mismatch():
    torch.manual_seed(0)
    data = model_to_bytes(DCNModel(SPEC, ModelConfig(rank=2)))
    cw = load_cross_weights(data)
    assert cw.format == "dcnviz" and [b.name for b in cw.blocks] == ["a", "c"]
    assert cw.init_label == "saved initial weights" and cw.initial_layers is not None
    renamed = load_cross_weights(data, names=["alpha", "gamma"])
    assert [(b.name, b.width) for b in renamed.blocks] == [("alpha", 3), ("gamma", 1)]
    with pytest.raises(ImportFormatError, match="dcnviz model file"):
        load_cross_weights(data, format="deepctr")


def test_unreadable_files():
    with pytest.raises(CheckpointError, match="empty"):
        load_cross_weights(b"")
    with pytest.raises(CheckpointError, match="unrecognised file"):
        load_cross_weights(b"hello, I am not a model" * 3)
    with pytest.raises(CheckpointError, match="over the 10-byte limit"):
        load_cross_weights(b"x" * 11, max_bytes=10)
    with pytest.raises(CheckpointError, match="no model file"):
        load_cross_weights("/nonexistent/model.pt")


def test_npz_header_must_match_member_size():
    import zipfile

    member = io.BytesIO()
    np.lib.format.write_array(member, np.zeros((3, 3)))
    lying = member.getvalue().replace(b"(3, 3)", b"(9, 9)")  # same-length header, data too short for it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # a valid zip (CRC matches): only the .npy header lies
        z.writestr("kernel.npy", lying)
    bad = buf.getvalue()
    with pytest.raises(CheckpointError, match="header says shape"):
        load_cross_weights(bad)
    objs = io.BytesIO()
    np.savez(objs, kernel=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="Python objects"):
        load_cross_weights(objs.getvalue())


# --- names ---------------------------------------------------------------------------------------
def test_read_names_file_forms(tmp_path):
    (tmp_path / "n.json").write_text('["user", "movie", "dense"]')
    assert read_names_file(tmp_path / "n.json") == ["user", "movie", "dense"]
    (tmp_path / "w.json").write_text(json.dumps([{"name": "u", "width": 4}, {"name": "m", "width": 4}]))
    assert read_names_file(tmp_path / "w.json") == [{"name": "u", "width": 4}, {"name": "m", "width": 4}]
    (tmp_path / "n.csv").write_text("user\nmovie\n")
    assert read_names_file(tmp_path / "n.csv") == ["user", "movie"]
    (tmp_path / "w.csv").write_text("name,width\nuser,4\nmovie,4\n")
    assert read_names_file(tmp_path / "w.csv") == [{"name": "user", "width": 4}, {"name": "movie", "width": 4}]
    for bad, msg in [
        (b'["a", "a"]', "duplicate"),
        (b'[{"name": "a", "width": 0}]', "width an int >= 1"),
        (b'["a", {"name": "b", "width": 2}]', "not a mix"),
        (b"a,x\n", "not an integer"),
        (b"[1, 2", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
    ]:
        with pytest.raises(DataFormatError, match=msg):
            read_names_file(bad)


def test_names_applied_to_blocks():
    path = PEERS / "torchrec_mixture.pt"  # d = 6, no blocks in the file
    cw = load_cross_weights(path, names=["a", "b", "c"])
    assert [(b.name, b.start, b.stop) for b in cw.blocks] == [("a", 0, 2), ("b", 2, 4), ("c", 4, 6)]
    cw = load_cross_weights(path, names=[{"name": "wide", "width": 5}, {"name": "one", "width": 1}])
    assert [(b.name, b.width) for b in cw.blocks] == [("wide", 5), ("one", 1)]
    with pytest.raises(ConfigError, match="widths sum to 7, but x0 has width d=6"):
        load_cross_weights(path, names=[{"name": "a", "width": 5}, {"name": "b", "width": 2}])
    with pytest.raises(ConfigError, match="cannot infer block widths"):
        load_cross_weights(path, names=["a", "b", "c", "d"])
    # names only, same count as the inferred blocks: renames them and keeps their (unequal) widths
    cw = load_cross_weights(PEERS / "deepctr_dcn_matrix.pt", names=["U", "M", "D"])
    assert [(b.name, b.width) for b in cw.blocks] == [("U", 4), ("M", 3), ("D", 1)]
    assert [b.name for b in load_cross_weights(path).blocks] == ["x0"]


# --- init baselines ------------------------------------------------------------------------------
def test_init_baselines_follow_each_library():
    d = 64
    deep = load_cross_weights(
        torch_bytes({"crossnet.kernels": torch.zeros(1, d, d), "crossnet.bias": torch.zeros(1, d, 1)})
    )
    W0 = deep.initial_layers[0].effective_weight()
    assert (
        "xavier_normal_" in deep.init_label
        and "DeepCTR-Torch" in deep.init_label
        and "not this model" in deep.init_label
    )
    assert abs(W0.std() - (1 / d) ** 0.5) < 0.1 * (1 / d) ** 0.5  # xavier on (d, d): std √(2/(d+d))
    rec = load_cross_weights(torch_bytes({"cross_layer_w.0": torch.zeros(d, d), "bias.0": torch.zeros(d, 1)}))
    assert "N(0, 1)" in rec.init_label and abs(rec.initial_layers[0].W.std() - 1.0) < 0.05
    tf = load_cross_weights(npz_bytes(**{"cross/dense/kernel:0": np.zeros((d, d)), "cross/dense/bias:0": np.zeros(d)}))
    Wt = tf.initial_layers[0].W
    assert "truncated_normal (stddev 0.05)" in tf.init_label
    assert np.abs(Wt).max() <= 0.1 and abs(Wt.std() - 0.05 * 0.8796) < 0.004  # std of N(0,1) cut at ±2 is 0.8796
    again = load_cross_weights(
        torch_bytes({"crossnet.kernels": torch.zeros(1, d, d), "crossnet.bias": torch.zeros(1, d, 1)})
    )
    np.testing.assert_array_equal(again.initial_layers[0].W, W0)  # fixed seed
    mix = load_cross_weights(PEERS / "torchrec_mixture.pt")
    assert [layer.kind for layer in mix.initial_layers] == ["mixture", "mixture"]
    assert mix.initial_layers[0].experts[0].V.shape == mix.layers[0].experts[0].V.shape


# --- Keras .weights.h5 ----------------------------------------------------------------------------
def _h5(build) -> bytes:  # type: ignore[no-untyped-def]
    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        build(f)
    return buf.getvalue()


def test_h5_external_storage_is_refused(tmp_path):
    """HDF5 can point a dataset at any local file; reading it would leak that file into the heatmap."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(16, dtype="<f4").tobytes())

    def build(f):  # type: ignore[no-untyped-def]
        f.create_dataset("layers/cross/_dense/vars/0", shape=(4, 4), dtype="<f4", external=[(str(secret), 0, 64)])

    with pytest.raises(CheckpointError, match="external file"):
        load_cross_weights(_h5(build))


def test_h5_links_are_not_followed(tmp_path):
    h5py = pytest.importorskip("h5py")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["layers/cross/_dense/vars/0"] = np.ones((3, 3))

    def build(f):  # type: ignore[no-untyped-def]
        f["layers/cross/_dense/vars/0"] = np.eye(2)
        f["layers/cross_1"] = h5py.ExternalLink(str(other), "/layers/cross")

    cw = load_cross_weights(_h5(build))
    assert cw.d == 2 and len(cw.layers) == 1  # the external layer was not read


def test_h5_garbage_is_a_checkpoint_error():
    data = (PEERS / "tfrs_cross.weights.h5").read_bytes()
    with pytest.raises(CheckpointError):
        load_cross_weights(data[:600])


def test_safetensors_whose_header_length_looks_like_a_pickle_marker():
    """A header of exactly 128 bytes starts the file with 0x80, a pickle protocol marker."""
    import struct as _struct

    from safetensors.torch import save as _save

    for pad in range(0, 300):
        tensors = {"kernels.0": torch.eye(6), "bias.0": torch.zeros(6, 1)}
        data = _save(tensors, metadata={"p": "x" * pad})
        if _struct.unpack("<Q", data[:8])[0] % 256 == 0x80:
            break
    else:
        pytest.skip("could not build a header whose length ends in 0x80")
    assert data[:1] == b"\x80"
    cw = load_cross_weights(data, format="torchrec")
    assert cw.d == 6 and cw.layers[0].kind == "full"
