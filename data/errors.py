"""The one error type a user ever sees.

Library code raises `UserError("corpus.tsv:17: expected 2 tab-separated fields, found 1")`
for anything the user can fix (a bad file, a bad option). It never prints or exits: the
command-line boundary in `tt.cli.main` turns it into one red line on stderr and exit code 1.
"""


class UserError(Exception):
    """A mistake in the user's input, reported as one line that says what and where."""
