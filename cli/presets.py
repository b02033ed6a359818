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
        # No cool-down: the demo memorizes a few hundred pairs, and what it prints was measured without one.
        train=TrainConfig(batch_tokens=1024, learning_rate=2e-3, warmup_steps=100, cooldown=0.0, max_steps=700, max_time=150.0, save_every=600.0),
        # One joint vocabulary (tt would choose two for Chinese and English): what the demo
        # prints was measured with one.
        tokenizer=TokenizerConfig(vocab_size=1000, joint=True),
        cleaning=CleaningConfig(),
    )


PRESETS = {
    # a few minutes on a laptop, or a corpus of a few thousand pairs. Measured on Tatoeba
    # zh→en, 5 minutes on 2 cores without bf16 units: 15.9 dev BLEU where "small" had 1.4.
    # The vocabulary stays at 4k: 2k pieces cannot even spell that corpus's 2,571 characters.
    # Width 192 (not 128): side by side on one core each, 15 minutes, 27.7 whole-dev BLEU against 25.6.
    # The learning rate held at its peak until the cool-down (decay "constant"): side by side
    # on 2 cores (bfloat16, Zen 4), 15 minutes, 32.8 whole-dev BLEU against 31.5 for 1/√step.
    "tiny": lambda: RunConfigs(
        ModelConfig(d_model=192, n_heads=4, d_ff=768, n_layers=2), TrainConfig(learning_rate=2e-3, decay="constant"),
        TokenizerConfig(), CleaningConfig(),
    ),
    # the default on a GPU; on a CPU, with or without bfloat16 units, "tiny" learned more in 15 minutes
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
CPU_PRESET = "tiny"
PRESET_REASON = {CPU_PRESET: "on a CPU", DEFAULT_PRESET: "on a GPU"}


def default_preset(device: str | None) -> str:
    """The preset a run gets without --preset: `tiny` where it trains on a CPU, else `small`.

    Without bfloat16 units a CPU makes about 80 updates a minute of `small` against 200 of
    `tiny` (d 192); measured side by side on Tatoeba zh→en (2 cores, float32), tiny is far
    ahead at 5 minutes and still ahead at 15. With bfloat16 units (AMX) the same holds: 15
    minutes on 2 cores gave tiny 31.9 whole-dev BLEU (5,323 updates) against small's 30.2
    (3,169). A GPU has the room for `small`.
    """
    from tt.model.device import resolve_device

    return CPU_PRESET if resolve_device(device or "auto").type == "cpu" else DEFAULT_PRESET


def preset_configs(name: str | None) -> RunConfigs:
    name = name or DEFAULT_PRESET
    if name not in PRESETS:
        raise UserError(f"unknown --preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
