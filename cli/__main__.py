"""`python -m tt.cli …` runs the same app as the `tt` command (torchrun needs a module)."""

from tt.cli.main import app

app(prog_name="tt")
