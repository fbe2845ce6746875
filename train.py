"""Train the sentiment classifier: `python train.py` fits configs/default.yaml; see `python train.py --help`."""
from pathlib import Path

from lightning_module.cli import main

if __name__ == "__main__":
    main(default_config=Path(__file__).resolve().parent / "configs" / "default.yaml")
