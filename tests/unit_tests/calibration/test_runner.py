"""The profiling loop resumes after a crash and never measures a cell twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from langchain_energyrouter.calibration.design import SuiteItem, grid_cells
from langchain_energyrouter.calibration.rawdata import read_raw
from langchain_energyrouter.calibration.runner import RunSettings, read_outputs, run_model
from langchain_energyrouter.energy import EstimateMeter

SUITE = [SuiteItem("a", "Say hi."), SuiteItem("b", "What is two plus two?", ("4",), "contains", "arithmetic")]


class _Crash(Exception):
    pass


def _settings() -> RunSettings:
    return RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=2, warmup=1, natural_max_new_tokens=6)


def test_exception_after_k_rows_then_rerun_completes_only_missing(tmp_path: Path) -> None:
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    path = tmp_path / "tiny.csv"

    def crash(rows: int) -> None:
        if rows == 3:
            raise _Crash

    with EstimateMeter() as meter, pytest.raises(_Crash):
        run_model("tiny", model, tokenizer, meter, path, _settings(), SUITE, after_row=crash)
    assert len(read_raw(path).frame) == 3
    with EstimateMeter() as meter:
        result = run_model("tiny", model, tokenizer, meter, path, _settings(), SUITE)
    total = len(grid_cells((8, 24), (2, 5), 2, 1024)[0]) + len(SUITE)
    assert result.skipped == 3 and result.measured == total - 3
    frame = read_raw(path).frame
    assert len(frame) == total and frame["design_cell"].is_unique
    grid = frame[frame["design_cell"].str.startswith("grid:")]
    assert (grid["output_tokens"] == grid["design_cell"].str.extract(r"out=(\d+)")[0].astype(int)).all()
    assert (grid["input_tokens"] == grid["design_cell"].str.extract(r"in=(\d+)")[0].astype(int)).all()
    assert set(read_outputs(result.outputs_path)) == {"a", "b"}
    assert frame["prompt_id"].is_unique


def test_sigkill_mid_run_loses_at_most_the_row_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    script = textwrap.dedent(f"""
        import time
        from langchain_energyrouter.calibration.runner import RunSettings, run_model
        from langchain_energyrouter.energy import EstimateMeter
        from langchain_energyrouter.testing import build_tiny_model_and_tokenizer
        model, tokenizer = build_tiny_model_and_tokenizer()
        settings = RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=3, warmup=0)
        run_model("tiny", model, tokenizer, EstimateMeter(), {str(path)!r}, settings,
                  after_row=lambda n: time.sleep(0.3))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_raw(path, warn=lambda m: None).frame)
    assert done_before >= 3
    with EstimateMeter() as meter:
        from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

        model, tokenizer = build_tiny_model_and_tokenizer()
        settings = RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=3, warmup=0)
        result = run_model("tiny", model, tokenizer, meter, path, settings, warn=lambda m: None)
    assert result.skipped == done_before and result.measured == 12 - done_before
    frame = read_raw(path).frame
    assert len(frame) == 12 and frame["design_cell"].is_unique


def test_time_budget_stops_and_says_so(tmp_path: Path) -> None:
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    settings = _settings()
    settings.budget_s = 0.0
    messages: list[str] = []
    with EstimateMeter() as meter:
        result = run_model("tiny", model, tokenizer, meter, tmp_path / "t.csv", settings, SUITE, warn=messages.append)
    assert result.measured == 0 and result.not_run > 0
    assert any("budget" in m for m in messages)


# -- load: several requests in flight --------------------------------------------------
def test_concurrency_levels_write_one_row_per_batch_with_in_flight(tmp_path: Path) -> None:
    from langchain_energyrouter.calibration.loadfit import fit_load_model
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    settings = RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=1, warmup=1)
    settings.concurrency = (1, 2, 4)
    path = tmp_path / "tiny.csv"
    with EstimateMeter() as meter:
        result = run_model("tiny", model, tokenizer, meter, path, settings, SUITE)
    frame = read_raw(path).frame
    assert result.measured == 3 * 4 + len(SUITE)
    grid = frame[frame["design_cell"].str.startswith("grid:")]
    assert sorted(grid.groupby("in_flight").size().items()) == [(1, 4), (2, 4), (4, 4)]
    loaded = grid[grid["in_flight"] > 1]
    assert (loaded["design_cell"].str.extract(r"load=(\d+)$")[0].astype(int) == loaded["in_flight"]).all()
    assert (frame.loc[frame["design_cell"].str.startswith("natural:"), "in_flight"] == 1).all()
    assert frame["design_cell"].is_unique
    load = fit_load_model(frame)
    assert load is not None and load.reference_load == 1.0 and load.max_load == 4.0
    assert load.fit is not None and load.fit.n == 8


def test_a_batch_row_holds_one_requests_share_of_the_window(tmp_path: Path) -> None:
    """The meter's window covers the whole batch; the row gets 1/n of its joules and all of its time."""
    from langchain_energyrouter.energy.base import EnergyReading
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    class FixedMeter:
        method = "estimate"
        devices = ("cpu:process",)

        def begin(self) -> int:
            return 0

        def end(self, handle: int) -> EnergyReading:
            return EnergyReading(12.0, {"cpu:process": 12.0}, 3.0, "estimate", True, ("cpu:process",))

    model, tokenizer = build_tiny_model_and_tokenizer()
    settings = RunSettings(input_lengths=(8,), output_lengths=(3,), repetitions=1, warmup=0, concurrency=(1, 4))
    run_model("tiny", model, tokenizer, FixedMeter(), tmp_path / "t.csv", settings)
    frame = read_raw(tmp_path / "t.csv").frame.set_index("in_flight")
    assert frame.loc[1, "energy_joules"] == 12.0 and frame.loc[4, "energy_joules"] == 3.0
    assert frame.loc[4, "runtime_seconds"] == 3.0
    assert frame.loc[4, "input_tokens"] == 8 and frame.loc[4, "output_tokens"] == 3


def test_batched_prompts_differ_and_equal_their_single_generations() -> None:
    from langchain_energyrouter.calibration.design import PromptBuilder
    from langchain_energyrouter.calibration.runner import generate, generate_batch
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    builder = PromptBuilder(tokenizer)
    batch = [builder.ids(12, offset=5 + 131 * j) for j in range(3)]
    assert len({tuple(ids) for ids in batch}) == 3
    together = generate_batch(model, tokenizer, batch, 4, forced=True)
    alone = [generate(model, tokenizer, ids, 4, forced=True)[0] for ids in batch]
    assert together == alone


def test_concurrency_must_include_one(tmp_path: Path) -> None:
    from langchain_energyrouter.calibration.design import parse_concurrency
    from langchain_energyrouter.errors import CalibrationError

    assert parse_concurrency("4,1,2") == (1, 2, 4)
    with pytest.raises(CalibrationError, match=r"must include 1.*--concurrency 1,2"):
        parse_concurrency("2,4")


# -- issue 12 item 14: fingerprint, answer text first ------------------------------------
def test_resume_with_other_settings_is_refused_naming_both(tmp_path: Path) -> None:
    from langchain_energyrouter.calibration.runner import fingerprint_path
    from langchain_energyrouter.errors import CalibrationError
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    path = tmp_path / "tiny.csv"
    settings = RunSettings(input_lengths=(8,), output_lengths=(2,), repetitions=1, warmup=0, natural_max_new_tokens=64)
    context = {"device": "cpu", "dtype": "float32", "threads": None, "model": "tiny"}
    with EstimateMeter() as meter:
        run_model("tiny", model, tokenizer, meter, path, settings, context=context)
        assert fingerprint_path(path).exists()
        with pytest.raises(CalibrationError, match=r"dtype='float32'.*this run has dtype='bfloat16'.*--raw-dir"):
            run_model("tiny", model, tokenizer, meter, path, settings, context={**context, "dtype": "bfloat16"})
        other_budget = RunSettings(
            input_lengths=(8,), output_lengths=(2,), repetitions=1, warmup=0, natural_max_new_tokens=128
        )
        with pytest.raises(CalibrationError, match=r"natural_max_new_tokens=64.*natural_max_new_tokens=128"):
            run_model("tiny", model, tokenizer, meter, path, other_budget, context=context)
        # the same settings resume; a larger design extends the same rows
        bigger = RunSettings(
            input_lengths=(8, 16),
            output_lengths=(2,),
            repetitions=1,
            warmup=0,
            natural_max_new_tokens=64,
            concurrency=(1, 2),
        )
        result = run_model("tiny", model, tokenizer, meter, path, bigger, context=context)
    assert result.skipped == 1 and result.measured == 3
    with pytest.raises(CalibrationError, match=r"energy_method='estimate'.*energy_method='none'"):
        from langchain_energyrouter.energy import NullMeter

        run_model("tiny", model, tokenizer, NullMeter(), path, settings, context=context)


def test_answer_text_is_written_before_its_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_energyrouter.calibration.rawdata import RawWriter
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    path = tmp_path / "tiny.csv"
    settings = RunSettings(input_lengths=(8,), output_lengths=(2,), repetitions=1, warmup=0, natural_max_new_tokens=4)
    real_append = RawWriter.append

    def crash_on_natural(self: RawWriter, row: object) -> None:
        if getattr(row, "design_cell", "").startswith("natural:"):
            raise _Crash  # the process dies between the answer and its row
        real_append(self, row)  # type: ignore[arg-type]

    monkeypatch.setattr(RawWriter, "append", crash_on_natural)
    with EstimateMeter() as meter, pytest.raises(_Crash):
        run_model("tiny", model, tokenizer, meter, path, settings, SUITE[:1])
    outputs = tmp_path / "tiny.outputs.jsonl"
    assert set(read_outputs(outputs)) == {"a"}  # the text survived
    assert not read_raw(path).frame["design_cell"].str.startswith("natural:").any()  # the cell is not done
    monkeypatch.setattr(RawWriter, "append", real_append)
    with EstimateMeter() as meter:
        result = run_model("tiny", model, tokenizer, meter, path, settings, SUITE[:1])
    assert result.measured >= 1 and "natural:a" in set(read_raw(path).frame["design_cell"])
    assert set(read_outputs(outputs)) == {"a"}


def test_old_raw_files_mean_one_in_flight_and_take_no_loaded_rows(tmp_path: Path) -> None:
    from langchain_energyrouter.calibration.rawdata import LEGACY_COLUMNS, RawRow, RawWriter
    from langchain_energyrouter.errors import CalibrationError

    path = tmp_path / "old.csv"
    path.write_text(
        ",".join(LEGACY_COLUMNS) + '\n1,8,2,0.5,1.0,estimate,2026-01-01T00:00:00Z,"grid:in=8,out=2,rep=1"\n'
    )
    assert list(read_raw(path).frame["in_flight"]) == [1]
    row = RawRow(2, 8, 4, 0.6, 1.2, "estimate", "2026-01-01T00:00:01Z", "grid:in=8,out=4,rep=1")
    with RawWriter(path, print) as writer:
        assert writer.done_cells == {"grid:in=8,out=2,rep=1": 1}
        writer.append(row)  # one in flight: fits the old format
        with pytest.raises(CalibrationError, match=r"predates the in_flight column.*another --raw-dir"):
            writer.append(RawRow(3, 8, 4, 0.6, 1.2, "estimate", "t", "grid:in=8,out=4,rep=1,load=2", in_flight=2))
    assert path.read_text().splitlines()[0] == ",".join(LEGACY_COLUMNS)
    assert list(read_raw(path).frame["in_flight"]) == [1, 1]


# -- issue 12 item 4: meter only the device the model runs on -----------------------------
def test_calibration_meter_measures_only_the_named_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_energyrouter.calibration.runner import calibration_meter
    from tests.unit_tests.test_energy_nvml import FakeGpu, make_fake_pynvml

    gpus = [FakeGpu(uuid=f"GPU-{i}", pci_bus_id=f"00000000:{i}0:00.0") for i in range(3)]
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with calibration_meter("cuda:1") as meter:
        assert meter.method == "nvml_counter" and meter.devices == ("cuda:1",)
        handle = meter.begin()
        gpus[0].energy_mj += 50_000  # another job on GPU 0
        gpus[1].energy_mj += 2_000
        reading = meter.end(handle)
    assert reading.energy_j == pytest.approx(2.0)
    assert reading.energy_j_by_device == {"cuda:1": pytest.approx(2.0)}


def test_a_cpu_model_never_gets_the_gpus_joules(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_energyrouter.calibration.runner import calibration_meter
    from tests.unit_tests.test_energy_nvml import FakeGpu, make_fake_pynvml

    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml([FakeGpu(uuid="GPU-0", pci_bus_id="0:1:0.0")]))
    with calibration_meter("cpu") as meter:
        assert meter.method in ("rapl", "estimate")
        assert not any(str(d).startswith("cuda") for d in meter.devices)


def test_a_gpu_without_nvml_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_energyrouter.calibration.runner import calibration_meter
    from langchain_energyrouter.errors import CalibrationError

    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    with pytest.raises(CalibrationError, match=r"No GPU energy meter for cuda:0.*\[nvml\]"):
        calibration_meter("cuda")


def test_a_gpu_without_a_driver_is_not_told_to_install_the_installed_extra() -> None:
    # The real pynvml of this machine, which has no NVIDIA driver: NVML's library is what is missing.
    pytest.importorskip("pynvml")
    from langchain_energyrouter.calibration.runner import calibration_meter
    from langchain_energyrouter.errors import CalibrationError

    try:
        meter = calibration_meter("cuda:0")
    except CalibrationError as err:
        message = str(err)
    else:
        meter.close()
        pytest.skip("this machine has NVML")
    assert "LibraryNotFound" in message and "pip install" not in message
    assert "pynvml is installed, but the NVIDIA driver's NVML library" in message and "nvidia-smi" in message


# -- the calibrate command ---------------------------------------------------------------
def test_calibrate_at_three_concurrency_levels_fits_the_load_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from langchain_energyrouter.cli import main
    from langchain_energyrouter.profile import EnergyProfile

    out = tmp_path / "p.json"
    argv = ["calibrate", str(tiny_model_dir), "--out", str(out), "--device", "cpu", "--concurrency", "1,2,4"]
    argv += ["--input-lengths", "8,32", "--output-lengths", "2,6", "--repetitions", "1", "--warmup", "1"]
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(f'{{"id": "q{i}", "prompt": "{"word " * (2 + 3 * i)}"}}\n' for i in range(4)))
    assert main([*argv, "--suite", str(suite), "--natural-max-new-tokens", "4"]) == 0
    mp = EnergyProfile.load(out).models["tiny-a"]
    assert mp.load is not None and (mp.load.reference_load, mp.load.max_load) == (1.0, 4.0)
    assert mp.load.fit is not None and mp.load.fit.n == 8  # 4 cells x 2 loaded levels
    assert mp.runtime.fit is not None and mp.runtime.fit.n == 4 + 4  # cost models: rows at one in flight only
    settings = json.loads((tmp_path / "p-raw" / "tiny-a.settings.json").read_text())
    assert settings["concurrency"] == [1, 2, 4] and settings["device"] == "cpu"


def test_calibrate_saves_each_model_before_the_next_loads(tmp_path: Path, tiny_model_dir: Path) -> None:
    from langchain_energyrouter.cli import main
    from langchain_energyrouter.profile import EnergyProfile

    out = tmp_path / "p.json"
    argv = ["calibrate", str(tiny_model_dir), str(tmp_path / "no-such-model"), "--out", str(out), "--device", "cpu"]
    argv += ["--input-lengths", "8,16", "--output-lengths", "2,4", "--repetitions", "1", "--warmup", "0"]
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(f'{{"id": "q{i}", "prompt": "{"word " * (2 + 3 * i)}"}}\n' for i in range(3)))
    assert main([*argv, "--suite", str(suite), "--natural-max-new-tokens", "3"]) == 1  # model 2 fails to load
    assert set(EnergyProfile.load(out).models) == {"tiny-a"}
