"""The evaluation stage end to end on a tiny cohort, the report, the CLI, and the box helpers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from drasclr.evaluate.baselines import LAA_BOX, LAA_IMAGE, LAA_PATCH
from drasclr.evaluate.boxes import BoxPatches, box_locations, fit_probe
from drasclr.evaluate.config import EvaluateConfig
from drasclr.evaluate.dense_maps import BOX_READOUT, PROBE_READOUT, choose_dense_subjects
from drasclr.evaluate.patch_probe import PROBE_SHARE_SUFFIX, WITH_LAA950_SUFFIX
from drasclr.evaluate.run import run_evaluation
from drasclr.features import FeaturesConfig, extract_features
from drasclr.imaging.atlas import LandmarkBounds
from drasclr.nn.encoder import DrasEncoder

CFG = EvaluateConfig(n_bootstrap=10, dense_subjects=2, dense_stride=16, device="cpu",
                     label_fractions=(0.5, 1.0))
METHODS = ("DrasCLR", "random encoder", "DrasCLR (random locations)")


def _export(encoder: DrasEncoder, folder: Path) -> Path:
    """A minimal encoder export (the layout drasclr.train.export.load_encoder reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()},
              str(folder / "encoder.safetensors"))
    (folder / "encoder_config.json").write_text(json.dumps({
        "format": "drasclr-encoder", "format_version": 1,
        "encoder": {"conditioning": "loccondconv", "experts": 8, "loc_dim": 3}}))
    return folder


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, tiny_store: dict[str, Path]) -> dict:
    from drasclr.report.markdown import write_report

    root = tmp_path_factory.mktemp("evalrun")
    cohort, store = tiny_store["cohort"], tiny_store["store"]
    torch.manual_seed(0)
    pretrained = DrasEncoder().eval()
    torch.manual_seed(1)
    random_export = _export(DrasEncoder().eval(), root / "random" / "export")
    fcfg = FeaturesConfig(device="cpu")
    feats = {
        "DrasCLR": extract_features(pretrained, store, root / "f_drasclr", fcfg).out_dir,
        "random encoder": extract_features(random_export, store, root / "f_random", fcfg).out_dir,
        "DrasCLR (random locations)": extract_features(
            pretrained, store, root / "f_rand", fcfg.replace(random_locations=True)
        ).out_dir,
    }
    encoders = {"DrasCLR": pretrained, "random encoder": random_export}
    out = root / "evaluation"
    results = run_evaluation(cohort, store, feats, out, CFG, encoders=encoders, progress=False)
    report = write_report(out, root / "report")
    return {"root": root, "out": out, "results": results, "report": report, "feats": feats,
            "encoders": encoders, "cohort": cohort, "store": store}


def _read(out: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(out / f"{name}.parquet")
    csv = pd.read_csv(out / f"{name}.csv")
    assert len(csv) == len(frame)
    return frame


def test_tables_have_every_method_and_finite_scores(evaluated: dict) -> None:
    out = evaluated["out"]
    t2 = _read(out, "table2_image_readouts")
    assert set(t2["method"]) == {*METHODS, LAA_IMAGE, LAA_PATCH}
    assert {"log_fev1pp", "gold", "cle_score", "exacerbation_history"} <= set(t2["task"])
    acc = t2[t2["metric"].isin(["accuracy", "one_off_accuracy"])]
    assert acc["mean"].between(0, 1).all()
    assert np.isfinite(t2.loc[t2["metric"] == "r2", "mean"]).all()

    t3 = _read(out, "table3_survival")
    assert {"clinical", "DrasCLR", "random encoder", LAA_IMAGE} <= set(t3["method"])
    assert set(t3.loc[t3["method"] == "clinical", "model"]) == {"spirometry", "bode"}
    assert t3["c_index"].dropna().between(0, 1).all() and t3["c_index"].notna().any()

    t5 = _read(out, "table5_box_detection")
    assert set(t5["method"]) == {"DrasCLR", "random encoder", LAA_BOX}  # no random-location row
    assert set(t5["task"]) == {"cle", "pse"} and set(t5["metric"]) == {"f1", "precision", "recall"}
    assert t5["mean"].dropna().between(0, 1).all()

    curve = _read(out, "label_efficiency")
    assert set(curve["fraction"]) == {0.5, 1.0}
    assert {"DrasCLR", "random encoder", LAA_BOX} <= set(curve["method"])

    # the patch probe: each encoder alone, the density scores, and each encoder beside LAA-950
    probe = _read(out, "patch_probe")
    combined = {f"{m}{WITH_LAA950_SUFFIX}" for m in METHODS}
    assert set(probe["method"]) == {*METHODS, "LAA-950 (patch)", "LAA-910 (patch)", *combined}
    assert set(_read(out, "patch_probe_detection")["method"]).isdisjoint(combined)

    t7 = _read(out, "table7_random_locations")
    assert set(t7["locations"]) == {"landmark", "random"}
    assert set(t7["method"]) == {"DrasCLR", "DrasCLR (random locations)"}


def test_laa_baselines_are_fractions(evaluated: dict) -> None:
    from drasclr.store.reader import PatchStore

    frac = _read(evaluated["out"], "detected_fraction")
    assert frac["laa950"].between(0, 1).all()
    # LAA-950 (image) is preprocessing's value on its own lung mask, never the truth mask's
    man = PatchStore(evaluated["store"]).manifest.set_index("subject_id")
    np.testing.assert_allclose(frac["laa950"], man.loc[frac["subject_id"], "laa950"], rtol=0,
                               atol=1e-12)
    for name in ("DrasCLR", "random encoder"):
        for col in (frac[f"{name}: emphysema"], frac[f"{name}{PROBE_SHARE_SUFFIX}"]):
            assert col.notna().all() and col.between(0, 1).all()
    # the report's Spearman reads the patch probe's shares (the cohort has voxel truth)
    head = evaluated["results"]["headline"]
    assert head["fraction_readout"] == "patch probe"
    share, true = frac[f"DrasCLR{PROBE_SHARE_SUFFIX}"], frac["true_emphysema_fraction"]
    if share.nunique() > 1:
        assert head["fraction_spearman"]["DrasCLR"] == pytest.approx(
            share.rank().corr(true.rank()))
    else:  # a constant share has no rank correlation, and none is reported
        assert "DrasCLR" not in head["fraction_spearman"]
    assert {"gold", "true_emphysema_fraction"} <= set(frac.columns)
    assert len(frac) == 8


def test_dense_outputs_and_rule(evaluated: dict) -> None:
    out, res = evaluated["out"], evaluated["results"]
    dense_ids = res["dense"]["subjects"]
    assert len(dense_ids) == 2 and res["dense"]["methods"] == ["DrasCLR"]
    overlap = _read(out, "dense_overlap")
    assert list(overlap["subject_id"]) == dense_ids
    assert overlap["detected_fraction"].between(0, 1).all()
    assert overlap["true_fraction"].between(0, 1).all()
    assert (overlap["n_encoded"] > 0).all()
    npz = sorted((out / "dense").glob("*.npz"))
    assert len(npz) == 2
    d = np.load(npz[0])
    assert d["prob"].shape[1:] == d["ct"].shape == d["truth"].shape
    # the cohort has voxel truth: the maps are the patch probe's flags, not the box readout's
    assert str(d["readout"]) == PROBE_READOUT
    assert set(np.unique(d["prob"])) <= {0.0, 1.0} and np.array_equal(d["prob"][0], d["prob"][1])
    assert (overlap["readout"] == PROBE_READOUT).all()
    assert "dice_cle" not in overlap or overlap["dice_cle"].isna().all()
    rule = _read(out, "table5_box_rule")
    assert (rule["readout"] == PROBE_READOUT).all()
    dboxes = _read(out, "dense_boxes")
    assert not dboxes.empty, "no box of a dense subject was scored: the rule is not tested"
    assert set(rule["rule"]) == {"paper (25 %)", "chosen fraction (departure)"}
    assert (rule.loc[rule["rule"] == "paper (25 %)", "fraction"] == 0.25).all()
    # one row per rule for every (method, task) scored, each over that task's dense boxes
    for (method, task), grp in dboxes.groupby(["method", "task"]):
        rows = rule[(rule["method"] == method) & (rule["task"] == task)]
        assert len(rows) == 2 and (rows["n_boxes"] == len(grp)).all()
        assert (rows["n_positive"] == int((grp["label"] == task).sum())).all()
    assert rule[["f1", "precision", "recall"]].stack().between(0, 1).all()


def test_without_voxel_truth_the_maps_use_the_box_readout(evaluated: dict,
                                                           tmp_path: Path) -> None:
    """A cohort with boxes but no voxel truth (a real one): no patch probe, so the dense maps and
    the detected fractions fall back to the paper's box readout, and the report says which."""
    from drasclr.report.markdown import write_report

    cohort = tmp_path / "cohort"
    shutil.copytree(evaluated["cohort"], cohort, ignore=shutil.ignore_patterns("truth"))
    feats = {n: evaluated["feats"][n] for n in ("DrasCLR", "random encoder")}
    out = tmp_path / "evaluation"
    cfg = CFG.replace(label_fractions=(1.0,))
    res = run_evaluation(cohort, evaluated["store"], feats, out, cfg,
                         encoders=evaluated["encoders"], progress=False)
    assert not (out / "patch_probe.parquet").exists()
    frac = _read(out, "detected_fraction")
    assert not [c for c in frac.columns if c.endswith(PROBE_SHARE_SUFFIX)]
    assert (_read(out, "dense_overlap")["readout"] == BOX_READOUT).all()
    assert all(str(np.load(f)["readout"]) == BOX_READOUT for f in (out / "dense").glob("*.npz"))
    text = write_report(out, tmp_path / "report").read_text()
    assert res["primary"] == "DrasCLR" and not _read(out, "table5_box_rule").empty
    assert f"25 % box rule** on dense maps (DrasCLR: {BOX_READOUT}, flagging" in text


def test_results_json_and_skip_if_done(evaluated: dict) -> None:
    res = evaluated["results"]
    assert res["primary"] == "DrasCLR"
    assert res["cohort"]["n_subjects"] == 8 and res["cohort"]["preset"] == "tiny"
    assert res["methods"]["DrasCLR (random locations)"]["random_locations"] is True
    assert res["seconds"]["total"] > 0 and res["notes"]
    assert any("LAA-950 (image)" in n and "pipeline's own lung mask" in n and "not the" in n
               for n in res["notes"])
    again = run_evaluation(evaluated["cohort"], evaluated["store"], evaluated["feats"],
                           evaluated["out"], CFG, encoders=evaluated["encoders"], progress=False)
    assert again["fingerprint"] == res["fingerprint"]
    assert again["created"] == res["created"]  # not recomputed


def test_every_table_meets_its_contract_and_a_wrong_table_is_refused(
    evaluated: dict, tmp_path: Path
) -> None:
    """Each table the run saved validates against ``schemas/eval_<table>.json``; a table that
    breaks its contract is refused before anything is written, and the check alters nothing."""
    from drasclr.evaluate.contracts import check_table, save_table
    from drasclr.tables import SchemaError

    out, res = evaluated["out"], evaluated["results"]
    written = sorted(p for p in out.rglob("*.parquet") if p.name != "patch_truth.parquet")
    names = {p.stem for p in written if p.parent == out}
    assert {"table2_image_readouts", "patch_probe", "patch_probe_detection",
            "image_readouts_powered", "table3_survival", "table5_box_detection",
            "label_efficiency", "table7_random_locations", "detected_fraction", "dense_overlap",
            "dense_boxes", "table5_box_rule"} <= names
    assert {Path(f["parquet"]) for f in res["files"].values()} <= set(written)
    for path in written:
        schema = "eval_box_features" if path.parent.name == "box_features" else None
        check_table(pd.read_parquet(path), path.stem, schema)

    t2 = pd.read_parquet(out / "table2_image_readouts.parquet")
    wrong = {
        "missing column": t2.drop(columns="note"),
        "unknown column": t2.assign(extra=1.0),
        "column order": t2[["task", "method", *t2.columns[2:]]],
        "type": t2.assign(n=t2["n"].astype(str)),
        "null in a non-nullable column": t2.assign(method=None),
    }
    for why, frame in wrong.items():
        with pytest.raises(SchemaError, match="table2_image_readouts"):
            save_table(frame, tmp_path, "table2_image_readouts")
            pytest.fail(f"not refused: {why}")
    frac = pd.read_parquet(out / "detected_fraction.parquet")
    with pytest.raises(SchemaError, match="detected_fraction.*DrasCLR - cle"):
        save_table(frac.rename(columns={"DrasCLR: cle": "DrasCLR - cle"}), tmp_path,
                   "detected_fraction")
    assert not list(tmp_path.iterdir())  # nothing written
    save_table(t2, tmp_path, "table2_image_readouts")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "table2_image_readouts.parquet"), t2)
    assert ((tmp_path / "table2_image_readouts.csv").read_bytes()
            == (out / "table2_image_readouts.csv").read_bytes())


def test_report_has_tables_and_figures(evaluated: dict) -> None:
    report = evaluated["report"]
    text = report.read_text()
    for heading in ("## Reading", "## Table 2", "## Table 3", "## Table 5", "## Table 7",
                    "## Fig. 5", "## Fig. 4", "## Fig. 3", "## Preprocessing QC"):
        assert heading in text, heading
    assert "not run" in text  # fine-tuning is off and the report says so
    assert "LAA-950 (image) is computed inside the pipeline's own lung mask" in text
    assert "fitted on the same subjects as the imaging rows" in text
    figs = report.parent / "figures"
    for name in ("readouts", "survival", "box_detection", "label_efficiency",
                 "fraction_by_gold", "dense_overlays", "qc_sheet"):
        png = figs / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}.png" in text, name


def test_cli_report_and_pairs(evaluated: dict, tmp_path: Path) -> None:
    from drasclr.cli import main
    from drasclr.commands.evaluate import parse_pairs

    assert parse_pairs(["DrasCLR (no neighbour loss)=a=b/c"], "--features") == {
        "DrasCLR (no neighbour loss)=a": "b/c"}
    with pytest.raises(ValueError):
        parse_pairs(["nodir"], "--features")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps({"event": "train", "step": s, "loss": 5.0 - s / 10,
                                             "local_loss": 3.0, "neighbour_loss": 2.0,
                                             "top1": s / 20}) for s in range(1, 11)))
    out = tmp_path / "rep"
    assert main(["report", str(evaluated["out"]), "--out", str(out),
                 "--metrics", f"DrasCLR={metrics}"]) == 0
    assert (out / "figures" / "pretraining.png").is_file()
    assert "## Pretraining" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2


# ------------------------------------------------------------------------------------ units
def test_probe_head_equals_sklearn_pipeline() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)) * [1, 2, 3, 4, 5, 6] + 3
    labels = np.array(["cle"] * 10 + ["pse"] * 10 + ["healthy"] * 20)
    X[:10, 0] += 3
    head = fit_probe(X, labels, ("cle", "pse"), c=0.5)
    assert head is not None and head.fitted == (True, True)
    rows = np.isin(labels, ["cle", "healthy"])
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000))
    ref.fit(X[rows], labels[rows] == "cle")
    np.testing.assert_allclose(head.predict_proba(X)[:, 0], ref.predict_proba(X)[:, 1], atol=1e-6)
    torch_out = head(torch.from_numpy(X).float()).detach().numpy()
    np.testing.assert_allclose(torch_out, head.predict_proba(X), atol=1e-4)
    # a task without positives is left unfitted (probability ~0), not fitted on one class
    partial = fit_probe(X[10:], labels[10:], ("cle", "pse"))
    assert partial is not None and partial.fitted == (False, True)
    assert partial.predict_proba(X)[:, 0].max() < 1e-9
    assert fit_probe(X[20:], labels[20:], ("cle",)) is None


def test_box_locations_use_inverse_transform_and_bounds() -> None:
    bounds = LandmarkBounds(np.array([0.0, 0.0, 0.0]), np.array([100.0, 50.0, 10.0]))
    shift = np.eye(4)
    shift[:3, 3] = [10.0, 0.0, -5.0]  # subject mm -> atlas mm
    loc = box_locations([[40.0, 25.0, 10.0]], shift.ravel(), bounds)
    np.testing.assert_allclose(loc, [[0.0, 0.0, 0.0]], atol=1e-6)


def test_dense_subjects_span_gold() -> None:
    labels = pd.DataFrame({"subject_id": [f"S{i}" for i in range(9)],
                           "gold": [0, 0, 0, 1, 2, 2, 3, 4, -1],
                           "true_emphysema_fraction": np.linspace(0, 0.2, 9)})
    picked = choose_dense_subjects(labels, list(labels["subject_id"]), 3)
    golds = labels.set_index("subject_id").loc[picked, "gold"].tolist()
    assert golds == [-1, 1, 4]
    assert choose_dense_subjects(labels, list(labels["subject_id"]), 0) == []


def test_finetuner_learns_a_separable_toy_problem() -> None:
    from drasclr.evaluate.finetune import FineTuner

    rng = np.random.default_rng(0)
    n = 12
    patches = rng.normal(-850, 20, size=(n, 32, 32, 32)).astype(np.int16)
    y = np.arange(n) % 2
    patches[y == 1] += 400  # bright vs dark patches
    boxes = BoxPatches(pd.DataFrame({"box_id": [f"b{i}" for i in range(n)]}), patches,
                       np.ones_like(patches, bool), np.zeros((n, 3), np.float32),
                       np.ones(n, bool))
    torch.manual_seed(0)
    tuner = FineTuner(DrasEncoder, boxes, epochs=3, lr=3e-3, batch_size=6, device="cpu")
    pos = np.arange(n)[:, None]
    tuner.fit(pos, y)
    p = tuner.predict_proba_pos(pos)
    assert p.shape == (n,) and np.isfinite(p).all()
    assert p[y == 1].mean() > p[y == 0].mean()


def test_probe_encoder_must_match_the_features(evaluated: dict, tmp_path: Path) -> None:
    """A box probe fitted on one encoder is never applied to another encoder's features."""
    from drasclr.evaluate.boxes import encoder_mismatch
    from drasclr.evaluate.run import EvaluationError
    from drasclr.features.encoding import encoder_fingerprint

    feats, encoders = evaluated["feats"], evaluated["encoders"]
    with pytest.raises(EvaluationError, match="DrasCLR.*extracted with encoder"):
        run_evaluation(evaluated["cohort"], evaluated["store"], {"DrasCLR": feats["DrasCLR"]},
                       tmp_path / "ev", CFG, encoders={"DrasCLR": encoders["random encoder"]},
                       progress=False)
    assert not (tmp_path / "ev" / "results.json").exists()
    # the same weights match across an export folder and the loaded module
    from drasclr.train.export import load_encoder

    export = encoders["random encoder"]
    loaded, _ = load_encoder(export)
    assert encoder_mismatch(encoder_fingerprint(loaded), export) is None
    assert encoder_mismatch(encoder_fingerprint(export), export) is None
    assert "pass the export folder" in str(encoder_mismatch(encoder_fingerprint(export), loaded))


def test_landmark_bn_features_need_running_features_for_detection(
    evaluated: dict, tmp_path: Path
) -> None:
    """Per-landmark BatchNorm features feed the probes and readouts; the detected fraction (a
    box readout fitted on running-statistics box encodings) needs running-statistics features."""
    from drasclr.evaluate.run import EvaluationError

    store, enc = evaluated["store"], evaluated["encoders"]["DrasCLR"]
    lmbn = extract_features(enc, store, tmp_path / "f_lmbn",
                            FeaturesConfig(device="cpu", bn_stats="landmark")).out_dir
    args = (evaluated["cohort"], store, {"DrasCLR": lmbn})
    with pytest.raises(EvaluationError, match="bn_stats='landmark'.*--detection-features"):
        run_evaluation(*args, tmp_path / "ev", CFG, encoders={"DrasCLR": enc}, progress=False)
    assert not (tmp_path / "ev" / "results.json").exists()
    run_evaluation(*args, tmp_path / "ev", CFG, encoders={"DrasCLR": enc}, progress=False,
                   detection_features={"DrasCLR": evaluated["feats"]["DrasCLR"]})
    got = _read(tmp_path / "ev", "detected_fraction").set_index("subject_id")
    ref = _read(evaluated["out"], "detected_fraction").set_index("subject_id")
    col = "DrasCLR: emphysema"
    pd.testing.assert_series_equal(got[col], ref.loc[got.index, col])
