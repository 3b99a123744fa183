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
