"""drasclr.imaging.io: geometry conventions, image/DICOM round trips, input validation, resampling."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from drasclr.fsutil import file_sha256
from drasclr.imaging.geometry import Geometry, Volume, to_sitk
from drasclr.imaging.io import InputError, content_hash, read_ct, read_mask, write_image
from drasclr.imaging.resample import resample_isotropic
from drasclr.synth.dicom import write_dicom_series


def _rotation(deg_z: float, deg_x: float = 0.0) -> np.ndarray:
    a, b = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.fixture()
def geometry() -> Geometry:
    """Anisotropic, rotated grid of 24 x 20 x 12 voxels (x, y, z)."""
    return Geometry(
        spacing=(0.7, 0.8, 1.5),
        origin=(-100.25, -50.125, -300.5),
        direction=tuple(_rotation(20.0, 5.0).ravel()),
        shape=(24, 20, 12),
    )


@pytest.fixture()
def ct_array(geometry: Geometry) -> np.ndarray:
    """int16 HU values with air, soft tissue and bone, shape (z, y, x)."""
    rng = np.random.default_rng(0)
    return rng.integers(-1024, 1500, size=geometry.array_shape).astype(np.int16)


# ----------------------------------------------------------------------------------- geometry
def test_index_world_round_trip_matches_simpleitk(geometry: Geometry) -> None:
    image = to_sitk(np.zeros(geometry.array_shape, np.int16), geometry)
    rng = np.random.default_rng(1)
    ijk = rng.uniform(-2, 30, size=(50, 3))
    world = geometry.index_to_world(ijk)
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk])
    np.testing.assert_allclose(world, expected, atol=1e-9)
    np.testing.assert_allclose(geometry.world_to_index(world), ijk, atol=1e-9)
    # single points keep their shape; index (0,0,0) is the origin; +1 in x moves along column 0
    np.testing.assert_allclose(geometry.index_to_world([0, 0, 0]), geometry.origin)
    step = geometry.index_to_world([1, 0, 0]) - np.asarray(geometry.origin)
    np.testing.assert_allclose(step, geometry.direction_matrix[:, 0] * geometry.spacing[0])


def test_array_order_is_zyx(geometry: Geometry) -> None:
    arr = np.zeros(geometry.array_shape, np.int16)
    arr[3, 5, 7] = 1  # z=3, y=5, x=7
    image = to_sitk(arr, geometry)
    assert image.GetPixel(7, 5, 3) == 1
    assert geometry.array_shape == (12, 20, 24)


def test_geometry_validation_and_dict_round_trip(geometry: Geometry) -> None:
    assert Geometry.from_dict(geometry.to_dict()) == geometry
    with pytest.raises(ValueError):
        Geometry.identity((2, 2, 2), spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        Geometry(spacing=(1, 1, 1), origin=(0, 0, 0), direction=(0.0,) * 9, shape=(2, 2, 2))
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 3, 4)), Geometry.identity((2, 3, 4)))


# ----------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_image_round_trip(
    tmp_path: Path, geometry: Geometry, ct_array: np.ndarray, suffix: str, dtype: type
) -> None:
    arr = ct_array.astype(dtype)
    if dtype == np.float32:
        arr += 0.25
    path = write_image(tmp_path / f"ct{suffix}", arr, geometry)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ct{suffix}"]  # no temporaries left
    vol = read_ct(path)
    assert vol.array.dtype == arr.dtype
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.geometry.is_close(geometry, atol_mm=1e-4), (vol.geometry, geometry)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_mask_round_trip_and_overwrite(tmp_path: Path, geometry: Geometry, suffix: str) -> None:
    labels = np.zeros(geometry.array_shape, np.uint8)
    labels[2:6, 3:9, 4:10] = 1
    labels[7:10, 3:9, 12:20] = 2
    path = tmp_path / f"mask{suffix}"
    write_image(path, np.ones_like(labels), geometry)
    write_image(path, labels, geometry)  # replaces atomically
    vol = read_mask(path)
    assert vol.array.dtype == np.uint8
    np.testing.assert_array_equal(vol.array, labels)
    assert vol.geometry.is_close(geometry)
    bool_path = write_image(tmp_path / f"bool{suffix}", labels > 0, geometry)
    np.testing.assert_array_equal(read_mask(bool_path).array, (labels > 0).astype(np.uint8))


def test_float_mask_becomes_integer(tmp_path: Path, geometry: Geometry) -> None:
    labels = np.zeros(geometry.array_shape, np.float32)
    labels[1:4, 1:4, 1:4] = 50.0
    vol = read_mask(write_image(tmp_path / "m.nrrd", labels, geometry))
    assert np.issubdtype(vol.array.dtype, np.integer)
    assert set(np.unique(vol.array)) == {0, 50}
    labels[0, 0, 0] = 0.5
    with pytest.raises(InputError, match="non-integer"):
        read_mask(write_image(tmp_path / "m2.nrrd", labels, geometry))


def test_write_rejects_unknown_suffix_and_bad_shape(tmp_path: Path, geometry: Geometry) -> None:
    arr = np.zeros(geometry.array_shape, np.int16)
    with pytest.raises(ValueError, match="cannot write"):
        write_image(tmp_path / "ct.png", arr, geometry)
    with pytest.raises(ValueError, match="does not match"):
        write_image(tmp_path / "ct.nrrd", arr.transpose(2, 1, 0), geometry)
    assert list(tmp_path.iterdir()) == []


def test_dicom_series_round_trip(tmp_path: Path, geometry: Geometry, ct_array: np.ndarray) -> None:
    folder = write_dicom_series(tmp_path / "S1", ct_array, geometry, subject_id="S1")
    files = sorted(folder.iterdir())
    assert len(files) == geometry.shape[2]
    assert [p.name for p in tmp_path.iterdir()] == ["S1"]
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT"
    assert float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == -1024.0
    assert ds.PatientID == "S1"
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.8, 0.7])  # (row, column)
    np.testing.assert_allclose(float(ds.SliceThickness), 1.5)
    position = [float(v) for v in ds.ImagePositionPatient]
    np.testing.assert_allclose(position, geometry.origin, atol=1e-4)
    d = geometry.direction_matrix
    orientation = [float(v) for v in ds.ImageOrientationPatient]
    np.testing.assert_allclose(orientation, [*d[:, 0], *d[:, 1]], atol=1e-6)

    vol = read_ct(folder)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, ct_array)
    assert vol.geometry.is_close(geometry, atol_mm=1e-4), (vol.geometry, geometry)

    # Deterministic UIDs: same subject -> same study/series; other subject -> different.
    again = write_dicom_series(tmp_path / "S1b", ct_array, geometry, subject_id="S1")
    other = write_dicom_series(tmp_path / "S2", ct_array, geometry, subject_id="S2")
    ds_again = pydicom.dcmread(sorted(again.iterdir())[0])
    ds_other = pydicom.dcmread(sorted(other.iterdir())[0])
    assert ds_again.StudyInstanceUID == ds.StudyInstanceUID
    assert ds_again.SeriesInstanceUID == ds.SeriesInstanceUID
    assert ds_other.StudyInstanceUID != ds.StudyInstanceUID


def test_dicom_reader_sorts_by_position_and_picks_largest_series(
    tmp_path: Path, geometry: Geometry, ct_array: np.ndarray
) -> None:
    folder = write_dicom_series(tmp_path / "study" / "a", ct_array, geometry, subject_id="P")
    # Shuffle the file names so that name order is not slice order.
    files = sorted(folder.iterdir())
    names = [f"IM{random.Random(0).random():.8f}_{i}" for i in range(len(files))]
    random.Random(1).shuffle(names)
    for f, n in zip(files, names):
        f.rename(folder / n)
    small = Geometry(geometry.spacing, geometry.origin, geometry.direction, (24, 20, 3))
    write_dicom_series(
        tmp_path / "study" / "b", ct_array[:3], small, subject_id="P", series_description="scout"
    )
    vol = read_ct(tmp_path / "study")  # searches sub-folders, takes the 12-slice series
    np.testing.assert_array_equal(vol.array, ct_array)
    assert vol.geometry.is_close(geometry, atol_mm=1e-4)


def test_dicom_left_handed_and_below_minus_1024(tmp_path: Path, ct_array: np.ndarray) -> None:
    d = np.diag([1.0, 1.0, -1.0])  # slices run towards the feet
    geo = Geometry((0.9, 0.9, 2.0), (-10.0, 20.0, 50.0), tuple(d.ravel()), (24, 20, 12))
    arr = ct_array.copy()
    arr[:, 0, :] = -2048  # padding outside the reconstruction circle
    vol = read_ct(write_dicom_series(tmp_path / "L", arr, geo, subject_id="L"))
    # Same physical image, stored right-handed: every voxel keeps its world position and value.
    ijk = np.array([[3, 4, 0], [10, 2, 11], [23, 19, 5]], float)
    for p in ijk:
        q = np.rint(vol.geometry.world_to_index(geo.index_to_world(p))).astype(int)
        assert vol.array[q[2], q[1], q[0]] == arr[int(p[2]), int(p[1]), int(p[0])]
    assert vol.array.min() == -2048


# ----------------------------------------------------------------------------------- bad input
def _bad_inputs(tmp: Path) -> dict[str, Path]:
    geo = Geometry.identity((10, 10, 10))
    ramp = np.linspace(-1000, 500, 1000, dtype=np.float32).reshape(10, 10, 10)
    cases: dict[str, Path] = {"missing": tmp / "nope.nii.gz"}
    (tmp / "empty.nii.gz").write_bytes(b"")
    cases["empty"] = tmp / "empty.nii.gz"
    (tmp / "corrupt.nrrd").write_bytes(b"NRRD0004\ngarbage\n\x00\x01")
    cases["corrupt"] = tmp / "corrupt.nrrd"
    (tmp / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not really gzip" * 4)
    cases["corrupt_gz"] = tmp / "corrupt.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ramp[0]), str(tmp / "flat.nrrd"))
    cases["2d"] = tmp / "flat.nrrd"
    write_image(tmp / "one.mha", ramp[:1], Geometry.identity((10, 10, 1)))
    cases["single_slice"] = tmp / "one.mha"
    nan = ramp.copy()
    nan[2, 3, 4] = np.nan
    cases["nan"] = write_image(tmp / "nan.mha", nan, geo)
    inf = ramp.copy()
    inf[2, 3, 4] = np.inf
    cases["inf"] = write_image(tmp / "inf.nrrd", inf, geo)
    constant = np.full((10, 10, 10), -1000, np.int16)
    cases["constant"] = write_image(tmp / "const.nii.gz", constant, geo)
    cases["stored_values"] = write_image(tmp / "raw.nrrd", (ramp + 1024).astype(np.uint16), geo)
    cases["scaled_1000x"] = write_image(tmp / "big.nrrd", (ramp * 20).astype(np.int32), geo)
    cases["unit_range"] = write_image(tmp / "unit.nrrd", (ramp + 1000) / 1500, geo)
    sitk.WriteImage(sitk.Image([6, 6, 6, 3], sitk.sitkInt16), str(tmp / "four.nii.gz"))
    cases["4d"] = tmp / "four.nii.gz"
    sitk.WriteImage(sitk.Image([6, 6, 6], sitk.sitkVectorInt16, 3), str(tmp / "vec.mha"))
    cases["multicomponent"] = tmp / "vec.mha"
    one_slice = write_dicom_series(tmp / "one_slice", ramp.astype(np.int16), geo, subject_id="O")
    for extra in sorted(one_slice.iterdir())[1:]:
        extra.unlink()
    cases["single_slice_dicom"] = one_slice
    gap = write_dicom_series(tmp / "gap", ramp.astype(np.int16), geo, subject_id="G")
    sorted(gap.iterdir())[4].unlink()  # a missing slice: uneven spacing
    cases["dicom_missing_slice"] = gap
    (tmp / "empty_dir").mkdir()
    cases["empty_folder"] = tmp / "empty_dir"
    (tmp / "junk_dir").mkdir()
    (tmp / "junk_dir" / "x.dcm").write_bytes(b"not dicom")
    cases["folder_without_dicom"] = tmp / "junk_dir"
    return cases


_BAD = [
    "missing", "empty", "corrupt", "corrupt_gz", "2d", "single_slice", "nan", "inf", "constant",
    "stored_values", "scaled_1000x", "unit_range", "4d", "multicomponent", "empty_folder",
    "folder_without_dicom", "single_slice_dicom", "dicom_missing_slice",
]


@pytest.mark.parametrize("case", _BAD)
def test_bad_input_raises_input_error_naming_the_file(tmp_path: Path, case: str) -> None:
    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as info:
        read_ct(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == path
    assert str(path) in str(err)
    assert err.problem and err.problem in str(err)


def test_stored_values_message_says_why(tmp_path: Path) -> None:
    path = _bad_inputs(tmp_path)["stored_values"]
    with pytest.raises(InputError, match="HU"):
        read_ct(path)


def test_padding_below_air_is_accepted(tmp_path: Path) -> None:
    geo = Geometry.identity((20, 20, 10))
    arr = np.linspace(-1000, 400, 4000).reshape(10, 20, 20).astype(np.int16)
    arr[:, :4, :] = -3024  # 20 % padding outside the field of view
    vol = read_ct(write_image(tmp_path / "pad.nrrd", arr, geo))
    assert vol.array.min() == -3024


def test_content_hash(tmp_path: Path, geometry: Geometry, ct_array: np.ndarray) -> None:
    a = write_image(tmp_path / "a.nrrd", ct_array, geometry)
    assert content_hash(a) == file_sha256(a)
    folder = write_dicom_series(tmp_path / "d", ct_array, geometry, subject_id="X")
    h1 = content_hash(folder)
    same = write_dicom_series(tmp_path / "d2", ct_array, geometry, subject_id="X")
    assert h1 == content_hash(same)
    changed = ct_array.copy()
    changed[0, 0, 0] += 1
    assert h1 != content_hash(write_dicom_series(tmp_path / "d3", changed, geometry, "X"))
    with pytest.raises(InputError):
        content_hash(tmp_path / "missing.nii.gz")


# ----------------------------------------------------------------------------------- resampling
def _centre(geo: Geometry) -> np.ndarray:
    return geo.index_to_world((np.asarray(geo.shape) - 1) / 2.0)


def test_resample_isotropic_keeps_extent_direction_and_a_known_point() -> None:
    d = _rotation(30.0, 10.0)
    geo = Geometry((0.7, 0.7, 2.5), (12.0, -40.0, 100.0), tuple(d.ravel()), (60, 50, 16))
    arr = np.full(geo.array_shape, -1000, np.int16)
    # A bright box whose centre sits at a known world point.
    arr[6:10, 20:30, 25:35] = 1000
    known = geo.index_to_world([29.5, 24.5, 7.5])
    out = resample_isotropic(Volume(arr, geo), 1.0)
    g = out.geometry
    assert g.spacing == (1.0, 1.0, 1.0)
    assert g.direction == geo.direction
    assert g.shape == (42, 35, 40)  # round(n * spacing / 1)
    np.testing.assert_allclose(_centre(g), _centre(geo), atol=1e-9)
    extent_in = np.asarray(geo.shape) * np.asarray(geo.spacing)
    extent_out = np.asarray(g.shape) * np.asarray(g.spacing)
    assert np.all(np.abs(extent_out - extent_in) <= 0.5 + 1e-9)
    assert out.array.dtype == np.int16
    zyx = np.argwhere(out.array > 0).astype(float)
    weights = out.array[out.array > 0].astype(float) + 1000
    centroid_ijk = (zyx * weights[:, None]).sum(0)[::-1] / weights.sum()
    np.testing.assert_allclose(g.index_to_world(centroid_ijk), known, atol=0.5)
    q = np.rint(g.world_to_index(known)).astype(int)
    assert out.array[q[2], q[1], q[0]] == 1000


def test_resample_mask_nearest() -> None:
    geo = Geometry.identity((40, 40, 12), spacing=(0.6, 0.6, 1.8))
    labels = np.zeros(geo.array_shape, np.uint8)
    labels[:, 5:20, 5:18] = 1
    labels[:, 5:20, 22:36] = 2
    out = resample_isotropic(Volume(labels, geo), 1.0, order=0, fill=0)
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == {0, 1, 2}
    vol_in = np.bincount(labels.ravel())[1:] * np.prod(geo.spacing)
    vol_out = np.bincount(out.array.ravel())[1:] * 1.0
    np.testing.assert_allclose(vol_out, vol_in, rtol=0.15)
    with pytest.raises(ValueError, match="fill"):
        resample_isotropic(Volume(labels, geo), 1.0, order=0)  # -1024 does not fit uint8


@pytest.mark.slow
def test_resample_speed_512x512x400() -> None:
    geo = Geometry.identity((512, 512, 400), (0.7, 0.7, 0.7), (-180, -180, -300))
    arr = np.random.default_rng(0).integers(-1024, 400, geo.array_shape, dtype=np.int16)
    start = time.perf_counter()
    out = resample_isotropic(Volume(arr, geo), 1.0)
    seconds = time.perf_counter() - start
    assert out.array.shape == (280, 358, 358)
    assert seconds < 5.0, f"resampling took {seconds:.2f} s on {os.cpu_count()} CPUs"


# ----------------------------------------------------------------------------------- real data
def test_read_real_nrrd_and_round_trip(reference_dir: Path, tmp_path: Path) -> None:
    path = reference_dir / "real_ct" / "copdgene_10002K_ct64.nrrd"
    vol = read_ct(path)
    assert vol.array.shape == (79, 64, 64)
    assert vol.array.dtype == np.int16
    np.testing.assert_allclose(vol.geometry.spacing, (4.171872, 4.171872, 3.9873417721518987))
    assert vol.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert -1100 < vol.array.min() < -900
    again = read_ct(write_image(tmp_path / "copd.nii.gz", vol.array, vol.geometry))
    np.testing.assert_array_equal(again.array, vol.array)
    assert again.geometry.is_close(vol.geometry)
    cip = read_ct(reference_dir / "real_ct" / "cip_testinput.nrrd")
    assert cip.array.shape == (50, 64, 64)


def test_read_real_atlas_mask(reference_dir: Path) -> None:
    mask = read_mask(reference_dir / "atlas_lung_mask.nii.gz")
    assert mask.geometry.shape == (387, 387, 319)
    assert mask.geometry.direction == (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert set(np.unique(mask.array)) == {0, 50, 100}
