"""The browser editor behind `python -m jaxface.serve`: slider state -> λ -> image (editor.py) and its page."""
