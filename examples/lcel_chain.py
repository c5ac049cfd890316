"""``prompt | router | StrOutputParser()``: an LCEL chain whose model is chosen per call.

By default the router's candidates are two tiny offline models (their text is
gibberish; what matters is which model serves each call and what it cost) and
the profile is made up in code so that ``tiny-b`` is the more accurate, more
expensive model. ``--packaged`` routes between the packaged SmolLM2 and Gemma
models instead, with the CPU reference profile (or ``--profile``) and the
packaged per-prompt predictor, so each preset's choice rests on who is likely
right on *this* question.

Run it::

    python examples/lcel_chain.py
    python examples/lcel_chain.py --question "Why is the sky blue?"
    python examples/lcel_chain.py --packaged
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_energyrouter import PRESETS
from langchain_energyrouter.router import EnergyAwareRouter


def build_router(profile: str | None = None, *, packaged: bool = False) -> EnergyAwareRouter:
    """The router over the tiny models, or over the packaged ones (``profile`` defaults to the CPU reference)."""
    if packaged:
        from langchain_energyrouter import EnergyProfile
        from langchain_energyrouter.cli.demo import predictor_path
        from langchain_energyrouter.models import load_chat_model

        names = ("smollm2-135m", "gemma3-270m")
        return EnergyAwareRouter(
            models={n: load_chat_model(n, max_new_tokens=32) for n in names},
            energy_profile=profile or EnergyProfile.reference("cpu-reference"),
            prompt_routing=str(predictor_path("packaged-models")),
        )
    from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

    return EnergyAwareRouter(models=tiny_chat_models(), energy_profile=profile or tiny_profile())


def run(router: EnergyAwareRouter, question: str) -> list[dict[str, Any]]:
    """Ask ``question`` once per weight preset; returns what served each call and what it cost."""
    prompt = ChatPromptTemplate.from_messages([("system", "Answer with one word."), ("human", "{question}")])
    chain = prompt | router | StrOutputParser()
    rows = []
    for preset, weights in PRESETS.items():
        # The answer text comes out of the parser; the routing is on the message, so ask the router too.
        decision = router.explain(prompt.invoke({"question": question}), weights=weights)
        answer = chain.invoke({"question": question}, config={"configurable": {"energyrouter_weights": weights}})
        rows.append(
            {
                "preset": preset,
                "model": decision.model,
                "predicted_energy_j": decision.chosen.predicted_energy_j,
                "answer": answer,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print which model each weight preset routes to, and its answer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is the capital of France?")
    parser.add_argument("--profile", help="a profile JSON (with --packaged: the CPU reference by default)")
    parser.add_argument("--packaged", action="store_true", help="route between the packaged SmolLM2 and Gemma")
    args = parser.parse_args(argv)
    router = build_router(args.profile, packaged=args.packaged)
    try:
        for row in run(router, args.question):
            print(
                f"{row['preset']:>15}: {row['model']:<14} predicted {row['predicted_energy_j']:.3f} J  "
                f"answer {row['answer']!r}"
            )
        message = router.invoke(args.question, weights=PRESETS["energy-first"])
        energy = message.response_metadata["energy"]
        print(
            f"measured ({energy['method']}): {energy['energy_j']} J in {energy['runtime_s']:.4f} s, "
            f"predicted {energy['predicted_energy_j']:.3f} J; usage {message.usage_metadata}"
        )
    finally:
        router.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
