"""Safe weight files: the sha256 pinned by baselines, weights-only loading, key matching, backbone weights."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from geodistill.errors import CheckpointError
from geodistill.models import create_backbone
from geodistill.models.weights_io import file_sha256, load_state_dict, match_state_dict, resolve_weights


class _Pickled:
    """An object whose unpickling would run code (``print``); a weights-only load must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_file_sha256_is_the_hex_digest_of_the_bytes(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc" * (1 << 19))  # 1.5 MiB: more than one read chunk
    assert file_sha256(path) == hashlib.sha256(b"abc" * (1 << 19)).hexdigest()
    (tmp_path / "abc").write_bytes(b"abc")
    assert file_sha256(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_checkpoint_with_pickled_code_is_refused_and_never_run(tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "code": _Pickled()}, evil)
    with pytest.raises(CheckpointError) as err:
        load_state_dict(evil)
    assert str(err.value).startswith(
        f"refusing to load {evil}: it needs pickled code to rebuild, which is never executed"
    )
    assert "\n" not in str(err.value) and "this must never run" not in capsys.readouterr().out


def test_load_state_dict_reads_wrappers_and_names_what_is_wrong(tmp_path):
    torch.save({"state_dict": {"a": torch.zeros(2)}, "epoch": 3}, tmp_path / "wrapped.pth")
    assert list(load_state_dict(tmp_path / "wrapped.pth")) == ["a"]
    save_file({"b": torch.ones(1)}, str(tmp_path / "w.safetensors"))
    assert load_state_dict(tmp_path / "w.safetensors")["b"].tolist() == [1.0]
    torch.save({"a": torch.zeros(1), "note": "text"}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match=r"mixed.pth: entry 'note' is not a tensor$"):
        load_state_dict(tmp_path / "mixed.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"does not hold a state_dict \(found list\)"):
        load_state_dict(tmp_path / "list.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointError, match="cannot read safetensors file"):
        load_state_dict(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_state_dict(tmp_path / "nope.pth")


def test_match_state_dict_names_the_first_problem():
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(1)}
    match_state_dict(expected, {"a": torch.ones(2, 3), "b": torch.ones(1)}, what="w")
    with pytest.raises(CheckpointError, match=r"^w: missing key 'b'$"):
        match_state_dict(expected, {"a": torch.ones(2, 3)}, what="w")
    with pytest.raises(
        CheckpointError, match=r"^w: shape mismatch for 'a': checkpoint \(3, 2\), model \(2, 3\)$"
    ):
        match_state_dict(expected, {"a": torch.ones(3, 2), "b": torch.ones(1)}, what="w")
    with pytest.raises(CheckpointError, match=r"^w: unexpected key 'c'$"):
        match_state_dict(expected, {"a": torch.ones(2, 3), "b": torch.ones(1), "c": torch.ones(1)}, what="w")


def test_resolve_weights_paths_and_file_uris(tmp_path):
    assert resolve_weights(str(tmp_path / "w.pth")) == tmp_path / "w.pth"
    assert resolve_weights(f"file://{tmp_path}/a%20b.pth") == tmp_path / "a b.pth"
    with pytest.raises(CheckpointError, match=r"^cannot read weights s3-nope://bucket/w.pth: "):
        resolve_weights("s3-nope://bucket/w.pth")


def test_backbone_local_weights_safetensors_and_pth(tmp_path):
    from safetensors.torch import save_file

    src = create_backbone("resnet18", img_size=32)
    state = {k: v.clone() for k, v in src.model.state_dict().items()}
    state["fc.weight"] = torch.zeros(10, 512)  # a classifier head in the file is ignored
    save_file(state, str(tmp_path / "r18.safetensors"))
    torch.save(state, tmp_path / "r18.pth")
    for name in ("r18.safetensors", "r18.pth"):
        bb = create_backbone("resnet18", img_size=32, weights=str(tmp_path / name))
        torch.testing.assert_close(bb.model.conv1.weight, src.model.conv1.weight)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'layer1.0.conv1.weight'"):
        create_backbone("resnet18", img_size=32, weights=str(tmp_path / "bad.pth"))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        create_backbone("resnet18", img_size=32, weights=str(tmp_path / "nope.pth"))
