"""TrainConfig: every setting of a fine-tuning run, with the reason for its default.

Defaults are chosen for the case this app is built around: a few dozen examples of a
voice on a small model, on a CPU. TRL's own defaults (loss on every token, lr 2e-4,
3 epochs) do not teach such a set on SmolLM2-135M; these do (docs/training.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.errors import UserError

METHODS = ("auto", "lora", "qlora")
ANSWER_CHARACTERS_SEEN = 5000
"""About how many characters of answers a run with the default epochs trains on in all
(epochs x the training answers' length). Counted in answers, not examples: a set of
one-word labels needs more passes than a set of paragraphs (docs/benchmarks.md, "Fewer, better
steps")."""


class ConfigError(UserError):
    """A setting is out of range; the message names it and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    method: str = "auto"
    """lora: train low-rank adapters on the model in full precision. qlora: load the base
    in 4-bit NF4 (bitsandbytes) first; uses about a third of the memory, a bit slower.
    auto: lora when the base fits in the free memory twice over, else qlora."""
    epochs: int | None = None
    """Passes over the examples. None picks by the length of the answers: about
    ANSWER_CHARACTERS_SEEN characters in all, between 2 and 4 epochs (45 answers of two
    sentences -> 2, 48 one-word labels -> 4), enough for a small set to be learned; more
    passes, at this or a lower learning rate, took longer and did no better."""
    learning_rate: float = 3e-3
    """Far higher than TRL's 2e-4: a few dozen examples give few steps to learn in."""
    lr_scheduler: str = "cosine"
    """Cosine decay: large steps first, small ones at the end, so the voice settles."""
    rank: int = 16
    """LoRA rank r: the adapter's capacity. 8-32 suits style and format tasks."""
    alpha: int = 32
    """LoRA alpha; the update is scaled by alpha / rank."""
    dropout: float = 0.0
    """LoRA dropout. Off: on a CPU it cost ~15% of each step and left the held-out loss
    of the brand-voice set unchanged (1.987 vs 1.988)."""
    target_modules: str = "all-linear"
    """Which layers get adapters: every linear layer learns style better than q/v only."""
    upper_layers: float = 0.5
    """The share of the transformer blocks, from the top, that get adapters (1: every
    block). The lower blocks keep what the base knew, and training is cheaper; with
    replay it forgot less than half as much as adapters on every block, at the same
    scores and time (docs/training.md, the table of levers)."""
    replay: float = 0.2
    """Base-model answers to everyday prompts mixed in, as a share of the training
    examples (trainer/replay.py): they keep the adapter answering like the base where
    your data says nothing (an adapter trained on labels otherwise answered almost every
    general question with a label). 0 turns it off; see docs/training.md's table of levers."""
    correction_repeats: int = 3
    """How many times SFT sees each correction you made (the pencil): once, the voice of
    the other examples outweighed it (examples/corrections_stick.py, in docs/training.md)."""
    correction_steps: int = 30
    """After the epochs, at most this many more optimizer steps on the corrections the
    adapter would not yet answer in your words (trainer/corrections.py); 0 turns it off."""
    batch_size: int = 8
    """Examples per optimizer step."""
    max_length: int = 1024
    """Longest example in tokens; longer ones are refused before the run, not truncated."""
    min_examples: int = 10
    """Fewer examples than this is refused: too few to learn anything dependable."""
    seed: int = 42
    objective: str = "auto"
    """What the run learns from; see trainer/objectives.py for each one. auto: SFT, with
    a preference stage only where one was measured to help (docs/feedback.md's table)."""
    continue_from: str | None = None
    """Name of an adapter to keep training on new examples, instead of a fresh one."""
    save_every: int = 10
    """Checkpoint every this many steps, so a failed run can resume."""
    nproc: int = 1
    """Training processes (PyTorch DDP under torchrun: gloo on CPUs, NCCL on GPUs). Each
    takes batch_size examples per step, so a step sees nproc x batch_size."""
    preference_learning_rate: float = 2e-5
    """Learning rate of a preference stage (DPO, KTO). Far below SFT's: the stage starts
    from a trained adapter and only reshapes it; larger steps moved the pairs' margins
    further without better answers on unseen prompts (docs/feedback.md)."""
    beta: float = 0.1
    """How far a preference stage may move from the adapter it started from (TRL's
    default); lower lets it move further."""
    preference_epochs: int = 2
    """Passes over the preference data: a few dozen pairs need more than one."""
    preference_micro_batch: int | None = 2
    """Pairs a preference stage runs through the model at once; `batch_size` pairs per
    step are reached by adding up the gradients of several such passes. A pair is two
    sequences whose activations are kept for the backward pass: fewer at once hold less
    memory, at the same result and time (bench/dpo_memory.py). None: the whole batch."""
    extra: dict = field(default_factory=dict)
    """Advanced SFTConfig fields passed through as they are."""

    def __post_init__(self):
        if self.correction_repeats < 1:
            raise ConfigError("correction_repeats must be at least 1 (each correction seen "
                                "once or more).")
        if self.correction_steps < 0:
            raise ConfigError("correction_steps must be 0 (off) or more.")
        if self.method not in METHODS:
            raise ConfigError(f"method must be auto, lora or qlora, not {self.method!r}.")
        if self.epochs is not None and not 1 <= self.epochs <= 100:
            raise ConfigError(f"epochs must be between 1 and 100, not {self.epochs}.")
        if not 0 < self.learning_rate <= 0.1:
            raise ConfigError(f"learning_rate must be in (0, 0.1], not {self.learning_rate}; "
                              "try 3e-3 (or 2e-4 for large sets).")
        if not 0 <= self.replay <= 1:
            raise ConfigError(f"replay must be a share between 0 and 1, not {self.replay}.")
        if not 0 < self.upper_layers <= 1:
            raise ConfigError(f"upper_layers must be a share in (0, 1], not "
                              f"{self.upper_layers}; 1 puts adapters on every block.")
        if not 1 <= self.rank <= 256:
            raise ConfigError(f"rank must be between 1 and 256, not {self.rank}.")
        if not 1 <= self.nproc <= 64:
            raise ConfigError(f"nproc must be between 1 and 64, not {self.nproc}.")
        from trainer.objectives import OBJECTIVES

        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not "
                              f"{self.objective!r}.")
        if OBJECTIVES[self.objective].tunes_an_adapter and not self.continue_from:
            raise ConfigError(f"{self.objective} alone tunes an adapter you already have: "
                              f"choose one to continue from, or sft+{self.objective}.")
        if OBJECTIVES[self.objective].preferences and self.nproc > 1:
            raise ConfigError(f"{self.objective} runs in one process (its preference stage "
                              "has not been tried under DDP); leave nproc at 1.")
        if not 0 < self.preference_learning_rate <= 0.01 or not 0 < self.beta <= 10 or \
                not 1 <= self.preference_epochs <= 20:
            raise ConfigError("preference_learning_rate must be in (0, 0.01], beta in "
                              "(0, 10] and preference_epochs between 1 and 20.")
        if self.preference_micro_batch is not None and self.preference_micro_batch < 1:
            raise ConfigError(f"preference_micro_batch must be 1 or more (or None: the "
                              f"whole batch), not {self.preference_micro_batch}.")
        if self.batch_size < 1 or self.max_length < 16:
            raise ConfigError("batch_size must be >= 1 and max_length >= 16.")

    def epochs_for(self, answer_characters: int) -> int:
        """The epochs of a run whose training answers are this many characters long."""
        if self.epochs is not None:
            return self.epochs
        return max(2, min(4, round(ANSWER_CHARACTERS_SEEN / max(answer_characters, 1))))

    def steps_for(self, examples: int, answer_characters: int) -> int:
        """Optimizer steps of a one-process run on this many training examples."""
        return self.epochs_for(answer_characters) * -(-examples // self.batch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)
