"""Word types and their integer ids."""

from __future__ import annotations

__all__ = ["EOS", "UNK", "Dictionary"]

#: Token closing every line (Mikolov's PTB convention): the model learns where sentences end.
EOS = "<eos>"
#: Type standing for every word outside a capped vocabulary (PTB keeps the 10k most frequent).
UNK = "<unk>"


class Dictionary:
    """Bijection between word types and contiguous integer ids ``0 .. len-1``, in order of first
    appearance (so the mapping is a deterministic function of the training text)."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """The id of ``word``, adding it as a new type if unseen."""
        idx = self.word2idx.get(word)
        if idx is None:
            idx = self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return idx

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, word: object) -> bool:
        return word in self.word2idx
