"""tt.cli: the `tt` command (Typer), its tables and its progress bars."""
