"""Replayed feedback (issue 17, item 8): how far 400 scores of 0 posted for ONE run move ANOTHER prompt's prediction.

A router over the tiny offline models with per-prompt routing (hashing encoder, the tiny profile's accuracies as
the prior) answers one prompt on ``tiny-b``; then the same feedback, score 0, is sent 400 times for that one run.
Printed: a different prompt's predicted accuracy of ``tiny-b`` and its route before any feedback, after the first
post and after all 400, and how many of the posts the router learned from. A run learns from its first score
only, so only the first post counts.

Run: .venv/bin/python benchmarks/bench_feedback_replay.py
"""

from __future__ import annotations

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.state import MemoryStateStore
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

SCORED = "Say hello to Anna."
OTHER = "What is 12 plus 30?"
POSTS = 400


def main() -> None:
    models = tiny_chat_models(max_new_tokens=2)
    profile = tiny_profile()
    store = MemoryStateStore()
    accuracy = {name: profile.models[name].accuracy for name in models}
    routing = PromptRouting(list(models), None, store, prior_accuracy=accuracy, encoder=HashingEncoder(256))
    router = EnergyAwareRouter(
        models=models,
        profile=profile,
        state_store=store,
        prompt_routing=routing,
        weights={"accuracy": 0.95, "energy": 0.05},
    )

    def predicted(text: str) -> tuple[float, str]:
        call = router.plan(text)
        call.close()
        return call.decision.candidates["tiny-b"].accuracy, call.decision.model

    before, route_before = predicted(OTHER)
    answer = router.invoke(SCORED, model="tiny-b")
    run_id = answer.response_metadata["routing"]["run_id"]
    learned = int(router.feedback(run_id, 0.0))
    once, route_once = predicted(OTHER)
    learned += sum(router.feedback(run_id, 0.0) for _ in range(POSTS - 1))
    after, route_after = predicted(OTHER)
    print(f"{POSTS} posts of score 0 for one run on {SCORED!r}: {learned} learned")
    print(
        f"{OTHER!r}: predicted accuracy of tiny-b {before:.3f} (no feedback) -> {once:.3f} (first post) -> "
        f"{after:.3f} (all {POSTS}); route {route_before} -> {route_once} -> {route_after}"
    )
    router.close()


if __name__ == "__main__":
    main()
