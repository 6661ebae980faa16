"""Generate the peer-library fixtures in tests/fixtures/peers/ (run once; CI never runs this).

Real files come from the peer libraries themselves, installed in throwaway environments:

    /work/benchvenv/bin/python scripts/make_peer_fixtures.py deepctr     # deepctr-torch 0.3.0, torch 2.13.0
    /work/peervenv/bin/python  scripts/make_peer_fixtures.py fuxictr     # fuxictr (see README for version)
    /work/peervenv/bin/python  scripts/make_peer_fixtures.py recbole     # recbole (see README for version)
    .venv/bin/python           scripts/make_peer_fixtures.py handmade keras_h5  # torchrec, TFRS: exact key layouts

For every model the script stores its state dict (``<name>.pt``) and, beside it, ``<name>.expected.npz``
holding a batch ``x0`` (B, N) and the library's own cross-network output ``out`` (B, N) on it, computed by
the library's forward pass. The tests re-compute that output from the *imported* weights with the
paper's equations, which checks orientation (W vs Wᵀ, V vs Vᵀ), the bias placement, the gates and the
expert activation against the real code. Files stay a few KB: tiny feature columns, 2 cross layers.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "peers"
B = 4  # rows of the stored x0 batch


def save(name: str, state: dict, x0: torch.Tensor, out: torch.Tensor, info: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(state, OUT / f"{name}.pt")
    np.savez(OUT / f"{name}.expected.npz", x0=x0.detach().double().numpy(), out=out.detach().double().numpy())
    info_path = OUT / "provenance.json"
    prov = json.loads(info_path.read_text()) if info_path.exists() else {}
    prov[name] = info
    info_path.write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {(OUT / f'{name}.pt').stat().st_size} bytes, keys {list(state)[:6]}...")


def versions(*mods: str) -> dict:
    import importlib

    out = {"torch": torch.__version__, "python": sys.version.split()[0]}
    for m in mods:
        out[m] = getattr(importlib.import_module(m), "__version__", "?")
    return out


# --- DeepCTR-Torch (real) ----------------------------------------------------------------------
def deepctr() -> None:
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import DCN, DCNMix

    cols = [
        SparseFeat("user", vocabulary_size=5, embedding_dim=4),
        SparseFeat("movie", vocabulary_size=7, embedding_dim=3),
        DenseFeat("age", 1),
    ]
    N = 4 + 3 + 1
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, N, generator=g)
    common = dict(dnn_hidden_units=(4,), device="cpu", seed=7)
    for name, model in [
        ("deepctr_dcn_matrix", DCN(cols, cols, cross_num=2, cross_parameterization="matrix", **common)),
        ("deepctr_dcn_vector", DCN(cols, cols, cross_num=2, cross_parameterization="vector", **common)),
        ("deepctr_dcnmix", DCNMix(cols, cols, cross_num=2, low_rank=2, num_experts=3, **common)),
    ]:
        with torch.no_grad():  # trained weights are not at init: perturb so biases and gates are nonzero
            for k, p in model.named_parameters():
                if k.startswith("crossnet."):
                    p.add_(0.3 * torch.randn(p.shape, generator=g))
            out = model.crossnet(x0)
        save(name, model.state_dict(), x0, out, {"source": "real", **versions("deepctr_torch")})


# --- FuxiCTR (real, if it installs) --------------------------------------------------------------
def fuxictr() -> None:
    # fuxictr's package __init__ pulls in polars and ray (its data pipeline); the cross layers need
    # only torch, so load the library's own module file directly.
    import importlib.util

    import fuxictr

    path = Path(fuxictr.__file__).parent / "pytorch" / "layers" / "interactions" / "cross_net.py"
    spec = importlib.util.spec_from_file_location("fuxictr_cross_net", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    CrossNet, CrossNetMix, CrossNetV2 = mod.CrossNet, mod.CrossNetMix, mod.CrossNetV2

    N = 6
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(B, N, generator=g)
    emb = {
        "embedding_layer.embedding_layer.embedding_layers.user_id.weight": torch.randn(5, 4, generator=g),
        "embedding_layer.embedding_layer.embedding_layers.price.weight": torch.randn(2, 1, generator=g),
    }
    for name, net in [
        ("fuxictr_dcnv2", CrossNetV2(N, 2)),
        ("fuxictr_dcnv2_mix", CrossNetMix(N, layer_num=2, low_rank=2, num_experts=3)),
        ("fuxictr_dcn", CrossNet(N, 2)),
    ]:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            out = net(x0)
        state = dict(emb)
        state.update({f"crossnet.{k}": v for k, v in net.state_dict().items()})
        save(
            name,
            state,
            x0,
            out,
            {"source": "real cross module (fuxictr.pytorch.layers) + hand-made embeddings", **versions("fuxictr")},
        )
    fmap = {
        "dataset_id": "tiny",
        "num_fields": 2,
        "features": [
            {"user_id": {"source": "user", "type": "categorical", "vocab_size": 5}},
            {"price": {"source": "item", "type": "numeric"}},
        ],
    }
    (OUT / "fuxictr_feature_map.json").write_text(json.dumps(fmap, indent=2) + "\n")


# --- RecBole (real, if it installs) --------------------------------------------------------------
def recbole() -> None:
    """Real RecBole models built on a tiny dataset (two token fields), plus a real trainer-style checkpoint."""
    import os
    import tempfile

    # RecBole 1.2.1's Config.compatibility_settings() reads np.float_, np.complex_ and np.unicode_, which
    # NumPy 2 removed; give them their NumPy 2 names so the library runs unchanged otherwise.
    for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if old not in np.__dict__:
            setattr(np, old, new)
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.model.context_aware_recommender import DCN, DCNV2

    tmp = Path(tempfile.mkdtemp())
    (tmp / "tiny").mkdir()
    rows = ["user_id:token\titem_id:token\tlabel:float"]
    rows += [f"u{i % 4}\ti{(3 * i) % 5}\t{i % 2}" for i in range(40)]
    (tmp / "tiny" / "tiny.inter").write_text("\n".join(rows) + "\n")
    E = 3
    base = {
        "data_path": str(tmp),
        "embedding_size": E,
        "cross_layer_num": 2,
        "mlp_hidden_size": [4],
        "structure": "parallel",
        "reg_weight": 0.0,
        "dropout_prob": 0.0,
        "device": "cpu",
        "use_gpu": False,
        "LABEL_FIELD": "label",
        "threshold": None,
        "load_col": {"inter": ["user_id", "item_id", "label"]},
        "checkpoint_dir": str(tmp),
        "show_progress": False,
        "save_dataset": False,
        "state": "ERROR",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"},
    }
    g = torch.Generator().manual_seed(4)
    for name, cls, extra in [
        ("recbole_dcnv2", DCNV2, {"mixed": False}),
        ("recbole_dcnv2_mixed", DCNV2, {"mixed": True, "expert_num": 3, "low_rank": 2}),
        ("recbole_dcn", DCN, {}),
    ]:
        config = Config(model=cls.__name__, dataset="tiny", config_dict={**base, **extra})
        dataset = create_dataset(config)
        model = cls(config, dataset)
        N = model.num_feature_field * E
        x0 = torch.randn(B, N, generator=g)
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k.startswith(("cross_layer", "bias", "gating")):
                    if name == "recbole_dcn":  # DCN leaves these torch.empty: give them defined values
                        p.copy_(torch.randn(p.shape, generator=g))
                    else:
                        p.add_(0.3 * torch.randn(p.shape, generator=g))
            if name == "recbole_dcnv2_mixed":
                out = model.cross_network_mix(x0)
            elif name == "recbole_dcn":
                out = model.cross_network(x0)
            else:
                out = model.cross_network(x0)
        save(name, model.state_dict(), x0, out, {"source": "real", **versions("recbole")})
        if name == "recbole_dcnv2":
            # exactly what recbole.trainer.Trainer._save_checkpoint writes (pickled Config included)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            state = {
                "config": config,
                "epoch": 3,
                "cur_step": 0,
                "best_valid_score": 0.5,
                "state_dict": model.state_dict(),
                "other_parameter": model.other_parameter(),
                "optimizer": opt.state_dict(),
            }
            torch.save(state, OUT / "recbole_dcnv2_checkpoint.pth", pickle_protocol=4)
            np.savez(OUT / "recbole_dcnv2_checkpoint.expected.npz", x0=x0.double().numpy(), out=out.double().numpy())
            print("recbole_dcnv2_checkpoint.pth:", os.path.getsize(OUT / "recbole_dcnv2_checkpoint.pth"), "bytes")


# --- hand-made: torchrec and TFRS layouts (their forward written out from the library source) ---
def handmade() -> None:
    g = torch.Generator().manual_seed(3)
    N, r, K, L = 6, 2, 3, 2
    x0 = torch.randn(B, N, generator=g)

    def rn(*s: int) -> torch.Tensor:
        return 0.5 * torch.randn(*s, generator=g)

    # torchrec LowRankCrossNet under DLRM_DCN + DLRMTrain: model.inter_arch.crossnet.*
    D = 2
    st = {
        "model.dense_arch.model._mlp.0._linear.weight": rn(D, 3),
        "model.dense_arch.model._mlp.0._linear.bias": rn(D),
        "model.sparse_arch.embedding_bag_collection.embedding_bags.t_user.weight": rn(5, D),
        "model.sparse_arch.embedding_bag_collection.embedding_bags.t_movie.weight": rn(7, D),
    }
    W = [rn(N, r) for _ in range(L)]
    V = [rn(r, N) for _ in range(L)]
    b = [rn(N) for _ in range(L)]
    for i in range(L):
        st[f"model.inter_arch.crossnet.W_kernels.{i}"] = W[i]
        st[f"model.inter_arch.crossnet.V_kernels.{i}"] = V[i]
        st[f"model.inter_arch.crossnet.bias.{i}"] = b[i]
    st["model.over_arch.model.0._linear.weight"] = rn(1, N)
    x = x0.unsqueeze(2)
    xl = x
    for i in range(L):  # torchrec LowRankCrossNet.forward
        xl = x * (torch.matmul(W[i], torch.matmul(V[i], xl)) + b[i].unsqueeze(1)) + xl
    save("torchrec_dlrm_dcn", st, x0, xl.squeeze(2), {"source": "hand-made from torchrec/models/dlrm.py key layout"})

    # torchrec LowRankMixtureCrossNet (relu default), K experts, gates shared
    U = [rn(K, N, r) for _ in range(L)]
    Vt = [rn(K, r, N) for _ in range(L)]
    C = [rn(K, r, r) for _ in range(L)]
    bb = [rn(N, 1) for _ in range(L)]
    gates = [rn(1, N) for _ in range(K)]
    st = {}
    for i in range(L):
        st[f"U_kernels.{i}"], st[f"V_kernels.{i}"], st[f"C_kernels.{i}"], st[f"bias.{i}"] = U[i], Vt[i], C[i], bb[i]
    for k in range(K):
        st[f"gates.{k}.weight"] = gates[k]
    xl = x
    for i in range(L):  # torchrec LowRankMixtureCrossNet.forward
        gating = torch.stack([xl.squeeze(2) @ gates[k].T for k in range(K)], 1)  # (B, K, 1)
        experts = []
        for k in range(K):
            e = torch.matmul(C[i][k], torch.relu(torch.matmul(Vt[i][k], xl)))
            e = torch.matmul(U[i][k], torch.relu(e))
            experts.append((x * (e + bb[i])).squeeze(2))
        moe = torch.matmul(torch.stack(experts, 2), torch.softmax(gating, 1))
        xl = moe + xl
    save("torchrec_mixture", st, x0, xl.squeeze(2), {"source": "hand-made from torchrec/modules/crossnet.py"})

    # TFRS: two Cross layers (full rank, then low rank) exported with v.name, as np.savez would
    k0, b0 = rn(N, N), rn(N)
    A, Bm, b1 = rn(N, r), rn(r, N), rn(N)
    arrays = {
        "cross/dense/kernel:0": k0.numpy(),
        "cross/dense/bias:0": b0.numpy(),
        "cross_1/dense_1/kernel:0": A.numpy(),
        "cross_1/dense_2/kernel:0": Bm.numpy(),
        "cross_1/dense_2/bias:0": b1.numpy(),
    }
    np.savez(OUT / "tfrs_cross.npz", **arrays)
    xr = x0  # Keras rows: x_{l+1} = x0 * (x_l @ kernel + bias) + x_l
    xr = x0 * (xr @ k0 + b0) + xr
    xr = x0 * ((xr @ A) @ Bm + b1) + xr
    np.savez(OUT / "tfrs_cross.expected.npz", x0=x0.double().numpy(), out=xr.double().numpy())
    prov_path = OUT / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    prov["tfrs_cross"] = {"source": "hand-made from tensorflow_recommenders/layers/feature_interaction/dcn.py"}
    prov_path.write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")


def keras_h5() -> None:
    """The TFRS layers of tfrs_cross.npz in Keras 3's ``.weights.h5`` layout (``layers/<cross>/<attr>/vars/<i>``)."""
    import h5py

    src = np.load(OUT / "tfrs_cross.npz")
    with h5py.File(OUT / "tfrs_cross.weights.h5", "w") as f:
        f["layers/cross/_dense/vars/0"] = src["cross/dense/kernel:0"]
        f["layers/cross/_dense/vars/1"] = src["cross/dense/bias:0"]
        f["layers/cross_1/_dense_u/vars/0"] = src["cross_1/dense_1/kernel:0"]
        f["layers/cross_1/_dense_v/vars/0"] = src["cross_1/dense_2/kernel:0"]
        f["layers/cross_1/_dense_v/vars/1"] = src["cross_1/dense_2/bias:0"]
    expected = np.load(OUT / "tfrs_cross.expected.npz")
    np.savez(OUT / "tfrs_cross.weights.expected.npz", x0=expected["x0"], out=expected["out"])


def zip_members(path: Path) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as z:
        return z.namelist()


if __name__ == "__main__":
    which = sys.argv[1:] or ["handmade"]
    for w in which:
        {"deepctr": deepctr, "fuxictr": fuxictr, "recbole": recbole, "handmade": handmade, "keras_h5": keras_h5}[w]()
