"""The word tokenizer: nltk's Penn Treebank rules, which need no downloaded model."""
from __future__ import annotations

from nltk.tokenize import TreebankWordTokenizer


class Tokenizer:
    """Split a sentence into word tokens, as the original report did.

    ``nltk.word_tokenize`` (the original's choice) needs the downloaded ``punkt`` model; the Treebank
    tokenizer it wraps works offline and gives the same tokens on single sentences.

    Args:
        lowercase: lowercase the text before tokenizing (the report and GloVe both use lowercase words).
    """

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase
        self._treebank = TreebankWordTokenizer()

    def __call__(self, text: str) -> list[str]:
        """Return the tokens of ``text`` (possibly none, for blank text)."""
        return self._treebank.tokenize(text.lower() if self.lowercase else text)

    def __repr__(self) -> str:
        return f"Tokenizer(lowercase={self.lowercase})"
