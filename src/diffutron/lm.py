"""`Diffutron`: a loaded masked diffusion LM with chat, generate (also in the middle of a text), infill,
embeddings and tokenization."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import ContextLengthError, DiffutronError
from diffutron.model.adapters import Adapters
from diffutron.model.chat import Message, render_chat
from diffutron.model.embeddings import embed_ids
from diffutron.model.loading import load_checkpoint, load_tokenizer
from diffutron.model.parts import compile_encoder
from diffutron.model.precision import is_quantized
from diffutron.model.tokenize import Tokenized, detokenize, tokenize
from diffutron.model.tokens import SpecialIds, check_unicode, cut_to_fit, encode, encode_text, tokenizer_fingerprint
from diffutron.sampling.config import GenerationConfig, checked_config
from diffutron.sampling.infill import parse_placeholders
from diffutron.sampling.logprobs import LogprobRecorder, ScoredAnswer, checked_top_logprobs, scored_positions
from diffutron.sampling.presets import speed_config, speed_dtype
from diffutron.sampling.sampler import StepCallback, denoise, sample
from diffutron.sampling.stopping import AnswerStops
from diffutron.sampling.streams import row_seeds_for
from diffutron.sampling.structured import ResponseFormat, structured_answers, with_instruction
from diffutron.sampling.structured import response_format as read_response_format


class Diffutron:
    """A masked-LM checkpoint and its tokenizer, ready to generate.

    >>> lm = Diffutron.from_pretrained("diffutron/DiffutronLM-0.3B-Instruct")  # doctest: +SKIP
    >>> lm.chat("Türkiye'nin başkenti neresidir?")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: GenerationConfig | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = checked_config(config)
        self.special = SpecialIds.from_tokenizer(tokenizer)
        self.answer_stops = AnswerStops.for_tokenizer(tokenizer)  # where an answer ends
        base = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.adapters = Adapters(model, base)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        speed: str = "exact",
        adapters: Mapping[str, str | Path] | None = None,
    ) -> Diffutron:
        """Load a local directory or hub id; `None` is the model embedded in the package.

        `speed` (exact, fast, fastest) sets the default generation settings and, unless
        `dtype` is given, the CPU precision (docs/fast-generation.md). `adapters` maps names to
        LoRA adapter directories written by `diffutron train` (`load_adapter`).
        """
        config = speed_config(speed)
        if dtype is None or dtype == "auto":
            dtype = speed_dtype(speed, None if device is None else str(device))
        model, tokenizer = load_checkpoint(name_or_path, device=device, dtype=dtype)
        lm = cls(model, tokenizer, config)
        for name, path in (adapters or {}).items():
            lm.load_adapter(name, path)
        return lm

    @property
    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def compile(self) -> None:
        """Compile the encoder pass of generation with `torch.compile` (docs/serving.md, "Compiling").

        Before returning it runs the kinds of calls that compile a graph of their own: one row and
        a padded batch, on canvases shorter and longer than the local attention window, so that
        later requests rarely wait for a compilation.
        """
        if not compile_encoder(self.model):
            raise DiffutronError(f"compiling works with ModernBERT-like masked LMs, not a {type(self.model).__name__}")
        window = int(getattr(self.model.config, "local_attention", 128))
        for new_tokens in (4, min(window + 1, self.context_length - 16)):
            once = GenerationConfig(max_new_tokens=new_tokens, steps=1, block_length=new_tokens, temperature=0.0)
            self.chat("Merhaba", once)
            self.generate(["Merhaba", "Bugün hava çok güzel, parka gidelim mi?"], once)

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a LoRA adapter (a directory `diffutron train` wrote) as `name`, off until `adapter(name)`.

        It must fit this model's layers and, if it carries a tokenizer, use this model's vocabulary.
        """
        if is_quantized(self.model):
            raise DiffutronError(
                "LoRA adapters need an unquantized model, not an int8 one: load it with another dtype or speed"
            )
        adapter_tokenizer = Path(path) / "tokenizer_config.json"
        if adapter_tokenizer.is_file() and tokenizer_fingerprint(load_tokenizer(path)) != tokenizer_fingerprint(
            self.tokenizer
        ):
            raise DiffutronError(f"the adapter {path} was trained with another tokenizer than this model's")
        self.adapters.load(name, path)

    @contextlib.contextmanager
    def adapter(self, name: str | None) -> Iterator[None]:
        """Run the block with the LoRA adapter `name` on (None: the base model alone).

        >>> with lm.adapter("legal"):  # doctest: +SKIP
        ...     lm.chat("Kira sözleşmesi nasıl feshedilir?")
        """
        with self.adapters.active(name):
            yield

    def encode(self, text: str, field: str = "text") -> list[int]:
        """Token ids without special tokens (the chat format uses plain-text tags); text that is
        not valid Unicode is an error naming `field`."""
        return encode_text(self.tokenizer, text, field)

    def chat(
        self,
        messages_or_text: str | Sequence[Message],
        config: GenerationConfig | None = None,
        *,
        callback: StepCallback | None = None,
        response_format: Mapping[str, Any] | ResponseFormat | None = None,
    ) -> str:
        """Answer the last user turn of a conversation (or a single question).

        `response_format` (OpenAI's shape: {"type": "json_object"} or {"type": "json_schema",
        "json_schema": {"schema": ...}}) makes the answer JSON that always parses, and validates
        against the schema (docs/structured-output.md).
        """
        structured = read_response_format(response_format)
        if structured is not None:
            messages_or_text = with_instruction(messages_or_text, structured)
        prompt = render_chat(messages_or_text)
        return self._generate_ids([self.encode(prompt)], config, callback, structured=structured)[0]

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        chat: bool = True,
        *,
        callback: StepCallback | None = None,
        first_index: int = 0,
        response_format: Mapping[str, Any] | ResponseFormat | None = None,
        suffix: str | None = None,
        logprobs: int | None = None,
    ) -> list[str] | list[ScoredAnswer]:
        """Answers for several prompts in one batch; `chat=False` continues raw text.

        `response_format`: JSON answers, as in `chat` (a chat prompt also says that JSON is expected).

        With a seed, prompt i draws from the stream of position `first_index + i`: a caller that
        splits a long input into batches passes each batch's start, so that every answer is the
        one its prompt gets alone with seed `config.seed + first_index + i` (or in any batch).

        `suffix` (with `chat=False`) fills in the middle: up to `max_new_tokens` tokens between each
        prompt and the suffix; the middle ends at its first EOS or padding token, so it may be shorter.
        `logprobs=k` (0 to 20) returns `ScoredAnswer`s: each answer token's log-probability at the call
        that committed it and the k likeliest alternatives there (`diffutron.sampling.logprobs`).
        """
        if isinstance(prompts, str):
            raise DiffutronError("generate takes a list of prompts; use chat() for a single one")
        if not isinstance(prompts, Sequence):
            raise DiffutronError(f"generate takes a list of prompts (texts), got {type(prompts).__name__}")
        structured = read_response_format(response_format)
        texts = []
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise DiffutronError(f"prompt {index} must be text, got {type(prompt).__name__}")
            if not prompt.strip():
                raise DiffutronError(f"prompt {index} is empty: give some text")
            check_unicode(prompt, f"prompt {index}")
            if chat:
                prompt = render_chat(prompt if structured is None else with_instruction(prompt, structured))
            texts.append(prompt)
        if suffix is not None and (chat or not isinstance(suffix, str)):
            raise DiffutronError("suffix is the text after the middle to fill: give it as text, with chat=False")
        if structured is not None and (suffix is not None or logprobs is not None):
            raise DiffutronError("response_format shapes the whole answer: leave out suffix and logprobs with it")
        top = None if logprobs is None else checked_top_logprobs(logprobs)
        suffix_ids = self.encode(suffix) if suffix else []
        ids = encode(self.tokenizer, texts)
        return self._generate_ids(ids, config, callback, first_index, structured, suffix_ids, top)

    def infill(
        self,
        text: str,
        config: GenerationConfig | None = None,
        *,
        callback: StepCallback | None = None,
    ) -> str:
        """Fill `[MASK]` (one token) and `[MASK:n]` (n tokens) placeholders; keep the rest."""
        config = checked_config(config, self.config)
        if not isinstance(text, str):
            raise DiffutronError(f"infill takes a text with [MASK] placeholders, got {type(text).__name__}")
        check_unicode(text, "the text")
        parts = parse_placeholders(text)
        gaps = sum(part for part in parts if isinstance(part, int))
        if gaps > self.context_length:  # refused before allocating the canvas
            raise DiffutronError(
                f"the placeholders ask for {gaps} tokens, more than the model's context of "
                f"{self.context_length}: ask for fewer"
            )
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        pieces: list[str | None] = []
        for part in parts:
            if isinstance(part, int):
                spans.append((len(ids), len(ids) + part))
                ids.extend([self.special.mask] * part)
                pieces.append(None)
            else:
                encoded = self.encode(part)
                if self.special.mask in encoded:
                    raise DiffutronError(
                        f"the text contains the mask token {self.tokenizer.mask_token!r}: "
                        "mark the gaps with [MASK] or [MASK:n] instead"
                    )
                ids.extend(encoded)
                pieces.append(part)
        if len(ids) > self.context_length:
            raise DiffutronError(
                f"the text is {len(ids)} tokens long, more than the model's context of {self.context_length}"
            )
        canvas = torch.tensor([ids], device=self.device)
        filled = denoise(self.model, self.tokenizer, canvas, config, callback=callback)[0].tolist()
        fills = iter(self._span_text(filled, start, end) for start, end in spans)
        return "".join(piece if piece is not None else next(fills) for piece in pieces)

    def answer(self, canvas_row: Sequence[int], prompt_length: int, end: int | None = None) -> str:
        """The answer in a canvas row (from `prompt_length` to `end`, a suffix's start): cut at the first
        mask, EOS or pad, then at `[/Answer]` (`AnswerStops`)."""
        return self.answer_stops.answer(self.tokenizer, canvas_row[prompt_length:end])

    def embed(self, inputs: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]) -> torch.Tensor:
        """(inputs, hidden) float32 unit vectors: the encoder's last hidden states mean-pooled over each
        input's tokens (a text, a list of texts, a list of token ids or a list of such lists), batched."""
        return embed_ids(self.model, self.embedding_ids(inputs), self.special.pad)

    def embedding_ids(self, inputs: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]) -> list[list[int]]:
        """The token ids `embed` pools over, one list per input; an empty input, token ids outside the
        vocabulary or an input longer than the context (`ContextLengthError`) are refused."""
        batch = self._embedding_inputs(inputs)
        for index, ids in enumerate(batch):
            if not ids:
                raise DiffutronError(f"input {index} is empty: give some text or token ids")
            if len(ids) > self.context_length:
                raise ContextLengthError(
                    f"input {index} has {len(ids)} tokens, more than the model's context of {self.context_length}"
                )
            if any(
                not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < len(self.tokenizer)
                for token in ids
            ):
                raise DiffutronError(f"input {index} holds a token id outside the vocabulary of {len(self.tokenizer)}")
        return batch

    def tokenize(
        self,
        prompt: str | Sequence[Message],
        *,
        chat: bool = False,
        add_special_tokens: bool = False,
        token_strs: bool = False,
    ) -> Tokenized:
        """The token ids of a text, or (`chat`, or a list of messages) of its chat rendering (`model.tokenize`)."""
        return tokenize(
            self.tokenizer,
            prompt,
            self.context_length,
            chat=chat,
            add_special_tokens=add_special_tokens,
            token_strs=token_strs,
        )

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of token ids, special tokens kept."""
        return detokenize(self.tokenizer, tokens)

    def info(self) -> dict[str, Any]:
        """What a user needs to know about the loaded checkpoint."""
        config = self.model.config
        special = {
            name: (getattr(self.tokenizer, f"{name}_token"), getattr(self.tokenizer, f"{name}_token_id"))
            for name in ("mask", "eos", "pad", "bos", "cls", "sep", "unk")
            if getattr(self.tokenizer, f"{name}_token", None) is not None
        }
        return {
            "model": getattr(config, "_name_or_path", ""),
            "architecture": ", ".join(getattr(config, "architectures", None) or [type(self.model).__name__]),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "context_length": self.context_length,
            "vocabulary": len(self.tokenizer),
            "special_tokens": special,
            "dtype": "int8 (dynamic)"
            if is_quantized(self.model)
            else str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
        }

    def _generate_ids(
        self,
        prompts: list[list[int]],
        config: GenerationConfig | None,
        callback: StepCallback | None,
        first_index: int = 0,
        structured: ResponseFormat | None = None,
        suffix: Sequence[int] = (),
        logprobs: int | None = None,
    ) -> list[str] | list[ScoredAnswer]:
        config = checked_config(config, self.config)
        row_seeds = row_seeds_for(config.seed, len(prompts), first_index)
        if structured is not None:  # the skeleton's length, not max_new_tokens, sets the room left
            return structured_answers(
                self.model, self.tokenizer, prompts, structured.node, config, row_seeds=row_seeds, callback=callback
            )
        prompts = [self._fit(prompt, config, index, len(suffix)) for index, prompt in enumerate(prompts)]
        recorder = None if logprobs is None else LogprobRecorder(callback)
        canvas = sample(
            self.model,
            self.tokenizer,
            prompts,
            config,
            callback=callback if recorder is None else recorder,
            row_seeds=row_seeds,
            suffix=suffix,
            logprobs=logprobs,
        ).tolist()
        ends = [len(prompt) + config.max_new_tokens for prompt in prompts]
        answers = [self.answer(row, len(prompt), end) for row, prompt, end in zip(canvas, prompts, ends)]
        if recorder is None:
            return answers
        return [
            ScoredAnswer(
                text,
                recorder.tokens(
                    row,
                    scored_positions(self.tokenizer, self.answer_stops, canvas[row], len(prompt), end),
                    canvas[row],
                    self._token_text,
                ),
            )
            for row, (text, prompt, end) in enumerate(zip(answers, prompts, ends))
        ]

    def _token_text(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def _embedding_inputs(self, inputs: object) -> list[list[int]]:
        """Token id lists from a text, texts, token ids or lists of token ids."""
        if isinstance(inputs, str):
            return encode(self.tokenizer, [inputs], "input")
        if not isinstance(inputs, Sequence) or not inputs:
            raise DiffutronError("embed takes a text, a list of texts or token ids (a list, or a list of lists)")
        if all(isinstance(item, str) for item in inputs):
            return encode(self.tokenizer, list(inputs), "input")
        if all(isinstance(item, int) for item in inputs):
            return [list(inputs)]
        if all(isinstance(item, Sequence) and not isinstance(item, str) for item in inputs):
            return [list(item) for item in inputs]
        raise DiffutronError("embed takes texts or token ids, not a mix of them")

    def _fit(self, prompt: list[int], config: GenerationConfig, index: int, reserved: int = 0) -> list[int]:
        """The prompt, cut from the left if asked to, so that it fits the context with the answer and
        `reserved` more tokens (a suffix)."""
        room = self.context_length - config.max_new_tokens - reserved
        kept, cut = cut_to_fit(prompt, room)
        if not cut or (config.truncate == "left" and kept):
            return kept
        suffix = f" and a suffix of {reserved} tokens" if reserved else ""
        raise DiffutronError(
            f"prompt {index} has {len(prompt)} tokens; with max_new_tokens={config.max_new_tokens}{suffix} "
            f"that exceeds the model's context of {self.context_length} tokens. Shorten the "
            "prompt, lower max_new_tokens, or truncate from the left (--truncate left)"
        )

    def _span_text(self, ids: list[int], start: int, end: int) -> str:
        """Text of ids[start:end] as it reads in context (tokenizers merge spaces at edges)."""
        before = self.tokenizer.decode(ids[:start], skip_special_tokens=True)
        return self.tokenizer.decode(ids[:end], skip_special_tokens=True)[len(before) :]
