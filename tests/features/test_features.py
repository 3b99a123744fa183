"""Feature extraction: patch/image features, Parquet outputs, Ray Data path, ablation, dense."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import Tensor, nn

from drasclr.features import (
    FeaturesConfig,
    FeaturesError,
    PatchFeatures,
    dense_features,
    extract_features,
    extract_features_ray,
    extract_patch_features,
    feature_columns,
    image_features,
    random_locations,
    read_image_features,
    read_patch_features,
    store_bounds,
)
from drasclr.features.output import IMAGE_FILE, PATCH_FILE
from drasclr.imaging.atlas import landmark_bounds, normalise_landmarks
from drasclr.imaging.intensity import hu_to_input
from drasclr.nn import DrasEncoder
from drasclr.store.reader import PatchStore, SubjectPatches
from drasclr.store.writer import open_store
from drasclr.synth.patches import ct_like_patches
from drasclr.tables import SchemaError, conform, load_schema, read_table

L, S, P, B = 5, 6, 8, 4


def _valid(n: int) -> np.ndarray:
    """Subject n: landmark n % L invalid; subject 5 has no valid landmark at all."""
    if n == 5:
        return np.zeros(L, bool)
    return np.arange(L) != n % L


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny committed store: L=5 landmarks (irregular, atlas mm), S=6 subjects, P=8."""
    path = tmp_path_factory.mktemp("feat") / "store.zarr"
    rng = np.random.default_rng(3)
    lm = rng.uniform(-60, 60, (L, 3))
    d = np.linalg.norm(lm[:, None] - lm[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    writer = open_store(
        path,
        landmarks_mm=lm,
        neighbours=np.argsort(d, 1)[:, :2],
        atlas_id="t",
        patch_size=P,
        block_size=B,
    )
    data = ct_like_patches(S * L, P, seed=1).reshape(S, L, P, P, P)
    plan = writer.plan([(f"s{i}", f"/in/s{i}", f"h{i}") for i in range(S)])
    for b, items in plan.blocks.items():
        subs = [
            SubjectPatches(
                it,
                data[int(it.subject_id[1:])],
                _valid(int(it.subject_id[1:])),
                np.full(L, 0.5, np.float32),
                np.zeros((L, 3), np.float32),
            )
            for it in items
        ]
        writer.commit_rows(writer.write_block(b, subs))
    return path


def _encoder(dtype: torch.dtype = torch.float32, seed: int = 0) -> DrasEncoder:
    """A random Loc-CondConv encoder with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    enc = DrasEncoder("loccondconv")
    for m in enc.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return enc.to(dtype).train()  # extraction must switch to eval itself


def _per_sample(enc: nn.Module, store: PatchStore, locs: np.ndarray | None = None) -> np.ndarray:
    """Reference: every valid patch encoded alone -> (S, L, 128), NaN where invalid."""
    dtype = next(enc.parameters()).dtype
    out = np.full((store.num_subjects, L, 128), np.nan)
    enc.eval()
    with torch.no_grad():
        for k, s in enumerate(store.store_indices):
            x = store.read_subject(int(s))
            for j in np.flatnonzero(store.valid[:, s]):
                xi = hu_to_input(torch.from_numpy(x[j]))[None, None].to(dtype)
                loc = store.landmarks_norm[j] if locs is None else locs[k, j]
                out[k, j] = enc(xi, torch.as_tensor(loc, dtype=dtype)).numpy()[0]
    return out


def test_landmark_major_equals_per_sample_float64(store_path: Path) -> None:
    store = PatchStore(store_path)
    enc = _encoder(torch.float64)
    ref = _per_sample(enc, store)
    enc.train()
    res = extract_patch_features(enc, store, FeaturesConfig(batch_size=3))
    assert enc.training, "the caller's mode is restored"
    assert res.features.shape == (S, L, 128)
    np.testing.assert_array_equal(np.isnan(res.features[..., 0]), ~res.valid)
    # float64 encoder: batching adds no round-off; the only difference is float32 storage
    np.testing.assert_allclose(res.features, ref, rtol=1e-6, atol=1e-7)
    assert res.subject_ids == tuple(f"s{i}" for i in range(S))
    np.testing.assert_array_equal(res.locations[0], store.landmarks_norm.astype(np.float32))


def test_image_features_mean_of_valid(store_path: Path) -> None:
    res = extract_patch_features(_encoder(), store_path, FeaturesConfig(batch_size=4))
    img = res.image_features
    for k in range(S):
        v = res.valid[k]
        if v.any():
            np.testing.assert_allclose(
                img[k], res.features[k, v].mean(axis=0), rtol=1e-5, atol=1e-6
            )
        else:
            assert np.isnan(img[k]).all()
    np.testing.assert_array_equal(res.n_valid, [L - 1] * 5 + [0])
    # invalid entries never leak into the mean, whatever they hold
    junk = np.where(res.valid[..., None], res.features, 1e6)
    np.testing.assert_allclose(image_features(junk, res.valid), img, rtol=1e-6)


def test_parquet_outputs_validate_and_round_trip(store_path: Path, tmp_path: Path) -> None:
    enc = _encoder()
    out = tmp_path / "feat"
    res = extract_features(enc, store_path, out, FeaturesConfig(batch_size=4))
    assert not res.skipped and res.n_patches == 5 * (L - 1)
    patch = read_table(out / PATCH_FILE, "patch_features")
    image = read_table(out / IMAGE_FILE, "features")
    assert patch.num_rows == S * L and image.num_rows == S
    assert image.column_names == ["subject_id", "n_valid", *feature_columns()]
    assert patch.column("f000").null_count == S * L - res.n_patches
    assert (out / "features_config.yaml").is_file() and (out / "features_info.json").is_file()
    mem = extract_patch_features(enc, store_path, FeaturesConfig(batch_size=4))
    back = read_patch_features(out)
    np.testing.assert_array_equal(back.valid, mem.valid)
    np.testing.assert_allclose(back.features, mem.features, rtol=1e-6, atol=1e-7)
    ids, img, n_valid = read_image_features(out)
    assert ids == list(mem.subject_ids)
    np.testing.assert_allclose(img, mem.image_features, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(n_valid, mem.n_valid)
    # the schema is enforced: a negative n_valid and a missing column are rejected
    bad = image.set_column(1, "n_valid", pa.array(np.full(S, -1, np.int32)))
    with pytest.raises(SchemaError, match="n_valid"):
        conform(bad, load_schema("features"))
    with pytest.raises(SchemaError, match="f127"):
        conform(image.drop_columns(["f127"]), load_schema("features"))


def test_ray_data_path_matches_in_process(
    ray_local: None, store_path: Path, tmp_path: Path
) -> None:
    enc = _encoder()
    cfg = FeaturesConfig(batch_size=4, num_actors=1, units_per_call=2)
    res = extract_features_ray(enc, store_path, tmp_path / "ray", cfg)
    assert not res.skipped and res.n_patches == 5 * (L - 1)
    got = read_patch_features(tmp_path / "ray")
    mem = extract_patch_features(enc, store_path, cfg)
    np.testing.assert_array_equal(got.valid, mem.valid)
    np.testing.assert_allclose(got.features, mem.features, rtol=1e-5, atol=1e-6)


def test_random_locations_differ_and_are_reproducible(store_path: Path) -> None:
    store = PatchStore(store_path)
    enc = _encoder()
    base = extract_patch_features(enc, store, FeaturesConfig(batch_size=4))
    cfg = FeaturesConfig(batch_size=4, random_locations=True, seed=1)
    a = extract_patch_features(enc, store, cfg)
    b = extract_patch_features(enc, store, cfg.replace(batch_size=2, order="subject"))
    c = extract_patch_features(enc, store, cfg.replace(seed=2))
    v = base.valid
    # subject-major batches (mixed locations) give the landmark-major numbers
    np.testing.assert_allclose(a.features[v], b.features[v], rtol=1e-5, atol=1e-6)
    assert np.abs(a.features[v] - base.features[v]).max() > 1e-4
    assert np.abs(a.features[v] - c.features[v]).max() > 1e-4
    assert np.all(np.abs(a.locations) <= 1) and not np.allclose(a.locations, base.locations)
    # every random location is one of the grid's landmark locations (in the lung)
    grid = np.asarray(store.landmarks_norm, dtype=np.float32)
    flat = a.locations.reshape(-1, 3)
    assert (np.abs(flat[:, None, :] - grid[None]).max(axis=2) < 1e-6).any(axis=1).all()
    # the random locations are the conditioning: a per-sample encoding with them agrees
    np.testing.assert_allclose(
        a.features, _per_sample(enc, store, a.locations), rtol=1e-5, atol=1e-5
    )
    # a pair's location depends on (seed, store index, landmark) only, not on the subset asked for
    np.testing.assert_array_equal(
        random_locations(1, [4], store.landmarks_norm)[0],
        random_locations(1, np.arange(6), store.landmarks_norm)[4]
    )


def test_skip_if_done_and_refuse_other_runs(store_path: Path, tmp_path: Path) -> None:
    enc = _encoder()
    out = tmp_path / "feat"
    cfg = FeaturesConfig(batch_size=4)
    first = extract_features(enc, store_path, out, cfg)
    stamp = (out / PATCH_FILE).stat().st_mtime_ns
    again = extract_features(enc, store_path, out, cfg.replace(batch_size=2, order="subject"))
    assert again.skipped and again.fingerprint == first.fingerprint
    assert (out / PATCH_FILE).stat().st_mtime_ns == stamp
    other = _encoder(seed=1)
    with pytest.raises(FeaturesError, match="another run"):
        extract_features(other, store_path, out, cfg)
    with pytest.raises(FeaturesError, match="another run"):
        extract_features(enc, store_path, out, cfg.replace(random_locations=True))
    redo = extract_features(other, store_path, out, cfg, overwrite=True)
    assert not redo.skipped and redo.fingerprint != first.fingerprint


def _write_export(enc: nn.Module, run: Path, store: PatchStore) -> Path:
    """A training export of ``enc`` in the format of ``drasclr.train.export``."""
    from safetensors.torch import save_file

    from drasclr.train import export as ex

    folder = run / ex.EXPORT_DIR
    folder.mkdir(parents=True)
    tensors = {k: v.detach().float().contiguous() for k, v in enc.state_dict().items()}
    save_file(tensors, str(folder / ex.WEIGHTS_FILE), metadata={"format": ex.EXPORT_FORMAT})
    cfg = {
        "format": ex.EXPORT_FORMAT,
        "format_version": ex.EXPORT_VERSION,
        "encoder": {"conditioning": "loccondconv", "experts": 8, "loc_dim": 3},
        "input": {"patch_size": store.patch_size},
        "landmarks": {"landmarks_norm": store.landmarks_norm.tolist()},
    }
    (folder / ex.CONFIG_FILE).write_text(json.dumps(cfg))
    return folder


def test_export_folder_and_cli_on_ray(ray_local: None, store_path: Path, tmp_path: Path) -> None:
    """`drasclr extract` on a run folder: every actor loads the export; equals in-memory."""
    from drasclr.cli import main

    store = PatchStore(store_path)
    enc = _encoder()
    _write_export(enc, tmp_path / "run", store)
    out = tmp_path / "cli"
    argv = [
        "extract",
        "--run",
        str(tmp_path / "run"),
        "--store",
        str(store_path),
        "--out",
        str(out),
    ]
    assert main([*argv, "--batch-size", "4"]) == 0
    info = json.loads((out / "features_info.json").read_text())
    assert info["engine"] == "ray_data" and info["parts"]["encoder"].startswith("export:")
    got = read_patch_features(out)
    mem = extract_patch_features(enc, store, FeaturesConfig(batch_size=4))
    np.testing.assert_allclose(got.features, mem.features, rtol=1e-5, atol=1e-6)
    # in-process from the same folder, and a store with another landmark table is refused
    res = extract_features(
        tmp_path / "run", store, tmp_path / "local", FeaturesConfig(batch_size=4)
    )
    np.testing.assert_allclose(read_patch_features(res.out_dir).features, mem.features, atol=1e-6)
    cfg_file = tmp_path / "run" / "export" / "encoder_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["landmarks"]["landmarks_norm"] = cfg["landmarks"]["landmarks_norm"][:-1]
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(FeaturesError, match="landmark table"):
        extract_features(tmp_path / "run", store, tmp_path / "other")
    with pytest.raises(FeaturesError, match="no trained encoder"):
        extract_features(tmp_path / "nothing", store_path, tmp_path / "f2")


def test_cli_reports_missing_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from drasclr.cli import main

    code = main(
        ["extract", "--run", str(tmp_path), "--store", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "no trained encoder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- dense
def _scene() -> dict:
    """A 1 mm volume with a rotated/flipped geometry, an affine T^-1 and a small lung mask."""
    rng = np.random.default_rng(0)
    shape = (11, 12, 13)
    vol = rng.normal(-700, 150, shape).astype(np.float32)
    direction = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=float)  # a 90 deg rotation
    geom = (np.ones(3), np.array([-20.0, 5.0, 100.0]), direction)
    a = np.eye(4)
    a[:3, :3] = np.array([[0.95, 0.05, 0], [-0.04, 1.02, 0.03], [0, 0.02, 0.98]])
    a[:3, 3] = [3.0, -7.0, -90.0]
    mask = np.zeros(shape, bool)
    mask[3:8, 4:9, 2:9] = True
    landmarks = rng.uniform(-25, 25, (6, 3)) + [0, 0, 10]
    return {
        "vol": vol,
        "geom": geom,
        "inv": a,
        "mask": mask,
        "bounds": landmark_bounds(landmarks),
        "landmarks": landmarks,
    }


def test_bounds_reproduce_landmark_normalisation(store_path: Path) -> None:
    sc = _scene()
    np.testing.assert_allclose(
        sc["bounds"].normalise(sc["landmarks"]), normalise_landmarks(sc["landmarks"]), atol=1e-6
    )
    store = PatchStore(store_path)
    np.testing.assert_allclose(
        store_bounds(store).normalise(store.landmarks), store.landmarks_norm, atol=1e-6
    )


def test_dense_stride1_equals_direct_and_stride2_exact_on_grid() -> None:
    sc = _scene()
    enc = _encoder(torch.float64).eval()
    args = (enc, sc["vol"], sc["geom"], sc["inv"], sc["bounds"], sc["mask"])
    d1 = dense_features(*args, stride=1, patch_size=P, batch_size=64)
    assert d1.values.shape == (int(sc["mask"].sum()), 128) and d1.num_encoded == sc["mask"].sum()
    # direct per-voxel encoding at sampled voxels, from first principles
    pad = np.pad(sc["vol"], P, constant_values=-1024)
    spacing, origin, direction = sc["geom"]
    lo, hi = sc["landmarks"].min(0), sc["landmarks"].max(0)
    rng = np.random.default_rng(1)
    for n in rng.choice(len(d1.voxels), 6, replace=False):
        z, y, x = d1.voxels[n]
        box = pad[
            P + z - P // 2 : P + z + P // 2,
            P + y - P // 2 : P + y + P // 2,
            P + x - P // 2 : P + x + P // 2,
        ]
        mm = origin + direction @ (np.array([x, y, z]) * spacing)
        atlas = sc["inv"][:3, :3] @ mm + sc["inv"][:3, 3]
        loc = 2 * (atlas - lo) / (hi - lo) - 1
        with torch.no_grad():
            ref = enc(hu_to_input(torch.from_numpy(box))[None, None].double(), torch.tensor(loc))
        np.testing.assert_allclose(d1.values[n], ref.numpy()[0], rtol=1e-7, atol=1e-9)
    # stride 2: exact at grid voxels, and fewer boxes encoded
    d2 = dense_features(*args, stride=2, patch_size=P)
    on_grid = (d2.voxels % 2 == 0).all(axis=1)
    assert on_grid.any() and (~on_grid).any() and d2.num_encoded < d1.num_encoded
    np.testing.assert_array_equal(d2.values[on_grid], d1.values[on_grid])
    assert not np.allclose(d2.values[~on_grid], d1.values[~on_grid])


class _LinearInLocation(nn.Module):
    """A stand-in encoder whose output is affine in the location (and ignores the box)."""

    out_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 128).double()

    def forward(self, x: Tensor, loc: Tensor, path: str = "auto") -> Tensor:
        loc = loc.expand(x.shape[0], 3) if loc.dim() == 1 else loc
        return self.proj(loc.to(x.dtype))


def test_dense_interpolation_is_trilinear_and_head_applies() -> None:
    sc = _scene()
    enc = _LinearInLocation()
    args = (enc, sc["vol"], sc["geom"], sc["inv"], sc["bounds"], sc["mask"])
    d1 = dense_features(*args, stride=1, patch_size=P)
    # location is affine in the voxel index, so trilinear interpolation reproduces it (up to the
    # float32 rounding of locations)
    d3 = dense_features(*args, stride=3, patch_size=P)
    np.testing.assert_allclose(d3.values, d1.values, rtol=1e-6, atol=1e-6)
    assert d3.num_encoded < d1.num_encoded / 4
    head = nn.Linear(128, 2).double()
    p3 = dense_features(*args, stride=3, patch_size=P, head=head)
    with torch.no_grad():
        expected = head(torch.from_numpy(d1.values)).numpy()
    np.testing.assert_allclose(p3.values, expected, rtol=1e-6, atol=1e-6)
    vol = p3.to_volume()
    assert vol.shape == (2, *sc["vol"].shape)
    assert np.isnan(vol[:, ~sc["mask"]]).all() and np.isfinite(vol[:, sc["mask"]]).all()


def test_dense_requires_1mm() -> None:
    sc = _scene()
    geom = (np.array([1.0, 1.0, 2.0]), *sc["geom"][1:])
    with pytest.raises(ValueError, match="1 mm"):
        dense_features(
            _LinearInLocation(), sc["vol"], geom, sc["inv"], sc["bounds"], stride=2, patch_size=P
        )


def test_patch_features_is_exported() -> None:
    assert PatchFeatures.__dataclass_fields__.keys() >= {"features", "valid", "locations"}


def test_landmark_batchnorm_statistics(store_path: Path) -> None:
    """bn_stats='landmark': features use BatchNorm statistics of each landmark's own patches, so
    they do not depend on the encoder's running statistics (which 'running' uses)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    store = PatchStore(store_path)
    enc = _encoder(torch.float64)
    running = extract_patch_features(enc, store, FeaturesConfig())
    res = extract_patch_features(enc, store, FeaturesConfig(bn_stats="landmark"))
    shifted = _encoder(torch.float64)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in shifted.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g,
                                                dtype=torch.float64))
                m.running_var.mul_(3.0)
    running2 = extract_patch_features(shifted, store, FeaturesConfig())
    res2 = extract_patch_features(shifted, store, FeaturesConfig(bn_stats="landmark"))
    ok = res.valid
    assert not np.allclose(running.features[ok], running2.features[ok], atol=1e-3)
    np.testing.assert_allclose(res.features[ok], res2.features[ok], rtol=1e-5, atol=1e-6)
    assert not np.allclose(res.features[ok], running.features[ok], atol=1e-3)
    np.testing.assert_array_equal(np.isnan(res.features[..., 0]), ~res.valid)
    chunked = extract_patch_features(enc, store, FeaturesConfig(bn_stats="landmark", batch_size=2))
    assert np.isfinite(chunked.features[ok]).all()
    with pytest.raises(Exception, match="order: landmark"):
        FeaturesConfig(bn_stats="landmark", order="subject")


def test_landmark_batchnorm_in_one_pass_uses_the_exact_batch_statistics() -> None:
    """Patches that fit one chunk are encoded in one pass with their own batch statistics; the
    two-pass estimate (running statistics set from the same chunk, then inference) differs only
    by the unbiased variance's n / (n - 1), and the encoder is left unchanged."""
    import copy

    from drasclr.features.encoding import encode_patches, encode_patches_landmark_bn

    enc = _encoder(torch.float64).eval()
    before = copy.deepcopy(enc.state_dict())
    rng = np.random.default_rng(4)
    patches = rng.normal(-700, 150, (48, 16, 16, 16)).astype(np.float32)
    loc = np.array([0.1, -0.2, 0.3])
    one = encode_patches_landmark_bn(enc, patches, loc, torch.device("cpu"), chunk=48)
    manual = copy.deepcopy(enc).train()
    with torch.no_grad():
        expect = encode_patches(manual, patches, loc, torch.device("cpu"))
    np.testing.assert_allclose(one, expect, rtol=1e-10, atol=1e-12)
    running = encode_patches(enc, patches, loc, torch.device("cpu"))
    assert not np.allclose(one, running, atol=1e-3)
    # the two-pass path on two chunks of 24 estimates the same statistics
    two = encode_patches_landmark_bn(enc, patches, loc, torch.device("cpu"), chunk=24)
    scale = np.abs(one).mean()
    assert np.abs(two - one).mean() < 0.1 * scale
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_landmark_batchnorm_takes_one_location_per_patch_across_chunks() -> None:
    """Per-patch locations (n, 3) are split with the patches: two chunks give what one pass
    with the same per-patch locations gives, up to the two-pass estimate of the statistics,
    and moving one patch's location changes that patch's features."""
    from drasclr.features.encoding import encode_patches_landmark_bn

    enc = _encoder(torch.float64).eval()
    rng = np.random.default_rng(5)
    patches = rng.normal(-700, 150, (40, 16, 16, 16)).astype(np.float32)
    locs = rng.uniform(-1, 1, (40, 3))
    cpu = torch.device("cpu")
    one = encode_patches_landmark_bn(enc, patches, locs, cpu, chunk=40)
    two = encode_patches_landmark_bn(enc, patches, locs, cpu, chunk=20)  # two chunks
    assert two.shape == one.shape and one.shape[0] == 40
    assert np.abs(two - one).mean() < 0.1 * np.abs(one).mean()
    moved = locs.copy()
    moved[-1] = -moved[-1]
    other = encode_patches_landmark_bn(enc, patches, moved, cpu, chunk=20)
    assert not np.allclose(other[-1], two[-1], atol=1e-6)
