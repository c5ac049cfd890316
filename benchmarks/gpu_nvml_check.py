"""The NVML path end to end, on a machine with an NVIDIA GPU (these build machines have none).

What it does, with nothing downloaded:

1. saves two randomly initialised Llama models of different sizes (about 25 M and 0.8 G
   parameters; random weights, real GPU work) as local model directories;
2. ``energyrouter calibrate`` both on ``cuda:0``: a designed grid of forced lengths, metered by
   the GPU's energy counter (``nvml_counter``) of that one device, fitted into a profile;
3. routes a stream of requests across them with ``EnergyAwareRouter`` (learning on), printing
   per call the chosen model, predicted and measured joules, the meter's method, devices and
   flags, and where the prediction came from (prior or adapted, with how many observations).

Run: ``python benchmarks/gpu_nvml_check.py [OUT_DIR]``; a summary goes to OUT_DIR/nvml_check.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    import torch

    from langchain_energyrouter import EnergyAwareRouter, EnergyProfile, load_chat_model
    from langchain_energyrouter.cli.main import main as cli
    from langchain_energyrouter.energy import select_meter
    from langchain_energyrouter.testing import save_tiny_model

    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    out_dir.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check (the NVML-absent path is covered by the unit tests)")
        return 0
    meter, skipped = select_meter()
    summary: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(0),
        "default_meter": meter.method,
        "default_meter_devices": list(meter.devices),
        "skipped": skipped,
    }
    meter.close()
    print(json.dumps(summary), flush=True)

    work = Path(tempfile.mkdtemp())
    sizes = {"small": (512, 4), "large": (2048, 16)}
    dirs = {
        name: save_tiny_model(work / name, name, hidden_size=h, num_hidden_layers=n) for name, (h, n) in sizes.items()
    }
    profile_path = work / "gpu.json"
    started = time.perf_counter()
    status = cli(
        [
            "calibrate",
            *(str(d) for d in dirs.values()),
            "--device",
            "cuda:0",
            "--dtype",
            "bfloat16",
            "--input-lengths",
            "16,128",
            "--output-lengths",
            "32,128",
            "--repetitions",
            "2",
            "--warmup",
            "2",
            "--natural-max-new-tokens",
            "64",
            "--out",
            str(profile_path),
        ]
    )
    summary["calibrate_status"] = status
    summary["calibrate_s"] = round(time.perf_counter() - started, 1)
    if status != 0:
        print(json.dumps(summary))
        return 1
    profile = EnergyProfile.load(profile_path)
    summary["profile_energy_method"] = profile.energy_method
    summary["profile"] = {
        name: {
            "energy_j_per_output_token": m.energy.output_tokens,
            "energy_intercept_j": m.energy.intercept,
            "runtime_s_per_output_token": m.runtime.output_tokens,
        }
        for name, m in profile.models.items()
    }
    # Model names in the profile are the directories' display names.
    names = {name: next(n for n in profile.models if n.endswith(name) or name in n) for name in dirs}
    models = {
        names[name]: load_chat_model(d, device="cuda:0", dtype="bfloat16", max_new_tokens=96)
        for name, d in dirs.items()
    }
    router = EnergyAwareRouter(models=models, profile=profile, weights={"energy": 1.0})
    calls = []
    prompts = ["Tell me about the sea.", "What is 2 + 2?", "Write a long story about a dragon and a knight."]
    for i in range(18):
        weights = {"energy": 1.0} if i % 3 else {"accuracy": 1.0}
        message = router.invoke(prompts[i % len(prompts)], weights=weights)
        routing, energy = message.response_metadata["routing"], message.response_metadata["energy"]
        chosen = routing["candidates"][routing["served_by"]]
        calls.append(
            {
                "model": routing["served_by"],
                "predicted_energy_j": round(routing["predicted_energy_j"], 2),
                "measured_energy_j": None if energy["energy_j"] is None else round(energy["energy_j"], 2),
                "runtime_s": round(energy["runtime_s"], 3),
                "method": energy["method"],
                "devices": energy["devices"],
                "flags": energy["flags"],
                "sources": chosen.get("sources"),
                "observations": chosen.get("observations"),
            }
        )
        print(json.dumps(calls[-1]), flush=True)
    router.close()
    summary["calls"] = calls
    measured = [c for c in calls if c["measured_energy_j"]]
    late = measured[len(measured) // 2 :]
    summary["energy_mape_second_half"] = round(
        sum(abs(c["predicted_energy_j"] - c["measured_energy_j"]) / c["measured_energy_j"] for c in late) / len(late), 3
    )
    (out_dir / "nvml_check.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "calls"}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
