"""drasclr.report.markdown tables: one method column, no stray row index."""

import pandas as pd

from drasclr.report.markdown import markdown_table, powered_wide, probe_wide


def test_wide_tables_have_one_method_column() -> None:
    probe = pd.DataFrame({"method": ["A", "A", "B", "B"], "target": ["cle", "pse"] * 2,
                          "r2": [0.4, 0.1, 0.0, 0.0], "r2_sd": [0.01] * 4,
                          "auc": [0.7, 0.6, 0.5, 0.5], "auc_sd": [0.01] * 4})
    powered = pd.DataFrame({"method": ["A", "B"], "metric": ["gold_acc"] * 2,
                            "mean": [0.4, 0.3], "sd": [0.02, 0.03]})
    for wide in (probe_wide(probe), powered_wide(powered)):
        lines = markdown_table(wide, index="method").splitlines()
        assert lines[0].startswith("| method | ") and lines[0].count("method") == 1
        assert lines[2].startswith("| A | ") and lines[3].startswith("| B | ")
    indexed = pd.DataFrame({"x": [1.0]}, index=pd.Index(["A"], name="m"))
    assert markdown_table(indexed, index="method").splitlines()[2] == "| A | 1 |"


def test_training_curves_join_the_probe_records_on_the_step(tmp_path) -> None:
    import json

    from drasclr.report.figures import pretraining_figure
    from drasclr.report.markdown import training_curves

    recs = [{"event": "start", "step": 0},
            {"event": "probe", "step": 0, "probe_r2": 0.01, "probe_auc": 0.5},
            {"event": "train", "step": 10, "loss": 5.0, "top1": 0.1},
            {"event": "train", "step": 20, "loss": 4.0, "top1": 0.2},
            {"event": "probe", "step": 20, "probe_r2": 0.2, "probe_auc": 0.6},
            {"event": "probe", "step": 20, "probe_r2": 0.3, "probe_auc": 0.7}]  # resumed
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    c = training_curves(path)
    assert c["step"].tolist() == [0, 10, 20]
    assert c["loss"].isna().tolist() == [True, False, False]
    assert c["probe_r2"].tolist()[0] == 0.01 and c["probe_r2"].tolist()[2] == 0.3
    assert c["probe_r2"].isna().tolist() == [False, True, False]
    # a run without probes keeps its train frame as it was
    path.write_text("\n".join(json.dumps(r) for r in recs[2:4]) + "\n")
    assert "probe_r2" not in training_curves(path) and len(training_curves(path)) == 2
    # the figure gains the probe panel (loss, top-1, probe) against (loss, top-1) without it
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    wide = pretraining_figure({"a": training_curves(path)}, tmp_path / "with.png")
    path.write_text("\n".join(json.dumps(r) for r in recs[2:4]) + "\n")
    narrow = pretraining_figure({"a": training_curves(path)}, tmp_path / "without.png")
    from PIL import Image

    assert Image.open(wide).size[0] > Image.open(narrow).size[0]


def test_probe_reading_names_a_pretrained_encoder_ahead_of_the_primary() -> None:
    """The Reading says whether pretraining beat random, and names another pretrained encoder
    that is ahead of the primary (density scores and the random encoder never count)."""
    from drasclr.report.markdown import probe_reading

    def probe(moco: float) -> pd.DataFrame:
        methods = ["DrasCLR", "plain MoCo", "random encoder", "LAA-950 (patch)"]
        return pd.DataFrame({"method": methods, "target": ["emphysema"] * 4,
                             "r2": [0.47, moco, 0.01, 0.79], "r2_sd": [0.03, 0.01, 0.03, 0.02]})

    ahead = probe_reading(probe(0.68), "DrasCLR")
    assert "**beat** the random encoder" in ahead
    assert "plain MoCo 0.680 ± 0.010 is ahead of it by more than the larger spread" in ahead
    assert "within the spread" in probe_reading(probe(0.49), "DrasCLR")
    behind = probe_reading(probe(0.40), "DrasCLR")
    assert "not the best" not in behind and "LAA-950 (patch) 0.790" in behind


def test_probe_reading_says_what_the_encoder_adds_to_laa950() -> None:
    """The Reading compares the primary's features beside LAA-950 with LAA-950 alone, next to
    the random encoder's features beside it; a combined row is never "another encoder"."""
    from drasclr.report.markdown import probe_reading

    def probe(with_laa: float) -> pd.DataFrame:
        methods = ["DrasCLR", "random encoder", "LAA-950 (patch)", "DrasCLR + LAA-950 (patch)",
                   "random encoder + LAA-950 (patch)"]
        return pd.DataFrame({"method": methods, "target": ["emphysema"] * 5,
                             "r2": [0.78, 0.02, 0.84, with_laa, 0.835],
                             "r2_sd": [0.02, 0.01, 0.001, 0.004, 0.001]})

    adds = probe_reading(probe(0.872), "DrasCLR")
    assert "Beyond density: DrasCLR adds to LAA-950 (patch)" in adds
    assert "0.872 ± 0.004 vs LAA-950 alone 0.840 (+0.032)" in adds
    assert "random encoder's features beside it give 0.835 (-0.005)" in adds
    assert "not the best pretrained encoder" not in adds
    assert "adds nothing measurable" in probe_reading(probe(0.838), "DrasCLR")
    no_rows = probe(0.872).iloc[:3]
    assert "Beyond density" not in probe_reading(no_rows, "DrasCLR")


def test_rule_f1_is_read_next_to_the_flagged_share_and_warned_when_most_is_flagged() -> None:
    """The Reading gives the 25 % rule's F1 only with each map's readout and flagged share, and
    says it is not a detection score when a map flags most of the lung."""
    from drasclr.report.markdown import reading

    rule = pd.DataFrame({"method": ["DrasCLR"] * 2, "task": ["cle"] * 2,
                         "rule": ["paper (25 %)", "chosen fraction (departure)"],
                         "fraction": [0.25, 0.05], "f1": [1.0, 1.0], "n_boxes": [8, 8],
                         "fallback": [False, False],
                         "readout": ["box readout (p > threshold)"] * 2})
    results = {"boxes": {"counts": {"cle": {"lesion_fraction_min": 0.01,
                                           "lesion_fraction_max": 0.4}}}}

    def sentence(flagged: float) -> str:
        overlap = pd.DataFrame({"method": ["DrasCLR"] * 2, "detected_fraction": [flagged] * 2})
        text = [s for s in reading(results, None, None, rule, None, overlap) if "25 %" in s]
        assert len(text) == 1
        return text[0]

    most = sentence(0.98)
    assert "DrasCLR: box readout (p > threshold), flagging 98 % of the lung" in most
    assert "They are not detection scores:** the map of DrasCLR flags most" in most
    assert "F1 cle" in most
    few = sentence(0.04)
    assert "flagging 4 % of the lung" in few and "not detection scores" not in few
