"""The course outline: the notebooks in the order to follow them, each with its topic.

``NOTEBOOKS`` lists every notebook of ``notebooks/`` by file name, with the title of its
first heading; ``tests/test_course.py`` checks that the two agree. ``outline()`` is the
text notebook 00 prints.
"""

from __future__ import annotations

NOTEBOOKS: tuple[tuple[str, str], ...] = (
    ("00_start_here.ipynb", "Start here"),
    ("01_data_and_tokenization.ipynb", "Data and tokenization"),
    ("02_self_attention.ipynb", "Self-attention"),
    ("03_building_the_gpt.ipynb", "Building the GPT"),
    ("04_training.ipynb", "Training: forward, backward, update"),
    ("05_evaluation.ipynb", "Evaluation: how good is the model?"),
    ("06_text_generation.ipynb", "Text generation: how a model writes, and how to steer the dice"),
    ("07_sentiment_analysis.ipynb", "Sentiment analysis: teach the pretrained GPT a new job"),
    ("08_machine_translation.ipynb", "Machine translation: an encoder-decoder Transformer"),
    ("09_question_answering.ipynb", "Question answering: point at the answer"),
    ("10_scale_and_compute.ipynb", "Scale and compute"),
    ("11_inside_the_model.ipynb", "Inside the model: interpretability and control"),
    ("12_the_tools.ipynb",
     "The tools: Hugging Face weights, TensorBoard and training on several processes"),
    ("13_summarization.ipynb",
     "Text summarization: ROUGE, faithfulness, and a model that learns to summarize"),
    ("14_assistant.ipynb",
     "From a language model to an assistant: prompting, instruction tuning, LoRA and DPO"),
    ("15_risks.ipynb",
     "The article's challenges, measured and reduced: made-up answers, bias and privacy"),
    ("16_open_models.ipynb",
     "From GPT-2 to today's open models: RoPE, RMSNorm, SwiGLU, grouped-query attention"),
    ("17_pictures_and_words.ipynb", "Pictures and words: a tiny vision-language model"),
)


def outline() -> str:
    """The notebooks, one a line: file name, then topic."""
    width = max(len(name) for name, _ in NOTEBOOKS)
    return "\n".join(f"{name:<{width}}  {topic}" for name, topic in NOTEBOOKS)
