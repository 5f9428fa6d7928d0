"""The command line (``erasure-studio``) and the Gradio studio."""
