"""Fine-Tune Studio: `python app.py` (also the Hugging Face Space entry point).

Environment: STUDIO_RUNS_DIR (default ./runs), STUDIO_PRESET (the preset the form starts from, default
quick_demo), STUDIO_USERNAME + STUDIO_PASSWORD (require a login), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
"""

import os

from studio.console import silence_known_noise

silence_known_noise()  # before the libraries load: their known import-time warnings (studio/console.py)

from studio.ui import build_app, launch_options  # noqa: E402

if __name__ == "__main__":
    app = build_app(os.environ.get("STUDIO_RUNS_DIR", "runs"), os.environ.get("STUDIO_PRESET"))
    app.queue(default_concurrency_limit=4).launch(**launch_options())
