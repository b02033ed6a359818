"""Named starting points for `tt train`: the built-in demo and a few model sizes.

Every value here can still be overridden by an option or a `--config` file.
"""

from __future__ import annotations

from tt.data.clean import CleaningConfig
from tt.data.errors import UserError
from tt.data.tokenizer import TokenizerConfig
from tt.cli.options import RunConfigs
from tt.model.train import TrainConfig
from tt.model.transformer import ModelConfig

# With no --max-steps/--max-epochs/--max-time, a corpus run stops after this many epochs.
DEFAULT_EPOCHS = 20


def demo_configs() -> RunConfigs:
    """The built-in demo: a few hundred pairs, memorized in about a minute on 2 cores."""
    return RunConfigs(
        model=ModelConfig(d_model=128, n_heads=4, d_ff=512, n_layers=2, dropout=0.1),
        train=TrainConfig(batch_tokens=1024, learning_rate=2e-3, warmup_steps=100, max_steps=700, max_time=150.0, save_every=600.0),
        tokenizer=TokenizerConfig(vocab_size=1000),
        cleaning=CleaningConfig(),
    )


PRESETS = {
    # a few minutes on a laptop, or a corpus of a few thousand pairs. Measured on Tatoeba
    # zh→en, 5 minutes on 2 cores without bf16 units: 15.9 dev BLEU where "small" had 1.4.
    # The vocabulary stays at 4k: 2k pieces cannot even spell that corpus's 2,571 characters.
    "tiny": lambda: RunConfigs(
        ModelConfig(d_model=128, n_heads=4, d_ff=512, n_layers=2), TrainConfig(learning_rate=2e-3),
        TokenizerConfig(), CleaningConfig(),
    ),
    # the default: the best dev BLEU we measured for 15 CPU-minutes on 26k pairs
    "small": lambda: RunConfigs(
        ModelConfig(d_model=256, n_heads=4, d_ff=1024, n_layers=3), TrainConfig(), TokenizerConfig(), CleaningConfig()
    ),
    # hours of CPU, or a GPU-sized budget, and corpora of hundreds of thousands of pairs
    "base": lambda: RunConfigs(
        ModelConfig(d_model=512, n_heads=8, d_ff=2048, n_layers=6), TrainConfig(batch_tokens=4096, learning_rate=7e-4, warmup_steps=4000),
        TokenizerConfig(vocab_size=8000), CleaningConfig(),
    ),
}
# Measured on Tatoeba zh→en, 15 minutes on 2 cores (tests/benchmarks/quality.py): see the README.
DEFAULT_PRESET = "small"


def preset_configs(name: str | None) -> RunConfigs:
    name = name or DEFAULT_PRESET
    if name not in PRESETS:
        raise UserError(f"unknown --preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
