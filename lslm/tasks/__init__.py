"""The source article's applications, each on data we can generate offline.

* ``sentiment``: is a review positive or negative? (fine-tune the pretrained GPT)
* ``translation``: an encoder-decoder Transformer with cross-attention
* ``qa``: find the answer to a question in a short passage
* ``common``: the parts they share (reading TSV files, splits, a small training loop)

Text generation, the fourth application, is ``GPT.generate`` and ``lslm.generate``.
"""
