"""Fine-Tune Studio: `python app.py` (also the Hugging Face Space entry point).

Host and port come from Gradio's own variables (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT); runs are kept
in STUDIO_RUNS_DIR (default ./runs).
"""

import os

from studio.ui import build_app

if __name__ == "__main__":
    build_app(os.environ.get("STUDIO_RUNS_DIR", "runs")).queue().launch()
