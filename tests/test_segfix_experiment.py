"""experiments/segfix.py end to end on the embedded synthetic data (tiny budgets, in-process)."""

import json

import pytest

from experiments import segfix as experiment


def test_segfix_before_and_after_on_two_segmenters(tmp_path):
    status = experiment.main(["--low-res", "1,2", "--iterations", "3", "--segfix-iterations", "3", "--batch-size",
                              "2", "--segfix-batch-size", "2", "--out", str(tmp_path)])
    assert status == 0
    document = json.loads((tmp_path / "results.json").read_text())["results"]
    results = document["results"]
    assert list(results) == ["F=1", "F=2"]
    for rows in results.values():
        assert list(rows) == list(experiment.ROWS)
        predicted = rows["predicted"]
        assert predicted["changed"] == 0
        for row in rows.values():
            assert all(0 <= row[key] <= 1 for key in ("miou", "acc", "bf1", "bf3", "bf5", "changed"))
    # The two segmenters were trained at their own resolutions: their crops differ by the factor.
    configs = [json.loads((tmp_path / f"segmenter_f{f}" / "config.json").read_text()) for f in (1, 2)]
    assert [c["crop_size"] for c in configs] == [[64, 64], [32, 32]]
    assert json.loads((tmp_path / "segfix" / "config.json").read_text())["model_kwargs"] == {"boundary_width": 2}
    for name in ("results.md", "segfix_gain.png", "examples.png", "segfix/last.pth"):
        assert (tmp_path / name).is_file(), name
    assert "| F=2 | + SegFix with true maps |" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--low-res", "0"], "--low-res: expected distinct positive ints"),
    (["--low-res", "a"], "--low-res: expected comma-separated positive ints"),
    (["--segmenter-weights", "w.pth"], "--segmenter-weights: give --low-res 1"),
    (["--boundary-threshold", "1.5"], "--boundary-threshold must be in [0, 1)"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        experiment.parse_args(argv)
    assert message in capsys.readouterr().err
