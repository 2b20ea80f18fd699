"""Entry points that ``accelerate launch`` runs, kept apart from the library (as torchtune keeps
``recipes/``): each parses its command line, sets up logging, locks the run folder on the main process
and calls library functions. ``urllm finetune | infer | generate`` launch them (:mod:`urllm.recipes.launch`).
"""
