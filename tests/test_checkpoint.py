"""Tests for ride.checkpoint: round trips of RIDE and MCGSM, rejection of bad files with ValueError, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ride
from ride.checkpoint import FORMAT, VERSION, load_payload
from ride.mcgsm import MCGSM

F64 = torch.float64


@pytest.mark.parametrize(("num_layers", "dtype"), [(0, torch.float32), (1, torch.float32), (2, torch.float32),
                                                   (1, F64), (2, F64)])
def test_ride_round_trip(tiny_ride, smooth_images, tmp_path: Path, num_layers: int, dtype: torch.dtype) -> None:
    model = tiny_ride(num_layers=num_layers, nb_size=5, num_channels=2 if num_layers == 2 else 1,
                      seed=num_layers).to(dtype)
    path = tmp_path / "sub" / "model.pt"  # the folder is created
    ride.save(model, path, extra={"step": 12, "note": "hello", "losses": [1.5, 2.5]})
    loaded = ride.load(path)
    assert isinstance(loaded, ride.RIDE) and not loaded.training
    assert loaded.config == model.config
    assert loaded.preconditioner.whiten_in.dtype == dtype
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    images = smooth_images(2, model.config.num_channels, 6, 7, seed=1, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(images), model.log_prob(images))
        assert torch.equal(loaded.sample(images, generator=torch.Generator().manual_seed(0)),
                           model.sample(images, generator=torch.Generator().manual_seed(0)))
    payload = load_payload(path)
    assert payload["extra"] == {"step": 12, "note": "hello", "losses": [1.5, 2.5]}
    assert payload["format"] == FORMAT and payload["version"] == VERSION and payload["model"] == "RIDE"


@pytest.mark.parametrize("dim_out", [1, 2])
def test_mcgsm_round_trip(tmp_path: Path, dim_out: int) -> None:
    torch.manual_seed(0)
    model = MCGSM(5, dim_out, num_components=3, num_scales=2, num_features=4).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen, dtype=F64))
    path = tmp_path / "mcgsm.pt"
    ride.save(model, str(path))  # str paths work too
    loaded = ride.load(path)
    assert isinstance(loaded, MCGSM) and loaded.config == model.config
    h = torch.randn(20, 5, generator=gen, dtype=F64)
    y = torch.randn(20, dim_out, generator=gen, dtype=F64)
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(h, y), model.log_prob(h, y))


def test_save_rejects_other_modules(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Linear"):
        ride.save(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def write_payload(path: Path, **changes) -> Path:
    """A valid RIDE checkpoint with some fields replaced (None deletes the field)."""
    model = ride.RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=2, nb_size=3)
    ride.save(model, path)
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    torch.save(payload, path)
    return path


def test_bad_files_raise_value_error(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    ride.save(ride.RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=2, nb_size=3), good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pt") as err:
        ride.load(truncated)
    assert "not a readable ride checkpoint" in str(err.value)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                      dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ValueError, match="garbage.pt"):
        ride.load(garbage)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt"):
        ride.load(empty)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, foreign)
    with pytest.raises(ValueError, match="not a ride checkpoint") as err:
        ride.load(foreign)
    assert repr(FORMAT) in str(err.value) and "None" in str(err.value)

    foreign_list = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], foreign_list)
    with pytest.raises(ValueError, match="list"):
        ride.load(foreign_list)

    state_dict_only = tmp_path / "state_dict.pt"
    torch.save(ride.RIDE(num_hiddens=3, nb_size=3).state_dict(), state_dict_only)
    with pytest.raises(ValueError, match="not a ride checkpoint"):
        ride.load(state_dict_only)

    with pytest.raises(ValueError, match="does not exist"):
        ride.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not a file"):
        ride.load(tmp_path)


def test_bad_payloads_raise_value_error(tmp_path: Path) -> None:
    config = {"num_channels": 1, "num_hiddens": 3, "num_layers": 1, "num_components": 2, "num_scales": 2,
              "num_features": 2, "nb_size": 3}
    cases = [
        ({"version": VERSION + 1}, f"version {VERSION + 1}"),
        ({"version": None}, "version None"),
        ({"model": "PixelCNN"}, "PixelCNN"),
        ({"config": {**config, "num_mixtures": 4}}, "num_mixtures"),
        ({"config": {**config, "nb_size": 4}}, "nb_size"),
        ({"config": {**config, "num_hiddens": 5}}, "do not match"),  # weights of another size
        ({"state_dict": {}}, "do not match"),
    ]
    for k, (changes, fragment) in enumerate(cases):
        path = write_payload(tmp_path / f"case{k}.pt", **changes)
        with pytest.raises(ValueError) as err:
            ride.load(path)
        assert fragment in str(err.value), (changes, str(err.value))
        assert f"case{k}.pt" in str(err.value)


@pytest.mark.parametrize("state_dict", [None, torch.zeros(2), {"mcgsm.priors": 3}],
                         ids=["missing", "tensor", "non_tensor_value"])
def test_malformed_state_dict_raises_value_error(tmp_path: Path, state_dict) -> None:
    path = write_payload(tmp_path / "bad_state.pt", state_dict=state_dict)
    with pytest.raises(ValueError, match="bad_state.pt"):
        ride.load(path)


def test_mcgsm_config_with_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    ride.save(MCGSM(3, 1, 2, 2, 2), path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["num_experts"] = 3
    torch.save(payload, path)
    with pytest.raises(ValueError, match="num_experts"):
        ride.load(path)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ride.RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=2, nb_size=3)
    path = tmp_path / "model.pt"
    ride.save(model, path)
    ride.save(model, path)  # overwriting works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary files left
    before = path.read_bytes()

    # a save that fails half-way leaves the previous checkpoint intact and no temporary file behind
    def failing_save(obj, f, *args, **kwargs) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with torch.no_grad():
        model.mcgsm.priors.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        ride.save(model, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert path.read_bytes() == before
    assert isinstance(ride.load(path), ride.RIDE)
    # and the write went through a rename, so no reader ever sees a partial file
    calls = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append((Path(src), Path(dst))), real_replace(src, dst)))
    ride.save(model, path)
    assert len(calls) == 1 and calls[0][1] == path and calls[0][0].parent == tmp_path
    assert not calls[0][0].exists()


def test_load_map_location(tmp_path: Path) -> None:
    model = ride.RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=2, nb_size=3)
    ride.save(model, tmp_path / "m.pt")
    loaded = ride.load(tmp_path / "m.pt", map_location=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_saved_files_get_ordinary_permissions(tmp_path):
    ride.save(ride.RIDE(num_hiddens=4), tmp_path / "m.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o666 & ~mask
