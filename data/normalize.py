"""The one place text is changed before it reaches the tokenizer.

Training and translation both call `normalize`, so a sentence typed at the prompt is seen
exactly as the training corpus was. NFKC folds compatibility forms together (full-width
`！` becomes `!`, `ｆｕｌｌ` becomes `full`, ligatures split), then all runs of whitespace,
including tabs and no-break spaces, become one ASCII space and the ends are trimmed.
"""

import re
import unicodedata

# Zero-width characters survive NFKC and \s, yet are invisible: drop them.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# A lone surrogate is not text: it is how Python spells an undecodable byte in a command-line
# argument. Left in, it would make the tokenizer fail; it becomes the replacement character.
_SURROGATE = re.compile("[\ud800-\udfff]")
# SentencePiece spells a space as ▁ (U+2581): a literal ▁ in the text would come back as a
# space. It becomes the nearest ordinary character, so that what is trained is what comes out.
_SPACE_MARKER = "\u2581"


def normalize(text: str) -> str:
    if text.isascii():  # NFKC leaves ASCII as it is, and none of the characters above is ASCII
        return " ".join(text.split())  # str.split's whitespace is exactly \s's
    # Invisible characters go first: left in place, one can keep NFKC from composing a
    # letter with its accent, and the result would change if normalized a second time.
    text = _SURROGATE.sub("\ufffd", text)
    text = unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).replace(_SPACE_MARKER, "_")
    return " ".join(text.split())
