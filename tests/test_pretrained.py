"""Pretrained-model registry: pooch against a local HTTP server, shipped models, errors.

Nothing here reaches the internet: a ``http.server`` on 127.0.0.1 serves a temporary
directory, and every cache is a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import xsuperres
from xsuperres import pretrained
from xsuperres.model import ModelFileError, SRModel
from xsuperres.pretrained import ModelRegistry, UnknownModelError, load_model, make_registry

NAME = "radar-s10-t3"
FILES = ("config.json", "model.safetensors", "model_card.md")


# ---------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_src(tmp_path_factory):
    """A small, saved, untrained model with a card: (directory of model dirs, model)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    cfg = xsuperres.SRConfig.recipe(10, 3)
    model = SRModel(cfg, normalization={"cap": 55.0, "topo_min": 0.0, "topo_max": 1000.0},
                    metadata={"data": "synthetic test fixture"})
    d = model.save(root / NAME, dtype="float16")
    (d / "model_card.md").write_text("# radar-s10-t3\n\nTest fixture, untrained.\n")
    return root, model


@pytest.fixture
def served(model_src, tmp_path, local_server):
    """Server over a copy of the model directories + a registry file with no shipped files."""
    src, _ = model_src
    www = tmp_path / "www"
    (www / NAME).mkdir(parents=True)
    for f in FILES:
        (www / NAME / f).write_bytes((src / NAME / f).read_bytes())
    reg_dir = tmp_path / "pkg"
    reg_dir.mkdir()
    make_registry(www, reg_dir / "registry.txt")
    yield local_server(www), ModelRegistry(reg_dir / "registry.txt"), tmp_path / "cache"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("XSUPERRES_CACHE", raising=False)
    monkeypatch.delenv("XSUPERRES_BASE_URL", raising=False)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _same_weights(a: SRModel, b: SRModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------
# registry file
# ---------------------------------------------------------------------------------------
def test_make_registry_lists_every_file_with_its_sha256(model_src, tmp_path):
    src, _ = model_src
    text = make_registry(src, tmp_path / "reg.txt")
    assert (tmp_path / "reg.txt").read_text() == text
    entries = dict(
        ln.split()[:2] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")
    )
    assert set(entries) == {f"{NAME}/{f}" for f in FILES}
    for f in FILES:
        assert entries[f"{NAME}/{f}"] == "sha256:" + _sha(src / NAME / f)
    reg = ModelRegistry(tmp_path / "reg.txt")
    assert reg.names() == [NAME]
    assert pretrained.list_models(registry=tmp_path / "reg.txt") == [NAME]


def test_make_registry_refuses_a_model_without_card(model_src, tmp_path):
    src, _ = model_src
    d = tmp_path / "radar-s1-t3"
    d.mkdir()
    for f in ("config.json", "model.safetensors"):
        (d / f).write_bytes((src / NAME / f).read_bytes())
    with pytest.raises(ModelFileError, match="model_card.md or card.json"):
        make_registry(tmp_path)
    assert "radar-s1-t3/config.json" in make_registry(tmp_path, require_card=False)


def test_make_registry_command_line(model_src, tmp_path, capsys):
    src, _ = model_src
    assert pretrained.main([str(src)]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}/model.safetensors sha256:{_sha(src / NAME / 'model.safetensors')}" in " ".join(
        out.split()
    )


def test_bad_registry_line_is_a_clear_error(tmp_path):
    (tmp_path / "r.txt").write_text("radar-s10-t3/config.json md5:abc\n")
    with pytest.raises(ModelFileError, match="needs a SHA-256"):
        ModelRegistry(tmp_path / "r.txt")
    (tmp_path / "r.txt").write_text("config.json sha256:" + "0" * 64 + "\n")
    with pytest.raises(ModelFileError, match="<model-name>/<file>"):
        ModelRegistry(tmp_path / "r.txt")


def test_package_registry_parses_and_is_honest():
    """The shipped registry parses; every listed model is well-formed (it may be empty)."""
    reg = ModelRegistry()
    assert reg.path == pretrained.REGISTRY_FILE
    assert xsuperres.pretrained.list_models() == reg.names()
    for name in reg.names():
        files = {e.file.split("/", 1)[1] for e in reg.files(name)}
        assert {"config.json", "model.safetensors"} <= files
        assert files & set(pretrained.CARD_FILES), f"{name} has no model card"


# ---------------------------------------------------------------------------------------
# downloads against the local server
# ---------------------------------------------------------------------------------------
def test_empty_cache_downloads_verifies_and_loads(served, model_src):
    srv, reg, cache = served
    _, original = model_src
    assert not cache.exists()
    model = load_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    assert sorted(srv.requests) == sorted(f"/{NAME}/{f}" for f in FILES)
    for f in FILES:  # cached and identical to the served files
        assert _sha(cache / "models" / NAME / f) == _sha(srv.root / NAME / f)
    assert isinstance(model, SRModel)
    assert model.config == original.config
    assert model.metadata["pretrained_name"] == NAME
    assert model.normalization["cap"] == 55.0
    # float16 on disk: the loaded weights are the float16-rounded originals
    ref = {k: v.half().float() if v.is_floating_point() else v
           for k, v in original.state_dict().items()}
    got = model.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_second_call_uses_the_cache(served):
    srv, reg, cache = served
    a = load_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    n = len(srv.requests)
    assert n == len(FILES)
    b = load_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    assert len(srv.requests) == n  # no new request
    assert _same_weights(a, b)
    # and works with no server at all (offline) once cached
    srv.close()
    c = load_model(NAME, registry=reg, base_url="http://127.0.0.1:9/", cache=cache)
    assert _same_weights(a, c)


def test_tampered_server_file_is_rejected(served):
    srv, reg, cache = served
    w = srv.root / NAME / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"safetensors.*does not match the registry sha256"):
        load_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    assert not (cache / "models" / NAME / "model.safetensors").exists()  # deleted by pooch


def test_truncated_server_file_is_rejected(served):
    srv, reg, cache = served
    w = srv.root / NAME / "model.safetensors"
    w.write_bytes(w.read_bytes()[: 1000])
    with pytest.raises(ModelFileError, match="truncated, tampered or outdated"):
        load_model(NAME, registry=reg, base_url=srv.url, cache=cache)


def test_tampered_cache_file_is_downloaded_again(served):
    srv, reg, cache = served
    load_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    cached = cache / "models" / NAME / "model.safetensors"
    cached.write_bytes(cached.read_bytes()[:-10])
    n = len(srv.requests)
    load_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    assert srv.requests[n:] == [f"/{NAME}/model.safetensors"]
    assert _sha(cached) == _sha(srv.root / NAME / "model.safetensors")


def test_missing_file_on_server_is_a_clear_error(served):
    srv, reg, cache = served
    (srv.root / NAME / "model_card.md").unlink()
    with pytest.raises(ModelFileError, match=r"could not download radar-s10-t3/model_card.md"):
        load_model(NAME, registry=reg, base_url=srv.url, cache=cache)


def test_unknown_name_lists_the_known_ones(served):
    _, reg, cache = served
    msg = r"unknown pretrained model 'radar-s99-t9'; known models: radar-s10-t3"
    with pytest.raises(UnknownModelError, match=msg) as e:
        load_model("radar-s99-t9", registry=reg, cache=cache)
    assert isinstance(e.value, KeyError) and isinstance(e.value, ModelFileError)
    empty = reg.path.parent / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(UnknownModelError, match="registry is empty"):
        load_model(NAME, registry=empty)


def test_env_overrides_cache_and_base_url(served, monkeypatch, tmp_path):
    srv, reg, _ = served
    env_cache = tmp_path / "env-cache"
    monkeypatch.setenv("XSUPERRES_CACHE", str(env_cache))
    monkeypatch.setenv("XSUPERRES_BASE_URL", srv.url.rstrip("/"))  # no trailing slash
    assert pretrained.cache_root() == env_cache
    model = load_model(NAME, registry=reg.path)  # no base_url / cache arguments
    assert isinstance(model, SRModel)
    assert len(srv.requests) == len(FILES)
    assert sorted(p.name for p in (env_cache / "models" / NAME).iterdir()) == sorted(FILES)
    # the env base URL also overrides per-file URLs written in the registry
    text = reg.path.read_text().splitlines()
    bad = [ln + " http://127.0.0.1:9/nowhere" if ln.startswith(NAME) else ln for ln in text]
    reg.path.write_text("\n".join(bad) + "\n")
    monkeypatch.setenv("XSUPERRES_CACHE", str(tmp_path / "env-cache-2"))
    load_model(NAME, registry=reg.path)
    assert len(srv.requests) == 2 * len(FILES)


def test_cache_root_is_one_rule_shared_with_topography(monkeypatch, tmp_path):
    """``xsuperres.cache.cache_root``: argument, else $XSUPERRES_CACHE, else pooch's OS cache."""
    import pooch

    from xsuperres import cache

    assert pretrained.cache_root is cache.cache_root
    default = Path(pooch.os_cache("xsuperres"))
    assert cache.cache_root() == default
    assert cache.cache_root(subdir=cache.GLO90) == default / "glo90"
    monkeypatch.setenv("XSUPERRES_CACHE", str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(subdir=cache.MODELS) == tmp_path / "env" / "models"
    assert cache.cache_root(tmp_path / "arg", "glo90") == tmp_path / "arg" / "glo90"
    assert cache.cache_root("~/c") == Path.home() / "c"


def test_no_base_url_configured_is_a_clear_error(served, monkeypatch):
    _, reg, cache = served
    monkeypatch.setattr(pretrained, "DEFAULT_BASE_URL", None)
    with pytest.raises(ModelFileError, match="XSUPERRES_BASE_URL"):
        load_model(NAME, registry=reg, cache=cache)


def test_model_card_and_fetch_model(served):
    srv, reg, cache = served
    d = pretrained.fetch_model(NAME, registry=reg, base_url=srv.url, cache=cache)
    assert d == cache / "models" / NAME
    assert pretrained.model_card(NAME, registry=reg, cache=cache).startswith("# radar-s10-t3")


# ---------------------------------------------------------------------------------------
# shipped models (no network)
# ---------------------------------------------------------------------------------------
@pytest.fixture
def shipped(model_src, tmp_path):
    """A package-like directory: registry.txt next to the model directory."""
    src, _ = model_src
    pkg = tmp_path / "weights"
    (pkg / NAME).mkdir(parents=True)
    for f in FILES:
        (pkg / NAME / f).write_bytes((src / NAME / f).read_bytes())
    make_registry(pkg, pkg / "registry.txt")
    return pkg


def test_shipped_model_loads_without_network_or_cache(shipped, model_src, tmp_path, monkeypatch):
    monkeypatch.setenv("XSUPERRES_BASE_URL", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("XSUPERRES_CACHE", str(tmp_path / "cache"))
    reg = ModelRegistry(shipped / "registry.txt")
    assert reg.is_shipped(NAME)
    assert pretrained.fetch_model(NAME, registry=reg) == shipped / NAME
    model = load_model(NAME, registry=reg)
    assert model.config == model_src[1].config
    assert not (tmp_path / "cache").exists()  # served in place, nothing cached


def test_tampered_shipped_file_is_rejected(shipped, monkeypatch):
    monkeypatch.setenv("XSUPERRES_BASE_URL", "http://127.0.0.1:9/")
    card = shipped / NAME / "model_card.md"
    card.write_text(card.read_text() + "edited\n")
    with pytest.raises(ModelFileError, match=r"shipped model file .*model_card.md does not match"):
        load_model(NAME, registry=shipped / "registry.txt")


def test_partly_shipped_model_is_assembled_in_the_cache(shipped, model_src, tmp_path, local_server):
    """Card + config shipped, weights on the server."""
    www = tmp_path / "www2"
    (www / NAME).mkdir(parents=True)
    w = shipped / NAME / "model.safetensors"
    (www / NAME / "model.safetensors").write_bytes(w.read_bytes())
    w.unlink()
    srv = local_server(www)
    reg = ModelRegistry(shipped / "registry.txt")
    assert not reg.is_shipped(NAME)
    d = reg.fetch(NAME, base_url=srv.url, cache=tmp_path / "c")
    assert srv.requests == [f"/{NAME}/model.safetensors"]
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
    assert reg.load(NAME, cache=tmp_path / "c", base_url=srv.url).config == model_src[1].config


# ---------------------------------------------------------------------------------------
# every model registered in the package
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", pretrained.list_models())
def test_registered_model_loads_has_card_and_predicts(name):
    reg = ModelRegistry()
    if not reg.is_shipped(name):
        pytest.skip(f"{name} is not shipped (needs a download)")
    model = load_model(name)
    card = pretrained.model_card(name)
    c = model.config
    # the card states the factors and the held-out scores against the three baselines
    assert f"| {c.S} | {c.T} | {c.L} | {c.beta_max} |" in card
    facts = json.loads((reg.shipped_dir / name / "card.json").read_text())
    assert (facts["config"]["S"], facts["config"]["T"], facts["config"]["L"]) == (c.S, c.T, c.L)
    rows = facts["scores"]
    assert {"bicubic", "nearest", "deterministic (U_det + MC)"} <= set(rows)
    assert any(k.startswith("full model") for k in rows)
    for r in rows.values():
        assert {"crps", "pitd", "pe99", "lsd"} <= set(r) and all(np.isfinite(list(r.values())))
    for key in ("periods", "files"):
        assert facts["data"][key]
    assert facts["training"]["wall_time_min"]["mean_stage"] > 0 and facts["machine"]
    # the shipped models are trained on 5-min radar: the KNMI sample has that cadence
    assert c.time_step == "5min"
    ds = xsuperres.open_sample("knmi")
    lr = ds.precip.stsr.coarsen_perfect(c.S, c.T, boundary="trim").values
    h = max(1, 40 // c.S)
    ctx = lr[: c.L, :h, :h][None].astype("float32")  # (1, L, h, h) mm/h
    topo = None
    if model.normalization.get("topo_min") is not None:
        topo = ds.topography.values[: h * c.S, : h * c.S]
    ens = model.predict(ctx, topography=topo, n_members=2, sampler="ddim", steps=2, seed=0,
                        device="cpu")
    assert ens.shape == (1, 2, c.T, h * c.S, h * c.S)
    assert np.isfinite(ens).all() and (ens >= 0).all()


@pytest.mark.parametrize("name", pretrained.list_models())
def test_registered_model_is_bound_format_version_2(name):
    """Shipped models are in the current file format: config.json is bound to the weights
    (they load without the version-1 warning) and an edit of it is detected."""
    import warnings

    from safetensors import safe_open

    from xsuperres.model import FORMAT_VERSION

    reg = ModelRegistry()
    if not reg.is_shipped(name):
        pytest.skip(f"{name} is not shipped (needs a download)")
    d = reg.shipped_dir / name
    doc = json.loads((d / "config.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION == 2 and doc["dtype"] == "float16"
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert len(meta["config_sha256"]) == 64 and meta["dtype"] == "float16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SRModel.load(d)
    # the card does not quote a stale weights hash
    for card in pretrained.CARD_FILES:
        if (d / card).is_file():
            text = (d / card).read_text()
            assert all(len(h) != 64 or h == doc["tensors_sha256"]
                       for h in re.findall(r"\b[0-9a-f]{64}\b", text))


def test_edited_shipped_config_is_rejected(tmp_path):
    """A copy of a shipped model whose cap was edited (config and normalization agree)."""
    import shutil

    if not pretrained.list_models():
        pytest.skip("no registered model")
    name = NAME if NAME in pretrained.list_models() else pretrained.list_models()[0]
    if not ModelRegistry().is_shipped(name):
        pytest.skip(f"{name} is not shipped (needs a download)")
    d = tmp_path / name
    shutil.copytree(ModelRegistry().shipped_dir / name, d)
    doc = json.loads((d / "config.json").read_text())
    doc["config"]["cap"] = doc["normalization"]["cap"] = 2 * doc["normalization"]["cap"]
    (d / "config.json").write_text(json.dumps(doc, indent=2))
    with pytest.raises(ModelFileError, match="config.json was edited after saving"):
        SRModel.load(d)
